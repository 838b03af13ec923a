"""A worker's lease metrics on /metrics (issue 16): a real `mirrord daemon` on a private
throwaway PostgreSQL cluster, syncing a slow image from a real registry: the lease it
holds for the run shows, a renewal while the database is down counts as an error, and
one refused because another worker took the lease counts as lost (and ends the run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.daemon_support import DaemonProcess, wait_until
from harness.images import push_image
from harness.postgres import PostgresCluster
from harness.synctools import sync_setup

WORKER = "solo"
LAYER = 6 * 1024 * 1024
BANDWIDTH = 150_000  # bytes/s from the source: the run lasts ~40 s unless it is stopped


def test_leases_held_and_renew_failures_are_counted_per_worker(
    tmp_path: Path, registry_factory: Any, fault_proxy_factory: Any, repo_name: str
) -> None:
    source, mirror = registry_factory(), registry_factory()
    with source.client() as client:
        image = push_image(client, f"{repo_name}/app", "1.0", seed=repo_name,
                           layer_sizes=(LAYER,))
    layer = max(image.blobs, key=lambda b: b.size).digest
    proxy = fault_proxy_factory(source)
    proxy.bandwidth = BANDWIDTH
    with PostgresCluster() as cluster:
        database = cluster.create_database()
        password_file = tmp_path / "db-password"
        password_file.write_text(database.password + "\n", encoding="utf-8")
        setup = sync_setup(
            tmp_path,
            mirror=f"docker://{mirror.host}/{repo_name}",
            streams=[{"from": f"{proxy.host}/{repo_name}/app", "to": "app", "schedule": "24h"}],
            sources=[],
            settings={proxy.host: {"insecure": True}},
            extra={
                "server": {"listen": "127.0.0.1:0"},
                "database": database.url,
                "database_password_file": str(password_file),
                "worker_name": WORKER,
                "lease": "5s",
            },
        )
        with DaemonProcess(setup.path) as daemon:

            def held() -> float:
                return daemon.metric("mirrord_worker_leases_held", worker=WORKER)

            def failures(reason: str) -> float:
                return daemon.metric(
                    "mirrord_worker_lease_renew_failures_total", worker=WORKER, reason=reason
                )

            wait_until(lambda: held() == 1, timeout=15, what="the run's lease to show")
            assert failures("error") == failures("lost") == 0
            # the layer streaming (no store call but the renewals until it ends)
            wait_until(lambda: proxy.count(f"/blobs/{layer}", method="GET") == 1,
                       timeout=15, what="the layer's stream to start")
            cluster.stop()  # a renewal (every 5/3 s) meets no database (after the pool's wait)
            try:
                wait_until(lambda: failures("error") >= 1, timeout=25, what="a renewal error")
            finally:
                cluster.start()
            # the run goes on: its lease is renewed (or, lapsed meanwhile, taken again)
            wait_until(lambda: daemon.log().count("the lease was lost") == 0 and held() == 1,
                       timeout=5, what="the run to keep its lease")
            with database.connect() as conn:  # another worker has taken it
                conn.execute("UPDATE leases SET worker = 'thief', expires = now() + interval "
                             "'1 hour' WHERE name = 'stream/app'")
            wait_until(lambda: failures("lost") == 1, timeout=10, what="the lease to be lost")
            wait_until(lambda: held() == 0, timeout=10, what="the stopped run to let go")
            assert daemon.runs("app", "succeeded") == 0  # the run stopped, not finished

"""`mirrord sync` on a PostgreSQL state other workers share (issue 16): it runs beside
them under the shared run lock, holding the leases of its streams, so a stream another
worker is syncing refuses the run (exit 3, naming stream and worker) or, with
`--wait`, is waited for until that worker's lease ends."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import anyio
from harness.daemon_support import wait_until
from harness.images import push_image
from harness.postgres import PostgresCluster
from harness.registry import RegistryProcess
from harness.synctools import Setup, run_measured, sync_setup

from mirrord.cli._exitcodes import EXIT_LOCKED
from mirrord.config import load_config
from mirrord.state import open_state

OTHER = "other-host:4242"


def _setup(tmp_path: Path, database: Any, source: RegistryProcess, mirror: RegistryProcess,
           repo: str) -> Setup:
    password_file = tmp_path / "db-password"
    password_file.write_text(database.password + "\n", encoding="utf-8")
    return sync_setup(
        tmp_path,
        mirror=f"docker://{mirror.host}/{repo}",
        streams=[{"from": f"{source.host}/{repo}/app", "to": "app"}],
        sources=[source],
        extra={"database": database.url, "database_password_file": str(password_file)},
    )


def _claim(setup: Setup, ttl: float) -> None:
    """Another worker takes the stream's lease, as its daemon does for a run."""
    store = open_state(load_config(setup.path), worker=OTHER)
    try:
        assert anyio.run(store.claim_lease, "stream/app", OTHER, ttl)
    finally:
        store.close()


def _sync(setup: Setup, *args: str) -> Any:
    argv = [sys.executable, "-m", "mirrord", "sync", "--config", str(setup.path), *args]
    return run_measured(argv, timeout=120)


def test_a_stream_another_worker_syncs_refuses_the_run_or_is_waited_for(
    tmp_path: Path,
    postgres: PostgresCluster,
    registry_factory: Any,
    repo_name: str,
) -> None:
    source, mirror = registry_factory(), registry_factory()
    with source.client() as client:
        push_image(client, f"{repo_name}/app", "1.0", seed=repo_name)
    database = postgres.create_database()
    try:
        setup = _setup(tmp_path, database, source, mirror, repo_name)
        _claim(setup, 30)
        refused = _sync(setup)
        assert refused.code == EXIT_LOCKED, refused.stderr[-2000:]
        assert f"stream app is being synced by worker {OTHER}" in refused.stderr
        assert "--wait" in refused.stderr and database.password not in refused.stderr
        with mirror.client() as client:
            assert client.head_manifest(f"{repo_name}/app", "1.0") is None  # nothing copied

        store = open_state(load_config(setup.path), worker=OTHER)
        try:
            assert anyio.run(store.release_lease, "stream/app", OTHER)
        finally:
            store.close()
        _claim(setup, 3.0)  # its next run, by a worker that then dies (never released)
        started = time.monotonic()
        waited = _sync(setup, "--wait")
        assert waited.code == 0, waited.stderr[-2000:]
        assert time.monotonic() - started >= 2.0  # it waited for the lease to lapse
        with mirror.client() as client:
            assert client.head_manifest(f"{repo_name}/app", "1.0") is not None
    finally:
        postgres.drop_database(database.name)


def test_a_lease_lost_mid_run_stops_the_sync_with_a_clear_error(
    tmp_path: Path,
    postgres: PostgresCluster,
    registry_factory: Any,
    fault_proxy_factory: Any,
    repo_name: str,
) -> None:
    source, mirror = registry_factory(), registry_factory()
    with source.client() as client:
        image = push_image(client, f"{repo_name}/app", "1.0", seed=repo_name,
                           layer_sizes=(4 * 1024 * 1024,))
    layer = max(image.blobs, key=lambda b: b.size).digest
    proxy = fault_proxy_factory(source)
    proxy.bandwidth = 200_000  # a ~20 s copy
    database = postgres.create_database()
    try:
        password_file = tmp_path / "db-password"
        password_file.write_text(database.password + "\n", encoding="utf-8")
        setup = sync_setup(
            tmp_path,
            mirror=f"docker://{mirror.host}/{repo_name}",
            streams=[{"from": f"{proxy.host}/{repo_name}/app", "to": "app"}],
            sources=[],
            settings={proxy.host: {"insecure": True}},
            extra={"database": database.url, "database_password_file": str(password_file),
                   "lease": "5s"},
        )
        proc = setup.sync_process()
        wait_until(lambda: proxy.count(f"/blobs/{layer}", method="GET") == 1, timeout=30,
                   what="the layer's copy to start")
        with database.connect() as conn:  # the database was away; another worker took it
            conn.execute("UPDATE leases SET worker = 'thief', expires = now() + interval "
                         "'1 hour' WHERE name = 'stream/app'")
        started = time.monotonic()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == EXIT_LOCKED, err[-2000:]
        assert time.monotonic() - started < 10  # stopped at the next renewal, not finished
        assert "lease was lost to another worker" in err
        with database.connect() as conn:
            [(status, message)] = conn.execute(
                "SELECT status, message FROM job_runs WHERE kind = 'sync'").fetchall()
        assert status == "Failed" and "interrupted" in message
    finally:
        postgres.drop_database(database.name)

"""Two real `mirrord daemon` processes on one throwaway PostgreSQL database, mirroring
from a real registry into a real one (issue 16): no stream is synced by both at once
nor twice for one due time, and when one daemon is killed (-9) the other takes its
streams over once their leases lapse."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.daemon_support import DaemonProcess, wait_until
from harness.images import RegistryHTTP, push_image
from harness.postgres import PostgresCluster, PostgresDatabase
from harness.registry import RegistryProcess
from harness.synctools import Setup, sync_setup

STREAMS = ("a", "b", "c")
PERIOD = 4.0  # seconds; a finished scheduled run keeps its stream 0.9 * 4 - 0.4 = 3.2 s


def _worker_setup(
    tmp_path: Path, worker: str, database: PostgresDatabase, source: RegistryProcess,
    mirror: RegistryProcess, repo: str,
) -> Setup:
    home = tmp_path / worker
    home.mkdir()
    password_file = home / "db-password"
    password_file.write_text(database.password + "\n", encoding="utf-8")
    return sync_setup(
        home,
        mirror=f"docker://{mirror.host}/{repo}",
        streams=[
            {"from": f"{source.host}/{repo}/{s}", "to": s, "schedule": f"{PERIOD:g}s"}
            for s in STREAMS
        ],
        sources=[source],
        extra={
            "server": {"listen": "127.0.0.1:0"},
            "database": database.url,
            "database_password_file": str(password_file),
            "worker_name": worker,
            "lease": "5s",
        },
    )


def _runs(daemon: DaemonProcess, stream: str) -> float:
    return daemon.runs(stream, "succeeded") + daemon.runs(stream, "failed")


def test_two_daemons_sync_each_stream_once_and_take_over_a_killed_ones(
    tmp_path: Path,
    postgres: PostgresCluster,
    registry_factory: Any,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = registry_factory()
    client = source.client()
    for s in STREAMS:
        push_image(client, f"{repo_name}/{s}", "1.0", seed=f"{repo_name}/{s}1")
    client.close()
    database = postgres.create_database()
    one = _worker_setup(tmp_path, "one", database, source, mirror_registry, repo_name)
    two = _worker_setup(tmp_path, "two", database, source, mirror_registry, repo_name)
    try:
        with DaemonProcess(one.path) as first, DaemonProcess(two.path) as second:
            began = time.monotonic()
            time.sleep(3 * PERIOD)
            both = {s: _runs(first, s) + _runs(second, s) for s in STREAMS}
            window = time.monotonic() - began + PERIOD  # the first one started earlier
            for s in STREAMS:
                # one run per due time across both daemons (two runs each without leases)
                assert 2 <= both[s] <= window / PERIOD + 1, (s, both)
                assert mirror_client.head_manifest(f"{repo_name}/{s}", "1.0")
            assert second.metric("mirrord_lease_skipped_runs_total") >= len(STREAMS)
            listed = second.get("/api/v1/jobs").json()
            listed = listed["items"]
            assert listed and {j["worker"] for j in listed} <= {"one", "two"}
            before = {s: _runs(second, s) for s in STREAMS}
            first.kill()  # -9: its leases stay until they lapse (at most 5 s)
            wait_until(
                lambda: all(_runs(second, s) > before[s] for s in STREAMS),
                timeout=5 + 2 * PERIOD + 5,
                what="the surviving daemon to take every stream over",
            )
    finally:
        postgres.drop_database(database.name)

"""Three real `mirrord daemon` processes on one throwaway PostgreSQL database, mirroring
from a real registry into a real one (issue 16): no stream is synced by two at once nor
twice for one due time, and when one daemon is killed (-9) the others take its streams
over once their leases lapse."""

from __future__ import annotations

import time
from contextlib import ExitStack
from itertools import pairwise
from pathlib import Path
from typing import Any

from harness.daemon_support import DaemonProcess, wait_until
from harness.images import RegistryHTTP, push_image
from harness.postgres import PostgresCluster, PostgresDatabase
from harness.registry import RegistryProcess
from harness.synctools import Setup, sync_setup

STREAMS = ("a", "b", "c")
WORKERS = ("one", "two", "three")
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
            "pruning": {"successfulJobsHistoryLimit": 200},  # every job stays listed
        },
    )


def _runs(daemon: DaemonProcess, stream: str) -> float:
    return daemon.runs(stream, "succeeded") + daemon.runs(stream, "failed")


def _no_overlapping_jobs(daemon: DaemonProcess) -> None:
    """The fleet's jobs (one list, from the shared state): those of one stream follow one
    another, each started after the one before it finished (to the API's second)."""
    jobs = daemon.get("/api/v1/jobs?limit=200").json()["items"]
    for stream in STREAMS:
        runs = sorted((j for j in jobs if j["stream"] == stream and j["finished"]),
                      key=lambda j: (j["started"], j["finished"]))
        assert len(runs) >= 2, (stream, jobs)
        for before, after in pairwise(runs):
            assert after["started"] >= before["finished"], (stream, before, after)


def test_three_daemons_sync_each_stream_once_and_take_over_a_killed_ones(
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
    setups = [_worker_setup(tmp_path, w, database, source, mirror_registry, repo_name)
              for w in WORKERS]
    try:
        with ExitStack() as stack:
            first, *others = [stack.enter_context(DaemonProcess(s.path)) for s in setups]
            began = time.monotonic()
            time.sleep(3 * PERIOD)
            runs = {s: sum(_runs(d, s) for d in (first, *others)) for s in STREAMS}
            window = time.monotonic() - began + PERIOD  # the first one started earlier
            for s in STREAMS:
                # one run per due time across the fleet (three runs each without leases)
                assert 2 <= runs[s] <= window / PERIOD + 1, (s, runs)
                assert mirror_client.head_manifest(f"{repo_name}/{s}", "1.0")
            skipped = sum(d.metric("mirrord_lease_skipped_runs_total") for d in others)
            assert skipped >= 2 * len(STREAMS)
            listed = others[0].get("/api/v1/jobs").json()["items"]
            assert listed and {j["worker"] for j in listed} <= set(WORKERS)
            _no_overlapping_jobs(others[0])
            before = {s: sum(_runs(d, s) for d in others) for s in STREAMS}
            first.kill()  # -9: its leases stay until they lapse (at most 5 s)
            wait_until(
                lambda: all(sum(_runs(d, s) for d in others) > before[s] for s in STREAMS),
                timeout=5 + 2 * PERIOD + 5,
                what="the surviving daemons to take every stream over",
            )
            _no_overlapping_jobs(others[1])
    finally:
        postgres.drop_database(database.name)

"""A blob shared across workers (issue 16): two real `mirrord sync` processes on one
throwaway PostgreSQL database copy images of different streams that share a large
layer into one real mirror registry; the layer is uploaded once, the other worker
mounts it. The claim of a worker killed mid-stream lapses and does not block the copy."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from harness.daemon_support import wait_until
from harness.images import Blob, make_layer, push_image
from harness.postgres import PostgresCluster, PostgresDatabase
from harness.registry import AccessEntry, RegistryProcess
from harness.synctools import Setup, sync_setup

from mirrord.cli import main

SHARED_SIZE = 6 * 1024 * 1024
LEASE = 5.0  # seconds: the shortest lease
BANDWIDTH = 2_000_000  # bytes/s through the source proxy: the shared stream lasts ~3 s


def _worker(
    tmp_path: Path, worker: str, database: PostgresDatabase, source_host: str,
    mirror: RegistryProcess, repo: str, streams: list[str], lease: float = LEASE,
) -> Setup:
    home = tmp_path / worker
    home.mkdir()
    password_file = home / "db-password"
    password_file.write_text(database.password + "\n", encoding="utf-8")
    return sync_setup(
        home,
        mirror=f"docker://{mirror.host}/{repo}-mirror",
        streams=[{"from": f"{source_host}/{repo}/{s}", "to": s, "tags": ["1.0"]}
                 for s in streams],
        sources=[],
        settings={source_host: {"insecure": True}},
        extra={
            "database": database.url,
            "database_password_file": str(password_file),
            "worker_name": worker,
            "lease": f"{lease:g}s",
        },
    )


def _push_sharing(source: RegistryProcess, repo: str, streams: list[str]) -> Blob:
    """One image per stream, each with the same large base layer; the layer."""
    base = make_layer(SHARED_SIZE, f"{repo}/base")
    with source.client() as client:
        for s in streams:
            push_image(client, f"{repo}/{s}", "1.0", seed=f"{repo}/{s}", layers=[base],
                       layer_sizes=(4096,))
    return base


def _decoded(entry: AccessEntry) -> str:
    return urllib.parse.unquote(entry.path)


def _uploads(entries: list[AccessEntry], digest: str) -> list[AccessEntry]:
    """The closing PUTs of uploads of ``digest`` (one per stream of it into the mirror)."""
    return [e for e in entries if e.method == "PUT" and f"digest={digest}" in _decoded(e)]


def _mounts(entries: list[AccessEntry], digest: str) -> list[AccessEntry]:
    return [e for e in entries if e.method == "POST" and f"mount={digest}" in _decoded(e)]


def _verify_pull(mirror: RegistryProcess, repo: str, tag: str) -> None:
    """Pull the image back from the mirror: its manifest, and every blob by its digest."""
    with mirror.client() as client:
        manifest = json.loads(client.get_manifest(repo, tag).raw)
        for desc in [manifest["config"], *manifest["layers"]]:
            data = client.get_blob(repo, desc["digest"])
            assert len(data) == desc["size"]
            assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]


def _run(*setups: Setup, timeout: float = 180.0) -> list[tuple[int, str]]:
    procs = [s.sync_process("-o", "json") for s in setups]  # started together
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        outcomes.append((proc.returncode, out + err))
    return outcomes


def test_two_sync_processes_stream_a_shared_blob_once(
    tmp_path: Path,
    postgres: PostgresCluster,
    registry_factory: Any,
    fault_proxy_factory: Any,
    repo_name: str,
) -> None:
    source, mirror = registry_factory(), registry_factory()
    base = _push_sharing(source, repo_name, ["a", "b"])
    proxy = fault_proxy_factory(source)
    proxy.bandwidth = BANDWIDTH  # a stream long enough for the other worker to meet it
    database = postgres.create_database()
    try:
        one = _worker(tmp_path, "one", database, proxy.host, mirror, repo_name, ["a"])
        two = _worker(tmp_path, "two", database, proxy.host, mirror, repo_name, ["b"])
        since = mirror.mark()
        for code, output in _run(one, two):
            assert code == 0, output[-3000:]
        entries = mirror.access_log(since)
        uploads = _uploads(entries, base.digest)
        assert [e.status for e in uploads] == [201], uploads  # streamed once, not twice
        mounts = [e for e in _mounts(entries, base.digest) if e.status == 201]
        assert len(mounts) == 1, _mounts(entries, base.digest)
        assert proxy.count("blobs", method="GET") >= 1
        for s in ("a", "b"):
            _verify_pull(mirror, f"{repo_name}-mirror/{s}", "1.0")
        for setup, stream, worker in ((one, "a", "one"), (two, "b", "two")):
            described = CliRunner().invoke(main, ["describe", stream, "--config", str(setup.path)])
            assert described.exit_code == 0, described.output
            runs = described.output[described.output.index("Recent Runs:") :].splitlines()
            assert runs[1].split()[1] == "Succeeded" and runs[1].endswith(f"worker {worker}")
    finally:
        postgres.drop_database(database.name)


def test_the_claim_of_a_worker_killed_mid_stream_lapses_and_the_blob_is_copied(
    tmp_path: Path,
    postgres: PostgresCluster,
    registry_factory: Any,
    fault_proxy_factory: Any,
    repo_name: str,
) -> None:
    source, mirror = registry_factory(), registry_factory()
    base = _push_sharing(source, repo_name, ["a", "b"])
    slow = fault_proxy_factory(source)
    slow.bandwidth = 200_000  # the killed worker's stream would take half a minute
    database = postgres.create_database()
    try:
        # worker one's claims outlast worker two's start (its lease: 12 s)
        one = _worker(tmp_path, "one", database, slow.host, mirror, repo_name, ["a"], 12.0)
        two = _worker(tmp_path, "two", database, source.host, mirror, repo_name, ["b"])
        since = mirror.mark()
        killed = one.sync_process()
        try:  # its claim is taken before its stream starts
            wait_until(lambda: slow.count(f"/blobs/{base.digest}", method="GET") == 1,
                       timeout=60, what="worker one's stream of the shared blob")
        finally:
            killed.kill()  # -9: the claim stays, renewed no more
            killed.communicate(timeout=30)
        started = time.monotonic()
        [(code, output)] = _run(two, timeout=120)
        waited = time.monotonic() - started
        assert code == 0, output[-3000:]
        assert waited < 12.0 + 20  # not blocked for good
        entries = mirror.access_log(since)
        # worker two found the claim, waited for it to lapse, tried to mount the blob
        # from the killed worker's repository (202: it never got there), then copied it
        mounts = _mounts(entries, base.digest)
        assert [(e.status, f"from={repo_name}-mirror/a" in _decoded(e)) for e in mounts] == [
            (202, True)
        ]
        assert [e.status for e in _uploads(entries, base.digest)] == [201]  # two's only
        _verify_pull(mirror, f"{repo_name}-mirror/b", "1.0")
    finally:
        postgres.drop_database(database.name)

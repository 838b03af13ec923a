"""A blob shared across workers (issue 16): two real `mirrord sync` processes on one
throwaway PostgreSQL database copy images of different streams that share a large
layer into one real mirror registry; the layer is uploaded once, the other worker
mounts it. A claim left by a worker that is gone lapses and does not block the copy."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import anyio
from click.testing import CliRunner
from harness.images import Blob, make_layer, push_image
from harness.postgres import PostgresCluster, PostgresDatabase
from harness.registry import AccessEntry, RegistryProcess
from harness.synctools import Setup, sync_setup

from mirrord.cli import main
from mirrord.config import load_config
from mirrord.state import open_state

SHARED_SIZE = 6 * 1024 * 1024
BANDWIDTH = 2_000_000  # bytes/s through the source proxy: the shared stream lasts ~3 s


def _worker(
    tmp_path: Path, worker: str, database: PostgresDatabase, source_host: str,
    mirror: RegistryProcess, repo: str, streams: list[str],
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
            "lease": "5s",
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


def _uploads(entries: list[AccessEntry], digest: str) -> list[AccessEntry]:
    """The closing PUTs of uploads of ``digest`` (one per stream of it into the mirror)."""
    return [e for e in entries if e.method == "PUT" and f"digest={digest}" in e.path.replace(
        "%3A", ":")]


def _mounts(entries: list[AccessEntry], digest: str) -> list[AccessEntry]:
    return [e for e in entries if e.method == "POST" and f"mount={digest}" in e.path.replace(
        "%3A", ":")]


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


def test_a_claim_left_by_a_gone_worker_lapses_and_the_blob_is_copied(
    tmp_path: Path,
    postgres: PostgresCluster,
    registry_factory: Any,
    repo_name: str,
) -> None:
    source, mirror = registry_factory(), registry_factory()
    base = _push_sharing(source, repo_name, ["a"])
    database = postgres.create_database()
    try:
        one = _worker(tmp_path, "one", database, source.host, mirror, repo_name, ["a"])
        ttl = 4.0
        store = open_state(load_config(one.path), worker="killed-worker")
        try:  # what a worker killed mid-stream leaves: a claim nobody renews
            mirror_key = f"docker://{mirror.host}/{repo_name}-mirror"
            claimed = anyio.run(
                lambda: store.claim_blob(mirror_key, base.digest, "killed-worker", ttl,
                                         repository=f"{repo_name}-mirror/gone"))
            assert claimed
        finally:
            store.close()
        claimed_at = time.monotonic()
        since = mirror.mark()
        [(code, output)] = _run(one, timeout=120)
        waited = time.monotonic() - claimed_at
        assert code == 0, output[-3000:]
        assert waited >= ttl - 0.5  # it waited for the claim to lapse
        entries = mirror.access_log(since)
        # the gone worker's repository lacks the blob: the mount is refused (202), and
        # the blob is streamed after all
        assert [e.status for e in _mounts(entries, base.digest)] == [202]
        assert [e.status for e in _uploads(entries, base.digest)] == [201]
        _verify_pull(mirror, f"{repo_name}-mirror/a", "1.0")
    finally:
        postgres.drop_database(database.name)

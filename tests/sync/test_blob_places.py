"""A blob the mirror got in an earlier run is mounted, not pulled again (the state's record
of where blobs landed). Real docker-registry source and mirror; every run is a separate
`mirrord sync` process, so nothing but the state carries over between runs."""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.parse
from pathlib import Path

import anyio
import pytest
from harness.images import Blob, RegistryHTTP, make_layer, push_image
from harness.postgres import PostgresCluster
from harness.registry import AccessEntry, RegistryProcess
from harness.synctools import Measured, Setup, assert_same_tree, sync_setup

from mirrord.config import load_config
from mirrord.copy import Action, CopyEngine, CopyStats, TagPlan
from mirrord.state import open_store
from mirrord.sync._blobplaces import StoreBlobPlaces, blob_places
from mirrord.transports import ClientPool, open_destination

BASE_SIZE = 400_000


def _push_a_and_b(client: RegistryHTTP, repo: str) -> Blob:
    """Images `repo/a:v1` and `repo/b:v1` sharing a base layer (each has its own too)."""
    base = make_layer(BASE_SIZE, f"base/{repo}")
    push_image(client, f"{repo}/a", "v1", seed=f"{repo}/a", layers=(base,))
    push_image(client, f"{repo}/b", "v1", seed=f"{repo}/b", layers=(base,))
    return base


def _setup(
    home: Path, source: RegistryProcess, mirror: RegistryProcess, repo: str, streams: str,
    extra: dict[str, str] | None = None,
) -> Setup:
    """Streams `a` (into mirror repository `x`) and/or `b` (into `y`), by letter."""
    into = {"a": "x", "b": "y"}
    return sync_setup(
        home,
        mirror=f"docker://{mirror.host}/{repo}",
        streams=[{"from": f"{source.host}/{repo}/{s}", "to": into[s], "tags": ["v1"]}
                 for s in streams],
        sources=[source],
        extra=extra,
    )


def _run(setup: Setup) -> Measured:
    run = setup.sync_measured()
    assert run.code == 0, run.stderr[-3000:]
    return run


def _base_gets(source: RegistryProcess, base: Blob, since: int) -> int:
    return source.count("GET", rf"/blobs/{base.digest}$", since=since)


def _uploads_into(entries: list[AccessEntry], repo: str) -> list[AccessEntry]:
    """The POSTs opening an upload (or a mount) in mirror repository `repo`."""
    return [e for e in entries if e.method == "POST" and e.path.startswith(f"/v2/{repo}/blobs/")]


def _mount_of(entries: list[AccessEntry], digest: str) -> list[tuple[str, int]]:
    """(from repository, status) of each mount of `digest`."""
    found = []
    for e in entries:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(e.path).query)
        if e.method == "POST" and query.get("mount") == [digest]:
            found.append((query["from"][0], e.status))
    return found


def _blobs_of(client: RegistryHTTP, repo: str, stream: str) -> list[Blob]:
    """The config and layer descriptors of `repo/stream:v1` (sizes and digests)."""
    manifest = client.get_manifest(f"{repo}/{stream}", "v1")
    body = json.loads(manifest.raw)
    return [Blob(d["mediaType"], d["digest"], d["size"], b"")
            for d in (body["config"], *body["layers"])]


def _recorded(state_dir: Path, mirror: str, digest: str) -> str | None:
    async def look() -> str | None:
        async with open_store(state_dir) as store:
            found = await store.blob_location(mirror, digest)
            return found.repository if found else None

    return anyio.run(look)


def test_a_new_stream_mounts_the_base_layer_an_earlier_run_mirrored(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    base = _push_a_and_b(basic_client, repo_name)
    mirror = f"docker://{mirror_registry.host}/{repo_name}"
    first = _run(_setup(tmp_path, basic_registry, mirror_registry, repo_name, "a"))
    assert first.document()["blobs"] == {"copied": 3, "mounted": 0, "present": 0}
    assert _recorded(tmp_path / "state", mirror, base.digest) == f"{repo_name}/x"

    # Run 2: stream b added to the configuration (a new process, a fresh engine). Its
    # dry run counts only the two blobs that would be pulled: the base is mounted.
    both = _setup(tmp_path, basic_registry, mirror_registry, repo_name, "ab")
    planned = both.sync_measured("--dry-run").document()
    assert planned["bytesToCopy"] == sum(b.size for b in _blobs_of(basic_client, repo_name, "b")
                                         if b.digest != base.digest)
    source_mark, mirror_mark = basic_registry.mark(), mirror_registry.mark()
    second = _run(both)

    summary = second.document()
    assert summary["images"]["copied"] == 1 and summary["images"]["unchanged"] == 1
    assert summary["blobs"] == {"copied": 2, "mounted": 1, "present": 0}
    assert summary["bytes"] == planned["bytesToCopy"]  # the dry run said so
    assert _base_gets(basic_registry, base, source_mark) == 0  # not pulled again
    entries = mirror_registry.access_log(mirror_mark)
    assert _mount_of(entries, base.digest) == [(f"{repo_name}/x", 201)]
    assert len(_uploads_into(entries, f"{repo_name}/y")) == 3  # the mount and two uploads
    assert_same_tree(basic_client, f"{repo_name}/b", mirror_client, f"{repo_name}/y", "v1")
    assert _recorded(tmp_path / "state", mirror, base.digest) == f"{repo_name}/y"


@pytest.mark.parametrize("stale", ["blob deleted from its repository", "row names another"])
def test_a_stale_record_falls_back_to_an_upload_through_the_mount_session(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
    stale: str,
) -> None:
    base = _push_a_and_b(basic_client, repo_name)
    mirror = f"docker://{mirror_registry.host}/{repo_name}"
    _run(_setup(tmp_path, basic_registry, mirror_registry, repo_name, "a"))
    if stale.startswith("blob deleted"):  # as the registry's GC would after a prune
        response = mirror_client.request("DELETE", f"/v2/{repo_name}/x/blobs/{base.digest}")
        assert response.status_code == 202, response.text
        assert not mirror_client.blob_exists(f"{repo_name}/x", base.digest)
        gone_from = f"{repo_name}/x"
    else:
        gone_from = f"{repo_name}/never-had-it"

        async def point_elsewhere() -> None:
            async with open_store(tmp_path / "state") as store:
                await store.record_blob_locations(mirror, {base.digest: gone_from})

        anyio.run(point_elsewhere)

    source_mark, mirror_mark = basic_registry.mark(), mirror_registry.mark()
    second = _run(_setup(tmp_path, basic_registry, mirror_registry, repo_name, "ab"))

    assert second.document()["blobs"] == {"copied": 3, "mounted": 0, "present": 0}
    assert _base_gets(basic_registry, base, source_mark) == 1  # it had to be pulled
    entries = mirror_registry.access_log(mirror_mark)
    assert _mount_of(entries, base.digest) == [(gone_from, 202)]
    # No request beyond the failed mount: its session carried the upload (3 blobs, 3 POSTs).
    assert len(_uploads_into(entries, f"{repo_name}/y")) == 3
    assert_same_tree(basic_client, f"{repo_name}/b", mirror_client, f"{repo_name}/y", "v1")
    assert _recorded(tmp_path / "state", mirror, base.digest) == f"{repo_name}/y"


def test_another_worker_on_a_shared_database_mounts_what_the_first_mirrored(
    tmp_path: Path,
    postgres: PostgresCluster,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    base = _push_a_and_b(basic_client, repo_name)
    database = postgres.create_database()
    try:
        homes = []
        for worker in ("one", "two"):
            home = tmp_path / worker
            home.mkdir()
            (home / "db-password").write_text(database.password + "\n", encoding="utf-8")
            homes.append((home, {"database": database.url, "worker_name": worker,
                                 "database_password_file": str(home / "db-password")}))
        (home_one, one), (home_two, two) = homes
        _run(_setup(home_one, basic_registry, mirror_registry, repo_name, "a", one))
        source_mark = basic_registry.mark()
        second = _run(_setup(home_two, basic_registry, mirror_registry, repo_name, "b", two))
        assert second.document()["blobs"] == {"copied": 2, "mounted": 1, "present": 0}
        assert _base_gets(basic_registry, base, source_mark) == 0
    finally:
        postgres.drop_database(database.name)


def test_an_oci_layout_mirror_records_no_blob_locations(
    tmp_path: Path, basic_registry: RegistryProcess, basic_client: RegistryHTTP, repo_name: str
) -> None:
    _push_a_and_b(basic_client, repo_name)
    setup = sync_setup(
        tmp_path,
        mirror=f"oci:{tmp_path / 'layout'}",
        streams=[{"from": f"{basic_registry.host}/{repo_name}/{s}", "tags": ["v1"]}
                 for s in "ab"],
        sources=[basic_registry],
    )
    assert _run(setup).document()["blobs"]["copied"] == 5  # one blob store: base once
    with sqlite3.connect(setup.state_dir / "state.db") as conn:
        assert conn.execute("SELECT count(*) FROM blob_locations").fetchone() == (0,)


@pytest.mark.anyio
async def test_a_state_that_is_away_only_costs_the_mount_it_would_have_saved(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A closed store (every call a StateError): the blobs are copied, with warnings."""
    _push_a_and_b(basic_client, repo_name)
    setup = _setup(tmp_path, basic_registry, mirror_registry, repo_name, "a")
    config = load_config(setup.path)
    store = open_store(setup.state_dir)
    async with ClientPool(config) as pool:
        destination = await open_destination(config, pool)
        places = blob_places(store, destination)
        assert isinstance(places, StoreBlobPlaces)
        store.close()
        source = await pool.client(basic_registry.host, f"{repo_name}/a")
        found = await source.head_manifest(f"{repo_name}/a", "v1")
        plan = TagPlan(stream="a", tag="v1", source_repository=f"{repo_name}/a",
                       mirror_repository=f"{repo_name}/x", action=Action.COPY, source=found)
        engine = CopyEngine(destination, CopyStats(), places=places)
        with caplog.at_level(logging.WARNING, logger="mirrord.copy"):
            await engine.copy_tag(source, plan)
    assert (engine.stats.blobs_copied, engine.stats.blobs_mounted) == (3, 0)
    warned = [r.getMessage() for r in caplog.records]
    assert sum("cannot look up where the mirror has it" in m for m in warned) == 3, warned
    assert sum("cannot record that it is in" in m for m in warned) == 3, warned
    assert_same_tree(basic_client, f"{repo_name}/a", mirror_client, f"{repo_name}/x", "v1")

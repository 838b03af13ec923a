"""A cold sync into a repository with no tag asks the mirror no blob HEAD; a repository
with content (tagged, or recorded in the state) still gets one per blob, so nothing it
holds is pulled again. Real docker-registry source and mirror, `mirrord sync` processes;
the requests are counted from the registries' access logs."""

from __future__ import annotations

from pathlib import Path

from harness.images import Blob, RegistryHTTP, make_layer, push_image
from harness.registry import AccessEntry, RegistryProcess
from harness.synctools import Measured, Setup, assert_same_tree, sync_setup

BASE_SIZE = 300_000


def _setup(tmp_path: Path, source: RegistryProcess, mirror: RegistryProcess, repo: str) -> Setup:
    """Stream `repo/a:v1` into mirror repository `repo/x`."""
    return sync_setup(
        tmp_path,
        mirror=f"docker://{mirror.host}/{repo}",
        streams=[{"from": f"{source.host}/{repo}/a", "to": "x", "tags": ["v1"]}],
        sources=[source],
    )


def _push_a(client: RegistryHTTP, repo: str) -> Blob:
    """`repo/a:v1`: a base layer, a layer of its own, a config (three blobs)."""
    base = make_layer(BASE_SIZE, f"base/{repo}")
    push_image(client, f"{repo}/a", "v1", seed=f"{repo}/a", layers=(base,))
    return base


def _run(setup: Setup, *args: str) -> Measured:
    run = setup.sync_measured(*args)
    assert run.code == 0, run.stderr[-3000:]
    return run


def _blob_heads(entries: list[AccessEntry]) -> int:
    return sum(e.method == "HEAD" and "/blobs/sha256:" in e.path for e in entries)


def _blob_gets(entries: list[AccessEntry]) -> int:
    return sum(e.method == "GET" and "/blobs/sha256:" in e.path for e in entries)


def test_a_cold_sync_into_an_untagged_repository_heads_no_blob(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    _push_a(basic_client, repo_name)
    setup = _setup(tmp_path, basic_registry, mirror_registry, repo_name)

    mark = mirror_registry.mark()
    planned = _run(setup, "--dry-run").document()
    assert _blob_heads(mirror_registry.access_log(mark)) == 0  # the estimate skips them too

    mark = mirror_registry.mark()
    summary = _run(setup).document()
    entries = mirror_registry.access_log(mark)
    assert summary["blobs"] == {"copied": 3, "mounted": 0, "present": 0}
    assert summary["bytes"] == planned["bytesToCopy"] > BASE_SIZE  # the dry run was true
    assert _blob_heads(entries) == 0
    # Per blob: the POST opening the upload and the PUT closing it, nothing else.
    uploads = [e for e in entries if "/blobs/uploads/" in e.path]
    assert sorted(e.method for e in uploads) == ["POST"] * 3 + ["PUT"] * 3
    assert_same_tree(basic_client, f"{repo_name}/a", mirror_client, f"{repo_name}/x", "v1")


def test_a_verifying_run_heads_every_blob_even_in_an_untagged_repository(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    _push_a(basic_client, repo_name)
    mark = mirror_registry.mark()
    summary = _run(_setup(tmp_path, basic_registry, mirror_registry, repo_name),
                   "--verify").document()
    assert summary["blobs"]["copied"] == 3
    assert _blob_heads(mirror_registry.access_log(mark)) == 3


def test_a_tagged_repository_the_state_knows_nothing_of_still_gets_its_heads(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """The mirror repository was filled out of band (another tool): a tag there, and the
    base layer with it, but nothing in the state. The base is found, not pulled."""
    base = _push_a(basic_client, repo_name)
    push_image(mirror_client, f"{repo_name}/x", "old", seed="out-of-band", layers=(base,))
    source_mark, mirror_mark = basic_registry.mark(), mirror_registry.mark()
    summary = _run(_setup(tmp_path, basic_registry, mirror_registry, repo_name)).document()
    assert summary["blobs"] == {"copied": 2, "mounted": 0, "present": 1}
    assert _blob_heads(mirror_registry.access_log(mirror_mark)) == 3
    assert _blob_gets(basic_registry.access_log(source_mark)) == 2  # not the base
    assert_same_tree(basic_client, f"{repo_name}/a", mirror_client, f"{repo_name}/x", "v1")


def test_blobs_an_earlier_run_left_in_a_repository_now_untagged_are_found_not_pulled(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """As after a run cut before its tag moved, or a prune before the registry's garbage
    collection: the blobs are in the repository, no tag is, and the state recorded where
    each blob landed. Those records bring the HEAD back."""
    _push_a(basic_client, repo_name)
    setup = _setup(tmp_path, basic_registry, mirror_registry, repo_name)
    _run(setup)
    digest = mirror_client.get_manifest(f"{repo_name}/x", "v1").digest
    mirror_client.delete_manifest(f"{repo_name}/x", digest)
    assert mirror_client.tags(f"{repo_name}/x") == []

    source_mark, mirror_mark = basic_registry.mark(), mirror_registry.mark()
    planned = _run(setup, "--dry-run").document()
    summary = _run(setup).document()
    assert planned["bytesToCopy"] == 0
    assert summary["images"]["copied"] == 1
    assert summary["blobs"] == {"copied": 0, "mounted": 0, "present": 3}
    assert _blob_gets(basic_registry.access_log(source_mark)) == 0
    assert _blob_heads(mirror_registry.access_log(mirror_mark)) == 6  # 3 dry, 3 real
    assert_same_tree(basic_client, f"{repo_name}/a", mirror_client, f"{repo_name}/x", "v1")

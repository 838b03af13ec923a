"""`mirrord sync` end to end against real registries (the harness's docker-registry)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.images import (
    RegistryHTTP,
    build_corpus,
    make_layer,
    push,
    push_artifact,
    push_corpus,
    push_image,
    push_index,
)
from harness.registry import RegistryProcess, free_port
from harness.synctools import (
    assert_same_tree,
    big_tags_behind_a_slow_mirror,
    corrupt_blob,
    sync_setup,
)


def test_full_mirror_from_basic_and_token_sources_is_byte_identical(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    token_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    token_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    corpus = build_corpus(repos=(f"{repo_name}/a", f"{repo_name}/b"), seed=repo_name)
    push_corpus(basic_client, corpus)
    push_corpus(token_client, corpus)
    artifact = push_artifact(basic_client, f"{repo_name}/a", "chart-1.0", seed=repo_name)
    streams = [
        {"from": f"{basic_registry.host}/{repo_name}/a", "to": f"basic/{repo_name}/a"},
        {"from": f"{basic_registry.host}/{repo_name}/b", "to": f"basic/{repo_name}/b"},
        {"from": f"{token_registry.host}/{repo_name}/a", "to": f"token/{repo_name}/a"},
        {"from": f"{token_registry.host}/{repo_name}/b", "to": f"token/{repo_name}/b"},
    ]
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/m",
        streams=streams,
        sources=[basic_registry, token_registry],
    )

    mark = basic_registry.mark()
    code, summary = setup.sync_json()

    assert code == 0, summary
    assert summary["images"] == {
        "copied": 17, "unchanged": 0, "failed": 0, "planned": 0, "skipped": 0, "cut": 0
    }
    # Tags sharing a digest (latest and 2.0) cost one manifest GET: each digest once.
    gets = [p for m, p in basic_registry.requests(since=mark) if m == "GET" and "/manifests/" in p]
    assert len(gets) == len(set(gets)), "a manifest was fetched twice"
    wanted = {i.digest for i in corpus.images}
    wanted |= {c.digest for i in corpus.images for c in i.children}
    assert len(gets) == len(wanted) + 1  # + the artifact
    for kind, client in (("basic", basic_client), ("token", token_client)):
        for repo in corpus.repos:
            for tag in corpus.tags(repo):
                assert_same_tree(client, repo, mirror_client, f"m/{kind}/{repo}", tag)
    assert_same_tree(
        basic_client, artifact.repo, mirror_client, f"m/basic/{repo_name}/a", "chart-1.0"
    )
    # The base layer is shared by every image: streamed once, then present or mounted.
    assert summary["blobs"]["mounted"] >= 1


def test_noop_resync_costs_one_head_per_tag_at_the_source(
    tmp_path: Path,
    token_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    token_client: RegistryHTTP,
    repo_name: str,
) -> None:
    corpus = build_corpus(repos=(repo_name,), tags=("1", "2", "3", "4", "5", "latest"))
    push_corpus(token_client, corpus)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/noop",
        streams=[{"from": f"{token_registry.host}/{repo_name}"}],
        sources=[token_registry],
    )
    assert setup.sync_json()[0] == 0

    mark, mirror_mark = token_registry.mark(), mirror_registry.mark()
    code, summary = setup.sync_json()

    assert code == 0
    assert summary["images"]["copied"] == 0 and summary["images"]["unchanged"] == 6
    # The mirror is pinged while the source is planned: once, not again by its listing.
    assert sorted(p.split("?")[0] for m, p in mirror_registry.requests(since=mirror_mark)) == [
        "/v2/", f"/v2/noop/{repo_name}/tags/list"]
    requests = token_registry.requests(since=mark)
    heads = [p for m, p in requests if m == "HEAD" and "/manifests/" in p]
    gets = [p for m, p in requests if m == "GET" and "/manifests/" in p]
    listings = [p for m, p in requests if "/tags/list" in p]
    others = [(m, p) for m, p in requests if p.split("?")[0] != "/v2/"]
    assert len(heads) == 6, requests
    assert gets == [], "an unchanged tag must never cost a manifest GET"
    assert len(listings) == 1
    assert len(others) == 7, f"one HEAD per tag plus one listing, got {requests}"


def test_moved_tag_is_copied_on_the_next_run(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "stable", seed="first")
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/moved",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "tags": ["stable"]}],
        sources=[basic_registry],
    )
    assert setup.sync_json()[0] == 0
    first = mirror_client.get_manifest(f"moved/{repo_name}", "stable").digest

    moved = push_image(basic_client, repo_name, "stable", seed="second")
    code, summary = setup.sync_json()

    assert code == 0 and summary["images"]["copied"] == 1
    now = assert_same_tree(basic_client, repo_name, mirror_client, f"moved/{repo_name}", "stable")
    assert now == moved.digest != first


def test_blob_is_mounted_from_another_mirror_repository(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    shared = make_layer(300_000, f"shared/{repo_name}")
    push_image(basic_client, f"{repo_name}/one", "v1", seed="one", layers=(shared,))
    push_image(basic_client, f"{repo_name}/two", "v1", seed="two", layers=(shared,))
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/mounts",
        streams=[
            {"from": f"{basic_registry.host}/{repo_name}/one", "tags": ["v1"]},
            {"from": f"{basic_registry.host}/{repo_name}/two", "tags": ["v1"]},
        ],
        sources=[basic_registry],
    )
    source_mark, mirror_mark = basic_registry.mark(), mirror_registry.mark()

    code, summary = setup.sync_json()

    assert code == 0 and summary["blobs"]["mounted"] == 1
    mounts = [p for m, p in mirror_registry.requests(since=mirror_mark) if "mount=" in p]
    assert len(mounts) == 1 and shared.digest.replace(":", "%3A") in mounts[0]
    # The mount alone answers for the repository it went into: no HEAD there first.
    target = mounts[0].split("/blobs/uploads/")[0]
    heads = [p for m, p in mirror_registry.requests(since=mirror_mark)
             if m == "HEAD" and p == f"{target}/blobs/{shared.digest}"]
    assert heads == [], heads
    shared_gets = [
        p for m, p in basic_registry.requests(since=source_mark)
        if m == "GET" and p.endswith(f"/blobs/{shared.digest}")
    ]
    assert len(shared_gets) == 1, "a shared blob is pulled from the source once"


def test_oci_layout_is_readable_by_skopeo(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    index = push_index(basic_client, repo_name, "1.0", seed=repo_name)
    image = push_image(basic_client, repo_name, "single", seed=repo_name)
    docker = push_image(basic_client, repo_name, "docker", seed=repo_name, fmt="docker")
    layout = tmp_path / "layout"
    setup = sync_setup(
        tmp_path,
        mirror=f"oci:{layout}",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": "app/x"}],
        sources=[basic_registry],
    )

    assert setup.sync_json()[0] == 0

    inspect = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{layout}:app/x:1.0"],
        capture_output=True, check=True,
    )
    assert inspect.stdout == index.raw
    target = f"{mirror_registry.host}/from-oci/{repo_name}:single"
    subprocess.run(
        ["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
         f"oci:{layout}:app/x:single", f"docker://{target}"],
        capture_output=True, check=True,
    )
    assert mirror_client.get_manifest(f"from-oci/{repo_name}", "single").raw == image.raw
    # Docker schema2 is kept byte-exact too (never converted), though skopeo 1.9's
    # OCI-layout reader only resolves names of OCI-typed manifests.
    stored = layout / "blobs" / "sha256" / docker.digest.split(":")[1]
    assert stored.read_bytes() == docker.raw


def test_corrupted_source_blob_fails_that_image_only(
    tmp_path: Path,
    registry_factory: object,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source: RegistryProcess = registry_factory()  # type: ignore[operator]
    client = source.client()
    good = push_image(client, repo_name, "good", seed="good")
    bad = push_image(client, repo_name, "bad", seed="bad", layer_sizes=(50_000,))
    corrupt_blob(source, bad.layers[0].digest)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/corrupt",
        streams=[{"from": f"{source.host}/{repo_name}", "tags": ["good", "bad"]}],
        sources=[source],
    )

    code, summary = setup.sync_json()

    assert code == 1
    assert summary["images"]["copied"] == 1 and summary["images"]["failed"] == 1
    [failure] = summary["failures"]
    assert failure["tag"] == "bad" and failure["reason"] == "DigestMismatch"
    assert mirror_client.head_manifest(f"corrupt/{repo_name}", "bad") is None
    assert not mirror_client.blob_exists(f"corrupt/{repo_name}", bad.layers[0].digest)
    assert mirror_client.get_manifest(f"corrupt/{repo_name}", "good").digest == good.digest


def test_mirror_restart_mid_run_then_rerun_completes(
    tmp_path: Path,
    registry_factory: object,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    mirror: RegistryProcess = registry_factory()  # type: ignore[operator]
    tags, setup = big_tags_behind_a_slow_mirror(
        tmp_path, mirror, basic_registry, basic_client, repo_name,
        prefix="restart", count=12, size=2_000_000,
    )
    process = setup.sync_process("-o", "json")
    mark = mirror.mark()
    while not any("/blobs/uploads/" in p for _, p in mirror.requests(since=mark)):
        assert process.poll() is None, process.communicate()
    mirror.restart()
    process.communicate(timeout=120)

    code, summary = setup.sync_json()

    assert code == 0, summary
    mirror_client = mirror.client()
    for tag in tags:
        assert_same_tree(basic_client, repo_name, mirror_client, f"restart/{repo_name}", tag)


def test_deleting_a_removed_tag_keeps_a_digest_another_tag_still_names(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    shared = push_image(basic_client, repo_name, "a", seed=repo_name)
    push(basic_client, shared.with_repo(repo_name, "c"))
    alone = push_image(basic_client, repo_name, "b", seed="alone")
    setup = sync_setup(
        tmp_path, mirror=f"docker://{mirror_registry.host}/removed",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "delete_removed_tags": True}],
        sources=[basic_registry],
    )
    assert setup.sync_json()[0] == 0
    # Upstream, c moves away and is then deleted (its new digest goes with it); b is deleted.
    moved = push_image(basic_client, repo_name, "c", seed="moved")
    assert setup.sync_json()[0] == 0
    basic_client.delete_manifest(repo_name, moved.digest)
    basic_client.delete_manifest(repo_name, alone.digest)

    code, _ = setup.sync_json()

    assert code == 0
    mirrored = f"removed/{repo_name}"
    assert mirror_client.get_manifest(mirrored, "a").digest == shared.digest
    assert mirror_client.head_manifest(mirrored, "b") is None
    assert mirror_client.head_manifest(mirrored, "c") is None


def test_deleting_a_removed_tag_keeps_a_manifest_a_live_index_lists(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """A platform manifest tagged on its own, and listed by a live index: when its tag
    goes upstream, the mirror's index must stay whole."""
    index = push_index(basic_client, repo_name, "all", seed=repo_name)
    platform = index.children[0]
    push(basic_client, platform.with_repo(repo_name, "amd64"))
    alone = push_image(basic_client, repo_name, "alone", seed=f"{repo_name}-alone")
    setup = sync_setup(
        tmp_path, mirror=f"docker://{mirror_registry.host}/removed",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "delete_removed_tags": True}],
        sources=[basic_registry],
    )
    assert setup.sync_json()[0] == 0
    mirrored = f"removed/{repo_name}"
    assert mirror_client.head_manifest(mirrored, "amd64") == platform.digest
    # Upstream loses the amd64 tag (by its digest) and the alone tag.
    basic_client.delete_manifest(repo_name, platform.digest)
    basic_client.delete_manifest(repo_name, alone.digest)

    code, _ = setup.sync_json()

    assert code == 0
    assert mirror_client.head_manifest(mirrored, "alone") is None  # deleted: nothing needs it
    assert mirror_client.head_manifest(mirrored, platform.digest) == platform.digest
    assert mirror_client.get_manifest(mirrored, "all").raw == index.raw
    for child in index.children:  # the index is still whole
        assert mirror_client.head_manifest(mirrored, child.digest) == child.digest


def test_a_requested_stop_starts_no_new_copies(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    import anyio

    from mirrord.config import load_config
    from mirrord.sync import Syncer, SyncResult
    from mirrord.transports import ClientPool

    for tag in ("1", "2", "3"):
        push_image(basic_client, repo_name, tag, seed=f"{repo_name}/{tag}")
    setup = sync_setup(
        tmp_path, mirror=f"docker://{mirror_registry.host}/stop",
        streams=[{"from": f"{basic_registry.host}/{repo_name}"}], sources=[basic_registry],
    )
    config = load_config(setup.path)
    asked: list[int] = []

    def stop_after_first() -> bool:
        asked.append(1)
        return len(asked) > 1

    async def run() -> SyncResult:
        async with ClientPool(config) as pool:
            return await Syncer(config, pool, should_stop=stop_after_first).run()

    result = anyio.run(run)

    assert result.stats.images_copied == 1 and result.skipped == 2
    assert not result.ok
    assert len(mirror_client.tags(f"stop/{repo_name}")) == 1


def test_an_unreachable_mirror_fails_the_run_and_nothing_is_copied(
    tmp_path: Path, basic_registry: RegistryProcess, basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    # The mirror's ping runs beside planning; its failure stops planning and the run.
    push_image(basic_client, repo_name, "1", seed=repo_name)
    nowhere = f"127.0.0.1:{free_port()}"
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{nowhere}/m",
        streams=[{"from": f"{basic_registry.host}/{repo_name}"}],
        sources=[basic_registry],
        settings={nowhere: {"outage_budget": "1s"}},
    )
    mark = basic_registry.mark()
    code, document = setup.sync_json()
    assert code != 0
    assert document["error"]["message"].startswith(f"{nowhere}: connecting: cannot reach")
    fetched = [p for m, p in basic_registry.requests(since=mark) if m == "GET" and
               ("/manifests/" in p or "/blobs/" in p)]
    assert fetched == []

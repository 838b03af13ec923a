"""`mirrord delete` then `mirrord prune`: a deleted stream's images leave the mirror under
the pruner's rules, against the real docker-registry mirror (deletes enabled).

Each test: a configured stream `conf` and an import-image stream `imp` that share an
image, then `delete imp`, then prune.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness.images import OCI_INDEX, Image, RegistryHTTP, build_image, push, sha256
from harness.registry import RegistryProcess
from harness.streamtools import mirror_repo, run, stream_setup
from harness.synctools import Setup, sync_setup

from mirrord.state import OrphanedImage, open_store


def prune_json(setup: Setup, *args: str) -> dict[str, Any]:
    result = run(setup, "prune", "-o", "json", *args)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def orphans(setup: Setup) -> list[OrphanedImage]:
    async def read() -> list[OrphanedImage]:
        async with open_store(setup.state_dir) as store:
            return await store.orphaned_images()

    return anyio.run(read)


def present(client: RegistryHTTP, repository: str, digests: list[str]) -> list[bool]:
    return [client.head_manifest(repository, d) is not None for d in digests]


def make_setup(
    tmp_path: Path, source: RegistryProcess, mirror: RegistryProcess, repo_name: str, **pruning: Any
) -> Setup:
    conf = {"from": f"{source.host}/{repo_name}", "to": "conf", "tags": ["shared"]}
    return stream_setup(
        tmp_path,
        source,
        mirror,
        prefix="pd",
        streams=[{**conf, "signatures": False}],
        extra={"pruning": {"keepYoungerThanDuration": "0s", **pruning}},
    )


def import_tags(setup: Setup, source: str, *tags: str) -> None:
    for tag in tags:
        args = ["import-image", f"imp:{tag}", "--from", f"{source}:{tag}", "--confirm"]
        result = run(setup, *args, "--import-mode", "preserveoriginal")
        assert result.exit_code == 0, result.output


def index_of(repo_name: str, tag: str, children: list[Image]) -> Image:
    manifests = [c.descriptor() for c in children]
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    raw = json.dumps(doc).encode()
    return Image(repo_name, tag, OCI_INDEX, sha256(raw), raw, children=tuple(children))


@pytest.fixture
def setup(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> Setup:
    return make_setup(tmp_path, basic_registry, mirror_registry, repo_name)


def test_prune_removes_a_deleted_streams_images_but_not_a_shared_one(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    shared = build_image(repo_name, "shared", seed="shared")
    own = build_image(repo_name, "own", seed="own")
    for image in (shared, own):
        push(basic_client, image)
    assert run(setup, "sync").exit_code == 0
    import_tags(setup, f"{basic_registry.host}/{repo_name}", "shared", "own")
    imp = mirror_repo(setup, "imp")
    assert present(mirror_client, imp, [shared.digest, own.digest]) == [True, True]

    deleted = run(setup, "delete", "imp", "--confirm")
    assert deleted.exit_code == 0, deleted.output
    assert "stay in the mirror until `mirrord prune --confirm`" in deleted.stdout
    assert {o.image for o in orphans(setup)} == {shared.digest, own.digest}

    listed = run(setup, "prune", "--dry-run")
    assert listed.exit_code == 0, listed.output
    assert "Deleting images of deleted image streams" in listed.stdout
    assert own.digest in listed.stdout and f"{imp}  {own.digest}" in listed.stdout
    assert "1 image of deleted streams would be deleted (1 kept: 1 in use" in listed.stdout
    dry = prune_json(setup)
    assert dry["manifests"] == [{"repository": imp, "digest": own.digest}]
    reasons = {o["image"]: o["keptBecause"] for o in dry["orphanedImages"]}
    assert reasons == {own.digest: None, shared.digest: "in use by a kept revision or index"}
    assert present(mirror_client, imp, [shared.digest, own.digest]) == [True, True]  # dry

    done = prune_json(setup, "--confirm")

    assert done["summary"]["orphanedImagesDeleted"] == 1
    assert done["summary"]["manifestsDeleted"] == 1
    assert present(mirror_client, imp, [shared.digest, own.digest]) == [True, False]
    assert mirror_client.head_manifest(imp, "own") is None  # its tag went with it
    assert mirror_client.head_manifest(mirror_repo(setup, "conf"), "shared") == shared.digest
    assert [o.image for o in orphans(setup)] == [shared.digest]  # waits for conf to drop it
    again = prune_json(setup, "--confirm")
    assert again["summary"]["orphanedImagesDeleted"] == 0 and again["manifests"] == []


def test_an_orphaned_index_goes_with_its_unshared_children(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    amd64 = build_image(repo_name, "shared", seed="amd64", platform=("linux", "amd64"))
    arm64 = build_image(repo_name, None, seed="arm64", platform=("linux", "arm64"))
    multi = index_of(repo_name, "multi", [amd64, arm64])
    push(basic_client, amd64)  # conf's image is the index's amd64 child
    push(basic_client, multi)
    assert run(setup, "sync").exit_code == 0
    import_tags(setup, f"{basic_registry.host}/{repo_name}", "multi")
    assert run(setup, "delete", "imp", "--yes").exit_code == 0

    done = prune_json(setup, "--confirm")

    imp = mirror_repo(setup, "imp")
    assert done["manifests"] == [
        {"repository": imp, "digest": multi.digest},  # the index before its child
        {"repository": imp, "digest": arm64.digest},
    ]
    assert present(mirror_client, imp, [multi.digest, arm64.digest, amd64.digest]) == [
        False,
        False,
        True,
    ]
    assert orphans(setup) == []


def test_young_and_still_configured_orphans_stay(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    setup = make_setup(
        tmp_path, basic_registry, mirror_registry, repo_name, keepYoungerThanDuration="60m"
    )
    own = build_image(repo_name, "own", seed="own")
    shared = build_image(repo_name, "shared", seed="shared")
    for image in (own, shared):
        push(basic_client, image)
    assert run(setup, "sync").exit_code == 0
    import_tags(setup, f"{basic_registry.host}/{repo_name}", "own")
    assert run(setup, "delete", "imp", "conf", "--confirm").exit_code == 0

    young = prune_json(setup, "--confirm")
    reasons = {o["image"]: o["keptBecause"] for o in young["orphanedImages"]}
    assert reasons == {
        own.digest: "keepYoungerThan",
        shared.digest: "its stream is still configured",
    }
    assert young["manifests"] == []

    old = prune_json(setup, "--confirm", "--keep-younger-than", "0s")
    assert old["manifests"] == [{"repository": mirror_repo(setup, "imp"), "digest": own.digest}]
    assert present(mirror_client, mirror_repo(setup, "conf"), [shared.digest]) == [True]
    # conf's next sync records its image again: the orphan is adopted, not deleted
    assert run(setup, "sync").exit_code == 0
    assert [o.image for o in orphans(setup)] == [shared.digest]
    adopted = prune_json(setup, "--confirm", "--keep-younger-than", "0s")
    assert adopted["orphanedImages"] == [] and adopted["manifests"] == []
    assert orphans(setup) == []
    assert present(mirror_client, mirror_repo(setup, "conf"), [shared.digest]) == [True]


def test_confirm_and_dry_run_together_are_a_usage_error(setup: Setup) -> None:
    both = run(setup, "prune", "--confirm", "--dry-run")
    assert both.exit_code == 2 and "contradict" in both.stderr


def test_an_oci_layout_mirror_loses_a_deleted_streams_refs_and_blobs(
    tmp_path: Path, basic_registry: RegistryProcess, basic_client: RegistryHTTP, repo_name: str
) -> None:
    layout = tmp_path / "layout"
    conf = {"from": f"{basic_registry.host}/{repo_name}", "to": "conf", "tags": ["shared"]}
    setup = sync_setup(
        tmp_path,
        mirror=f"oci:{layout}",
        streams=[{**conf, "signatures": False}],
        sources=[basic_registry],
        extra={"pruning": {"keepYoungerThanDuration": "0s"}},
    )
    shared = build_image(repo_name, "shared", seed="shared")
    own = build_image(repo_name, "own", seed="own")
    for image in (shared, own):
        push(basic_client, image)
    assert run(setup, "sync").exit_code == 0
    import_tags(setup, f"{basic_registry.host}/{repo_name}", "shared", "own")
    assert run(setup, "delete", "imp", "--confirm").exit_code == 0

    def refs() -> set[str]:
        index = json.loads((layout / "index.json").read_text())
        return {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}

    def on_disk(digest: str) -> bool:
        return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).exists()

    assert refs() == {"conf:shared", "imp:shared", "imp:own"}

    done = prune_json(setup, "--confirm")

    assert done["summary"]["orphanedImagesDeleted"] == 1
    assert refs() == {"conf:shared", "imp:shared"}  # the shared image stays for now
    own_blobs = [own.digest, *(b.digest for b in own.blobs if b not in shared.blobs)]
    assert len(own_blobs) >= 3 and not any(on_disk(d) for d in own_blobs)  # manifest, config, layer
    assert all(on_disk(d) for d in [shared.digest, *(b.digest for b in shared.blobs)])
    assert done["summary"]["blobsDeleted"] == len(own_blobs)


def test_without_prune_registry_the_orphans_wait_in_the_state_and_the_mirror(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    own = build_image(repo_name, "own", seed="own")
    push(basic_client, build_image(repo_name, "shared", seed="shared"))
    push(basic_client, own)
    assert run(setup, "sync").exit_code == 0
    import_tags(setup, f"{basic_registry.host}/{repo_name}", "own")
    assert run(setup, "delete", "imp", "--confirm").exit_code == 0

    metadata_only = prune_json(setup, "--confirm", "--no-prune-registry")

    assert metadata_only["orphanedImages"] == [] and metadata_only["manifests"] == []
    assert [o.image for o in orphans(setup)] == [own.digest]
    assert present(mirror_client, mirror_repo(setup, "imp"), [own.digest]) == [True]
    later = prune_json(setup, "--confirm")  # a run that may touch the mirror takes it
    assert later["manifests"] == [{"repository": mirror_repo(setup, "imp"), "digest": own.digest}]
    assert orphans(setup) == []

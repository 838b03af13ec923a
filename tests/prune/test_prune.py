"""`mirrord prune` against real registries, over histories built by real syncs of moving tags.

Each history: push a new image to the same source tag, `mirrord sync`, repeat. Every test
prunes with `keepYoungerThanDuration: 0s` unless it says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from click.testing import CliRunner, Result
from harness.images import (
    OCI_INDEX,
    Image,
    RegistryHTTP,
    build_image,
    build_index,
    make_layer,
    push,
    sha256,
)
from harness.registry import RegistryProcess
from harness.synctools import Setup, sync_setup

from mirrord.cli import main
from mirrord.config import load_config
from mirrord.prune import PruneOverrides, run_prune
from mirrord.state import JobRun, PrunerCondition, open_store
from mirrord.transports import ClientPool

DRY_RUN = "Dry run enabled - no modifications will be made. Add --confirm to remove images"


def prune(setup: Setup, *args: str) -> Result:
    return CliRunner().invoke(main, ["prune", "--config", str(setup.path), *args])


def prune_json(setup: Setup, *args: str) -> tuple[int, dict[str, Any]]:
    result = prune(setup, "-o", "json", *args)
    return result.exit_code, json.loads(result.stdout)


def setup_for(
    tmp_path: Path,
    source: RegistryProcess,
    repo: str,
    mirror: str,
    tags: list[str],
    pruning: dict[str, Any] | None = None,
    **stream: Any,
) -> Setup:
    return sync_setup(
        tmp_path,
        mirror=mirror,
        streams=[{"from": f"{source.host}/{repo}", "tags": tags, "signatures": False, **stream}],
        sources=[source],
        extra={"pruning": {"keepYoungerThanDuration": "0s", **(pruning or {})}},
    )


def push_and_sync(client: RegistryHTTP, setup: Setup, image: Image) -> str:
    push(client, image)
    code, summary = setup.sync_json()
    assert code == 0, summary
    return image.digest


def moving_tag(
    client: RegistryHTTP, setup: Setup, repo: str, tag: str, count: int, **kw: Any
) -> list[str]:
    """Push `count` images to `repo:tag`, syncing after each; the digests, newest first."""
    digests = [
        push_and_sync(client, setup, build_image(repo, tag, seed=f"{repo}/{tag}/{i}", **kw))
        for i in range(count)
    ]
    return digests[::-1]


def state(setup: Setup, query: str, *args: Any) -> Any:
    async def go() -> Any:
        async with open_store(setup.state_dir) as store:
            return await getattr(store, query)(*args)

    return anyio.run(go)


def history(setup: Setup, stream: str, tag: str) -> list[str]:
    status = state(setup, "get_tag", stream, tag)
    return [e.image for e in status.items] if status else []


def prune_jobs(setup: Setup) -> list[JobRun]:
    return list(state(setup, "list_jobs", 50, "prune"))


def conditions(setup: Setup) -> dict[str, PrunerCondition]:
    return {c.type: c for c in state(setup, "pruner_conditions", "pruner")}


def present(client: RegistryHTTP, repo: str, digests: list[str]) -> list[bool]:
    return [client.head_manifest(repo, digest) is not None for digest in digests]


@pytest.fixture
def mirror_url(mirror_registry: RegistryProcess) -> str:
    return f"docker://{mirror_registry.host}/prune"


def test_old_revisions_are_deleted_from_the_state_and_the_mirror(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    mirror_url: str,
    repo_name: str,
) -> None:
    setup = setup_for(
        tmp_path, basic_registry, repo_name, mirror_url, ["stable"], {"keepTagRevisions": 2}
    )
    digests = moving_tag(basic_client, setup, repo_name, "stable", 4)
    assert history(setup, repo_name, "stable") == digests
    mirror_repo = f"prune/{repo_name}"
    assert present(mirror_client, mirror_repo, digests) == [True] * 4

    result = prune(setup, "--confirm")

    assert result.exit_code == 0, result.output
    assert DRY_RUN not in result.output
    assert history(setup, repo_name, "stable") == digests[:2]
    assert present(mirror_client, mirror_repo, digests) == [True, True, False, False]
    assert mirror_client.head_manifest(mirror_repo, "stable") == digests[0]
    assert (
        "Summary: 2 tag revisions deleted, 2 manifests deleted, 1 image stream updated"
        in result.stdout
    )
    assert "registry garbage-collect" in result.stdout
    for digest in digests[2:]:
        assert digest in result.stdout
    [job] = prune_jobs(setup)
    assert job.status == "Succeeded" and job.finished is not None
    assert job.counts["tagRevisions"] == 2 and job.counts["manifests"] == 2
    assert job.counts["streams"] == 1
    found = conditions(setup)
    assert (found["Available"].status, found["Available"].reason) == ("True", "AsExpected")
    assert (found["Failed"].status, found["Failed"].reason) == ("False", "Complete")
    assert (found["Scheduled"].status, found["Scheduled"].reason) == ("True", "Scheduled")

    again = prune(setup, "--confirm")
    assert again.exit_code == 0
    assert "Summary: 0 tag revisions deleted, 0 manifests deleted" in again.stdout


def test_a_dry_run_changes_nothing(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    mirror_url: str,
    repo_name: str,
) -> None:
    setup = setup_for(
        tmp_path, basic_registry, repo_name, mirror_url, ["stable"], {"keepTagRevisions": 1}
    )
    digests = moving_tag(basic_client, setup, repo_name, "stable", 3)
    mark = mirror_registry.mark()

    result = prune(setup)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == DRY_RUN
    assert "2 tag revisions would be deleted, 2 manifests would be deleted" in result.stdout
    assert history(setup, repo_name, "stable") == digests
    assert present(mirror_client, f"prune/{repo_name}", digests) == [True] * 3
    assert [m for m, _ in mirror_registry.requests(since=mark) if m not in ("GET", "HEAD")] == []
    assert prune_jobs(setup) == [] and conditions(setup) == {}
    code, planned = prune_json(setup)
    assert code == 0 and planned["dryRun"] is True
    assert [r["image"] for r in planned["tagRevisions"]] == digests[1:]
    assert [m["digest"] for m in planned["manifests"]] == digests[1:]
    as_yaml = prune(setup, "-o", "yaml")  # the same document; the dry-run line on stderr
    assert as_yaml.exit_code == 0, as_yaml.output
    assert yaml.safe_load(as_yaml.stdout) == planned and DRY_RUN in as_yaml.stderr


def test_before_any_sync_a_dry_run_and_status_create_nothing(
    tmp_path: Path, basic_registry: RegistryProcess, repo_name: str
) -> None:
    """The embedded default: an OCI layout mirror inside a state directory not made yet."""
    layout = tmp_path / "state" / "mirror"
    setup = sync_setup(
        tmp_path,
        mirror=f"oci:{layout}",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": "app"}],
        sources=[basic_registry],
    )
    result = prune(setup)
    status = CliRunner().invoke(main, ["prune", "status", "--config", str(setup.path)])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == DRY_RUN
    assert "0 tag revisions would be deleted, 0 manifests would be deleted" in result.stdout
    assert status.exit_code == 0, status.output
    assert not setup.state_dir.exists()


def test_flags_override_the_configuration(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_url: str,
    repo_name: str,
) -> None:
    setup = setup_for(
        tmp_path,
        basic_registry,
        repo_name,
        mirror_url,
        ["stable"],
        {"keepTagRevisions": 3, "keepYoungerThanDuration": "60m", "pruneRegistry": True},
    )
    digests = moving_tag(basic_client, setup, repo_name, "stable", 3)

    code, by_config = prune_json(setup, "--keep-tag-revisions", "1")
    assert code == 0 and by_config["tagRevisions"] == []  # all younger than 60m

    code, by_flags = prune_json(
        setup, "--keep-tag-revisions", "1", "--keep-younger-than", "0s", "--no-prune-registry"
    )
    assert code == 0
    assert [r["image"] for r in by_flags["tagRevisions"]] == digests[1:]
    assert by_flags["manifests"] == [] and by_flags["settings"]["pruneRegistry"] is False
    bad = prune(setup, "--keep-younger-than", "1d")
    assert bad.exit_code == 2 and "Go syntax" in bad.output


def test_a_digest_shared_by_two_tags_survives_while_either_needs_it(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    mirror_url: str,
    repo_name: str,
) -> None:
    setup = setup_for(
        tmp_path, basic_registry, repo_name, mirror_url, ["a", "b"], {"keepTagRevisions": 1}
    )
    mirror_repo = f"prune/{repo_name}"
    shared = build_image(repo_name, "a", seed="shared")
    push(basic_client, shared, tag="b")
    push_and_sync(basic_client, setup, shared)
    y = push_and_sync(basic_client, setup, build_image(repo_name, "a", seed="y"))
    z = push_and_sync(basic_client, setup, build_image(repo_name, "a", seed="z"))
    assert history(setup, repo_name, "a") == [z, y, shared.digest]
    assert history(setup, repo_name, "b") == [shared.digest]

    assert prune(setup, "--confirm").exit_code == 0

    # b's current image is the shared digest: a's old revision of it stays too.
    assert history(setup, repo_name, "a") == [z, shared.digest]
    assert present(mirror_client, mirror_repo, [z, y, shared.digest]) == [True, False, True]

    w = push_and_sync(basic_client, setup, build_image(repo_name, "b", seed="w"))
    assert history(setup, repo_name, "b") == [w, shared.digest]
    assert prune(setup, "--confirm").exit_code == 0

    assert history(setup, repo_name, "a") == [z]
    assert history(setup, repo_name, "b") == [w]
    assert present(mirror_client, mirror_repo, [z, w, shared.digest]) == [True, True, False]


def _index(repo: str, tag: str, children: list[Image]) -> Image:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [c.descriptor() for c in children],
    }
    raw = json.dumps(doc).encode()
    return Image(repo, tag, OCI_INDEX, sha256(raw), raw, children=tuple(children))


def test_platform_manifests_a_kept_index_references_stay(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    mirror_url: str,
    repo_name: str,
) -> None:
    setup = setup_for(
        tmp_path, basic_registry, repo_name, mirror_url, ["multi"], {"keepTagRevisions": 1}
    )
    amd64 = build_image(repo_name, None, seed="amd64", platform=("linux", "amd64"))
    arm_old = build_image(repo_name, None, seed="arm-1", platform=("linux", "arm64"))
    arm_new = build_image(repo_name, None, seed="arm-2", platform=("linux", "arm64"))
    old = push_and_sync(basic_client, setup, _index(repo_name, "multi", [amd64, arm_old]))
    new = push_and_sync(basic_client, setup, _index(repo_name, "multi", [amd64, arm_new]))

    code, summary = prune_json(setup, "--confirm")

    assert code == 0, summary
    assert summary["summary"]["manifestsDeleted"] == 2
    digests = [new, amd64.digest, arm_new.digest, old, arm_old.digest]
    assert present(mirror_client, f"prune/{repo_name}", digests) == [True] * 3 + [False] * 2


def test_prune_registry_false_leaves_the_mirror_untouched(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    mirror_url: str,
    repo_name: str,
) -> None:
    setup = setup_for(
        tmp_path,
        basic_registry,
        repo_name,
        mirror_url,
        ["stable"],
        {"keepTagRevisions": 1, "pruneRegistry": False},
    )
    digests = moving_tag(basic_client, setup, repo_name, "stable", 3)
    mark = mirror_registry.mark()

    result = prune(setup, "--confirm")

    assert result.exit_code == 0, result.output
    assert history(setup, repo_name, "stable") == digests[:1]
    assert [m for m, _ in mirror_registry.requests(since=mark) if m not in ("GET", "HEAD")] == []
    assert present(mirror_client, f"prune/{repo_name}", digests) == [True] * 3
    assert "only mirrord's metadata is pruned" in result.stdout
    assert "2 tag revisions deleted, 0 manifests deleted" in result.stdout


def test_job_history_is_trimmed_to_the_limits(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_url: str,
    repo_name: str,
) -> None:
    setup = setup_for(
        tmp_path,
        basic_registry,
        repo_name,
        mirror_url,
        ["stable"],
        {"keepTagRevisions": 1, "successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1},
    )
    moving_tag(basic_client, setup, repo_name, "stable", 3)

    for _ in range(5):
        assert prune(setup, "--confirm").exit_code == 0

    jobs = prune_jobs(setup)
    assert len(jobs) == 2 and all(j.status == "Succeeded" for j in jobs)
    assert jobs[0].id > jobs[1].id
    assert [j.counts["tagRevisions"] for j in jobs] == [0, 0]  # the first run did the work
    assert len(state(setup, "list_jobs", 50, "sync")) == 2  # 3 syncs, the same limit


def test_conditions_keep_their_transition_time_until_the_status_flips(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_url: str,
    repo_name: str,
) -> None:
    setup = setup_for(tmp_path, basic_registry, repo_name, mirror_url, ["stable"])
    moving_tag(basic_client, setup, repo_name, "stable", 1)
    assert prune(setup, "--confirm").exit_code == 0
    first = conditions(setup)

    text = setup.path.read_text().replace("keepYoungerThanDuration: 0s", "suspend: true")
    setup.path.write_text(text)
    assert prune(setup, "--confirm").exit_code == 0
    second = conditions(setup)

    assert second["Available"] == first["Available"]
    assert second["Failed"] == first["Failed"]
    scheduled = second["Scheduled"]
    assert (scheduled.status, scheduled.reason) == ("False", "Suspended")
    assert scheduled.last_transition_time > first["Scheduled"].last_transition_time
    status = CliRunner().invoke(
        main, ["prune", "status", "--config", str(setup.path), "-o", "json"]
    )
    assert status.exit_code == 0, status.output
    shown = {c["type"]: c for c in json.loads(status.stdout)["conditions"]}
    assert shown["Scheduled"]["reason"] == "Suspended"
    assert shown["Failed"]["status"] == "False" and len(json.loads(status.stdout)["jobs"]) == 2
    text_status = CliRunner().invoke(main, ["prune", "--config", str(setup.path), "status"])
    assert text_status.exit_code == 0 and "Suspended" in text_status.stdout


def test_deletes_disabled_fails_clearly_and_changes_nothing(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    registry_factory: Any,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    mirror = registry_factory(delete_enabled=False)
    setup = setup_for(
        tmp_path,
        basic_registry,
        repo_name,
        f"docker://{mirror.host}/prune",
        ["stable"],
        {"keepTagRevisions": 1, "failedJobsHistoryLimit": 1},
    )
    digests = moving_tag(basic_client, setup, repo_name, "stable", 2)

    result = prune(setup, "--confirm")

    assert result.exit_code == 1
    assert "storage.delete.enabled: true" in result.stderr
    assert "405" in result.stderr
    assert history(setup, repo_name, "stable") == digests  # the state drives a retry
    with mirror.client() as client:
        assert present(client, f"prune/{repo_name}", digests) == [True, True]
    [job] = prune_jobs(setup)
    assert job.status == "Failed" and "storage.delete.enabled: true" in job.message
    failed = conditions(setup)["Failed"]
    assert (failed.status, failed.reason) == ("True", "DeletesDisabled")
    assert "storage.delete.enabled: true" in failed.message

    assert prune(setup, "--confirm").exit_code == 1
    assert [j.status for j in prune_jobs(setup)] == ["Failed"]  # failedJobsHistoryLimit: 1


def test_oci_layout_blob_gc_removes_only_unreferenced_blobs(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    layout = tmp_path / "layout"
    base = make_layer(4096, f"base/{repo_name}")
    setup = setup_for(tmp_path, basic_registry, repo_name, f"oci:{layout}", ["stable"])
    images = [build_image(repo_name, "stable", seed=f"oci/{i}", layers=(base,)) for i in range(5)]
    for image in images:
        push_and_sync(basic_client, setup, image)
    newest, kept, pinned, gone1, gone2 = images[::-1]
    text = setup.path.read_text().replace(
        "signatures: false", f"signatures: false\n  pinned: ['{pinned.digest}']"
    )
    setup.path.write_text(text)
    orphan = layout / "blobs" / "sha256" / sha256(b"orphan").removeprefix("sha256:")
    orphan.write_bytes(b"orphan")
    config = load_config(setup.path)

    async def go() -> Any:
        async with open_store(setup.state_dir) as store, ClientPool(config) as pool:
            dry = await run_prune(
                config, store, pool, confirm=False, overrides=PruneOverrides(keep_tag_revisions=2)
            )
            assert [f.name for f in sorted(layout.rglob("*")) if f.is_file()] == names
            done = await run_prune(
                config, store, pool, confirm=True, overrides=PruneOverrides(keep_tag_revisions=2)
            )
            return dry, done

    names = [f.name for f in sorted(layout.rglob("*")) if f.is_file()]
    dry, done = anyio.run(go)

    def on_disk(digest: str) -> bool:
        return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).exists()

    assert done.ok and done.revisions_deleted == 2
    assert history(setup, repo_name, "stable") == [newest.digest, kept.digest, pinned.digest]
    for image in (newest, kept, pinned):  # index.json names only the newest
        assert all(on_disk(x) for x in [image.digest, *(b.digest for b in image.blobs)])
    for image in (gone1, gone2):
        own = [image.digest, image.config.digest if image.config else "", image.layers[1].digest]
        assert not any(on_disk(x) for x in own)
    assert on_disk(base.digest) and not orphan.exists()
    assert done.blobs_deleted == 7 and dry.blobs_deleted == 7
    assert dry.bytes_freed == done.bytes_freed > 0
    assert len(done.manifests_deleted) == 2 and done.manifests_gone == []
    index = json.loads((layout / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [newest.digest]


def test_a_digest_a_tag_mirrord_did_not_write_names_is_kept_with_its_tag(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    mirror_url: str,
    repo_name: str,
) -> None:
    """The registry deletes by digest, and with it every tag naming it: an admin's own
    `prod` tag on an old revision must survive the pruning of that revision."""
    setup = setup_for(
        tmp_path, basic_registry, repo_name, mirror_url, ["stable"], {"keepTagRevisions": 1}
    )
    digests = moving_tag(basic_client, setup, repo_name, "stable", 3)
    mirror_repo = f"prune/{repo_name}"
    old = mirror_client.get_manifest(mirror_repo, digests[1])
    mirror_client.put_manifest(mirror_repo, "prod", old.raw, old.media_type)  # by hand

    code, planned = prune_json(setup)
    result = prune(setup, "--confirm")

    assert code == 0 and planned["manifests"] == [{"repository": mirror_repo,
                                                   "digest": digests[2]}]
    assert planned["keptForForeignTags"] == [
        {"repository": mirror_repo, "digest": digests[1], "tag": "prod"}]
    assert result.exit_code == 0, result.output
    assert "the mirror's tag 'prod', which mirrord did not write, names it" in result.output
    assert mirror_client.head_manifest(mirror_repo, "prod") == digests[1]
    assert present(mirror_client, mirror_repo, digests) == [True, True, False]
    assert history(setup, repo_name, "stable") == digests[:1]  # the state is pruned still


def test_an_index_a_foreign_tag_names_keeps_its_children(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    mirror_url: str,
    repo_name: str,
) -> None:
    setup = setup_for(
        tmp_path, basic_registry, repo_name, mirror_url, ["stable"], {"keepTagRevisions": 1}
    )
    old, new = (build_index(repo_name, "stable", seed=f"{repo_name}/{i}") for i in range(2))
    for index in (old, new):
        push_and_sync(basic_client, setup, index)
    mirror_repo = f"prune/{repo_name}"
    mirror_client.put_manifest(mirror_repo, "prod", old.raw, old.media_type)  # by hand

    result = prune(setup, "--confirm")

    assert result.exit_code == 0, result.output
    children = [c.digest for c in old.children]
    assert present(mirror_client, mirror_repo, [old.digest, *children]) == [True] * (
        1 + len(children))
    assert mirror_client.get_manifest(mirror_repo, "prod").digest == old.digest

"""Image-stream history and conditions over several `mirrord sync` runs (real registries).

A source tag that moves, disappears and fails auth; reference policies. Everything is
read back the way a user reads it: `mirrord describe -o json` (OpenShift's fields).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
from click.testing import CliRunner, Result
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.synctools import Setup, sync_setup, write_auth_file

from mirrord.cli import main
from mirrord.config import load_config
from mirrord.core.imagestream import TagStatus
from mirrord.state import open_store


def run(setup: Setup, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--config", str(setup.path)])


def status_tags(setup: Setup, name: str) -> dict[str, dict[str, Any]]:
    """`status.tags` of `mirrord describe NAME -o json`, by tag."""
    result = run(setup, "describe", name, "-o", "json")
    assert result.exit_code == 0, result.output
    return {t["tag"]: t for t in json.loads(result.stdout)["status"]["tags"]}


def stored_tag(setup: Setup, stream: str, tag: str) -> TagStatus:
    async def read() -> TagStatus | None:
        async with open_store(setup.state_dir) as store:
            return await store.get_tag(stream, tag)

    found = anyio.run(read)
    assert found is not None
    return found


def config(
    tmp_path: Path, source: RegistryProcess, mirror: RegistryProcess, streams: list[dict[str, Any]]
) -> Setup:
    return sync_setup(
        tmp_path,
        mirror=f"docker://{mirror.host}/is-{uuid.uuid4().hex[:8]}",
        streams=streams,
        sources=[source],
    )


def test_a_moved_tag_gets_a_second_history_item_newest_first(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = f"{basic_registry.host}/{repo_name}"
    first = push_image(basic_client, repo_name, "stable", seed=f"{repo_name}-1")
    setup = config(tmp_path, basic_registry, mirror_registry, [{"from": source, "to": "app"}])
    assert run(setup, "sync").exit_code == 0

    moved = push_image(basic_client, repo_name, "stable", seed=f"{repo_name}-2")
    assert run(setup, "sync").exit_code == 0
    assert run(setup, "sync").exit_code == 0  # unchanged: no third item

    items = status_tags(setup, "app")["stable"]["items"]
    assert [i["image"] for i in items] == [moved.digest, first.digest]
    assert items[0]["dockerImageReference"] == f"{source}@{moved.digest}"
    assert items[0]["created"] >= items[1]["created"]
    described = run(setup, "describe", "app").stdout
    assert described.index(f"  * {source}@{moved.digest}") < described.index(
        f"    {source}@{first.digest}"
    )


def test_a_tag_deleted_upstream_stays_in_history(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = f"{basic_registry.host}/{repo_name}"
    keep = push_image(basic_client, repo_name, "keep", seed=f"{repo_name}-keep")
    gone = push_image(basic_client, repo_name, "gone", seed=f"{repo_name}-gone")
    setup = config(
        tmp_path,
        basic_registry,
        mirror_registry,
        [
            {"from": source, "to": "every"},  # all tags
            {"from": source, "to": "listed", "tags": ["keep", "gone"]},
        ],
    )
    assert run(setup, "sync").exit_code == 0

    basic_client.delete_manifest(repo_name, gone.digest)
    assert basic_client.tags(repo_name) == ["keep"]
    result = run(setup, "sync")

    # Selecting all tags, the gone tag is simply no longer selected: nothing fails.
    every = status_tags(setup, "every")
    assert [i["image"] for i in every["gone"]["items"]] == [gone.digest]
    assert "conditions" not in every["gone"] and "conditions" not in every["keep"]
    # Listed explicitly, it is missing: NotFound, its history kept, the other tag fine.
    listed = status_tags(setup, "listed")
    assert [i["image"] for i in listed["gone"]["items"]] == [gone.digest]
    assert listed["gone"]["conditions"][0]["reason"] == "NotFound"
    assert [i["image"] for i in listed["keep"]["items"]] == [keep.digest]
    assert "conditions" not in listed["keep"]
    assert result.exit_code == 1  # an explicitly listed tag failed
    # oc never deletes: the mirror still serves the tag.
    prefix = load_config(setup.path).mirror.prefix
    assert mirror_client.head_manifest(f"{prefix}/every", "gone") == gone.digest


def test_an_auth_failure_is_one_condition_until_the_next_success(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = f"{basic_registry.host}/{repo_name}"
    image = push_image(basic_client, repo_name, "1.0", seed=repo_name)
    setup = config(
        tmp_path, basic_registry, mirror_registry, [{"from": source, "to": "app", "tags": ["1.0"]}]
    )
    assert run(setup, "sync").exit_code == 0
    assert basic_registry.username is not None
    wrong = "not-the-Pa55word-" + uuid.uuid4().hex
    write_auth_file(setup.auth_file, {basic_registry.host: (basic_registry.username, wrong)})

    failed = run(setup, "sync")
    first = stored_tag(setup, "app", "1.0").condition()
    again = run(setup, "sync")
    second = stored_tag(setup, "app", "1.0").condition()

    assert failed.exit_code == 1 and again.exit_code == 1
    assert first is not None and second is not None
    assert (first.type, first.status, first.reason) == ("ImportSuccess", "False", "Unauthorized")
    assert basic_registry.host in first.message and str(setup.auth_file) in first.message
    conditions = status_tags(setup, "app")["1.0"]["conditions"]
    assert len(conditions) == 1  # not duplicated
    assert second.last_transition_time == first.last_transition_time
    for text in (first.message, failed.output, again.output, run(setup, "describe", "app").output):
        assert wrong not in text
    described = run(setup, "describe", "app").stdout
    assert "! error: Import failed (Unauthorized)" in described

    write_auth_file(
        setup.auth_file,
        {basic_registry.host: (basic_registry.username, basic_registry.password or "")},
    )
    assert run(setup, "sync").exit_code == 0
    tag = status_tags(setup, "app")["1.0"]
    assert "conditions" not in tag
    assert [i["image"] for i in tag["items"]] == [image.digest]  # history untouched


def test_reference_policy_source_records_upstream_local_records_the_mirror(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = f"{basic_registry.host}/{repo_name}"
    image = push_image(basic_client, repo_name, "1.0", seed=repo_name)
    setup = config(
        tmp_path,
        basic_registry,
        mirror_registry,
        [
            {"from": source, "to": "by-source", "tags": ["1.0"]},
            {"from": source, "to": "by-mirror", "tags": ["1.0"], "reference_policy": "Local"},
        ],
    )
    assert run(setup, "sync").exit_code == 0

    listed = json.loads(run(setup, "streams", "-o", "json").stdout)
    by_name = {s["metadata"]["name"]: s for s in listed["items"]}
    local = by_name["by-mirror"]
    upstream = by_name["by-source"]
    assert upstream["status"]["tags"][0]["items"][0]["dockerImageReference"] == (
        f"{source}@{image.digest}"
    )
    mirror_repository = local["status"]["dockerImageRepository"]
    assert mirror_repository.startswith(f"{mirror_registry.host}/is-")
    assert mirror_repository.endswith("/by-mirror")
    assert local["status"]["tags"][0]["items"][0]["dockerImageReference"] == (
        f"{mirror_repository}@{image.digest}"
    )
    assert local["spec"]["tags"][0]["referencePolicy"] == {"type": "Local"}


def last_synced(setup: Setup, name: str) -> str | None:
    """The `openshift.io/image.dockerRepositoryCheck` annotation of `describe -o json`."""
    result = run(setup, "describe", name, "-o", "json")
    assert result.exit_code == 0, result.output
    annotations = json.loads(result.stdout)["metadata"].get("annotations", {})
    return annotations.get("openshift.io/image.dockerRepositoryCheck")


def test_last_synced_moves_only_when_every_tag_reached_the_mirror(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = f"{basic_registry.host}/{repo_name}"
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    setup = config(
        tmp_path,
        basic_registry,
        mirror_registry,
        [{"from": source, "to": "app", "tags": ["1.0", "2.0"]}],  # 2.0 does not exist yet
    )
    assert run(setup, "sync").exit_code == 1
    assert last_synced(setup, "app") is None
    assert re.search(r"^Last Synced: +never$", run(setup, "describe", "app").stdout, re.M)

    push_image(basic_client, repo_name, "2.0", seed=f"{repo_name}-2")
    assert run(setup, "sync").exit_code == 0
    first = last_synced(setup, "app")
    assert first is not None
    assert re.search(r"^Last Synced: +\S.* ago$", run(setup, "describe", "app").stdout, re.M)

    time.sleep(1.1)  # the annotation is to the second
    assert run(setup, "sync").exit_code == 0  # a no-op run is a successful sync too
    second = last_synced(setup, "app")
    assert second is not None and second > first

    assert basic_registry.username is not None
    wrong = "not-the-Pa55word-" + uuid.uuid4().hex
    write_auth_file(setup.auth_file, {basic_registry.host: (basic_registry.username, wrong)})
    time.sleep(1.1)
    assert run(setup, "sync").exit_code == 1
    assert last_synced(setup, "app") == second


def test_a_stream_whose_tags_cannot_be_listed_shows_its_failure(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """All tags selected, never synced, the listing refused: no tag carries the failure,
    so the stream itself does, until a run lists the tags again."""
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    source = f"{basic_registry.host}/{repo_name}"
    setup = config(tmp_path, basic_registry, mirror_registry, [{"from": source, "to": "app"}])
    assert basic_registry.username is not None
    wrong = "not-the-Pa55word-" + uuid.uuid4().hex
    write_auth_file(setup.auth_file, {basic_registry.host: (basic_registry.username, wrong)})

    assert run(setup, "sync").exit_code == 1
    listed = run(setup, "streams").stdout.splitlines()
    described = run(setup, "describe", "app").stdout
    document = json.loads(run(setup, "describe", "app", "-o", "json").stdout)

    assert listed[1].split()[-2:] == ["stream", "failing"]  # FAILING: the stream as a whole
    assert "! error: Import failed (Unauthorized):" in described
    assert basic_registry.host in described and wrong not in described
    failure = document["metadata"]["annotations"]["mirrord.io/import-failure"]
    assert failure.startswith("Unauthorized: ") and wrong not in failure

    write_auth_file(
        setup.auth_file,
        {basic_registry.host: (basic_registry.username, basic_registry.password or "")},
    )
    assert run(setup, "sync").exit_code == 0
    assert "! error" not in run(setup, "describe", "app").stdout
    assert run(setup, "streams").stdout.splitlines()[1].split()[-2:] == ["0", "synced"]


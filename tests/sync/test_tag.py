"""`mirrord tag SOURCE STREAM:TAG` (sync/_tag.py) and `describe STREAM:TAG`, end to end
against real registries: the image lands in the mirror, the history gains an event, and
the stream's own runs leave the tag where it was pointed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.streamtools import mirror_repo, run, stored_stream, stream_setup
from harness.synctools import Setup

from mirrord.core.imagestream import TAGGED, tag_origin


@pytest.fixture
def setup(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> Setup:
    """A configured stream `app` importing tag 1.0 of the test's repository."""
    app = {"from": f"{basic_registry.host}/{repo_name}", "to": "app", "tags": ["1.0"]}
    return stream_setup(tmp_path, basic_registry, mirror_registry, prefix="tg", streams=[app])


def test_tag_points_a_stream_tag_at_another_source_tag(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "1.0", seed="one")
    other = push_image(basic_client, f"{repo_name}-other", "2.0", seed="two")
    assert run(setup, "sync").exit_code == 0
    source = f"{basic_registry.host}/{repo_name}-other:2.0"

    tagged = run(setup, "tag", source, "app:stable")

    assert tagged.exit_code == 0, tagged.output
    assert f"tag: app:stable set to {source}" in tagged.stdout
    assert mirror_client.head_manifest(mirror_repo(setup, "app"), "stable") == other.digest
    status = stored_stream(setup, "app").tag("stable")
    assert status is not None and status.items[0].image == other.digest
    assert status.items[0].docker_image_reference == (
        f"{basic_registry.host}/{repo_name}-other@{other.digest}"
    )
    assert tag_origin(status) == f"DockerImage {source}"
    # describe shows where it was tagged from; the OpenShift view puts that in spec
    text = run(setup, "describe", "app").stdout
    assert f"stable\n  tagged from {source}\n" in text
    doc = json.loads(run(setup, "describe", "app", "-o", "json").stdout)
    spec = {t["name"]: t for t in doc["spec"]["tags"]}
    assert spec["stable"]["from"] == {"kind": "DockerImage", "name": source}
    assert all(c["type"] != TAGGED for t in doc["status"]["tags"] for c in t.get("conditions", []))


def test_scheduled_runs_leave_a_tagged_tag_alone(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """An import-image stream re-imports its tags: not the one tagged from elsewhere."""
    push_image(basic_client, repo_name, "1.0", seed="one")
    other = push_image(basic_client, f"{repo_name}-o", "x", seed="x")
    source = f"{basic_registry.host}/{repo_name}"
    assert (
        run(setup, "import-image", "imp:1.0", "--from", source, "--confirm", "--scheduled")
    ).exit_code == 0
    assert run(setup, "tag", f"{basic_registry.host}/{repo_name}-o:x", "imp:pinned").exit_code == 0

    again = run(setup, "sync", "-o", "json")  # scheduled: `imp` runs, `pinned` stays
    assert again.exit_code == 0, again.output
    images = json.loads(again.stdout)["images"]
    assert images["failed"] == 0
    assert images["copied"] + images["unchanged"] == 2  # app:1.0 and imp:1.0, not pinned
    assert mirror_client.head_manifest(mirror_repo(setup, "imp"), "pinned") == other.digest
    pinned = stored_stream(setup, "imp").tag("pinned")
    assert pinned is not None and not pinned.conditions[1:] and len(pinned.items) == 1

    # import-image of the tag points it back at the stream's source (which lacks it)
    back = run(setup, "import-image", "imp:pinned")
    assert back.exit_code == 1 and "pinned" in back.stderr


def test_tag_within_a_stream_and_one_tags_history(
    setup: Setup, basic_client: RegistryHTTP, mirror_client: RegistryHTTP, repo_name: str
) -> None:
    first = push_image(basic_client, repo_name, "1.0", seed="one")
    assert run(setup, "sync").exit_code == 0

    assert run(setup, "tag", "app:1.0", "app:prod").exit_code == 0
    moved = push_image(basic_client, repo_name, "1.0", seed="moved")
    assert run(setup, "sync").exit_code == 0
    assert run(setup, "tag", "app:1.0", "app:prod").exit_code == 0

    assert mirror_client.head_manifest(mirror_repo(setup, "app"), "prod") == moved.digest
    prod = stored_stream(setup, "app").tag("prod")
    assert prod is not None
    assert [e.image for e in prod.items] == [moved.digest, first.digest]  # newest first
    assert tag_origin(prod) == "ImageStreamTag app:1.0"
    one = run(setup, "describe", "app:prod")
    assert one.exit_code == 0
    assert one.stdout.startswith("Name:              app:prod\n")
    assert "  tagged from app:1.0\n" in one.stdout
    assert one.stdout.count("@sha256:") == 2 and "\n  * " in one.stdout
    as_yaml = yaml.safe_load(run(setup, "describe", "app:prod", "-o", "yaml").stdout)
    assert as_yaml["stream"] == "app" and as_yaml["tag"] == "prod"
    assert [i["image"] for i in as_yaml["items"]] == [moved.digest, first.digest]
    assert run(setup, "describe", "app:nope").exit_code == 1


def test_tag_refusals(
    setup: Setup, basic_registry: RegistryProcess, basic_client: RegistryHTTP, repo_name: str
) -> None:
    push_image(basic_client, repo_name, "1.0", seed="one")
    assert run(setup, "sync").exit_code == 0
    other = f"{basic_registry.host}/{repo_name}:1.0"

    selected = run(setup, "tag", other, "app:1.0")
    assert selected.exit_code == 1
    assert "its next sync would point it back" in selected.stderr
    for source, target in (("app:1.0", "app"), ("app:1.0", "app:1.0"), ("a b", "app:x")):
        refused = run(setup, "tag", source, target)
        assert refused.exit_code == 2, (source, target, refused.output)
        assert refused.stderr.startswith("error: ") and "Traceback" not in refused.output
    missing = run(setup, "tag", f"{basic_registry.host}/{repo_name}:absent", "new:x")
    assert missing.exit_code == 1 and "manifest unknown" in missing.stderr
    assert run(setup, "describe", "new").exit_code == 1  # a failed tag creates no stream


def test_tag_creates_a_stream_that_every_command_reaches(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    image = push_image(basic_client, repo_name, "1.0", seed="one")

    made = run(setup, "tag", f"{basic_registry.host}/{repo_name}:1.0", "tools/cli:v1")

    assert made.exit_code == 0, made.output
    assert mirror_client.head_manifest(mirror_repo(setup, "tools/cli"), "v1") == image.digest
    created = stored_stream(setup, "tools/cli")
    assert created.created_by == "import-image" and not created.scheduled
    listed = run(setup, "streams").stdout
    assert any(line.split()[0] == "tools/cli" for line in listed.splitlines()[1:])
    nothing = run(setup, "sync", "--stream", "tools/cli")
    assert nothing.exit_code == 2 and "has no tags to import" in nothing.stderr
    assert run(setup, "delete", "tools/cli", "--yes").exit_code == 0

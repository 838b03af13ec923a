"""`mirrord tag --alias` and `--scheduled` (oc tag's): the tag follows its source on the
stream's later runs; and every tag move is notified as a sync's is. Real registries, a
real webhook receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.streamtools import mirror_repo, run, stored_stream, stream_setup
from harness.synctools import Setup
from harness.webhooks import Receiver, serving

from mirrord.core.imagestream import (
    IMPORT_SUCCESS,
    TAG_ALIAS,
    TAG_ONCE,
    TAG_SCHEDULED,
    tag_policy,
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as server:
        yield server


@pytest.fixture
def setup(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    repo_name: str,
    receiver: Receiver,
) -> Setup:
    """A configured stream `app` importing tag 1.0, and a webhook receiver of pushes."""
    app = {"from": f"{basic_registry.host}/{repo_name}", "to": "app", "tags": ["1.0"]}
    hooks = {"notifications": [{"url": receiver.url, "events": ["push"]}]}
    return stream_setup(
        tmp_path, basic_registry, mirror_registry, prefix="tf", streams=[app], extra=hooks
    )


def history(setup: Setup, stream: str, tag: str) -> list[str]:
    status = stored_stream(setup, stream).tag(tag)
    assert status is not None
    return [e.image for e in status.items]


def test_an_alias_moves_with_its_source_tag_and_a_plain_tag_does_not(
    setup: Setup, basic_client: RegistryHTTP, mirror_client: RegistryHTTP, repo_name: str
) -> None:
    first = push_image(basic_client, repo_name, "1.0", seed="one")
    assert run(setup, "sync").exit_code == 0

    alias = run(setup, "tag", "--alias", "app:1.0", "app:prod")
    assert alias.exit_code == 0, alias.output
    assert "tag: app:prod set up to track app:1.0" in alias.stdout
    assert "tracks app:1.0: moves with it on every run of app" in alias.stdout
    assert run(setup, "tag", "app:1.0", "app:frozen").exit_code == 0
    moved = push_image(basic_client, repo_name, "1.0", seed="moved")
    plan = run(setup, "sync", "--dry-run")  # says which tags the run would follow
    assert plan.exit_code == 0, plan.output
    assert "follow    prod" in plan.stdout and "app:1.0 (moves with it" in plan.stdout
    assert "frozen" not in plan.stdout
    out = run(setup, "sync", "--dry-run", "-o", "json").stdout
    planned = json.loads(out[out.index("{") :])
    assert planned["followed"] == {"app": [{"tag": "prod", "policy": "Alias", "from": "app:1.0"}]}

    synced = run(setup, "sync")

    assert synced.exit_code == 0, synced.output
    app = mirror_repo(setup, "app")
    assert mirror_client.head_manifest(app, "1.0") == moved.digest
    assert mirror_client.head_manifest(app, "prod") == moved.digest
    assert mirror_client.head_manifest(app, "frozen") == first.digest
    assert history(setup, "app", "prod") == [moved.digest, first.digest]
    assert history(setup, "app", "frozen") == [first.digest]
    stream = stored_stream(setup, "app")
    policies = {t.tag: tag_policy(t) for t in stream.tags}
    assert policies == {"1.0": None, "prod": TAG_ALIAS, "frozen": TAG_ONCE}
    # a run with nothing new moves nothing
    assert run(setup, "sync").exit_code == 0
    assert history(setup, "app", "prod") == [moved.digest, first.digest]


def test_a_scheduled_tag_is_reimported_on_every_run_of_its_stream(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "1.0", seed="app")  # the configured stream's
    first = push_image(basic_client, f"{repo_name}-tools", "v1", seed="one")
    source = f"{basic_registry.host}/{repo_name}-tools:v1"

    made = run(setup, "tag", "--scheduled", source, "tools/cli:v1")

    assert made.exit_code == 0, made.output
    assert f"set to import {source} periodically" in made.stdout
    created = stored_stream(setup, "tools/cli")
    assert created.scheduled  # so the daemon (and a plain sync) runs it
    doc = json.loads(run(setup, "describe", "tools/cli", "-o", "json").stdout)
    [spec] = doc["spec"]["tags"]
    assert spec["importPolicy"]["scheduled"] is True
    assert spec["from"] == {"kind": "DockerImage", "name": source}
    moved = push_image(basic_client, f"{repo_name}-tools", "v1", seed="moved")

    out = run(setup, "sync")
    assert out.exit_code == 0, out.output  # every scheduled stream, the tag followed

    cli = mirror_repo(setup, "tools/cli")
    assert mirror_client.head_manifest(cli, "v1") == moved.digest
    assert history(setup, "tools/cli", "v1") == [moved.digest, first.digest]
    again = run(setup, "sync", "--stream", "tools/cli")  # reachable by name, nothing new
    assert again.exit_code == 0, again.output
    assert history(setup, "tools/cli", "v1") == [moved.digest, first.digest]
    status = stored_stream(setup, "tools/cli").tag("v1")
    assert status is not None and tag_policy(status) == TAG_SCHEDULED


def test_alias_and_scheduled_follow_oc_tags_rules(
    setup: Setup, basic_registry: RegistryProcess, basic_client: RegistryHTTP, repo_name: str
) -> None:
    push_image(basic_client, repo_name, "1.0", seed="one")
    assert run(setup, "sync").exit_code == 0
    image = f"{basic_registry.host}/{repo_name}:1.0"
    digest = stored_stream(setup, "app").tags[0].items[0].image
    usage = [
        (["--alias", "--scheduled", "app:1.0", "app:x"], "may not both be specified"),
        (["--alias", image, "app:x"], "--alias follows another tag of the same stream"),
        (["--alias", "app:1.0", "other:x"], "across different image streams"),
        (["--scheduled", "app:1.0", "app:x"], "--scheduled re-imports an image by its tag"),
        (["--scheduled", f"{basic_registry.host}/{repo_name}@{digest}", "app:x"], "by its tag"),
    ]
    for args, message in usage:
        refused = run(setup, "tag", *args)
        assert refused.exit_code == 2, (args, refused.output)
        assert message in refused.stderr and "Traceback" not in refused.output
    # a stored stream nobody schedules would never re-import the tag
    src = f"{basic_registry.host}/{repo_name}"
    made = run(setup, "import-image", "manual:1.0", "--from", src, "--confirm", "--no-scheduled")
    assert made.exit_code == 0, made.output
    unscheduled = run(setup, "tag", "--scheduled", image, "manual:x")
    assert unscheduled.exit_code == 1
    assert 'the image stream "manual" is not scheduled' in unscheduled.stderr
    assert "`mirrord import-image manual:1.0 --scheduled`" in unscheduled.stderr
    assert stored_stream(setup, "manual").tag("x") is None
    # the hint works: scheduled, the stream takes the tag
    hinted = run(setup, "import-image", "manual:1.0", "--scheduled")
    assert hinted.exit_code == 0, hinted.output
    assert stored_stream(setup, "manual").scheduled
    assert run(setup, "tag", "--scheduled", image, "manual:x").exit_code == 0


def test_a_tag_that_moves_is_notified_as_a_sync_notifies(
    setup: Setup,
    receiver: Receiver,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    first = push_image(basic_client, repo_name, "1.0", seed="one")
    assert run(setup, "sync").exit_code == 0
    other = push_image(basic_client, f"{repo_name}-o", "2.0", seed="two")
    source = f"{basic_registry.host}/{repo_name}-o:2.0"
    assert [e["target"]["tag"] for e in receiver.events()] == ["1.0"]  # the sync's

    assert run(setup, "tag", source, "app:stable").exit_code == 0

    event = receiver.events()[-1]
    assert event["action"] == "push"
    assert event["target"]["tag"] == "stable"
    assert event["target"]["digest"] == other.digest
    assert event["target"]["repository"] == mirror_repo(setup, "app")
    assert event["target"]["size"] > 0 and event["target"]["mediaType"]
    assert event["source"]["stream"] == "app" and event["source"]["upstream"] == source
    assert event["previousDigest"] is None
    # the same image again: the tag does not move, nothing is sent
    assert run(setup, "tag", source, "app:stable").exit_code == 0
    assert len(receiver.events()) == 2
    # a re-tag within the stream moves `stable` back: previousDigest says from where
    assert run(setup, "tag", "app:1.0", "app:stable").exit_code == 0
    last = receiver.events()[-1]
    assert (last["target"]["tag"], last["target"]["digest"]) == ("stable", first.digest)
    assert last["previousDigest"] == other.digest
    # an alias moved by a sync is notified by that sync
    assert run(setup, "tag", "--alias", "app:1.0", "app:prod").exit_code == 0
    moved = push_image(basic_client, repo_name, "1.0", seed="moved")
    assert run(setup, "sync").exit_code == 0
    moves = [(e["target"]["tag"], e["target"]["digest"]) for e in receiver.events()[-2:]]
    assert sorted(moves) == [("1.0", moved.digest), ("prod", moved.digest)]


def test_a_scheduled_tag_that_fails_is_marked_and_recovers(
    setup: Setup,
    basic_client: RegistryHTTP,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """The upstream tag vanishes: the run still succeeds, the tag carries
    ImportSuccess=False; it comes back: the next run clears that, adding no event."""
    push_image(basic_client, repo_name, "1.0", seed="app")
    upstream = f"up-{repo_name}"  # on a registry that allows deletes
    image = push_image(mirror_client, upstream, "v1", seed="v1")
    assert run(setup, "sync").exit_code == 0
    made = run(setup, "tag", "--scheduled", f"{mirror_registry.host}/{upstream}:v1", "app:ext")
    assert made.exit_code == 0, made.output
    mirror_client.delete_manifest(upstream, image.digest)

    failing = run(setup, "sync")

    assert failing.exit_code == 0, failing.output  # the stream's own tags were mirrored
    assert "following" in failing.output and "manifest unknown" in failing.output
    status = stored_stream(setup, "app").tag("ext")
    assert status is not None
    condition = status.condition(IMPORT_SUCCESS)
    assert condition is not None and condition.status == "False"
    assert condition.reason == "NotFound"
    assert mirror_client.head_manifest(mirror_repo(setup, "app"), "ext") == image.digest

    push_image(mirror_client, upstream, "v1", seed="v1")  # the same image again
    assert run(setup, "sync").exit_code == 0

    status = stored_stream(setup, "app").tag("ext")
    assert status is not None and status.condition(IMPORT_SUCCESS) is None
    assert [e.image for e in status.items] == [image.digest]
    assert tag_policy(status) == TAG_SCHEDULED

"""`mirrord import-image` end to end: real registries, the CLI, several runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness.images import RegistryHTTP, push, push_image
from harness.registry import RegistryProcess
from harness.streamtools import mirror_repo, run, stored, stream_setup
from harness.synctools import Setup, sync_setup

from mirrord.config import load_config
from mirrord.core.imagestream import ImageStream
from mirrord.state import open_store
from mirrord.sync._import_image import stored_streams
from mirrord.sync._recorder import ImportedStream


def stream_json(setup: Setup, name: str) -> dict[str, Any]:
    result = run(setup, "describe", name, "-o", "json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def tags_of(stream: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["tag"]: t for t in stream["status"]["tags"]}


@pytest.fixture
def setup(
    tmp_path: Path, basic_registry: RegistryProcess, mirror_registry: RegistryProcess
) -> Setup:
    """No configured streams: import-image creates its own."""
    return stream_setup(tmp_path, basic_registry, mirror_registry, prefix="ii", streams=[])


def test_a_new_stream_needs_confirm_and_nothing_is_touched(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    source = f"{basic_registry.host}/{repo_name}"

    refused = run(setup, "import-image", "app:1.0", "--from", source)

    assert refused.exit_code == 1
    assert 'error: the image stream "app" does not exist, pass --confirm' in refused.stderr
    assert stored(setup, "app") is None
    assert mirror_client.tags(mirror_repo(setup, "app")) == []
    # Without --from, the name is the source: a pull spec works on its own.
    refused = run(setup, "import-image", f"{source}:1.0")
    assert refused.exit_code == 1
    assert f'the image stream "{repo_name}" does not exist' in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["app:1.0", "--all"], 'cannot specify a tag "app:1.0" as well as --all'),
        (["app", "--all", "--from", "127.0.0.1:1/x/y:1.0"], "--from must name a repository"),
        (["app@sha256:" + "a" * 64], "import a tag"),
        (["app", "--from", "127.0.0.1:1/x/y@sha256:" + "a" * 64], "not images by digest"),
        (["app:1.0", "--from", "127.0.0.1:1/x/y:2.0"], "under its own name"),
        (["Bad_Name"], "the image name must be"),
    ],
)
def test_contradictory_requests_are_usage_errors(
    setup: Setup, args: list[str], message: str
) -> None:
    result = run(setup, "import-image", *args, "--confirm")

    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not setup.state_dir.exists()


def test_confirm_creates_copies_records_and_describes(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> None:
    image = push_image(basic_client, repo_name, "1.0", seed=repo_name)
    source = f"{basic_registry.host}/{repo_name}"

    first = run(setup, "import-image", "app:1.0", "--from", source, "--confirm")

    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("imagestream/app imported\n")
    assert "Name:" in first.stdout and "app" in first.stdout
    assert f"  * {source}@{image.digest}" in first.stdout
    # The image itself is in the mirror, byte for byte, not only its metadata.
    mirrored = mirror_client.get_manifest(mirror_repo(setup, "app"), "1.0")
    assert mirrored.raw == image.raw
    for blob in image.blobs:
        assert mirror_client.blob_exists(mirror_repo(setup, "app"), blob.digest)
    record = stored(setup, "app")
    assert record is not None
    assert (record.created_by, record.scheduled, record.generation) == ("import-image", False, 1)
    assert record.docker_image_repository == f"{mirror_registry.host}/{mirror_repo(setup, 'app')}"

    # Importing again is a new generation, but the same digest adds no history.
    again = run(setup, "import-image", "app:1.0")
    assert again.exit_code == 0, again.output
    record = stored(setup, "app")
    assert record is not None and record.generation == 2
    status = record.tag("1.0")
    assert status is not None and len(status.items) == 1

    # --scheduled is kept on the stream; flags not given keep what it had.
    run(setup, "import-image", "app:1.0", "--scheduled", "--reference-policy", "local")
    kept = run(setup, "import-image", "app:1.0")
    assert kept.exit_code == 0
    record = stored(setup, "app")
    assert record is not None
    assert (record.created_by, record.scheduled, record.reference_policy) == (
        "import-image",
        True,
        "Local",
    )
    document = stream_json(setup, "app")
    assert document["spec"]["tags"][0]["importPolicy"]["scheduled"] is True
    items = tags_of(document)["1.0"]["items"]
    # Local policy records the mirror's reference: a new event, newest first.
    assert [i["dockerImageReference"] for i in items] == [
        f"{mirror_registry.host}/{mirror_repo(setup, 'app')}@{image.digest}",
        f"{source}@{image.digest}",
    ]


def test_only_an_import_of_the_whole_selection_counts_as_the_last_sync(
    setup: Setup, basic_registry: RegistryProcess, basic_client: RegistryHTTP, repo_name: str
) -> None:
    source = f"{basic_registry.host}/{repo_name}"
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    push_image(basic_client, repo_name, "2.0", seed=f"{repo_name}-2")

    assert run(setup, "import-image", "app:1.0", "--from", source, "--confirm").exit_code == 0
    record = stored(setup, "app")
    assert record is not None and record.last_synced is not None  # its one tag: all of it
    first = record.last_synced

    assert run(setup, "import-image", "app:2.0", "--from", f"{source}:2.0").exit_code == 0
    record = stored(setup, "app")  # now two tags; this run imported one of them
    assert record is not None and record.last_synced == first

    both = run(setup, "import-image", "app", "--all")  # oc: re-import the stream's tags
    assert both.exit_code == 0, both.output
    record = stored(setup, "app")
    assert record is not None and record.last_synced is not None and record.last_synced > first


def test_all_imports_50_tags_in_oc_order_and_names_the_rest(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    image = push_image(basic_client, repo_name, "latest", seed=repo_name, layer_sizes=(64,))
    tags = ["1.5", "zeta", *(f"1.{i}.0" for i in range(52))]
    for tag in tags:  # 55 tags, one small image: cheap to push and to mirror
        push(basic_client, image, tag=tag)
    source = f"{basic_registry.host}/{repo_name}"

    result = run(setup, "import-image", "everything", "--from", source, "--all", "--confirm")

    assert result.exit_code == 0, result.output
    expected = ["latest", "1.5", *(f"1.{i}.0" for i in range(51, 3, -1))]
    assert len(expected) == 50
    assert sorted(mirror_client.tags(mirror_repo(setup, "everything"))) == sorted(expected)
    assert (
        f"info: {source}: 5 tags not imported (the limit is 50): 1.3.0, 1.2.0, 1.1.0, 1.0.0, zeta"
        in result.stdout
    )
    assert "Tags:              50" in result.stdout
    everything = stored(setup, "everything")
    assert everything is not None and everything.import_all
    # one tag the cap left out, imported by name: the stream still imports everything
    assert run(setup, "import-image", "everything:zeta").exit_code == 0
    everything = stored(setup, "everything")
    assert everything is not None and everything.import_all
    assert "zeta" in mirror_client.tags(mirror_repo(setup, "everything"))


def test_a_bare_stream_name_reimports_the_stream_and_adds_no_latest(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """`oc import-image STREAM` re-imports what the stream imports: a whole repository
    (created with --all) or its tags; `latest` only for a new stream or a pull spec."""
    source = f"{basic_registry.host}/{repo_name}"
    for tag in ("1.0", "2.0"):
        push_image(basic_client, repo_name, tag, seed=f"{repo_name}/{tag}")
    assert run(setup, "import-image", "whole", "--from", source, "--all", "--confirm"
               ).exit_code == 0
    assert run(setup, "import-image", "one:1.0", "--from", source, "--confirm").exit_code == 0
    push_image(basic_client, repo_name, "3.0", seed=f"{repo_name}/3.0")

    again = run(setup, "import-image", "whole")
    one = run(setup, "import-image", "one")

    assert again.exit_code == 0 and one.exit_code == 0, again.output + one.output
    assert sorted(mirror_client.tags(mirror_repo(setup, "whole"))) == ["1.0", "2.0", "3.0"]
    for name in ("whole", "one"):
        stream = stored(setup, name)
        assert stream is not None and "latest" not in [t.tag for t in stream.tags]
    assert [t.tag for t in stored(setup, "one").tags] == ["1.0"]  # type: ignore[union-attr]


def test_a_failed_tag_makes_the_exit_status_non_zero(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    source = f"{basic_registry.host}/{repo_name}"

    result = run(setup, "import-image", "app:nope", "--from", source, "--confirm")

    assert result.exit_code == 1
    assert "error: tag nope failed: [NotFound]" in result.stderr
    assert result.stdout.startswith("imagestream/app imported with errors")
    assert "! error: Import failed (NotFound)" in result.stdout
    condition = tags_of(stream_json(setup, "app"))["nope"]["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "ImportSuccess",
        "False",
        "NotFound",
    )


def test_dry_run_prints_the_plan_and_changes_nothing(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    image = push_image(basic_client, repo_name, "1.0", seed=repo_name)
    source = f"{basic_registry.host}/{repo_name}"

    result = run(setup, "import-image", "app:1.0", "--from", source, "--confirm", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "imagestream/app imported (dry run)" in result.stdout
    assert "copy      1.0" in result.stdout and image.digest in result.stdout
    assert not setup.state_dir.exists()
    assert mirror_client.tags(mirror_repo(setup, "app")) == []

    # On an existing stream too: neither the generation nor the mirror move.
    assert run(setup, "import-image", "app:1.0", "--from", source, "--confirm").exit_code == 0
    push_image(basic_client, repo_name, "1.0", seed=f"{repo_name}-moved")
    result = run(setup, "import-image", "app:1.0", "--dry-run")
    assert result.exit_code == 0, result.output
    record = stored(setup, "app")
    assert record is not None and record.generation == 1
    assert mirror_client.get_manifest(mirror_repo(setup, "app"), "1.0").digest == image.digest


def test_insecure_reaches_a_plain_http_source_for_this_run_only(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    image = push_image(basic_client, repo_name, "1.0", seed=repo_name)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/insecure",
        streams=[],
        sources=[basic_registry],
        # The source is configured for HTTPS (the default): only --insecure reaches it.
        settings={basic_registry.host: {"insecure": False}},
    )
    source = f"{basic_registry.host}/{repo_name}"

    refused = run(setup, "import-image", "app:1.0", "--from", source, "--confirm")
    assert refused.exit_code == 1, refused.output
    assert "TLS" in refused.stderr  # it spoke HTTPS to a plain HTTP registry

    result = run(setup, "import-image", "app:1.0", "--from", source, "--insecure")

    assert result.exit_code == 0, result.output
    record = stored(setup, "app")
    assert record is not None
    status = record.tag("1.0")
    assert status is not None and status.current is not None
    assert status.current.image == image.digest and status.conditions == ()


def test_refusals_on_existing_streams(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    push_image(basic_client, repo_name, "2.0", seed=f"{repo_name}-2")
    source = f"{basic_registry.host}/{repo_name}"
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/refusals",
        streams=[{"from": source, "to": "configured", "tags": ["1.0"]}],
        sources=[basic_registry],
    )
    assert run(setup, "import-image", "app:1.0", "--from", source, "--confirm").exit_code == 0
    refusals = {
        # a configured stream keeps its configuration
        ("configured:1.0", "--from", f"{source}-other"): "is defined in",
        ("configured:2.0",): 'the tag "2.0" is not part of the image stream "configured"',
        ("configured:1.0", "--reference-policy", "local"): "change it there",
        # a stored stream: a new tag needs --from, another source needs --confirm
        ("app:2.0",): 'the tag "2.0" does not exist on the image stream "app"',
        ("app:1.0", "--from", f"{source}-other"): "pass --confirm to import from",
        ("app", "--all", "--from", source): "does not currently import an entire repository",
    }
    for args, message in refusals.items():
        result = run(setup, "import-image", *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    record = stored(setup, "app")
    assert record is not None and record.generation == 1  # refusals change nothing

    # What is allowed: a configured tag (the stream stays "config"); a new tag with --from.
    configured = run(setup, "import-image", "configured:1.0")
    assert configured.exit_code == 0, configured.output
    config_record = stored(setup, "configured")
    assert config_record is not None and config_record.created_by == "config"
    added = run(setup, "import-image", "app:2.0", "--from", source)
    assert added.exit_code == 0, added.output
    record = stored(setup, "app")
    assert record is not None and sorted(t.tag for t in record.tags) == ["1.0", "2.0"]


def test_import_refuses_while_a_sync_holds_the_lock(
    setup: Setup, basic_registry: RegistryProcess, basic_client: RegistryHTTP, repo_name: str
) -> None:
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    source = f"{basic_registry.host}/{repo_name}"
    assert run(setup, "import-image", "app:1.0", "--from", source, "--confirm").exit_code == 0

    store = open_store(setup.state_dir)
    try:
        with store.acquire_run_lock():
            result = run(setup, "import-image", "app:1.0")
            described = run(setup, "describe", "app")
    finally:
        store.close()

    assert result.exit_code == 3
    assert "another mirrord run is in progress" in result.stderr
    assert described.exit_code == 0 and "1.0" in described.stdout


def test_stored_streams_feed_the_daemon_and_keep_their_flags(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    source = f"{basic_registry.host}/{repo_name}"
    assert (
        run(setup, "import-image", "one:1.0", "--from", source, "--confirm", "--scheduled")
    ).exit_code == 0
    assert (
        run(setup, "import-image", "every", "--from", source, "--all", "--confirm")
    ).exit_code == 0
    config = load_config(setup.path)

    async def daemon_run() -> tuple[tuple[Any, ...], list[ImageStream]]:
        from mirrord.sync._run import sync_once
        from mirrord.transports import ClientPool

        async with open_store(setup.state_dir) as store:
            streams = stored_streams(config, await store.list_streams())
            run_config = dataclasses.replace(config, streams=streams)
            async with ClientPool(run_config) as pool:
                result = await sync_once(run_config, store, pool, list(streams))
            assert result.ok
            return streams, await store.list_streams()

    pushed = push_image(basic_client, repo_name, "2.0", seed=f"{repo_name}-2")
    streams, after = anyio.run(daemon_run)

    by_name = {s.name: s for s in streams}
    assert set(by_name) == {"one", "every"}
    assert all(isinstance(s, ImportedStream) for s in streams)
    one, every = by_name["one"], by_name["every"]
    assert (one.tags, one.source, one.to) == (("1.0",), source, "one")
    assert isinstance(one, ImportedStream) and one.scheduled is True
    assert every.tags is None and isinstance(every, ImportedStream) and not every.scheduled
    records = {s.name: s for s in after}
    # A scheduled run keeps them import-image streams, with no spurious new generation.
    assert (records["one"].created_by, records["one"].scheduled) == ("import-image", True)
    assert (records["every"].created_by, records["every"].scheduled) == ("import-image", False)
    assert records["one"].generation == 1 and records["every"].generation == 1
    assert (records["one"].import_all, records["every"].import_all) == (False, True)
    # The --all stream picked up the new upstream tag; the tag stream did not.
    assert mirror_client.head_manifest(mirror_repo(setup, "every"), "2.0") == pushed.digest
    assert mirror_client.head_manifest(mirror_repo(setup, "one"), "2.0") is None


def test_stored_streams_skip_configured_and_config_made_streams(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from mirrord.config import parse_config
    from mirrord.core.imagestream import TagStatus

    config = parse_config(
        f"version: 1\nstate_dir: {tmp_path}\nstreams:\n  - from: quay.io/a/b\n    to: b\n"
    )

    def stream(name: str, created_by: str, tags: tuple[str, ...]) -> ImageStream:
        return ImageStream(
            name=name,
            docker_image_repository=f"oci:/x:{name}",
            source=f"quay.io/a/{name}",
            generation=1,
            tags=tuple(TagStatus(tag=t) for t in tags),
            scheduled=True,
            import_mode="Legacy",
            reference_policy="Local",
            created=datetime.now(UTC),
            created_by=created_by,
        )

    result = stored_streams(
        config,
        [
            stream("b", "import-image", ("1",)),  # now in the configuration: config wins
            stream("c", "config", ("1",)),  # made by a sync, no longer configured
            stream("d", "import-image", ()),  # nothing to import
            stream("e", "import-image", ("2", "1")),
        ],
    )

    assert [s.name for s in result] == ["e"]
    (e,) = result
    assert (e.tags, e.import_mode, e.reference_policy, e.max_tags) == (
        ("2", "1"),
        "Legacy",
        "Local",
        50,
    )

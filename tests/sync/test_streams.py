"""Streams are all alike (issue 13): a stream `import-image` created is reached by
`mirrord sync --stream`, a plain `mirrord sync` (when scheduled) and `mirrord delete`,
against real registries."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from click.testing import Result
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.streamtools import mirror_repo, run, stored, stream_setup
from harness.synctools import Setup

from mirrord.state import open_store


@pytest.fixture
def setup(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> Setup:
    """One configured stream `conf`; the tests add import-image streams."""
    conf = {"from": f"{basic_registry.host}/{repo_name}", "to": "conf", "tags": ["1.0"]}
    return stream_setup(tmp_path, basic_registry, mirror_registry, prefix="sa", streams=[conf])


def test_sync_stream_reaches_an_import_image_stream(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = f"{basic_registry.host}/{repo_name}"
    push_image(basic_client, repo_name, "1.0", seed="one")
    assert run(setup, "import-image", "imp:1.0", "--from", source, "--confirm").exit_code == 0
    moved = push_image(basic_client, repo_name, "1.0", seed="moved")

    synced = run(setup, "sync", "--stream", "imp", "-o", "json")

    assert synced.exit_code == 0, synced.output
    summary = json.loads(synced.stdout[synced.stdout.index("{") :])
    assert summary["images"]["copied"] == 1
    assert mirror_client.head_manifest(mirror_repo(setup, "imp"), "1.0") == moved.digest
    found = stored(setup, "imp")
    assert found is not None and found.created_by == "import-image"  # kept, not adopted
    assert found.last_synced is not None
    assert found.tags[0].items[0].image == moved.digest


def test_unknown_stream_is_usage_with_a_hint_over_stored_names(
    setup: Setup, basic_registry: RegistryProcess, basic_client: RegistryHTTP, repo_name: str
) -> None:
    before = run(setup, "sync", "--stream", "nope")
    assert before.exit_code == 2 and "no stream named 'nope'" in before.stderr
    assert not setup.state_dir.exists()  # an unknown name creates no state

    push_image(basic_client, repo_name, "1.0", seed="one")
    source = f"{basic_registry.host}/{repo_name}"
    assert run(setup, "import-image", "imported:1.0", "--from", source, "--confirm").exit_code == 0
    typo = run(setup, "sync", "--stream", "importd")
    assert typo.exit_code == 2 and "did you mean 'imported'?" in typo.stderr
    assert f"{setup.path}: no stream named 'importd' in the configuration or the state" \
        in typo.stderr


def test_plain_sync_runs_scheduled_stored_streams_only(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = f"{basic_registry.host}/{repo_name}"
    push_image(basic_client, repo_name, "1.0", seed="one")
    for name, flag in (("sched", "--scheduled"), ("manual", "--no-scheduled")):
        result = run(setup, "import-image", f"{name}:1.0", "--from", source, "--confirm", flag)
        assert result.exit_code == 0, result.output
    moved = push_image(basic_client, repo_name, "1.0", seed="moved")

    assert run(setup, "sync").exit_code == 0

    assert mirror_client.head_manifest(mirror_repo(setup, "conf"), "1.0") == moved.digest
    assert mirror_client.head_manifest(mirror_repo(setup, "sched"), "1.0") == moved.digest
    assert mirror_client.head_manifest(mirror_repo(setup, "manual"), "1.0") != moved.digest


def test_delete_forgets_a_stream_and_keeps_its_images(
    setup: Setup,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = f"{basic_registry.host}/{repo_name}"
    image = push_image(basic_client, repo_name, "1.0", seed="one")
    assert run(setup, "import-image", "imp:1.0", "--from", source, "--confirm").exit_code == 0

    dry = run(setup, "delete", "imp")
    assert dry.exit_code == 0
    assert 'imagestream.image.openshift.io "imp" would be deleted (1 tags, 1 tag events)' in (
        dry.stdout
    )
    assert "pass --confirm" in dry.stdout and stored(setup, "imp") is not None

    gone = run(setup, "delete", "imp", "--yes")
    assert gone.exit_code == 0, gone.output
    assert 'imagestream.image.openshift.io "imp" deleted' in gone.stdout
    assert stored(setup, "imp") is None
    assert mirror_client.head_manifest(mirror_repo(setup, "imp"), "1.0") == image.digest
    # every command now agrees it is gone
    assert run(setup, "describe", "imp").exit_code == 1
    assert run(setup, "sync", "--stream", "imp").exit_code == 2
    again = run(setup, "delete", "imp", "--confirm")
    assert again.exit_code == 1 and 'image stream "imp" not found' in again.stderr


def test_deleting_a_configured_stream_says_it_comes_back(
    setup: Setup, basic_client: RegistryHTTP, repo_name: str
) -> None:
    push_image(basic_client, repo_name, "1.0", seed="one")
    assert run(setup, "sync").exit_code == 0

    gone = run(setup, "delete", "conf", "--confirm", "-o", "json")

    assert gone.exit_code == 0, gone.output
    document = json.loads(gone.stdout)
    assert document["dryRun"] is False
    assert document["items"] == [
        {
            "name": "conf",
            "found": True,
            "deleted": True,
            "tags": 1,
            "tagEvents": 1,
            "configured": True,
        }
    ]
    assert stored(setup, "conf") is None
    text = run(setup, "delete", "conf", "--confirm")  # not in the state any more
    assert "configured but has not been synced yet" in text.stderr
    assert run(setup, "sync").exit_code == 0
    assert stored(setup, "conf") is not None  # recreated by its next sync, as announced


def test_delete_while_a_sync_holds_the_lock_is_refused(
    setup: Setup, basic_client: RegistryHTTP, repo_name: str
) -> None:
    push_image(basic_client, repo_name, "1.0", seed="one")
    assert run(setup, "sync").exit_code == 0

    async def hold_and_delete() -> Result:
        async with open_store(setup.state_dir) as store, store.acquire_run_lock():
            return await anyio.to_thread.run_sync(lambda: run(setup, "delete", "conf", "--confirm"))

    refused = anyio.run(hold_and_delete)
    assert refused.exit_code == 3, refused.output
    assert stored(setup, "conf") is not None

"""The daemon reaches every stream (issue 13): an `import-image` stream not marked
--scheduled never runs on a timer, yet `POST /api/v1/streams/NAME/sync` runs it; a real
`mirrord daemon` process against real registries."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from harness.daemon_support import DaemonProcess
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.synctools import sync_setup

from mirrord.cli import main

TOKEN = "stored-streams-token-1a2b3c4d5e"


def test_an_unscheduled_import_image_stream_runs_when_triggered(
    tmp_path: Path,
    registry_factory: Any,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = registry_factory()
    client = source.client()
    push_image(client, repo_name, "1.0", seed="one")
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/ds",
        streams=[{"from": f"{source.host}/{repo_name}", "to": "app", "tags": ["1.0"]}],
        sources=[source],
        extra={"server": {"listen": "127.0.0.1:0", "token_file": str(token_file)}},
    )

    def cli(*args: str) -> None:
        result = CliRunner().invoke(main, [*args, "--config", str(setup.path)])
        assert result.exit_code == 0, result.output

    upstream = f"{source.host}/{repo_name}"
    cli("import-image", "team/manual:1.0", "--from", upstream, "--confirm", "--no-scheduled")
    cli("tag", f"{upstream}:1.0", "team/pointed:x")  # only a tagged tag: nothing to run
    moved = push_image(client, repo_name, "1.0", seed="moved")

    with DaemonProcess(setup.path) as daemon:
        daemon.wait_for_runs("app", 1)  # the configured stream's catch-up run
        daemon.wait_for_log(r"ready: 1 streams scheduled \(1 on demand\), ")
        time.sleep(0.5)
        assert daemon.runs("team/manual") == 0  # on demand only: no catch-up, no timer
        described = daemon.get("/api/v1/streams/team/manual").json()
        assert described["metadata"]["namespace"] == "team"
        assert "mirrord.io/schedule" not in described["metadata"]["annotations"]

        accepted = daemon.post("/api/v1/streams/team/manual/sync", TOKEN)
        assert accepted.status_code == 202, accepted.text
        daemon.wait_for_runs("team/manual", 1)
        assert mirror_client.head_manifest("ds/team/manual", "1.0") == moved.digest
        pointed = daemon.post("/api/v1/streams/team/pointed/sync", TOKEN)
        assert pointed.status_code == 409, pointed.text  # it exists; a sync imports nothing
        assert "mirrord tag" in pointed.json()["error"]["message"]
        assert daemon.post("/api/v1/streams/team/none/sync", TOKEN).status_code == 404


def test_the_daemon_runs_a_stream_of_only_a_scheduled_tag_and_follows_it(
    tmp_path: Path,
    registry_factory: Any,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """`mirrord tag --scheduled` into a new stream: the daemon schedules that stream
    (it has no tag of its own to import) and its run re-imports the moved image."""
    source = registry_factory()
    client = source.client()
    push_image(client, repo_name, "1.0", seed="app")
    push_image(client, f"{repo_name}-cli", "v1", seed="one")
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/dsched",
        streams=[{"from": f"{source.host}/{repo_name}", "to": "app", "tags": ["1.0"]}],
        sources=[source],
        # stored streams take the defaults' schedule: a short one, so a run comes soon
        extra={"server": {"listen": "127.0.0.1:0"}, "defaults": {"schedule": "2s"}},
    )
    tagged = CliRunner().invoke(
        main,
        ["tag", "--scheduled", f"{source.host}/{repo_name}-cli:v1", "team/cli:v1",
         "--config", str(setup.path)],
    )
    assert tagged.exit_code == 0, tagged.output
    moved = push_image(client, f"{repo_name}-cli", "v1", seed="moved")

    with DaemonProcess(setup.path) as daemon:
        daemon.wait_for_runs("team/cli", 1)
        assert mirror_client.head_manifest("dsched/team/cli", "v1") == moved.digest
        described = daemon.get("/api/v1/streams/team/cli").json()
        [spec] = described["spec"]["tags"]
        assert spec["importPolicy"]["scheduled"] is True
    client.close()

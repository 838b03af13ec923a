"""`mirrord describe` and `mirrord streams`: oc-style text, OpenShift JSON/YAML, read-only."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.synctools import Setup, sync_setup

from mirrord.cli import main
from mirrord.cli._describe import describe_text, streams_table
from mirrord.core.imagestream import Condition, ImageStream, TagEvent, TagStatus
from mirrord.core.units import human_duration
from mirrord.state import JobRun, open_store

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def run(setup: Setup, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--config", str(setup.path)])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "Less than a second"),
        (1, "1 second"),
        (42, "42 seconds"),
        (61, "About a minute"),
        (3 * 60 + 5, "3 minutes"),
        (59 * 60, "59 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_ages_read_like_oc(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def _stream() -> ImageStream:
    old, new = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    src = "quay.io/team/app"
    return ImageStream(
        name="team/app",
        docker_image_repository="mirror.local:5000/m/team/app",
        source=src,
        generation=3,
        tags=(
            TagStatus(
                tag="1.0",
                items=(
                    TagEvent(NOW - timedelta(minutes=3), f"{src}@{new}", new, 2),
                    TagEvent(NOW - timedelta(hours=5), f"{src}@{old}", old, 1),
                ),
            ),
            TagStatus(
                tag="latest",
                items=(TagEvent(NOW - timedelta(days=3), f"{src}@{old}", old, 1),),
                conditions=(
                    Condition(
                        "ImportSuccess",
                        "False",
                        "Unauthorized",
                        "quay.io: denied (credentials from auth file /etc/a.json)",
                        3,
                        NOW - timedelta(seconds=30),
                    ),
                ),
            ),
        ),
        scheduled=True,
        import_mode="PreserveOriginal",
        reference_policy="Source",
        created=NOW - timedelta(days=3, hours=1),
        created_by="import-image",
    )


def test_describe_text_shows_history_ages_and_conditions() -> None:
    text = describe_text(_stream(), now=NOW)

    header = dict(
        (label.strip(), value.strip())
        for label, _, value in (line.partition(":") for line in text.split("\n\n")[0].splitlines())
    )
    assert header["Name"] == "team/app"
    assert header["Created"] == "3 days ago"
    assert header["Image Repository"] == "mirror.local:5000/m/team/app"
    assert header["Source"] == "quay.io/team/app"
    assert header["Unique Images"] == "2" and header["Tags"] == "2"
    # latest first (oc's order), then the versions.
    assert text.index("\nlatest\n") < text.index("\n1.0\n")
    one = text[text.index("\n1.0\n") :]
    assert (
        "  * quay.io/team/app@sha256:" + "2" * 64 + "\n      3 minutes ago\n"
        "    quay.io/team/app@sha256:" + "1" * 64 + "\n      5 hours ago\n"
    ) in one
    latest = text[text.index("\nlatest\n") : text.index("\n1.0\n")]
    assert "  tagged from quay.io/team/app:latest" in latest
    assert "    updates automatically from registry quay.io/team/app:latest" in latest
    assert (
        "  ! error: Import failed (Unauthorized): quay.io: denied (credentials from auth file "
        "/etc/a.json)\n      30 seconds ago"
    ) in latest


def test_describe_text_lists_recent_runs_with_their_workers() -> None:
    runs = [
        JobRun(7, "sync", "team/app", "Succeeded", NOW - timedelta(minutes=2), NOW,
               worker="host-b:42"),
        JobRun(5, "sync", None, "Failed", NOW - timedelta(hours=1), NOW, worker=None),
    ]
    text = describe_text(_stream(), now=NOW, runs=runs)

    listed = text[text.index("\nRecent Runs:\n") :].splitlines()[2:]
    assert listed[0].split() == ["#7", "Succeeded", "2", "minutes", "ago", "worker", "host-b:42"]
    assert listed[1].split()[:2] == ["#5", "Failed"]
    assert listed[1].endswith("worker unknown  (several streams)")
    assert "Recent Runs:" not in describe_text(_stream(), now=NOW)


def test_streams_table_counts_tags_and_failing_tags() -> None:
    lines = streams_table([_stream()], now=NOW).splitlines()

    assert lines[0].split() == [
        "NAME",
        "IMAGE",
        "REPOSITORY",
        "TAGS",
        "UPDATED",
        "FAILING",
        "STATUS",
    ]
    assert lines[1].split() == [
        "team/app",
        "mirror.local:5000/m/team/app",
        "2",
        "3",
        "minutes",
        "ago",
        "1",
        "failing",
    ]


@pytest.fixture
def setup(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> Setup:
    """Two configured streams of one source: `app` (synced by the tests) and `never`."""
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    source = f"{basic_registry.host}/{repo_name}"
    return sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/d-{uuid.uuid4().hex[:8]}",
        streams=[
            {"from": source, "to": "app", "tags": ["1.0", "missing"]},
            {"from": source, "to": "never", "tags": ["1.0"]},
        ],
        sources=[basic_registry],
    )


def test_readers_create_nothing_and_explain_unknown_streams(setup: Setup) -> None:
    empty = run(setup, "streams")
    as_json = run(setup, "streams", "-o", "json")
    unknown = run(setup, "describe", "nope")
    not_yet = run(setup, "describe", "never")

    # the configured streams are listed before any sync, saying so (issue 13)
    assert empty.exit_code == 0 and empty.stderr == ""
    rows = [line.split() for line in empty.stdout.splitlines()]
    assert rows[0][-1] == "STATUS"
    assert [(r[0], r[1].endswith(f"/{r[0]}"), r[-3:]) for r in rows[1:]] == [
        ("app", True, ["not", "synced", "yet"]),
        ("never", True, ["not", "synced", "yet"]),
    ]
    listed = json.loads(as_json.stdout)
    assert listed["kind"] == "ImageStreamList"
    assert [i["metadata"]["annotations"] for i in listed["items"]] == [
        {"mirrord.io/stream": "app", "mirrord.io/status": "NotSynced"},
        {"mirrord.io/stream": "never", "mirrord.io/status": "NotSynced"},
    ]
    assert [t["name"] for t in listed["items"][0]["spec"]["tags"]] == ["1.0", "missing"]
    assert unknown.exit_code == 1
    assert unknown.stderr == 'error: image stream "nope" not found\n'
    assert not_yet.exit_code == 1
    assert "configured but has not been imported yet" in not_yet.stderr
    assert not setup.state_dir.exists()


def test_describe_and_streams_after_a_sync(setup: Setup, basic_registry: RegistryProcess) -> None:
    assert run(setup, "sync", "--stream", "app").exit_code == 1  # `missing` fails

    table = run(setup, "streams")
    text = run(setup, "describe", "app")
    as_json = json.loads(run(setup, "describe", "app", "-o", "json").stdout)
    as_yaml = yaml.safe_load(run(setup, "describe", "app", "-o", "yaml").stdout)
    listed = json.loads(run(setup, "streams", "-o", "json").stdout)

    assert table.exit_code == 0
    row = table.stdout.splitlines()[1].split()
    assert row[0] == "app" and row[1].endswith("/app") and row[2] == "2"
    assert row[-2:] == ["1", "failing"]
    assert table.stdout.splitlines()[2].split()[0] == "never"
    assert table.stdout.splitlines()[2].endswith("not synced yet")
    assert text.exit_code == 0
    assert "! error: Import failed (NotFound)" in text.stdout
    run_line = text.stdout[text.stdout.index("Recent Runs:") :].splitlines()[1].split()
    assert run_line[1] == "Failed" and run_line[-2] == "worker"
    assert run_line[-1] == f"{socket.gethostname()}:{os.getpid()}"  # this process ran it
    assert "Less than a second ago" in text.stdout or "seconds ago" in text.stdout
    assert as_yaml == as_json
    assert as_json["kind"] == "ImageStream" and as_json["metadata"]["name"] == "app"
    tags = {t["tag"]: t for t in as_json["status"]["tags"]}
    assert tags["1.0"]["items"][0]["image"].startswith("sha256:")
    assert "conditions" not in tags["1.0"]
    assert tags["missing"]["items"] == []
    assert tags["missing"]["conditions"][0]["reason"] == "NotFound"
    assert listed["kind"] == "ImageStreamList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["app", "never"]
    assert "mirrord.io/status" not in listed["items"][0]["metadata"]["annotations"]


def test_readers_work_while_a_sync_holds_the_lock_and_a_write(setup: Setup) -> None:
    assert run(setup, "sync", "--stream", "never").exit_code == 0
    store = open_store(setup.state_dir)
    writer = sqlite3.connect(setup.state_dir / "state.db", isolation_level=None)
    try:
        with store.acquire_run_lock():
            writer.execute("BEGIN IMMEDIATE")  # a sync in the middle of a transaction
            writer.execute("UPDATE image_streams SET generation = generation + 1")
            described = run(setup, "describe", "never")
            listed = run(setup, "streams")
            refused = run(setup, "sync")
            writer.execute("ROLLBACK")
    finally:
        writer.close()
        store.close()

    assert described.exit_code == 0, described.output
    assert "Generation:        1" in described.stdout
    assert listed.exit_code == 0 and "never" in listed.stdout
    assert refused.exit_code == 3  # the writer side is still exclusive

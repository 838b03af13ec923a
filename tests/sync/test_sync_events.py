"""Syncs and their records: notifications per changed tag, and a killed run's state."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.synctools import Setup, assert_same_tree, big_tags_behind_a_slow_mirror, sync_setup
from harness.webhooks import Receiver, serving

from mirrord.cli import main

SECRET = b"webhook-key-for-tests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as server:
        yield server


def test_one_signed_event_per_changed_tag_and_none_for_unchanged(
    tmp_path: Path,
    receiver: Receiver,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    first = push_image(basic_client, repo_name, "1.0", seed="one")
    second = push_image(basic_client, repo_name, "2.0", seed="two")
    key_file = tmp_path / "webhook.key"
    key_file.write_bytes(SECRET + b"\n")
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/events",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "tags": ["1.0", "2.0"]}],
        sources=[basic_registry],
        extra={"notifications": [
            {"url": receiver.url, "secret_file": str(key_file), "events": ["push"]}]},
    )

    code, summary = setup.sync_json()
    assert code == 0
    assert summary["notifications"] == {"delivered": 2, "failed": 0, "givenUp": 0, "waiting": 0}
    assert setup.sync_json()[0] == 0  # nothing changed: no event
    moved = push_image(basic_client, repo_name, "1.0", seed="moved")
    assert setup.sync_json()[0] == 0

    events = []
    for body, headers in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert headers["X-Mirrord-Signature"] == expected
        events.extend(json.loads(body)["events"])
    assert sorted((e["target"]["tag"], e["target"]["digest"]) for e in events) == sorted(
        [("1.0", first.digest), ("2.0", second.digest), ("1.0", moved.digest)]
    )
    last = next(e for e in events if e["target"]["digest"] == moved.digest)
    assert last["previousDigest"] == first.digest
    assert last["target"]["repository"] == f"events/{repo_name}"


def test_a_failing_receiver_never_fails_the_sync(
    tmp_path: Path,
    receiver: Receiver,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    receiver.status = 500
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/events-fail",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "tags": ["1.0"]}],
        sources=[basic_registry],
        extra={"notifications": [{"url": receiver.url, "events": "push"}]},
    )

    code, summary = setup.sync_json()

    assert code == 0 and summary["images"]["copied"] == 1
    assert summary["notifications"] == {"delivered": 0, "failed": 1, "givenUp": 0, "waiting": 1}
    assert len(receiver.posts) == 1
    with sqlite3.connect(setup.state_dir / "state.db") as db:
        (attempts, error) = db.execute("SELECT attempts, last_error FROM outbox").fetchone()
    assert attempts == 1 and "500" in error and "t0ken" not in error

    # the failure shows in status: `mirrord notifications`, text and json
    text = notifications(setup)
    [row] = [line for line in text.splitlines() if line.startswith("webhook:")]
    assert row.split()[3:8] == ["1", "1", "0", "0", "-"]  # pending, retrying, given up, ...
    assert f"{repo_name}:1.0: 1 attempt, next at" in text and "HTTP 500" in text
    status = json.loads(notifications(setup, "-o", "json"))
    [entry] = status["receivers"]
    assert entry["target"] == f"POST http://127.0.0.1:{receiver.server_address[1]}"
    assert (entry["pending"], entry["retrying"], entry["delivered"]) == (1, 1, 0)
    assert [(f["stream"], f["tag"], f["givenUp"]) for f in status["failures"]] == [
        (repo_name, "1.0", False)]
    assert "t0ken" not in text + json.dumps(status)

    # the receiver recovers: the next run (nothing to copy) delivers the retry when due
    receiver.status = 200
    time.sleep(2.1)  # the first retry waits 1-2 s
    code, summary = setup.sync_json()
    assert summary["notifications"] == {"delivered": 1, "failed": 0, "givenUp": 0, "waiting": 0}
    assert len(receiver.posts) == 2 and receiver.posts[0][0] == receiver.posts[1][0]
    [entry] = json.loads(notifications(setup, "-o", "json"))["receivers"]
    assert (entry["pending"], entry["delivered"], entry["lastError"]) == (0, 1, None)


def notifications(setup: Setup, *args: str) -> str:
    result = CliRunner().invoke(main, ["notifications", "--config", str(setup.path), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_killed_sync_leaves_state_the_next_run_continues_from(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    registry_factory: object,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    mirror: RegistryProcess = registry_factory()  # type: ignore[operator]
    tags, setup = big_tags_behind_a_slow_mirror(
        tmp_path, mirror, basic_registry, basic_client, repo_name,
        prefix="killed", count=8, size=3_000_000,
    )
    mark = mirror.mark()
    process = setup.sync_process()
    while sum("/manifests/" in p for m, p in mirror.requests(since=mark) if m == "PUT") < 2:
        assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)

    code, summary = setup.sync_json()

    assert code == 0, summary
    assert summary["images"]["unchanged"] >= 1 and summary["images"]["copied"] >= 1
    with sqlite3.connect(setup.state_dir / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        statuses = [row[0] for row in db.execute("SELECT status FROM job_runs ORDER BY id")]
    assert statuses == ["Failed", "Succeeded"], "the killed run is closed, the next one ran"
    client = mirror.client()
    for tag in tags:
        assert_same_tree(basic_client, repo_name, client, f"killed/{repo_name}", tag)

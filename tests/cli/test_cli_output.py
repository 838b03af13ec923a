"""`mirrord sync -o json|yaml` prints one document on stdout even when the run cannot start:
the run lock held (exit 3), an unknown --stream or a bad configuration (exit 2)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from mirrord.cli import main
from mirrord.state import LOCK_FILE, RunLock


def _config(tmp_path: Path) -> Path:
    """One stream into an OCI layout: nothing is contacted before the run lock is taken."""
    path = tmp_path / "mirrord.yaml"
    path.write_text(
        "version: 1\n"
        f"mirror: oci:{tmp_path / 'oci'}\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "streams:\n  - from: 127.0.0.1:9/team/app\n    to: app\n"
    )
    return path


def _sync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["sync", "--config", str(config), *args])


def _error_document(result: Result, fmt: str = "json") -> dict[str, Any]:
    document = json.loads(result.stdout) if fmt == "json" else yaml.safe_load(result.stdout)
    assert isinstance(document, dict)
    assert set(document) == {"dryRun", "error"}
    assert set(document["error"]) == {"reason", "message"}
    assert f"error: {document['error']['message']}" in result.stderr  # the same message
    return document


def test_a_held_run_lock_exits_3_with_a_document(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "state").mkdir()
    lock = RunLock(tmp_path / "state" / LOCK_FILE)
    lock.acquire()  # what another `mirrord sync` holds while it runs
    try:
        as_json = _sync(config, "-o", "json")
        as_yaml = _sync(config, "-o", "yaml")
        as_text = _sync(config)
    finally:
        lock.release()

    assert as_json.exit_code == 3
    document = _error_document(as_json)
    assert document["dryRun"] is False
    assert document["error"]["reason"] == "Locked"
    assert f"another mirrord run is in progress (pid {os.getpid()} holds" in (
        document["error"]["message"]
    )
    assert as_yaml.exit_code == 3
    assert _error_document(as_yaml, "yaml") == document
    assert as_text.exit_code == 3 and as_text.stdout == ""  # text: the message on stderr only
    assert not (tmp_path / "oci").exists()


def test_an_unknown_stream_exits_2_with_a_document(tmp_path: Path) -> None:
    result = _sync(_config(tmp_path), "-o", "json", "--dry-run", "--stream", "apq")

    assert result.exit_code == 2
    document = _error_document(result)
    assert document["dryRun"] is True
    assert document["error"]["reason"] == "InvalidConfiguration"
    assert "'apq'" in document["error"]["message"]
    assert "did you mean 'app'?" in document["error"]["message"]
    assert not (tmp_path / "state").exists()


def test_an_invalid_configuration_exits_2_with_a_document(tmp_path: Path) -> None:
    config = tmp_path / "mirrord.yaml"
    config.write_text(f"version: 1\nstate_dir: {tmp_path / 'state'}\nstreams: 7\n")
    result = _sync(config, "-o", "json")

    assert result.exit_code == 2
    document = _error_document(result)
    assert document["dryRun"] is False
    assert document["error"]["reason"] == "InvalidConfiguration"
    assert document["error"]["message"].startswith(f"{config}:3: streams")
    assert not (tmp_path / "state").exists()

    missing = _sync(tmp_path / "absent.yaml", "-o", "json")
    assert missing.exit_code == 2
    assert "configuration file not found" in _error_document(missing)["error"]["message"]


def test_a_state_dir_that_cannot_be_created_exits_1_with_a_document(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    config = _config(tmp_path)
    unusable = str(tmp_path / "file" / "state")  # under a regular file
    config.write_text(config.read_text().replace(str(tmp_path / "state"), unusable))

    result = _sync(config, "-o", "json")

    assert result.exit_code == 1
    document = _error_document(result)
    assert document["error"]["message"].startswith(f"cannot create state directory {tmp_path}")

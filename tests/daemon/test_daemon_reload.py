"""A reload whose configuration loads but could not be scheduled is refused: the daemon
keeps the configuration it runs (issue 10: a schedule that passed `validate` once killed
the daemon on SIGHUP)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mirrord.config import Config, parse_config
from mirrord.daemon import Daemon

pytestmark = pytest.mark.anyio


async def test_a_reload_that_could_not_be_scheduled_keeps_the_running_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mirrord.yaml"
    path.write_text(f"version: 1\nstate_dir: {tmp_path / 'state'}\nstreams:\n"
                    "  - from: 127.0.0.1:5000/app\n    tags: [latest]\n")
    running = parse_config(path.read_text(), path)
    stream = dataclasses.replace(running.streams[0], schedule="99999999999999999999h")
    unusable = dataclasses.replace(running, streams=(stream,))

    def load(_: object) -> Config:
        return unusable  # what a loader with a gap would have let through

    monkeypatch.setattr("mirrord.daemon._daemon.load_config", load)
    daemon = Daemon(running)
    await daemon.reload()
    assert daemon.config is running
    assert "reload failed, still running the previous configuration" in caplog.text
    assert "schedule: cannot be used" in caplog.text

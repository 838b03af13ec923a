"""The units in systemd/ pass `systemd-analyze verify` and say what the issue asks."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
NAMES = ("mirrord.service", "mirrord-sync.service", "mirrord-sync.timer")
SYSTEM_UNITS = next(
    (p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()),
    None,
)


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A filesystem root holding the system's units, ours, and a stub for every binary
    our Exec*= lines name (mirrord is not installed at /usr/bin here)."""
    if shutil.which("systemd-analyze") is None or SYSTEM_UNITS is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    ours = tmp_path / "etc/systemd/system"
    ours.mkdir(parents=True)
    for name in NAMES:
        text = (UNITS / name).read_text()
        (ours / name).write_text(text)
        for binary in re.findall(r"^Exec\w+=[-@:+!]*(/\S+)", text, re.MULTILINE):
            stub = tmp_path / binary.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
    return tmp_path


def test_systemd_analyze_verify_passes(root: Path) -> None:
    units = [str(root / "etc/systemd/system" / name) for name in NAMES]
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", *units],
        capture_output=True, text=True, timeout=60,
    )
    # verify exits 0 on warnings (unknown keys, bad values): they must not appear either
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr + result.stdout


def test_the_service_is_a_hardened_notify_service_with_credentials() -> None:
    service = _unit("mirrord.service")["Service"]
    assert service["Type"] == "notify"
    assert service["WatchdogSec"] and service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "mirrord"
    assert service["ExecReload"].endswith("-HUP $MAINPID")
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "DynamicUser"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert "pull-secret:" in (UNITS / "mirrord.service").read_text()
    # systemd must wait longer than mirrord's own 30 s drain before it kills
    assert int(service["TimeoutStopSec"].rstrip("s")) > 30


def test_the_timer_starts_the_one_shot_sync() -> None:
    sync = _unit("mirrord-sync.service")["Service"]
    assert sync["Type"] == "oneshot"
    assert " sync " in sync["ExecStart"]
    timer = _unit("mirrord-sync.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"

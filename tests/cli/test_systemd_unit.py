"""``mirrord systemd-unit``: units for the installation at hand that `systemd-analyze
verify` accepts (ExecStart= is the real console script, Documentation= a real file),
and the shipped units in systemd/ are what it writes for the documented install."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "systemd"
NAMES = ("mirrord.service", "mirrord-sync.service", "mirrord-sync.timer")


def _mirrord(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mirrord", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )


def _parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    """The three units `mirrord systemd-unit --install` writes for this installation."""
    for extra in ((), ("--timer",)):
        done = _mirrord("systemd-unit", "--install", "--unit-dir", str(tmp_path), *extra)
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)
    return tmp_path


def test_generated_units_pass_systemd_analyze_verify(generated: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    script = Path(sysconfig.get_path("scripts")) / "mirrord"
    assert os.access(script, os.X_OK), "the documented install has a mirrord console script"
    units = [str(generated / name) for name in NAMES]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True, text=True, timeout=60,
    )
    # verify exits 0 on warnings (unknown keys, bad values): they must not appear either
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr + result.stdout
    service = _parse((generated / "mirrord.service").read_text())["Unit"]
    documentation = service["Documentation"]
    assert documentation.startswith("file:///")
    assert Path(documentation.removeprefix("file://")).is_file()


def test_exec_start_is_the_running_installation_s_script(generated: Path) -> None:
    script = Path(sysconfig.get_path("scripts")) / "mirrord"
    daemon = _parse((generated / "mirrord.service").read_text())["Service"]["ExecStart"]
    assert daemon == f"{script} daemon --config /etc/mirrord/mirrord.yaml"
    sync = _parse((generated / "mirrord-sync.service").read_text())["Service"]["ExecStart"]
    assert sync.startswith(f"{script} sync --no-progress ")


def test_verify_rejects_a_unit_whose_binary_is_missing(tmp_path: Path) -> None:
    """The check above can fail: the old units' /usr/bin/mirrord does not exist here."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    done = _mirrord("systemd-unit", "--bindir", str(tmp_path / "nowhere"))
    assert done.returncode == 0 and "is not an executable here" in done.stderr
    unit = tmp_path / "mirrord.service"
    unit.write_text(done.stdout)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0 and "is not executable" in result.stderr


@pytest.mark.parametrize("timer", [False, True])
def test_shipped_units_are_the_generated_ones_for_the_documented_install(timer: bool) -> None:
    """systemd/ holds `mirrord systemd-unit --bindir /opt/mirrord/bin [--timer]`."""
    done = _mirrord("systemd-unit", "--bindir", "/opt/mirrord/bin", *(["--timer"] * timer))
    assert done.returncode == 0, done.stderr
    names = NAMES[1:] if timer else NAMES[:1]
    expected = "\n".join(
        (f"# {n}\n" if timer else "") + (SHIPPED / n).read_text() for n in names
    )
    assert done.stdout == expected
    assert "Documentation=file:///opt/mirrord/share/doc/mirrord/README.md" in done.stdout


def test_the_service_is_a_hardened_notify_service_with_credentials() -> None:
    text = (SHIPPED / "mirrord.service").read_text()
    service = _parse(text)["Service"]
    assert service["Type"] == "notify"
    assert service["WatchdogSec"] and service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "mirrord"
    assert service["ExecReload"].endswith("-HUP $MAINPID")
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "DynamicUser"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert "LoadCredential=pull-secret:/etc/mirrord/pull-secret.json" in text
    assert "LoadCredential=api-token:/etc/mirrord/api.token" in text
    # systemd must wait longer than mirrord's own 30 s drain before it kills
    assert int(service["TimeoutStopSec"].rstrip("s")) > 30


def test_credentials_can_be_left_out() -> None:
    done = _mirrord("systemd-unit", "--pull-secret", "", "--api-token", "")
    assert done.returncode == 0, done.stderr
    assert "LoadCredential=" not in "".join(
        line for line in done.stdout.splitlines() if not line.startswith("#")
    )


def test_the_timer_starts_the_one_shot_sync() -> None:
    sync = _parse((SHIPPED / "mirrord-sync.service").read_text())["Service"]
    assert sync["Type"] == "oneshot"
    assert " sync " in sync["ExecStart"]
    assert sync["SuccessExitStatus"] == "3 143"
    timer = _parse((SHIPPED / "mirrord-sync.timer").read_text())
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_install_into_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = _mirrord("systemd-unit", "--install", "--unit-dir", str(blocker / "sub"))
    assert done.returncode == 1
    assert "\nerror: cannot write the units to " in "\n" + done.stderr  # after any warning
    assert "Traceback" not in done.stderr


def test_the_documented_pip_install_s_units_pass_verify(tmp_path: Path) -> None:
    """The README's install (a venv of its own, `pip install .`) and its units: ExecStart=
    is the venv's script and Documentation= the README pip placed under share/doc; both
    exist, so `systemd-analyze verify` accepts the units as written (no --bindir)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    venv = tmp_path / "opt-mirrord"
    # --system-site-packages and --no-deps: the dependencies are those of this machine,
    # so the only download is the build backend (the README's command fetches it too).
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
        check=True, timeout=120,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed copy
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(ROOT)],
        check=True, timeout=600, env=env, capture_output=True,
    )
    units = tmp_path / "units"
    for extra in ((), ("--timer",)):
        done = subprocess.run(
            [str(venv / "bin" / "mirrord"), "systemd-unit", "--install", "--unit-dir",
             str(units), *extra],
            capture_output=True, text=True, timeout=60, env=env,
        )
        assert done.returncode == 0, done.stderr
    service = _parse((units / "mirrord.service").read_text())
    assert service["Service"]["ExecStart"].startswith(f"{venv}/bin/mirrord daemon ")
    documentation = service["Unit"]["Documentation"]
    assert documentation == f"file://{venv}/share/doc/mirrord/README.md"
    assert Path(documentation.removeprefix("file://")).read_text() == (ROOT / "README.md") \
        .read_text()
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(units / n) for n in NAMES)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr + result.stdout


def test_files_the_sandbox_hides_from_the_service_are_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "mirrord.yaml"  # under /tmp: PrivateTmp=yes hides it
    done = _mirrord("systemd-unit", "--bindir", "/root/venv/bin", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert f"warning: --config {config} is hidden from the service by the unit's " \
        "PrivateTmp=yes" in done.stderr
    assert "the mirrord executable /root/venv/bin/mirrord is hidden from the service by " \
        "the unit's ProtectHome=yes" in done.stderr
    quiet = _mirrord("systemd-unit", "--bindir", "/usr/local/bin", "--config",
                     "/etc/mirrord/mirrord.yaml")
    assert "hidden from the service" not in quiet.stderr


def test_mirrord_config_is_the_units_config_when_no_config_is_given() -> None:
    env = {**os.environ, "MIRRORD_CONFIG": "/etc/mirrord/site.yaml"}
    done = subprocess.run([sys.executable, "-m", "mirrord", "systemd-unit"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    service = _parse(done.stdout)["Service"]
    assert "--config /etc/mirrord/site.yaml" in service["ExecStart"]

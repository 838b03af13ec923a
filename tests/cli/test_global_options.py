"""What every command shares: --version, the exit codes in --help, --config and the
logging options before or after the command, error lines as JSON log records with
--log-format json, and shell completion (stream names, config paths)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

import mirrord
from mirrord.cli import main
from mirrord.core.imagestream import StreamSpec
from mirrord.state import open_store


def _config(tmp_path: Path, name: str = "mirrord.yaml", stream: str = "alpha") -> Path:
    path = tmp_path / name
    path.write_text(
        "version: 1\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "streams:\n"
        f"  - from: quay.io/team/{stream}\n    to: team/{stream}\n    tags: [latest]\n"
        "  - from: quay.io/tools/beta\n    tags: [latest]\n"
    )
    return path


def _mirrord(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mirrord", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )


def test_version_is_the_package_version() -> None:
    done = _mirrord("--version")
    assert done.returncode == 0
    assert done.stdout == f"mirrord version {mirrord.__version__}\n"
    assert mirrord.__version__.startswith("0.2.0")


def test_help_lists_the_exit_codes() -> None:
    out = CliRunner().invoke(main, ["--help"]).output
    section = out[out.index("Exit codes:"):]
    for code, words in (("0", "success"), ("1", "failed"), ("2", "configuration"),
                        ("3", "state lock"), ("130", "SIGINT"), ("143", "SIGTERM")):
        assert any(line.split()[:1] == [code] and words in line for line in section.splitlines())


@pytest.mark.parametrize(
    "where", ["before", "after", "both"], ids=["before", "after", "after-wins"]
)
def test_config_before_or_after_the_command(tmp_path: Path, where: str) -> None:
    good = _config(tmp_path)
    other = _config(tmp_path, "other.yaml", stream="gamma")
    args = {
        "before": ["--config", str(good), "validate"],
        "after": ["validate", "--config", str(good)],
        "both": ["--config", str(other), "validate", "--config", str(good)],
    }[where]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{good}: valid: 2 streams")


def test_config_before_the_command_reaches_a_subgroup_s_command(tmp_path: Path) -> None:
    """`mirrord --config X prune status`: the nested command reads X (no state yet)."""
    result = CliRunner().invoke(main, ["--config", str(_config(tmp_path)), "prune", "status"])
    assert result.exit_code == 0, result.output
    assert "The pruner has not run yet" in result.output
    assert not (tmp_path / "state").exists()  # the reader created nothing


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_log_format_json_makes_the_error_line_a_json_record(tmp_path: Path, before: bool) -> None:
    missing = str(tmp_path / "missing.yaml")
    options = ["--log-format", "json"]
    args = [*options, "validate", "--config", missing] if before else [
        "validate", "--config", missing, *options]
    done = _mirrord(*args)
    assert done.returncode == 2
    record = json.loads(done.stderr.strip().splitlines()[-1])
    assert record["level"] == "error" and record["logger"] == "mirrord.cli"
    assert record["message"].startswith(f"{missing}: configuration file not found")
    assert record["time"].endswith("Z")


def test_text_error_lines_stay_plain(tmp_path: Path) -> None:
    done = _mirrord("validate", "--config", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and done.stderr.startswith("error: ")


def test_log_level_after_the_command_applies(tmp_path: Path) -> None:
    """An info line of the command disappears with --log-level error given after it."""
    env = {"STATE_DIRECTORY": str(tmp_path / "state"), "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    base = {k: v for k, v in os.environ.items() if k != "MIRRORD_CONFIG"}
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "mirrord", *a], capture_output=True, text=True, timeout=60,
        env={**base, **env},
    )
    # root's default configuration is /etc/mirrord/mirrord.yaml
    if os.geteuid() == 0 and Path("/etc/mirrord/mirrord.yaml").exists():
        pytest.skip("this machine has a configuration at /etc/mirrord/mirrord.yaml")
    loud = run("prune", "status")
    quiet = run("prune", "status", "--log-level", "error")
    assert loud.returncode == quiet.returncode == 0, loud.stderr
    assert "using the embedded default" in loud.stderr
    assert "using the embedded default" not in quiet.stderr
    # commands that do not use the mirror do not announce it
    for command in (("streams",), ("describe", "ubi9/ubi-micro"), ("logout", "--all")):
        done = run(*command)
        assert "using the embedded default" not in done.stderr, (command, done.stderr)


# -- shell completion ----------------------------------------------------------------


def _complete(words: str, cwd: Path) -> list[tuple[str, str]]:
    """What `mirrord` answers bash's completion for the last word of ``words``."""
    parts = words.split(" ")
    done = subprocess.run(
        [sys.executable, "-m", "mirrord"],
        capture_output=True, text=True, timeout=60, cwd=cwd,
        env={**os.environ, "_MIRRORD_COMPLETE": "bash_complete", "COMP_WORDS": words,
             "COMP_CWORD": str(len(parts) - 1)},
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line]
    return [tuple(line.split(",", 1)) for line in lines]  # type: ignore[misc]


def test_completion_scripts_for_each_shell() -> None:
    for shell, marker in (("bash", "complete -o nosort -F _mirrord_completion mirrord"),
                          ("zsh", "#compdef mirrord"), ("fish", "complete --no-files")):
        done = _mirrord("completion", shell)
        assert done.returncode == 0 and marker in done.stdout, shell
        assert "_MIRRORD_COMPLETE=" in done.stdout
    assert _mirrord("completion", "tcsh").returncode == 2


def test_completes_stream_names_from_the_config_and_the_state(tmp_path: Path) -> None:
    config = _config(tmp_path)

    async def store_an_imported_stream() -> None:
        async with await anyio.to_thread.run_sync(open_store, tmp_path / "state") as store:
            spec = StreamSpec("tools/delta", "quay.io/tools/delta", "mirror/tools/delta",
                              created_by="import-image")
            await store.upsert_stream(spec)

    assert _complete(f"mirrord sync --config {config} --stream ", tmp_path) == [
        ("plain", "team/alpha"), ("plain", "tools/beta")]
    anyio.run(store_an_imported_stream)
    assert _complete(f"mirrord --config {config} describe tools/", tmp_path) == [
        ("plain", "tools/beta"), ("plain", "tools/delta")]
    assert _complete(f"mirrord sync --stream t --config {config}", tmp_path)  # order-free


def test_completes_commands_and_config_paths(tmp_path: Path) -> None:
    assert ("plain", "systemd-unit") in _complete("mirrord sy", tmp_path)
    assert _complete("mirrord sync --config mi", tmp_path) == [("file", "mi")]


def test_completion_of_a_broken_config_completes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 9\n")
    assert _complete(f"mirrord sync --config {bad} --stream ", tmp_path) == []

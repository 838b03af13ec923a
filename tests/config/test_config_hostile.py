"""Issue 10's configuration findings, one by one: each ends in a ConfigError naming the
file, the line and the key (exit 2 from `mirrord validate` and `mirrord sync`), never a
traceback, a hang, or a configuration that validates and then crashes a run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirrord.config import load_config, parse_config
from mirrord.errors import ConfigError

BASE = "version: 1\nstate_dir: /tmp/mirrord-state\n"
STREAM = "streams:\n  - from: 127.0.0.1:5000/x\n    tags: [latest]\n"


def refused(text: str, tmp_path: Path) -> ConfigError:
    path = tmp_path / "mirrord.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.file == str(path)
    return caught.value


@pytest.mark.parametrize(("text", "line", "message"), [
    (BASE + "x: \"\x01\"\n", 3, "character '\\x01' is not allowed"),
    (BASE + "version2: 1\x00\n", 3, "character '\\x00' is not allowed"),
    (BASE + "streams: " + "[" * 1000 + "]" * 1000 + "\n", 3, "nested more than 64 deep"),
    (BASE + "streams:\n  - from: 127.0.0.1:5000/x\n    include: ['a{99999999999}']\n", 5,
     "repetition number is too large"),
    (BASE + "registries:\n  127.0.0.1:5000:\n    auth_file: \"\\0\"\n" + STREAM, 5,
     "control character '\\x00'"),
    (BASE.replace("/tmp/mirrord-state", "/tmp/" + "a" * 256) + STREAM, 2,
     "component is longer than 255 bytes"),
    (BASE + "mirror: oci:/tmp/" + "b/" * 2100 + "\n", 3, "longer than 4096 bytes"),
    (BASE + "streams:\n  - from: 127.0.0.1:99999/x\n    tags: [latest]\n", 4,
     "invalid registry host '127.0.0.1:99999'"),
    (BASE + "mirror: docker://127.0.0.1:99999/m\n", 3, "port 1-65535"),
    (BASE + "registries:\n  127.0.0.1:0:\n    insecure: true\n", 4, "port 1-65535"),
    (BASE + "registries:\n  127.0.0.1:5000:\n    rate: 1.0e-308\n", 5, "from 0.01 to 1e+06"),
    (BASE + "registries:\n  127.0.0.1:5000:\n    rate: " + "9" * 400 + "\n", 5, "too large"),
    (BASE + "registries:\n  127.0.0.1:5000:\n    max_concurrency: 1000000\n", 5, "at most 1000"),
    (BASE + "defaults:\n  schedule: 99999999999999999999h\n", 4, "too long"),
    (BASE + "defaults:\n  schedule: \"0 0 31 2 *\"\n", 4, "never fires"),
    (BASE + "pruning:\n  keepTagRevisions: " + "9" * 30 + "\n", 4, "must be at most"),
    (BASE + "pruning:\n  keepYoungerThan: " + "9" * 30 + "\n", 4, "must be at most"),
    (BASE + "limits:\n  max_manifest_size: 1TiB\n", 4, "invalid size"),
    (BASE + "limits:\n  max_index_depth: 0\n", 4, "must be 1 or more"),
    (BASE + "registries:\n  127.0.0.1:5000:\n    stall_timeout: 0s\n", 5, "more than 0"),
    (BASE + "notifications:\n  - url: http://x/\n    timeout: 1.0e+300\n", 5,
     "from 0 to 3600, got 1e+300"),
])
def test_each_finding_is_a_config_error_naming_the_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    error = refused(text, tmp_path)
    assert error.line == line, str(error)
    assert message in str(error)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory", "large"])
def test_a_config_file_that_is_no_small_regular_file_is_refused_at_once(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "mirrord.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "large":
        path.write_text(BASE + "#" * (5 << 20) + "\n")
    else:
        path = Path(kind)
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert time.monotonic() - started < 2
    assert ("not a regular file" if kind != "large" else "larger than 4 MiB") in str(caught.value)


@pytest.mark.parametrize("command", ["validate", "sync"])
@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "nul-auth-file"])
def test_the_commands_exit_2_without_a_traceback(
    tmp_path: Path, command: str, target: str
) -> None:
    path = tmp_path / "mirrord.yaml"
    if target == "fifo":
        os.mkfifo(path)
    elif target == "nul-auth-file":
        path.write_text(BASE + 'registries:\n  127.0.0.1:5000:\n    auth_file: "\\0"\n' + STREAM)
    else:
        path = Path(target)
    extra = ["-o", "json"] if command == "sync" else []
    run = subprocess.run([sys.executable, "-m", "mirrord", command, "--config", str(path),
                          *extra], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "error: " in run.stderr
    if command == "sync":
        assert '"reason": "InvalidConfiguration"' in run.stdout


def test_an_auth_file_that_is_a_device_passes_validate_with_a_warning_and_fails_clean(
    tmp_path: Path,
) -> None:
    # It may be a real file on the machine that runs mirrord: validate warns; the run
    # refuses to read it (a CredentialError for that stream: exit 1, a JSON document).
    path = tmp_path / "mirrord.yaml"
    path.write_text(BASE.replace("/tmp/mirrord-state", str(tmp_path / "state"))
                    + f"mirror: oci:{tmp_path / 'oci'}\n"
                    + "registries:\n  127.0.0.1:9:\n    auth_file: /dev/zero\n"
                    + "streams:\n  - from: 127.0.0.1:9/x\n    tags: [latest]\n")
    validate = subprocess.run([sys.executable, "-m", "mirrord", "validate", "--config",
                               str(path)], capture_output=True, text=True, timeout=30)
    assert validate.returncode == 0 and "is not a regular file" in validate.stderr
    started = time.monotonic()
    sync = subprocess.run([sys.executable, "-m", "mirrord", "sync", "-o", "json", "--config",
                           str(path)], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert sync.returncode == 1 and "Traceback" not in sync.stderr
    assert "not a regular file" in sync.stdout and '"reason": "Unauthorized"' in sync.stdout


def test_what_validate_accepts_builds(tmp_path: Path) -> None:
    from mirrord.sync import check_buildable

    text = (BASE + "registries:\n  127.0.0.1:5000:\n    rate: 0.01\n    stall_timeout: 1h\n"
            "    request_timeout: 86400\n    min_transfer_rate: 0\n"
            "limits:\n  max_manifest_size: 1GiB\n  max_index_depth: 16\n"
            "defaults:\n  schedule: 8784h\n" + STREAM)  # every bound at its edge
    config = parse_config(text, tmp_path / "mirrord.yaml")
    check_buildable(config)
    settings = config.registry_config("127.0.0.1:5000")
    assert (settings.rate, settings.stall_timeout, settings.min_transfer_rate) == (0.01, 3600, 0)
    assert config.limits.max_manifest_size == 1 << 30

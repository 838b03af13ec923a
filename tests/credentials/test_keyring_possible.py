"""Whether a keyring could answer is judged before keyring is imported (issue 17: the
import and backend detection cost ~0.25 s of a run's start-up where no keyring exists)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import keyring.core
import pytest

from mirrord.credentials._keyring import keyring_possible

BINDINGS = any(importlib.util.find_spec(m) is not None for m in ("dbus", "gi"))
needs_linux_without_bindings = pytest.mark.skipif(
    sys.platform != "linux" or BINDINGS, reason="needs Linux without the dbus/gi bindings"
)


@needs_linux_without_bindings
def test_no_session_bus_and_no_configuration_means_no_keyring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    env = {"HOME": str(tmp_path)}
    assert keyring_possible(env) is False
    assert keyring_possible({**env, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}) is True
    assert keyring_possible({**env, "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.X"}) is True
    (tmp_path / ".config" / "python_keyring").mkdir(parents=True)
    (tmp_path / ".config" / "python_keyring" / "keyringrc.cfg").write_text("[backend]\n")
    assert keyring_possible(env) is True


def test_a_backend_set_in_this_process_is_always_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyring.backends.null import Keyring as NullKeyring

    monkeypatch.setattr(keyring.core, "_keyring_backend", NullKeyring())
    assert keyring_possible({}) is True


@needs_linux_without_bindings
def test_an_anonymous_lookup_without_a_bus_never_imports_keyring(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from mirrord.credentials import describe_lookup\n"
        "steps = describe_lookup('127.0.0.1:5000', 'library/alpine')\n"
        "print(json.dumps([steps[-1].source, steps[-1].outcome, 'keyring' in sys.modules]))\n"
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND",
                        "REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME")}
    env.update(HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env=env).stdout
    assert json.loads(out) == ["keyring", "unavailable (no D-Bus session bus)", False]


@needs_linux_without_bindings
def test_the_installed_backends_are_looked_up_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every registry client of a run asks; the entry-point scan reads every package's
    # metadata (~5 ms), and what is installed does not change under a running process.
    import importlib.metadata

    from mirrord.credentials import _keyring

    scans: list[str] = []
    real = importlib.metadata.entry_points

    def counting(**kwargs: Any) -> Any:
        scans.append(kwargs.get("group", ""))
        return real(**kwargs)

    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    _keyring._other_backend_installed.cache_clear()
    env = {"HOME": str(tmp_path)}
    assert [keyring_possible(env) for _ in range(3)] == [False, False, False]
    assert scans == ["keyring.backends"]
    # What the environment says is still read on every call.
    assert keyring_possible({**env, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}) is True
    _keyring._other_backend_installed.cache_clear()

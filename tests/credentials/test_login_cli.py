"""``mirrord login`` on the command line, against the real Basic-auth registry.

The registry is asked first: a wrong password or an unreachable registry is
reported as such even when no keyring is available to store the credential.
"""

from __future__ import annotations

import socket
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest
from click.testing import CliRunner, Result
from harness import Credentials
from harness.registry import RegistryProcess

from mirrord.cli import main

pytestmark = pytest.mark.usefixtures("clean_keyring")


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.backends.fail.Keyring())


def login(tmp_path: Path, host: str, username: str, password: str) -> Result:
    config = tmp_path / "mirrord.yaml"
    config.write_text(
        f"version: 1\nstate_dir: {tmp_path / 'state'}\n"
        f"registries:\n  '{host}':\n    insecure: true\n"
    )
    args = ["login", host, "-u", username, "--password-stdin", "--config", str(config)]
    return CliRunner().invoke(main, args, input=password + "\n")


@pytest.mark.usefixtures("no_keyring")
def test_wrong_password_without_keyring_is_a_credential_error(
    tmp_path: Path, basic_registry: RegistryProcess, alice: Credentials
) -> None:
    result = login(tmp_path, basic_registry.host, alice.username, "wrong-password")
    assert result.exit_code == 1, result.output
    assert f"{basic_registry.host}: check credentials: 401" in result.stderr
    assert "Secret Service" not in result.stderr
    assert "wrong-password" not in result.output


@pytest.mark.usefixtures("no_keyring")
def test_unreachable_registry_without_keyring_is_a_connection_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{sock.getsockname()[1]}"
    result = login(tmp_path, host, "alice", "pw")
    assert result.exit_code == 1, result.output
    assert f"error: {host}: ping: cannot reach the registry: ConnectError" in result.stderr
    assert "Secret Service" not in result.stderr


@pytest.mark.usefixtures("no_keyring")
def test_valid_password_without_keyring_says_valid_but_not_stored(
    tmp_path: Path, basic_registry: RegistryProcess, alice: Credentials
) -> None:
    result = login(tmp_path, basic_registry.host, alice.username, alice.password)
    assert result.exit_code == 1, result.output
    assert (
        f"error: login to {basic_registry.host}: the credentials are valid, but they were "
        "not stored" in result.stderr
    )
    assert "no Secret Service is available" in result.stderr
    assert "Login Succeeded" not in result.stdout


def test_valid_password_is_stored(
    tmp_path: Path, basic_registry: RegistryProcess, alice: Credentials
) -> None:
    result = login(tmp_path, basic_registry.host, alice.username, alice.password)
    assert result.exit_code == 0, result.output
    assert f"Login Succeeded: {basic_registry.host}" in result.stdout
    stored = keyring.get_password(f"mirrord:{basic_registry.host}", "__username__")
    assert stored == alice.username

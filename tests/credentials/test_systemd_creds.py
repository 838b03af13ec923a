"""systemd credentials: auth files among the files in $CREDENTIALS_DIRECTORY."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mirrord.credentials import describe_lookup, resolve_credential
from mirrord.errors import CredentialError


@pytest.fixture
def creds_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "api-token").write_text("plain-api-token-value\n")
    (directory / "webhook.key").write_bytes(b"\x00\xff\xfe binary key")
    (directory / "settings").write_text(json.dumps({"not": "an auth file"}))
    return directory


def test_pull_secret_from_load_credential(
    creds_dir: Path, write_auth: Callable[..., Path], auth_entry: Callable[[str, str], dict]
) -> None:
    write_auth(creds_dir / "pull-secret", {"registry.redhat.io": auth_entry("1|svc", "pw")})
    env = {"CREDENTIALS_DIRECTORY": str(creds_dir)}
    credential = resolve_credential("registry.redhat.io", "ubi9/ubi", env=env, use_keyring=False)
    assert credential is not None
    assert (credential.username, credential.password) == ("1|svc", "pw")
    assert credential.source == "systemd credential pull-secret"


def test_first_file_with_an_entry_wins(
    creds_dir: Path, write_auth: Callable[..., Path], auth_entry: Callable[[str, str], dict]
) -> None:
    write_auth(creds_dir / "a-quay", {"quay.io": auth_entry("quay-user", "q")})
    write_auth(creds_dir / "b-redhat", {"registry.redhat.io": auth_entry("rh-user", "r")})
    write_auth(creds_dir / "c-redhat", {"registry.redhat.io": auth_entry("later", "l")})
    env = {"CREDENTIALS_DIRECTORY": str(creds_dir)}
    credential = resolve_credential("registry.redhat.io", env=env, use_keyring=False)
    assert credential is not None and credential.username == "rh-user"
    steps = [str(s) for s in describe_lookup("registry.redhat.io", env=env, use_keyring=False)]
    assert steps == [
        "systemd credential a-quay: no entry for registry.redhat.io",
        "systemd credential b-redhat: used entry registry.redhat.io",
    ]


def test_other_credentials_are_not_errors(creds_dir: Path) -> None:
    env = {"CREDENTIALS_DIRECTORY": str(creds_dir)}
    assert resolve_credential("quay.io", env=env, use_keyring=False) is None
    assert [str(s) for s in describe_lookup("quay.io", env=env, use_keyring=False)] == [
        f"systemd credentials ({creds_dir}): no auth file"
    ]


def test_malformed_pull_secret_names_the_credential(creds_dir: Path) -> None:
    (creds_dir / "pull-secret").write_text(json.dumps({"auths": {"quay.io": {"auth": "%%%"}}}))
    env = {"CREDENTIALS_DIRECTORY": str(creds_dir)}
    with pytest.raises(CredentialError, match="systemd credential pull-secret") as caught:
        resolve_credential("quay.io", env=env, use_keyring=False)
    assert "%%%" not in str(caught.value)


def test_missing_directory_is_skipped(tmp_path: Path) -> None:
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "gone")}
    assert resolve_credential("quay.io", env=env, use_keyring=False) is None

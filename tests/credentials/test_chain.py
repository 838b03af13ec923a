"""The lookup chain: order, first hit wins, missing sources skipped, errors stop it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mirrord.credentials import (
    Credential,
    delete_credential,
    describe_lookup,
    resolve_credential,
    store_credential,
)
from mirrord.errors import CredentialError

if TYPE_CHECKING:
    from tests.credentials.secretservice import PrivateSecretService


@dataclass
class Sources:
    """Every source of the chain, each holding a different user for ``registry``."""

    auth_file: Path
    files: list[tuple[str, Path]]  # (user, path) in lookup order, auth_file first
    env: dict[str, str]


@pytest.fixture
def sources(
    tmp_path: Path,
    home: Path,
    registry: str,
    write_auth: Callable[..., Path],
    auth_entry: Callable[[str, str], dict],
) -> Sources:
    paths = {
        "configured": tmp_path / "etc" / "pull-secret.json",
        "registry-auth-file": tmp_path / "registry-auth.json",
        "xdg-runtime": tmp_path / "run" / "containers" / "auth.json",
        "containers-config": home / ".config" / "containers" / "auth.json",
        "docker-config": tmp_path / "docker" / "config.json",
        "systemd": tmp_path / "credentials" / "pull-secret",
    }
    for user, path in paths.items():
        write_auth(path, {registry: auth_entry(user, f"pw-{user}")})
    env = {
        "HOME": str(home),
        "REGISTRY_AUTH_FILE": str(paths["registry-auth-file"]),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "CREDENTIALS_DIRECTORY": str(tmp_path / "credentials"),
    }
    return Sources(paths["configured"], list(paths.items()), env)


def test_precedence_through_the_whole_chain(
    sources: Sources, registry: str, clean_keyring: PrivateSecretService
) -> None:
    store_credential(registry, "keyring-user", "pw-keyring")
    expected_source = {
        "configured": f"auth file {sources.auth_file}",
        "registry-auth-file": f"$REGISTRY_AUTH_FILE ({sources.env['REGISTRY_AUTH_FILE']})",
        "xdg-runtime": f"auth file {sources.files[2][1]}",
        "containers-config": f"auth file {sources.files[3][1]}",
        "docker-config": f"docker config {sources.files[4][1]}",
        "systemd": "systemd credential pull-secret",
    }

    def resolve() -> Credential | None:
        # The configured auth_file must exist: once removed, the configuration drops it.
        auth_file = sources.auth_file if sources.auth_file.exists() else None
        return resolve_credential(registry, "ns/repo", auth_file=auth_file, env=sources.env)

    for user, path in sources.files:
        credential = resolve()
        assert credential is not None
        assert (credential.username, credential.password) == (user, f"pw-{user}")
        assert credential.source == expected_source[user]
        path.unlink()  # any other missing file is skipped silently
    credential = resolve()
    assert credential is not None
    assert (credential.username, credential.source) == ("keyring-user", "keyring")
    assert delete_credential(registry)
    assert resolve() is None


def test_home_docker_config_only_without_docker_config(
    home: Path,
    registry: str,
    write_auth: Callable[..., Path],
    auth_entry: Callable[[str, str], dict],
    tmp_path: Path,
) -> None:
    write_auth(home / ".docker" / "config.json", {registry: auth_entry("home-docker", "pw")})
    env = {"HOME": str(home)}
    credential = resolve_credential(registry, env=env, use_keyring=False)
    assert credential is not None and credential.username == "home-docker"
    assert credential.source == f"docker config {home / '.docker' / 'config.json'}"
    env["DOCKER_CONFIG"] = str(tmp_path / "elsewhere")
    assert resolve_credential(registry, env=env, use_keyring=False) is None


def test_env_without_home_consults_no_home_files(registry: str) -> None:
    assert describe_lookup(registry, env={}, use_keyring=False) == ()


def test_describe_lookup_lists_every_source_in_order(
    sources: Sources, clean_keyring: PrivateSecretService
) -> None:
    steps = describe_lookup("other.example", "a/b", auth_file=sources.auth_file, env=sources.env)
    files = dict(sources.files)
    assert [str(step) for step in steps] == [
        f"auth file {files['configured']}: no entry for other.example/a/b",
        f"$REGISTRY_AUTH_FILE ({files['registry-auth-file']}): no entry for other.example/a/b",
        f"auth file {files['xdg-runtime']}: no entry for other.example/a/b",
        f"auth file {files['containers-config']}: no entry for other.example/a/b",
        f"docker config {files['docker-config']}: no entry for other.example/a/b",
        "systemd credential pull-secret: no entry for other.example/a/b",
        "keyring: no entry mirrord:other.example",
    ]


def test_describe_lookup_stops_at_the_hit_and_holds_no_secret(
    sources: Sources,
    registry: str,
    write_auth: Callable[..., Path],
    auth_entry: Callable[[str, str], dict],
) -> None:
    files = dict(sources.files)
    write_auth(files["configured"], {"other.example": auth_entry("other", "pw-other")})
    steps = describe_lookup(registry, auth_file=sources.auth_file, env=sources.env)
    assert [str(step) for step in steps] == [
        f"auth file {files['configured']}: no entry for {registry}",
        f"$REGISTRY_AUTH_FILE ({files['registry-auth-file']}): used entry {registry}",
    ]
    assert "pw-" not in repr(steps)


def test_malformed_early_source_stops_the_chain(sources: Sources, registry: str) -> None:
    bad = Path(sources.env["REGISTRY_AUTH_FILE"])
    bad.write_text('{"auths": {"' + registry + '": {"auth": "pw-secret-in-a-broken-file"')
    sources.auth_file.unlink()
    with pytest.raises(CredentialError) as caught:
        resolve_credential(registry, env=sources.env, use_keyring=False)
    assert str(bad) in str(caught.value)
    assert "pw-secret" not in str(caught.value)
    steps = describe_lookup(registry, env=sources.env, use_keyring=False)
    assert len(steps) == 1
    assert steps[0].source == f"$REGISTRY_AUTH_FILE ({bad})"
    assert steps[0].outcome.startswith("error: ")
    assert "pw-secret" not in steps[0].outcome


def test_missing_configured_auth_file_is_an_error_naming_it(
    sources: Sources, registry: str
) -> None:
    sources.auth_file.unlink()
    with pytest.raises(CredentialError) as caught:
        resolve_credential(registry, auth_file=sources.auth_file, env=sources.env)
    assert str(caught.value) == (
        f"auth_file {sources.auth_file} for {registry} (from the configuration) does not "
        "exist; create it, or remove auth_file from the registry's entry"
    )
    # The lookup stops there: the later sources (which do hold a credential) are not used.
    steps = describe_lookup(registry, auth_file=sources.auth_file, env=sources.env)
    assert [step.source for step in steps] == [f"auth file {sources.auth_file}"]
    assert steps[0].outcome == f"error: {caught.value}"


def test_missing_environment_and_default_files_are_skipped(
    tmp_path: Path, home: Path, registry: str
) -> None:
    # $REGISTRY_AUTH_FILE as the container image sets it, with no pull secret mounted.
    env = {"HOME": str(home), "REGISTRY_AUTH_FILE": str(tmp_path / "pull-secret.json"),
           "XDG_RUNTIME_DIR": str(tmp_path / "run"), "DOCKER_CONFIG": str(tmp_path / "docker")}
    assert resolve_credential(registry, env=env, use_keyring=False) is None
    steps = describe_lookup(registry, env=env, use_keyring=False)
    assert [step.outcome for step in steps] == ["not found"] * 4


def test_default_env_is_os_environ(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    registry: str,
    write_auth: Callable[..., Path],
    auth_entry: Callable[[str, str], dict],
) -> None:
    path = write_auth(tmp_path / "auth.json", {registry: auth_entry("from-environ", "pw")})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    credential = resolve_credential(registry, use_keyring=False)
    assert credential is not None and credential.username == "from-environ"

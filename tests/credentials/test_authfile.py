"""Parsing auth files: pull secrets, containers auth.json, Docker config.json."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mirrord.credentials import TOKEN_USERNAME, Credential, read_auth_file, resolve_credential
from mirrord.errors import CredentialError

SECRET = "Sup3r-Secret-Value"


def _resolve(path: Path, registry: str, repository: str = "") -> Credential | None:
    return resolve_credential(registry, repository, auth_file=path, env={}, use_keyring=False)


def test_pull_secret_service_account_user_with_pipe(
    tmp_path: Path, write_auth: Callable[..., Path], auth_entry: Callable[[str, str], dict]
) -> None:
    path = write_auth(
        tmp_path / "pull-secret.json",
        {
            "registry.redhat.io": auth_entry("12345678|mirror-bot", "ey:J0:colons"),
            "quay.io": auth_entry("other", "x"),
        },
    )
    credential = _resolve(path, "registry.redhat.io", "ubi9/ubi")
    assert credential is not None
    assert credential.username == "12345678|mirror-bot"
    assert credential.password == "ey:J0:colons"  # split on the first colon only
    assert credential.source == f"auth file {path}"
    assert credential.identity_token is None


def test_auth_json_username_and_password(tmp_path: Path, write_auth: Callable[..., Path]) -> None:
    path = write_auth(
        tmp_path / "auth.json", {"quay.io": {"username": "robot+ci", "password": "pw"}}
    )
    credential = _resolve(path, "quay.io", "org/app")
    assert credential is not None
    assert (credential.username, credential.password) == ("robot+ci", "pw")


def test_most_specific_key_wins(
    tmp_path: Path, write_auth: Callable[..., Path], auth_entry: Callable[[str, str], dict]
) -> None:
    path = write_auth(
        tmp_path / "auth.json",
        {
            "quay.io": auth_entry("host-user", "a"),
            "quay.io/ns": auth_entry("ns-user", "b"),
            "quay.io/ns/repo": auth_entry("repo-user", "c"),
        },
    )

    def user(repository: str) -> str:
        credential = _resolve(path, "quay.io", repository)
        assert credential is not None
        return credential.username

    assert user("ns/repo") == "repo-user"
    assert user("ns/other") == "ns-user"
    assert user("ns/repo2") == "ns-user"  # a prefix of a name is not a path prefix
    assert user("elsewhere/repo") == "host-user"
    assert user("") == "host-user"


def test_empty_specific_entry_falls_back_to_less_specific(
    tmp_path: Path, write_auth: Callable[..., Path], auth_entry: Callable[[str, str], dict]
) -> None:
    path = write_auth(
        tmp_path / "auth.json", {"quay.io/ns": {}, "quay.io": auth_entry("host-user", "a")}
    )
    credential = _resolve(path, "quay.io", "ns/repo")
    assert credential is not None and credential.username == "host-user"


@pytest.mark.parametrize("registry", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_config_legacy_hub_key(
    tmp_path: Path,
    write_auth: Callable[..., Path],
    auth_entry: Callable[[str, str], dict],
    registry: str,
) -> None:
    path = write_auth(
        tmp_path / "config.json", {"https://index.docker.io/v1/": auth_entry("hubuser", "pw")}
    )
    credential = _resolve(path, registry, "library/nginx")
    assert credential is not None and credential.username == "hubuser"


def test_docker_hub_one_part_repository_gains_library(
    tmp_path: Path, write_auth: Callable[..., Path], auth_entry: Callable[[str, str], dict]
) -> None:
    path = write_auth(
        tmp_path / "config.json",
        {
            "docker.io/library/nginx": auth_entry("nginx-user", "a"),
            "docker.io": auth_entry("hub-user", "b"),
        },
    )
    credential = _resolve(path, "docker.io", "nginx")
    assert credential is not None and credential.username == "nginx-user"


def test_canonical_key_beats_legacy_alias(
    tmp_path: Path, write_auth: Callable[..., Path], auth_entry: Callable[[str, str], dict]
) -> None:
    # The canonical key is written second and first: it wins either way.
    for auths in (
        {
            "docker.io": auth_entry("new", "a"),
            "https://index.docker.io/v1/": auth_entry("old", "b"),
        },
        {
            "https://index.docker.io/v1/": auth_entry("old", "b"),
            "docker.io": auth_entry("new", "a"),
        },
    ):
        path = write_auth(tmp_path / "config.json", auths)
        credential = _resolve(path, "docker.io")
        assert credential is not None and credential.username == "new"


def test_key_with_scheme_and_port(
    tmp_path: Path, write_auth: Callable[..., Path], auth_entry: Callable[[str, str], dict]
) -> None:
    path = write_auth(tmp_path / "auth.json", {"http://127.0.0.1:5101": auth_entry("local", "pw")})
    credential = _resolve(path, "127.0.0.1:5101", "a/b")
    assert credential is not None and credential.username == "local"
    assert _resolve(path, "127.0.0.1:5102", "a/b") is None


def test_identity_token_only(tmp_path: Path, write_auth: Callable[..., Path]) -> None:
    path = write_auth(tmp_path / "config.json", {"myacr.example": {"identitytoken": "refresh-1"}})
    credential = _resolve(path, "myacr.example")
    assert credential is not None
    assert credential.username == TOKEN_USERNAME
    assert credential.password == "refresh-1"
    assert credential.identity_token == "refresh-1"
    assert "refresh-1" not in repr(credential)


def test_identity_token_beside_auth(
    tmp_path: Path, write_auth: Callable[..., Path], auth_entry: Callable[[str, str], dict]
) -> None:
    entry = {**auth_entry("00000000-0000-0000-0000-000000000000", "x"), "identitytoken": "tok"}
    path = write_auth(tmp_path / "config.json", {"myacr.example": entry})
    credential = _resolve(path, "myacr.example")
    assert credential is not None
    assert credential.username == "00000000-0000-0000-0000-000000000000"
    assert credential.identity_token == "tok"


def test_credential_helpers_are_never_run(
    tmp_path: Path, write_auth: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "helper-ran"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("docker-credential-spy", "docker-credential-store"):
        helper = bindir / name
        helper.write_text(f'#!/bin/sh\ntouch {marker}\necho \'{{"Username":"u","Secret":"s"}}\'\n')
        helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    path = write_auth(
        tmp_path / "config.json",
        {"https://index.docker.io/v1/": {}, "gcr.io": {}},
        credHelpers={"gcr.io": "spy"},
        credsStore="store",
    )
    assert _resolve(path, "gcr.io", "p/img") is None
    assert _resolve(path, "docker.io", "library/nginx") is None
    assert not marker.exists()
    document = read_auth_file(path, "docker config")
    assert document is not None
    assert document.find("gcr.io", "p/img") == (None, "credential helper 'spy' for gcr.io not run")


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert read_auth_file(tmp_path / "absent.json", "auth file") is None


def test_missing_configured_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match=r"absent\.json for quay\.io .* does not exist"):
        _resolve(tmp_path / "absent.json", "quay.io")


def _assert_names_file_not_secret(error: CredentialError, path: Path) -> None:
    message = str(error)
    assert str(path) in message
    assert SECRET not in message
    assert base64.b64encode(f"user:{SECRET}".encode()).decode() not in message


def test_invalid_json_names_file_not_contents(tmp_path: Path) -> None:
    path = tmp_path / "pull-secret.json"
    token = base64.b64encode(f"user:{SECRET}".encode()).decode()
    path.write_text('{"auths": {"quay.io": {"auth": "' + token + '"}' + f" {SECRET}")
    with pytest.raises(CredentialError) as caught:
        _resolve(path, "quay.io")
    _assert_names_file_not_secret(caught.value, path)
    assert "invalid JSON" in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"auth": f"!!{SECRET}!!"}, "not valid base64"),
        ({"auth": base64.b64encode(SECRET.encode()).decode()}, "user:password"),
        ({"auth": 12345}, "must be a string"),
        ({"username": "user"}, "no password"),
        ({"password": SECRET}, "no username"),
        ("user:" + SECRET, "must be an object"),
    ],
)
def test_malformed_entry_names_file_and_key_not_secret(
    tmp_path: Path, entry: object, why: str
) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {"quay.io": entry}}))
    with pytest.raises(CredentialError) as caught:
        _resolve(path, "quay.io")
    _assert_names_file_not_secret(caught.value, path)
    assert why in str(caught.value)
    assert "quay.io" in str(caught.value)


@pytest.mark.parametrize(
    "document", [[], {"auths": []}, {"auths": {}, "credHelpers": ["x"]}, {"credsStore": 1}]
)
def test_malformed_structure(tmp_path: Path, document: object) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CredentialError, match=str(path)):
        _resolve(path, "quay.io")


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.mkdir()  # reading a directory fails even as root
    with pytest.raises(CredentialError, match="not a regular file"):
        _resolve(path, "quay.io")


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom"])
def test_auth_file_that_is_no_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "auth.json"
        os.mkfifo(path)  # no writer: a blocking open would never return
    else:
        path = Path(kind)
    started = time.monotonic()
    with pytest.raises(CredentialError, match="not a regular file") as caught:
        _resolve(path, "quay.io")
    assert time.monotonic() - started < 5
    assert str(path) in str(caught.value)


def test_auth_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    padding = " " * (2 << 20)  # valid JSON, but no pull secret is 2 MiB
    path.write_text('{"auths": {}}' + padding)
    with pytest.raises(CredentialError, match="larger than 1024 KiB"):
        _resolve(path, "quay.io")


def test_docker_config_without_auths(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"proxies": {"default": {}}}))
    assert _resolve(path, "quay.io") is None

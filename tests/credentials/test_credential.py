"""The Credential value and the auths key names."""

from __future__ import annotations

import dataclasses

import pytest

from mirrord.credentials import (
    Credential,
    LookupStep,
    candidate_keys,
    normalise_auth_key,
    registry_host,
)
from mirrord.errors import CredentialError


def test_repr_and_str_hide_password_and_token() -> None:
    credential = Credential("alice", "s3cret-pw", "keyring", identity_token="refresh-tok")
    for text in (repr(credential), str(credential), f"{credential}"):
        assert "s3cret-pw" not in text
        assert "refresh-tok" not in text
        assert "alice" in text
        assert "keyring" in text


def test_credential_is_frozen() -> None:
    credential = Credential("alice", "pw", "keyring")
    with pytest.raises(dataclasses.FrozenInstanceError):
        credential.password = "other"  # type: ignore[misc]


def test_lookup_step_str() -> None:
    assert str(LookupStep("keyring", "no entry mirrord:quay.io")) == (
        "keyring: no entry mirrord:quay.io"
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io/library/nginx", "docker.io/library/nginx"),
        ("http://localhost:5000", "localhost:5000"),
        ("https://Quay.IO/v2/", "quay.io"),
        ("quay.io/ns/repo/", "quay.io/ns/repo"),
        ("127.0.0.1:5101", "127.0.0.1:5101"),
    ],
)
def test_normalise_auth_key(key: str, expected: str) -> None:
    assert normalise_auth_key(key) == expected


def test_candidate_keys_most_specific_first() -> None:
    assert candidate_keys("quay.io", "ns/team/repo") == [
        "quay.io/ns/team/repo",
        "quay.io/ns/team",
        "quay.io/ns",
        "quay.io",
    ]
    assert candidate_keys("index.docker.io", "nginx") == [
        "docker.io/library/nginx",
        "docker.io/library",
        "docker.io",
    ]
    assert candidate_keys("127.0.0.1:5000") == ["127.0.0.1:5000"]


@pytest.mark.parametrize("bad", ["", "quay.io/ns", "https://"])
def test_registry_host_refuses_non_hosts(bad: str) -> None:
    with pytest.raises(CredentialError):
        registry_host(bad)

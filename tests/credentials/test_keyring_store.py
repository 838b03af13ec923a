"""The keyring entries of ``mirrord login``, against a real gnome-keyring Secret Service."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import keyring
import keyring.backends.fail
import pytest
import secretstorage

from mirrord.credentials import (
    delete_credential,
    describe_lookup,
    keyring_credential,
    keyring_service,
    resolve_credential,
    store_credential,
)
from mirrord.errors import CredentialError

if TYPE_CHECKING:
    from tests.credentials.secretservice import PrivateSecretService

pytestmark = pytest.mark.usefixtures("clean_keyring")


def _items(service: str) -> dict[str, str]:
    """username -> secret, read straight from the Secret Service (not through keyring)."""
    with contextlib.closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.get_default_collection(connection)
        return {
            item.get_attributes()["username"]: item.get_secret().decode()
            for item in collection.search_items({"service": service})
        }


def test_store_read_delete(registry: str) -> None:
    assert keyring_credential(registry) is None
    store_credential(registry, "12345678|bot", "pä:ss wörd")
    assert _items(f"mirrord:{registry}") == {
        "12345678|bot": "pä:ss wörd",
        "__username__": "12345678|bot",
    }
    credential = keyring_credential(registry)
    assert credential is not None
    assert (credential.username, credential.password) == ("12345678|bot", "pä:ss wörd")
    assert credential.source == "keyring"
    assert delete_credential(registry) is True
    assert _items(f"mirrord:{registry}") == {}
    assert keyring_credential(registry) is None
    assert delete_credential(registry) is False


def test_store_replaces_the_previous_user(registry: str) -> None:
    store_credential(registry, "alice", "a")
    store_credential(registry, "bob", "b")
    assert _items(f"mirrord:{registry}") == {"bob": "b", "__username__": "bob"}
    credential = keyring_credential(registry)
    assert credential is not None and (credential.username, credential.password) == ("bob", "b")


def test_docker_hub_aliases_share_one_entry() -> None:
    assert keyring_service("https://index.docker.io/v1/") == "mirrord:docker.io"
    store_credential("index.docker.io", "hubuser", "pw")
    credential = keyring_credential("registry-1.docker.io")
    assert credential is not None and credential.username == "hubuser"
    assert delete_credential("docker.io")


def test_entries_are_per_registry(registry: str) -> None:
    store_credential(registry, "alice", "a")
    assert keyring_credential("elsewhere.test") is None
    assert keyring_credential(registry.split(":")[0]) is None  # the port is part of the name


def test_invalid_username_refused(registry: str) -> None:
    with pytest.raises(CredentialError):
        store_credential(registry, "__username__", "pw")
    with pytest.raises(CredentialError):
        store_credential(registry, "", "pw")
    assert _items(f"mirrord:{registry}") == {}


def test_no_backend_lookup_skips_store_raises(
    registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.backends.fail.Keyring())
    assert keyring_credential(registry) is None
    assert resolve_credential(registry, env={}) is None
    assert [str(s) for s in describe_lookup(registry, env={})] == [
        "keyring: unavailable (no keyring backend)"
    ]
    with pytest.raises(CredentialError, match="no Secret Service is available") as caught:
        store_credential(registry, "alice", "topsecret")
    assert "topsecret" not in str(caught.value)
    with pytest.raises(CredentialError, match="no Secret Service is available"):
        delete_credential(registry)


def test_secret_service_gone_lookup_skips_store_raises(
    registry: str, monkeypatch: pytest.MonkeyPatch, secret_service: PrivateSecretService
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={secret_service.root}/no-bus")
    assert keyring_credential(registry) is None
    (step,) = describe_lookup(registry, env={})
    assert step.source == "keyring" and step.outcome.startswith("unavailable (")
    with pytest.raises(CredentialError, match="no Secret Service is available"):
        store_credential(registry, "alice", "topsecret")

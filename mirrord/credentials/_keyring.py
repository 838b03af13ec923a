"""Credentials written by ``mirrord login``, kept in the system keyring (Secret Service).

A registry's credential lives under the keyring service ``mirrord:<host[:port]>`` (or
``mirrord:<host[:port]/path>`` for a repository-scoped login, as in an auth file) as
two entries: the password under the user name, and the user name under
``__username__`` so that it can be found again. Every call here blocks (D-Bus):
async callers wrap them in ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import logging

import keyring
import keyring.backends.chainer
import keyring.backends.fail
import keyring.backends.null
from jeepney.wrappers import DBusErrorResponse
from keyring.backend import KeyringBackend
from keyring.errors import InitError, KeyringError, KeyringLocked, PasswordDeleteError
from secretstorage.exceptions import SecretServiceNotAvailableException, SecretStorageException

from mirrord.credentials._credential import Credential, candidate_keys, normalise_auth_key
from mirrord.errors import CredentialError

log = logging.getLogger(__name__)

SERVICE_PREFIX = "mirrord:"
USERNAME_ENTRY = "__username__"
KEYRING_SOURCE = "keyring"
_NO_BACKEND = "no keyring backend"

#: What a keyring backend raises when it cannot do its job.
_BACKEND_ERRORS = (KeyringError, SecretStorageException, DBusErrorResponse, OSError)
_UNAVAILABLE_ERRORS = (InitError, SecretServiceNotAvailableException, OSError)


class _NoBackendError(Exception):
    """No usable keyring backend is configured (internal)."""


def keyring_service(key: str) -> str:
    """The keyring service name for a registry (or ``host/path``): ``mirrord:quay.io``."""
    canonical = normalise_auth_key(key)
    if not canonical or canonical.startswith("/"):
        raise CredentialError(f"expected a registry host[:port][/path], got {key!r}")
    return SERVICE_PREFIX + canonical


def keyring_credential(registry: str, repository: str = "") -> Credential | None:
    """The stored credential for ``registry``; None when absent or no keyring works."""
    return keyring_lookup(registry, repository)[0]


def keyring_lookup(registry: str, repository: str = "") -> tuple[Credential | None, str]:
    """The stored credential and a description of the outcome (never a secret): the
    most specific entry first (``host/ns/repo``, ``host/ns``, ``host``)."""
    services = [SERVICE_PREFIX + key for key in candidate_keys(registry, repository)]
    try:
        backend = _backend()
        for service in services:
            username = backend.get_password(service, USERNAME_ENTRY)
            if username is None:
                continue
            password = backend.get_password(service, username)
            if password is None:
                log.debug("keyring: %s names a user whose password is gone; skipped", service)
                continue
            return Credential(username, password, KEYRING_SOURCE), f"used entry {service}"
    except _NoBackendError:
        log.debug("keyring: no backend; skipped")
        return None, f"unavailable ({_NO_BACKEND})"
    except _BACKEND_ERRORS as exc:
        log.debug("keyring: %s; skipped", _describe(exc))
        return None, f"unavailable ({_describe(exc)})"
    return None, f"no entry {services[-1]}"


def keyring_unavailable() -> str | None:
    """Why no keyring can be reached (no backend, no Secret Service); None when one answers.
    A locked keyring answers: storing in it fails with its own error."""
    try:
        _backend().get_password(SERVICE_PREFIX, USERNAME_ENTRY)
    except _NoBackendError:
        return _NO_BACKEND
    except _UNAVAILABLE_ERRORS as exc:
        return _describe(exc)
    except _BACKEND_ERRORS:
        return None
    return None


def stored_keyring_keys() -> list[str] | None:
    """The registries (and ``host/path`` keys) with a mirrord entry in the keyring, for
    ``logout --all``; None when the backend cannot list its entries (only the Secret
    Service can), [] when no keyring is reachable."""
    try:
        backend = _backend()
    except _NoBackendError:
        return []
    collection_of = getattr(backend, "get_preferred_collection", None)
    appid = getattr(backend, "appid", None)
    if collection_of is None or appid is None:
        return None
    try:
        collection = collection_of()
        items = list(collection.search_items({"application": appid}))
        services = {item.get_attributes().get("service", "") for item in items}
    except _BACKEND_ERRORS as exc:
        log.debug("keyring: cannot list entries: %s", _describe(exc))
        return []
    return sorted(s.removeprefix(SERVICE_PREFIX) for s in services if s.startswith(SERVICE_PREFIX))


def store_credential(registry: str, username: str, password: str) -> None:
    """Store (or replace) the credential for ``registry`` (a host, or ``host/path``)."""
    service = keyring_service(registry)
    host = service.removeprefix(SERVICE_PREFIX)
    if not username or username == USERNAME_ENTRY:
        raise CredentialError(f"cannot store the credential for {host}: invalid user name")
    if not password:
        raise CredentialError(f"cannot store the credential for {host}: empty password")
    try:
        backend = _backend()
        previous = backend.get_password(service, USERNAME_ENTRY)
        backend.set_password(service, username, password)
        backend.set_password(service, USERNAME_ENTRY, username)
        if previous is not None and previous != username:
            _delete_quietly(backend, service, previous)
    except _NoBackendError:
        raise _store_error(None, "store the credential for", service) from None
    except _BACKEND_ERRORS as exc:
        raise _store_error(exc, "store the credential for", service) from None
    log.debug("keyring: stored %s", service)


def delete_credential(registry: str) -> bool:
    """Remove the credential for ``registry`` (a host, or ``host/path``); False when
    there was none."""
    service = keyring_service(registry)
    try:
        backend = _backend()
        username = backend.get_password(service, USERNAME_ENTRY)
        deleted = False
        for name in (username, USERNAME_ENTRY):
            if name is not None:
                deleted = _delete_quietly(backend, service, name) or deleted
    except _NoBackendError:
        raise _store_error(None, "delete the credential for", service) from None
    except _BACKEND_ERRORS as exc:
        raise _store_error(exc, "delete the credential for", service) from None
    return deleted


def _backend() -> KeyringBackend:
    backend = keyring.get_keyring()
    null_types = (keyring.backends.fail.Keyring, keyring.backends.null.Keyring)
    if isinstance(backend, null_types):
        raise _NoBackendError
    if isinstance(backend, keyring.backends.chainer.ChainerBackend) and not backend.backends:
        raise _NoBackendError
    return backend


def _delete_quietly(backend: KeyringBackend, service: str, username: str) -> bool:
    """Delete one entry; False when it was not there."""
    try:
        backend.delete_password(service, username)
    except PasswordDeleteError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a keyring failure."""
    if isinstance(exc, KeyringLocked):
        return "the keyring is locked"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _store_error(exc: BaseException | None, action: str, service: str) -> CredentialError:
    """The error for a failed write; ``exc`` None means no backend is configured."""
    registry = service.removeprefix(SERVICE_PREFIX)
    if exc is None:
        return CredentialError(f"cannot {action} {registry}: " + _no_service_message(_NO_BACKEND))
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        return CredentialError(
            f"cannot {action} {registry}: " + _no_service_message(_describe(exc))
        )
    return CredentialError(f"cannot {action} {registry} in the keyring: {_describe(exc)}")


def _no_service_message(why: str) -> str:
    return (
        f"no Secret Service is available ({why}); start gnome-keyring-daemon or another "
        "org.freedesktop.secrets provider, or put the credential in an auth file"
    )

"""Credentials written by ``mirrord login``, kept in the system keyring (Secret Service).

A registry's credential lives under the keyring service ``mirrord:<host[:port]>`` (or
``mirrord:<host[:port]/path>`` for a repository-scoped login, as in an auth file) as
two entries: the password under the user name, and the user name under
``__username__`` so that it can be found again. Every call here blocks (D-Bus):
async callers wrap them in ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mirrord.credentials._credential import Credential, candidate_keys, normalise_auth_key
from mirrord.errors import CredentialError

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)

SERVICE_PREFIX = "mirrord:"
USERNAME_ENTRY = "__username__"
KEYRING_SOURCE = "keyring"
_NO_BACKEND = "no keyring backend"
_NO_BUS = "no D-Bus session bus"
# keyring's own backends: the Linux ones need a D-Bus session (Secret Service through
# jeepney, which reads only $DBUS_SESSION_BUS_ADDRESS) or the dbus/gi bindings.
_BUILTIN_BACKENDS = "keyring.backends."


class _NoBackendError(Exception):
    """No usable keyring backend is configured (internal)."""


@dataclass(frozen=True)
class _Errors:
    """What a keyring backend raises when it cannot do its job (``backend``), the subset
    meaning no keyring can be reached (``unavailable``), and the two that are told apart.
    Built on first use: keyring, secretstorage and jeepney cost ~0.2 s of CPU to import."""

    backend: tuple[type[BaseException], ...]
    unavailable: tuple[type[BaseException], ...]
    locked: type[BaseException]
    not_deleted: type[BaseException]


def _errors() -> _Errors:
    from jeepney.wrappers import DBusErrorResponse
    from keyring.errors import InitError, KeyringError, KeyringLocked, PasswordDeleteError
    from secretstorage.exceptions import (
        SecretServiceNotAvailableException,
        SecretStorageException,
    )

    return _Errors(
        backend=(KeyringError, SecretStorageException, DBusErrorResponse, OSError),
        unavailable=(InitError, SecretServiceNotAvailableException, OSError),
        locked=KeyringLocked,
        not_deleted=PasswordDeleteError,
    )


def keyring_possible(env: Mapping[str, str] | None = None) -> bool:
    """Whether any keyring backend could answer, judged without importing keyring: False
    only on Linux with keyring's own backends alone, none of them usable (no
    ``$DBUS_SESSION_BUS_ADDRESS``, no dbus or gi bindings) and no keyring configuration
    (``$PYTHON_KEYRING_BACKEND``, ``keyringrc.cfg``) or backend set in this process: the
    case of a system service or a container, where looking costs ~0.25 s for nothing."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if sys.platform != "linux" or environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return True
    if environ.get("PYTHON_KEYRING_BACKEND") or _backend_set_here():
        return True
    home = environ.get("HOME", "")
    config_home = environ.get("XDG_CONFIG_HOME") or (f"{home}/.config" if home else "")
    if config_home and Path(config_home, "python_keyring", "keyringrc.cfg").exists():
        return True
    return _other_backend_installed()


@functools.cache
def _other_backend_installed() -> bool:
    """Whether the dbus or gi bindings or a keyring backend of another package are
    installed. Asked once per process (every registry client asks otherwise, and the
    entry-point scan reads every installed package's metadata: ~5 ms each time); keyring
    itself picks its backend once per process too."""
    import importlib.util
    from importlib.metadata import entry_points

    if any(importlib.util.find_spec(m) is not None for m in ("dbus", "gi")):
        return True
    return any(not e.value.startswith(_BUILTIN_BACKENDS)
               for e in entry_points(group="keyring.backends"))


def _backend_set_here() -> bool:
    core = sys.modules.get("keyring.core")
    return getattr(core, "_keyring_backend", None) is not None


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
    if not keyring_possible():
        log.debug("keyring: %s and no other backend; skipped", _NO_BUS)
        return None, f"unavailable ({_NO_BUS})"
    errors = _errors()
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
    except errors.backend as exc:
        log.debug("keyring: %s; skipped", _describe(exc))
        return None, f"unavailable ({_describe(exc)})"
    return None, f"no entry {services[-1]}"


def keyring_unavailable() -> str | None:
    """Why no keyring can be reached (no backend, no Secret Service); None when one answers.
    A locked keyring answers: storing in it fails with its own error."""
    errors = _errors()
    try:
        _backend().get_password(SERVICE_PREFIX, USERNAME_ENTRY)
    except _NoBackendError:
        return _NO_BACKEND
    except errors.unavailable as exc:
        return _describe(exc)
    except errors.backend:
        return None
    return None


def stored_keyring_keys() -> list[str] | None:
    """The registries (and ``host/path`` keys) with a mirrord entry in the keyring, for
    ``logout --all``; None when the backend cannot list its entries (only the Secret
    Service can), [] when no keyring is reachable."""
    errors = _errors()
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
    except errors.backend as exc:
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
    errors = _errors()
    try:
        backend = _backend()
        previous = backend.get_password(service, USERNAME_ENTRY)
        backend.set_password(service, username, password)
        backend.set_password(service, USERNAME_ENTRY, username)
        if previous is not None and previous != username:
            _delete_quietly(backend, service, previous)
    except _NoBackendError:
        raise _store_error(None, "store the credential for", service) from None
    except errors.backend as exc:
        raise _store_error(exc, "store the credential for", service) from None
    log.debug("keyring: stored %s", service)


def delete_credential(registry: str) -> bool:
    """Remove the credential for ``registry`` (a host, or ``host/path``); False when
    there was none."""
    service = keyring_service(registry)
    errors = _errors()
    try:
        backend = _backend()
        username = backend.get_password(service, USERNAME_ENTRY)
        deleted = False
        for name in (username, USERNAME_ENTRY):
            if name is not None:
                deleted = _delete_quietly(backend, service, name) or deleted
    except _NoBackendError:
        raise _store_error(None, "delete the credential for", service) from None
    except errors.backend as exc:
        raise _store_error(exc, "delete the credential for", service) from None
    return deleted


def _backend() -> KeyringBackend:
    import keyring
    import keyring.backends.chainer
    import keyring.backends.fail
    import keyring.backends.null

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
    except _errors().not_deleted:
        return False
    return True


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a keyring failure."""
    if isinstance(exc, _errors().locked):
        return "the keyring is locked"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _store_error(exc: BaseException | None, action: str, service: str) -> CredentialError:
    """The error for a failed write; ``exc`` None means no backend is configured."""
    registry = service.removeprefix(SERVICE_PREFIX)
    if exc is None:
        return CredentialError(f"cannot {action} {registry}: " + _no_service_message(_NO_BACKEND))
    if isinstance(exc, _errors().unavailable):
        return CredentialError(
            f"cannot {action} {registry}: " + _no_service_message(_describe(exc))
        )
    return CredentialError(f"cannot {action} {registry} in the keyring: {_describe(exc)}")


def _no_service_message(why: str) -> str:
    return (
        f"no Secret Service is available ({why}); start gnome-keyring-daemon or another "
        "org.freedesktop.secrets provider, or put the credential in an auth file"
    )

"""``mirrord login`` / ``mirrord logout``: check a credential, then keep it where podman would.

With an auth file (``--authfile`` or ``$REGISTRY_AUTH_FILE``) the credential goes into
it, as podman writes it (:mod:`._authwrite`). Without one it goes into the keyring; when
no keyring can be reached (a headless host without a Secret Service) into podman's own
auth file, ``$XDG_RUNTIME_DIR/containers/auth.json``, which the lookup chain reads too.
The caller is told where it went. ``logout`` removes the entry from the same places.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from mirrord.credentials._authwrite import (
    default_auth_file,
    login_key,
    remove_all_auth_entries,
    remove_auth_entry,
    set_auth_entry,
)
from mirrord.credentials._credential import Credential
from mirrord.credentials._keyring import (
    delete_credential,
    keyring_unavailable,
    store_credential,
    stored_keyring_keys,
)
from mirrord.errors import CredentialError

LOGIN_SOURCE = "mirrord login"
KEYRING = "the keyring"


@dataclass(frozen=True)
class Stored:
    """Where a login went: ``the keyring`` or ``auth file PATH``; ``why`` says why not the
    keyring when it fell back to the auth file ("" otherwise)."""

    where: str
    key: str
    why: str = ""


async def login(
    registry: str,
    username: str,
    password: str,
    *,
    check: Callable[[Credential], Awaitable[None]],
    authfile: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Stored:
    """Verify ``username``/``password`` with ``check``, then store them.

    ``registry`` is ``host[:port]``, ``host[:port]/path`` (a repository-scoped entry) or
    a URL (its host). ``check`` raises (InvalidCredentialsError, ConnectError…) to refuse
    the credential; then nothing is stored and its exception propagates. A credential
    that passes but cannot be stored is a CredentialError that says it is valid.
    """
    key = login_key(registry)
    if not username:
        raise CredentialError(f"login to {key}: empty user name")
    if not password:
        raise CredentialError(f"login to {key}: empty password")
    await check(Credential(username, password, LOGIN_SOURCE))
    try:
        return await anyio.to_thread.run_sync(_store, key, username, password, authfile, env)
    except CredentialError as error:
        raise CredentialError(
            f"login to {key}: the credentials are valid, but they were not stored: {error}"
        ) from error


def _store(
    key: str, username: str, password: str, authfile: Path | None, env: Mapping[str, str] | None
) -> Stored:
    if authfile is not None:
        set_auth_entry(authfile, key, username, password)
        return Stored(f"auth file {authfile}", key)
    why = keyring_unavailable()
    if why is None:
        store_credential(key, username, password)
        return Stored(KEYRING, key)
    path = default_auth_file(env)
    try:
        set_auth_entry(path, key, username, password)
    except CredentialError as error:
        raise CredentialError(
            f"no keyring is reachable ({why}), and {error} (pass --authfile FILE)"
        ) from error
    return Stored(f"auth file {path}", key, why=f"no keyring is reachable ({why})")


async def logout(
    registry: str, *, authfile: Path | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """Remove the credential for ``registry``: from ``authfile`` when given, else from
    the keyring and podman's auth file. Where it was removed from ([] when nowhere)."""
    key = login_key(registry)
    return await anyio.to_thread.run_sync(_remove, key, authfile, env)


def _remove(key: str, authfile: Path | None, env: Mapping[str, str] | None) -> list[str]:
    if authfile is not None:
        return [f"auth file {authfile}"] if remove_auth_entry(authfile, key) else []
    removed: list[str] = []
    if keyring_unavailable() is None and delete_credential(key):
        removed.append(KEYRING)
    path = default_auth_file(env)
    if remove_auth_entry(path, key):
        removed.append(f"auth file {path}")
    return removed


async def logout_all(
    *,
    authfile: Path | None = None,
    env: Mapping[str, str] | None = None,
    known: Iterable[str] = (),
) -> list[str]:
    """``logout --all``: every entry of ``authfile`` when given, else every mirrord entry
    of the keyring and every entry of podman's auth file. ``known`` names registries to
    remove from a keyring that cannot list its entries. One line per place emptied."""
    return await anyio.to_thread.run_sync(_remove_all, authfile, env, tuple(known))


def _remove_all(
    authfile: Path | None, env: Mapping[str, str] | None, known: tuple[str, ...]
) -> list[str]:
    files = [authfile] if authfile is not None else [default_auth_file(env)]
    done: list[str] = []
    if authfile is None and keyring_unavailable() is None:
        keys = stored_keyring_keys()
        gone = [k for k in (known if keys is None else keys) if delete_credential(k)]
        if gone:
            done.append(f"{KEYRING}: {', '.join(gone)}")
    for path in files:
        if count := remove_all_auth_entries(path):
            done.append(f"auth file {path}: {count} entries")
    return done

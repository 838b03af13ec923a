"""``mirrord login`` / ``mirrord logout``: check a credential, then keep it in the keyring."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio.to_thread

from mirrord.credentials._credential import Credential, registry_host
from mirrord.credentials._keyring import delete_credential, store_credential
from mirrord.errors import CredentialError

LOGIN_SOURCE = "mirrord login"


async def login(
    registry: str,
    username: str,
    password: str,
    *,
    check: Callable[[Credential], Awaitable[None]],
) -> None:
    """Verify ``username``/``password`` against ``registry`` with ``check``, then store them.

    ``check`` raises (UnauthorizedError, ConnectError…) to refuse the credential;
    then nothing is stored and its exception propagates, whether or not a keyring
    is available. A credential that passes but cannot be stored (no Secret Service,
    a locked keyring) is a CredentialError that says it is valid and why it was
    not stored.
    """
    host = registry_host(registry)
    if not username:
        raise CredentialError(f"login to {host}: empty user name")
    if not password:
        raise CredentialError(f"login to {host}: empty password")
    await check(Credential(username, password, LOGIN_SOURCE))
    try:
        await anyio.to_thread.run_sync(store_credential, host, username, password)
    except CredentialError as error:
        raise CredentialError(
            f"login to {host}: the credentials are valid, but they were not stored: {error}"
        ) from error


async def logout(registry: str) -> bool:
    """Forget the stored credential for ``registry``; False when none was stored."""
    return await anyio.to_thread.run_sync(delete_credential, registry_host(registry))

"""``mirrord login`` / ``mirrord logout``: check a credential, then keep it in the keyring."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio.to_thread

from mirrord._errors import CredentialError
from mirrord.credentials._credential import Credential, registry_host
from mirrord.credentials._keyring import (
    delete_credential,
    ensure_keyring_available,
    store_credential,
)

LOGIN_SOURCE = "mirrord login"


async def login(
    registry: str,
    username: str,
    password: str,
    *,
    check: Callable[[Credential], Awaitable[None]],
) -> None:
    """Verify ``username``/``password`` against ``registry`` with ``check``, then store them.

    ``check`` raises (UnauthorizedError…) to refuse the credential; then
    nothing is stored and its exception propagates. A missing keyring is
    reported before ``check`` runs, so no registry is contacted in vain.
    """
    host = registry_host(registry)
    if not username:
        raise CredentialError(f"login to {host}: empty user name")
    if not password:
        raise CredentialError(f"login to {host}: empty password")
    await anyio.to_thread.run_sync(ensure_keyring_available)
    await check(Credential(username, password, LOGIN_SOURCE))
    await anyio.to_thread.run_sync(store_credential, host, username, password)


async def logout(registry: str) -> bool:
    """Forget the stored credential for ``registry``; False when none was stored."""
    return await anyio.to_thread.run_sync(delete_credential, registry_host(registry))

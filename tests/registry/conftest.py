"""Fixtures for the registry-client tests: mirrord's RegistryClient against the harness.

    anyio_backend     "asyncio" (tests are `@pytest.mark.anyio`)
    open_client       open_client(reg, credential=None, **RegistryOptions) -> RegistryClient
                      for a harness RegistryProcess (plain HTTP, or https trusting its CA)
    credential        credential(user_credentials, source="auth file /x") -> Credential
    secret_service    the real private Secret Service (from tests/credentials)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from harness import Credentials
from harness.clients import options_for
from harness.registry import RegistryProcess

from mirrord.credentials import Credential
from mirrord.registry import RegistryClient

try:  # `python -m pytest` from the repository root: tests/ is a namespace package
    from tests.credentials.secretservice import secret_service
except ImportError:  # plain `pytest`: tests/ itself is on sys.path
    from credentials.secretservice import secret_service  # type: ignore[no-redef]

__all__ = ["options_for", "secret_service"]



@pytest.fixture
async def open_client() -> AsyncIterator[Callable[..., RegistryClient]]:
    """`open_client(reg, credential=None, **options)`: a RegistryClient closed after the test."""
    clients: list[RegistryClient] = []

    def make(reg: RegistryProcess, credential: Credential | None = None,
             **kw: Any) -> RegistryClient:
        client = RegistryClient(reg.host, credential=credential, options=options_for(reg, **kw))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def credential() -> Callable[..., Credential]:
    """`credential(ALICE)` -> a mirrord Credential with a named source."""

    def make(user: Credentials, source: str = "auth file /etc/mirrord/test-auth.json",
             password: str | None = None) -> Credential:
        return Credential(user.username, user.password if password is None else password, source)

    return make

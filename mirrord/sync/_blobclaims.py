"""The copy engine's :class:`~mirrord.copy.SharedBlobs` on a state several workers share.

The claims are the store's "blob in flight" rows (``claim_blob``…), keyed by the
mirror as configured (``destination.description``: ``docker://host/prefix`` or
``oci:/path``), so workers of one fleet, which share a configuration, meet on them.
They last the configured ``lease:`` (renewed while the blob streams); a worker
waiting for one polls the store until it is released or lapses.
"""

from __future__ import annotations

import anyio

from mirrord.config import Config
from mirrord.copy import SharedBlobs
from mirrord.state import Store
from mirrord.transports import Destination

POLL_INTERVAL = 0.2  # seconds between looks at a claimed blob


class StoreBlobClaims:
    """Blob claims of ``store``'s worker on ``mirror``, lasting ``ttl`` seconds."""

    def __init__(
        self, store: Store, mirror: str, ttl: float, *, poll_interval: float = POLL_INTERVAL
    ) -> None:
        self.store = store
        self.mirror = mirror
        self.ttl = ttl
        self.poll_interval = poll_interval

    async def claim(self, digest: str, repository: str) -> bool:
        return await self.store.claim_blob(
            self.mirror, digest, self.store.worker, self.ttl, repository=repository
        )

    async def release(self, digest: str) -> None:
        await self.store.release_blob(self.mirror, digest, self.store.worker)

    async def wait(self, digest: str) -> str | None:
        """Poll until no live claim: a released one, or one whose holder stopped renewing
        it (it lapses ``ttl`` after the last renewal). The holder's repository."""
        where: str | None = None
        while (claim := await self.store.blob_claim(self.mirror, digest)) is not None:
            where = claim.repository or where
            await anyio.sleep(self.poll_interval)
        return where


def shared_blobs(config: Config, store: Store, destination: Destination) -> SharedBlobs | None:
    """The blob claims of a run on ``store``: None unless several workers share it (a
    single process shares blobs within itself, at no cost to the store)."""
    if not store.several_daemons:
        return None
    return StoreBlobClaims(store, destination.description, config.lease)

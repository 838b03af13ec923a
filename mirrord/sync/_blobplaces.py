"""The copy engine's :class:`~mirrord.copy.BlobPlaces` on the state: where blobs landed.

Rows are keyed, like the blob claims (:mod:`._blobclaims`), by the mirror as configured
(``destination.description``, ``docker://host/prefix``), so every run and every worker
sharing the state mounts what any of them put in the mirror. Only a registry mirror
has them: an OCI layout keeps one blob store for all its repositories.

Each landing is written as it happens, not batched per run: measured, one write costs
about 0.5 ms on SQLite and 1.2 ms on a local PostgreSQL (a batch of 300 takes 4 ms and
12 ms), small beside the blob transfer it follows, and a run that is killed keeps what
it recorded.
"""

from __future__ import annotations

from mirrord.copy import BlobPlaces
from mirrord.state import Store
from mirrord.transports import Destination, RegistryDestination


class StoreBlobPlaces:
    """Where blobs landed in ``mirror``, as recorded in ``store``."""

    def __init__(self, store: Store, mirror: str) -> None:
        self.store = store
        self.mirror = mirror

    async def where(self, digest: str) -> str | None:
        found = await self.store.blob_location(self.mirror, digest)
        return found.repository if found is not None else None

    async def landed(self, digest: str, repository: str) -> None:
        await self.store.record_blob_locations(self.mirror, {digest: repository})

    async def gone(self, digest: str, repository: str) -> None:
        await self.store.forget_blob_location(self.mirror, digest, repository)


def blob_places(store: Store, destination: Destination) -> BlobPlaces | None:
    """The record of where blobs landed in ``destination``; None for an OCI layout."""
    if not isinstance(destination, RegistryDestination):
        return None
    return StoreBlobPlaces(store, destination.description)


class NoBlobPlaces:
    """A state not made yet (a dry run before the first sync): nothing is recorded, as
    the sync that makes the state will find; nothing is written."""

    async def where(self, digest: str) -> str | None:
        return None

    async def landed(self, digest: str, repository: str) -> None:
        return None

    async def gone(self, digest: str, repository: str) -> None:
        return None


def blob_places_of(store: Store | None, destination: Destination) -> BlobPlaces | None:
    """:func:`blob_places`, or for no state yet the empty record (:class:`NoBlobPlaces`)."""
    if store is not None:
        return blob_places(store, destination)
    return NoBlobPlaces() if isinstance(destination, RegistryDestination) else None

"""Blobs the mirror got in earlier runs (or from other workers): mounted, not pulled.

Within a run the engine mounts a blob from the repository it put it in. Across runs,
and between the workers of a shared database, :class:`BlobPlaces` (the sync layer
passes the state's record of where blobs landed, for a registry mirror only: an OCI
layout has one blob store) carries that knowledge:

- a blob not placed this run is looked up first: when another repository is recorded,
  the blob is mounted from there without a ``HEAD`` in the repository it goes into
  (a mount answers 201 whether or not that one held it already: a blob not pulled);
  when the record names the repository it goes into, it is ``HEAD``ed there;
- a mount that answers 202 (the record is stale: pruning deleted the manifests and the
  registry's garbage collection their blobs, or the repository went) opens an upload
  session; the blob is uploaded through it (after a ``HEAD`` of the repository it goes
  into, unless that one is fresh: see :class:`~mirrord.copy.CopyEngine`), and the
  record is forgotten;
- each blob copied, mounted or found present is recorded where it now is;
- the record is advice: a store that is away, a repository name that is not one, or
  a mount the registry refuses outright only cost the pull the record would have saved.
"""

from __future__ import annotations

import logging
from typing import Protocol

from mirrord.core.reference import escaped, is_repository
from mirrord.errors import MirrordError
from mirrord.transports import Destination

log = logging.getLogger("mirrord.copy")


class BlobPlaces(Protocol):
    """Where blobs landed in one mirror, kept beyond the run.

    Every method may raise :class:`~mirrord.errors.MirrordError` (the store is away);
    the engine then copies as if nothing were recorded.
    """

    async def where(self, digest: str) -> str | None:
        """The repository ``digest`` was last recorded in, or None."""

    async def landed(self, digest: str, repository: str) -> None:
        """``digest`` is in ``repository`` now (copied, mounted or found there)."""

    async def gone(self, digest: str, repository: str) -> None:
        """``digest`` is not in ``repository`` after all: forget that record."""


async def recorded_place(places: BlobPlaces, digest: str) -> str | None:
    """The repository ``places`` recorded ``digest`` in; None when nothing is recorded,
    the store is away (a warning) or the record is no repository name (forgotten)."""
    try:
        source = await places.where(digest)
    except MirrordError as error:
        log.warning("blob %s: cannot look up where the mirror has it: %s", digest, error)
        return None
    if source is not None and not is_repository(source):
        await forget(places, digest, source)
        return None
    return source


async def mount_recorded(
    places: BlobPlaces, destination: Destination, repository: str, digest: str, source: str
) -> str | None:
    """Mount ``digest`` into ``repository`` from ``source``, where ``places`` recorded it
    (another repository than ``repository``).

    As :meth:`Destination.mount_blob`: None when mounted; else the upload session the
    failed mount opened (the stale record is forgotten), or ``""`` when none is open
    (the registry refused the mount outright). Temporary registry errors are raised
    (the caller retries the whole transfer).
    """
    try:
        upload = await destination.mount_blob(repository, digest, source)
    except MirrordError as error:
        if error.temporary:
            raise
        log.info("blob %s: mount from %s refused (%s); copying it", digest, source, error)
        await forget(places, digest, source)
        return ""
    if upload is not None:
        log.info("blob %s: no longer in %s (a stale record); copying it", digest, source)
        await forget(places, digest, source)
    return upload


async def record_landed(places: BlobPlaces, digest: str, repository: str) -> None:
    """Record that ``digest`` is in ``repository``; a store away only costs a warning."""
    try:
        await places.landed(digest, repository)
    except MirrordError as error:
        log.warning("blob %s: cannot record that it is in %s: %s", digest, repository, error)


async def forget(places: BlobPlaces, digest: str, repository: str) -> None:
    try:
        await places.gone(digest, repository)
    except MirrordError as error:
        log.warning(
            "blob %s: cannot forget its stale record %s: %s", digest, escaped(repository), error
        )

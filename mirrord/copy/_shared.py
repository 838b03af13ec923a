"""Blob work shared with the other workers copying into the same mirror (issue 16).

Within one process the engine streams a digest once and mounts it elsewhere. Workers
in other processes (daemons, ``mirrord sync`` runs sharing a PostgreSQL state) are
reached through :class:`SharedBlobs`, a "blob in flight" claim the sync layer passes
in only where several workers share a store, so a single process pays nothing:

- before streaming a blob, claim it (naming the repository it goes into); the claim
  is renewed every third of its ``ttl`` while the stream lasts and released after it,
  whether the stream succeeded, failed or was cancelled (shielded);
- a worker that finds the blob claimed waits until the claim ends (released, or
  expired: a dead holder stops renewing, so the wait is bounded by the claim's ttl),
  then mounts it from the repository the holder named. A mount that does not answer
  201 (the holder failed) leads to a claim of its own and a normal upload;
- an unreachable store does not stop the copy: the blob is streamed unshared.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import anyio

from mirrord.core.oci import Descriptor
from mirrord.errors import MirrordError, ungrouped
from mirrord.transports import Destination

log = logging.getLogger("mirrord.copy")

#: Claims tried before streaming unshared (each failed claim waits for its holder).
MAX_CLAIM_ROUNDS = 5

#: How a shared blob got into the repository: streamed here, mounted, already there.
Outcome = Literal["streamed", "mounted", "present"]

#: stream(upload) streams the blob, in ``upload`` (an upload session) when not None.
Stream = Callable[[str | None], Awaitable[None]]


class SharedBlobs(Protocol):
    """Claims on the blobs in flight into one mirror, shared by the workers of a fleet.

    Every method may raise :class:`~mirrord.errors.MirrordError` (the store is away);
    the engine then streams the blob without sharing it.
    """

    @property
    def ttl(self) -> float:
        """Seconds a claim lasts unless renewed."""

    async def claim(self, digest: str, repository: str) -> bool:
        """Claim streaming ``digest`` into ``repository`` (renews this worker's own
        claim); False when another worker holds it."""

    async def release(self, digest: str) -> None:
        """End this worker's claim: the blob is in the mirror, or its copy failed."""

    async def wait(self, digest: str) -> str | None:
        """Wait while another worker claims ``digest``; the repository its (last)
        holder streamed it into, or None when no claim was seen."""


async def shared_transfer(
    shared: SharedBlobs,
    destination: Destination,
    repository: str,
    desc: Descriptor,
    stream: Stream,
    upload: str | None = None,
) -> Outcome:
    """Put ``desc`` into ``repository`` once across the fleet (see the module docstring).

    ``upload``: an upload session already open (a mount that answered 202); it is used
    by this worker's stream, or cancelled before waiting for another's.
    """
    digest = desc.digest
    for _ in range(MAX_CLAIM_ROUNDS):
        try:
            claimed = await shared.claim(digest, repository)
        except MirrordError as error:
            log.warning("blob %s: cannot claim it (%s); copied unshared", digest, error)
            break
        if claimed:
            await _stream_claimed(shared, digest, repository, stream, upload)
            return "streamed"
        if upload is not None:  # not kept open while another worker streams the blob
            await destination.cancel_upload(repository, upload)
            upload = None
        try:
            where = await shared.wait(digest)
        except MirrordError as error:
            log.warning("blob %s: cannot wait for its claim (%s); copied unshared", digest, error)
            break
        if where == repository or not where:  # not where: released before we waited
            if await destination.blob_exists(repository, digest):
                return "present"
        else:
            try:
                upload = await destination.mount_blob(repository, digest, where)
            except MirrordError as error:
                if error.temporary:
                    raise
                log.warning("blob %s: mount from %s refused (%s)", digest, where, error)
                upload = None
            else:
                if upload is None:
                    return "mounted"
        log.info("blob %s: not in the mirror after its claim ended; claiming it", digest)
    await stream(upload)
    return "streamed"


async def _stream_claimed(
    shared: SharedBlobs, digest: str, repository: str, stream: Stream, upload: str | None
) -> None:
    """Stream while renewing the claim; release it however the stream ends."""
    try:
        with ungrouped():
            async with anyio.create_task_group() as tg:
                tg.start_soon(_renew, shared, digest, repository)
                try:
                    await stream(upload)
                finally:
                    tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await shared.release(digest)
            except MirrordError as error:  # it expires by itself: only a warning
                log.warning("blob %s: cannot release its claim: %s", digest, error)


async def _renew(shared: SharedBlobs, digest: str, repository: str) -> None:
    """Keep the claim alive; one lost (it lapsed, another took it) only costs a copy."""
    while True:
        await anyio.sleep(shared.ttl / 3)
        try:
            if not await shared.claim(digest, repository):
                log.warning("blob %s: its claim lapsed and another worker took it", digest)
                return
        except MirrordError as error:
            log.warning("blob %s: cannot renew its claim: %s", digest, error)

"""Work sharing between workers on one state: leases and "blob in flight" claims.

A *lease* is a named, expiring claim held by one worker at a time: a stream's
scheduled run (``stream:<name>``), the pruner (``prune``). A worker claims it
before the work, renews it while the work lasts (every third of ``ttl``), and
releases it at the end; a worker that dies loses it when it expires, and the
next worker to claim it after that gets it. A *blob claim* is the same for one
blob being streamed into one mirror, so workers copying images that share a
blob copy it once: the others wait, then mount it.

Expiry runs on the store's clock (PostgreSQL's, for every worker alike), so
workers on hosts whose clocks disagree still agree on who holds what. A worker
is a name (``host:pid`` or the configured ``worker_name``); the same worker
claiming again renews its own claim.
"""

from __future__ import annotations

import abc
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime

import anyio

MAX_LEASE_NAME = 512
MAX_WORKER = 255
MAX_MIRROR = 1024
MAX_TTL = 86400.0


def default_worker() -> str:
    """This process as a worker: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Lease:
    """A live claim: ``name`` (a lease's, or ``MIRROR@DIGEST`` for a blob), who holds it,
    since when (this worker's uninterrupted hold) and until when unless renewed."""

    name: str
    worker: str
    acquired: datetime
    expires: datetime


def check_claim(name: str, worker: str, ttl: float, *, what: str = "lease") -> None:
    """ValueError for an empty or oversized name or worker, or a ttl out of (0, 1 day]."""
    if not name or len(name) > MAX_LEASE_NAME:
        raise ValueError(f"a {what} name has 1 to {MAX_LEASE_NAME} characters")
    if not worker or len(worker) > MAX_WORKER:
        raise ValueError(f"a worker name has 1 to {MAX_WORKER} characters")
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"a {what} lasts more than 0s and at most {MAX_TTL:.0f}s, not {ttl}")


class LeaseStore(abc.ABC):
    """The lease and blob-claim part of the :class:`~mirrord.state.Store` interface."""

    # -- leases --------------------------------------------------------------------

    @abc.abstractmethod
    async def claim_lease(self, name: str, worker: str, ttl: float) -> bool:
        """Take lease ``name`` for ``ttl`` seconds if it is free, expired or already
        ``worker``'s (then it is renewed); False when another worker holds it. Atomic:
        of workers claiming at once, exactly one gets it."""

    @abc.abstractmethod
    async def renew_lease(self, name: str, worker: str, ttl: float) -> bool:
        """Extend ``worker``'s lease to ``ttl`` seconds from now; False when it is no
        longer ``worker``'s (another took it after it expired, or it was released):
        the work it covered must stop."""

    @abc.abstractmethod
    async def release_lease(self, name: str, worker: str, *, hold: float = 0.0) -> bool:
        """Let go of ``worker``'s lease; False when it was not ``worker``'s.

        ``hold`` > 0 keeps others off for that many seconds more (the time until the
        work is next due), so a worker whose schedule fires a little later does not
        run the same due time again; ``worker`` itself may claim it meanwhile.
        """

    @abc.abstractmethod
    async def leases(self, worker: str | None = None) -> list[Lease]:
        """Live leases (of ``worker``, or all), by name."""

    # -- blobs in flight -----------------------------------------------------------

    @abc.abstractmethod
    async def claim_blob(self, mirror: str, digest: str, worker: str, ttl: float) -> bool:
        """Claim streaming blob ``digest`` into ``mirror`` (the destination: a registry
        host or an OCI layout) for ``ttl`` seconds; as :meth:`claim_lease` (the holder
        renews by claiming again). ManifestError for a malformed digest."""

    @abc.abstractmethod
    async def release_blob(self, mirror: str, digest: str, worker: str) -> bool:
        """The blob is in the mirror (or its copy failed): end ``worker``'s claim."""

    @abc.abstractmethod
    async def blob_claim(self, mirror: str, digest: str) -> Lease | None:
        """The live claim on that blob, or None."""

    async def wait_blob(
        self, mirror: str, digest: str, *, timeout: float, poll_interval: float = 0.1
    ) -> bool:
        """Wait until nobody claims that blob (released, or its holder's claim expired);
        False when ``timeout`` seconds pass first. Then check the mirror: mount the blob
        when it is there, else claim it and copy it yourself (its holder failed)."""
        deadline = time.monotonic() + timeout
        while await self.blob_claim(mirror, digest) is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await anyio.sleep(min(poll_interval, left))
        return True

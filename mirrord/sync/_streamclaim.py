"""A worker's claim on a stream while it syncs it (several workers, one database).

Workers sharing a PostgreSQL state (daemons, ``mirrord sync`` runs) claim a stream's
lease (``stream/NAME``; atomic: of workers claiming at once exactly one gets it)
before syncing it. The holder renews the lease while its run lasts (every third of
the TTL); a worker killed mid-run stops renewing, so its lease expires and another
takes the stream. The daemon's use (a hold after a scheduled run) is in
``mirrord.daemon``; a one-shot run holds its streams with :func:`hold_streams`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Protocol

import anyio

from mirrord.errors import LockedError, MirrordError
from mirrord.state import Store

log = logging.getLogger("mirrord.scheduler")

WAIT_POLL = 1.0  # seconds between claims of a stream another worker holds (--wait)


def lease_name(stream: str) -> str:
    return f"stream/{stream}"


class LeaseWatcher(Protocol):
    """Told what a worker's stream leases do (the daemon's metrics)."""

    def lease_held(self, delta: int) -> None:
        """One more (+1) or one fewer (-1) lease held for a run in progress."""

    def lease_renew_failed(self, reason: str) -> None:
        """A renewal failed: ``error`` (the store did not answer; tried again) or
        ``lost`` (another worker had taken the lease; the run stops)."""


@asynccontextmanager
async def stream_claim(
    store: Store,
    stream: str,
    ttl: float,
    *,
    hold: float = 0.0,
    watcher: LeaseWatcher | None = None,
) -> AsyncIterator[bool]:
    """Claim ``stream`` for this store's worker; yields False (and holds nothing) when
    another worker has it. Held, the lease is renewed every ``ttl``/3 seconds; a
    renewal refused (the lease lapsed and another took it) cancels the body. Released
    after with ``hold`` seconds more. StateError if the database is away at the claim.
    ``watcher`` is told of the hold and of each renewal that fails."""
    name, worker = lease_name(stream), store.worker
    if not await store.claim_lease(name, worker, ttl):
        yield False
        return
    if watcher is not None:
        watcher.lease_held(+1)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_renew, store, name, ttl, tg.cancel_scope, watcher)
            try:
                yield True
            finally:
                tg.cancel_scope.cancel()
    finally:
        if watcher is not None:
            watcher.lease_held(-1)
        with anyio.CancelScope(shield=True):
            try:
                await store.release_lease(name, worker, hold=hold)
            except MirrordError as error:  # it expires by itself: only a warning
                log.warning("%s: cannot release the stream's lease: %s", stream, error)


async def _renew(
    store: Store, name: str, ttl: float, scope: anyio.CancelScope, watcher: LeaseWatcher | None
) -> None:
    while True:
        await anyio.sleep(ttl / 3)
        try:
            renewed = await store.claim_lease(name, store.worker, ttl)
        except MirrordError as error:  # the database may come back before the TTL ends
            log.warning("%s: cannot renew the lease: %s", name, error)
            if watcher is not None:
                watcher.lease_renew_failed("error")
            continue
        if not renewed:
            log.error("%s: the lease was lost to another worker; the run stops", name)
            if watcher is not None:
                watcher.lease_renew_failed("lost")
            scope.cancel()
            return


@asynccontextmanager
async def hold_streams(
    store: Store, streams: Sequence[str], ttl: float, *, wait: bool = False
) -> AsyncIterator[None]:
    """Hold the lease of every stream in ``streams`` for a one-shot run, so no other
    worker syncs them meanwhile. LockedError naming the stream and its holder when
    another worker has one (``wait``: poll until it is free); LockedError too after the
    run when a lease was lost meanwhile (the run was stopped)."""
    losses = _Losses()
    async with AsyncExitStack() as stack:
        for name in streams:
            while True:
                claim = stream_claim(store, name, ttl, watcher=losses)
                if await claim.__aenter__():
                    stack.push_async_exit(claim)
                    break
                await claim.__aexit__(None, None, None)
                if not wait:
                    raise LockedError(await _held_by(store, name))
                await anyio.sleep(WAIT_POLL)
        yield
    if losses.lost:  # its claim's scope cancelled the run (and absorbed the cancellation)
        raise LockedError(
            f"a stream's lease was lost to another worker sharing {store.location} (the "
            "database was away longer than lease:); the run was stopped"
        )


class _Losses:
    """A :class:`LeaseWatcher` noting whether a lease was lost."""

    def __init__(self) -> None:
        self.lost = False

    def lease_held(self, delta: int) -> None:
        pass

    def lease_renew_failed(self, reason: str) -> None:
        self.lost = self.lost or reason == "lost"


async def _held_by(store: Store, stream: str) -> str:
    name = lease_name(stream)
    holder = next((lease.worker for lease in await store.leases() if lease.name == name), None)
    who = f"worker {holder}" if holder else "another worker"
    return (
        f"stream {stream} is being synced by {who} sharing {store.location}; "
        "run again later, or with --wait"
    )

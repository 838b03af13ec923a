"""A daemon's claim on a stream while it syncs it (several daemons, one database).

Daemons sharing a PostgreSQL state database each schedule every stream; before a run
a daemon claims the stream's lease (``stream/NAME``, atomic: of daemons claiming at
once exactly one gets it) and skips the run when another worker holds it. The holder
renews the lease while its run lasts (every third of the TTL); a worker killed
mid-run stops renewing, so its lease expires and another daemon takes the stream at
its next due time. After a scheduled run the lease is kept for most of the period
(:func:`hold_after`), so daemons whose schedules fire a little later (started at
another time, jittered) do not sync the stream again for the same due time.

On SQLite one daemon runs per state directory: the lease is taken all the same
(cheap) and never refused.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import anyio

from mirrord.core.schedule import Schedule
from mirrord.daemon._scheduler import jitter_for
from mirrord.errors import MirrordError
from mirrord.state import Store

log = logging.getLogger("mirrord.scheduler")

HELD_REASONS = ("scheduled", "catch-up")  # every daemon fires these: one run is enough
HOLD_FRACTION = 0.9  # of the period: a scheduled run keeps the stream this long


def lease_name(stream: str) -> str:
    return f"stream/{stream}"


def hold_after(schedule: str, reason: str, now: datetime | None = None) -> float:
    """Seconds a finished run keeps its stream's lease: none after a triggered run;
    after a scheduled (or catch-up) one most of the period less the jitter (the next
    due time stays free for whichever daemon fires first)."""
    if reason not in HELD_REASONS:
        return 0.0
    period = Schedule.parse(schedule).period(now or datetime.now().astimezone())
    return max(0.0, period * HOLD_FRACTION - jitter_for(period))


@asynccontextmanager
async def stream_claim(
    store: Store, stream: str, ttl: float, *, hold: float = 0.0
) -> AsyncIterator[bool]:
    """Claim ``stream`` for this store's worker; yields False (and holds nothing) when
    another worker has it. Held, the lease is renewed every ``ttl``/3 seconds; a
    renewal refused (the lease lapsed and another took it) cancels the body. Released
    after with ``hold`` seconds more. StateError if the database is away at the claim."""
    name, worker = lease_name(stream), store.worker
    if not await store.claim_lease(name, worker, ttl):
        yield False
        return
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_renew, store, name, ttl, tg.cancel_scope)
            try:
                yield True
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await store.release_lease(name, worker, hold=hold)
            except MirrordError as error:  # it expires by itself: only a warning
                log.warning("%s: cannot release the stream's lease: %s", stream, error)


async def _renew(store: Store, name: str, ttl: float, scope: anyio.CancelScope) -> None:
    while True:
        await anyio.sleep(ttl / 3)
        try:
            renewed = await store.claim_lease(name, store.worker, ttl)
        except MirrordError as error:  # the database may come back before the TTL ends
            log.warning("%s: cannot renew the lease: %s", name, error)
            continue
        if not renewed:
            log.error("%s: the lease was lost to another worker; the run stops", name)
            scope.cancel()
            return

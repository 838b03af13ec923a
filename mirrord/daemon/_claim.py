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

from datetime import datetime

from mirrord.core.schedule import Schedule
from mirrord.daemon._scheduler import jitter_for
from mirrord.sync import lease_name, stream_claim

__all__ = ["HELD_REASONS", "HOLD_FRACTION", "hold_after", "lease_name", "stream_claim"]

HELD_REASONS = ("scheduled", "catch-up")  # every daemon fires these: one run is enough
HOLD_FRACTION = 0.9  # of the period: a scheduled run keeps the stream this long


def hold_after(schedule: str, reason: str, now: datetime | None = None) -> float:
    """Seconds a finished run keeps its stream's lease: none after a triggered run;
    after a scheduled (or catch-up) one most of the period less the jitter (the next
    due time stays free for whichever daemon fires first)."""
    if reason not in HELD_REASONS:
        return 0.0
    period = Schedule.parse(schedule).period(now or datetime.now().astimezone())
    return max(0.0, period * HOLD_FRACTION - jitter_for(period))

"""The records the state store returns besides image streams: job runs, outbox events,
receiver statuses, pruner conditions, and the images of deleted streams."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JOB_KINDS = ("sync", "prune")
JOB_STATUSES = ("Queued", "Running", "Succeeded", "Failed")

#: What a job left Running by a process that died records (``abandon_running_jobs``).
JOB_DIED = (
    "interrupted: the process running it died (killed or crashed); when it ended is "
    "unknown, the finish time recorded is when this was noticed"
)


@dataclass(frozen=True)
class JobRun:
    """One sync or prune run: Queued (a trigger accepted, the run not started;
    ``started`` is when it was accepted), Running, then Succeeded or Failed. ``worker``
    ran it (``host:pid`` or the configured ``worker_name``; None for runs recorded before)."""

    id: int
    kind: str
    stream: str | None
    status: str
    started: datetime
    finished: datetime | None
    counts: Mapping[str, int] = field(default_factory=dict)
    message: str = ""
    pid: int | None = None
    worker: str | None = None


@dataclass(frozen=True)
class OutboxEvent:
    """A notification waiting for (or done with) delivery to one receiver.

    Pending: ``delivered`` is None and ``next_attempt`` is set. Given up:
    ``delivered`` and ``next_attempt`` both None (``last_error`` says why).
    ``claimed_by``: the worker delivering it now (until ``claim_expires``), if any.
    """

    id: int
    receiver: str
    payload: Mapping[str, Any]
    created: datetime
    attempts: int
    next_attempt: datetime | None
    last_error: str | None
    delivered: datetime | None
    claimed_by: str | None = None
    claim_expires: datetime | None = None

    @property
    def dead(self) -> bool:
        return self.delivered is None and self.next_attempt is None


@dataclass(frozen=True)
class ReceiverStatus:
    """One notification receiver's outbox: what waits, what failed, what was delivered.

    ``pending`` events wait for an attempt (``retrying`` of them failed at least
    once); ``given_up`` are dead letters; ``delivered`` counts the deliveries still
    kept. ``last_error`` is the newest failure of an undelivered event.
    """

    receiver: str
    pending: int = 0
    retrying: int = 0
    given_up: int = 0
    delivered: int = 0
    last_error: str | None = None
    last_delivered: datetime | None = None


@dataclass(frozen=True)
class PrunerCondition:
    """A pruner status condition (Available, Scheduled, Failed)."""

    type: str
    status: str
    reason: str
    message: str
    last_transition_time: datetime


@dataclass(frozen=True)
class OrphanedImage:
    """An image of a stream ``mirrord delete`` removed, left in the mirror for the pruner.

    ``docker_image_repository`` is where the stream mirrored it (``host/prefix/name``, or
    ``oci:/path:name``); ``created`` the newest tag event that recorded it (the age
    ``keepYoungerThanDuration`` is measured from); ``orphaned`` when its stream went.
    """

    stream: str
    docker_image_repository: str
    image: str
    created: datetime
    orphaned: datetime

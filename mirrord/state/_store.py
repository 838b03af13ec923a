"""The state store interface: what sync, import-image, the daemon and the pruner use.

Every method is async (blocking I/O runs in a worker thread); each mutating method is
one transaction: a process killed mid-call leaves the store as before or after it.

The store never holds a secret: no credential, token or webhook URL with a key
in it goes into a record (an outbox ``receiver`` is an identifier, not a URL).

Two implementations pass one contract suite (tests/state): SQLite, one host and one
daemon; PostgreSQL, shared by workers dividing the work with :mod:`._leases`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import anyio

from mirrord.core.imagestream import (
    TAG_ONCE,
    ImageStream,
    ImportResult,
    StreamSpec,
    TagEvent,
    TagStatus,
)
from mirrord.errors import StateError
from mirrord.state._bloblocations import BlobLocationStore
from mirrord.state._leases import LeaseStore
from mirrord.state._lock import LOCK_FILE, QUEUE_FILE, RunLock, StateLock, hold_daemon_lock
from mirrord.state._records import (
    JOB_DIED,
    JOB_KINDS,
    JOB_STATUSES,
    JobRun,
    OrphanedImage,
    OutboxEvent,
    PrunerCondition,
    ReceiverStatus,
)

__all__ = [
    "JOB_DIED",
    "JOB_KINDS",
    "JOB_STATUSES",
    "JobRun",
    "OrphanedImage",
    "OutboxEvent",
    "PrunerCondition",
    "ReceiverStatus",
    "Store",
]

class Store(LeaseStore, BlobLocationStore):
    """Image streams, tag history, job runs, the notification outbox, pruner status,
    the leases workers share the work with, and where blobs landed in the mirror.

    ``worker`` names this process in the jobs it records; ``location`` names the
    store in messages (a path, or a database URL without a password).
    """

    state_dir: Path
    worker: str
    location: str
    several_daemons: ClassVar[bool] = False
    """Whether several daemons may use this store at once (sharing the work by leases)."""

    def acquire_run_lock(
        self, wait: bool = False, timeout: float | None = None, *, shared: bool = False
    ) -> StateLock:
        """The run lock (acquired on ``with``/``async with``); refuses with LockedError.

        Exclusive: one-shot runs and the pruner, alone. ``shared``: the runs of daemons,
        which may run side by side (with leases keeping them off each other's streams)
        while no exclusive holder runs.
        """
        lock = RunLock(self.state_dir / LOCK_FILE, wait=wait, timeout=timeout, shared=shared)
        lock.queue = RunLock(self.state_dir / QUEUE_FILE)
        return lock

    def hold_daemon_lock(self) -> StateLock:
        """Taken (and returned held) by a daemon for its life; LockedError naming the
        daemon that holds it. Without ``several_daemons`` it admits one daemon per
        store; with it, one per worker name (two daemons sharing a name would share
        their leases)."""
        return hold_daemon_lock(self.state_dir)

    # -- image streams -------------------------------------------------------------

    @abc.abstractmethod
    async def get_stream(self, name: str) -> ImageStream | None:
        """The stream with all its tags (removed ones included), or None."""

    @abc.abstractmethod
    async def list_streams(self) -> list[ImageStream]:
        """Every stream, sorted by name, with its tags."""

    @abc.abstractmethod
    async def upsert_stream(self, spec: StreamSpec, *, now: datetime | None = None) -> ImageStream:
        """Create (generation 1) or update; a changed spec bumps the generation."""

    @abc.abstractmethod
    async def bump_generation(self, name: str) -> int:
        """Increment a stream's generation (an ``import-image`` request); the new value."""

    @abc.abstractmethod
    async def set_stream_failure(
        self, name: str, reason: str | None, message: str = "", *, now: datetime | None = None
    ) -> None:
        """Record that the stream as a whole failed (its tags could not be listed), or
        clear that (``reason`` None). An unchanged failure keeps its transition time."""

    @abc.abstractmethod
    async def mark_synced(self, name: str, *, now: datetime | None = None) -> None:
        """Record that a run brought every selected tag of the stream to the mirror."""

    @abc.abstractmethod
    async def delete_stream(self, name: str, *, now: datetime | None = None) -> bool:
        """Forget a stream and its history; False when it did not exist.

        In the same transaction, every image its history recorded becomes an
        :class:`OrphanedImage` (one per mirror repository and digest, the newest
        event's time), so the pruner can still remove it from the mirror."""

    @abc.abstractmethod
    async def orphaned_images(self) -> list[OrphanedImage]:
        """The images of deleted streams not yet pruned, by repository then digest."""

    @abc.abstractmethod
    async def forget_orphaned_images(self, images: Sequence[tuple[str, str]]) -> int:
        """Drop these ``(docker_image_repository, image)`` records (pruned from the
        mirror, or now recorded by a live stream); how many went."""

    # -- tags ----------------------------------------------------------------------

    @abc.abstractmethod
    async def record_tag_import(
        self,
        stream: str,
        tag: str,
        digest: str,
        reference: str,
        *,
        source_digest: str = "",
        platform: str = "",
        generation: int | None = None,
        now: datetime | None = None,
        tagged_from: str = "",
        tag_policy: str = TAG_ONCE,
    ) -> ImportResult:
        """:func:`~mirrord.imagestream.record_import` in one transaction.

        ``source_digest`` and ``platform``: where the import came from (see ``TagEvent``);
        ``tagged_from``: a ``mirrord tag`` of that reference (the ``Tagged`` condition),
        following it as ``tag_policy`` says (its reason).
        """

    @abc.abstractmethod
    async def record_tag_failure(
        self,
        stream: str,
        tag: str,
        reason: str,
        message: str,
        *,
        generation: int | None = None,
        now: datetime | None = None,
    ) -> TagStatus:
        """:func:`~mirrord.imagestream.record_failure` in one transaction."""

    @abc.abstractmethod
    async def record_tag_removed(
        self,
        stream: str,
        tag: str,
        *,
        delete_removed_tags: bool,
        now: datetime | None = None,
    ) -> TagStatus | None:
        """:func:`~mirrord.imagestream.record_removed`; None when the tag is unknown."""

    @abc.abstractmethod
    async def get_tag(self, stream: str, tag: str) -> TagStatus | None:
        """One tag's history (newest first) and conditions."""

    @abc.abstractmethod
    async def delete_tag_events(self, stream: str, tag: str, events: Sequence[TagEvent]) -> int:
        """Delete these events (matched by value) from a tag's history; how many went."""

    # -- job runs ------------------------------------------------------------------

    @abc.abstractmethod
    async def start_job(
        self,
        kind: str,
        stream: str | None = None,
        *,
        now: datetime | None = None,
        queued: bool = False,
    ) -> int:
        """Record a Running job of ``kind`` ('sync' or 'prune'); its id.

        ``queued``: record a Queued job instead (a trigger accepted, its run not yet
        started), or return the one ``stream`` already has queued (triggers coalesce).
        A run of ``stream`` takes its oldest Queued job over (Queued -> Running, started
        now) rather than recording a new one, so the id a trigger answered follows the
        run that serves it. Queued jobs outlive the process (a restarted daemon runs
        them); :meth:`abandon_running_jobs` leaves them alone.
        """

    @abc.abstractmethod
    async def get_job(self, job_id: int) -> JobRun | None:
        """One job by id (None when unknown or trimmed)."""

    @abc.abstractmethod
    async def finish_job(
        self,
        job_id: int,
        status: str,
        counts: Mapping[str, int] | None = None,
        message: str = "",
        *,
        now: datetime | None = None,
    ) -> None:
        """Close a Running (or Queued: it cannot run) job as 'Succeeded' or 'Failed' with
        its counts and a message."""

    @abc.abstractmethod
    async def list_jobs(self, limit: int = 20, kind: str | None = None) -> list[JobRun]:
        """The newest jobs first."""

    @abc.abstractmethod
    async def trim_jobs(self, kind: str, successful_limit: int, failed_limit: int) -> int:
        """Keep the newest N succeeded and N failed jobs of ``kind``; how many went."""

    @abc.abstractmethod
    async def abandon_running_jobs(
        self,
        message: str = JOB_DIED,
        *,
        stream: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Mark jobs left Running by a killed process as Failed; how many.

        Call it holding the run lock, while this store runs nothing. Every Running job
        counts as abandoned, this store's own included, except those of another live
        process: on PostgreSQL, of another worker whose store is still open (on SQLite
        no other process runs a job beside a holder of the run lock).

        Their process is gone and when it ended is unknown: ``finished`` is ``now``, the
        moment this was noticed, and ``message`` (by default :data:`JOB_DIED`) says so.

        ``stream``: only the jobs of that stream; call it holding the stream's lease,
        before this store starts its own job of the stream (its other jobs run on)."""

    # -- notification outbox -------------------------------------------------------

    @abc.abstractmethod
    async def enqueue_event(
        self, payload: Mapping[str, Any], receiver: str, *, now: datetime | None = None
    ) -> int:
        """Queue one JSON event for one receiver, due now; its id."""

    @abc.abstractmethod
    async def due_events(self, now: datetime | None = None, limit: int = 100) -> list[OutboxEvent]:
        """Pending events whose next attempt is due, oldest first."""

    @abc.abstractmethod
    async def claim_due_events(
        self,
        worker: str,
        *,
        claim: float = 300.0,
        now: datetime | None = None,
        limit: int = 100,
    ) -> list[OutboxEvent]:
        """Take up to ``limit`` due events nobody else claims, for ``claim`` seconds
        (on the callers' clock, like ``next_attempt``), oldest first: of workers
        claiming at once each event goes to one. Delivering workers use this, not
        :meth:`due_events`; a claim ends with :meth:`mark_delivered`/:meth:`mark_failed`,
        or expires (the worker died) and the event is due again."""

    @abc.abstractmethod
    async def mark_delivered(self, event_id: int, *, now: datetime | None = None) -> None:
        """The receiver accepted the event."""

    @abc.abstractmethod
    async def mark_failed(
        self,
        event_id: int,
        attempts: int,
        next_attempt: datetime | None,
        last_error: str,
    ) -> None:
        """A failed attempt: retry at ``next_attempt``, or give up when it is None."""

    @abc.abstractmethod
    async def failed_events(self, limit: int = 50) -> list[OutboxEvent]:
        """Undelivered events that failed at least once (retrying or given up), newest first."""

    @abc.abstractmethod
    async def receiver_statuses(self) -> list[ReceiverStatus]:
        """Every receiver that has events in the outbox, by id."""

    @abc.abstractmethod
    async def purge_delivered(self, older_than: datetime) -> int:
        """Forget events delivered before ``older_than``; how many went."""

    # -- pruner conditions ---------------------------------------------------------

    @abc.abstractmethod
    async def set_pruner_condition(
        self,
        name: str,
        type_: str,
        status: str,
        reason: str = "",
        message: str = "",
        *,
        now: datetime | None = None,
    ) -> PrunerCondition:
        """Upsert; ``lastTransitionTime`` changes only when ``status`` flips."""

    @abc.abstractmethod
    async def pruner_conditions(self, name: str) -> list[PrunerCondition]:
        """The conditions of pruner ``name``, sorted by type."""

    # -- lifecycle -----------------------------------------------------------------

    async def ping(self, timeout: float = 5.0) -> None:
        """Check that the store answers within about ``timeout`` seconds (readiness);
        StateError naming the store (DatabaseUnavailableError when it is away)."""
        try:
            with anyio.fail_after(timeout):
                await self.list_jobs(limit=1)
        except TimeoutError:
            raise StateError(f"state {self.location}: no answer within {timeout:g}s") from None

    @abc.abstractmethod
    def close(self) -> None:
        """Close the store; further calls raise StateError."""

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

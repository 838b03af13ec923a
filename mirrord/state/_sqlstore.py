"""The :class:`Store` methods both SQL backends share, over their query modules.

A backend supplies three modules of plain functions with the same names and
signatures (``streams``: image streams and tags; ``jobs``: job runs, the outbox,
pruner conditions; ``leases``: leases, blob claims and blob locations), each taking a connection
first, and :meth:`SQLStore._call`, which runs one of them on a connection and
turns the driver's errors into :class:`StateError`. The async methods run
``_call`` in a worker thread. The pure rules of :mod:`mirrord.imagestream` are
applied here, once for both backends, inside the backend's transaction.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import anyio

from mirrord.core.imagestream import (
    TAG_ONCE,
    ImageStream,
    ImportResult,
    StreamSpec,
    TagEvent,
    TagStatus,
    record_failure,
    record_import,
    record_removed,
    utc,
)
from mirrord.core.oci import parse_digest
from mirrord.errors import StateError
from mirrord.state._bloblocations import BlobLocation, check_location, check_locations
from mirrord.state._leases import MAX_MIRROR, MAX_REPOSITORY, Lease, check_claim
from mirrord.state._migrations import now_or
from mirrord.state._store import (
    JOB_DIED,
    JobRun,
    OrphanedImage,
    OutboxEvent,
    PrunerCondition,
    ReceiverStatus,
    Store,
)

T = TypeVar("T")


def _check_blob(mirror: str, digest: str, worker: str, ttl: float = 1.0) -> None:
    if not mirror or len(mirror) > MAX_MIRROR:
        raise ValueError(f"a mirror name has 1 to {MAX_MIRROR} characters")
    parse_digest(digest)  # ManifestError for a malformed one
    check_claim(f"{mirror}@{digest}", worker, ttl, what="blob claim")


class SQLStore(Store):
    """A :class:`Store` over a backend's query modules; see the module docstring."""

    streams: ClassVar[ModuleType]
    jobs: ClassVar[ModuleType]
    lease_sql: ClassVar[ModuleType]
    presence: int | None = None  # the PostgreSQL store's liveness key, in its jobs

    @abc.abstractmethod
    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` on a connection; driver errors become StateError."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(partial(self._call, fn, *args))

    # -- image streams -------------------------------------------------------------

    async def get_stream(self, name: str) -> ImageStream | None:
        found = await self._run(self.streams.read_streams, name)
        return found[0] if found else None

    async def list_streams(self) -> list[ImageStream]:
        return await self._run(self.streams.read_streams, None)

    async def upsert_stream(self, spec: StreamSpec, *, now: datetime | None = None) -> ImageStream:
        await self._run(self.streams.upsert_stream, spec, now_or(now))
        stream = await self.get_stream(spec.name)
        if stream is None:  # deleted by another process in between
            raise StateError(f"image stream {spec.name!r} vanished while being written")
        return stream

    async def bump_generation(self, name: str) -> int:
        return await self._run(self.streams.bump_generation, name)

    async def set_stream_failure(
        self, name: str, reason: str | None, message: str = "", *, now: datetime | None = None
    ) -> None:
        await self._run(self.streams.set_stream_failure, name, reason, message, now_or(now))

    async def mark_synced(self, name: str, *, now: datetime | None = None) -> None:
        await self._run(self.streams.mark_synced, name, now_or(now))

    async def delete_stream(self, name: str, *, now: datetime | None = None) -> bool:
        return await self._run(self.streams.delete_stream, name, now_or(now))

    async def orphaned_images(self) -> list[OrphanedImage]:
        return await self._run(self.streams.orphaned_images)

    async def forget_orphaned_images(self, images: Sequence[tuple[str, str]]) -> int:
        return await self._run(self.streams.forget_orphaned_images, tuple(images))

    # -- tags ----------------------------------------------------------------------

    async def _tag_rule(
        self, stream: str, tag: str, rule: Callable[[TagStatus, int], ImportResult]
    ) -> ImportResult:
        result = await self._run(self.streams.mutate_tag, stream, tag, rule, True)
        if result is None:  # unreachable: create=True always yields a result
            raise StateError(f"tag {stream}:{tag} was not recorded")
        return result

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
        at = now_or(now)

        def rule(status: TagStatus, stream_generation: int) -> ImportResult:
            gen = stream_generation if generation is None else generation
            return record_import(
                status,
                digest,
                reference,
                gen,
                at,
                source_digest=source_digest,
                platform=platform,
                tagged_from=tagged_from,
                tag_policy=tag_policy,
            )

        return await self._tag_rule(stream, tag, rule)

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
        at = now_or(now)

        def rule(status: TagStatus, stream_generation: int) -> ImportResult:
            gen = stream_generation if generation is None else generation
            return ImportResult(record_failure(status, reason, message, gen, at), False, None)

        return (await self._tag_rule(stream, tag, rule)).status

    async def record_tag_removed(
        self,
        stream: str,
        tag: str,
        *,
        delete_removed_tags: bool,
        now: datetime | None = None,
    ) -> TagStatus | None:
        at = now_or(now)

        def rule(status: TagStatus, _generation: int) -> ImportResult:
            new = record_removed(status, at, delete_removed_tags=delete_removed_tags)
            return ImportResult(new, False, None)

        result = await self._run(self.streams.mutate_tag, stream, tag, rule, False)
        return result.status if result is not None else None

    async def get_tag(self, stream: str, tag: str) -> TagStatus | None:
        return await self._run(self.streams.get_tag, stream, tag)

    async def delete_tag_events(self, stream: str, tag: str, events: Sequence[TagEvent]) -> int:
        return await self._run(self.streams.delete_tag_events, stream, tag, tuple(events))

    # -- job runs ------------------------------------------------------------------

    def _keep_presence(self) -> None:
        """Before a job is recorded as this store's: make sure others can see it alive."""

    async def start_job(
        self,
        kind: str,
        stream: str | None = None,
        *,
        now: datetime | None = None,
        queued: bool = False,
    ) -> int:
        await anyio.to_thread.run_sync(self._keep_presence)
        return await self._run(
            self.jobs.start_job, kind, stream, now_or(now), self.worker, self.presence, queued
        )

    async def get_job(self, job_id: int) -> JobRun | None:
        return await self._run(self.jobs.get_job, job_id)

    async def finish_job(
        self,
        job_id: int,
        status: str,
        counts: Mapping[str, int] | None = None,
        message: str = "",
        *,
        now: datetime | None = None,
    ) -> None:
        await self._run(
            self.jobs.finish_job, job_id, status, dict(counts or {}), message, now_or(now)
        )

    async def list_jobs(self, limit: int = 20, kind: str | None = None) -> list[JobRun]:
        return await self._run(self.jobs.list_jobs, limit, kind)

    async def trim_jobs(self, kind: str, successful_limit: int, failed_limit: int) -> int:
        return await self._run(self.jobs.trim_jobs, kind, successful_limit, failed_limit)

    async def abandon_running_jobs(
        self,
        message: str = JOB_DIED,
        *,
        stream: str | None = None,
        now: datetime | None = None,
    ) -> int:
        return await self._run(
            self.jobs.abandon_running_jobs, message, now_or(now), self.presence, stream
        )

    # -- notification outbox -------------------------------------------------------

    async def enqueue_event(
        self, payload: Mapping[str, Any], receiver: str, *, now: datetime | None = None
    ) -> int:
        return await self._run(self.jobs.enqueue_event, dict(payload), receiver, now_or(now))

    async def due_events(self, now: datetime | None = None, limit: int = 100) -> list[OutboxEvent]:
        return await self._run(self.jobs.due_events, now_or(now), limit)

    async def claim_due_events(
        self,
        worker: str,
        *,
        claim: float = 300.0,
        now: datetime | None = None,
        limit: int = 100,
    ) -> list[OutboxEvent]:
        check_claim("outbox", worker, claim, what="outbox claim")
        return await self._run(self.jobs.claim_due_events, worker, claim, now_or(now), limit)

    async def mark_delivered(self, event_id: int, *, now: datetime | None = None) -> None:
        await self._run(self.jobs.mark_delivered, event_id, now_or(now))

    async def mark_failed(
        self,
        event_id: int,
        attempts: int,
        next_attempt: datetime | None,
        last_error: str,
    ) -> None:
        when = utc(next_attempt) if next_attempt is not None else None
        await self._run(self.jobs.mark_failed, event_id, attempts, when, last_error)

    async def failed_events(self, limit: int = 50) -> list[OutboxEvent]:
        return await self._run(self.jobs.failed_events, limit)

    async def receiver_statuses(self) -> list[ReceiverStatus]:
        return await self._run(self.jobs.receiver_statuses)

    async def purge_delivered(self, older_than: datetime) -> int:
        return await self._run(self.jobs.purge_delivered, utc(older_than))

    # -- pruner conditions ---------------------------------------------------------

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
        return await self._run(
            self.jobs.set_pruner_condition, name, type_, status, reason, message, now_or(now)
        )

    async def pruner_conditions(self, name: str) -> list[PrunerCondition]:
        return await self._run(self.jobs.pruner_conditions, name)

    # -- leases and blob claims ----------------------------------------------------

    async def claim_lease(self, name: str, worker: str, ttl: float) -> bool:
        check_claim(name, worker, ttl)
        return await self._run(self.lease_sql.claim_lease, name, worker, float(ttl))

    async def renew_lease(self, name: str, worker: str, ttl: float) -> bool:
        check_claim(name, worker, ttl)
        return await self._run(self.lease_sql.renew_lease, name, worker, float(ttl))

    async def release_lease(self, name: str, worker: str, *, hold: float = 0.0) -> bool:
        check_claim(name, worker, hold or 1.0)
        return await self._run(self.lease_sql.release_lease, name, worker, float(hold))

    async def leases(self, worker: str | None = None) -> list[Lease]:
        return await self._run(self.lease_sql.live_leases, worker)

    async def claim_blob(
        self, mirror: str, digest: str, worker: str, ttl: float, *, repository: str = ""
    ) -> bool:
        _check_blob(mirror, digest, worker, ttl)
        if len(repository) > MAX_REPOSITORY:
            raise ValueError(f"a repository name has at most {MAX_REPOSITORY} characters")
        return await self._run(
            self.lease_sql.claim_blob, mirror, digest, worker, float(ttl), repository
        )

    async def release_blob(self, mirror: str, digest: str, worker: str) -> bool:
        _check_blob(mirror, digest, worker)
        return await self._run(self.lease_sql.release_blob, mirror, digest, worker)

    async def blob_claim(self, mirror: str, digest: str) -> Lease | None:
        _check_blob(mirror, digest, "-")
        return await self._run(self.lease_sql.blob_claim, mirror, digest)

    # -- where blobs landed --------------------------------------------------------

    async def blob_location(self, mirror: str, digest: str) -> BlobLocation | None:
        check_location(mirror, digest)
        return await self._run(self.lease_sql.blob_location, mirror, digest)

    async def record_blob_locations(
        self, mirror: str, locations: Mapping[str, str], *, now: datetime | None = None
    ) -> int:
        pairs = check_locations(mirror, locations)
        if not pairs:
            return 0
        return await self._run(self.lease_sql.record_blob_locations, mirror, pairs, now_or(now))

    async def forget_blob_location(self, mirror: str, digest: str, repository: str) -> bool:
        check_location(mirror, digest, repository)
        return await self._run(self.lease_sql.forget_blob_location, mirror, digest, repository)

"""The SQLite state store: ``state_dir/state.db`` in WAL mode.

One connection per store, used only from worker threads under a lock (the async
methods go through :func:`anyio.to_thread.run_sync`). Other processes (a
``mirrord describe`` next to the daemon) read concurrently thanks to WAL; every
write is one ``BEGIN IMMEDIATE`` transaction, so a killed process leaves the
database as of its last commit. Reads run in a transaction too, so a stream and
its tags come from one snapshot.

The SQL lives in :mod:`._sqlite_streams` (image streams and tags) and
:mod:`._sqlite_jobs` (job runs, the outbox, pruner conditions): plain functions
taking the connection first, which :class:`SQLiteStore` runs in a worker thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio

from mirrord.core.imagestream import (
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
from mirrord.errors import StateError
from mirrord.state import _sqlite_jobs as jobs
from mirrord.state import _sqlite_streams as streams
from mirrord.state._migrations import migrate, now_or
from mirrord.state._store import (
    JOB_DIED,
    JobRun,
    OutboxEvent,
    PrunerCondition,
    ReceiverStatus,
    Store,
)

T = TypeVar("T")

DB_FILE = "state.db"
BUSY_TIMEOUT_MS = 10_000


def _enable_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL and return the journal mode now in force.

    Changing the journal mode takes an exclusive lock without calling the busy
    handler, so two processes opening a new database at once can get SQLITE_BUSY
    here even with a busy timeout; retry that for as long as the timeout allows.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class SQLiteStore(Store):
    """:class:`Store` on SQLite. Opening creates ``state_dir`` and migrates the schema."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_FILE
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise StateError(f"cannot create state directory {self.state_dir}: {exc}") from exc
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            mode = _enable_wal(conn)
            if mode.lower() != "wal":
                raise StateError(f"{self.path}: cannot enable WAL (journal_mode is {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn, str(self.path))
        except sqlite3.Error as exc:
            conn.close()
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    # -- plumbing ------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` under the connection lock; sqlite errors become StateError."""
        with self._lock:
            if self._conn is None:
                raise StateError(f"state database {self.path} is closed")
            try:
                return fn(self._conn, *args)
            except sqlite3.Error as exc:
                raise StateError(f"state database {self.path}: {exc}") from exc

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(partial(self._call, fn, *args))

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- image streams -------------------------------------------------------------

    async def get_stream(self, name: str) -> ImageStream | None:
        found = await self._run(streams.read_streams, name)
        return found[0] if found else None

    async def list_streams(self) -> list[ImageStream]:
        return await self._run(streams.read_streams, None)

    async def upsert_stream(self, spec: StreamSpec, *, now: datetime | None = None) -> ImageStream:
        await self._run(streams.upsert_stream, spec, now_or(now))
        stream = await self.get_stream(spec.name)
        if stream is None:  # deleted by another process in between
            raise StateError(f"image stream {spec.name!r} vanished while being written")
        return stream

    async def bump_generation(self, name: str) -> int:
        return await self._run(streams.bump_generation, name)

    async def set_stream_failure(
        self, name: str, reason: str | None, message: str = "", *, now: datetime | None = None
    ) -> None:
        await self._run(streams.set_stream_failure, name, reason, message, now_or(now))

    async def mark_synced(self, name: str, *, now: datetime | None = None) -> None:
        await self._run(streams.mark_synced, name, now_or(now))

    async def delete_stream(self, name: str) -> bool:
        return await self._run(streams.delete_stream, name)

    # -- tags ----------------------------------------------------------------------

    async def _tag_rule(
        self, stream: str, tag: str, rule: Callable[[TagStatus, int], ImportResult]
    ) -> ImportResult:
        result = await self._run(streams.mutate_tag, stream, tag, rule, True)
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
    ) -> ImportResult:
        at = now_or(now)

        def rule(status: TagStatus, stream_generation: int) -> ImportResult:
            gen = stream_generation if generation is None else generation
            return record_import(
                status, digest, reference, gen, at, source_digest=source_digest, platform=platform
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

        result = await self._run(streams.mutate_tag, stream, tag, rule, False)
        return result.status if result is not None else None

    async def get_tag(self, stream: str, tag: str) -> TagStatus | None:
        return await self._run(streams.get_tag, stream, tag)

    async def delete_tag_events(self, stream: str, tag: str, events: Sequence[TagEvent]) -> int:
        return await self._run(streams.delete_tag_events, stream, tag, tuple(events))

    # -- job runs ------------------------------------------------------------------

    async def start_job(
        self, kind: str, stream: str | None = None, *, now: datetime | None = None
    ) -> int:
        return await self._run(jobs.start_job, kind, stream, now_or(now))

    async def finish_job(
        self,
        job_id: int,
        status: str,
        counts: Mapping[str, int] | None = None,
        message: str = "",
        *,
        now: datetime | None = None,
    ) -> None:
        await self._run(jobs.finish_job, job_id, status, dict(counts or {}), message, now_or(now))

    async def list_jobs(self, limit: int = 20, kind: str | None = None) -> list[JobRun]:
        return await self._run(jobs.list_jobs, limit, kind)

    async def trim_jobs(self, kind: str, successful_limit: int, failed_limit: int) -> int:
        return await self._run(jobs.trim_jobs, kind, successful_limit, failed_limit)

    async def abandon_running_jobs(
        self, message: str = JOB_DIED, *, now: datetime | None = None
    ) -> int:
        return await self._run(jobs.abandon_running_jobs, message, now_or(now))

    # -- notification outbox -------------------------------------------------------

    async def enqueue_event(
        self, payload: Mapping[str, Any], receiver: str, *, now: datetime | None = None
    ) -> int:
        text = json.dumps(dict(payload), sort_keys=True, separators=(",", ":"))
        return await self._run(jobs.enqueue_event, text, receiver, now_or(now))

    async def due_events(self, now: datetime | None = None, limit: int = 100) -> list[OutboxEvent]:
        return await self._run(jobs.due_events, now_or(now), limit)

    async def mark_delivered(self, event_id: int, *, now: datetime | None = None) -> None:
        await self._run(jobs.mark_delivered, event_id, now_or(now))

    async def mark_failed(
        self,
        event_id: int,
        attempts: int,
        next_attempt: datetime | None,
        last_error: str,
    ) -> None:
        when = utc(next_attempt) if next_attempt is not None else None
        await self._run(jobs.mark_failed, event_id, attempts, when, last_error)

    async def failed_events(self, limit: int = 50) -> list[OutboxEvent]:
        return await self._run(jobs.failed_events, limit)

    async def receiver_statuses(self) -> list[ReceiverStatus]:
        return await self._run(jobs.receiver_statuses)

    async def purge_delivered(self, older_than: datetime) -> int:
        return await self._run(jobs.purge_delivered, utc(older_than))

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
            jobs.set_pruner_condition, name, type_, status, reason, message, now_or(now)
        )

    async def pruner_conditions(self, name: str) -> list[PrunerCondition]:
        return await self._run(jobs.pruner_conditions, name)


def store_exists(state_dir: str | os.PathLike[str]) -> bool:
    """Whether ``state_dir`` holds a database: readers and dry runs check before opening,
    since opening creates one."""
    return (Path(state_dir) / DB_FILE).exists()


def open_store(state_dir: str | os.PathLike[str]) -> SQLiteStore:
    """Open (creating and migrating) the SQLite store in ``state_dir``; synchronous."""
    return SQLiteStore(state_dir)

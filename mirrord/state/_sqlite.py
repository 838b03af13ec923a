"""The SQLite state store: ``state_dir/state.db`` in WAL mode.

One connection per store, used only from worker threads under a lock (the async
methods go through :func:`anyio.to_thread.run_sync`). Other processes (a
``mirrord describe`` next to the daemon) read concurrently thanks to WAL; every
write is one ``BEGIN IMMEDIATE`` transaction, so a killed process leaves the
database as of its last commit. Reads run in a transaction too, so a stream and
its tags come from one snapshot.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio

from mirrord._errors import StateError
from mirrord.imagestream import (
    Condition,
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
from mirrord.state._migrations import dt as _dt
from mirrord.state._migrations import migrate, now_or, ts, tx
from mirrord.state._store import JOB_KINDS, JobRun, OutboxEvent, PrunerCondition, Store

T = TypeVar("T")

DB_FILE = "state.db"
BUSY_TIMEOUT_MS = 10_000

_STREAM_COLUMNS = (
    "id, name, source, mirror_repository, scheduled, import_mode, reference_policy, "
    "created_by, generation, created"
)


def _event(row: sqlite3.Row) -> TagEvent:
    return TagEvent(
        created=_dt(row["created"]),
        docker_image_reference=row["docker_image_reference"],
        image=row["image"],
        generation=row["generation"],
    )


def _condition(row: sqlite3.Row) -> Condition:
    return Condition(
        type=row["type"],
        status=row["status"],
        reason=row["reason"],
        message=row["message"],
        generation=row["generation"],
        last_transition_time=_dt(row["last_transition_time"]),
    )


def _spec(row: sqlite3.Row) -> StreamSpec:
    return StreamSpec(
        name=row["name"],
        source=row["source"],
        docker_image_repository=row["mirror_repository"],
        scheduled=bool(row["scheduled"]),
        import_mode=row["import_mode"],
        reference_policy=row["reference_policy"],
        created_by=row["created_by"],
    )


# -- job runs, outbox and pruner conditions (plain functions over a connection) ------


def _job(row: sqlite3.Row) -> JobRun:
    return JobRun(
        id=row["id"],
        kind=row["kind"],
        stream=row["stream"],
        status=row["status"],
        started=_dt(row["started"]),
        finished=_dt(row["finished"]) if row["finished"] else None,
        counts=json.loads(row["counts"]),
        message=row["message"],
        pid=row["pid"],
    )


def _start_job(conn: sqlite3.Connection, kind: str, stream: str | None, now: datetime) -> int:
    if kind not in JOB_KINDS:
        raise ValueError(f"job kind must be one of {JOB_KINDS}, not {kind!r}")
    with tx(conn):
        row = conn.execute(
            "INSERT INTO job_runs (kind, stream, status, started, pid) "
            "VALUES (?, ?, 'Running', ?, ?) RETURNING id",
            (kind, stream, ts(now), os.getpid()),
        ).fetchone()
    return int(row[0])


def _finish_job(
    conn: sqlite3.Connection,
    job_id: int,
    status: str,
    counts: dict[str, int],
    message: str,
    now: datetime,
) -> None:
    if status not in ("Succeeded", "Failed"):
        raise ValueError(f"a job finishes as Succeeded or Failed, not {status!r}")
    with tx(conn):
        cursor = conn.execute(
            "UPDATE job_runs SET status = ?, finished = ?, counts = ?, message = ? "
            "WHERE id = ? AND status = 'Running'",
            (status, ts(now), json.dumps(counts, sort_keys=True), message, job_id),
        )
    if cursor.rowcount == 0:
        raise StateError(f"job {job_id} is not running (unknown or already finished)")


def _list_jobs(conn: sqlite3.Connection, limit: int, kind: str | None) -> list[JobRun]:
    where, args = ("WHERE kind = ?", (kind,)) if kind is not None else ("", ())
    rows = conn.execute(
        f"SELECT * FROM job_runs {where} ORDER BY id DESC LIMIT ?", (*args, limit)
    ).fetchall()
    return [_job(r) for r in rows]


def _trim_jobs(conn: sqlite3.Connection, kind: str, successful: int, failed: int) -> int:
    deleted = 0
    with tx(conn):
        for status, keep in (("Succeeded", successful), ("Failed", failed)):
            deleted += conn.execute(
                "DELETE FROM job_runs WHERE kind = ? AND status = ? AND id NOT IN ("
                "SELECT id FROM job_runs WHERE kind = ? AND status = ? "
                "ORDER BY id DESC LIMIT ?)",
                (kind, status, kind, status, max(keep, 0)),
            ).rowcount
    return deleted


def _abandon_running_jobs(conn: sqlite3.Connection, message: str, now: datetime) -> int:
    with tx(conn):
        return conn.execute(
            "UPDATE job_runs SET status = 'Failed', finished = ?, message = ? "
            "WHERE status = 'Running'",
            (ts(now), message),
        ).rowcount


def _outbox(row: sqlite3.Row) -> OutboxEvent:
    return OutboxEvent(
        id=row["id"],
        receiver=row["receiver"],
        payload=json.loads(row["payload"]),
        created=_dt(row["created"]),
        attempts=row["attempts"],
        next_attempt=_dt(row["next_attempt"]) if row["next_attempt"] else None,
        last_error=row["last_error"],
        delivered=_dt(row["delivered"]) if row["delivered"] else None,
    )


def _enqueue_event(conn: sqlite3.Connection, payload: str, receiver: str, now: datetime) -> int:
    with tx(conn):
        row = conn.execute(
            "INSERT INTO outbox (receiver, payload, created, next_attempt) "
            "VALUES (?, ?, ?, ?) RETURNING id",
            (receiver, payload, ts(now), ts(now)),
        ).fetchone()
    return int(row[0])


def _due_events(conn: sqlite3.Connection, now: datetime, limit: int) -> list[OutboxEvent]:
    rows = conn.execute(
        "SELECT * FROM outbox WHERE delivered IS NULL AND next_attempt IS NOT NULL "
        "AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?",
        (ts(now), limit),
    ).fetchall()
    return [_outbox(r) for r in rows]


def _pending_update(
    conn: sqlite3.Connection, event_id: int, sql: str, args: tuple[Any, ...]
) -> None:
    with tx(conn):
        cursor = conn.execute(f"{sql} WHERE id = ? AND delivered IS NULL", (*args, event_id))
    if cursor.rowcount == 0:
        raise StateError(f"outbox event {event_id} is not pending (unknown or delivered)")


def _mark_delivered(conn: sqlite3.Connection, event_id: int, now: datetime) -> None:
    _pending_update(
        conn, event_id, "UPDATE outbox SET delivered = ?, next_attempt = NULL", (ts(now),)
    )


def _mark_failed(
    conn: sqlite3.Connection,
    event_id: int,
    attempts: int,
    next_attempt: datetime | None,
    last_error: str,
) -> None:
    when = ts(next_attempt) if next_attempt is not None else None
    _pending_update(
        conn,
        event_id,
        "UPDATE outbox SET attempts = ?, next_attempt = ?, last_error = ?",
        (attempts, when, last_error),
    )


def _failed_events(conn: sqlite3.Connection, limit: int) -> list[OutboxEvent]:
    rows = conn.execute(
        "SELECT * FROM outbox WHERE delivered IS NULL AND last_error IS NOT NULL "
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_outbox(r) for r in rows]


def _purge_delivered(conn: sqlite3.Connection, older_than: datetime) -> int:
    with tx(conn):
        return conn.execute(
            "DELETE FROM outbox WHERE delivered IS NOT NULL AND delivered < ?", (ts(older_than),)
        ).rowcount


def _pruner_condition(row: sqlite3.Row) -> PrunerCondition:
    return PrunerCondition(
        type=row["type"],
        status=row["status"],
        reason=row["reason"],
        message=row["message"],
        last_transition_time=_dt(row["last_transition_time"]),
    )


def _set_pruner_condition(
    conn: sqlite3.Connection,
    name: str,
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
) -> PrunerCondition:
    with tx(conn):
        old = conn.execute(
            "SELECT status, last_transition_time FROM pruner_conditions "
            "WHERE name = ? AND type = ?",
            (name, type_),
        ).fetchone()
        since = old["last_transition_time"] if old and old["status"] == status else ts(now)
        conn.execute(
            "INSERT OR REPLACE INTO pruner_conditions (name, type, status, reason, message, "
            "last_transition_time) VALUES (?, ?, ?, ?, ?, ?)",
            (name, type_, status, reason, message, since),
        )
    return PrunerCondition(type_, status, reason, message, _dt(since))


def _pruner_conditions(conn: sqlite3.Connection, name: str) -> list[PrunerCondition]:
    rows = conn.execute(
        "SELECT * FROM pruner_conditions WHERE name = ? ORDER BY type", (name,)
    ).fetchall()
    return [_pruner_condition(r) for r in rows]


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
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
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

    @staticmethod
    def _streams(conn: sqlite3.Connection, name: str | None) -> list[ImageStream]:
        where, args = ("WHERE s.name = ?", (name,)) if name is not None else ("", ())
        with tx(conn, write=False):
            streams = conn.execute(
                f"SELECT {_STREAM_COLUMNS} FROM image_streams s {where} ORDER BY name", args
            ).fetchall()
            tags = conn.execute(
                "SELECT t.id, t.stream_id, t.tag, t.removed_at FROM tags t "
                f"JOIN image_streams s ON s.id = t.stream_id {where} ORDER BY t.tag",
                args,
            ).fetchall()
            events = conn.execute(
                "SELECT e.* FROM tag_events e JOIN tags t ON t.id = e.tag_id "
                f"JOIN image_streams s ON s.id = t.stream_id {where} ORDER BY e.id DESC",
                args,
            ).fetchall()
            conditions = conn.execute(
                "SELECT c.* FROM tag_conditions c JOIN tags t ON t.id = c.tag_id "
                f"JOIN image_streams s ON s.id = t.stream_id {where} ORDER BY c.type",
                args,
            ).fetchall()
        items: dict[int, list[TagEvent]] = {}
        for row in events:
            items.setdefault(row["tag_id"], []).append(_event(row))
        conds: dict[int, list[Condition]] = {}
        for row in conditions:
            conds.setdefault(row["tag_id"], []).append(_condition(row))
        by_stream: dict[int, list[TagStatus]] = {}
        for row in tags:
            removed = row["removed_at"]
            by_stream.setdefault(row["stream_id"], []).append(
                TagStatus(
                    tag=row["tag"],
                    items=tuple(items.get(row["id"], ())),
                    conditions=tuple(conds.get(row["id"], ())),
                    removed_at=_dt(removed) if removed else None,
                )
            )
        return [
            ImageStream(
                name=row["name"],
                docker_image_repository=row["mirror_repository"],
                source=row["source"],
                generation=row["generation"],
                tags=tuple(by_stream.get(row["id"], ())),
                scheduled=bool(row["scheduled"]),
                import_mode=row["import_mode"],
                reference_policy=row["reference_policy"],
                created=_dt(row["created"]),
                created_by=row["created_by"],
            )
            for row in streams
        ]

    async def get_stream(self, name: str) -> ImageStream | None:
        found = await self._run(self._streams, name)
        return found[0] if found else None

    async def list_streams(self) -> list[ImageStream]:
        return await self._run(self._streams, None)

    @staticmethod
    def _upsert(conn: sqlite3.Connection, spec: StreamSpec, now: datetime) -> None:
        with tx(conn):
            row = conn.execute(
                f"SELECT {_STREAM_COLUMNS} FROM image_streams WHERE name = ?", (spec.name,)
            ).fetchone()
            values = (
                spec.source,
                spec.docker_image_repository,
                int(spec.scheduled),
                spec.import_mode,
                spec.reference_policy,
                spec.created_by,
            )
            if row is None:
                conn.execute(
                    "INSERT INTO image_streams (source, mirror_repository, scheduled, "
                    "import_mode, reference_policy, created_by, name, generation, created, "
                    "updated) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                    (*values, spec.name, ts(now), ts(now)),
                )
                return
            bump = 0 if _spec(row).same_spec(spec) else 1
            conn.execute(
                "UPDATE image_streams SET source = ?, mirror_repository = ?, scheduled = ?, "
                "import_mode = ?, reference_policy = ?, created_by = ?, "
                "generation = generation + ?, updated = ? WHERE id = ?",
                (*values, bump, ts(now), row["id"]),
            )

    async def upsert_stream(self, spec: StreamSpec, *, now: datetime | None = None) -> ImageStream:
        await self._run(self._upsert, spec, now_or(now))
        stream = await self.get_stream(spec.name)
        if stream is None:  # deleted by another process in between
            raise StateError(f"image stream {spec.name!r} vanished while being written")
        return stream

    @staticmethod
    def _bump(conn: sqlite3.Connection, name: str) -> int:
        with tx(conn):
            row = conn.execute(
                "UPDATE image_streams SET generation = generation + 1 WHERE name = ? "
                "RETURNING generation",
                (name,),
            ).fetchone()
        if row is None:
            raise StateError(f"unknown image stream {name!r}")
        return int(row[0])

    async def bump_generation(self, name: str) -> int:
        return await self._run(self._bump, name)

    @staticmethod
    def _delete_stream(conn: sqlite3.Connection, name: str) -> bool:
        with tx(conn):
            cursor = conn.execute("DELETE FROM image_streams WHERE name = ?", (name,))
        return cursor.rowcount > 0

    async def delete_stream(self, name: str) -> bool:
        return await self._run(self._delete_stream, name)

    # -- tags ----------------------------------------------------------------------

    @staticmethod
    def _stream_row(conn: sqlite3.Connection, stream: str) -> sqlite3.Row:
        row = conn.execute(
            "SELECT id, generation FROM image_streams WHERE name = ?", (stream,)
        ).fetchone()
        if row is None:
            raise StateError(f"unknown image stream {stream!r}")
        return row

    @staticmethod
    def _tag_status(conn: sqlite3.Connection, stream_id: int, tag: str) -> tuple[int, TagStatus]:
        """The tag's row id and status; (0, empty status) when it has no row yet."""
        row = conn.execute(
            "SELECT id, removed_at FROM tags WHERE stream_id = ? AND tag = ?", (stream_id, tag)
        ).fetchone()
        if row is None:
            return 0, TagStatus(tag=tag)
        events = conn.execute(
            "SELECT * FROM tag_events WHERE tag_id = ? ORDER BY id DESC", (row["id"],)
        ).fetchall()
        conditions = conn.execute(
            "SELECT * FROM tag_conditions WHERE tag_id = ? ORDER BY type", (row["id"],)
        ).fetchall()
        removed = row["removed_at"]
        return row["id"], TagStatus(
            tag=tag,
            items=tuple(_event(e) for e in events),
            conditions=tuple(_condition(c) for c in conditions),
            removed_at=_dt(removed) if removed else None,
        )

    @staticmethod
    def _save_tag(
        conn: sqlite3.Connection, stream_id: int, tag_id: int, new: TagStatus, added: int
    ) -> None:
        """Write ``new``: its ``added`` newest events, its conditions, its removal mark."""
        removed = ts(new.removed_at) if new.removed_at else None
        if tag_id == 0:
            tag_id = conn.execute(
                "INSERT INTO tags (stream_id, tag, removed_at) VALUES (?, ?, ?) RETURNING id",
                (stream_id, new.tag, removed),
            ).fetchone()[0]
        else:
            conn.execute("UPDATE tags SET removed_at = ? WHERE id = ?", (removed, tag_id))
        for event in reversed(new.items[:added]):  # oldest first: ids follow history
            conn.execute(
                "INSERT INTO tag_events (tag_id, created, docker_image_reference, image, "
                "generation) VALUES (?, ?, ?, ?, ?)",
                (
                    tag_id,
                    ts(event.created),
                    event.docker_image_reference,
                    event.image,
                    event.generation,
                ),
            )
        conn.execute("DELETE FROM tag_conditions WHERE tag_id = ?", (tag_id,))
        conn.executemany(
            "INSERT INTO tag_conditions (tag_id, type, status, reason, message, generation, "
            "last_transition_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    tag_id,
                    c.type,
                    c.status,
                    c.reason,
                    c.message,
                    c.generation,
                    ts(c.last_transition_time),
                )
                for c in new.conditions
            ],
        )

    def _mutate_tag(
        self,
        conn: sqlite3.Connection,
        stream: str,
        tag: str,
        rule: Callable[[TagStatus, int], ImportResult],
        create: bool,
    ) -> ImportResult | None:
        """Apply a pure rule to a tag in one transaction (None: no such tag, not created)."""
        with tx(conn):
            srow = self._stream_row(conn, stream)
            tag_id, status = self._tag_status(conn, srow["id"], tag)
            if tag_id == 0 and not create:
                return None
            result = rule(status, srow["generation"])
            if result.status != status or tag_id == 0:
                self._save_tag(conn, srow["id"], tag_id, result.status, int(result.changed))
        return result

    async def _tag_rule(
        self, stream: str, tag: str, rule: Callable[[TagStatus, int], ImportResult]
    ) -> ImportResult:
        result = await self._run(self._mutate_tag, stream, tag, rule, True)
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
        generation: int | None = None,
        now: datetime | None = None,
    ) -> ImportResult:
        at = now_or(now)

        def rule(status: TagStatus, stream_generation: int) -> ImportResult:
            gen = stream_generation if generation is None else generation
            return record_import(status, digest, reference, gen, at)

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

        result = await self._run(self._mutate_tag, stream, tag, rule, False)
        return result.status if result is not None else None

    def _get_tag(self, conn: sqlite3.Connection, stream: str, tag: str) -> TagStatus | None:
        with tx(conn, write=False):
            row = conn.execute("SELECT id FROM image_streams WHERE name = ?", (stream,)).fetchone()
            if row is None:
                return None
            tag_id, status = self._tag_status(conn, row["id"], tag)
        return status if tag_id else None

    async def get_tag(self, stream: str, tag: str) -> TagStatus | None:
        return await self._run(self._get_tag, stream, tag)

    def _delete_events(
        self, conn: sqlite3.Connection, stream: str, tag: str, events: Sequence[TagEvent]
    ) -> int:
        deleted = 0
        with tx(conn):
            srow = self._stream_row(conn, stream)
            for event in events:
                deleted += conn.execute(
                    "DELETE FROM tag_events WHERE tag_id = (SELECT id FROM tags WHERE "
                    "stream_id = ? AND tag = ?) AND created = ? AND docker_image_reference = ? "
                    "AND image = ? AND generation = ?",
                    (
                        srow["id"],
                        tag,
                        ts(event.created),
                        event.docker_image_reference,
                        event.image,
                        event.generation,
                    ),
                ).rowcount
        return deleted

    async def delete_tag_events(self, stream: str, tag: str, events: Sequence[TagEvent]) -> int:
        return await self._run(self._delete_events, stream, tag, tuple(events))

    # -- job runs ------------------------------------------------------------------

    async def start_job(
        self, kind: str, stream: str | None = None, *, now: datetime | None = None
    ) -> int:
        return await self._run(_start_job, kind, stream, now_or(now))

    async def finish_job(
        self,
        job_id: int,
        status: str,
        counts: Mapping[str, int] | None = None,
        message: str = "",
        *,
        now: datetime | None = None,
    ) -> None:
        await self._run(_finish_job, job_id, status, dict(counts or {}), message, now_or(now))

    async def list_jobs(self, limit: int = 20, kind: str | None = None) -> list[JobRun]:
        return await self._run(_list_jobs, limit, kind)

    async def trim_jobs(self, kind: str, successful_limit: int, failed_limit: int) -> int:
        return await self._run(_trim_jobs, kind, successful_limit, failed_limit)

    async def abandon_running_jobs(
        self, message: str = "interrupted", *, now: datetime | None = None
    ) -> int:
        return await self._run(_abandon_running_jobs, message, now_or(now))

    # -- notification outbox -------------------------------------------------------

    async def enqueue_event(
        self, payload: Mapping[str, Any], receiver: str, *, now: datetime | None = None
    ) -> int:
        text = json.dumps(dict(payload), sort_keys=True, separators=(",", ":"))
        return await self._run(_enqueue_event, text, receiver, now_or(now))

    async def due_events(self, now: datetime | None = None, limit: int = 100) -> list[OutboxEvent]:
        return await self._run(_due_events, now_or(now), limit)

    async def mark_delivered(self, event_id: int, *, now: datetime | None = None) -> None:
        await self._run(_mark_delivered, event_id, now_or(now))

    async def mark_failed(
        self,
        event_id: int,
        attempts: int,
        next_attempt: datetime | None,
        last_error: str,
    ) -> None:
        when = utc(next_attempt) if next_attempt is not None else None
        await self._run(_mark_failed, event_id, attempts, when, last_error)

    async def failed_events(self, limit: int = 50) -> list[OutboxEvent]:
        return await self._run(_failed_events, limit)

    async def purge_delivered(self, older_than: datetime) -> int:
        return await self._run(_purge_delivered, utc(older_than))

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
            _set_pruner_condition, name, type_, status, reason, message, now_or(now)
        )

    async def pruner_conditions(self, name: str) -> list[PrunerCondition]:
        return await self._run(_pruner_conditions, name)


def open_store(state_dir: str | os.PathLike[str]) -> SQLiteStore:
    """Open (creating and migrating) the SQLite store in ``state_dir``; synchronous."""
    return SQLiteStore(state_dir)

"""Job runs, the notification outbox and pruner conditions: plain functions over a connection.

Each function takes the store's connection first (see :meth:`SQLiteStore._call`);
writes are one ``BEGIN IMMEDIATE`` transaction each.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime
from typing import Any

from mirrord.errors import StateError
from mirrord.state._migrations import dt, ts, tx
from mirrord.state._store import JOB_KINDS, JobRun, OutboxEvent, PrunerCondition, ReceiverStatus

# -- job runs ------------------------------------------------------------------------


def _job(row: sqlite3.Row) -> JobRun:
    return JobRun(
        id=row["id"],
        kind=row["kind"],
        stream=row["stream"],
        status=row["status"],
        started=dt(row["started"]),
        finished=dt(row["finished"]) if row["finished"] else None,
        counts=json.loads(row["counts"]),
        message=row["message"],
        pid=row["pid"],
    )


def start_job(
    conn: sqlite3.Connection, kind: str, stream: str | None, now: datetime, queued: bool
) -> int:
    if kind not in JOB_KINDS:
        raise ValueError(f"job kind must be one of {JOB_KINDS}, not {kind!r}")
    with tx(conn):
        waiting = None
        if stream is not None:  # a run of the whole configuration serves no one trigger
            waiting = conn.execute(
                "SELECT id FROM job_runs WHERE kind = ? AND stream = ? AND status = 'Queued' "
                "ORDER BY id LIMIT 1",
                (kind, stream),
            ).fetchone()
        if waiting is not None and queued:
            return int(waiting[0])  # triggers coalesce, as the scheduler's runs do
        if waiting is not None:
            conn.execute(
                "UPDATE job_runs SET status = 'Running', started = ?, pid = ? WHERE id = ?",
                (ts(now), os.getpid(), waiting[0]),
            )
            return int(waiting[0])
        row = conn.execute(
            "INSERT INTO job_runs (kind, stream, status, started, pid) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (kind, stream, "Queued" if queued else "Running", ts(now), os.getpid()),
        ).fetchone()
    return int(row[0])


def get_job(conn: sqlite3.Connection, job_id: int) -> JobRun | None:
    row = conn.execute("SELECT * FROM job_runs WHERE id = ?", (job_id,)).fetchone()
    return _job(row) if row is not None else None


def finish_job(
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
            "WHERE id = ? AND status IN ('Queued', 'Running')",
            (status, ts(now), json.dumps(counts, sort_keys=True), message, job_id),
        )
    if cursor.rowcount == 0:
        raise StateError(f"job {job_id} is not queued or running (unknown or finished)")


def list_jobs(conn: sqlite3.Connection, limit: int, kind: str | None) -> list[JobRun]:
    where, args = ("WHERE kind = ?", (kind,)) if kind is not None else ("", ())
    rows = conn.execute(
        f"SELECT * FROM job_runs {where} ORDER BY id DESC LIMIT ?", (*args, limit)
    ).fetchall()
    return [_job(r) for r in rows]


def trim_jobs(conn: sqlite3.Connection, kind: str, successful: int, failed: int) -> int:
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


def abandon_running_jobs(conn: sqlite3.Connection, message: str, now: datetime) -> int:
    with tx(conn):
        return conn.execute(
            "UPDATE job_runs SET status = 'Failed', finished = ?, message = ? "
            "WHERE status = 'Running'",
            (ts(now), message),
        ).rowcount


# -- notification outbox -------------------------------------------------------------


def _outbox(row: sqlite3.Row) -> OutboxEvent:
    return OutboxEvent(
        id=row["id"],
        receiver=row["receiver"],
        payload=json.loads(row["payload"]),
        created=dt(row["created"]),
        attempts=row["attempts"],
        next_attempt=dt(row["next_attempt"]) if row["next_attempt"] else None,
        last_error=row["last_error"],
        delivered=dt(row["delivered"]) if row["delivered"] else None,
    )


def enqueue_event(conn: sqlite3.Connection, payload: str, receiver: str, now: datetime) -> int:
    with tx(conn):
        row = conn.execute(
            "INSERT INTO outbox (receiver, payload, created, next_attempt) "
            "VALUES (?, ?, ?, ?) RETURNING id",
            (receiver, payload, ts(now), ts(now)),
        ).fetchone()
    return int(row[0])


def due_events(conn: sqlite3.Connection, now: datetime, limit: int) -> list[OutboxEvent]:
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


def mark_delivered(conn: sqlite3.Connection, event_id: int, now: datetime) -> None:
    _pending_update(
        conn, event_id, "UPDATE outbox SET delivered = ?, next_attempt = NULL", (ts(now),)
    )


def mark_failed(
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


def failed_events(conn: sqlite3.Connection, limit: int) -> list[OutboxEvent]:
    rows = conn.execute(
        "SELECT * FROM outbox WHERE delivered IS NULL AND last_error IS NOT NULL "
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_outbox(r) for r in rows]


def receiver_statuses(conn: sqlite3.Connection) -> list[ReceiverStatus]:
    with tx(conn, write=False):
        rows = conn.execute(
            "SELECT receiver,"
            " SUM(delivered IS NULL AND next_attempt IS NOT NULL) AS pending,"
            " SUM(delivered IS NULL AND next_attempt IS NOT NULL AND attempts > 0) AS retrying,"
            " SUM(delivered IS NULL AND next_attempt IS NULL) AS given_up,"
            " SUM(delivered IS NOT NULL) AS delivered,"
            " MAX(delivered) AS last_delivered,"
            " (SELECT last_error FROM outbox f WHERE f.receiver = o.receiver"
            "  AND f.delivered IS NULL AND f.last_error IS NOT NULL"
            "  ORDER BY f.id DESC LIMIT 1) AS last_error "
            "FROM outbox o GROUP BY receiver ORDER BY receiver"
        ).fetchall()
    return [
        ReceiverStatus(
            receiver=row["receiver"],
            pending=row["pending"],
            retrying=row["retrying"],
            given_up=row["given_up"],
            delivered=row["delivered"],
            last_error=row["last_error"],
            last_delivered=dt(row["last_delivered"]) if row["last_delivered"] else None,
        )
        for row in rows
    ]


def purge_delivered(conn: sqlite3.Connection, older_than: datetime) -> int:
    with tx(conn):
        return conn.execute(
            "DELETE FROM outbox WHERE delivered IS NOT NULL AND delivered < ?", (ts(older_than),)
        ).rowcount


# -- pruner conditions ---------------------------------------------------------------


def _pruner_condition(row: sqlite3.Row) -> PrunerCondition:
    return PrunerCondition(
        type=row["type"],
        status=row["status"],
        reason=row["reason"],
        message=row["message"],
        last_transition_time=dt(row["last_transition_time"]),
    )


def set_pruner_condition(
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
    return PrunerCondition(type_, status, reason, message, dt(since))


def pruner_conditions(conn: sqlite3.Connection, name: str) -> list[PrunerCondition]:
    rows = conn.execute(
        "SELECT * FROM pruner_conditions WHERE name = ? ORDER BY type", (name,)
    ).fetchall()
    return [_pruner_condition(r) for r in rows]

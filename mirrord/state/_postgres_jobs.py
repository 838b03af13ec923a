"""Job runs, the outbox and pruner conditions on PostgreSQL: the functions of
:mod:`._sqlite_jobs`, with the same names, signatures and results.

Each write is one statement (atomic by itself) or one transaction. Two things
differ because several workers share the database: :func:`claim_due_events`
takes rows ``FOR UPDATE SKIP LOCKED``, so workers claiming at once split the due
events between them; and :func:`abandon_running_jobs` spares the jobs of other
workers still alive (their store holds its presence advisory lock).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from mirrord.errors import StateError
from mirrord.state import _rows as rows
from mirrord.state._postgres_conn import returned
from mirrord.state._postgres_schema import PRESENCE_NAMESPACE
from mirrord.state._store import JOB_KINDS, JobRun, OutboxEvent, PrunerCondition, ReceiverStatus

Conn = psycopg.Connection[Any]

# -- job runs ------------------------------------------------------------------------


def start_job(
    conn: Conn,
    kind: str,
    stream: str | None,
    now: datetime,
    worker: str,
    presence: int | None,
) -> int:
    if kind not in JOB_KINDS:
        raise ValueError(f"job kind must be one of {JOB_KINDS}, not {kind!r}")
    row = conn.execute(
        "INSERT INTO job_runs (kind, stream, status, started, pid, worker, presence) "
        "VALUES (%s, %s, 'Running', %s, %s, %s, %s) RETURNING id",
        (kind, stream, now, os.getpid(), worker, presence),
    ).fetchone()
    return int(returned(row)["id"])


def finish_job(
    conn: Conn,
    job_id: int,
    status: str,
    counts: dict[str, int],
    message: str,
    now: datetime,
) -> None:
    if status not in ("Succeeded", "Failed"):
        raise ValueError(f"a job finishes as Succeeded or Failed, not {status!r}")
    cursor = conn.execute(
        "UPDATE job_runs SET status = %s, finished = %s, counts = %s, message = %s "
        "WHERE id = %s AND status = 'Running'",
        (status, now, Jsonb(counts), message, job_id),
    )
    if cursor.rowcount == 0:
        raise StateError(f"job {job_id} is not running (unknown or already finished)")


def list_jobs(conn: Conn, limit: int, kind: str | None) -> list[JobRun]:
    where, args = ("WHERE kind = %s", (kind,)) if kind is not None else ("", ())
    found = conn.execute(
        f"SELECT * FROM job_runs {where} ORDER BY id DESC LIMIT %s", (*args, limit)
    ).fetchall()
    return [rows.job(r) for r in found]


def trim_jobs(conn: Conn, kind: str, successful: int, failed: int) -> int:
    deleted = 0
    with conn.transaction():
        for status, keep in (("Succeeded", successful), ("Failed", failed)):
            deleted += conn.execute(
                "DELETE FROM job_runs WHERE kind = %(kind)s AND status = %(status)s AND id NOT IN ("
                "SELECT id FROM job_runs WHERE kind = %(kind)s AND status = %(status)s "
                "ORDER BY id DESC LIMIT %(keep)s)",
                {"kind": kind, "status": status, "keep": max(keep, 0)},
            ).rowcount
    return deleted


# A job is another live worker's while that worker's store holds its presence lock.
_ALIVE = (
    "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid = %(namespace)s::oid AND l.objid = j.presence::oid AND l.objsubid = 2)"
)


def abandon_running_jobs(conn: Conn, message: str, now: datetime, presence: int | None) -> int:
    """Running jobs of gone processes (and this store's own) become Failed."""
    return conn.execute(
        "UPDATE job_runs j SET status = 'Failed', finished = %(now)s, message = %(message)s "
        "WHERE status = 'Running' AND (presence IS NULL OR presence = %(mine)s "
        f"OR NOT {_ALIVE})",
        {"now": now, "message": message, "mine": presence, "namespace": PRESENCE_NAMESPACE},
    ).rowcount


# -- notification outbox -------------------------------------------------------------


def enqueue_event(conn: Conn, payload: Mapping[str, Any], receiver: str, now: datetime) -> int:
    row = conn.execute(
        "INSERT INTO outbox (receiver, payload, created, next_attempt) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        (receiver, Jsonb(dict(payload)), now, now),
    ).fetchone()
    return int(returned(row)["id"])


def due_events(conn: Conn, now: datetime, limit: int) -> list[OutboxEvent]:
    found = conn.execute(
        "SELECT * FROM outbox WHERE delivered IS NULL AND next_attempt IS NOT NULL "
        "AND next_attempt <= %s ORDER BY next_attempt, id LIMIT %s",
        (now, limit),
    ).fetchall()
    return [rows.outbox(r) for r in found]


def claim_due_events(
    conn: Conn, worker: str, claim: float, now: datetime, limit: int
) -> list[OutboxEvent]:
    """Due, unclaimed (or claim expired) events; rows another worker is claiming right
    now are skipped, not waited for."""
    found = conn.execute(
        "UPDATE outbox SET claimed_by = %(worker)s, claim_expires = %(until)s WHERE id IN ("
        "SELECT id FROM outbox WHERE delivered IS NULL AND next_attempt IS NOT NULL "
        "AND next_attempt <= %(now)s AND (claim_expires IS NULL OR claim_expires <= %(now)s) "
        "ORDER BY next_attempt, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) RETURNING *",
        {"worker": worker, "until": now + timedelta(seconds=claim), "now": now, "limit": limit},
    ).fetchall()
    events = [rows.outbox(r) for r in found]
    return sorted(events, key=lambda e: (e.next_attempt or now, e.id))


def _pending_update(conn: Conn, event_id: int, sql: str, args: tuple[Any, ...]) -> None:
    cursor = conn.execute(f"{sql} WHERE id = %s AND delivered IS NULL", (*args, event_id))
    if cursor.rowcount == 0:
        raise StateError(f"outbox event {event_id} is not pending (unknown or delivered)")


def mark_delivered(conn: Conn, event_id: int, now: datetime) -> None:
    _pending_update(
        conn,
        event_id,
        "UPDATE outbox SET delivered = %s, next_attempt = NULL, claimed_by = NULL, "
        "claim_expires = NULL",
        (now,),
    )


def mark_failed(
    conn: Conn,
    event_id: int,
    attempts: int,
    next_attempt: datetime | None,
    last_error: str,
) -> None:
    _pending_update(
        conn,
        event_id,
        "UPDATE outbox SET attempts = %s, next_attempt = %s, last_error = %s, "
        "claimed_by = NULL, claim_expires = NULL",
        (attempts, next_attempt, last_error),
    )


def failed_events(conn: Conn, limit: int) -> list[OutboxEvent]:
    found = conn.execute(
        "SELECT * FROM outbox WHERE delivered IS NULL AND last_error IS NOT NULL "
        "ORDER BY id DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return [rows.outbox(r) for r in found]


def _count(condition: str) -> str:
    return f"count(*) FILTER (WHERE {condition})"


def receiver_statuses(conn: Conn) -> list[ReceiverStatus]:
    pending = "delivered IS NULL AND next_attempt IS NOT NULL"
    found = conn.execute(
        f"SELECT receiver, {_count(pending)} AS pending,"
        f" {_count(pending + ' AND attempts > 0')} AS retrying,"
        f" {_count('delivered IS NULL AND next_attempt IS NULL')} AS given_up,"
        f" {_count('delivered IS NOT NULL')} AS delivered,"
        " max(delivered) AS last_delivered,"
        " (SELECT last_error FROM outbox f WHERE f.receiver = o.receiver"
        "  AND f.delivered IS NULL AND f.last_error IS NOT NULL"
        "  ORDER BY f.id DESC LIMIT 1) AS last_error "
        'FROM outbox o GROUP BY receiver ORDER BY receiver COLLATE "C"'
    ).fetchall()
    return [rows.receiver_status(r) for r in found]


def purge_delivered(conn: Conn, older_than: datetime) -> int:
    return conn.execute(
        "DELETE FROM outbox WHERE delivered IS NOT NULL AND delivered < %s", (older_than,)
    ).rowcount


# -- pruner conditions ---------------------------------------------------------------


def set_pruner_condition(
    conn: Conn,
    name: str,
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
) -> PrunerCondition:
    """One upsert: the transition time stays when the status does (atomic under races)."""
    row = conn.execute(
        "INSERT INTO pruner_conditions AS p (name, type, status, reason, message, "
        "last_transition_time) VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (name, type) DO UPDATE SET status = EXCLUDED.status, "
        "reason = EXCLUDED.reason, message = EXCLUDED.message, last_transition_time = "
        "CASE WHEN p.status = EXCLUDED.status THEN p.last_transition_time "
        "ELSE EXCLUDED.last_transition_time END RETURNING last_transition_time",
        (name, type_, status, reason, message, now),
    ).fetchone()
    since = rows.moment(returned(row)["last_transition_time"])
    return PrunerCondition(type_, status, reason, message, since)


def pruner_conditions(conn: Conn, name: str) -> list[PrunerCondition]:
    found = conn.execute(
        'SELECT * FROM pruner_conditions WHERE name = %s ORDER BY type COLLATE "C"', (name,)
    ).fetchall()
    return [rows.pruner_condition(r) for r in found]

"""Leases, blob claims and blob locations on SQLite: plain functions over the store's
connection.

One host, so this host's clock is the clock; each claim is one atomic upsert in a
``BEGIN IMMEDIATE`` transaction (writers are serialised), taking a row that is
free, expired or already the worker's. Same statements as on PostgreSQL, with
the time passed in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from mirrord.state._bloblocations import BlobLocation
from mirrord.state._leases import Lease
from mirrord.state._migrations import dt, ts, tx

# acquired: kept while the same worker holds the row without a lapse, else now.
_CLAIM = (
    "INSERT INTO {table} AS l ({keys}, worker, acquired, expires{columns}) "
    "VALUES ({marks}, ?, ?, ?{extra}) "
    "ON CONFLICT ({keys}) DO UPDATE SET worker = excluded.worker{updates}, "
    "acquired = CASE WHEN l.worker = excluded.worker AND l.expires > excluded.acquired "
    "THEN l.acquired ELSE excluded.acquired END, expires = excluded.expires "
    "WHERE l.worker = excluded.worker OR l.expires <= excluded.acquired RETURNING worker"
)


def _now() -> datetime:
    return datetime.now(UTC)


def _claim(
    conn: sqlite3.Connection,
    table: str,
    keys: dict[str, str],
    worker: str,
    ttl: float,
    extra: dict[str, str] | None = None,
) -> bool:
    """Upsert the claim; ``extra``: more columns, set by whoever wins it."""
    now, extra = _now(), extra or {}
    sql = _CLAIM.format(
        table=table,
        keys=", ".join(keys),
        marks=", ".join("?" * len(keys)),
        columns="".join(f", {c}" for c in extra),
        extra=", ?" * len(extra),
        updates="".join(f", {c} = excluded.{c}" for c in extra),
    )
    args = (*keys.values(), worker, ts(now), ts(now + timedelta(seconds=ttl)), *extra.values())
    with tx(conn):
        row = conn.execute(sql, args).fetchone()
    return row is not None


def _lease(row: sqlite3.Row, name: str, repository: str = "") -> Lease:
    return Lease(name, row["worker"], dt(row["acquired"]), dt(row["expires"]), repository)


# -- leases --------------------------------------------------------------------------


def claim_lease(conn: sqlite3.Connection, name: str, worker: str, ttl: float) -> bool:
    return _claim(conn, "leases", {"name": name}, worker, ttl)


def renew_lease(conn: sqlite3.Connection, name: str, worker: str, ttl: float) -> bool:
    until = ts(_now() + timedelta(seconds=ttl))
    with tx(conn):
        cursor = conn.execute(
            "UPDATE leases SET expires = ? WHERE name = ? AND worker = ?", (until, name, worker)
        )
    return cursor.rowcount > 0


def release_lease(conn: sqlite3.Connection, name: str, worker: str, hold: float) -> bool:
    with tx(conn):
        if hold > 0:
            cursor = conn.execute(
                "UPDATE leases SET expires = ? WHERE name = ? AND worker = ?",
                (ts(_now() + timedelta(seconds=hold)), name, worker),
            )
        else:
            cursor = conn.execute(
                "DELETE FROM leases WHERE name = ? AND worker = ?", (name, worker)
            )
    return cursor.rowcount > 0


def live_leases(conn: sqlite3.Connection, worker: str | None) -> list[Lease]:
    where, args = ("AND worker = ?", (worker,)) if worker is not None else ("", ())
    rows = conn.execute(
        f"SELECT * FROM leases WHERE expires > ? {where} ORDER BY name", (ts(_now()), *args)
    ).fetchall()
    return [_lease(r, r["name"]) for r in rows]


# -- blobs in flight -----------------------------------------------------------------


def claim_blob(
    conn: sqlite3.Connection, mirror: str, digest: str, worker: str, ttl: float, repository: str
) -> bool:
    keys = {"mirror": mirror, "digest": digest}
    return _claim(conn, "blob_claims", keys, worker, ttl, {"repository": repository})


def release_blob(conn: sqlite3.Connection, mirror: str, digest: str, worker: str) -> bool:
    with tx(conn):
        cursor = conn.execute(
            "DELETE FROM blob_claims WHERE mirror = ? AND digest = ? AND worker = ?",
            (mirror, digest, worker),
        )
    return cursor.rowcount > 0


def blob_claim(conn: sqlite3.Connection, mirror: str, digest: str) -> Lease | None:
    row = conn.execute(
        "SELECT * FROM blob_claims WHERE mirror = ? AND digest = ? AND expires > ?",
        (mirror, digest, ts(_now())),
    ).fetchone()
    return _lease(row, f"{mirror}@{digest}", row["repository"]) if row is not None else None


# -- where blobs landed --------------------------------------------------------------

_RECORD_LOCATION = (
    "INSERT INTO blob_locations (mirror, digest, repository, recorded) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (mirror, digest) DO UPDATE SET repository = excluded.repository, "
    "recorded = excluded.recorded"
)


def blob_location(conn: sqlite3.Connection, mirror: str, digest: str) -> BlobLocation | None:
    row = conn.execute(
        "SELECT * FROM blob_locations WHERE mirror = ? AND digest = ?", (mirror, digest)
    ).fetchone()
    if row is None:
        return None
    return BlobLocation(mirror, digest, row["repository"], dt(row["recorded"]))


def record_blob_locations(
    conn: sqlite3.Connection, mirror: str, pairs: Sequence[tuple[str, str]], now: datetime
) -> int:
    at = ts(now)
    with tx(conn):
        conn.executemany(_RECORD_LOCATION, [(mirror, d, r, at) for d, r in pairs])
    return len(pairs)


def forget_blob_location(
    conn: sqlite3.Connection, mirror: str, digest: str, repository: str
) -> bool:
    with tx(conn):
        cursor = conn.execute(
            "DELETE FROM blob_locations WHERE mirror = ? AND digest = ? AND repository = ?",
            (mirror, digest, repository),
        )
    return cursor.rowcount > 0

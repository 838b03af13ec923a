"""Leases, blob claims and blob locations on PostgreSQL: the functions of
:mod:`._sqlite_leases`.

Each claim is one ``INSERT … ON CONFLICT DO UPDATE … WHERE`` statement: of
workers claiming one row at once, the first to write it wins and the others,
having waited for its row lock, re-check the condition against what it wrote
and get nothing back. Times are the server's (``clock_timestamp()``), so every
worker measures expiry on one clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from mirrord.state import _rows as rows
from mirrord.state._bloblocations import BlobLocation
from mirrord.state._leases import Lease

Conn = psycopg.Connection[Any]

_NOW = "clock_timestamp()"
_LATER = "clock_timestamp() + make_interval(secs => %(ttl)s)"
# acquired: kept while the same worker holds the row without a lapse, else now; one
# reading of the clock for both (a hold of ttl is exactly ttl).
_CLAIM = (
    "INSERT INTO {table} AS l ({keys}, worker, acquired, expires{columns}) "
    "SELECT {marks}, %(worker)s, n.at, n.at + make_interval(secs => %(ttl)s){extra} "
    f"FROM (SELECT {_NOW} AS at) n "
    "ON CONFLICT ({keys}) DO UPDATE SET worker = EXCLUDED.worker{updates}, "
    "acquired = CASE WHEN l.worker = EXCLUDED.worker AND l.expires > EXCLUDED.acquired "
    "THEN l.acquired ELSE EXCLUDED.acquired END, expires = EXCLUDED.expires "
    "WHERE l.worker = EXCLUDED.worker OR l.expires <= EXCLUDED.acquired RETURNING worker"
)


def _claim(
    conn: Conn,
    table: str,
    keys: dict[str, str],
    worker: str,
    ttl: float,
    extra: dict[str, str] | None = None,
) -> bool:
    """Upsert the claim; ``extra``: more columns, set by whoever wins it."""
    extra = extra or {}
    sql = _CLAIM.format(
        table=table,
        keys=", ".join(keys),
        marks=", ".join(f"%({k})s" for k in keys),
        columns="".join(f", {c}" for c in extra),
        extra="".join(f", %({c})s" for c in extra),
        updates="".join(f", {c} = EXCLUDED.{c}" for c in extra),
    )
    args = {**keys, **extra, "worker": worker, "ttl": ttl}
    row = conn.execute(sql.encode(), args).fetchone()
    return row is not None


def _lease(row: Any, name: str, repository: str = "") -> Lease:
    acquired, expires = rows.moment(row["acquired"]), rows.moment(row["expires"])
    return Lease(name, row["worker"], acquired, expires, repository)


# -- leases --------------------------------------------------------------------------


def claim_lease(conn: Conn, name: str, worker: str, ttl: float) -> bool:
    return _claim(conn, "leases", {"name": name}, worker, ttl)


def renew_lease(conn: Conn, name: str, worker: str, ttl: float) -> bool:
    return (
        conn.execute(
            f"UPDATE leases SET expires = {_LATER} "
            "WHERE name = %(name)s AND worker = %(worker)s",
            {"ttl": ttl, "name": name, "worker": worker},
        ).rowcount
        > 0
    )


def release_lease(conn: Conn, name: str, worker: str, hold: float) -> bool:
    args = {"ttl": hold, "name": name, "worker": worker}
    if hold > 0:
        sql = f"UPDATE leases SET expires = {_LATER} WHERE name = %(name)s AND worker = %(worker)s"
    else:
        sql = "DELETE FROM leases WHERE name = %(name)s AND worker = %(worker)s"
    return conn.execute(sql.encode(), args).rowcount > 0


def live_leases(conn: Conn, worker: str | None) -> list[Lease]:
    where = "AND worker = %(worker)s" if worker is not None else ""
    found = conn.execute(
        f'SELECT * FROM leases WHERE expires > {_NOW} {where} ORDER BY name COLLATE "C"'.encode(),
        {"worker": worker},
    ).fetchall()
    return [_lease(r, r["name"]) for r in found]


# -- blobs in flight -----------------------------------------------------------------


def claim_blob(
    conn: Conn, mirror: str, digest: str, worker: str, ttl: float, repository: str
) -> bool:
    keys = {"mirror": mirror, "digest": digest}
    return _claim(conn, "blob_claims", keys, worker, ttl, {"repository": repository})


def release_blob(conn: Conn, mirror: str, digest: str, worker: str) -> bool:
    return (
        conn.execute(
            "DELETE FROM blob_claims WHERE mirror = %s AND digest = %s AND worker = %s",
            (mirror, digest, worker),
        ).rowcount
        > 0
    )


def blob_claim(conn: Conn, mirror: str, digest: str) -> Lease | None:
    row = conn.execute(
        f"SELECT * FROM blob_claims WHERE mirror = %s AND digest = %s AND expires > {_NOW}",
        (mirror, digest),
    ).fetchone()
    return _lease(row, f"{mirror}@{digest}", row["repository"]) if row is not None else None


# -- where blobs landed --------------------------------------------------------------

_RECORD_LOCATION = (
    "INSERT INTO blob_locations (mirror, digest, repository, recorded) "
    "VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (mirror, digest) DO UPDATE SET repository = EXCLUDED.repository, "
    "recorded = EXCLUDED.recorded"
)


def blob_location(conn: Conn, mirror: str, digest: str) -> BlobLocation | None:
    row = conn.execute(
        "SELECT * FROM blob_locations WHERE mirror = %s AND digest = %s", (mirror, digest)
    ).fetchone()
    if row is None:
        return None
    return BlobLocation(mirror, digest, row["repository"], rows.moment(row["recorded"]))


def record_blob_locations(
    conn: Conn, mirror: str, pairs: Sequence[tuple[str, str]], now: datetime
) -> int:
    """Rows are written in the order given (sorted by the caller: one lock order)."""
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(_RECORD_LOCATION, [(mirror, d, r, now) for d, r in pairs])
    return len(pairs)


def forget_blob_location(conn: Conn, mirror: str, digest: str, repository: str) -> bool:
    return (
        conn.execute(
            "DELETE FROM blob_locations WHERE mirror = %s AND digest = %s AND repository = %s",
            (mirror, digest, repository),
        ).rowcount
        > 0
    )

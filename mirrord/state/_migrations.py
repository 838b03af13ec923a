"""Versioned schema of the SQLite state database, and how values are stored in it.

The PostgreSQL schema (:mod:`._postgres_schema`) has the same versions, each the
same change expressed for PostgreSQL.

``PRAGMA user_version`` is the number of migrations applied. Each migration is a
list of statements applied in one ``BEGIN IMMEDIATE`` transaction together with
the new ``user_version``, so a crash leaves the previous version intact and two
processes opening a fresh database at once migrate it exactly once.

Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from mirrord.core.imagestream import utc
from mirrord.errors import StateError

_V1 = (
    """
    CREATE TABLE image_streams (
        id                INTEGER PRIMARY KEY,
        name              TEXT NOT NULL UNIQUE,
        source            TEXT NOT NULL,
        mirror_repository TEXT NOT NULL,
        scheduled         INTEGER NOT NULL CHECK (scheduled IN (0, 1)),
        import_mode       TEXT NOT NULL CHECK (import_mode IN ('Legacy', 'PreserveOriginal')),
        reference_policy  TEXT NOT NULL CHECK (reference_policy IN ('Source', 'Local')),
        created_by        TEXT NOT NULL CHECK (created_by IN ('config', 'import-image')),
        generation        INTEGER NOT NULL CHECK (generation >= 1),
        created           TEXT NOT NULL,
        updated           TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE tags (
        id         INTEGER PRIMARY KEY,
        stream_id  INTEGER NOT NULL REFERENCES image_streams (id) ON DELETE CASCADE,
        tag        TEXT NOT NULL,
        removed_at TEXT,
        UNIQUE (stream_id, tag)
    )
    """,
    # id order is history order: the newest event has the highest id.
    """
    CREATE TABLE tag_events (
        id                     INTEGER PRIMARY KEY AUTOINCREMENT,
        tag_id                 INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
        created                TEXT NOT NULL,
        docker_image_reference TEXT NOT NULL,
        image                  TEXT NOT NULL,
        generation             INTEGER NOT NULL
    )
    """,
    "CREATE INDEX tag_events_by_tag ON tag_events (tag_id, id)",
    "CREATE INDEX tag_events_by_image ON tag_events (image)",
    """
    CREATE TABLE tag_conditions (
        tag_id               INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
        type                 TEXT NOT NULL,
        status               TEXT NOT NULL,
        reason               TEXT NOT NULL,
        message              TEXT NOT NULL,
        generation           INTEGER NOT NULL,
        last_transition_time TEXT NOT NULL,
        PRIMARY KEY (tag_id, type)
    )
    """,
    """
    CREATE TABLE job_runs (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        kind     TEXT NOT NULL,
        stream   TEXT,
        status   TEXT NOT NULL CHECK (status IN ('Running', 'Succeeded', 'Failed')),
        started  TEXT NOT NULL,
        finished TEXT,
        counts   TEXT NOT NULL DEFAULT '{}',
        message  TEXT NOT NULL DEFAULT '',
        pid      INTEGER
    )
    """,
    "CREATE INDEX job_runs_by_kind ON job_runs (kind, status, id)",
    """
    CREATE TABLE outbox (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        receiver     TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created      TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt TEXT,
        last_error   TEXT,
        delivered    TEXT
    )
    """,
    "CREATE INDEX outbox_due ON outbox (next_attempt, id) WHERE delivered IS NULL",
    """
    CREATE TABLE pruner_conditions (
        name                 TEXT NOT NULL,
        type                 TEXT NOT NULL,
        status               TEXT NOT NULL,
        reason               TEXT NOT NULL,
        message              TEXT NOT NULL,
        last_transition_time TEXT NOT NULL,
        PRIMARY KEY (name, type)
    )
    """,
)

# The upstream digest an event's import was taken from (see TagEvent.source_digest);
# events recorded before it was kept get ''.
_V2 = ("ALTER TABLE tag_events ADD COLUMN source_digest TEXT NOT NULL DEFAULT ''",)

# When every selected tag of the stream last reached the mirror in one run (NULL: never).
_V3 = ("ALTER TABLE image_streams ADD COLUMN last_synced TEXT",)

# Whether an import-image stream imports its whole repository (--all).
_V4 = (
    "ALTER TABLE image_streams ADD COLUMN import_all INTEGER NOT NULL DEFAULT 0 "
    "CHECK (import_all IN (0, 1))",
)

# The platform a Legacy import picked out of the index named by source_digest ('' when
# the whole source manifest was copied): a changed ``platform`` setting re-imports.
_V5 = ("ALTER TABLE tag_events ADD COLUMN platform TEXT NOT NULL DEFAULT ''",)

# A failure of the stream as a whole (its tag list or credentials), for a stream that
# may have no tag to carry it: reason, message, since (NULL: none).
_V6 = (
    "ALTER TABLE image_streams ADD COLUMN failure_reason TEXT",
    "ALTER TABLE image_streams ADD COLUMN failure_message TEXT",
    "ALTER TABLE image_streams ADD COLUMN failure_since TEXT",
)

# Work sharing: which worker ran a job (and, on PostgreSQL, the advisory key its store
# held while alive); leases; blobs in flight; outbox events claimed by a delivering worker.
_V7 = (
    "ALTER TABLE job_runs ADD COLUMN worker TEXT",
    "ALTER TABLE job_runs ADD COLUMN presence INTEGER",
    """
    CREATE TABLE leases (
        name     TEXT PRIMARY KEY,
        worker   TEXT NOT NULL,
        acquired TEXT NOT NULL,
        expires  TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE blob_claims (
        mirror   TEXT NOT NULL,
        digest   TEXT NOT NULL,
        worker   TEXT NOT NULL,
        acquired TEXT NOT NULL,
        expires  TEXT NOT NULL,
        PRIMARY KEY (mirror, digest)
    )
    """,
    "ALTER TABLE outbox ADD COLUMN claimed_by TEXT",
    "ALTER TABLE outbox ADD COLUMN claim_expires TEXT",
)

# A job may be Queued: a trigger (POST /api/v1/streams/NAME/sync) was accepted and the run
# that takes the job over has not started. SQLite cannot change a CHECK: rebuild the table.
_V8 = (
    """
    CREATE TABLE job_runs_v8 (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        kind     TEXT NOT NULL,
        stream   TEXT,
        status   TEXT NOT NULL CHECK (status IN ('Queued', 'Running', 'Succeeded', 'Failed')),
        started  TEXT NOT NULL,
        finished TEXT,
        counts   TEXT NOT NULL DEFAULT '{}',
        message  TEXT NOT NULL DEFAULT '',
        pid      INTEGER,
        worker   TEXT,
        presence INTEGER
    )
    """,
    "INSERT INTO job_runs_v8 SELECT id, kind, stream, status, started, finished, counts, "
    "message, pid, worker, presence FROM job_runs",
    "DROP TABLE job_runs",
    "ALTER TABLE job_runs_v8 RENAME TO job_runs",
    "CREATE INDEX job_runs_by_kind ON job_runs (kind, status, id)",
)

# A blob claim names the repository its holder streams the blob into: a worker that
# waited for it mounts it from there.
_V9 = ("ALTER TABLE blob_claims ADD COLUMN repository TEXT NOT NULL DEFAULT ''",)

# The images of streams `mirrord delete` removed: the pruner still finds them in the
# mirror (one row per mirror repository and digest; created: the newest event's time).
_V10 = (
    """
    CREATE TABLE orphaned_images (
        mirror_repository TEXT NOT NULL,
        image             TEXT NOT NULL,
        stream            TEXT NOT NULL,
        created           TEXT NOT NULL,
        orphaned          TEXT NOT NULL,
        PRIMARY KEY (mirror_repository, image)
    )
    """,
)

# Where blobs landed in a mirror (the latest repository of each digest): a later run,
# or another worker, mounts them from there instead of pulling them again.
_V11 = (
    """
    CREATE TABLE blob_locations (
        mirror     TEXT NOT NULL,
        digest     TEXT NOT NULL,
        repository TEXT NOT NULL,
        recorded   TEXT NOT NULL,
        PRIMARY KEY (mirror, digest)
    )
    """,
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11,
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; the version found before.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise StateError(
            f"{where}: schema version {found} is newer than this mirrord supports "
            f"({SCHEMA_VERSION}); upgrade mirrord"
        )
    if found == SCHEMA_VERSION:
        return found
    with tx(conn):
        current = schema_version(conn)  # another process may have migrated meanwhile
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version:d}")
    return found


# -- how values are stored -----------------------------------------------------------


def ts(moment: datetime) -> str:
    """A UTC timestamp as stored: fixed width, microseconds, ``Z`` (sorts as text)."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def now_or(now: datetime | None) -> datetime:
    return utc(now) if now is not None else datetime.now(UTC)


@contextmanager
def tx(conn: sqlite3.Connection, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """One transaction: ``BEGIN IMMEDIATE`` for writes (no lock upgrade deadlock),
    a deferred ``BEGIN`` for a consistent read snapshot. Rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

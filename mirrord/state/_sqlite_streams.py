"""Image streams and their tags: plain functions over the store's connection.

Reads run in a deferred transaction (one snapshot); writes are one
``BEGIN IMMEDIATE`` transaction that applies a pure rule of
:mod:`mirrord.imagestream` to the stored tag.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from mirrord.core.imagestream import ImageStream, ImportResult, StreamSpec, TagEvent, TagStatus
from mirrord.errors import StateError
from mirrord.state import _rows as rows
from mirrord.state._migrations import ts, tx
from mirrord.state._records import OrphanedImage

STREAM_COLUMNS = (
    "id, name, source, mirror_repository, scheduled, import_mode, reference_policy, "
    "created_by, generation, created, last_synced, import_all, "
    "failure_reason, failure_message, failure_since"
)


# -- image streams -------------------------------------------------------------------


def read_streams(conn: sqlite3.Connection, name: str | None) -> list[ImageStream]:
    where, args = ("WHERE s.name = ?", (name,)) if name is not None else ("", ())
    with tx(conn, write=False):
        streams = conn.execute(
            f"SELECT {STREAM_COLUMNS} FROM image_streams s {where} ORDER BY name", args
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
    return rows.image_streams(streams, tags, events, conditions)


def upsert_stream(conn: sqlite3.Connection, spec: StreamSpec, now: datetime) -> None:
    with tx(conn):
        row = conn.execute(
            f"SELECT {STREAM_COLUMNS} FROM image_streams WHERE name = ?", (spec.name,)
        ).fetchone()
        values = (
            spec.source,
            spec.docker_image_repository,
            int(spec.scheduled),
            spec.import_mode,
            spec.reference_policy,
            spec.created_by,
            int(spec.import_all),
        )
        if row is None:
            conn.execute(
                "INSERT INTO image_streams (source, mirror_repository, scheduled, "
                "import_mode, reference_policy, created_by, import_all, name, generation, "
                "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (*values, spec.name, ts(now), ts(now)),
            )
            return
        bump = 0 if rows.spec(row).same_spec(spec) else 1
        conn.execute(
            "UPDATE image_streams SET source = ?, mirror_repository = ?, scheduled = ?, "
            "import_mode = ?, reference_policy = ?, created_by = ?, import_all = ?, "
            "generation = generation + ?, updated = ? WHERE id = ?",
            (*values, bump, ts(now), row["id"]),
        )


def bump_generation(conn: sqlite3.Connection, name: str) -> int:
    with tx(conn):
        row = conn.execute(
            "UPDATE image_streams SET generation = generation + 1 WHERE name = ? "
            "RETURNING generation",
            (name,),
        ).fetchone()
    if row is None:
        raise StateError(f"unknown image stream {name!r}")
    return int(row[0])


def set_stream_failure(
    conn: sqlite3.Connection, name: str, reason: str | None, message: str, now: datetime
) -> None:
    """Set (``reason`` None: clear) the stream's failure; the same failure keeps its time."""
    with tx(conn):
        if reason is None:
            conn.execute(
                "UPDATE image_streams SET failure_reason = NULL, failure_message = NULL, "
                "failure_since = NULL WHERE name = ? AND failure_reason IS NOT NULL",
                (name,),
            )
            return
        conn.execute(
            "UPDATE image_streams SET failure_since = CASE WHEN failure_reason IS ? AND "
            "failure_message IS ? THEN failure_since ELSE ? END, failure_reason = ?, "
            "failure_message = ? WHERE name = ?",
            (reason, message, ts(now), reason, message, name),
        )


def mark_synced(conn: sqlite3.Connection, name: str, now: datetime) -> None:
    with tx(conn):
        conn.execute("UPDATE image_streams SET last_synced = ? WHERE name = ?", (ts(now), name))


# One row per (repository, digest): a digest in several tags keeps its newest event's time;
# a digest orphaned again (a stream recreated and deleted) keeps the newer one.
_ORPHAN = (
    "INSERT INTO orphaned_images (mirror_repository, image, stream, created, orphaned) "
    "SELECT s.mirror_repository, e.image, s.name, max(e.created), ? FROM tag_events e "
    "JOIN tags t ON t.id = e.tag_id JOIN image_streams s ON s.id = t.stream_id "
    "WHERE s.name = ? GROUP BY s.mirror_repository, e.image, s.name "
    "ON CONFLICT (mirror_repository, image) DO UPDATE SET stream = excluded.stream, "
    "created = max(created, excluded.created), orphaned = excluded.orphaned"
)


def delete_stream(conn: sqlite3.Connection, name: str, now: datetime) -> bool:
    with tx(conn):
        conn.execute(_ORPHAN, (ts(now), name))
        cursor = conn.execute("DELETE FROM image_streams WHERE name = ?", (name,))
    return cursor.rowcount > 0


def orphaned_images(conn: sqlite3.Connection) -> list[OrphanedImage]:
    with tx(conn, write=False):
        found = conn.execute(
            "SELECT * FROM orphaned_images ORDER BY mirror_repository, image"
        ).fetchall()
    return [rows.orphaned_image(row) for row in found]


def forget_orphaned_images(conn: sqlite3.Connection, images: Sequence[tuple[str, str]]) -> int:
    with tx(conn):
        return sum(
            conn.execute(
                "DELETE FROM orphaned_images WHERE mirror_repository = ? AND image = ?", pair
            ).rowcount
            for pair in images
        )


# -- tags ----------------------------------------------------------------------------


def _stream_row(conn: sqlite3.Connection, stream: str) -> sqlite3.Row:
    row = conn.execute(
        "SELECT id, generation FROM image_streams WHERE name = ?", (stream,)
    ).fetchone()
    if row is None:
        raise StateError(f"unknown image stream {stream!r}")
    return row


def _tag_status(conn: sqlite3.Connection, stream_id: int, tag: str) -> tuple[int, TagStatus]:
    """The tag's row id and status; (0, empty status) when it has no row yet."""
    row = conn.execute(
        "SELECT id, tag, removed_at FROM tags WHERE stream_id = ? AND tag = ?", (stream_id, tag)
    ).fetchone()
    if row is None:
        return 0, TagStatus(tag=tag)
    events = conn.execute(
        "SELECT * FROM tag_events WHERE tag_id = ? ORDER BY id DESC", (row["id"],)
    ).fetchall()
    conditions = conn.execute(
        "SELECT * FROM tag_conditions WHERE tag_id = ? ORDER BY type", (row["id"],)
    ).fetchall()
    return row["id"], rows.tag_status(row, events, conditions)


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
    if not added and new.items:
        # items[0] may have a new generation or source (imagestream.record_import).
        current = new.items[0]
        conn.execute(
            "UPDATE tag_events SET generation = ?, source_digest = ?, platform = ? WHERE id = "
            "(SELECT max(id) FROM tag_events WHERE tag_id = ?)",
            (current.generation, current.source_digest, current.platform, tag_id),
        )
    for event in reversed(new.items[:added]):  # oldest first: ids follow history
        conn.execute(
            "INSERT INTO tag_events (tag_id, created, docker_image_reference, image, "
            "generation, source_digest, platform) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                tag_id,
                ts(event.created),
                event.docker_image_reference,
                event.image,
                event.generation,
                event.source_digest,
                event.platform,
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


def mutate_tag(
    conn: sqlite3.Connection,
    stream: str,
    tag: str,
    rule: Callable[[TagStatus, int], ImportResult],
    create: bool,
) -> ImportResult | None:
    """Apply a pure rule to a tag in one transaction (None: no such tag, not created)."""
    with tx(conn):
        srow = _stream_row(conn, stream)
        tag_id, status = _tag_status(conn, srow["id"], tag)
        if tag_id == 0 and not create:
            return None
        result = rule(status, srow["generation"])
        if result.status != status or tag_id == 0:
            _save_tag(conn, srow["id"], tag_id, result.status, int(result.changed))
    return result


def get_tag(conn: sqlite3.Connection, stream: str, tag: str) -> TagStatus | None:
    with tx(conn, write=False):
        row = conn.execute("SELECT id FROM image_streams WHERE name = ?", (stream,)).fetchone()
        if row is None:
            return None
        tag_id, status = _tag_status(conn, row["id"], tag)
    return status if tag_id else None


def delete_tag_events(
    conn: sqlite3.Connection, stream: str, tag: str, events: Sequence[TagEvent]
) -> int:
    deleted = 0
    with tx(conn):
        srow = _stream_row(conn, stream)
        for event in events:
            deleted += conn.execute(
                "DELETE FROM tag_events WHERE tag_id = (SELECT id FROM tags WHERE "
                "stream_id = ? AND tag = ?) AND created = ? AND docker_image_reference = ? "
                "AND image = ? AND generation = ? AND source_digest = ?",
                (
                    srow["id"],
                    tag,
                    ts(event.created),
                    event.docker_image_reference,
                    event.image,
                    event.generation,
                    event.source_digest,
                ),
            ).rowcount
    return deleted

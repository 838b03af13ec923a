"""Image streams and their tags on PostgreSQL: the functions of :mod:`._sqlite_streams`,
with the same names, signatures and results.

Where SQLite serialises every writer (``BEGIN IMMEDIATE``), PostgreSQL runs them
side by side at READ COMMITTED, so each write here locks what it reads before
deciding: a tag's rule runs holding the stream's row (``FOR UPDATE``), so two
workers recording tags of one stream take turns and neither loses the other's
event. Reads run in one REPEATABLE READ snapshot. Text is ordered ``COLLATE "C"``
(bytewise, as SQLite orders it) whatever the database's locale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg

from mirrord.core.imagestream import ImageStream, ImportResult, StreamSpec, TagEvent, TagStatus
from mirrord.errors import StateError
from mirrord.state import _rows as rows
from mirrord.state._postgres_conn import returned
from mirrord.state._records import OrphanedImage
from mirrord.state._sqlite_streams import STREAM_COLUMNS

Conn = psycopg.Connection[Any]


@contextmanager
def snapshot(conn: Conn) -> Iterator[Conn]:
    """A read-only transaction that sees one committed state throughout."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn


# -- image streams -------------------------------------------------------------------


def read_streams(conn: Conn, name: str | None) -> list[ImageStream]:
    where, args = ("WHERE s.name = %s", (name,)) if name is not None else ("", ())
    with snapshot(conn):
        streams = conn.execute(
            f"SELECT {STREAM_COLUMNS} FROM image_streams s {where} ORDER BY name COLLATE \"C\"",
            args,
        ).fetchall()
        tags = conn.execute(
            "SELECT t.id, t.stream_id, t.tag, t.removed_at FROM tags t "
            f'JOIN image_streams s ON s.id = t.stream_id {where} ORDER BY t.tag COLLATE "C"',
            args,
        ).fetchall()
        events = conn.execute(
            "SELECT e.* FROM tag_events e JOIN tags t ON t.id = e.tag_id "
            f"JOIN image_streams s ON s.id = t.stream_id {where} ORDER BY e.id DESC",
            args,
        ).fetchall()
        conditions = conn.execute(
            "SELECT c.* FROM tag_conditions c JOIN tags t ON t.id = c.tag_id "
            f'JOIN image_streams s ON s.id = t.stream_id {where} ORDER BY c.type COLLATE "C"',
            args,
        ).fetchall()
    return rows.image_streams(streams, tags, events, conditions)


def _locked_stream(conn: Conn, name: str) -> Any:
    return conn.execute(
        f"SELECT {STREAM_COLUMNS} FROM image_streams WHERE name = %s FOR UPDATE", (name,)
    ).fetchone()


def upsert_stream(conn: Conn, spec: StreamSpec, now: datetime) -> None:
    values = (
        spec.source,
        spec.docker_image_repository,
        spec.scheduled,
        spec.import_mode,
        spec.reference_policy,
        spec.created_by,
        spec.import_all,
    )
    with conn.transaction():
        row = _locked_stream(conn, spec.name)
        if row is None:
            created = conn.execute(
                "INSERT INTO image_streams (source, mirror_repository, scheduled, "
                "import_mode, reference_policy, created_by, import_all, name, generation, "
                "created, updated) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
                (*values, spec.name, now, now),
            ).fetchone()
            if created is not None:
                return
            row = _locked_stream(conn, spec.name)  # another worker created it just now
            if row is None:
                raise StateError(f"image stream {spec.name!r} vanished while being written")
        bump = 0 if rows.spec(row).same_spec(spec) else 1
        conn.execute(
            "UPDATE image_streams SET source = %s, mirror_repository = %s, scheduled = %s, "
            "import_mode = %s, reference_policy = %s, created_by = %s, import_all = %s, "
            "generation = generation + %s, updated = %s WHERE id = %s",
            (*values, bump, now, row["id"]),
        )


def bump_generation(conn: Conn, name: str) -> int:
    row = conn.execute(
        "UPDATE image_streams SET generation = generation + 1 WHERE name = %s "
        "RETURNING generation",
        (name,),
    ).fetchone()
    if row is None:
        raise StateError(f"unknown image stream {name!r}")
    return int(row["generation"])


def set_stream_failure(
    conn: Conn, name: str, reason: str | None, message: str, now: datetime
) -> None:
    """Set (``reason`` None: clear) the stream's failure; the same failure keeps its time."""
    if reason is None:
        conn.execute(
            "UPDATE image_streams SET failure_reason = NULL, failure_message = NULL, "
            "failure_since = NULL WHERE name = %s AND failure_reason IS NOT NULL",
            (name,),
        )
        return
    conn.execute(
        "UPDATE image_streams SET failure_since = CASE WHEN "
        "failure_reason IS NOT DISTINCT FROM %(reason)s AND "
        "failure_message IS NOT DISTINCT FROM %(message)s THEN failure_since ELSE %(now)s END, "
        "failure_reason = %(reason)s, failure_message = %(message)s WHERE name = %(name)s",
        {"reason": reason, "message": message, "now": now, "name": name},
    )


def mark_synced(conn: Conn, name: str, now: datetime) -> None:
    conn.execute("UPDATE image_streams SET last_synced = %s WHERE name = %s", (now, name))


_ORPHAN = (
    "INSERT INTO orphaned_images (mirror_repository, image, stream, created, orphaned) "
    "SELECT s.mirror_repository, e.image, s.name, max(e.created), %s FROM tag_events e "
    "JOIN tags t ON t.id = e.tag_id JOIN image_streams s ON s.id = t.stream_id "
    "WHERE s.name = %s GROUP BY s.mirror_repository, e.image, s.name "
    "ON CONFLICT (mirror_repository, image) DO UPDATE SET stream = EXCLUDED.stream, "
    "created = GREATEST(orphaned_images.created, EXCLUDED.created), "
    "orphaned = EXCLUDED.orphaned"
)


def delete_stream(conn: Conn, name: str, now: datetime) -> bool:
    """The stream's images become orphans in the same transaction, its row locked first
    (a worker recording a tag of it waits, then finds the stream gone)."""
    with conn.transaction():
        if _locked_stream(conn, name) is None:
            return False
        conn.execute(_ORPHAN, (now, name))
        return conn.execute("DELETE FROM image_streams WHERE name = %s", (name,)).rowcount > 0


def orphaned_images(conn: Conn) -> list[OrphanedImage]:
    with snapshot(conn):
        found = conn.execute(
            'SELECT * FROM orphaned_images ORDER BY mirror_repository COLLATE "C", '
            'image COLLATE "C"'
        ).fetchall()
    return [rows.orphaned_image(row) for row in found]


def forget_orphaned_images(conn: Conn, images: Sequence[tuple[str, str]]) -> int:
    with conn.transaction():
        return sum(
            conn.execute(
                "DELETE FROM orphaned_images WHERE mirror_repository = %s AND image = %s", pair
            ).rowcount
            for pair in images
        )


# -- tags ----------------------------------------------------------------------------


def _tag_status(conn: Conn, stream_id: int, tag: str) -> tuple[int, TagStatus]:
    """The tag's row id and status; (0, empty status) when it has no row yet."""
    row = conn.execute(
        "SELECT id, tag, removed_at FROM tags WHERE stream_id = %s AND tag = %s",
        (stream_id, tag),
    ).fetchone()
    if row is None:
        return 0, TagStatus(tag=tag)
    events = conn.execute(
        "SELECT * FROM tag_events WHERE tag_id = %s ORDER BY id DESC", (row["id"],)
    ).fetchall()
    conditions = conn.execute(
        'SELECT * FROM tag_conditions WHERE tag_id = %s ORDER BY type COLLATE "C"', (row["id"],)
    ).fetchall()
    return int(row["id"]), rows.tag_status(row, events, conditions)


def _save_tag(conn: Conn, stream_id: int, tag_id: int, new: TagStatus, added: int) -> None:
    """Write ``new``: its ``added`` newest events, its conditions, its removal mark."""
    if tag_id == 0:
        inserted = conn.execute(
            "INSERT INTO tags (stream_id, tag, removed_at) VALUES (%s, %s, %s) RETURNING id",
            (stream_id, new.tag, new.removed_at),
        ).fetchone()
        tag_id = returned(inserted)["id"]
    else:
        conn.execute("UPDATE tags SET removed_at = %s WHERE id = %s", (new.removed_at, tag_id))
    if not added and new.items:
        # items[0] may have a new generation or source (imagestream.record_import).
        current = new.items[0]
        conn.execute(
            "UPDATE tag_events SET generation = %s, source_digest = %s, platform = %s "
            "WHERE id = (SELECT max(id) FROM tag_events WHERE tag_id = %s)",
            (current.generation, current.source_digest, current.platform, tag_id),
        )
    with conn.cursor() as cursor:
        cursor.executemany(  # oldest first: ids follow history
            "INSERT INTO tag_events (tag_id, created, docker_image_reference, image, "
            "generation, source_digest, platform) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (tag_id, e.created, e.docker_image_reference, e.image, e.generation,
                 e.source_digest, e.platform)
                for e in reversed(new.items[:added])
            ],
        )
        conn.execute("DELETE FROM tag_conditions WHERE tag_id = %s", (tag_id,))
        cursor.executemany(
            "INSERT INTO tag_conditions (tag_id, type, status, reason, message, generation, "
            "last_transition_time) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (tag_id, c.type, c.status, c.reason, c.message, c.generation,
                 c.last_transition_time)
                for c in new.conditions
            ],
        )


def mutate_tag(
    conn: Conn,
    stream: str,
    tag: str,
    rule: Callable[[TagStatus, int], ImportResult],
    create: bool,
) -> ImportResult | None:
    """Apply a pure rule to a tag in one transaction (None: no such tag, not created),
    holding the stream's row so writers of its tags take turns."""
    with conn.transaction():
        srow = conn.execute(
            "SELECT id, generation FROM image_streams WHERE name = %s FOR UPDATE", (stream,)
        ).fetchone()
        if srow is None:
            raise StateError(f"unknown image stream {stream!r}")
        tag_id, status = _tag_status(conn, srow["id"], tag)
        if tag_id == 0 and not create:
            return None
        result = rule(status, srow["generation"])
        if result.status != status or tag_id == 0:
            _save_tag(conn, srow["id"], tag_id, result.status, int(result.changed))
    return result


def get_tag(conn: Conn, stream: str, tag: str) -> TagStatus | None:
    with snapshot(conn):
        row = conn.execute("SELECT id FROM image_streams WHERE name = %s", (stream,)).fetchone()
        if row is None:
            return None
        tag_id, status = _tag_status(conn, row["id"], tag)
    return status if tag_id else None


def delete_tag_events(conn: Conn, stream: str, tag: str, events: Sequence[TagEvent]) -> int:
    deleted = 0
    with conn.transaction():
        srow = conn.execute(
            "SELECT id FROM image_streams WHERE name = %s FOR UPDATE", (stream,)
        ).fetchone()
        if srow is None:
            raise StateError(f"unknown image stream {stream!r}")
        for event in events:
            deleted += conn.execute(
                "DELETE FROM tag_events WHERE tag_id = (SELECT id FROM tags WHERE "
                "stream_id = %s AND tag = %s) AND created = %s AND docker_image_reference = %s "
                "AND image = %s AND generation = %s AND source_digest = %s",
                (
                    srow["id"],
                    tag,
                    event.created,
                    event.docker_image_reference,
                    event.image,
                    event.generation,
                    event.source_digest,
                ),
            ).rowcount
    return deleted

"""Rows into values, the same for both backends.

A row is anything indexable by column name (``sqlite3.Row``, psycopg's dict
rows). A timestamp is text on SQLite and a ``datetime`` on PostgreSQL, JSON is
text or already decoded; :func:`moment` and :func:`_json` take either, so one
converter serves both and the backends cannot drift apart in what they return.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from mirrord.core.imagestream import (
    IMPORT_SUCCESS,
    Condition,
    ImageStream,
    StreamSpec,
    TagEvent,
    TagStatus,
)
from mirrord.state._records import (
    JobRun,
    OrphanedImage,
    OutboxEvent,
    PrunerCondition,
    ReceiverStatus,
)


class Row(Protocol):
    """A row by column name: ``sqlite3.Row``, or psycopg's dict row."""

    def __getitem__(self, key: str, /) -> Any: ...


def moment(value: str | datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(value).astimezone(UTC)


def maybe_moment(value: str | datetime | None) -> datetime | None:
    return moment(value) if value else None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


# -- image streams and tags ----------------------------------------------------------


def event(row: Row) -> TagEvent:
    return TagEvent(
        created=moment(row["created"]),
        docker_image_reference=row["docker_image_reference"],
        image=row["image"],
        generation=row["generation"],
        source_digest=row["source_digest"],
        platform=row["platform"],
    )


def condition(row: Row) -> Condition:
    return Condition(
        type=row["type"],
        status=row["status"],
        reason=row["reason"],
        message=row["message"],
        generation=row["generation"],
        last_transition_time=moment(row["last_transition_time"]),
    )


def stream_failure(row: Row) -> Condition | None:
    if row["failure_reason"] is None:
        return None
    return Condition(
        type=IMPORT_SUCCESS,
        status="False",
        reason=row["failure_reason"],
        message=row["failure_message"] or "",
        generation=row["generation"],
        last_transition_time=moment(row["failure_since"]),
    )


def spec(row: Row) -> StreamSpec:
    return StreamSpec(
        name=row["name"],
        source=row["source"],
        docker_image_repository=row["mirror_repository"],
        scheduled=bool(row["scheduled"]),
        import_mode=row["import_mode"],
        reference_policy=row["reference_policy"],
        created_by=row["created_by"],
        import_all=bool(row["import_all"]),
    )


def tag_status(row: Row, events: Iterable[Row], conditions: Iterable[Row]) -> TagStatus:
    """A tag from its row, its events (newest first) and its conditions (by type)."""
    return TagStatus(
        tag=row["tag"],
        items=tuple(event(e) for e in events),
        conditions=tuple(condition(c) for c in conditions),
        removed_at=maybe_moment(row["removed_at"]),
    )


def image_streams(
    streams: Iterable[Row], tags: Iterable[Row], events: Iterable[Row], conditions: Iterable[Row]
) -> list[ImageStream]:
    """Streams (in order) with their tags, from the rows of one snapshot."""
    items: dict[int, list[Row]] = {}
    for row in events:
        items.setdefault(row["tag_id"], []).append(row)
    conds: dict[int, list[Row]] = {}
    for row in conditions:
        conds.setdefault(row["tag_id"], []).append(row)
    by_stream: dict[int, list[TagStatus]] = {}
    for row in tags:
        status = tag_status(row, items.get(row["id"], ()), conds.get(row["id"], ()))
        by_stream.setdefault(row["stream_id"], []).append(status)
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
            created=moment(row["created"]),
            created_by=row["created_by"],
            import_all=bool(row["import_all"]),
            last_synced=maybe_moment(row["last_synced"]),
            failure=stream_failure(row),
        )
        for row in streams
    ]


# -- jobs, the outbox, pruner conditions ---------------------------------------------


def job(row: Row) -> JobRun:
    return JobRun(
        id=row["id"],
        kind=row["kind"],
        stream=row["stream"],
        status=row["status"],
        started=moment(row["started"]),
        finished=maybe_moment(row["finished"]),
        counts=_json(row["counts"]),
        message=row["message"],
        pid=row["pid"],
        worker=row["worker"],
    )


def outbox(row: Row) -> OutboxEvent:
    return OutboxEvent(
        id=row["id"],
        receiver=row["receiver"],
        payload=_json(row["payload"]),
        created=moment(row["created"]),
        attempts=row["attempts"],
        next_attempt=maybe_moment(row["next_attempt"]),
        last_error=row["last_error"],
        delivered=maybe_moment(row["delivered"]),
        claimed_by=row["claimed_by"],
        claim_expires=maybe_moment(row["claim_expires"]),
    )


def receiver_status(row: Row) -> ReceiverStatus:
    return ReceiverStatus(
        receiver=row["receiver"],
        pending=row["pending"],
        retrying=row["retrying"],
        given_up=row["given_up"],
        delivered=row["delivered"],
        last_error=row["last_error"],
        last_delivered=maybe_moment(row["last_delivered"]),
    )


def pruner_condition(row: Row) -> PrunerCondition:
    return PrunerCondition(
        type=row["type"],
        status=row["status"],
        reason=row["reason"],
        message=row["message"],
        last_transition_time=moment(row["last_transition_time"]),
    )


def orphaned_image(row: Row) -> OrphanedImage:
    return OrphanedImage(
        stream=row["stream"],
        docker_image_repository=row["mirror_repository"],
        image=row["image"],
        created=moment(row["created"]),
        orphaned=moment(row["orphaned"]),
    )

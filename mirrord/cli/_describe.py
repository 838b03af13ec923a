"""``mirrord describe STREAM`` and ``mirrord streams``: the stored image streams, read-only.

The text follows ``oc describe is`` (tags ``latest`` first, then newest versions;
``*`` marks ``items[0]``; ages like "3 minutes ago"; ``! error: Import failed``
for an ``ImportSuccess=False`` condition). ``-o json|yaml`` prints OpenShift's
objects (:func:`mirrord.imagestream.to_openshift`), an ``ImageStreamList`` for
``streams``. Readers only read the SQLite store (WAL): they work while a sync
holds the run lock, and never create a database that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from mirrord.config import Config
from mirrord.core.imagestream import IMPORT_SUCCESS, ImageStream, TagStatus, to_openshift
from mirrord.core.selection import prioritize_tags
from mirrord.core.units import ago
from mirrord.state import open_state, state_exists


async def read_streams(config: Config, name: str | None = None) -> list[ImageStream]:
    """Every stored stream (or the one called ``name``); [] without a database."""
    if not state_exists(config):
        return []
    async with await anyio.to_thread.run_sync(open_state, config) as store:
        if name is None:
            return await store.list_streams()
        found = await store.get_stream(name)
        return [found] if found is not None else []


# -- per stream ----------------------------------------------------------------------


def failing_tags(stream: ImageStream) -> list[str]:
    """Tags whose last import failed (``ImportSuccess=False``)."""
    return [
        t.tag
        for t in stream.tags
        if not t.removed
        and any(c.type == IMPORT_SUCCESS and c.status == "False" for c in t.conditions)
    ]


def last_updated(stream: ImageStream) -> datetime | None:
    """When a tag last moved (the newest ``items[0]``); None before any import."""
    moments = [t.items[0].created for t in stream.tags if t.items]
    return max(moments) if moments else None


def _ordered(stream: ImageStream) -> list[TagStatus]:
    by_name = {t.tag: t for t in stream.tags}
    return [by_name[name] for name in prioritize_tags(by_name)]


def describe_text(stream: ImageStream, now: datetime | None = None) -> str:
    """``oc describe is``-style text of one stream."""
    now = now or datetime.now(UTC)
    images = {event.image for t in stream.tags for event in t.items}
    visible = [t for t in stream.tags if not t.removed]
    fields = [
        ("Name", stream.name),
        ("Created", ago(stream.created, now)),
        ("Created By", stream.created_by),
        ("Image Repository", stream.docker_image_repository),
        ("Source", stream.source),
        ("Generation", str(stream.generation)),
        ("Last Synced", ago(stream.last_synced, now) if stream.last_synced else "never"),
        ("Scheduled", "true" if stream.scheduled else "false"),
        ("Import Mode", stream.import_mode),
        ("Reference Policy", stream.reference_policy),
        ("Unique Images", str(len(images))),
        ("Tags", str(len(visible))),
    ]
    lines = [f"{label + ':':<19}{value}" for label, value in fields]
    if stream.failure is not None:
        failure = stream.failure
        lines += ["", f"! error: Import failed ({failure.reason}): {failure.message}"]
        lines.append(f"    {ago(failure.last_transition_time, now)}")
    for status in _ordered(stream):
        lines.append("")
        lines.extend(_tag_lines(stream, status, now))
    return "\n".join(lines) + "\n"


def _tag_lines(stream: ImageStream, status: TagStatus, now: datetime) -> list[str]:
    origin = f"{stream.source}:{status.tag}"
    lines = [status.tag, f"  tagged from {origin}"]
    if stream.scheduled:
        lines.append(f"    updates automatically from registry {origin}")
    if stream.reference_policy == "Local":
        lines.append("    prefer registry pullthrough when referencing this tag")
    if status.removed_at is not None:
        lines.append(f"    removed upstream {ago(status.removed_at, now)}; deleted from the mirror")
    lines.append("")
    for index, event in enumerate(status.items):
        marker = "  * " if index == 0 else "    "
        lines.append(f"{marker}{event.docker_image_reference}")
        if not event.docker_image_reference.endswith(event.image):
            lines.append(f"      image {event.image}")
        lines.append(f"      {ago(event.created, now)}")
    for condition in status.conditions:
        if condition.status == "False":
            lines.append(f"  ! error: Import failed ({condition.reason}): {condition.message}")
            lines.append(f"      {ago(condition.last_transition_time, now)}")
    if not status.items and not status.conditions:
        lines.append("    (not imported yet)")
    return lines


# -- the list ----------------------------------------------------------------------


def stream_row(stream: ImageStream, now: datetime) -> dict[str, Any]:
    updated = last_updated(stream)
    return {
        "name": stream.name,
        "imageRepository": stream.docker_image_repository,
        "tags": sum(1 for t in stream.tags if not t.removed),
        "updated": ago(updated, now) if updated else "",
        # a stream whose tags could not even be listed, with none recorded: "stream"
        "failing": len(failing_tags(stream)) or ("stream" if stream.failure else 0),
    }


def streams_table(streams: Sequence[ImageStream], now: datetime | None = None) -> str:
    """``NAME  IMAGE REPOSITORY  TAGS  UPDATED  FAILING``, one stream a line."""
    now = now or datetime.now(UTC)
    header = ("NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED", "FAILING")
    rows = [header] + [
        (r["name"], r["imageRepository"], str(r["tags"]), r["updated"], str(r["failing"]))
        for r in (stream_row(s, now) for s in streams)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def stream_list(streams: Sequence[ImageStream]) -> dict[str, Any]:
    """An ``image.openshift.io/v1`` ImageStreamList."""
    return {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStreamList",
        "metadata": {},
        "items": [to_openshift(s) for s in streams],
    }

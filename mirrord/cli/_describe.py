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

from mirrord.config import Config, StreamConfig
from mirrord.core.imagestream import (
    IMPORT_SUCCESS,
    TAG_ALIAS,
    TAG_SCHEDULED,
    ImageStream,
    TagStatus,
    tag_origin,
    tag_policy,
)
from mirrord.core.openshift import STREAM_ANNOTATION, object_names, to_openshift
from mirrord.core.selection import cosign_tags, is_cosign_tag, prioritize_tags
from mirrord.core.units import ago
from mirrord.state import JobRun, open_state, state_exists

STATUS_ANNOTATION = "mirrord.io/status"
RECENT_RUNS = 5  # the sync jobs ``describe`` lists


async def read_streams(config: Config, name: str | None = None) -> list[ImageStream]:
    """Every stored stream (or the one called ``name``); [] without a database."""
    if not state_exists(config):
        return []
    async with await anyio.to_thread.run_sync(open_state, config) as store:
        if name is None:
            return await store.list_streams()
        found = await store.get_stream(name)
        return [found] if found is not None else []


async def read_runs(config: Config, name: str, limit: int = RECENT_RUNS) -> list[JobRun]:
    """The newest sync jobs that ran stream ``name`` (alone, or among others: a job of
    several streams has none recorded), newest first; [] without a database."""
    if not state_exists(config):
        return []
    async with await anyio.to_thread.run_sync(open_state, config) as store:
        jobs = await store.list_jobs(limit=10 * limit, kind="sync")
    return [j for j in jobs if j.stream in (name, None)][:limit]


def runs_lines(jobs: Sequence[JobRun], now: datetime) -> list[str]:
    """``Recent Runs:`` and a line per job: id, status, when it started, its worker."""
    if not jobs:
        return []
    lines = ["", "Recent Runs:"]
    for job in jobs:
        worker = job.worker or "unknown"
        several = "" if job.stream else "  (several streams)"
        when = ago(job.started, now)
        lines.append(f"  #{job.id:<5} {job.status:<10} {when:<18} worker {worker}{several}")
    return lines


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
    """The image tags, ``latest`` first then newest versions; cosign tags are not among
    them (they travel with their image, :func:`signature_tags`)."""
    by_name = {t.tag: t for t in stream.tags if not is_cosign_tag(t.tag)}
    return [by_name[name] for name in prioritize_tags(by_name)]


def signature_tags(stream: ImageStream) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Cosign ``sha256-<hex>.sig/.att/.sbom`` tags by the image they belong to
    (``{digest: tags}``), and those whose image no tag of the stream points at."""
    cosign = [t.tag for t in stream.tags if is_cosign_tag(t.tag) and not t.removed]
    images = {t.current.image for t in stream.tags if t.current and not is_cosign_tag(t.tag)}
    owned = {digest: cosign_tags(digest, cosign) for digest in images}
    claimed = {tag for tags in owned.values() for tag in tags}
    return {d: t for d, t in owned.items() if t}, [t for t in cosign if t not in claimed]


def image_tag_count(stream: ImageStream) -> int:
    return sum(1 for t in stream.tags if not t.removed and not is_cosign_tag(t.tag))


def describe_text(
    stream: ImageStream, now: datetime | None = None, runs: Sequence[JobRun] = ()
) -> str:
    """``oc describe is``-style text of one stream; ``runs``: its recent sync jobs."""
    now = now or datetime.now(UTC)
    images = {event.image for t in stream.tags if not is_cosign_tag(t.tag) for event in t.items}
    signatures, orphans = signature_tags(stream)
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
        ("Tags", str(image_tag_count(stream))),
    ]
    lines = [f"{label + ':':<19}{value}" for label, value in fields]
    if stream.failure is not None:
        failure = stream.failure
        lines += ["", f"! error: Import failed ({failure.reason}): {failure.message}"]
        lines.append(f"    {ago(failure.last_transition_time, now)}")
    for status in _ordered(stream):
        lines.append("")
        lines.extend(_tag_lines(stream, status, now, signatures))
    if orphans:
        lines += ["", "Signatures of images no tag points at:"]
        lines += [f"  {tag}" for tag in orphans]
    lines += runs_lines(runs, now)
    return "\n".join(lines) + "\n"


def tag_text(stream: ImageStream, status: TagStatus, now: datetime | None = None) -> str:
    """One tag's history, like ``oc describe istag``-ish text of ``describe STREAM:TAG``."""
    now = now or datetime.now(UTC)
    signatures, _ = signature_tags(stream)
    head = [f"{'Name:':<19}{stream.name}:{status.tag}", f"{'Stream:':<19}{stream.name}", ""]
    return "\n".join(head + _tag_lines(stream, status, now, signatures)) + "\n"


def _tag_lines(
    stream: ImageStream,
    status: TagStatus,
    now: datetime,
    signatures: dict[str, tuple[str, ...]],
) -> list[str]:
    tagged = tag_origin(status)
    origin = tagged.partition(" ")[2] if tagged else f"{stream.source}:{status.tag}"
    lines = [status.tag, f"  tagged from {origin}"]
    policy = tag_policy(status)
    if (stream.scheduled and tagged is None) or policy == TAG_SCHEDULED:
        lines.append(f"    updates automatically from registry {origin}")
    elif policy == TAG_ALIAS:
        lines.append(f"    tracks {origin}: moves with it on every run of {stream.name}")
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
        if index == 0 and (signed := signatures.get(event.image)):
            lines.append(f"      signatures: {', '.join(signed)}")
    for condition in status.conditions:
        if condition.status == "False":
            lines.append(f"  ! error: Import failed ({condition.reason}): {condition.message}")
            lines.append(f"      {ago(condition.last_transition_time, now)}")
    if not status.items and not status.conditions:
        lines.append("    (not imported yet)")
    return lines


# -- the list ----------------------------------------------------------------------


NOT_SYNCED = "not synced yet"


def stream_status(stream: ImageStream) -> str:
    """The STATUS column: failing, synced, partly synced (some tags imported, no
    complete run yet) or not synced yet."""
    if failing_tags(stream) or stream.failure is not None:
        return "failing"
    if stream.last_synced is not None:
        return "synced"
    return "partly synced" if any(t.items for t in stream.tags) else NOT_SYNCED


def stream_row(stream: ImageStream, now: datetime) -> dict[str, Any]:
    updated = last_updated(stream)
    return {
        "name": stream.name,
        "imageRepository": stream.docker_image_repository,
        "tags": image_tag_count(stream),
        "updated": ago(updated, now) if updated else "",
        # a stream whose tags could not even be listed, with none recorded: "stream"
        "failing": len(failing_tags(stream)) or ("stream" if stream.failure else 0),
        "status": stream_status(stream),
    }


def pending(config: Config, stored: Sequence[ImageStream]) -> list[StreamConfig]:
    """The configured streams the state does not hold yet (never synced)."""
    known = {s.name for s in stored}
    return [s for s in config.streams if s.name not in known]


def _mirror_repository(config: Config, stream: StreamConfig) -> str:
    mirror = config.mirror
    if mirror.kind == "oci":
        return f"{mirror}:{stream.to}"
    return f"{mirror.registry}/{mirror.repository(stream.to)}"


def pending_row(config: Config, stream: StreamConfig) -> dict[str, Any]:
    return {
        "name": stream.name,
        "imageRepository": _mirror_repository(config, stream),
        "tags": len(stream.tags) if stream.tags is not None else "",
        "updated": "",
        "failing": 0,
        "status": NOT_SYNCED,
    }


def streams_table(
    streams: Sequence[ImageStream],
    now: datetime | None = None,
    pending_rows: Sequence[dict[str, Any]] = (),
) -> str:
    """``NAME  IMAGE REPOSITORY  TAGS  UPDATED  FAILING  STATUS``, one stream a line,
    sorted by name: the stored streams and the configured ones not synced yet."""
    now = now or datetime.now(UTC)
    header = ("NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED", "FAILING", "STATUS")
    found = sorted([stream_row(s, now) for s in streams] + list(pending_rows), key=_by_name)
    keys = ("name", "imageRepository", "tags", "updated", "failing", "status")
    rows = [header] + [tuple(str(r[k]) for k in keys) for r in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def _by_name(row: dict[str, Any]) -> str:
    return str(row["name"])


def pending_document(config: Config, stream: StreamConfig) -> dict[str, Any]:
    """An ImageStream of a configured stream not synced yet: its spec, an empty status."""
    namespace, name = object_names(stream.name)
    tags = [
        {
            "name": tag,
            "from": {"kind": "DockerImage", "name": f"{stream.source}:{tag}"},
            "importPolicy": {"scheduled": True, "importMode": stream.import_mode.value},
            "referencePolicy": {"type": stream.reference_policy.value},
        }
        for tag in stream.tags or ()
    ]
    return {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {STREAM_ANNOTATION: stream.name, STATUS_ANNOTATION: "NotSynced"},
        },
        "spec": {"lookupPolicy": {"local": False}, "tags": tags},
        "status": {"dockerImageRepository": _mirror_repository(config, stream)},
    }


def stream_list(
    streams: Sequence[ImageStream], pending_docs: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """An ``image.openshift.io/v1`` ImageStreamList (configured streams not synced yet
    carry the ``mirrord.io/status: NotSynced`` annotation)."""
    items = [to_openshift(s) for s in streams] + list(pending_docs)
    return {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStreamList",
        "metadata": {},
        "items": sorted(items, key=lambda d: d["metadata"]["annotations"][STREAM_ANNOTATION]),
    }

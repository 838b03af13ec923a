"""``mirrord tag SOURCE STREAM:TAG``: point a stream tag at another image, like ``oc tag``.

SOURCE is either another stream's tag (``STREAM:TAG``, an ``ImageStreamTag``: the
image that tag points at now) or an image reference with a registry host
(``quay.io/org/img:1.2``, ``host/repo@sha256:…``, a ``DockerImage``). The image is
copied into the stream's mirror repository under TAG (within one mirror repository
only the tag is written), and the tag's history gains an event, as ``oc tag`` adds
one. The tag then follows that image, not the stream's source: it carries a
``Tagged`` condition (:data:`~mirrord.core.imagestream.TAGGED`) naming SOURCE, the
stream's scheduled runs leave it alone, and ``import-image`` of the tag (or a
re-tag) points it back. How it follows SOURCE is the condition's reason, as
``oc tag`` has it:

- pointed once (the default): SOURCE moving later does not move it;
- ``--alias`` (SOURCE a tag of the same stream): every run of the stream moves the
  tag to where SOURCE points (:mod:`._follow`);
- ``--scheduled`` (SOURCE an image with a tag): every run of the stream re-imports
  it, as the stream's own tags are (a stored stream must be scheduled for the daemon
  to run it; one this command creates is).

The tag's move is notified as a sync's is (a ``push`` event through the outbox).

A stream that does not exist is created (as ``import-image`` streams are; scheduled
only for ``--scheduled``). A configured stream refuses a tag its own selection imports (its next
sync would point it back).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio

from mirrord.config import Config, StreamConfig
from mirrord.copy import Action, CopyEngine, CopyStats, TagPlan
from mirrord.core.imagestream import (
    TAG_SCHEDULED,
    ImageStream,
    ImportResult,
    docker_image_reference,
    tag_origin,
)
from mirrord.core.modes import ImportMode
from mirrord.core.reference import parse
from mirrord.errors import MirrordError, NotFoundError
from mirrord.notify import Notifier, cluster_resources_event, tag_event
from mirrord.registry import retrying
from mirrord.state import Store, open_state
from mirrord.sync._blobclaims import shared_blobs
from mirrord.sync._blobplaces import blob_places
from mirrord.sync._import_image import Refusal, _selects, imported_stream
from mirrord.sync._recorder import stream_spec
from mirrord.sync._tag_request import TagTarget, parse_tag_request
from mirrord.transports import ClientPool, Destination, open_destination, read_manifest

NOTIFY_DEADLINE = 30.0  # seconds `mirrord tag` spends delivering notifications, as a sync


@dataclass(frozen=True)
class Pointed:
    """The image a tag was just pointed at: where it is in the mirror, what it is, and
    where it came from (``upstream`` repository, ``source`` reference, for the record
    and the notification)."""

    repository: str
    digest: str
    media_type: str
    size: int
    upstream: str
    source: str
    source_digest: str = ""
    platform: str = ""


@dataclass(frozen=True)
class TagOutcome:
    """What ``mirrord tag`` did: the stream after it, and whether the tag moved."""

    stream: ImageStream
    tag: str
    result: ImportResult
    created: bool


def _check_configured(config: Config, target: TagTarget) -> StreamConfig | Refusal | None:
    stream = next((s for s in config.streams if s.name == target.stream), None)
    if stream is not None and _selects(stream, target.tag):
        where = str(config.path) if config.path else "the embedded default configuration"
        return Refusal(
            f'the tag "{target.tag}" is imported by the image stream "{stream.name}" defined '
            f"in {where}: its next sync would point it back at {stream.source}:{target.tag}; "
            "tag another name, or drop the tag from that stream's selection"
        )
    return stream


async def tag_image(
    config: Config,
    store: Store,
    pool: ClientPool,
    target: TagTarget,
    notifier: Notifier | None = None,
) -> TagOutcome | Refusal:
    """Point ``target.stream:target.tag`` at the source; call it holding the run lock.
    A tag that moved is published to ``notifier`` (not delivered: the caller does)."""
    configured = _check_configured(config, target)
    if isinstance(configured, Refusal):
        return configured
    destination = await open_destination(config, pool)
    stored = await store.get_stream(target.stream)
    created = stored is None
    if stored is None:
        stream = configured or _new_stream(config, target)
        stored = await store.upsert_stream(stream_spec(config, stream, destination))
    else:
        if target.policy == TAG_SCHEDULED and not (configured or stored.scheduled):
            return _unscheduled(stored, target)
        await store.bump_generation(stored.name)  # a spec change, as `oc tag` makes one
        stored = await store.get_stream(stored.name) or stored
    try:
        pointed = await point_tag(config, store, pool, destination, stored, target)
    except MirrordError:
        if created:  # nothing was tagged: leave no empty stream behind
            await store.delete_stream(stored.name)
        raise
    if not isinstance(pointed, Pointed):
        if created:
            await store.delete_stream(stored.name)
        return pointed or Refusal(f"{target.source}: nothing to tag")
    recorded = await record_pointed(store, stored, target, pointed)
    await notify_pointed(notifier, destination, stored, target.tag, pointed, recorded)
    found = await store.get_stream(stored.name)
    assert found is not None
    return TagOutcome(found, target.tag, recorded, created)


def _unscheduled(stream: ImageStream, target: TagTarget) -> Refusal:
    """``--scheduled`` into a stored stream no run covers: say how to schedule it."""
    own = next((t.tag for t in stream.tags if tag_origin(t) is None and t.items), "TAG")
    return Refusal(
        f'the image stream "{stream.name}" is not scheduled, so no run would re-import '
        f"{target.stream}:{target.tag}: schedule it first "
        f"(`mirrord import-image {stream.name}:{own} --scheduled`)"
    )


def _new_stream(config: Config, target: TagTarget) -> StreamConfig:
    """The stream ``mirrord tag`` creates: import-image's defaults, its source the
    image's repository (or the other stream's source); scheduled for ``--scheduled``."""
    if target.kind == "DockerImage":
        source = parse(target.source).name
    else:
        other = target.source.rpartition(":")[0]
        source = next((s.source for s in config.streams if s.name == other), other)
    defaults = config.defaults
    return imported_stream(
        config,
        target.stream,
        source,
        (),
        scheduled=target.policy == TAG_SCHEDULED,
        reference_policy=defaults.reference_policy,
        import_mode=defaults.import_mode,
        import_all=False,
    )


async def point_tag(
    config: Config,
    store: Store,
    pool: ClientPool,
    destination: Destination,
    stream: ImageStream,
    target: TagTarget,
    *,
    unless: frozenset[str] = frozenset(),
) -> Pointed | Refusal | None:
    """Bring the source image into the stream's mirror repository under the tag (not
    recorded). None when the source's digest is in ``unless`` (what the tag already
    holds: a follow-up run with nothing to do)."""
    configured = next((s for s in config.streams if s.name == stream.name), None)
    repository = destination.repository(configured.to if configured else stream.name)
    if target.kind == "ImageStreamTag":
        tagged = await _other_tag(store, target)
        if isinstance(tagged, Refusal):
            return tagged
        other, digest = tagged
        if digest in unless:
            return None
        if other.docker_image_repository == stream.docker_image_repository:
            return await _retag(destination, repository, target, other, digest)
        upstream = parse(f"{other.source}@{digest}")
        upstream_source = f"{other.source}:{target.source.rpartition(':')[2]}"
        # the exact image the other tag holds, whatever that stream's import mode
        mode = ImportMode.PRESERVE_ORIGINAL
    else:
        upstream, mode = parse(target.source), stream.import_mode
        upstream_source = target.source
    source = await pool.client(upstream.registry, upstream.repository)
    reference = upstream.digest or upstream.tag or "latest"
    found = await retrying(
        lambda: source.head_manifest(upstream.repository, reference), f"HEAD {target.source}"
    )
    if found is None:
        raise NotFoundError(f"{target.source}: manifest unknown", status=404)
    if found.digest in unless:
        return None
    plan = TagPlan(
        stream=stream.name,
        tag=target.tag,
        source_repository=upstream.repository,
        mirror_repository=repository,
        action=Action.COPY,
        source=found,
        import_mode=mode,
        platform=configured.platform if configured else config.defaults.platform,
    )
    shared, places = shared_blobs(config, store, destination), blob_places(store, destination)
    engine = CopyEngine(
        destination, CopyStats(), limits=config.limits, shared=shared, places=places
    )
    image = await engine.copy_tag(source, plan)
    return Pointed(
        repository, image.digest, image.media_type, image.size, upstream.name,
        upstream_source, image.source_digest, image.platform,
    )


async def _other_tag(store: Store, target: TagTarget) -> tuple[ImageStream, str] | Refusal:
    """The stream SOURCE names and the digest its tag points at now."""
    other_name, _, other_tag = target.source.rpartition(":")
    other = await store.get_stream(other_name)
    status = other.tag(other_tag) if other is not None else None
    if other is None or status is None or status.current is None:
        return Refusal(f'"{target.source}" is not an image stream tag with an image')
    return other, status.current.image


async def _retag(
    destination: Destination,
    repository: str,
    target: TagTarget,
    other: ImageStream,
    digest: str,
) -> Pointed | Refusal:
    """Within one mirror repository only the tag is written."""
    manifest = await read_manifest(destination, repository, digest)
    if manifest is None:
        return Refusal(f"{target.source}: {digest} is not in the mirror any more")
    await destination.put_manifest(repository, target.tag, manifest)
    source = f"{other.source}:{target.source.rpartition(':')[2]}"
    return Pointed(
        repository, digest, manifest.media_type, manifest.size, other.source, source, digest
    )


async def record_pointed(
    store: Store, stream: ImageStream, target: TagTarget, pointed: Pointed
) -> ImportResult:
    """The tag's new event and its ``Tagged`` condition (SOURCE, the policy)."""
    reference = docker_image_reference(
        stream.reference_policy, pointed.upstream, stream.docker_image_repository, pointed.digest
    )
    return await store.record_tag_import(
        stream.name,
        target.tag,
        pointed.digest,
        reference,
        source_digest=pointed.source_digest,
        platform=pointed.platform,
        tagged_from=target.tagged_from,
        tag_policy=target.policy,
    )


async def notify_pointed(
    notifier: Notifier | None,
    destination: Destination,
    stream: ImageStream,
    tag: str,
    pointed: Pointed,
    recorded: ImportResult,
) -> None:
    """The ``push`` event a sync sends when a tag moves, for a tag that moved."""
    if notifier is None or not recorded.changed:
        return
    await notifier.publish(
        tag_event(
            stream=stream.name,
            tag=tag,
            repository=pointed.repository,
            digest=pointed.digest,
            media_type=pointed.media_type,
            size=pointed.size,
            url=destination.reference(pointed.repository, pointed.digest),
            source=pointed.source,
            previous_digest=recorded.previous_digest,
        )
    )


async def run_tag(
    config: Config,
    source: str,
    target: str,
    *,
    wait: bool,
    alias: bool = False,
    scheduled: bool = False,
) -> TagOutcome | Refusal:
    """``mirrord tag``: open the state, hold the run lock, tag, refresh the cluster
    files, and deliver the notifications (as a sync does, within its bound)."""
    request = parse_tag_request(source, target, alias=alias, scheduled=scheduled)
    if isinstance(request, Refusal):
        return request
    async with AsyncExitStack() as stack:
        store = await anyio.to_thread.run_sync(open_state, config)
        stack.push_async_callback(store.aclose)
        await stack.enter_async_context(store.acquire_run_lock(wait=wait))
        pool = await stack.enter_async_context(ClientPool(config))
        notifier = Notifier(store, config.notifications) if config.notifications else None
        outcome = await tag_image(config, store, pool, request, notifier)
        if isinstance(outcome, Refusal):
            return outcome
        from mirrord.cluster import default_directory, refresh

        changes = await refresh(config, store)
        if notifier is not None:
            if changes:
                files = {change.name: change.action for change in changes}
                await notifier.publish(
                    cluster_resources_event(str(default_directory(config)), files)
                )
            await notifier.deliver_due(deadline=anyio.current_time() + NOTIFY_DEADLINE)
        return outcome

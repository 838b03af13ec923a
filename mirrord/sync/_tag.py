"""``mirrord tag SOURCE STREAM:TAG``: point a stream tag at another image, like ``oc tag``.

SOURCE is either another stream's tag (``STREAM:TAG``, an ``ImageStreamTag``: the
image that tag points at now) or an image reference with a registry host
(``quay.io/org/img:1.2``, ``host/repo@sha256:…``, a ``DockerImage``). The image is
copied into the stream's mirror repository under TAG (within one mirror repository
only the tag is written), and the tag's history gains an event, as ``oc tag`` adds
one. The tag then follows that image, not the stream's source: it carries a
``Tagged`` condition (:data:`~mirrord.core.imagestream.TAGGED`) naming SOURCE, the
stream's scheduled runs leave it alone, and ``import-image`` of the tag (or a
re-tag) points it back. The tag is pointed once, as ``oc tag`` without
``--scheduled`` does: SOURCE moving later does not move it.

A stream that does not exist is created (as ``import-image`` streams are, not
scheduled). A configured stream refuses a tag its own selection imports (its next
sync would point it back).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio

from mirrord.config import Config, StreamConfig
from mirrord.copy import Action, CopyEngine, CopyStats, TagPlan
from mirrord.core.imagestream import ImageStream, ImportResult, docker_image_reference
from mirrord.core.modes import ImportMode
from mirrord.core.reference import is_repository, is_tag, parse
from mirrord.errors import InvalidReferenceError, MirrordError, NotFoundError
from mirrord.registry import retrying
from mirrord.state import Store, open_state
from mirrord.sync._blobclaims import shared_blobs
from mirrord.sync._blobplaces import blob_places
from mirrord.sync._import_image import Refusal, _has_host, _selects, imported_stream
from mirrord.sync._recorder import stream_spec
from mirrord.transports import ClientPool, Destination, open_destination, read_manifest


@dataclass(frozen=True)
class TagTarget:
    """What ``mirrord tag`` was asked, checked: ``kind`` is ``DockerImage`` (``source``
    a reference with host, tag or digest) or ``ImageStreamTag`` (``source`` STREAM:TAG)."""

    kind: str
    source: str
    stream: str
    tag: str

    @property
    def tagged_from(self) -> str:
        """The ``Tagged`` condition's message."""
        return f"{self.kind} {self.source}"


@dataclass(frozen=True)
class TagOutcome:
    """What ``mirrord tag`` did: the stream after it, and whether the tag moved."""

    stream: ImageStream
    tag: str
    result: ImportResult
    created: bool


def _stream_tag(text: str, what: str) -> tuple[str, str] | Refusal:
    name, sep, tag = text.rpartition(":")
    if not sep or not name or "/" in tag:
        return Refusal(f"{what} {text!r}: expected STREAM:TAG", usage=True)
    if not is_repository(name) or not is_tag(tag):
        return Refusal(f"{what} {text!r}: not a valid stream name and tag", usage=True)
    return name, tag


def parse_tag_request(source: str, target: str) -> TagTarget | Refusal:
    """SOURCE and STREAM:TAG read and checked (usage refusals for malformed input)."""
    dest = _stream_tag(target, "the destination")
    if isinstance(dest, Refusal):
        return dest
    if _has_host(source):
        try:
            ref = parse(source)
        except InvalidReferenceError as error:
            return Refusal(f"the source: {error}", usage=True)
        if not (ref.tag or ref.digest):
            return Refusal(f"the source {source!r} names no tag or digest", usage=True)
        shown = f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"
        return TagTarget("DockerImage", shown, *dest)
    other = _stream_tag(source, "the source")
    if isinstance(other, Refusal):
        return Refusal(
            f"{other.message} (or an image reference with a registry host, "
            "e.g. quay.io/org/image:tag)",
            usage=True,
        )
    if other == dest:
        return Refusal(f"{target} cannot be tagged from itself", usage=True)
    return TagTarget("ImageStreamTag", source, *dest)


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
    config: Config, store: Store, pool: ClientPool, target: TagTarget
) -> TagOutcome | Refusal:
    """Point ``target.stream:target.tag`` at the source; call it holding the run lock."""
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
        await store.bump_generation(stored.name)  # a spec change, as `oc tag` makes one
        stored = await store.get_stream(stored.name) or stored
    try:
        copied = await _copy(config, store, pool, destination, stored, target)
    except MirrordError:
        if created:  # nothing was tagged: leave no empty stream behind
            await store.delete_stream(stored.name)
        raise
    if isinstance(copied, Refusal):
        if created:
            await store.delete_stream(stored.name)
        return copied
    found = await store.get_stream(stored.name)
    assert found is not None
    return TagOutcome(found, target.tag, copied, created)


def _new_stream(config: Config, target: TagTarget) -> StreamConfig:
    """The stream ``mirrord tag`` creates: import-image's defaults, not scheduled, its
    source the image's repository (or the other stream's source)."""
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
        scheduled=False,
        reference_policy=defaults.reference_policy,
        import_mode=defaults.import_mode,
        import_all=False,
    )


async def _copy(
    config: Config,
    store: Store,
    pool: ClientPool,
    destination: Destination,
    stream: ImageStream,
    target: TagTarget,
) -> ImportResult | Refusal:
    """Bring the source image into the stream's mirror repository under the tag; record."""
    mirror_repository = stream.docker_image_repository
    configured = next((s for s in config.streams if s.name == stream.name), None)
    repository = destination.repository(configured.to if configured else stream.name)
    if target.kind == "ImageStreamTag":
        other_name, _, other_tag = target.source.rpartition(":")
        other = await store.get_stream(other_name)
        status = other.tag(other_tag) if other is not None else None
        if other is None or status is None or status.current is None:
            return Refusal(f'"{target.source}" is not an image stream tag with an image')
        digest = status.current.image
        if other.docker_image_repository == mirror_repository:  # same repository: a re-tag
            manifest = await read_manifest(destination, repository, digest)
            if manifest is None:
                return Refusal(f"{target.source}: {digest} is not in the mirror any more")
            await destination.put_manifest(repository, target.tag, manifest)
            return await _record(store, stream, target, digest, other.source, digest, "")
        upstream = parse(f"{other.source}@{digest}")
        # the exact image the other tag holds, whatever that stream's import mode
        mode = ImportMode.PRESERVE_ORIGINAL
    else:
        upstream, mode = parse(target.source), stream.import_mode
    source = await pool.client(upstream.registry, upstream.repository)
    reference = upstream.digest or upstream.tag or "latest"
    found = await retrying(
        lambda: source.head_manifest(upstream.repository, reference), f"HEAD {target.source}"
    )
    if found is None:
        raise NotFoundError(f"{target.source}: manifest unknown", status=404)
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
    return await _record(
        store, stream, target, image.digest, upstream.name, image.source_digest, image.platform
    )


async def _record(
    store: Store,
    stream: ImageStream,
    target: TagTarget,
    digest: str,
    upstream: str,
    source_digest: str,
    platform: str,
) -> ImportResult:
    reference = docker_image_reference(
        stream.reference_policy, upstream, stream.docker_image_repository, digest
    )
    return await store.record_tag_import(
        stream.name,
        target.tag,
        digest,
        reference,
        source_digest=source_digest,
        platform=platform,
        tagged_from=target.tagged_from,
    )


async def run_tag(config: Config, source: str, target: str, *, wait: bool) -> TagOutcome | Refusal:
    """``mirrord tag``: open the state, hold the run lock, tag, refresh the cluster files."""
    request = parse_tag_request(source, target)
    if isinstance(request, Refusal):
        return request
    async with AsyncExitStack() as stack:
        store = await anyio.to_thread.run_sync(open_state, config)
        stack.push_async_callback(store.aclose)
        await stack.enter_async_context(store.acquire_run_lock(wait=wait))
        pool = await stack.enter_async_context(ClientPool(config))
        outcome = await tag_image(config, store, pool, request)
        if not isinstance(outcome, Refusal):
            from mirrord.cluster import refresh as refresh_cluster_resources

            await refresh_cluster_resources(config, store)
        return outcome

"""Record a sync into the state store: tag events, conditions, removals and notifications.

``oc import-image`` rules (see :mod:`mirrord.core.imagestream`): a tag event only when
``items[0]`` changes, a failure sets ``ImportSuccess=False`` without repeating
itself, and a tag gone upstream stays unless the stream asks for deletion.
Each changed tag publishes one notification event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mirrord.config import Config, StreamConfig
from mirrord.copy import StreamPlan
from mirrord.core.imagestream import (
    StreamSpec,
    TagEvent,
    TagStatus,
    docker_image_reference,
    tag_origin,
)
from mirrord.errors import MirrordError, NotFoundError
from mirrord.notify import Notifier, tag_event
from mirrord.state import Store
from mirrord.sync._result import SyncResult, TagResult
from mirrord.transports import Destination, read_children

log = logging.getLogger("mirrord.record")


@dataclass(frozen=True)
class ImportedStream(StreamConfig):
    """A stream created by ``mirrord import-image``: stored in the state, not in the
    configuration file. It syncs like any stream; the recorder keeps it marked
    ``created_by="import-image"`` with its own ``scheduled`` flag (a configured stream
    is always ``config`` and scheduled). ``import_all``: created with ``--all``, it
    imports every tag of its repository (capped by ``max_tags``) when run as a whole."""

    scheduled: bool = False
    import_all: bool = False


def stream_spec(config: Config, stream: StreamConfig, destination: Destination) -> StreamSpec:
    if isinstance(stream, ImportedStream):
        created_by, scheduled, import_all = "import-image", stream.scheduled, stream.import_all
    else:
        created_by, scheduled, import_all = "config", True, False
    return StreamSpec(
        name=stream.name,
        source=stream.source,
        docker_image_repository=mirror_repository_name(config, stream, destination),
        scheduled=scheduled,
        import_mode=stream.import_mode,
        reference_policy=stream.reference_policy,
        created_by=created_by,
        import_all=import_all,
    )


def mirror_repository_name(config: Config, stream: StreamConfig, destination: Destination) -> str:
    """``host:port/prefix/to`` for a registry mirror, ``oci:/path:to`` for a layout."""
    repository = destination.repository(stream.to)
    return destination.reference(repository, "").rstrip(":")


class Recorder:
    """Writes each tag's outcome to ``store`` as the sync produces it."""

    def __init__(
        self,
        config: Config,
        store: Store,
        destination: Destination,
        notifier: Notifier | None = None,
        *,
        complete: bool = True,
    ) -> None:
        self.config = config
        self.store = store
        self.destination = destination
        self.notifier = notifier
        # The run covers each stream's whole selection (not an import-image of one tag).
        self.complete = complete
        # What the store held when the run started: (generation, tag -> status) per stream,
        # and the streams that had failed as a whole.
        self._known: dict[str, tuple[int, dict[str, TagStatus]]] = {}
        self._failing: set[str] = set()

    async def prepare(self, streams: list[StreamConfig]) -> None:
        for stream in streams:
            spec = stream_spec(self.config, stream, self.destination)
            recorded = await self.store.upsert_stream(spec)
            self._known[stream.name] = (recorded.generation, {t.tag: t for t in recorded.tags})
            if recorded.failure is not None:
                self._failing.add(stream.name)

    def recorded(self, stream: str) -> dict[str, TagEvent]:
        """The current image recorded for each tag of ``stream`` (removed tags left out),
        as :meth:`prepare` read it: what this run may take the mirror to hold."""
        _, statuses = self._known.get(stream, (0, {}))
        return {
            tag: current
            for tag, status in statuses.items()
            if not status.removed and (current := status.current) is not None
        }

    def _unchanged_in_store(
        self, stream: str, tag: str, digest: str, reference: str, source: tuple[str, str]
    ) -> bool:
        """True when recording this import would change nothing (skip the write)."""
        generation, statuses = self._known.get(stream, (0, {}))
        status = statuses.get(tag)
        current = status.current if status else None
        return (
            status is not None
            and current is not None
            and not status.conditions
            and not status.removed
            and (current.image, current.docker_image_reference) == (digest, reference)
            and current.generation >= generation
            and source[0] in ("", current.source_digest)
            and (not source[0] or source[1] == current.platform)
        )

    async def __call__(self, outcome: TagResult) -> None:
        plan = outcome.plan
        if outcome.outcome == "failed":
            error = outcome.error or MirrordError("unknown failure")
            await self.store.record_tag_failure(plan.stream, plan.tag, error.reason, str(error))
            return
        if outcome.outcome not in ("copied", "unchanged"):
            return
        stream = self.config.stream(plan.stream)
        digest = outcome.image.digest if outcome.image else plan.mirror_digest or plan.source_digest
        mirror_repo = mirror_repository_name(self.config, stream, self.destination)
        reference = docker_image_reference(
            stream.reference_policy, stream.source, mirror_repo, digest
        )
        image = outcome.image
        source_digest = image.source_digest if image else plan.source_digest
        platform = image.platform if image else plan.picked_platform
        source = (source_digest, platform)
        if self._unchanged_in_store(plan.stream, plan.tag, digest, reference, source):
            return
        recorded = await self.store.record_tag_import(
            plan.stream, plan.tag, digest, reference, source_digest=source_digest, platform=platform
        )
        if recorded.changed:
            await self._notify(stream, outcome, digest, recorded.previous_digest)

    async def _notify(
        self, stream: StreamConfig, outcome: TagResult, digest: str, previous: str | None
    ) -> None:
        if self.notifier is None:
            return

        plan = outcome.plan
        image = outcome.image
        event = tag_event(
            stream=stream.name,
            tag=plan.tag,
            repository=plan.mirror_repository,
            digest=digest,
            media_type=image.media_type
            if image
            else (plan.source.media_type if plan.source else ""),
            size=image.size if image else (plan.source.size if plan.source else 0),
            url=self.destination.reference(plan.mirror_repository, digest),
            source=f"{stream.source}:{plan.tag}",
            previous_digest=previous,
        )
        await self.notifier.publish(event)

    async def finish(self, result: SyncResult) -> None:
        """Stream-level failures and tags removed upstream, after every tag is recorded;
        then each stream whose every selected tag reached the mirror is marked synced."""
        failed = {r.plan.stream for r in result.failed}
        for stream_plan in result.plans:
            if stream_plan.error is not None:
                await self._record_stream_failure(stream_plan, stream_plan.error)
                continue
            if stream_plan.stream in self._failing:  # its tags were listed this time
                await self.store.set_stream_failure(stream_plan.stream, None)
            if stream_plan.all_tags is not None:
                await self._record_removed(stream_plan)
            if self.complete and stream_plan.stream not in failed and not result.skipped:
                await self.store.mark_synced(stream_plan.stream)

    async def _record_stream_failure(self, stream_plan: StreamPlan, error: MirrordError) -> None:
        stream = self.config.stream(stream_plan.stream)
        await self.store.set_stream_failure(stream.name, error.reason, str(error))
        known = await self.store.get_stream(stream.name)
        tags = set(stream.tags or ()) | {t.tag for t in (known.tags if known else ())}
        for tag in sorted(tags):
            await self.store.record_tag_failure(stream.name, tag, error.reason, str(error))

    async def _record_removed(self, stream_plan: StreamPlan) -> None:
        stream = self.config.stream(stream_plan.stream)
        known = await self.store.get_stream(stream.name)
        upstream = set(stream_plan.all_tags or ())
        statuses = known.tags if known else ()
        gone = [  # a tag `mirrord tag` pointed elsewhere never came from this upstream
            s
            for s in statuses
            if s.tag not in upstream and not s.removed and s.items and tag_origin(s) is None
        ]
        if not gone:
            return
        # Deleting by digest removes every tag naming it: keep the digests live tags still
        # use, and the manifests their indexes list (a platform tag of a live index).
        live = {s.items[0].image for s in statuses if s.tag in upstream and s.items}
        if stream.delete_removed_tags:
            try:
                live |= await self._children(stream, live)
            except MirrordError as error:  # the next run tries again
                log.warning("%s: tags gone upstream stay in the mirror: %s", stream.name, error)
                return
        for status in gone:
            digest = status.items[0].image
            outcome = "kept"
            if stream.delete_removed_tags:
                outcome = "its image stays: a live tag uses it"
                if digest not in live:
                    await self._delete_from_mirror(stream, digest)
                    outcome = "deleted from the mirror"
            await self.store.record_tag_removed(
                stream.name, status.tag, delete_removed_tags=stream.delete_removed_tags
            )
            log.info("%s:%s is gone upstream; %s", stream.name, status.tag, outcome)

    async def _children(self, stream: StreamConfig, indexes: set[str]) -> set[str]:
        """Every manifest the mirror's copies of ``indexes`` list (nested ones too)."""
        repository = self.destination.repository(stream.to)
        found = await read_children(self.destination, {d: [repository] for d in indexes})
        return {child for children in found.values() for child in children}

    async def _delete_from_mirror(self, stream: StreamConfig, digest: str) -> None:
        repository = self.destination.repository(stream.to)
        try:
            await self.destination.delete_manifest(repository, digest)
        except NotFoundError:
            log.info("%s@%s already gone from the mirror", repository, digest)

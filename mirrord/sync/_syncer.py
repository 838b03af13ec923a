"""One run: config → tag selection → plan → copy → record → notify.

Streams are planned concurrently (one tag listing per repository, one ``HEAD``
per tag at the source), then every tag that changed is
copied by one shared :class:`~mirrord.copy.CopyEngine`, so a blob shared by
several repositories is streamed once and mounted elsewhere. A failing image
never stops the others; the run's result says which failed and why.

The mirror side of planning: when the state recorded what the mirror's tags were
given (``recorded``), one tag listing of each mirror repository stands in for a
``HEAD`` per tag. A tag is ``HEAD``ed at the mirror only when the listing, the
record and the source disagree (not listed, no record, the record says the source
changed); the listing is taken while the source's ``HEAD``s are in flight. A tag
deleted from the mirror out of band is therefore repaired on every run (the listing
lacks it); a tag *overwritten* out of band, at the same name, is found only by a
verifying run (``verify=True``: ``mirrord sync --verify``, the daemon's
``verify_every``), which ``HEAD``s every tag as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING

import anyio

from mirrord.config import Config, StreamConfig
from mirrord.copy import (
    Action,
    BlobPlaces,
    CopyEngine,
    CopyStats,
    Imported,
    SharedBlobs,
    StreamPlan,
    TagPlan,
    decide,
)
from mirrord.core.modes import ImportMode
from mirrord.core.selection import Selection, is_attached_tag, select_tags
from mirrord.errors import MirrordError, NotFoundError, SubjectFailedError
from mirrord.registry import retrying
from mirrord.sync._attached import ReferrerGate, plan_cosign_tags
from mirrord.sync._mirrorview import MirrorView, RecordedHook
from mirrord.sync._result import SyncResult, TagResult
from mirrord.sync._upstream import valid_tags
from mirrord.transports import ClientPool, Destination, Source, open_destination

if TYPE_CHECKING:
    from mirrord.sync._signing import SignatureGate

log = logging.getLogger("mirrord.sync")

MAX_IMAGES_IN_FLIGHT = 16


ResultHook = Callable[[TagResult], Awaitable[None]]


class Syncer:
    """Runs syncs of ``config``'s streams into its mirror."""

    def __init__(
        self,
        config: Config,
        pool: ClientPool,
        *,
        on_result: ResultHook | None = None,
        legacy_sources: Callable[[str, str], Awaitable[Imported | None]] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        estimate_bytes: bool = False,
        recorded: RecordedHook | None = None,
        verify: bool = False,
        shared: SharedBlobs | None = None,
        places: BlobPlaces | None = None,
    ) -> None:
        """``estimate_bytes``: size the copies first (``result.planned_blobs``, a
        display's total). ``recorded`` (the state's view of the mirror) lets a listing replace the
        mirror ``HEAD`` of an unchanged tag; ``verify`` disables that (HEAD every tag).
        ``shared``: blob claims shared with other workers (a fleet on one database);
        ``places``: where blobs landed in earlier runs (mounted rather than pulled)."""
        self.config = config
        self._shared, self._places = shared, places
        self._estimate_bytes = estimate_bytes
        self.pool = pool
        self._on_result = on_result
        self._legacy_sources = legacy_sources
        self._should_stop = should_stop
        self._mirror = MirrorView(None if verify else recorded)
        self._verify = verify
        # The run's referrer gate (while it executes): a verifying run looks for new
        # referrers of the images it leaves unchanged too.
        self._referrers: ReferrerGate | None = None
        # Each stream's source client, resolved once while planning (credentials included).
        self._sources: dict[str, Source] = {}
        # The run's counters (planning retries count too); replaced by each run().
        self._stats = CopyStats()

    async def run(
        self,
        streams: Sequence[StreamConfig] | None = None,
        *,
        dry_run: bool = False,
        result: SyncResult | None = None,
    ) -> SyncResult:
        """Sync ``streams`` (default: all); ``result`` may be passed in to watch progress."""
        started = time.monotonic()
        result = result or SyncResult()
        result.dry_run = dry_run
        self._stats = result.stats
        destination = await open_destination(self.config, self.pool)
        selected = list(streams if streams is not None else self.config.streams)
        plans: dict[str, StreamPlan] = {}
        unreachable: list[MirrordError] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._reach, destination, unreachable, tg.cancel_scope)
            for stream in selected:
                tg.start_soon(self._plan_into, plans, stream, destination)
        if unreachable:
            raise unreachable[0]
        result.plans = [plans[s.name] for s in selected]
        fresh = await self._fresh(result.plans, destination)
        if dry_run:
            from mirrord.sync._estimate import Estimate  # dry runs only

            estimate = Estimate(
                self.config, destination, self._sources, self.pool.retry, self._places,
                in_flight=MAX_IMAGES_IN_FLIGHT, fresh=fresh,
            )
            await estimate.run(result)
        else:
            await self._execute(result, destination, fresh)
        result.seconds = time.monotonic() - started
        return result

    async def _reach(
        self, destination: Destination, unreachable: list[MirrordError],
        planning: anyio.CancelScope,
    ) -> None:
        """Check the mirror answers while the sources are planned (the sources need not
        wait a round trip for it); if it does not, planning stops and the run fails."""
        reach = f"reach the mirror {destination.description}"
        try:
            await retrying(destination.ping, reach, self.pool.retry, self._stats.count_retry)
        except MirrordError as error:
            unreachable.append(error)
            planning.cancel()

    async def _fresh(self, plans: list[StreamPlan], destination: Destination) -> frozenset[str]:
        """The mirror repositories copies go into that held no tag before this run: their
        blobs are not ``HEAD``ed one by one (:class:`~mirrord.copy.CopyEngine`). None
        without the record of where blobs landed, nor in a verifying run."""
        if self._places is None or self._verify:
            return frozenset()
        into = {p.mirror_repository for sp in plans for p in sp.tags if p.action is Action.COPY}
        return await self._mirror.untagged(
            into, destination, self.pool.retry, self._stats.count_retry
        )

    async def _plan_into(
        self, plans: dict[str, StreamPlan], stream: StreamConfig, destination: Destination
    ) -> None:
        plans[stream.name] = await self.plan_stream(stream, destination)

    async def plan_stream(self, stream: StreamConfig, destination: Destination) -> StreamPlan:
        """List (when needed), select, and ``HEAD`` each selected tag at both ends."""
        try:
            source = await self.pool.client(stream.source_registry, stream.source_repository)
            self._sources[stream.name] = source
            all_tags: list[str] | None = None
            invalid: tuple[str, ...] = ()
            if stream.tags is None or stream.signatures or stream.delete_removed_tags:
                listed = await retrying(
                    lambda: source.list_tags(stream.source_repository),
                    f"list tags of {stream.source}",
                    self.pool.retry,
                    self._stats.count_retry,
                )
                all_tags, invalid = valid_tags(stream, listed)
            selection = select_tags(all_tags if all_tags is not None else [], stream)
            if stream.tags is not None and all_tags is None:
                selection = Selection(selected=stream.tags)
        except MirrordError as error:
            log.error("stream %s: %s", stream.name, error)
            return StreamPlan(stream.name, error=error)
        # Attached-artifact tags travel with their image; only an explicit list names them.
        tags = [t for t in selection.selected if stream.tags is not None or not is_attached_tag(t)]
        # An explicit tag the source lacks is planned too: its HEAD fails as NotFound.
        tags += [t for t in selection.missing if t not in tags]
        mirror_listed = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._list_mirror, stream, destination, mirror_listed)
            plans = await self._plan_tags(stream, source, destination, tags, mirror_listed)
        if stream.signatures and all_tags:
            plans += await plan_cosign_tags(
                plans, all_tags,
                lambda tags: self._plan_tags(stream, source, destination, tags, mirror_listed),
            )
        return StreamPlan(
            stream.name, tuple(plans), selection.left_out, selection.missing,
            all_tags=all_tags, invalid=invalid,
        )

    async def _list_mirror(
        self, stream: StreamConfig, destination: Destination, listed: anyio.Event
    ) -> None:
        """The mirror's tag listing, taken while the source's ``HEAD``s are in flight
        (they need not wait a round trip to the mirror); ``listed`` is set when it is
        in (it never fails: a failed listing means a ``HEAD`` per tag)."""
        try:
            await self._mirror.list(stream, destination, self.pool.retry, self._stats.count_retry)
        finally:
            listed.set()

    async def _plan_tags(
        self, stream: StreamConfig, source: Source, destination: Destination, tags: list[str],
        listed: anyio.Event,
    ) -> list[TagPlan]:
        planned: dict[str, TagPlan] = {}
        async with anyio.create_task_group() as tg:
            for tag in tags:
                tg.start_soon(
                    self._plan_tag_into, planned, stream, source, destination, tag, listed
                )
        return [planned[t] for t in tags]

    async def _plan_tag_into(
        self, planned: dict[str, TagPlan], stream: StreamConfig, source: Source,
        destination: Destination, tag: str, listed: anyio.Event,
    ) -> None:
        mode = stream.import_mode
        base = TagPlan(
            stream=stream.name,
            tag=tag,
            source_repository=stream.source_repository,
            mirror_repository=destination.repository(stream.to),
            mirror_reference=destination.reference(destination.repository(stream.to), tag),
            action=Action.FAILED,
            import_mode=mode,
            platform=stream.platform,
        )
        try:
            found = await retrying(
                lambda: source.head_manifest(stream.source_repository, tag),
                f"HEAD {stream.source}:{tag}",
                self.pool.retry,
                self._stats.count_retry,
            )
            if found is None:
                raise NotFoundError(f"{stream.source}:{tag}: manifest unknown", status=404)
            await listed.wait()
            if known := self._mirror.known(stream, tag, found):
                planned[tag] = base.with_heads(Action.UNCHANGED, found, known)
                return
            mirrored = await retrying(
                lambda: destination.head_manifest(base.mirror_repository, tag),
                f"HEAD mirror {base.mirror_repository}:{tag}",
                self.pool.retry,
                self._stats.count_retry,
            )
            imported = None
            if mode is ImportMode.LEGACY and mirrored and self._legacy_sources:
                imported = await self._legacy_sources(stream.name, tag)
            action = decide(found, mirrored, mode, stream.platform, imported)
            planned[tag] = base.with_heads(action, found, mirrored)
        except MirrordError as error:
            planned[tag] = base.failed(error)

    async def _execute(
        self, result: SyncResult, destination: Destination, fresh: frozenset[str]
    ) -> None:
        """Copy every image (its lookaside signatures and referrers right before its tag
        moves), then the cosign tags of those that are in the mirror."""
        from mirrord.sync._attached import Gates  # copies only

        referrers = ReferrerGate(self.config, result.stats, destination, result.warn)
        async with self._signature_gate(result) as signatures:
            gates = [g for g in (signatures, referrers) if g is not None and g.needed]
            engine = CopyEngine(
                destination, result.stats, limits=self.config.limits, retry=self.pool.retry,
                gate=Gates(*gates) if gates else None, shared=self._shared, places=self._places,
                fresh=fresh,
            )
            referrers.engine = engine
            self._referrers = referrers if referrers.needed and self._verify else None
            try:
                await self._execute_all(result, engine)
            finally:
                self._referrers = None

    def _signature_gate(
        self, result: SyncResult
    ) -> AbstractAsyncContextManager[SignatureGate | None]:
        """The run's signature gate; none when nothing is copied and no policy is
        configured (entering one would only open a lookaside client no copy uses, and
        importing the signatures stack costs ~20 ms of a no-op). With a policy, the gate is
        entered anyway: a policy that does not load fails the run, no-op or not."""
        copies = any(p.action is Action.COPY for sp in result.plans for p in sp.tags)
        if not copies and self.config.policy is None:
            return nullcontext(None)
        from mirrord.sync._signing import SignatureGate

        return SignatureGate(self.config, result.stats, result.warn)

    async def _execute_all(self, result: SyncResult, engine: CopyEngine) -> None:
        images = anyio.Semaphore(MAX_IMAGES_IN_FLIGHT)
        if self._estimate_bytes:
            await self._size_copies(result, engine, images)
        for signatures in (False, True):
            failed = {r.plan.mirrored_digest or r.plan.source_digest for r in result.failed}
            async with anyio.create_task_group() as tg:
                for stream_plan in result.plans:
                    stream = self.config.stream(stream_plan.stream)
                    for plan in stream_plan.tags:
                        if (plan.subject is not None) != signatures:
                            continue
                        if plan.subject in failed:
                            why = f"{plan.tag}: not copied, its image {plan.subject} failed"
                            plan = plan.failed(SubjectFailedError(why))
                        tg.start_soon(self._execute_tag, result, engine, images, stream, plan)

    async def _size_copies(
        self, result: SyncResult, engine: CopyEngine, images: anyio.Semaphore
    ) -> None:
        """``result.planned_blobs`` of every image to copy, each shared blob once."""

        async def size(plan: TagPlan) -> None:
            async with images:
                try:
                    blobs = await engine.blobs_of(self._sources[plan.stream], plan)
                except MirrordError:  # the copy meets the same error and reports it
                    return
                result.planned_blobs.update(blobs)

        copies = [p for sp in result.plans for p in sp.tags if p.action is Action.COPY]
        async with anyio.create_task_group() as tg:
            for plan in copies:
                tg.start_soon(size, plan)

    async def _execute_tag(
        self, result: SyncResult, engine: CopyEngine, images: anyio.Semaphore,
        stream: StreamConfig, plan: TagPlan,
    ) -> None:
        if plan.action is Action.FAILED:
            outcome = TagResult(plan, "failed", error=plan.error)
        elif plan.action is Action.UNCHANGED:
            outcome = TagResult(plan, "unchanged")
            if self._referrers is not None:
                async with images:
                    await self._referrers.refresh(self._sources[stream.name], stream, plan)
        else:
            try:
                await images.acquire()
            except anyio.get_cancelled_exc_class():
                result.skipped += 1  # cut while waiting for its turn: never started
                raise
            try:
                if self._should_stop():  # SIGTERM: copies under way finish, no new ones
                    result.skipped += 1
                    return
                outcome = await self._copy(result, engine, stream, plan)
            finally:
                images.release()
        await self._count(result, stream, plan, outcome)

    async def _copy(
        self, result: SyncResult, engine: CopyEngine, stream: StreamConfig, plan: TagPlan
    ) -> TagResult:
        try:
            image = await engine.copy_tag(self._sources[stream.name], plan)
        except anyio.get_cancelled_exc_class():
            result.cut += 1  # the stop's grace period ran out mid-copy
            raise
        except MirrordError as error:
            log.error(
                "%s:%s failed: %s", stream.name, plan.tag, error, extra={"reason": error.reason}
            )
            return TagResult(plan, "failed", error=error)
        return TagResult(plan, "copied", image=image)

    async def _count(
        self, result: SyncResult, stream: StreamConfig, plan: TagPlan, outcome: TagResult
    ) -> None:
        stats = result.stats
        if outcome.outcome == "copied":
            assert outcome.image is not None
            where = {"digest": outcome.image.digest, "source": f"{stream.source}:{plan.tag}"}
            log.info("copied %s:%s", stream.name, plan.tag, extra=where)
            stats.images_copied += 1
        elif outcome.outcome == "unchanged":
            stats.images_unchanged += 1
        else:
            stats.images_failed += 1
        result.results.append(outcome)
        if self._on_result is not None:
            await self._on_result(outcome)

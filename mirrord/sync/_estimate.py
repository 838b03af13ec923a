"""A dry run's estimate: the bytes a sync would pull, read the way the sync would copy.

The copy engine that would copy each image reads its manifests (so a Legacy stream
counts the one platform it takes); nothing is written. A blob is left out when the sync
would not stream it: an earlier run recorded it in another repository of the mirror that
still holds it (the sync mounts it from there), or the target repository holds it (a
``HEAD`` at the mirror, asked where the sync asks it: not in a repository with no tag
unless the record puts the blob there). A blob shared by several images is counted once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import anyio

from mirrord.config import Config
from mirrord.copy import Action, BlobPlaces, CopyEngine, TagPlan
from mirrord.core.reference import is_repository
from mirrord.errors import MirrordError
from mirrord.registry import RetryPolicies, retrying
from mirrord.sync._attached import ReferrerGate
from mirrord.sync._result import SyncResult, TagResult
from mirrord.transports import Destination, Source

OUTCOMES = {Action.FAILED: "failed", Action.UNCHANGED: "unchanged", Action.COPY: "planned"}


@dataclass
class Estimate:
    """One dry run's estimate over ``result.plans`` (filled into ``result``)."""

    config: Config
    destination: Destination
    sources: dict[str, Source]
    retry: RetryPolicies
    places: BlobPlaces | None = None
    in_flight: int = 8  # images read at once, as the sync sizes its copies
    # Mirror repositories with no tag: the sync HEADs a blob there only where the
    # record puts it (see CopyEngine), so the estimate does too.
    fresh: frozenset[str] = frozenset()

    async def run(self, result: SyncResult) -> None:
        images = anyio.Semaphore(self.in_flight)
        engine = CopyEngine(
            self.destination, result.stats, limits=self.config.limits, retry=self.retry
        )
        referrers = ReferrerGate(self.config, result.stats, self.destination, result.warn)
        referrers.engine = engine
        estimated: dict[tuple[str, str], TagResult] = {}
        async with anyio.create_task_group() as tg:
            for plan in (p for sp in result.plans for p in sp.tags):
                if plan.action is Action.COPY:
                    tg.start_soon(self._tag, images, result, estimated, engine, referrers, plan)
                else:
                    estimated[plan.stream, plan.tag] = TagResult(
                        plan, OUTCOMES[plan.action], error=plan.error
                    )
        result.results = [
            estimated[plan.stream, plan.tag] for sp in result.plans for plan in sp.tags
        ]
        for outcome in result.results:  # what a run would count (planned ones are copies)
            result.stats.images_unchanged += outcome.outcome == "unchanged"
            result.stats.images_failed += outcome.outcome == "failed"

    async def _tag(
        self,
        images: anyio.Semaphore,
        result: SyncResult,
        estimated: dict[tuple[str, str], TagResult],
        engine: CopyEngine,
        referrers: ReferrerGate,
        plan: TagPlan,
    ) -> None:
        source = self.sources[plan.stream]
        try:
            async with images:
                blobs = await self._streamed_blobs(result, engine, source, plan)
                stream = self.config.stream(plan.stream)
                attached = await referrers.would_copy(source, stream, plan)
            estimated[plan.stream, plan.tag] = TagResult(
                replace(plan, bytes_to_copy=sum(blobs.values()), referrers_to_copy=attached),
                "planned",
            )
            result.planned_blobs.update(blobs)  # copied once, then mounted: counted once
        except MirrordError as error:
            estimated[plan.stream, plan.tag] = TagResult(plan.failed(error), "failed", error=error)

    async def _streamed_blobs(
        self, result: SyncResult, engine: CopyEngine, source: Source, plan: TagPlan
    ) -> dict[str, int]:
        """Digest -> size of the blobs copying ``plan`` would pull from upstream."""
        blobs = await engine.blobs_of(source, plan)
        return {
            digest: size
            for digest, size in blobs.items()
            if await self._streamed(result, plan.mirror_repository, digest)
        }

    async def _streamed(self, result: SyncResult, repository: str, digest: str) -> bool:
        """Whether the sync would stream ``digest`` into ``repository`` from upstream."""
        recorded = None
        if self.places is not None:
            try:
                recorded = await self.places.where(digest)
            except MirrordError:  # the record is away: the sync would not mount it
                recorded = None
        elsewhere = recorded if recorded != repository and is_repository(recorded or "") else None
        if elsewhere and await self._held(result, elsewhere, digest):
            return False  # mounted from where an earlier run put it
        fresh = repository in self.fresh and self.places is not None
        return not ((recorded == repository or not fresh)
                    and await self._held(result, repository, digest))

    async def _held(self, result: SyncResult, repository: str, digest: str) -> bool:
        return await retrying(
            partial(self.destination.blob_exists, repository, digest),
            f"HEAD mirror {repository}@{digest}",
            self.retry,
            result.stats.count_retry,
        )

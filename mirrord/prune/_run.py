"""The pruner: OpenShift's ImagePruner (``oc adm prune images``) for mirrord's mirror.

**Which tag revisions go** (:func:`plan_prune`, pure, in :mod:`._plan`).
A tag's history is newest first; revision ``items[i]`` is pruned when it is older
than ``keepYoungerThanDuration`` *and* ``i >= keepTagRevisions``. Never pruned:

- ``items[0]``, the tag's current image (even with ``keepTagRevisions: 0``);
- a revision whose digest a kept revision uses, in any tag of any stream;
- a revision whose digest a kept index references (its platform manifests);
- a revision whose digest is pinned in the configuration (``streams[].pinned``).

A pinned digest is protected everywhere: a digest is the same image in every
repository. The protected digests are the kept revisions' and the pinned ones,
closed over index → child manifest.

**Children of indexes** are not recorded in the state: the pruner reads each
distinct digest of the histories (and the pinned ones) from the mirror once per
run (one ``GET`` per digest, or a file read for an OCI layout) and keeps the
child digests of the indexes. A manifest missing from the mirror has no known
children. This costs a few requests per run, needs no schema change, and stays
correct for histories recorded before the pruner existed.

**Images of deleted streams** (``mirrord delete``) are the state's orphaned images,
pruned from their repository under the same rules (:mod:`._orphans`): old enough, not
protected by any kept revision, index or pin, their stream no longer configured.

**What a confirmed run does** (:func:`run_prune`), in this order so that a
failure leaves the metadata able to drive a retry:

1. ``pruneRegistry: true``: delete each pruned digest (and the children of a
   pruned index) that no kept revision, kept index or pin protects, nor a tag
   mirrord did not write names (:mod:`._foreign`), from the stream's mirror
   repository. 404 counts as already gone; 405 (deletes
   disabled) stops the run with a message telling the admin how to enable them.
2. Remove the pruned tag events from the state, then the records of the pruned
   (and adopted) orphaned images.
3. ``oci:`` mirror with ``pruneRegistry: true``: remove the blobs that nothing
   reachable from ``index.json`` or from a remaining revision needs (see
   :mod:`mirrord.transports`). A registry mirror reclaims blob storage with its
   own garbage collection (``docker-registry garbage-collect`` on Debian, ``registry
   garbage-collect`` in the upstream image).

``pruneRegistry: false`` prunes only the state. Every confirmed run is a
``prune`` job (history trimmed to the configured limits) and updates the
``pruner`` status conditions. Call :func:`run_prune` under the run lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio

from mirrord.config import Config, PruningConfig
from mirrord.core.imagestream import ImageStream, TagEvent
from mirrord.errors import MethodNotAllowedError, MirrordError, NotFoundError
from mirrord.prune._foreign import spare_foreign_tags
from mirrord.prune._mirror import mirror_repository, orphan_repository
from mirrord.prune._orphans import OrphanPlan, plan_orphans, retained, triage_orphans
from mirrord.prune._plan import PruneOverrides, PrunePlan, PruneSettings, plan_prune
from mirrord.state import Store
from mirrord.transports import (
    ClientPool,
    Destination,
    OCILayoutDestination,
    collect_garbage,
    open_destination,
    read_children,
)

log = logging.getLogger("mirrord.prune")

PRUNER = "pruner"
DELETES_DISABLED = "DeletesDisabled"

# --- running it -----------------------------------------------------------------------


@dataclass
class PruneResult:
    """What one prune run decided and did (a dry run only decides)."""

    dry_run: bool
    settings: PruneSettings
    mirror: str
    plan: PrunePlan = field(default_factory=PrunePlan)
    planned_manifests: list[tuple[str, str]] = field(default_factory=list)
    """``(repository, digest)`` the run deletes (or would) from the mirror."""
    manifests_deleted: list[tuple[str, str]] = field(default_factory=list)
    manifests_gone: list[tuple[str, str]] = field(default_factory=list)
    revisions_deleted: int = 0
    orphans: OrphanPlan = field(default_factory=OrphanPlan)
    """The images of deleted streams: pruned, kept (with why), adopted."""
    orphans_deleted: int = 0
    foreign_kept: list[tuple[str, str, str]] = field(default_factory=list)
    """``(repository, digest, tag)`` not deleted: a tag mirrord did not write names it."""
    blob_gc: bool = False
    blobs_deleted: int = 0
    bytes_freed: int = 0
    job_id: int | None = None
    reason: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason

    @property
    def streams_updated(self) -> int:
        return len(self.plan.streams)

    def counts(self) -> dict[str, int]:
        """The job's counts (what a dry run would do, what a confirmed run did)."""
        dry = self.dry_run
        return {
            "tagRevisions": len(self.plan.pruned) if dry else self.revisions_deleted,
            "manifests": len(self.planned_manifests) if dry else len(self.manifests_deleted),
            "manifestsAlreadyGone": len(self.manifests_gone),
            "manifestsKeptForForeignTags": len(self.foreign_kept),
            "streams": self.streams_updated if dry or self.revisions_deleted else 0,
            "orphanedImages": len(self.orphans.pruned) if dry else self.orphans_deleted,
            "blobs": self.blobs_deleted,
            "bytes": self.bytes_freed,
        }


async def run_prune(
    config: Config,
    store: Store,
    pool: ClientPool,
    *,
    confirm: bool,
    overrides: PruneOverrides | None = None,
    now: datetime | None = None,
) -> PruneResult:
    """One prune run; ``confirm=False`` only plans (no job, nothing changed).

    A confirmed run is recorded as a ``prune`` job, trims the job history and sets
    the pruner's conditions. Failures are in the result (``ok``, ``reason``,
    ``message``), not raised; cancellation is recorded, then re-raised.
    """
    settings = (overrides or PruneOverrides()).apply(config.pruning)
    result = PruneResult(dry_run=not confirm, settings=settings, mirror=str(config.mirror))
    if confirm:
        result.job_id = await store.start_job("prune")
    try:
        await _prune(config, store, pool, result, now or datetime.now(UTC))
    except MirrordError as error:
        result.reason = (
            DELETES_DISABLED if isinstance(error, MethodNotAllowedError) else error.reason
        )
        result.message = str(error)  # the caller reports it (CLI: stderr; daemon: its log)
    except BaseException as error:
        if result.job_id is not None:
            interrupted = isinstance(error, (anyio.get_cancelled_exc_class(), KeyboardInterrupt))
            result.reason = "Interrupted" if interrupted else "InternalError"
            result.message = "interrupted" if interrupted else f"{type(error).__name__}: {error}"
            with anyio.CancelScope(shield=True):
                await _finish(config, store, result)
        raise
    if result.job_id is not None:
        await _finish(config, store, result)
    return result


async def _finish(config: Config, store: Store, result: PruneResult) -> None:
    assert result.job_id is not None
    status = "Succeeded" if result.ok else "Failed"
    await store.finish_job(result.job_id, status, result.counts(), result.message[:2000])
    pruning = config.pruning
    await store.trim_jobs(
        "prune", pruning.successful_jobs_history_limit, pruning.failed_jobs_history_limit
    )
    await store.set_pruner_condition(
        PRUNER, "Available", "True", "AsExpected", "The pruner has run"
    )
    if result.ok:
        await store.set_pruner_condition(
            PRUNER, "Failed", "False", "Complete", "Pruner completed successfully"
        )
    else:
        await store.set_pruner_condition(PRUNER, "Failed", "True", result.reason, result.message)
    await update_schedule_condition(store, pruning)


async def update_schedule_condition(store: Store, pruning: PruningConfig) -> None:
    """``Scheduled``: True/Scheduled, or False/Suspended when ``suspend`` (as OpenShift)."""
    if pruning.suspend:
        await store.set_pruner_condition(
            PRUNER, "Scheduled", "False", "Suspended", "The pruner job has been suspended"
        )
    else:
        await store.set_pruner_condition(
            PRUNER,
            "Scheduled",
            "True",
            "Scheduled",
            f"The pruner job has been scheduled ({pruning.schedule})",
        )


async def _prune(
    config: Config, store: Store, pool: ClientPool, result: PruneResult, now: datetime
) -> None:
    settings = result.settings
    streams = await store.list_streams()
    orphans = await store.orphaned_images()
    destination = await open_destination(config, pool)
    repositories = {s.name: mirror_repository(destination, s) for s in streams}
    pinned = {d: destination.repository(s.to) for s in config.streams for d in s.pinned}
    decisions, adopted = triage_orphans(
        orphans,
        {(o.docker_image_repository, o.image): orphan_repository(destination, o) for o in orphans},
        live={(s.docker_image_repository, e.image) for s in streams for e in _events(s)},
        configured={s.name for s in config.streams},
        cutoff=now - timedelta(seconds=settings.keep_younger_than),
    )
    if not settings.prune_registry:  # the mirror is untouched: its orphans wait
        decisions = []
    locations: dict[str, list[str]] = {}
    for stream in streams:
        if (repository := repositories[stream.name]) is not None:
            for event in _events(stream):
                locations.setdefault(event.image, []).append(repository)
    where = [*pinned.items(), *((d.orphan.image, d.repository) for d in decisions)]
    for digest, repository in where:
        if repository is not None:
            locations.setdefault(digest, []).append(repository)
    children = await read_children(destination, locations)
    plan = plan_prune(
        streams,
        keep_tag_revisions=settings.keep_tag_revisions,
        keep_younger_than=settings.keep_younger_than,
        now=now,
        pinned=pinned,
        children=children,
        retained=retained(decisions),
    )
    result.plan = plan
    if settings.prune_registry:
        result.planned_manifests = [
            (repo, digest)
            for stream, digest in plan.manifests
            if (repo := repositories.get(stream)) is not None
        ]
    result.orphans = plan_orphans(
        decisions,
        adopted,
        protected=plan.protected,
        children=children,
        planned=result.planned_manifests,
    )
    result.planned_manifests += result.orphans.manifests
    result.planned_manifests, result.foreign_kept = await spare_foreign_tags(
        destination, result.planned_manifests, _known_tags(streams, repositories), children
    )
    roots = {r.digest for r in plan.kept} | set(pinned) | retained(result.orphans.kept)
    await _apply(destination, store, result, roots)


def _known_tags(
    streams: list[ImageStream], repositories: dict[str, str | None]
) -> dict[str, set[str]]:
    """Per live stream's mirror repository, the tags mirrord records there."""
    known: dict[str, set[str]] = {}
    for stream in streams:
        if (repository := repositories[stream.name]) is not None:
            known.setdefault(repository, set()).update(t.tag for t in stream.tags)
    return known


def _events(stream: ImageStream) -> Iterator[TagEvent]:
    return (e for tag in stream.tags for e in tag.items)


async def _apply(
    destination: Destination, store: Store, result: PruneResult, roots: set[str]
) -> None:
    """Carry the plan out (a dry run: only the layout's garbage count), in the order of
    the module docstring; the orphans' records go last, once their manifests are gone."""
    layout = destination if isinstance(destination, OCILayoutDestination) else None
    result.blob_gc = layout is not None and result.settings.prune_registry
    if result.dry_run:
        if layout is not None and result.blob_gc:
            await _collect(layout, result, roots, dry_run=True)
        return
    if result.settings.prune_registry:
        await _delete_manifests(destination, result)
    result.revisions_deleted = await _delete_revisions(store, result.plan)
    orphans = result.orphans
    result.orphans_deleted = await store.forget_orphaned_images([d.key for d in orphans.pruned])
    await store.forget_orphaned_images(
        [(o.docker_image_repository, o.image) for o in orphans.adopted]
    )
    if layout is not None and result.blob_gc:
        await _collect(layout, result, roots, dry_run=False)


async def _collect(
    layout: OCILayoutDestination, result: PruneResult, roots: set[str], *, dry_run: bool
) -> None:
    dropped = set(result.planned_manifests) if dry_run else set()
    removed, freed = await collect_garbage(layout, roots, dropped=dropped, dry_run=dry_run)
    result.blobs_deleted, result.bytes_freed = len(removed), freed
    if not dry_run:  # a manifest whose file went is deleted, even if no tag named it
        gone = [m for m in result.manifests_gone if m[1] in removed]
        result.manifests_deleted += gone
        result.manifests_gone = [m for m in result.manifests_gone if m not in gone]


async def _delete_manifests(destination: Destination, result: PruneResult) -> None:
    # The state's blob locations (where sync mounts blobs from) are left as they are: the
    # registry's garbage collection may remove blobs of these manifests, and a mount from
    # such a stale location answers 202, the blob is then uploaded in that session.
    for repository, digest in result.planned_manifests:
        try:
            await destination.delete_manifest(repository, digest)
        except NotFoundError:
            result.manifests_gone.append((repository, digest))
            continue
        except MethodNotAllowedError as error:
            raise MethodNotAllowedError(
                f"the mirror registry refused to delete {repository}@{digest} "
                "(405 Method Not Allowed): deletes are disabled there. "
                "Set `storage.delete.enabled: true` in the registry's configuration "
                "(config.yml) and restart it, or set `pruning.pruneRegistry: false` "
                "(--no-prune-registry) to prune only mirrord's metadata",
                registry=error.registry,
                status=405,
                code=error.code,
            ) from error
        result.manifests_deleted.append((repository, digest))
        log.info("deleted %s@%s from the mirror", repository, digest)


async def _delete_revisions(store: Store, plan: PrunePlan) -> int:
    by_tag: dict[tuple[str, str], list[TagEvent]] = {}
    for revision in plan.pruned:
        by_tag.setdefault((revision.stream, revision.tag), []).append(revision.event)
    deleted = 0
    for (stream, tag), events in by_tag.items():
        deleted += await store.delete_tag_events(stream, tag, events)
    return deleted

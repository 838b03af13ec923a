"""Which images of deleted streams the pruner removes from the mirror. Pure.

``mirrord delete`` forgets a stream and its history but leaves its images in the mirror;
the state keeps each one as an :class:`~mirrord.state.OrphanedImage` (its repository,
digest, the newest time a tag recorded it). The pruner treats an orphan as a revision
no tag keeps, with the same safety rules:

- older than ``keepYoungerThanDuration`` only (measured from the newest tag event that
  recorded it, as a revision's age is);
- never a digest a kept revision, a kept index or a pin protects, in any stream
  (:func:`~mirrord.prune.plan_prune`'s protected set): a shared image stays;
- never while its stream is still configured (the next sync recreates the stream and
  takes the image back), nor when it was mirrored to another mirror;
- an orphan a live stream's history records again in the same repository is *adopted*:
  its record goes and that stream's own revisions decide the image's fate.

A kept orphan protects what it references (its index's children) from the run's other
deletions; its record stays for a later run. A pruned orphan's record goes once its
manifests are deleted (or already gone).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mirrord.prune._plan import KEPT_YOUNG, descendants
from mirrord.state import OrphanedImage

KEPT_CONFIGURED = "its stream is still configured"
KEPT_ELSEWHERE = "mirrored to another mirror"
KEPT_SHARED = "in use by a kept revision or index"


@dataclass(frozen=True)
class OrphanDecision:
    """One orphan: its repository in this mirror (None: another mirror's) and why it is
    kept (empty: pruned)."""

    orphan: OrphanedImage
    repository: str | None
    kept_because: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """How the state names it: ``(docker_image_repository, image)``."""
        return self.orphan.docker_image_repository, self.orphan.image


@dataclass(frozen=True)
class OrphanPlan:
    """Every orphan pruned or kept, the adopted ones, and the ``(repository, digest)``
    manifests to delete (each index before its children)."""

    pruned: tuple[OrphanDecision, ...] = ()
    kept: tuple[OrphanDecision, ...] = ()
    adopted: tuple[OrphanedImage, ...] = ()
    manifests: tuple[tuple[str, str], ...] = ()


def triage_orphans(
    orphans: Iterable[OrphanedImage],
    repositories: Mapping[tuple[str, str], str | None],
    *,
    live: Collection[tuple[str, str]],
    configured: Collection[str],
    cutoff: datetime,
) -> tuple[list[OrphanDecision], list[OrphanedImage]]:
    """The first pass, before the revisions are planned: each orphan kept for its own
    reasons (configured, elsewhere, young) or a candidate, and the adopted ones.

    ``repositories`` maps an orphan's key to its repository here; ``live`` holds the
    ``(docker_image_repository, digest)`` pairs the live streams' histories record.
    """
    decided: list[OrphanDecision] = []
    adopted: list[OrphanedImage] = []
    for orphan in orphans:
        key = (orphan.docker_image_repository, orphan.image)
        if key in live:
            adopted.append(orphan)
            continue
        repository = repositories.get(key)
        reason = (
            KEPT_ELSEWHERE
            if repository is None
            else KEPT_CONFIGURED
            if orphan.stream in configured
            else KEPT_YOUNG
            if orphan.created > cutoff
            else ""
        )
        decided.append(OrphanDecision(orphan, repository, reason))
    return decided, adopted


def retained(decisions: Iterable[OrphanDecision]) -> set[str]:
    """The digests of the orphans kept for their own reasons: the revisions' plan
    protects them and what they reference."""
    return {d.orphan.image for d in decisions if d.kept_because}


def plan_orphans(
    decisions: Sequence[OrphanDecision],
    adopted: Sequence[OrphanedImage],
    *,
    protected: Collection[str],
    children: Mapping[str, Sequence[str]],
    planned: Collection[tuple[str, str]] = (),
) -> OrphanPlan:
    """The second pass: a candidate whose digest ``protected`` holds (the revisions'
    plan: kept revisions, pins, kept orphans, closed over index children) is kept; the
    others are pruned with their unprotected children. ``planned``: manifests the
    revisions' plan already deletes (not listed twice)."""
    kept: list[OrphanDecision] = []
    pruned: list[OrphanDecision] = []
    for decision in decisions:
        if decision.kept_because:
            kept.append(decision)
        elif decision.orphan.image in protected:
            kept.append(OrphanDecision(decision.orphan, decision.repository, KEPT_SHARED))
        else:
            pruned.append(decision)
    manifests: dict[tuple[str, str], None] = {}
    seen = set(planned)
    for decision in pruned:
        assert decision.repository is not None  # triage keeps the others' mirrors
        for digest in descendants(decision.orphan.image, children):
            item = (decision.repository, digest)
            if digest not in protected and item not in seen:
                seen.add(item)
                manifests[item] = None
    return OrphanPlan(tuple(pruned), tuple(kept), tuple(adopted), tuple(manifests))

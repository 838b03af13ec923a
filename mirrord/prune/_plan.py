"""Which tag revisions the pruner removes (``oc adm prune images`` rules). Pure.

See :mod:`mirrord.prune` for the rules; this module only decides, from the
histories, the settings, the pinned digests and the index → children map.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mirrord.config import PruningConfig
from mirrord.core.imagestream import ImageStream, TagEvent

KEPT_CURRENT = "current"
KEPT_REVISIONS = "keepTagRevisions"
KEPT_YOUNG = "keepYoungerThan"
KEPT_PINNED = "pinned"
KEPT_IN_USE = "in use by a kept revision"
KEPT_REFERENCED = "referenced by a kept index"
KEPT_RETAINED = "in use by a kept image of a deleted stream"


@dataclass(frozen=True)
class PruneSettings:
    """The effective ImagePruner settings of one run (``keep_younger_than`` in seconds)."""

    keep_tag_revisions: int
    keep_younger_than: float
    prune_registry: bool


@dataclass(frozen=True)
class PruneOverrides:
    """Command-line values that replace the configuration's (None: keep the config's)."""

    keep_tag_revisions: int | None = None
    keep_younger_than: float | None = None
    prune_registry: bool | None = None

    def apply(self, pruning: PruningConfig) -> PruneSettings:
        keep, young, registry = self.keep_tag_revisions, self.keep_younger_than, self.prune_registry
        return PruneSettings(
            keep_tag_revisions=pruning.keep_tag_revisions if keep is None else keep,
            keep_younger_than=pruning.keep_younger_than if young is None else young,
            prune_registry=pruning.prune_registry if registry is None else registry,
        )


@dataclass(frozen=True)
class Revision:
    """``items[index]`` of a tag; ``kept_because`` is empty when it is pruned."""

    stream: str
    tag: str
    index: int
    event: TagEvent
    kept_because: str = ""

    @property
    def digest(self) -> str:
        return self.event.image


@dataclass(frozen=True)
class PrunePlan:
    """Every revision, pruned or kept (with why), the protected digests, and the
    ``(stream, digest)`` manifests to delete from the mirror, each index before its
    children."""

    pruned: tuple[Revision, ...] = ()
    kept: tuple[Revision, ...] = ()
    protected: frozenset[str] = frozenset()
    manifests: tuple[tuple[str, str], ...] = ()

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams that lose at least one revision."""
        return tuple(sorted({r.stream for r in self.pruned}))


def closure(roots: Iterable[str], children: Mapping[str, Sequence[str]]) -> set[str]:
    """``roots`` and every manifest they reference, transitively."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        digest = stack.pop()
        if digest not in seen:
            seen.add(digest)
            stack.extend(children.get(digest, ()))
    return seen


def descendants(digest: str, children: Mapping[str, Sequence[str]]) -> list[str]:
    """``digest`` then its children, depth first (parents before children), once each."""
    order: list[str] = []
    stack = [digest]
    while stack:
        current = stack.pop()
        if current not in order:
            order.append(current)
            stack.extend(reversed(children.get(current, ())))
    return order


def _first_reason(index: int, event: TagEvent, keep: int, cutoff: datetime) -> str:
    if index == 0:
        return KEPT_CURRENT
    if index < keep:
        return KEPT_REVISIONS
    if event.created > cutoff:
        return KEPT_YOUNG
    return ""


def plan_prune(
    streams: Iterable[ImageStream],
    *,
    keep_tag_revisions: int,
    keep_younger_than: float,
    now: datetime,
    pinned: Collection[str] = (),
    children: Mapping[str, Sequence[str]] | None = None,
    retained: Collection[str] = (),
) -> PrunePlan:
    """Decide every revision of every tag (see the module docstring). Pure.

    ``children`` maps an index digest to its child manifest digests; ``retained``:
    digests of deleted streams' images the run keeps (:mod:`._orphans`), protected
    with what they reference.
    """
    children = children or {}
    cutoff = now - timedelta(seconds=keep_younger_than)
    decided = [
        Revision(s.name, t.tag, i, e, _first_reason(i, e, keep_tag_revisions, cutoff))
        for s in streams
        for t in s.tags
        for i, e in enumerate(t.items)
    ]
    in_use = {r.digest for r in decided if r.kept_because}
    pins = set(pinned)
    kept_orphans = closure(retained, children)
    protected = frozenset(closure(in_use | pins, children) | kept_orphans)
    kept: list[Revision] = []
    pruned: list[Revision] = []
    for revision in decided:
        reason = revision.kept_because or (
            KEPT_PINNED
            if revision.digest in pins
            else KEPT_IN_USE
            if revision.digest in in_use
            else KEPT_RETAINED
            if revision.digest in kept_orphans
            else KEPT_REFERENCED
            if revision.digest in protected
            else ""
        )
        if reason:
            kept.append(
                Revision(revision.stream, revision.tag, revision.index, revision.event, reason)
            )
        else:
            pruned.append(revision)
    manifests: dict[tuple[str, str], None] = {}
    for revision in pruned:
        for digest in descendants(revision.digest, children):
            if digest not in protected:
                manifests[(revision.stream, digest)] = None
    return PrunePlan(tuple(pruned), tuple(kept), protected, tuple(manifests))

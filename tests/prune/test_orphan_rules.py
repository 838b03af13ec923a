"""The rules for the images of deleted streams (prune/_orphans.py), in memory. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mirrord.core.imagestream import ImageStream, TagEvent, TagStatus
from mirrord.prune import (
    KEPT_CONFIGURED,
    KEPT_ELSEWHERE,
    KEPT_RETAINED,
    KEPT_SHARED,
    KEPT_YOUNG,
    plan_prune,
)
from mirrord.prune._orphans import plan_orphans, retained, triage_orphans
from mirrord.state import OrphanedImage

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(hours=1)
HERE = "mirror.local/old"


def d(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


def orphan(
    label: str, *, age: float = 2.0, stream: str = "old", where: str = HERE
) -> OrphanedImage:
    return OrphanedImage(stream, where, d(label), NOW - timedelta(hours=age), NOW)


def live(name: str, **tags: list[tuple[str, float]]) -> ImageStream:
    return ImageStream(
        name=name,
        docker_image_repository=f"mirror.local/{name}",
        source=f"quay.io/{name}",
        generation=1,
        tags=tuple(
            TagStatus(
                tag,
                tuple(
                    TagEvent(NOW - timedelta(hours=age), f"quay.io/x@{d(lb)}", d(lb), 1)
                    for lb, age in items
                ),
            )
            for tag, items in tags.items()
        ),
        scheduled=True,
        import_mode="PreserveOriginal",
        reference_policy="Source",
        created=NOW - timedelta(days=3),
    )


def repositories(*orphans: OrphanedImage) -> dict[tuple[str, str], str | None]:
    return {
        (o.docker_image_repository, o.image): "old" if o.docker_image_repository == HERE else None
        for o in orphans
    }


def test_triage_reasons_in_order_and_adoption() -> None:
    found = [
        orphan("a"),
        orphan("young", age=0.5),
        orphan("conf", stream="conf"),
        orphan("far", where="other.host/old"),
        orphan("back"),
    ]
    decisions, adopted = triage_orphans(
        found,
        repositories(*found),
        live={(HERE, d("back"))},
        configured={"conf"},
        cutoff=CUTOFF,
    )
    assert [(x.orphan.image, x.kept_because) for x in decisions] == [
        (d("a"), ""),
        (d("young"), KEPT_YOUNG),
        (d("conf"), KEPT_CONFIGURED),
        (d("far"), KEPT_ELSEWHERE),
    ]
    assert adopted == [found[-1]]


def test_a_kept_orphan_protects_its_children_from_a_live_streams_pruning() -> None:
    """The young orphaned index `idx` references `child`, an old revision of a live
    stream: the revision stays (and so its manifest) while the orphan is kept."""
    stream = live("app", t=[("new", 0.0), ("child", 5.0)])
    children = {d("idx"): (d("child"),)}
    decisions, _ = triage_orphans(
        [orphan("idx", age=0.1)],
        repositories(orphan("idx")),
        live=set(),
        configured=(),
        cutoff=CUTOFF,
    )
    keep = retained(decisions)
    plan = plan_prune(
        [stream],
        keep_tag_revisions=1,
        keep_younger_than=0,
        now=NOW,
        children=children,
        retained=keep,
    )
    assert plan.pruned == ()
    assert [r.kept_because for r in plan.kept] == ["current", KEPT_RETAINED]
    # without the orphan, the old revision goes
    alone = plan_prune([stream], keep_tag_revisions=1, keep_younger_than=0, now=NOW)
    assert [r.digest for r in alone.pruned] == [d("child")]


def test_plan_orphans_skips_protected_digests_and_children() -> None:
    found = [orphan("idx"), orphan("shared"), orphan("solo")]
    decisions, adopted = triage_orphans(
        found, repositories(*found), live=set(), configured=(), cutoff=CUTOFF
    )
    children = {d("idx"): (d("arm"), d("amd")), d("solo"): ()}

    plan = plan_orphans(
        decisions,
        adopted,
        protected={d("shared"), d("amd")},
        children=children,
        planned=[("old", d("solo"))],  # the revisions' plan deletes it already
    )

    assert [x.orphan.image for x in plan.pruned] == [d("idx"), d("solo")]
    assert [(x.orphan.image, x.kept_because) for x in plan.kept] == [(d("shared"), KEPT_SHARED)]
    assert plan.manifests == (("old", d("idx")), ("old", d("arm")))

"""The pruning rules (`oc adm prune images`), on histories built in memory. Pure."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from mirrord.config import PruningConfig
from mirrord.core.imagestream import ImageStream, TagEvent, TagStatus
from mirrord.prune import (
    KEPT_CURRENT,
    KEPT_IN_USE,
    KEPT_PINNED,
    KEPT_REFERENCED,
    KEPT_REVISIONS,
    KEPT_YOUNG,
    PruneOverrides,
    PrunePlan,
    PruneSettings,
    closure,
    plan_prune,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
HOUR = 3600.0


def d(name: str) -> str:
    """A digest named by a short label (distinct labels, distinct digests)."""
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


def history(*items: tuple[str, float]) -> tuple[TagEvent, ...]:
    """Newest first: (digest label, age in hours)."""
    return tuple(
        TagEvent(NOW - timedelta(hours=age), f"quay.io/a/b@{d(label)}", d(label), 1)
        for label, age in items
    )


def stream(name: str, **tags: tuple[TagEvent, ...]) -> ImageStream:
    return ImageStream(
        name=name,
        docker_image_repository=f"mirror.local/{name}",
        source=f"quay.io/{name}",
        generation=1,
        tags=tuple(TagStatus(tag, items) for tag, items in tags.items()),
        scheduled=True,
        import_mode="PreserveOriginal",
        reference_policy="Source",
        created=NOW - timedelta(days=30),
    )


def plan(
    *streams: ImageStream,
    keep: int = 3,
    young: float = 0.0,
    pinned: Collection[str] = (),
    children: Mapping[str, Sequence[str]] | None = None,
) -> PrunePlan:
    return plan_prune(
        streams,
        keep_tag_revisions=keep,
        keep_younger_than=young,
        now=NOW,
        pinned=pinned,
        children=children,
    )


def pruned(p: PrunePlan) -> list[tuple[str, str, int]]:
    return [(r.stream, r.tag, r.index) for r in p.pruned]


def reasons(p: PrunePlan) -> dict[tuple[str, str, int], str]:
    return {(r.stream, r.tag, r.index): r.kept_because for r in p.kept}


LONG = history(("e", 1), ("d", 2), ("c", 3), ("b", 4), ("a", 5))


def test_revisions_beyond_keep_tag_revisions_and_old_enough_go() -> None:
    p = plan(stream("s", latest=LONG), keep=2)
    assert pruned(p) == [("s", "latest", 2), ("s", "latest", 3), ("s", "latest", 4)]
    assert reasons(p) == {("s", "latest", 0): KEPT_CURRENT, ("s", "latest", 1): KEPT_REVISIONS}
    assert p.manifests == (("s", d("c")), ("s", d("b")), ("s", d("a")))
    assert p.streams == ("s",)


def test_young_revisions_stay_whatever_their_position() -> None:
    p = plan(stream("s", latest=LONG), keep=1, young=3.5 * HOUR)
    assert pruned(p) == [("s", "latest", 3), ("s", "latest", 4)]
    assert reasons(p)[("s", "latest", 2)] == KEPT_YOUNG


def test_exactly_as_old_as_the_limit_is_pruned_like_oc() -> None:
    # oc keeps an image only when it was created *after* now - keepYoungerThan.
    p = plan(stream("s", latest=LONG), keep=1, young=4 * HOUR)
    assert pruned(p) == [("s", "latest", 3), ("s", "latest", 4)]


def test_the_current_revision_stays_even_with_keep_zero() -> None:
    p = plan(stream("s", latest=history(("q", 100)), other=LONG), keep=0)
    assert reasons(p) == {("s", "latest", 0): KEPT_CURRENT, ("s", "other", 0): KEPT_CURRENT}
    assert len(p.pruned) == 4


def test_nothing_to_prune_is_an_empty_plan() -> None:
    p = plan(stream("s", latest=LONG), keep=5)
    assert (p.pruned, p.manifests, p.streams) == ((), (), ())
    assert p.protected == {d(x) for x in "abcde"}


def test_a_digest_another_tag_still_uses_is_kept() -> None:
    a = history(("z", 1), ("y", 2), ("x", 3))
    b = history(("x", 3))
    p = plan(stream("s", a=a, b=b), keep=1)
    assert pruned(p) == [("s", "a", 1)]
    assert reasons(p)[("s", "a", 2)] == KEPT_IN_USE
    assert p.manifests == (("s", d("y")),)


def test_a_digest_used_by_another_stream_is_kept() -> None:
    one = stream("one", latest=history(("new", 1), ("shared", 9)))
    two = stream("two", latest=history(("shared", 9)))
    p = plan(one, two, keep=1)
    assert p.pruned == ()
    assert reasons(p)[("one", "latest", 1)] == KEPT_IN_USE


def test_once_no_kept_revision_needs_it_the_digest_goes_everywhere() -> None:
    one = stream("one", latest=history(("new", 1), ("shared", 9)))
    two = stream("two", latest=history(("other", 1), ("shared", 9)))
    p = plan(one, two, keep=1)
    assert pruned(p) == [("one", "latest", 1), ("two", "latest", 1)]
    assert p.manifests == (("one", d("shared")), ("two", d("shared")))
    assert p.streams == ("one", "two")


def test_a_tag_moved_back_keeps_its_old_event_of_the_same_digest() -> None:
    p = plan(stream("s", latest=history(("a", 1), ("b", 2), ("a", 3))), keep=1)
    assert pruned(p) == [("s", "latest", 1)]
    assert reasons(p)[("s", "latest", 2)] == KEPT_IN_USE


def test_the_same_pruned_digest_in_two_tags_is_deleted_once_per_stream() -> None:
    p = plan(
        stream("s", a=history(("a1", 1), ("old", 9)), b=history(("b1", 1), ("old", 9))), keep=1
    )
    assert len(p.pruned) == 2
    assert p.manifests == (("s", d("old")),)


def test_pinned_digests_are_never_pruned() -> None:
    p = plan(stream("s", latest=LONG), keep=1, pinned={d("b")})
    assert pruned(p) == [("s", "latest", 1), ("s", "latest", 2), ("s", "latest", 4)]
    assert reasons(p)[("s", "latest", 3)] == KEPT_PINNED
    assert ("s", d("b")) not in p.manifests
    assert d("b") in p.protected


def test_children_of_a_pruned_index_go_unless_a_kept_index_references_them() -> None:
    children = {d("i1"): [d("amd64"), d("arm-1")], d("i2"): [d("amd64"), d("arm-2")]}
    p = plan(stream("s", latest=history(("i2", 1), ("i1", 2))), keep=1, children=children)
    assert pruned(p) == [("s", "latest", 1)]
    # The index first, then its children; the shared platform manifest stays.
    assert p.manifests == (("s", d("i1")), ("s", d("arm-1")))
    assert {d("i2"), d("amd64"), d("arm-2")} <= p.protected


def test_a_revision_of_a_platform_manifest_that_a_kept_index_references_is_kept() -> None:
    # A Legacy stream recorded one platform of the index another stream keeps whole.
    whole = stream("whole", latest=history(("idx", 1)))
    legacy = stream("legacy", latest=history(("new", 1), ("amd64", 5)))
    p = plan(whole, legacy, keep=1, children={d("idx"): [d("amd64"), d("arm64")]})
    assert p.pruned == ()
    assert reasons(p)[("legacy", "latest", 1)] == KEPT_REFERENCED


def test_a_pinned_index_keeps_its_children() -> None:
    children = {d("idx"): [d("amd64")]}
    s = stream("s", latest=history(("new", 1), ("idx", 5), ("amd64", 6)))
    p = plan(s, keep=1, pinned={d("idx")}, children=children)
    assert p.pruned == ()
    assert reasons(p)[("s", "latest", 2)] == KEPT_REFERENCED


def test_nested_indexes_are_followed() -> None:
    children = {d("outer"): [d("inner")], d("inner"): [d("leaf")]}
    assert closure([d("outer")], children) == {d("outer"), d("inner"), d("leaf")}
    p = plan(stream("s", latest=history(("new", 1), ("outer", 5))), keep=1, children=children)
    assert p.manifests == (("s", d("outer")), ("s", d("inner")), ("s", d("leaf")))


def test_removed_tags_keep_their_current_revision() -> None:
    s = stream("s", gone=history(("a", 9), ("b", 10)))
    s = ImageStream(**{**vars(s), "tags": (TagStatus("gone", s.tags[0].items, removed_at=NOW),)})
    p = plan(s, keep=0)
    assert pruned(p) == [("s", "gone", 1)]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (PruneOverrides(), PruneSettings(3, 3600.0, True)),
        (PruneOverrides(0, 0.0, False), PruneSettings(0, 0.0, False)),
        (PruneOverrides(keep_tag_revisions=7), PruneSettings(7, 3600.0, True)),
        (PruneOverrides(prune_registry=False), PruneSettings(3, 3600.0, False)),
    ],
)
def test_overrides_replace_only_what_they_set(
    overrides: PruneOverrides, expected: PruneSettings
) -> None:
    assert overrides.apply(PruningConfig()) == expected

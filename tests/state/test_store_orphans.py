"""The store contract for the images of deleted streams (``orphaned_images``), on both
backends: `delete_stream` records them in its transaction, the pruner reads and forgets
them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from harness.storetools import Backend

from mirrord.core.imagestream import StreamSpec
from mirrord.state import OrphanedImage, Store

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SRC = "registry.redhat.io/ubi9/ubi"
MIRROR = "127.0.0.1:5000/mirror/ubi9/ubi"
OTHER = "127.0.0.1:5000/mirror/other"


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


async def history(store: Store, name: str, mirror: str, tags: dict[str, list[int]]) -> None:
    """A stream whose tags recorded these images, oldest first, an hour apart."""
    await store.upsert_stream(StreamSpec(name, SRC, mirror), now=T0)
    hour = 0
    for tag, images in tags.items():
        for n in images:
            hour += 1
            at = T0 + timedelta(hours=hour)
            await store.record_tag_import(name, tag, digest(n), f"{SRC}@{digest(n)}", now=at)


@pytest.mark.anyio
async def test_delete_stream_records_each_image_once_with_its_newest_time(
    backend: Backend, store: Store
) -> None:
    # digest 2 is in both tags: one orphan, with the later event's time (hour 4)
    await history(store, "ubi9/ubi", MIRROR, {"9.4": [1, 2], "latest": [3, 2]})
    await history(store, "other", OTHER, {"x": [1]})
    gone = T0 + timedelta(days=1)

    assert await store.delete_stream("ubi9/ubi", now=gone) is True

    found = await store.orphaned_images()
    assert found == [
        OrphanedImage("ubi9/ubi", MIRROR, digest(1), T0 + timedelta(hours=1), gone),
        OrphanedImage("ubi9/ubi", MIRROR, digest(2), T0 + timedelta(hours=4), gone),
        OrphanedImage("ubi9/ubi", MIRROR, digest(3), T0 + timedelta(hours=3), gone),
    ]
    assert await store.get_stream("other") is not None  # another stream's images stay its own
    assert backend.count("tag_events") == 1 and backend.problems() == []
    assert await store.delete_stream("ubi9/ubi", now=gone) is False
    assert len(await store.orphaned_images()) == 3  # a second delete adds nothing


@pytest.mark.anyio
async def test_a_recreated_and_deleted_stream_keeps_one_row_per_image(store: Store) -> None:
    await history(store, "ubi9/ubi", MIRROR, {"9.4": [1]})
    await store.delete_stream("ubi9/ubi", now=T0 + timedelta(days=1))
    await history(store, "ubi9/ubi", MIRROR, {"9.4": [1, 5]})  # hours 1, 2
    later = T0 + timedelta(days=2)

    await store.delete_stream("ubi9/ubi", now=later)

    found = {o.image: o for o in await store.orphaned_images()}
    assert sorted(found) == [digest(1), digest(5)]
    assert found[digest(1)].orphaned == later
    assert found[digest(5)].created == T0 + timedelta(hours=2)


@pytest.mark.anyio
async def test_forget_orphaned_images(store: Store) -> None:
    await history(store, "a", MIRROR, {"t": [1, 2]})
    await history(store, "b", OTHER, {"t": [1]})
    await store.delete_stream("a", now=T0)
    await store.delete_stream("b", now=T0)
    assert len(await store.orphaned_images()) == 3

    # (repository, digest) pairs: digest 1 of the other repository stays
    assert await store.forget_orphaned_images([(MIRROR, digest(1)), (MIRROR, digest(9))]) == 1
    assert await store.forget_orphaned_images([(MIRROR, digest(1))]) == 0

    left = [(o.docker_image_repository, o.image) for o in await store.orphaned_images()]
    assert left == [(OTHER, digest(1)), (MIRROR, digest(2))]  # by repository, bytewise


@pytest.mark.anyio
async def test_deleting_a_stream_without_history_orphans_nothing(store: Store) -> None:
    await store.upsert_stream(StreamSpec("empty", SRC, MIRROR), now=T0)
    assert await store.delete_stream("empty") is True
    assert await store.orphaned_images() == []

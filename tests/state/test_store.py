"""The state store contract: every Store method, the same results on SQLite and PostgreSQL.

Each test takes `store` (or `backend`, for a second store on the same state) and so
runs once per backend (tests/state/conftest.py). Locks, crashes and several
processes: test_store_locks.py; jobs, the outbox and pruner conditions:
test_store_jobs.py; leases, blob claims and outbox claims between workers:
test_store_sharing.py.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from harness.storetools import Backend

from mirrord.core.imagestream import IMPORT_SUCCESS, StreamSpec, to_openshift
from mirrord.errors import StateError
from mirrord.state import Store

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SRC = "registry.redhat.io/ubi9/ubi"
MIRROR = "127.0.0.1:5000/mirror/ubi9/ubi"
SPEC = StreamSpec("ubi9/ubi", SRC, MIRROR)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


# -- opening ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_reopen_keeps_data(backend: Backend) -> None:
    first = backend.open()
    await first.upsert_stream(SPEC, now=T0)
    await first.record_tag_import("ubi9/ubi", "9.4", digest(1), f"{SRC}@{digest(1)}", now=T0)
    first.close()
    for _ in range(2):
        again = backend.open()
        tag = await again.get_tag("ubi9/ubi", "9.4")
        assert tag is not None
        assert tag.items[0].image == digest(1)
        again.close()


def test_concurrent_first_open_migrates_once(backend: Backend) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    stores: list[Store] = []

    def opener() -> None:
        barrier.wait()
        try:
            stores.append(backend.open())
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(stores) == 4


@pytest.mark.anyio
async def test_closed_store_refuses(backend: Backend) -> None:
    s = backend.open()
    await s.aclose()
    with pytest.raises(StateError, match="closed"):
        await s.list_streams()
    with pytest.raises(StateError, match="closed"):
        await s.start_job("sync")


def test_store_names_itself_and_its_worker(backend: Backend) -> None:
    store = backend.open(worker="w-1")
    assert store.worker == "w-1"
    assert store.location in repr(store)
    default = backend.open()
    assert default.worker.endswith(f":{os.getpid()}")  # host:pid


# -- image streams and tags ------------------------------------------------------------


@pytest.mark.anyio
async def test_upsert_bumps_generation_only_on_spec_change(store: Store) -> None:
    created = await store.upsert_stream(SPEC, now=T0)
    assert (created.generation, created.created, created.created_by) == (1, T0, "config")
    same = await store.upsert_stream(StreamSpec("ubi9/ubi", SRC, MIRROR, created_by="import-image"))
    assert same.generation == 1
    assert same.created_by == "import-image"
    changed = await store.upsert_stream(StreamSpec("ubi9/ubi", SRC, MIRROR, import_mode="Legacy"))
    assert changed.generation == 2
    assert changed.import_mode == "Legacy"
    assert changed.created == T0
    assert await store.bump_generation("ubi9/ubi") == 3
    with pytest.raises(StateError, match="unknown image stream"):
        await store.bump_generation("nope")


@pytest.mark.anyio
async def test_mark_synced_is_kept_per_stream_and_survives_a_spec_change(
    store: Store,
) -> None:
    await store.upsert_stream(SPEC, now=T0)
    await store.upsert_stream(StreamSpec("other", SRC, MIRROR), now=T0)
    assert (await store.get_stream("ubi9/ubi")).last_synced is None  # type: ignore[union-attr]
    later = T0 + timedelta(hours=1)
    await store.mark_synced("ubi9/ubi", now=later)
    await store.upsert_stream(StreamSpec("ubi9/ubi", SRC, MIRROR, import_mode="Legacy"))
    synced = {s.name: s.last_synced for s in await store.list_streams()}
    assert synced == {"ubi9/ubi": later, "other": None}


@pytest.mark.anyio
async def test_a_stream_failure_keeps_its_time_until_it_changes_or_clears(
    store: Store,
) -> None:
    await store.upsert_stream(SPEC, now=T0)
    later = T0 + timedelta(minutes=5)
    await store.set_stream_failure("ubi9/ubi", "Unauthorized", "401 from quay.io", now=T0)
    await store.set_stream_failure("ubi9/ubi", "Unauthorized", "401 from quay.io", now=later)
    failure = (await store.get_stream("ubi9/ubi")).failure  # type: ignore[union-attr]
    assert failure is not None
    assert (failure.reason, failure.last_transition_time) == ("Unauthorized", T0)
    await store.set_stream_failure("ubi9/ubi", "NotFound", "no such repository", now=later)
    failure = (await store.get_stream("ubi9/ubi")).failure  # type: ignore[union-attr]
    assert failure is not None and failure.last_transition_time == later
    await store.set_stream_failure("ubi9/ubi", None)
    assert (await store.get_stream("ubi9/ubi")).failure is None  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_tag_import_history_through_the_store(store: Store) -> None:
    await store.upsert_stream(SPEC, now=T0)
    r1 = await store.record_tag_import("ubi9/ubi", "9.4", digest(1), f"{SRC}@{digest(1)}", now=T0)
    assert (r1.changed, r1.previous_digest) == (True, None)
    later = T0 + timedelta(hours=1)
    r2 = await store.record_tag_import(
        "ubi9/ubi", "9.4", digest(1), f"{SRC}@{digest(1)}", now=later
    )
    assert (r2.changed, r2.previous_digest) == (False, digest(1))
    await store.bump_generation("ubi9/ubi")
    r3 = await store.record_tag_import(
        "ubi9/ubi", "9.4", digest(2), f"{SRC}@{digest(2)}", now=later
    )
    assert (r3.changed, r3.previous_digest) == (True, digest(1))
    tag = await store.get_tag("ubi9/ubi", "9.4")
    assert tag is not None
    assert [(e.image, e.generation, e.created) for e in tag.items] == [
        (digest(2), 2, later),
        (digest(1), 1, T0),
    ]
    assert tag == r3.status
    with pytest.raises(StateError, match="unknown image stream"):
        await store.record_tag_import("nope", "x", digest(1), "r")
    assert await store.get_tag("ubi9/ubi", "missing") is None
    assert await store.get_tag("nope", "9.4") is None


@pytest.mark.anyio
async def test_source_digest_round_trips(backend: Backend) -> None:
    index, platform = digest(0xA), digest(0xB)
    store = backend.open()
    try:
        await store.upsert_stream(StreamSpec("ubi9/ubi", SRC, MIRROR, import_mode="Legacy"))
        legacy = await store.record_tag_import(
            "ubi9/ubi", "9.4", platform, f"{SRC}@{platform}", source_digest=index,
            platform="linux/arm64", now=T0,
        )
        assert legacy.status.items[0].source_digest == index
        later = T0 + timedelta(hours=1)
        await store.record_tag_import(
            "ubi9/ubi", "latest", index, f"{SRC}@{index}", source_digest=index, now=later
        )
        await store.record_tag_import("ubi9/ubi", "old", index, f"{SRC}@{index}", now=later)
    finally:
        store.close()
    store = backend.open()
    try:
        stream = await store.get_stream("ubi9/ubi")
        assert stream is not None
        sources = {
            t.tag: [(e.image, e.source_digest, e.platform) for e in t.items] for t in stream.tags
        }
        assert sources == {
            "9.4": [(platform, index, "linux/arm64")],
            "latest": [(index, index, "")],
            "old": [(index, "", "")],
        }
        tag = await store.get_tag("ubi9/ubi", "9.4")
        assert tag == legacy.status == stream.tag("9.4")
        assert tag is not None
        # events are deleted by value, the source digest included
        other = replace(tag.items[0], source_digest=platform)
        assert await store.delete_tag_events("ubi9/ubi", "9.4", [other]) == 0
        assert await store.delete_tag_events("ubi9/ubi", "9.4", tag.items) == 1
    finally:
        store.close()


@pytest.mark.anyio
async def test_failure_condition_kept_then_cleared(store: Store) -> None:
    await store.upsert_stream(SPEC, now=T0)
    first = await store.record_tag_failure("ubi9/ubi", "latest", "Unauthorized", "denied", now=T0)
    assert first.items == ()
    again = await store.record_tag_failure(
        "ubi9/ubi", "latest", "Unauthorized", "denied", now=T0 + timedelta(hours=1)
    )
    assert len(again.conditions) == 1
    assert again.conditions[0].last_transition_time == T0
    stored = await store.get_tag("ubi9/ubi", "latest")
    assert stored == again
    ok = await store.record_tag_import("ubi9/ubi", "latest", digest(3), f"{SRC}@{digest(3)}")
    assert ok.status.condition(IMPORT_SUCCESS) is None
    stored = await store.get_tag("ubi9/ubi", "latest")
    assert stored is not None
    assert stored.conditions == ()


@pytest.mark.anyio
async def test_removed_tags(store: Store) -> None:
    await store.upsert_stream(SPEC, now=T0)
    await store.record_tag_import("ubi9/ubi", "old", digest(1), f"{SRC}@{digest(1)}", now=T0)
    assert await store.record_tag_removed("ubi9/ubi", "ghost", delete_removed_tags=True) is None
    kept = await store.record_tag_removed("ubi9/ubi", "old", delete_removed_tags=False)
    assert kept is not None
    assert not kept.removed
    gone = await store.record_tag_removed(
        "ubi9/ubi", "old", delete_removed_tags=True, now=T0 + timedelta(days=1)
    )
    assert gone is not None
    assert gone.removed_at == T0 + timedelta(days=1)
    stream = await store.get_stream("ubi9/ubi")
    assert stream is not None
    assert to_openshift(stream)["status"]["tags"] == []
    assert stream.tag("old") == gone


@pytest.mark.anyio
async def test_list_streams_and_delete_cascade(backend: Backend, store: Store) -> None:
    await store.upsert_stream(StreamSpec("b/two", "quay.io/b/two", "m/b/two"), now=T0)
    await store.upsert_stream(SPEC, now=T0)
    for tag in ("9.4", "latest"):
        await store.record_tag_import("ubi9/ubi", tag, digest(1), f"{SRC}@{digest(1)}", now=T0)
    await store.record_tag_failure("ubi9/ubi", "latest", "NotFound", "gone", now=T0)
    streams = await store.list_streams()
    assert [s.name for s in streams] == ["b/two", "ubi9/ubi"]
    assert [t.tag for t in streams[1].tags] == ["9.4", "latest"]
    assert streams[1].tag("latest").conditions[0].reason == "NotFound"  # type: ignore[union-attr]
    assert await store.delete_stream("ubi9/ubi") is True
    assert await store.delete_stream("ubi9/ubi") is False
    for table in ("tags", "tag_events", "tag_conditions"):
        assert backend.count(table) == 0


@pytest.mark.anyio
async def test_delete_tag_events_for_pruning(store: Store) -> None:
    await store.upsert_stream(SPEC, now=T0)
    for n in range(4):
        await store.record_tag_import(
            "ubi9/ubi", "9.4", digest(n), f"{SRC}@{digest(n)}", now=T0 + timedelta(hours=n)
        )
    tag = await store.get_tag("ubi9/ubi", "9.4")
    assert tag is not None
    assert await store.delete_tag_events("ubi9/ubi", "9.4", tag.items[2:]) == 2
    assert await store.delete_tag_events("ubi9/ubi", "9.4", tag.items[2:]) == 0
    pruned = await store.get_tag("ubi9/ubi", "9.4")
    assert pruned is not None
    assert pruned.items == tag.items[:2]


@pytest.mark.anyio
async def test_names_sort_bytewise(store: Store) -> None:
    """Streams, tags and receivers sort as bytes (upper case first), on either backend."""
    names = ["b/x", "B/x", "a-b/x", "a/x", "a_b/x", "aa/x"]
    for name in names:
        await store.upsert_stream(StreamSpec(name, f"quay.io/{name}", f"m/{name}"), now=T0)
        await store.enqueue_event({}, f"webhook:{name}", now=T0)
    for tag in ("v1", "V1", "_1", "1"):
        await store.record_tag_import("a/x", tag, digest(1), f"{SRC}@{digest(1)}", now=T0)
    assert [s.name for s in await store.list_streams()] == sorted(names)
    stream = await store.get_stream("a/x")
    assert stream is not None
    assert [t.tag for t in stream.tags] == ["1", "V1", "_1", "v1"]
    assert [r.receiver for r in await store.receiver_statuses()] == sorted(
        f"webhook:{n}" for n in names
    )

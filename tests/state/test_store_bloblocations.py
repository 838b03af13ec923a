"""The store contract for where blobs landed in the mirror (the copy engine mounts them
from there in later runs): every test runs on SQLite and PostgreSQL; two stores opened
on one state stand for two workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from harness.storetools import Backend

from mirrord.errors import ManifestError
from mirrord.state import BlobLocation, Store
from mirrord.state._bloblocations import MAX_LOCATIONS_PER_CALL

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
MIRROR = "docker://127.0.0.1:5000/mirror"
OTHER = "docker://127.0.0.1:5001"


def blob(n: int) -> str:
    return f"sha256:{n:064x}"


@pytest.mark.anyio
async def test_a_recorded_location_is_seen_by_another_worker(backend: Backend) -> None:
    a, b = backend.open(worker="a"), backend.open(worker="b")
    assert await b.blob_location(MIRROR, blob(1)) is None
    written = await a.record_blob_locations(
        MIRROR, {blob(1): "mirror/team/app", blob(2): "mirror/team/app"}, now=T0
    )
    assert written == 2
    assert await b.blob_location(MIRROR, blob(1)) == BlobLocation(
        MIRROR, blob(1), "mirror/team/app", T0
    )
    assert await b.blob_location(OTHER, blob(1)) is None  # another mirror: its own rows
    assert backend.count("blob_locations") == 2


@pytest.mark.anyio
async def test_the_latest_repository_replaces_the_previous_one(store: Store) -> None:
    await store.record_blob_locations(MIRROR, {blob(1): "mirror/x"}, now=T0)
    later = T0 + timedelta(hours=1)
    await store.record_blob_locations(MIRROR, {blob(1): "mirror/y"}, now=later)
    await store.record_blob_locations(OTHER, {blob(1): "z"}, now=later)
    assert await store.blob_location(MIRROR, blob(1)) == BlobLocation(
        MIRROR, blob(1), "mirror/y", later
    )
    assert (await store.blob_location(OTHER, blob(1))).repository == "z"  # type: ignore[union-attr]
    assert await store.record_blob_locations(MIRROR, {}) == 0


@pytest.mark.anyio
async def test_forgetting_a_location_spares_one_recorded_since(backend: Backend) -> None:
    a, b = backend.open(worker="a"), backend.open(worker="b")
    await a.record_blob_locations(MIRROR, {blob(1): "mirror/x", blob(2): "mirror/x"}, now=T0)
    # b's mount from mirror/x failed, but a has since put blob 2 into mirror/y
    await a.record_blob_locations(MIRROR, {blob(2): "mirror/y"}, now=T0)
    assert await b.forget_blob_location(MIRROR, blob(1), "mirror/x") is True
    assert await b.forget_blob_location(MIRROR, blob(2), "mirror/x") is False
    assert await b.forget_blob_location(MIRROR, blob(1), "mirror/x") is False  # gone already
    assert await a.blob_location(MIRROR, blob(1)) is None
    assert (await a.blob_location(MIRROR, blob(2))).repository == "mirror/y"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_workers_recording_overlapping_sets_at_once_all_succeed(backend: Backend) -> None:
    """Each writes the same digests in a different order: one lock order, no deadlock."""
    workers = [backend.open(worker=f"w{n}") for n in range(4)]
    digests = [blob(n) for n in range(200)]

    async def record(n: int, store: Store) -> None:
        order = digests[n:] + digests[:n] if n % 2 else list(reversed(digests))
        for _ in range(5):
            await store.record_blob_locations(MIRROR, {d: f"mirror/r{n}" for d in order})

    async with anyio.create_task_group() as tg:
        for n, store in enumerate(workers):
            tg.start_soon(record, n, store)
    assert backend.count("blob_locations") == 200
    found = {(await workers[0].blob_location(MIRROR, d)).repository for d in digests}  # type: ignore[union-attr]
    assert found <= {f"mirror/r{n}" for n in range(4)}


@pytest.mark.anyio
async def test_malformed_locations_are_refused_before_any_write(store: Store) -> None:
    with pytest.raises(ManifestError):
        await store.record_blob_locations(MIRROR, {blob(1): "r", "sha256:short": "r"})
    with pytest.raises(ManifestError):
        await store.blob_location(MIRROR, "sha256:../../etc")
    with pytest.raises(ValueError, match="repository"):
        await store.record_blob_locations(MIRROR, {blob(1): ""})
    with pytest.raises(ValueError, match="repository"):
        await store.record_blob_locations(MIRROR, {blob(1): "r" * 1025})
    with pytest.raises(ValueError, match="mirror"):
        await store.record_blob_locations("", {blob(1): "r"})
    with pytest.raises(ValueError, match="mirror"):
        await store.forget_blob_location("m" * 1025, blob(1), "r")
    too_many = {blob(n): "r" for n in range(MAX_LOCATIONS_PER_CALL + 1)}
    with pytest.raises(ValueError, match="at most"):
        await store.record_blob_locations(MIRROR, too_many)
    assert await store.blob_location(MIRROR, blob(1)) is None  # nothing half written

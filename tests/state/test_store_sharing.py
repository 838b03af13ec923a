"""The store contract for workers sharing one state: leases, blobs in flight, outbox
claims. Two stores opened on one state stand for two workers (two processes, where
what is tested is the death of one); every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from harness.processes import spawn_python
from harness.storetools import Backend

from mirrord.errors import ManifestError, StateError
from mirrord.state import Store

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
MIRROR = "127.0.0.1:5000"
BLOB = f"sha256:{'ab' * 32}"


def finish(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


# -- leases ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_lease_has_one_holder_until_released(backend: Backend) -> None:
    a, b = backend.open(worker="a"), backend.open(worker="b")
    assert await a.claim_lease("stream:s", "a", 30) is True
    assert await b.claim_lease("stream:s", "b", 30) is False
    [lease] = await b.leases()
    assert (lease.name, lease.worker) == ("stream:s", "a")
    assert timedelta(seconds=29) < lease.expires - lease.acquired <= timedelta(seconds=30)
    assert await a.claim_lease("stream:s", "a", 60) is True  # its own: renewed, same hold
    [renewed] = await a.leases("a")
    assert renewed.acquired == lease.acquired and renewed.expires > lease.expires
    assert await b.renew_lease("stream:s", "b", 30) is False
    assert await b.release_lease("stream:s", "b") is False
    assert await a.leases("b") == []
    assert await a.claim_lease("stream:t", "a", 30) is True  # leases are independent
    assert await a.release_lease("stream:s", "a") is True
    assert await b.claim_lease("stream:s", "b", 30) is True
    assert [(x.name, x.worker) for x in await a.leases()] == [("stream:s", "b"), ("stream:t", "a")]


@pytest.mark.anyio
async def test_an_expired_lease_goes_to_the_next_claimant(backend: Backend) -> None:
    a, b = backend.open(worker="a"), backend.open(worker="b")
    assert await a.claim_lease("prune", "a", 0.3)
    assert await a.renew_lease("prune", "a", 0.3)  # renewing keeps it ...
    assert not await b.claim_lease("prune", "b", 30)
    await anyio.sleep(0.45)  # ... until it is not renewed in time
    assert await a.leases() == []
    assert await b.claim_lease("prune", "b", 30)
    assert not await a.renew_lease("prune", "a", 30)  # a must stop: b has it
    [lease] = await a.leases()
    assert lease.worker == "b"


@pytest.mark.anyio
async def test_release_with_hold_keeps_others_off_until_the_next_due_time(
    backend: Backend,
) -> None:
    a, b = backend.open(worker="a"), backend.open(worker="b")
    assert await a.claim_lease("stream:s", "a", 30)
    assert await a.release_lease("stream:s", "a", hold=0.4)
    assert not await b.claim_lease("stream:s", "b", 30)  # the same due time, later clock
    assert await a.claim_lease("stream:s", "a", 30)  # a's next run
    assert await a.release_lease("stream:s", "a", hold=0.3)
    await anyio.sleep(0.45)
    assert await b.claim_lease("stream:s", "b", 30)


@pytest.mark.anyio
async def test_claims_are_validated(store: Store) -> None:
    for name, worker, ttl in (("", "w", 1.0), ("x" * 513, "w", 1.0), ("n", "", 1.0),
                              ("n", "w", 0.0), ("n", "w", -1.0), ("n", "w", 86401.0)):
        with pytest.raises(ValueError):
            await store.claim_lease(name, worker, ttl)
    with pytest.raises(ValueError):
        await store.release_lease("n", "w", hold=-1)
    with pytest.raises(ManifestError):
        await store.claim_blob(MIRROR, "sha256:short", "w", 1.0)
    with pytest.raises(ValueError):
        await store.claim_blob("", BLOB, "w", 1.0)
    with pytest.raises(ValueError):
        await store.claim_due_events("", claim=10)


RACER = """
    import sys, time, random
    from pathlib import Path
    import anyio
    from mirrord.config import load_config
    from mirrord.state import open_state

    config, worker, start, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    store = open_state(load_config(config), worker=worker)
    names = [f"stream:s{i}" for i in range(count)]
    random.shuffle(names)

    async def main() -> None:
        await store.claim_lease(f"warm-up:{worker}", worker, 60)  # threads and connection up
        print("ready", flush=True)
        while not start.exists():
            time.sleep(0.0005)
        for name in names:
            if await store.claim_lease(name, worker, 60):
                print(name, flush=True)

    anyio.run(main)
    store.close()
"""


def test_racing_workers_get_each_lease_once(backend: Backend, tmp_path: Path) -> None:
    backend.open().close()  # the schema, before the race
    start = tmp_path / "start"
    racers = [
        spawn_python(RACER, str(backend.config_path), f"w{n}", str(start), "300")
        for n in range(3)
    ]
    claimed: dict[str, list[str]] = {}
    try:
        for proc in racers:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        start.touch()
        for n, proc in enumerate(racers):
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            claimed[f"w{n}"] = out.split()
    finally:
        for proc in racers:
            finish(proc)
    every = [name for names in claimed.values() for name in names]
    assert sorted(every) == sorted(f"stream:s{i}" for i in range(300))  # each exactly once
    assert sum(bool(names) for names in claimed.values()) >= 2  # they did contend


RENEWER = """
    import sys, time
    import anyio
    from mirrord.config import load_config
    from mirrord.state import open_state

    store = open_state(load_config(sys.argv[1]), worker="doomed")

    async def main() -> None:
        assert await store.claim_lease("stream:s", "doomed", 1.0)
        print("held", flush=True)
        while await store.renew_lease("stream:s", "doomed", 1.0):
            await anyio.sleep(0.2)

    anyio.run(main)
"""


@pytest.mark.anyio
async def test_a_killed_workers_lease_expires_and_is_taken_over(backend: Backend) -> None:
    holder = spawn_python(RENEWER, str(backend.config_path))
    survivor = backend.open(worker="survivor")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        await anyio.sleep(1.5)  # longer than the ttl: only renewals keep it
        assert not await survivor.claim_lease("stream:s", "survivor", 30)
    finally:
        finish(holder)  # SIGKILL: no release
    killed = time.monotonic()
    while not await survivor.claim_lease("stream:s", "survivor", 30):
        assert time.monotonic() - killed < 5, "the dead worker's lease never expired"
        await anyio.sleep(0.05)
    waited = time.monotonic() - killed
    assert waited <= 1.0 + 0.5  # within the lease time (plus polling)
    [lease] = await survivor.leases()
    assert lease.worker == "survivor"


# -- blobs in flight -------------------------------------------------------------------


@pytest.mark.anyio
async def test_one_worker_streams_a_blob_the_other_waits(backend: Backend) -> None:
    a, b = backend.open(worker="a"), backend.open(worker="b")
    assert await a.claim_blob(MIRROR, BLOB, "a", 30)
    assert not await b.claim_blob(MIRROR, BLOB, "b", 30)
    assert await b.claim_blob("oci:/srv/other", BLOB, "b", 30)  # another mirror: its own
    claim = await b.blob_claim(MIRROR, BLOB)
    assert claim is not None and claim.worker == "a" and claim.name == f"{MIRROR}@{BLOB}"
    assert await b.wait_blob(MIRROR, BLOB, timeout=0.2) is False

    async def copy_then_release() -> None:
        await anyio.sleep(0.3)
        assert not await b.release_blob(MIRROR, BLOB, "b")  # not b's to release
        assert await a.release_blob(MIRROR, BLOB, "a")

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(copy_then_release)
        assert await b.wait_blob(MIRROR, BLOB, timeout=10, poll_interval=0.02)
    assert 0.3 <= time.monotonic() - started < 5
    assert await b.blob_claim(MIRROR, BLOB) is None
    assert await b.claim_blob(MIRROR, BLOB, "b", 30)  # e.g. the copy failed: b's turn


@pytest.mark.anyio
async def test_a_blob_claim_expires_when_its_holder_is_gone(backend: Backend) -> None:
    a, b = backend.open(worker="a"), backend.open(worker="b")
    assert await a.claim_blob(MIRROR, BLOB, "a", 0.3)
    a.close()  # gone without releasing
    started = time.monotonic()
    assert await b.wait_blob(MIRROR, BLOB, timeout=10, poll_interval=0.02)
    assert 0.1 < time.monotonic() - started < 5
    assert await b.claim_blob(MIRROR, BLOB, "b", 30)


# -- outbox claims ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_outbox_events_go_to_one_worker_each(backend: Backend) -> None:
    writer = backend.open()
    ids = [await writer.enqueue_event({"n": n}, f"webhook:r{n % 3}", now=T0) for n in range(90)]
    workers = {name: backend.open(worker=name) for name in ("w1", "w2", "w3")}
    got: dict[str, list[int]] = {name: [] for name in workers}
    errors: list[BaseException] = []

    async def deliver(name: str, store: Store) -> None:
        while True:
            batch = await store.claim_due_events(name, claim=60, now=T0, limit=4)
            if not batch:
                return
            assert all(e.claimed_by == name for e in batch)
            for event in batch:
                try:
                    await store.mark_delivered(event.id, now=T0)
                except StateError as exc:  # delivered by another worker already
                    errors.append(exc)
                got[name].append(event.id)
                await anyio.sleep(random.random() / 500)

    async with anyio.create_task_group() as tg:
        for name, store in workers.items():
            tg.start_soon(deliver, name, store)
    assert errors == []
    assert sorted(i for batch in got.values() for i in batch) == ids  # each exactly once
    assert sum(bool(batch) for batch in got.values()) >= 2
    assert await writer.due_events(T0 + timedelta(days=1)) == []


@pytest.mark.anyio
async def test_an_outbox_claim_expires_and_a_failure_releases_it(backend: Backend) -> None:
    a, b = backend.open(worker="a"), backend.open(worker="b")
    event = await a.enqueue_event({"x": 1}, "command:notify", now=T0)
    [claimed] = await a.claim_due_events("a", claim=60, now=T0)
    assert (claimed.id, claimed.claimed_by) == (event, "a")
    assert claimed.claim_expires == T0 + timedelta(seconds=60)
    assert [e.id for e in await b.due_events(T0)] == [event]  # still pending, for readers
    assert await b.claim_due_events("b", claim=60, now=T0 + timedelta(seconds=59)) == []
    [taken] = await b.claim_due_events("b", claim=60, now=T0 + timedelta(seconds=60))
    assert taken.claimed_by == "b"  # a died mid-delivery: b tries it
    retry = T0 + timedelta(minutes=5)
    await b.mark_failed(event, 1, retry, "HTTP 503")
    [failed] = await a.failed_events()
    assert (failed.claimed_by, failed.claim_expires, failed.attempts) == (None, None, 1)
    assert await a.claim_due_events("a", now=T0 + timedelta(minutes=4)) == []
    [again] = await a.claim_due_events("a", now=retry)
    assert (again.id, again.claimed_by) == (event, "a")

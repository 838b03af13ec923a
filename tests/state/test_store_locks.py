"""The store contract across processes: crash safety, the run lock, the daemon lock and
jobs left Running by a killed process; the same on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime

import pytest
from harness.processes import spawn_python
from harness.storetools import Backend

from mirrord.errors import LockedError
from mirrord.state import Store

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def finish(proc: subprocess.Popen[str]) -> None:
    """SIGKILL (if still running), reap, close its pipe."""
    proc.kill()
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


# -- crash safety ----------------------------------------------------------------------

WRITER = """
    import sys
    import anyio
    from mirrord.config import load_config
    from mirrord.core.imagestream import StreamSpec
    from mirrord.state import open_state

    async def main() -> None:
        store = open_state(load_config(sys.argv[1]))
        await store.upsert_stream(StreamSpec("s", "src/s", "mirror/s"))
        i = int(sys.argv[2])
        while True:
            d = f"sha256:{i:064x}"
            await store.record_tag_import("s", f"t{i % 7}", d, f"src/s@{d}")
            await store.record_tag_failure("s", f"t{(i + 3) % 7}", "Flaky", f"attempt {i}")
            job = await store.start_job("sync", "s")
            await store.finish_job(job, "Succeeded", {"copied": i})
            print(i, flush=True)
            i += 1

    anyio.run(main)
"""


def run_and_kill(backend: Backend, start: int, commits: int) -> int:
    """Run the writer until it reports ``commits`` commits, SIGKILL it; the last index."""
    proc = spawn_python(WRITER, str(backend.config_path), str(start))
    assert proc.stdout is not None
    last = -1
    try:
        for line in proc.stdout:
            last = int(line)
            if last >= start + commits:
                break
    finally:
        finish(proc)
    assert proc.returncode == -signal.SIGKILL
    return last


async def abandoned_when_gone(store: Store, most: int, seconds: float = 10.0) -> int:
    """abandon_running_jobs until no job is Running (a killed worker's database session
    ends a moment after the process); how many it abandoned."""
    deadline = time.monotonic() + seconds
    count = 0
    while True:
        count += await store.abandon_running_jobs("killed", now=T0)
        jobs = await store.list_jobs(limit=1000)
        if all(j.status != "Running" for j in jobs) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert count <= most
    return count


@pytest.mark.anyio
async def test_sigkill_mid_write_loop_leaves_consistent_state(backend: Backend) -> None:
    last = run_and_kill(backend, 0, 150)
    last = run_and_kill(backend, last + 1, 150)  # recovers (WAL), then killed again
    assert backend.problems() == []
    images = {str(r[0]) for r in backend.query("SELECT image FROM tag_events")}
    assert {digest(i) for i in range(last + 1)} <= images  # every reported commit is there
    store = backend.open()
    stream = await store.get_stream("s")
    assert stream is not None
    for tag in stream.tags:
        assert len({e.image for e in tag.items}) == len(tag.items)
        assert len(tag.conditions) <= 1
    jobs = await store.list_jobs(limit=1000, kind="sync")
    assert sum(j.status == "Succeeded" for j in jobs) >= last + 1
    assert all(j.status in ("Running", "Succeeded") for j in jobs)
    await abandoned_when_gone(store, most=2)  # at most one per child
    assert all(j.status != "Running" for j in await store.list_jobs(limit=1000))


# -- run lock --------------------------------------------------------------------------

HOLDER = """
    import sys, time
    from mirrord.config import load_config
    from mirrord.state import open_state

    store = open_state(load_config(sys.argv[1]))
    with store.acquire_run_lock(shared=sys.argv[3] == "shared"):
        job = None
        if len(sys.argv) > 4:
            import anyio
            job = anyio.run(store.start_job, "sync", sys.argv[4])
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
"""


def hold_lock(
    backend: Backend, seconds: float, *, shared: bool = False, job: str | None = None
) -> subprocess.Popen[str]:
    args = [str(backend.config_path), str(seconds), "shared" if shared else "exclusive"]
    proc = spawn_python(HOLDER, *args, *([job] if job else []))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_run_lock_refuses_second_holder_naming_it(backend: Backend, store: Store) -> None:
    holder = hold_lock(backend, 60)
    try:
        lock = store.acquire_run_lock(wait=False)
        with pytest.raises(LockedError, match=rf"\b{holder.pid}\b") as info, lock:
            pytest.fail("acquired a lock held by another process")
        assert lock.where in str(info.value)
        assert not lock.held
    finally:
        finish(holder)


def test_run_lock_wait_waits_for_the_holder(backend: Backend, store: Store) -> None:
    holder = hold_lock(backend, 1.0)
    try:
        started = time.monotonic()
        with store.acquire_run_lock(wait=True, timeout=30) as lock:
            waited = time.monotonic() - started
            assert lock.held
            assert str(os.getpid()) in (lock.holder() or "")
        assert holder.wait(timeout=5) == 0  # it finished its run before we got the lock
        assert waited > 0.3
    finally:
        finish(holder)


def test_run_lock_freed_when_holder_is_killed(backend: Backend, store: Store) -> None:
    holder = hold_lock(backend, 60)
    finish(holder)
    with store.acquire_run_lock(wait=True, timeout=10) as lock:  # the session ends shortly
        assert lock.held


@pytest.mark.anyio
async def test_run_lock_async_refuses_and_times_out(backend: Backend, store: Store) -> None:
    holder = hold_lock(backend, 60)
    try:
        with pytest.raises(LockedError, match=f"{holder.pid}"):
            async with store.acquire_run_lock():
                pytest.fail("acquired a held lock")
        started = time.monotonic()
        with pytest.raises(LockedError, match="gave up"):
            async with store.acquire_run_lock(wait=True, timeout=0.3):
                pytest.fail("acquired a held lock")
        assert time.monotonic() - started >= 0.3
    finally:
        finish(holder)
    async with store.acquire_run_lock(wait=True, timeout=10) as lock:
        assert lock.held
    assert not lock.held


def test_run_lock_is_exclusive_within_one_process(backend: Backend) -> None:
    one, two = backend.open(), backend.open()
    with one.acquire_run_lock() as first:
        with pytest.raises(LockedError, match=f"{os.getpid()}"):
            one.acquire_run_lock().acquire()
        with pytest.raises(LockedError, match=f"{os.getpid()}"):
            two.acquire_run_lock().acquire()
        assert first.held
    with two.acquire_run_lock():
        pass


def test_shared_holders_run_together_and_keep_an_exclusive_one_out(backend: Backend) -> None:
    """Daemons' runs hold the run lock shared (side by side); a one-shot run or the pruner
    holds it exclusive (alone)."""
    holder = hold_lock(backend, 60, shared=True)
    store = backend.open()
    try:
        with store.acquire_run_lock(shared=True) as mine:
            assert mine.held
            with pytest.raises(LockedError, match=f"{holder.pid}|{os.getpid()}"):
                store.acquire_run_lock().acquire()
        with pytest.raises(LockedError, match=f"{holder.pid}"):
            store.acquire_run_lock().acquire()
    finally:
        finish(holder)
    with store.acquire_run_lock(wait=True, timeout=10), pytest.raises(LockedError):
        store.acquire_run_lock(shared=True).acquire()


# -- daemon lock -----------------------------------------------------------------------


def test_daemon_lock_admits_one_daemon_unless_the_store_is_shared(backend: Backend) -> None:
    first, second = backend.open(worker="a:1"), backend.open(worker="b:2")
    held = first.hold_daemon_lock()
    try:
        assert held.held
        if first.several_daemons:  # PostgreSQL: one per worker name
            other = second.hold_daemon_lock()
            assert other.held
            other.release()
            with pytest.raises(LockedError, match=r"a:1.*give each daemon its own worker_name"):
                backend.open(worker="a:1").hold_daemon_lock()
        else:  # SQLite: one per state_dir
            with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
                second.hold_daemon_lock()
    finally:
        held.release()
    again = second.hold_daemon_lock()
    assert again.held
    again.release()


# -- jobs left running -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_killed_runs_job_is_abandoned(backend: Backend, store: Store) -> None:
    holder = hold_lock(backend, 60, shared=True, job="s")
    try:
        [running] = await store.list_jobs()
        assert (running.status, running.stream) == ("Running", "s")
        assert running.worker is not None and running.worker.endswith(f":{holder.pid}")
    finally:
        finish(holder)
    assert await abandoned_when_gone(store, most=1) == 1
    [job] = await store.list_jobs()
    assert (job.id, job.status, job.message) == (running.id, "Failed", "killed")

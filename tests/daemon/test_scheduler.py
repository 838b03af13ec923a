"""The scheduler: jitter, coalescing, stop/abandon, and the run gate."""

from __future__ import annotations

import itertools
import logging
import os
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from mirrord.core.schedule import Schedule
from mirrord.daemon import JobSpec, RunGate, Scheduler
from mirrord.daemon._scheduler import jitter_for
from mirrord.state import LOCK_FILE, RunLock


def test_jitter_is_a_tenth_of_the_period_at_most_five_minutes() -> None:
    now = datetime.now().astimezone()
    assert jitter_for(Schedule.parse("*/15 * * * *").period(now)) == 90
    assert jitter_for(Schedule.parse("0 0 * * *").period(now)) == 300
    assert jitter_for(Schedule.parse("2s").period(now)) == pytest.approx(0.2)


# --- the scheduler ----------------------------------------------------------------------


class Recorder:
    """A job's run: records (reason, start, end) and how many ran at once."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.runs: list[tuple[str, str, float]] = []
        self.active = 0
        self.max_active = 0
        self.finished = 0

    async def __call__(self, name: str, reason: str) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.runs.append((name, reason, anyio.current_time()))
        try:
            await anyio.sleep(self.seconds)
            self.finished += 1
        finally:
            self.active -= 1


async def _run_for(scheduler: Scheduler, seconds: float, specs: dict[str, JobSpec]) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.serve)
        scheduler.update(specs)
        await anyio.sleep(seconds)
        scheduler.stop()


@pytest.mark.anyio
async def test_jobs_run_on_their_interval_with_bounded_jitter() -> None:
    run = Recorder()
    started = anyio.current_time()
    await _run_for(Scheduler(), 1.1, {"a": JobSpec("200ms", run)})
    starts = [t - started for _, _, t in run.runs]
    assert 3 <= len(starts) <= 5
    for index, moment in enumerate(starts, start=1):
        # the k-th run is due at k*0.2s (never earlier), delayed by up to 10 % of the period
        # (the rest of the upper bound is slack for a busy machine)
        assert index * 0.2 - 0.01 <= moment <= index * 0.2 + 0.02 + 0.15


@pytest.mark.anyio
async def test_a_slow_run_never_overlaps_itself_and_missed_runs_coalesce() -> None:
    run = Recorder(seconds=0.35)
    await _run_for(Scheduler(), 1.2, {"a": JobSpec("100ms", run)})
    assert run.max_active == 1
    assert 2 <= len(run.runs) <= 4  # not the 12 a 100 ms interval would have fired
    starts = [t for _, _, t in run.runs]
    for earlier, later in itertools.pairwise(starts):
        assert 0.35 <= later - earlier <= 0.35 + 0.1 + 0.01 + 0.2


@pytest.mark.anyio
async def test_catch_up_runs_at_once_and_triggers_during_a_run_coalesce() -> None:
    run = Recorder(seconds=0.3)
    scheduler = Scheduler()
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.serve)
        scheduler.update({"a": JobSpec("1h", run, catch_up=True)})
        await anyio.sleep(0.1)
        assert [r for _, r, _ in run.runs] == ["catch-up"]
        assert all(scheduler.trigger("a") for _ in range(5))
        assert not scheduler.trigger("unknown")
        await anyio.sleep(0.8)
        scheduler.stop()
    assert [r for _, r, _ in run.runs] == ["catch-up", "triggered"]
    assert run.max_active == 1


@pytest.mark.anyio
async def test_a_catch_up_run_does_not_displace_the_first_scheduled_run() -> None:
    run = Recorder()
    started = anyio.current_time()
    await _run_for(Scheduler(), 0.5, {"a": JobSpec("300ms", run, catch_up=True)})
    assert [r for _, r, _ in run.runs] == ["catch-up", "scheduled"]
    assert run.runs[1][2] - started == pytest.approx(0.3, abs=0.1)


@pytest.mark.anyio
async def test_stop_lets_the_run_in_flight_finish_and_abandon_cancels_it() -> None:
    run = Recorder(seconds=0.3)
    scheduler = Scheduler()
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.serve)
        scheduler.update({"a": JobSpec("1h", run, catch_up=True)})
        await anyio.sleep(0.05)
        scheduler.stop()
        assert not scheduler.trigger("a")  # nothing new once stopping
    assert run.finished == 1

    slow = Recorder(seconds=30)
    scheduler = Scheduler()
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            await tg.start(scheduler.serve)
            scheduler.update({"a": JobSpec("1h", slow, catch_up=True)})
            await anyio.sleep(0.05)
            scheduler.stop()
            await anyio.sleep(0.1)
            assert scheduler.in_flight == 1
            scheduler.abandon()
    assert (len(slow.runs), slow.finished) == (1, 0)


@pytest.mark.anyio
async def test_update_drops_jobs_and_applies_new_schedules() -> None:
    dropped, kept = Recorder(), Recorder()
    scheduler = Scheduler()
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.serve)
        scheduler.update({"dropped": JobSpec("100ms", dropped), "kept": JobSpec("100ms", kept)})
        await anyio.sleep(0.35)
        scheduler.update({"kept": JobSpec("1h", kept)})
        counts = len(dropped.runs), len(kept.runs)
        await anyio.sleep(0.4)
        assert [j.name for j in scheduler.jobs()] == ["kept"]
        scheduler.stop()
    assert counts[0] >= 2 and counts[1] >= 2
    assert (len(dropped.runs), len(kept.runs)) == counts


@pytest.mark.anyio
async def test_max_runs_bounds_runs_across_jobs() -> None:
    run = Recorder(seconds=0.2)
    specs = {f"s{i}": JobSpec("1h", run, catch_up=True) for i in range(5)}
    await _run_for(Scheduler(max_runs=2), 0.75, specs)
    assert run.max_active == 2
    assert len(run.runs) == 5


@pytest.mark.anyio
async def test_a_run_that_raises_is_logged_and_the_job_stays_scheduled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    async def broken(name: str, reason: str) -> None:
        calls.append(reason)
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, "mirrord.scheduler"):
        await _run_for(Scheduler(), 0.5, {"a": JobSpec("200ms", broken, catch_up=True)})
    assert calls[:2] == ["catch-up", "scheduled"]
    assert "a: the run failed unexpectedly" in caplog.text and "boom" in caplog.text


# --- the run gate -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_gate_shares_the_lock_among_runs_and_keeps_other_holders_out(
    tmp_path: Path,
) -> None:
    path = tmp_path / LOCK_FILE
    acquired: list[int] = []

    async def on_acquire() -> None:
        acquired.append(1)

    gate = RunGate(lambda: RunLock(path), on_acquire=on_acquire)
    async with gate.shared("one"), gate.shared("two"):
        assert gate.held
        assert not RunLock(path).try_acquire()  # `mirrord sync` is refused meanwhile
    assert not gate.held
    other = RunLock(path)
    assert other.try_acquire()
    other.release()
    assert acquired == [1]  # taken once for both runs


@pytest.mark.anyio
async def test_a_run_waits_while_another_process_holds_the_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / LOCK_FILE
    other = RunLock(path)
    other.acquire()
    gate = RunGate(lambda: RunLock(path), poll_interval=0.05)
    entered = anyio.Event()

    async def run() -> None:
        async with gate.shared("scheduled run of app"):
            entered.set()

    with caplog.at_level(logging.INFO, "mirrord.scheduler"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await anyio.sleep(0.3)
            assert not entered.is_set()
            other.release()
            with anyio.fail_after(1):
                await entered.wait()
    assert f"scheduled run of app waits: pid {os.getpid()} holds the state lock" in caplog.text
    assert "scheduled run of app: the state lock is free; starting" in caplog.text


@pytest.mark.anyio
async def test_exclusive_waits_for_shared_runs_and_keeps_new_ones_out(tmp_path: Path) -> None:
    gate = RunGate(lambda: RunLock(tmp_path / LOCK_FILE))
    order: list[str] = []

    async def hold(kind: str, name: str, delay: float, seconds: float) -> None:
        await anyio.sleep(delay)
        async with gate.shared(name) if kind == "shared" else gate.exclusive(name):
            order.append(f"{name} in")
            await anyio.sleep(seconds)
            order.append(f"{name} out")

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold, "shared", "a", 0.0, 0.3)
        tg.start_soon(hold, "exclusive", "prune", 0.1, 0.2)
        tg.start_soon(hold, "shared", "b", 0.2, 0.1)
    assert order == ["a in", "a out", "prune in", "prune out", "b in", "b out"]


@pytest.mark.anyio
async def test_a_job_without_a_schedule_runs_only_when_triggered() -> None:
    """An import-image stream not marked --scheduled: never on a timer, and a trigger runs it."""
    on_demand = Recorder()
    scheduler = Scheduler()
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.serve)
        scheduler.update({"manual": JobSpec(None, on_demand)})
        await anyio.sleep(0.3)
        assert on_demand.runs == []
        [info] = scheduler.jobs()
        assert (info.schedule, info.next_run) == (None, None)
        assert scheduler.trigger("manual", "triggered")
        await anyio.sleep(0.2)
        assert [r[1] for r in on_demand.runs] == ["triggered"]
        scheduler.update({"manual": JobSpec("1s", on_demand)})  # now it gets a schedule
        assert scheduler.jobs()[0].next_run is not None
        scheduler.stop()

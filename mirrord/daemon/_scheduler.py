"""When each stream (and the pruner) runs: the job loop.

Fire times come from :class:`mirrord.core.schedule.Schedule` (an interval such as
``15m``, or a crontab line with cron's semantics); this module drives the jobs under
anyio, one task per job in one task group, so every run is a child of the daemon and a
SIGTERM can wait for it, or cancel it, like any other task.

Rules:

- **Jitter.** Each fire time is delayed by a random 0-10 % of the schedule's
  period (at most five minutes), so a thousand streams on ``*/15 * * * *`` do
  not fire in the same second.
- **One run per job at a time; missed runs coalesce.** A job's next fire time
  is computed after its run ends, from the first scheduled time not yet past;
  triggers that arrive while a run is waiting or in flight collapse into one
  further run.
- **Catch-up.** A job added with ``catch_up`` runs at once (streams never synced).
- **On demand.** A job without a schedule (an ``import-image`` stream not marked
  ``--scheduled``) runs only when triggered.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from anyio.abc import TaskGroup, TaskStatus

from mirrord.core.schedule import Schedule

log = logging.getLogger("mirrord.scheduler")

JITTER_FRACTION = 0.1
MAX_JITTER = 300.0
DEFAULT_MAX_RUNS = 4
MAX_SLEEP = 60.0  # re-read the wall clock at least this often (suspend, clock steps)

RunFunc = Callable[[str, str], Awaitable[None]]


def jitter_for(period: float) -> float:
    return min(period * JITTER_FRACTION, MAX_JITTER)


def _now() -> datetime:
    return datetime.now().astimezone()


# --- jobs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    """A job to schedule: its schedule (None: only when triggered), what runs, and
    whether it runs once at start."""

    schedule: str | None
    run: RunFunc
    catch_up: bool = False


@dataclass(frozen=True)
class JobInfo:
    name: str
    schedule: str | None
    next_run: datetime | None
    running: bool
    pending: bool


class _Job:
    def __init__(self, name: str, spec: JobSpec) -> None:
        self.name = name
        self.removed = False
        self.running = False
        self.wake = anyio.Event()
        self.reason = ""
        self.wait_scope: anyio.CancelScope | None = None
        self.set_schedule(spec)
        if spec.catch_up:
            self.poke("catch-up")

    def set_schedule(self, spec: JobSpec) -> None:
        self.spec = spec
        self.schedule = Schedule.parse(spec.schedule) if spec.schedule is not None else None
        now = self.anchor = _now()
        self.jitter = jitter_for(self.schedule.period(now)) if self.schedule else 0.0
        self.grid: datetime | None = None
        self.next_run: datetime | None = None
        self.advance(now)

    def advance(self, now: datetime) -> None:
        """The first scheduled time after ``now`` (and after the last one), jittered."""
        if self.schedule is None:
            return  # on demand only
        after = max(now, self.grid) if self.grid else now
        self.grid = self.schedule.next_after(after, self.anchor)
        delay = timedelta(seconds=random.uniform(0, self.jitter))
        self.next_run = self.grid + delay

    def poke(self, reason: str) -> None:
        if not self.wake.is_set():
            self.reason = reason
            self.wake.set()

    def interrupt_wait(self) -> None:
        if self.wait_scope is not None:
            self.wait_scope.cancel()


class Scheduler:
    """Runs jobs on their schedules; at most ``max_runs`` runs at once."""

    def __init__(self, *, max_runs: int = DEFAULT_MAX_RUNS) -> None:
        self._jobs: dict[str, _Job] = {}
        self._slots = anyio.Semaphore(max_runs)
        self._tg: TaskGroup | None = None
        self._stopping = False
        self._stop = anyio.Event()
        self.in_flight = 0

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` and every run in flight has ended (or :meth:`abandon`)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await self._stop.wait()
        self._tg = None

    def update(self, specs: Mapping[str, JobSpec]) -> None:
        """Make the jobs ``specs``: add new ones, reschedule changed ones, drop the rest
        (a dropped job's run in flight finishes)."""
        if self._tg is None:
            raise RuntimeError("the scheduler is not serving")
        if self._stopping:
            return
        for name in [n for n in self._jobs if n not in specs]:
            dropped = self._jobs.pop(name)
            dropped.removed = True
            dropped.interrupt_wait()
        for name, spec in specs.items():
            job = self._jobs.get(name)
            if job is None:
                job = self._jobs[name] = _Job(name, spec)
                self._tg.start_soon(self._loop, job, name=f"job {name}")
            elif job.spec.schedule != spec.schedule:
                job.set_schedule(spec)
                job.interrupt_wait()
            else:
                job.spec = spec

    def trigger(self, name: str, reason: str = "triggered") -> bool:
        """Run ``name`` now (or right after its run in flight); False for an unknown job."""
        job = self._jobs.get(name)
        if job is None or self._stopping:
            return False
        job.poke(reason)
        return True

    def jobs(self) -> list[JobInfo]:
        return [
            JobInfo(j.name, j.spec.schedule, j.next_run, j.running, j.wake.is_set())
            for j in self._jobs.values()
        ]

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Start no new run; :meth:`serve` returns once the runs in flight end."""
        self._stopping = True
        for job in self._jobs.values():
            job.interrupt_wait()
        self._stop.set()

    def abandon(self) -> None:
        """Cancel the runs in flight (each records itself as interrupted)."""
        self.stop()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _loop(self, job: _Job) -> None:
        while await self._wait_until_due(job):
            acquired = False
            with anyio.CancelScope() as job.wait_scope:
                await self._slots.acquire()
                acquired = True
            job.wait_scope = None
            if not acquired:
                continue  # interrupted while waiting: stopped, dropped or rescheduled
            if self._stopping or job.removed:
                self._slots.release()
                return
            reason = job.reason if job.wake.is_set() else "scheduled"
            job.wake = anyio.Event()
            try:
                await self._run(job, reason)
            finally:
                self._slots.release()
            now = _now()
            if job.next_run is None or job.next_run <= now:  # a triggered run keeps the timer
                job.advance(now)
            log.debug("%s: next run at %s", job.name, job.next_run)

    async def _run(self, job: _Job, reason: str) -> None:
        job.running = True
        self.in_flight += 1
        try:
            await job.spec.run(job.name, reason)
        except Exception:  # one job's bug must not stop the others (logged with its traceback)
            log.exception("%s: the run failed unexpectedly", job.name)
        finally:
            job.running = False
            self.in_flight -= 1

    async def _wait_until_due(self, job: _Job) -> bool:
        """Sleep until the job is due, poked, dropped or the scheduler stops."""
        while not (self._stopping or job.removed):
            if job.wake.is_set():
                return True
            if job.next_run is None:
                delay = MAX_SLEEP
            else:
                delay = (job.next_run - _now()).total_seconds()
                if delay <= 0:
                    return True
            with anyio.CancelScope() as job.wait_scope, anyio.move_on_after(min(delay, MAX_SLEEP)):
                await job.wake.wait()
            job.wait_scope = None
        return False

"""When each stream (and the pruner) runs. The only module that imports apscheduler.

APScheduler's (3.x) triggers compute the fire times of a schedule, a 5-field
crontab line or an interval (``15m``); this module drives them under anyio, one
task per job in one task group, so every run is a child of the daemon and a
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
- **Crontab semantics.** APScheduler numbers days of the week from Monday (0)
  while crontab numbers them from Sunday (0 or 7); numeric days are rewritten
  to names. When both day-of-month and day-of-week are restricted, crontab
  fires on either (an OR of two triggers), as cron does.

:class:`RunGate` shares the state's run lock (``state_dir/mirrord.lock``) with
``mirrord sync``: the daemon's runs hold it together, a one-shot sync holds it
alone, and a run of the daemon waits (and says so) while a one-shot sync runs.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from anyio.abc import TaskGroup, TaskStatus
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from mirrord.config import schedule_interval, validate_cron
from mirrord.state import StateLock

log = logging.getLogger("mirrord.scheduler")

JITTER_FRACTION = 0.1
MAX_JITTER = 300.0
DEFAULT_MAX_RUNS = 4
MAX_SLEEP = 60.0  # re-read the wall clock at least this often (suspend, clock steps)
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

RunFunc = Callable[[str, str], Awaitable[None]]


# --- triggers ----------------------------------------------------------------------


def crontab_day_of_week(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday, names allowed) as APScheduler
    day names, listed: ``1-5`` → ``mon,tue,wed,thu,fri``; ``*`` stays ``*``."""
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.lower().split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        first, _, last = span.partition("-")
        if first == "*":
            low, high = 0, 6
        else:
            low = _day_number(first)
            high = _day_number(last) if last else (7 if step_text else low)
        days.update(d % 7 for d in range(low, high + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def _day_number(text: str) -> int:
    return _DAYS.index(text[:3]) if text[:3] in _DAYS else int(text)


def build_trigger(expr: str) -> BaseTrigger:
    """An APScheduler trigger (without jitter) for a schedule: an interval or crontab."""
    interval = schedule_interval(expr)
    if interval is not None:
        if interval <= 0:
            raise ValueError(f"invalid interval {expr!r}: must be more than 0")
        return IntervalTrigger(seconds=interval)
    validate_cron(expr)
    minute, hour, day, month, day_of_week = expr.split()
    dow = crontab_day_of_week(day_of_week)
    fields = {"minute": minute, "hour": hour, "month": month, "second": "0"}
    if not day.startswith("*") and not day_of_week.startswith("*"):
        # crontab: a day matches when either field matches
        return OrTrigger([CronTrigger(day=day, **fields), CronTrigger(day_of_week=dow, **fields)])
    return CronTrigger(day=day, day_of_week=dow, **fields)


def period_of(trigger: BaseTrigger, now: datetime) -> float:
    """Seconds between two fire times of ``trigger`` from ``now`` (for the jitter)."""
    if isinstance(trigger, IntervalTrigger):
        return float(trigger.interval_length)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(None, first + timedelta(seconds=1)) if first else None
    return (second - first).total_seconds() if first and second else 0.0


def jitter_for(period: float) -> float:
    return min(period * JITTER_FRACTION, MAX_JITTER)


def _now() -> datetime:
    return datetime.now().astimezone()


# --- jobs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    """A job to schedule: its schedule, what runs, and whether it runs once at start."""

    schedule: str
    run: RunFunc
    catch_up: bool = False


@dataclass(frozen=True)
class JobInfo:
    name: str
    schedule: str
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
        self.trigger = build_trigger(spec.schedule)
        now = _now()
        self.jitter = jitter_for(period_of(self.trigger, now))
        self.grid: datetime | None = None
        self.advance(now)

    def advance(self, now: datetime) -> None:
        """The first scheduled time after ``now`` (and after the last one), jittered."""
        after = max(now, self.grid + timedelta(milliseconds=1)) if self.grid else now
        self.grid = self.trigger.get_next_fire_time(None, after)
        delay = timedelta(seconds=random.uniform(0, self.jitter))
        self.next_run = self.grid + delay if self.grid else None

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


# --- the run lock ----------------------------------------------------------------------


class RunGate:
    """The daemon's side of the state's run lock.

    The daemon's runs share one hold of the lock (the first takes it, the last
    lets go), so streams run side by side while a one-shot ``mirrord sync`` is
    kept out, and a run waits (logging who holds the lock) while one is in
    progress. :meth:`exclusive` (the pruner) waits for the shared runs to end
    and keeps new ones out. ``on_acquire`` runs each time the lock is taken.
    """

    def __init__(
        self,
        new_lock: Callable[[], StateLock],
        *,
        on_acquire: Callable[[], Awaitable[None]] | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self._new_lock = new_lock
        self._on_acquire = on_acquire
        self._poll = poll_interval
        self._flock: StateLock | None = None
        self._holders = 0
        self._entry = anyio.Lock()
        self._idle = anyio.Event()
        self._idle.set()

    @property
    def held(self) -> bool:
        return self._flock is not None

    @asynccontextmanager
    async def shared(self, what: str) -> AsyncIterator[None]:
        async with self._entry:
            await self._take(what)
        try:
            yield
        finally:
            self._leave()

    @asynccontextmanager
    async def exclusive(self, what: str) -> AsyncIterator[None]:
        async with self._entry:
            while self._holders:
                await self._idle.wait()
            await self._take(what)
            try:
                yield
            finally:
                self._leave()

    async def _take(self, what: str) -> None:
        if self._flock is None:
            lock = self._new_lock()
            waited = False
            while not await lock.try_acquire_async():
                if not waited:
                    holder = await lock.holder_async() or "another process"
                    log.info(
                        "%s waits: %s holds the state lock %s (a one-shot `mirrord sync`?)",
                        what,
                        holder,
                        lock.where,
                    )
                    waited = True
                await anyio.sleep(self._poll)
            if waited:
                log.info("%s: the state lock is free; starting", what)
            try:
                if self._on_acquire is not None:
                    await self._on_acquire()
            except BaseException:
                lock.release()
                raise
            self._flock = lock
        if self._holders == 0:
            self._idle = anyio.Event()
        self._holders += 1

    def _leave(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            if self._flock is not None:
                self._flock.release()
                self._flock = None
            self._idle.set()

"""``mirrord daemon``: the scheduler, the HTTP endpoints and the signals, in one task group.

Lifecycle:

- start: take the state_dir's daemon lock (a second daemon on the same state
  refuses, exit 3, naming the first's pid), open the state, bind the listening
  socket, schedule every stream (never-synced streams run at once), tell systemd READY=1;
- SIGHUP: reload the configuration; a file that does not load, or loads but could not
  be scheduled (:func:`mirrord.sync.check_buildable`), keeps the running configuration
  (the log names file, line and key);
- SIGTERM/SIGINT: start no new run, let runs in flight finish for up to
  ``stop_timeout`` seconds, then cancel them (each records its job as Failed,
  "interrupted"; a tag is pushed only after its content, so the mirror never
  names a half-copied image), and return (exit 0). A second signal abandons at once.

The runs themselves (run lock, client pools, jobs) are :mod:`._runner`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from collections.abc import Iterable
from datetime import datetime

import anyio
from anyio.abc import TaskStatus

from mirrord.config import Config, load_config
from mirrord.core.imagestream import rfc3339
from mirrord.daemon._metrics import Metrics
from mirrord.daemon._runner import QUEUED_SCAN, Runner, ever_synced, is_scheduled, stored_streams
from mirrord.daemon._scheduler import DEFAULT_MAX_RUNS, JobSpec, Scheduler
from mirrord.daemon._sdnotify import SystemdNotifier
from mirrord.daemon._server import HTTPServer
from mirrord.errors import ConfigError, MirrordError, ungrouped
from mirrord.prune import update_schedule_condition
from mirrord.state import Store, open_state
from mirrord.sync import check_buildable
from mirrord.transports import open_destination

log = logging.getLogger("mirrord.daemon")

DEFAULT_STOP_TIMEOUT = 30.0
PRUNE_JOB = ":prune"  # not a valid stream name
STORE_REFRESH = 60.0  # seconds between looks for streams `mirrord import-image` created
CHECK_TIMEOUT = 5.0  # seconds a /readyz check may take
CLEANUP_TIMEOUT = 5.0


class Daemon:
    """One ``mirrord daemon`` process. :meth:`run` returns after SIGTERM."""

    def __init__(
        self,
        config: Config,
        *,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        max_runs: int = DEFAULT_MAX_RUNS,
    ) -> None:
        self._config = config
        self._reschedule_lock = anyio.Lock()
        self.stop_timeout = stop_timeout
        self.metrics = Metrics()
        self.scheduler = Scheduler(max_runs=max_runs)
        self.sd = SystemdNotifier()
        self._runner: Runner | None = None
        self._stop = anyio.Event()
        self._abandon = anyio.Event()
        self._scheduler_done = anyio.Event()
        self._http_done = anyio.Event()
        self.metrics.watch(self._throttle_waits, self._next_runs, self._pacing_figures)
        self.metrics.set_mirror(config.mirror.registry)
        self.metrics.config_loaded(True)

    # -- what the HTTP endpoints see ---------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    @property
    def store(self) -> Store:
        return self.runner.store

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            raise RuntimeError("the daemon is not running")
        return self._runner

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def trigger(self, name: str) -> int | None:
        """Queue a run of any stream, configured or created by ``import-image``: the id
        of its Queued job, which the run takes over (None: no such stream)."""
        if name == PRUNE_JOB:
            return None
        if not self._known(name):  # created by import-image since the last look
            await self._reschedule()
            if not self._known(name):
                return None
        job = await self.store.start_job("sync", name, queued=True)
        if not self.scheduler.trigger(name, "triggered"):  # stopping meanwhile
            return None  # the job stays Queued: the next start runs it
        return job

    def _known(self, name: str) -> bool:
        return any(j.name == name for j in self.scheduler.jobs())

    async def _resume_queued(self) -> None:
        """Triggers accepted by a daemon that stopped before running them: run them now,
        or close them when their stream is gone."""
        for job in await self.store.list_jobs(limit=QUEUED_SCAN, kind="sync"):
            if job.status != "Queued" or job.stream is None:
                continue
            if self.scheduler.trigger(job.stream, "queued before a restart"):
                log.info("%s: running job %d, queued before the restart", job.stream, job.id)
            else:
                await self.runner.fail_queued(job.stream, "the stream no longer exists")

    def annotations(self, name: str) -> dict[str, str]:
        for job in self.scheduler.jobs():
            if job.name == name and job.schedule is not None:
                out = {"mirrord.io/schedule": job.schedule}
                if job.next_run is not None:
                    out["mirrord.io/next-run"] = rfc3339(job.next_run)
                return out
        return {}

    async def readiness(self) -> dict[str, str]:
        checks = {"config": "ok", "state": "ok", "mirror": "ok"}
        if self.stopping:
            checks["daemon"] = "stopping"
        try:
            # the database's reachability (a fresh connection), not the pool's say-so
            await self.store.ping(CHECK_TIMEOUT)
        except (MirrordError, OSError) as error:  # TimeoutError is an OSError
            checks["state"] = str(error) or "timed out"
        try:
            async with self.runner.lease() as (config, pool):
                with anyio.fail_after(CHECK_TIMEOUT):
                    await (await open_destination(config, pool)).ping()
        except (MirrordError, OSError) as error:
            checks["mirror"] = str(error) or "timed out"
        return checks

    # -- the main task -----------------------------------------------------------------

    async def run(self) -> None:
        config = self._config
        store = await anyio.to_thread.run_sync(open_state, config)
        try:
            # before anything else starts (a look at the database on PostgreSQL)
            daemon_lock = await anyio.to_thread.run_sync(store.hold_daemon_lock)
        except BaseException:
            await store.aclose()
            raise
        try:
            self.metrics.set_worker(store.worker)
            self._runner = Runner(config, store, self.metrics, self._notify_status)
            try:
                http = HTTPServer(self, config.server.listen)
                log.info("listening on http://%s", http.address)
                with ungrouped():
                    await self._main(http)
            finally:
                await self.runner.aclose()
                await store.aclose()
        finally:
            daemon_lock.release()

    async def _main(self, http: HTTPServer) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(self._run_scheduler)
            await tg.start(self._handle_signals)
            tg.start_soon(self._serve_http, http)
            await self.runner.cleanup_stale()
            await self._reschedule()
            await self._resume_queued()
            await self._pruner_scheduled()
            if self.sd.watchdog_interval:
                tg.start_soon(self._watchdog, self.sd.watchdog_interval)
            tg.start_soon(self._refresh_streams)
            self.sd.notify("READY=1", f"STATUS={self._status()}", f"MAINPID={os.getpid()}")
            log.info("ready: %s", self._status())
            await self._stop.wait()
            await self._drain()
            await self.runner.cleanup_stale()
            http.shutdown()
            with anyio.move_on_after(CLEANUP_TIMEOUT):
                await self._http_done.wait()
            tg.cancel_scope.cancel()
        log.info("stopped")

    async def _serve_http(self, http: HTTPServer) -> None:
        try:
            await http.serve()
        finally:
            self._http_done.set()

    async def _run_scheduler(self, *, task_status: TaskStatus[None]) -> None:
        try:
            await self.scheduler.serve(task_status=task_status)
        finally:
            self._scheduler_done.set()

    async def _drain(self) -> None:
        """Start nothing new; wait up to ``stop_timeout`` for runs in flight, then cancel."""
        running = self.scheduler.in_flight
        self.sd.notify("STOPPING=1", f"STATUS=stopping: {running} run(s) in flight")
        log.info("stopping: waiting up to %gs for %d run(s) in flight", self.stop_timeout, running)
        self.scheduler.stop()
        self.runner.stop()
        async with anyio.create_task_group() as tg:

            async def give_up_on_second_signal() -> None:
                await self._abandon.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(give_up_on_second_signal)
            with anyio.move_on_after(self.stop_timeout):
                await self._scheduler_done.wait()
            tg.cancel_scope.cancel()
        if not self._scheduler_done.is_set():
            log.warning("abandoning %d run(s) still in flight", self.scheduler.in_flight)
            self.scheduler.abandon()
            with anyio.move_on_after(CLEANUP_TIMEOUT):
                await self._scheduler_done.wait()

    async def _handle_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    if not self.stopping:
                        await self.reload()
                elif self.stopping:
                    log.warning("%s again: abandoning the runs in flight now", name)
                    self._abandon.set()
                else:
                    log.info("%s received", name)
                    self._stop.set()

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.sd.notify("WATCHDOG=1")
            await anyio.sleep(interval)

    async def _refresh_streams(self) -> None:
        """Pick up scheduled import-image streams; notice jobs a killed one-shot run left
        Running (when the lock is free), so their finish time is near their end."""
        while True:
            await anyio.sleep(STORE_REFRESH)
            if self.stopping:
                return
            try:
                await self._reschedule()
                await self.runner.cleanup_stale()
            except MirrordError as error:
                log.warning("cannot look for new image streams: %s", error)

    # -- configuration -----------------------------------------------------------------

    async def reload(self) -> None:
        """Load the configuration file again; keep the running one if it does not load."""
        path = self._config.path
        self.sd.notify(
            "RELOADING=1",
            f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
            "STATUS=reloading the configuration",
        )
        try:
            new = await anyio.to_thread.run_sync(load_config, path)
            check_buildable(new)  # what loads but could not be scheduled is refused too
        except ConfigError as error:
            log.error(
                "reload failed, still running the previous configuration: %s",
                error,
                extra={
                    "config_file": error.file,
                    "config_line": error.line,
                    "config_key": error.key,
                },
            )
            self.metrics.config_loaded(False)
            self.sd.notify("READY=1", f"STATUS=reload failed; {self._status()}")
            return
        self._config = self._keep_fixed(new)
        self.metrics.set_mirror(self._config.mirror.registry)
        try:
            await self._reschedule(new_pool=True)
            await self._pruner_scheduled()
        except MirrordError as error:
            log.error("reloaded, but the schedule was not updated: %s", error)
        self.metrics.config_loaded(True)
        log.info("configuration reloaded from %s: %s", path, self._status())
        self.sd.notify("READY=1", f"STATUS={self._status()}")

    def _keep_fixed(self, new: Config) -> Config:
        """Settings that take effect only at the next start keep their running values."""
        old = self._config
        if new.state_dir != old.state_dir:
            log.warning("state_dir changes at the next start; still using %s", old.state_dir)
            new = dataclasses.replace(new, state_dir=old.state_dir)
        if new.server.listen != old.server.listen:
            log.warning("server.listen changes at the next start; still on %s", old.server.listen)
            server = dataclasses.replace(new.server, listen=old.server.listen)
            new = dataclasses.replace(new, server=server)
        return new

    async def _reschedule(self, *, new_pool: bool = False) -> None:
        """Jobs for the configured streams, the stored scheduled ones, and the pruner;
        ``new_pool`` after a reload (the registry settings may have changed)."""
        # One at a time, reading the configuration inside the lock: a periodic refresh
        # must never re-apply the configuration a reload has just replaced.
        async with self._reschedule_lock:
            await self._reschedule_locked(new_pool)

    async def _reschedule_locked(self, new_pool: bool) -> None:
        config = self._config
        try:
            images = await self.store.list_streams()
            extra = await anyio.to_thread.run_sync(stored_streams, config, images)
        except MirrordError as error:
            log.error("cannot read the stored image streams; scheduling the file's: %s", error)
            images, extra = [], ()
        effective = dataclasses.replace(config, streams=(*config.streams, *extra))
        await self.runner.use(effective, new_pool=new_pool)
        synced = {i.name for i in images if ever_synced(i)}
        run = self.runner.run_stream
        specs = {
            s.name: JobSpec(s.schedule, run, catch_up=s.name not in synced)
            if is_scheduled(s)
            else JobSpec(None, run)  # import-image without --scheduled: on demand
            for s in effective.streams
        }
        if not config.pruning.suspend:
            specs[PRUNE_JOB] = JobSpec(config.pruning.schedule, self.runner.run_prune)
        self.scheduler.update(specs)
        self.metrics.streams(
            (s.name for s in effective.streams), {i.name: i.last_synced for i in images}
        )
        self.metrics.tags_failing(images)

    async def _pruner_scheduled(self) -> None:
        """The pruner's Scheduled condition: Scheduled, or Suspended by the file."""
        await update_schedule_condition(self.store, self._config.pruning)

    def _notify_status(self) -> None:
        self.sd.notify(f"STATUS={self._status()}")

    def _status(self) -> str:
        jobs = self.scheduler.jobs()
        streams = [j for j in jobs if j.name != PRUNE_JOB]
        scheduled = sum(j.schedule is not None for j in streams)
        on_demand = f" ({len(streams) - scheduled} on demand)" if len(streams) > scheduled else ""
        upcoming = [j.next_run for j in jobs if j.next_run is not None]
        text = f"{scheduled} streams scheduled{on_demand}, {self.scheduler.in_flight} running"
        if upcoming:
            text += f", next run {min(upcoming).strftime('%Y-%m-%d %H:%M:%S %Z')}"
        return text

    # -- metrics ---------------------------------------------------------------------------

    def _throttle_waits(self) -> dict[str, float]:
        return self._runner.throttle_waits() if self._runner is not None else {}

    def _pacing_figures(self) -> dict[str, tuple[int, int | None]]:
        return self._runner.pacing_figures() if self._runner is not None else {}

    def _next_runs(self) -> Iterable[tuple[str, datetime | None]]:
        return [(j.name, j.next_run) for j in self.scheduler.jobs() if j.name != PRUNE_JOB]

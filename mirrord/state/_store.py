"""The state store interface: what sync, import-image, the daemon and the pruner use.

Every method is async; an implementation runs its blocking I/O in a worker
thread. Each mutating method is one transaction: a process killed at any point
leaves the store as it was before or after the call, never between.

The store never holds a secret: no credential, token or webhook URL with a key
in it goes into a record (an outbox ``receiver`` is an identifier, not a URL).
"""

from __future__ import annotations

import abc
import errno
import fcntl
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from mirrord._errors import LockedError, StateError
from mirrord.imagestream import ImageStream, ImportResult, StreamSpec, TagEvent, TagStatus

JOB_KINDS = ("sync", "prune")
LOCK_FILE = "mirrord.lock"


@dataclass(frozen=True)
class JobRun:
    """One sync or prune run (``status`` is Running until finished)."""

    id: int
    kind: str
    stream: str | None
    status: str
    started: datetime
    finished: datetime | None
    counts: Mapping[str, int] = field(default_factory=dict)
    message: str = ""
    pid: int | None = None


@dataclass(frozen=True)
class OutboxEvent:
    """A notification waiting for (or done with) delivery to one receiver.

    Pending: ``delivered`` is None and ``next_attempt`` is set. Given up:
    ``delivered`` and ``next_attempt`` both None (``last_error`` says why).
    """

    id: int
    receiver: str
    payload: Mapping[str, Any]
    created: datetime
    attempts: int
    next_attempt: datetime | None
    last_error: str | None
    delivered: datetime | None

    @property
    def dead(self) -> bool:
        return self.delivered is None and self.next_attempt is None


@dataclass(frozen=True)
class PrunerCondition:
    """A pruner status condition (Available, Scheduled, Failed)."""

    type: str
    status: str
    reason: str
    message: str
    last_transition_time: datetime


class RunLock:
    """An exclusive ``flock`` on ``state_dir/mirrord.lock``: one mirrord run at a time.

    The kernel drops the lock when the holder exits, even on SIGKILL. The file
    holds the holder's pid so a refused run can name it. The descriptor is not
    inherited by child processes (notification commands cannot keep it held).
    Use as ``with`` (blocking thread) or ``async with`` (polls, cancellable).
    """

    def __init__(
        self,
        path: Path,
        *,
        wait: bool = False,
        timeout: float | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        self.path = path
        self.wait = wait
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder_pid(self) -> int | None:
        """The pid written by the current holder (None when unknown)."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def try_acquire(self) -> bool:
        """Take the lock if free; False when another open file description holds it."""
        if self._fd is not None:
            raise StateError(f"run lock {self.path} is already held by this object")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateError(f"cannot open run lock {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise StateError(f"cannot lock {self.path}: {exc.strerror}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:
            os.close(fd)
            raise StateError(f"cannot record the holder in {self.path}: {exc.strerror}") from exc
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def _refuse(self, waited: float | None) -> LockedError:
        pid = self.holder_pid()
        holder = f"pid {pid}" if pid is not None else "another process"
        if waited is None:
            return LockedError(
                f"another mirrord run is in progress ({holder} holds {self.path}); "
                "refusing to start a second one"
            )
        return LockedError(
            f"gave up after {waited:.0f}s waiting for the mirrord run of {holder} "
            f"(lock {self.path})"
        )

    def _expired(self, started: float) -> bool:
        return self.timeout is not None and time.monotonic() - started >= self.timeout

    def acquire(self) -> None:
        """Blocking acquire honouring ``wait`` and ``timeout``; LockedError when refused."""
        started = time.monotonic()
        while not self.try_acquire():
            if not self.wait:
                raise self._refuse(None)
            if self._expired(started):
                raise self._refuse(time.monotonic() - started)
            time.sleep(self.poll_interval)

    async def acquire_async(self) -> None:
        """Like :meth:`acquire`, sleeping with anyio between attempts (cancellable)."""
        started = time.monotonic()
        while not self.try_acquire():
            if not self.wait:
                raise self._refuse(None)
            if self._expired(started):
                raise self._refuse(time.monotonic() - started)
            await anyio.sleep(self.poll_interval)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> RunLock:
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Store(abc.ABC):
    """Image streams, tag history, job runs, the notification outbox and pruner status."""

    state_dir: Path

    def acquire_run_lock(self, wait: bool = False, timeout: float | None = None) -> RunLock:
        """The run lock (acquired on ``with``/``async with``); refuses with LockedError."""
        return RunLock(self.state_dir / LOCK_FILE, wait=wait, timeout=timeout)

    # -- image streams -------------------------------------------------------------

    @abc.abstractmethod
    async def get_stream(self, name: str) -> ImageStream | None:
        """The stream with all its tags (removed ones included), or None."""

    @abc.abstractmethod
    async def list_streams(self) -> list[ImageStream]:
        """Every stream, sorted by name, with its tags."""

    @abc.abstractmethod
    async def upsert_stream(self, spec: StreamSpec, *, now: datetime | None = None) -> ImageStream:
        """Create (generation 1) or update; a changed spec bumps the generation."""

    @abc.abstractmethod
    async def bump_generation(self, name: str) -> int:
        """Increment a stream's generation (an ``import-image`` request); the new value."""

    @abc.abstractmethod
    async def mark_synced(self, name: str, *, now: datetime | None = None) -> None:
        """Record that a run brought every selected tag of the stream to the mirror."""

    @abc.abstractmethod
    async def delete_stream(self, name: str) -> bool:
        """Forget a stream and its history; False when it did not exist."""

    # -- tags ----------------------------------------------------------------------

    @abc.abstractmethod
    async def record_tag_import(
        self,
        stream: str,
        tag: str,
        digest: str,
        reference: str,
        *,
        source_digest: str = "",
        generation: int | None = None,
        now: datetime | None = None,
    ) -> ImportResult:
        """:func:`~mirrord.imagestream.record_import` in one transaction.

        ``source_digest``: the upstream digest imported (see ``TagEvent``), kept on a new event.
        """

    @abc.abstractmethod
    async def record_tag_failure(
        self,
        stream: str,
        tag: str,
        reason: str,
        message: str,
        *,
        generation: int | None = None,
        now: datetime | None = None,
    ) -> TagStatus:
        """:func:`~mirrord.imagestream.record_failure` in one transaction."""

    @abc.abstractmethod
    async def record_tag_removed(
        self,
        stream: str,
        tag: str,
        *,
        delete_removed_tags: bool,
        now: datetime | None = None,
    ) -> TagStatus | None:
        """:func:`~mirrord.imagestream.record_removed`; None when the tag is unknown."""

    @abc.abstractmethod
    async def get_tag(self, stream: str, tag: str) -> TagStatus | None:
        """One tag's history (newest first) and conditions."""

    @abc.abstractmethod
    async def delete_tag_events(self, stream: str, tag: str, events: Sequence[TagEvent]) -> int:
        """Delete these events (matched by value) from a tag's history; how many went."""

    # -- job runs ------------------------------------------------------------------

    @abc.abstractmethod
    async def start_job(
        self, kind: str, stream: str | None = None, *, now: datetime | None = None
    ) -> int:
        """Record a Running job of ``kind`` ('sync' or 'prune'); its id."""

    @abc.abstractmethod
    async def finish_job(
        self,
        job_id: int,
        status: str,
        counts: Mapping[str, int] | None = None,
        message: str = "",
        *,
        now: datetime | None = None,
    ) -> None:
        """Close a job as 'Succeeded' or 'Failed' with its counts and a message."""

    @abc.abstractmethod
    async def list_jobs(self, limit: int = 20, kind: str | None = None) -> list[JobRun]:
        """The newest jobs first."""

    @abc.abstractmethod
    async def trim_jobs(self, kind: str, successful_limit: int, failed_limit: int) -> int:
        """Keep the newest N succeeded and N failed jobs of ``kind``; how many went."""

    @abc.abstractmethod
    async def abandon_running_jobs(
        self, message: str = "interrupted", *, now: datetime | None = None
    ) -> int:
        """Mark jobs left Running by a killed process as Failed (call under the run lock)."""

    # -- notification outbox -------------------------------------------------------

    @abc.abstractmethod
    async def enqueue_event(
        self, payload: Mapping[str, Any], receiver: str, *, now: datetime | None = None
    ) -> int:
        """Queue one JSON event for one receiver, due now; its id."""

    @abc.abstractmethod
    async def due_events(self, now: datetime | None = None, limit: int = 100) -> list[OutboxEvent]:
        """Pending events whose next attempt is due, oldest first."""

    @abc.abstractmethod
    async def mark_delivered(self, event_id: int, *, now: datetime | None = None) -> None:
        """The receiver accepted the event."""

    @abc.abstractmethod
    async def mark_failed(
        self,
        event_id: int,
        attempts: int,
        next_attempt: datetime | None,
        last_error: str,
    ) -> None:
        """A failed attempt: retry at ``next_attempt``, or give up when it is None."""

    @abc.abstractmethod
    async def failed_events(self, limit: int = 50) -> list[OutboxEvent]:
        """Undelivered events that failed at least once (retrying or given up), newest first."""

    @abc.abstractmethod
    async def purge_delivered(self, older_than: datetime) -> int:
        """Forget events delivered before ``older_than``; how many went."""

    # -- pruner conditions ---------------------------------------------------------

    @abc.abstractmethod
    async def set_pruner_condition(
        self,
        name: str,
        type_: str,
        status: str,
        reason: str = "",
        message: str = "",
        *,
        now: datetime | None = None,
    ) -> PrunerCondition:
        """Upsert; ``lastTransitionTime`` changes only when ``status`` flips."""

    @abc.abstractmethod
    async def pruner_conditions(self, name: str) -> list[PrunerCondition]:
        """The conditions of pruner ``name``, sorted by type."""

    # -- lifecycle -----------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Close the store; further calls raise StateError."""

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

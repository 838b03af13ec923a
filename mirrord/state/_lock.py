"""The run lock: one mirrord run (sync, import-image, a confirmed prune) at a time;
and the daemon lock: one ``mirrord daemon`` per state directory.

:class:`StateLock` is what callers hold; :class:`RunLock` is its ``flock`` form (the
SQLite store's), the PostgreSQL store's is an advisory lock (``_postgres_lock``).
"""

from __future__ import annotations

import abc
import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

import anyio

from mirrord.errors import LockedError, StateError

LOCK_FILE = "mirrord.lock"
QUEUE_FILE = "mirrord.lock.queue"  # held by an exclusive taker waiting for LOCK_FILE
DAEMON_LOCK_FILE = "mirrord-daemon.lock"  # held for a daemon's life (runs take LOCK_FILE)


class StateLock(abc.ABC):
    """A lock on the state, held by one object at a time (two objects in one process
    exclude each other too). ``shared`` holders may hold it together; an exclusive
    holder excludes every other. The holder's death frees it, even on SIGKILL.

    Use as ``with`` (blocking thread) or ``async with`` (polls, cancellable);
    ``wait`` and ``timeout`` (seconds) say whether and how long to wait for a holder.
    Refusals are :class:`LockedError` naming the holder and the lock.

    Exclusive takers go first: one that waits holds the lock's :attr:`queue` meanwhile
    (:meth:`enqueue`), and shared holders that keep the lock across many runs (the
    daemons) look (:meth:`contended`), admit no new run, and let go when their runs
    end, so a one-shot run or the pruner is not kept out by a busy fleet forever.
    """

    queue: StateLock | None = None
    """Set by the lock's maker: the lock an exclusive taker holds while it waits."""

    def __init__(
        self,
        *,
        shared: bool = False,
        wait: bool = False,
        timeout: float | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        self.shared = shared
        self.wait = wait
        self.timeout = timeout
        self.poll_interval = poll_interval

    @property
    @abc.abstractmethod
    def held(self) -> bool:
        """Whether this object holds the lock now."""

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """What the lock is, for messages: a file, or a database's run lock."""

    @abc.abstractmethod
    def try_acquire(self) -> bool:
        """Take the lock if free; False when another holder keeps it (StateError when the
        lock itself cannot be reached)."""

    @abc.abstractmethod
    def release(self) -> None:
        """Let go (nothing when not held)."""

    @abc.abstractmethod
    def holder(self) -> str | None:
        """Who holds it, for messages (``pid 123``, ``worker db1:123``); None if unknown."""

    async def try_acquire_async(self) -> bool:
        """:meth:`try_acquire` without blocking the event loop."""
        return self.try_acquire()

    async def holder_async(self) -> str | None:
        """:meth:`holder` without blocking the event loop."""
        return self.holder()

    async def release_async(self) -> None:
        """:meth:`release` without blocking the event loop."""
        self.release()

    def taken(self) -> bool:
        """Whether another object holds the lock exclusively now (a look: takes nothing)."""
        return self.holder() is not None

    def alive(self) -> bool:
        """Whether this object still holds the lock (a database lock goes with its
        connection: a holder checks, and takes it again when it is lost)."""
        return self.held

    async def alive_async(self) -> bool:
        return self.alive()

    def contended(self) -> bool:
        """Whether an exclusive taker waits for this lock: shared holders let go soon."""
        return self.queue is not None and self.queue.taken()

    async def contended_async(self) -> bool:
        if self.queue is None:
            return False
        return await self.queue.taken_async()

    async def taken_async(self) -> bool:
        return self.taken()

    def enqueue(self) -> None:
        """An exclusive taker that waits says so (nothing when another already does)."""
        if self.queue is not None and not self.shared and not self.queue.held:
            self.queue.try_acquire()

    def dequeue(self) -> None:
        """Done waiting (the lock is taken, or given up)."""
        if self.queue is not None:
            self.queue.release()

    async def enqueue_async(self) -> None:
        if self.queue is not None and not self.shared and not self.queue.held:
            await self.queue.try_acquire_async()

    async def dequeue_async(self) -> None:
        if self.queue is not None:
            with anyio.CancelScope(shield=True):
                await self.queue.release_async()

    def _refuse(self, holder: str | None, waited: float | None) -> LockedError:
        who = holder or "another process"
        if waited is None:
            return LockedError(
                f"another mirrord run is in progress ({who} holds {self.where}); "
                "refusing to start a second one (mirrord sync --wait waits for it)"
            )
        return LockedError(
            f"gave up after {waited:.0f}s waiting for the mirrord run of {who} "
            f"(lock {self.where})"
        )

    def _expired(self, started: float) -> bool:
        return self.timeout is not None and time.monotonic() - started >= self.timeout

    def acquire(self) -> None:
        """Blocking acquire honouring ``wait`` and ``timeout``; LockedError when refused.
        An exclusive taker waiting holds the :attr:`queue` meanwhile."""
        started = time.monotonic()
        try:
            while not self.try_acquire():
                if not self.wait:
                    raise self._refuse(self.holder(), None)
                if self._expired(started):
                    raise self._refuse(self.holder(), time.monotonic() - started)
                self.enqueue()
                time.sleep(self.poll_interval)
        finally:
            self.dequeue()

    async def acquire_async(self) -> None:
        """Like :meth:`acquire`, sleeping with anyio between attempts (cancellable)."""
        started = time.monotonic()
        try:
            while not await self.try_acquire_async():
                if not self.wait:
                    raise self._refuse(await self.holder_async(), None)
                if self._expired(started):
                    raise self._refuse(await self.holder_async(), time.monotonic() - started)
                await self.enqueue_async()
                await anyio.sleep(self.poll_interval)
        finally:
            await self.dequeue_async()

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> StateLock:
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):  # a cancelled run still lets go
            await self.release_async()


class RunLock(StateLock):
    """An ``flock`` on ``state_dir/mirrord.lock`` (exclusive, or shared).

    The kernel drops the lock when the holder exits, even on SIGKILL. The file
    holds the holder's pid so a refused run can name it (of shared holders, the
    first still alive). The descriptor is not
    inherited by child processes (notification commands cannot keep it held).
    """

    def __init__(
        self,
        path: Path,
        *,
        shared: bool = False,
        wait: bool = False,
        timeout: float | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        super().__init__(shared=shared, wait=wait, timeout=timeout, poll_interval=poll_interval)
        self.path = path
        self._fd: int | None = None
        self._named = False  # this object wrote the pid in the file

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def where(self) -> str:
        return str(self.path)

    def holder_pid(self) -> int | None:
        """The pid written by the current holder (the latest, when shared; None if unknown)."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def holder(self) -> str | None:
        pid = self.holder_pid()
        return f"pid {pid}" if pid is not None else None

    def try_acquire(self) -> bool:
        """Take the lock if free; False when another open file description holds it."""
        if self._fd is not None:
            raise StateError(f"run lock {self.path} is already held by this object")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateError(f"cannot open run lock {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise StateError(f"cannot lock {self.path}: {exc.strerror}") from exc
        try:
            self._record_holder(fd)
        except OSError as exc:
            os.close(fd)
            raise StateError(f"cannot record the holder in {self.path}: {exc.strerror}") from exc
        self._fd = fd
        return True

    def _record_holder(self, fd: int) -> None:
        """Write our pid, unless we share the lock with a live holder already named."""
        self._named = False
        if self.shared:
            named = self.holder_pid()
            if named is not None and _alive(named):
                return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._named = True

    def taken(self) -> bool:
        """Whether an exclusive ``flock`` is on the file now (probed with a shared one)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StateError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return True
            raise StateError(f"cannot look at {self.path}: {exc.strerror}") from exc
        finally:
            os.close(fd)  # and the probe's lock with it
        return False

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # A shared holder leaves the pid of another one still holding it.
            if self._named and (not self.shared or self.holder_pid() == os.getpid()):
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor drops the flock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def hold_daemon_lock(state_dir: Path) -> RunLock:
    """Take ``state_dir``'s daemon lock (creating the directory), for the caller to
    release when the daemon stops; LockedError naming the pid of a daemon holding it.

    Only daemons take it: a one-shot run next to a daemon takes the run lock as usual.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise StateError(f"cannot create state_dir {state_dir}: {exc.strerror}") from exc
    lock = RunLock(state_dir / DAEMON_LOCK_FILE)
    if lock.try_acquire():
        return lock
    pid = lock.holder_pid()  # None in the instant between the holder's flock and its write
    holder = f"pid {pid}" if pid is not None else "pid unknown"
    raise LockedError(
        f"another mirrord daemon ({holder}) uses state_dir {state_dir} "
        f"(it holds {lock.path}); refusing to start a second one"
    )

"""The run lock: one mirrord run (sync, import-image, a confirmed prune) at a time;
and the daemon lock: one ``mirrord daemon`` per state directory."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

import anyio

from mirrord.errors import LockedError, StateError

LOCK_FILE = "mirrord.lock"
DAEMON_LOCK_FILE = "mirrord-daemon.lock"  # held for a daemon's life (runs take LOCK_FILE)


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

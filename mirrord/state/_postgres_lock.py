"""Locks on a PostgreSQL state: session-level advisory locks, database-wide.

Each :class:`AdvisoryLock` object holds its lock on a connection of its own, so
two objects exclude each other even in one process (as two ``flock`` open file
descriptions do), and the server drops the lock the moment that connection
ends: the holder exited, was killed, or lost the database. The holder is named
from its session's ``application_name`` (``mirrord <worker>``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import anyio
import psycopg

from mirrord.errors import StateError
from mirrord.state._lock import StateLock

_HOLDER = (
    "SELECT a.application_name, l.pid FROM pg_locks l "
    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 2 ORDER BY l.pid LIMIT 1"
)
_APP_PREFIX = "mirrord "


def describe_holder(application_name: str | None, backend_pid: int) -> str:
    if application_name and application_name.startswith(_APP_PREFIX):
        return f"worker {application_name[len(_APP_PREFIX):]}"
    return f"database session {backend_pid}"


class AdvisoryLock(StateLock):
    """The advisory lock ``key`` (two int32s), taken through ``connect()``; see the module
    docstring. ``where`` names it in messages; ``error(exc, doing)`` turns a driver
    error into the store's StateError."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        error: Callable[[psycopg.Error, str], StateError],
        key: tuple[int, int],
        where: str,
        *,
        shared: bool = False,
        wait: bool = False,
        timeout: float | None = None,
        poll_interval: float = 0.5,  # each attempt is a connection: not too often
    ) -> None:
        super().__init__(shared=shared, wait=wait, timeout=timeout, poll_interval=poll_interval)
        self._connect = connect
        self._error = error
        self.key = key
        self._where = where
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    @property
    def where(self) -> str:
        return self._where

    def try_acquire(self) -> bool:
        if self._conn is not None:
            raise StateError(f"{self._where} is already held by this object")
        conn = self._connect()
        function = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
        try:
            row = conn.execute(f"SELECT {function}(%s, %s)", self.key).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise self._error(exc, f"cannot take {self._where}") from exc
        if row is None or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        """Unlock, then close: once this returns, another session can take the lock (a
        closed session's locks go a moment later, when its server process notices)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        function = "pg_advisory_unlock_shared" if self.shared else "pg_advisory_unlock"
        try:
            # A failure means the session is gone, and the lock went with it.
            with contextlib.suppress(psycopg.Error):
                if not conn.broken:
                    conn.execute(f"SELECT {function}(%s, %s)", self.key)
        finally:
            conn.close()

    def holder(self) -> str | None:
        """Another session holding the lock (None: nobody, or it just let go)."""
        conn = self._conn or self._connect()
        try:
            row = conn.execute(_HOLDER, self.key).fetchone()
        except psycopg.Error as exc:
            raise self._error(exc, f"cannot read who holds {self._where}") from exc
        finally:
            if conn is not self._conn:
                conn.close()
        return describe_holder(row[0], row[1]) if row is not None else None

    async def try_acquire_async(self) -> bool:
        return await anyio.to_thread.run_sync(self.try_acquire)

    async def holder_async(self) -> str | None:
        return await anyio.to_thread.run_sync(self.holder)

    async def release_async(self) -> None:
        await anyio.to_thread.run_sync(self.release)

    def alive(self) -> bool:
        """Whether the lock is still held: its connection answers (it is lost with it)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

"""The SQLite state store: ``state_dir/state.db`` in WAL mode.

One connection per store, used only from worker threads under a lock (the async
methods go through :func:`anyio.to_thread.run_sync`). Other processes (a
``mirrord describe`` next to the daemon) read concurrently thanks to WAL; every
write is one ``BEGIN IMMEDIATE`` transaction, so a killed process leaves the
database as of its last commit. Reads run in a transaction too, so a stream and
its tags come from one snapshot.

The SQL lives in :mod:`._sqlite_streams` (image streams and tags),
:mod:`._sqlite_jobs` (job runs, the outbox, pruner conditions) and
:mod:`._sqlite_leases`: plain functions taking the connection first, which
:class:`SQLiteStore` runs in a worker thread (the async methods are
:class:`~._sqlstore.SQLStore`'s, shared with PostgreSQL).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import anyio

from mirrord.errors import StateError
from mirrord.state import _sqlite_jobs, _sqlite_leases, _sqlite_streams
from mirrord.state._leases import default_worker
from mirrord.state._migrations import migrate
from mirrord.state._sqlstore import SQLStore

T = TypeVar("T")

DB_FILE = "state.db"
BUSY_TIMEOUT_MS = 10_000


def _enable_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL and return the journal mode now in force.

    Changing the journal mode takes an exclusive lock without calling the busy
    handler, so two processes opening a new database at once can get SQLITE_BUSY
    here even with a busy timeout; retry that for as long as the timeout allows.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class SQLiteStore(SQLStore):
    """:class:`Store` on SQLite. Opening creates ``state_dir`` and migrates the schema.

    One host, one daemon (the daemon lock is a file in ``state_dir``); the leases
    and claims work the same as on PostgreSQL, between this host's processes.
    """

    streams: ClassVar[ModuleType] = _sqlite_streams
    jobs: ClassVar[ModuleType] = _sqlite_jobs
    lease_sql: ClassVar[ModuleType] = _sqlite_leases

    def __init__(self, state_dir: str | os.PathLike[str], *, worker: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_FILE
        self.location = str(self.path)
        self.worker = worker or default_worker()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise StateError(f"cannot create state directory {self.state_dir}: {exc}") from exc
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            mode = _enable_wal(conn)
            if mode.lower() != "wal":
                raise StateError(f"{self.path}: cannot enable WAL (journal_mode is {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn, str(self.path))
        except sqlite3.Error as exc:
            conn.close()
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    # -- plumbing ------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` under the connection lock; sqlite errors become StateError."""
        with self._lock:
            if self._conn is None:
                raise StateError(f"state database {self.path} is closed")
            try:
                return fn(self._conn, *args)
            except sqlite3.Error as exc:
                raise StateError(f"state database {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, worker={self.worker!r})"


def store_exists(state_dir: str | os.PathLike[str]) -> bool:
    """Whether ``state_dir`` holds a database: readers and dry runs check before opening,
    since opening creates one."""
    return (Path(state_dir) / DB_FILE).exists()


def open_store(state_dir: str | os.PathLike[str], *, worker: str | None = None) -> SQLiteStore:
    """Open (creating and migrating) the SQLite store in ``state_dir``; synchronous.
    (:func:`mirrord.state.open_state` opens the one a configuration names.)"""
    return SQLiteStore(state_dir, worker=worker)

"""The PostgreSQL state store: one database shared by several mirrord workers.

Opening migrates the schema (:mod:`._postgres_schema`, under an advisory lock),
takes the store's *presence* lock (an advisory lock on a random key, recorded
in the jobs it starts, so others can tell its Running jobs from a dead
worker's) and opens a connection pool (psycopg-pool; connections are checked
before use, so a restarted server costs the next call nothing but a reconnect).
The async methods are :class:`~._sqlstore.SQLStore`'s, run in worker threads.

Locks are advisory locks on connections of their own (:mod:`._postgres_lock`):
the run lock is database-wide; the daemon lock is per worker name, since
several daemons share the database and divide the work by leases.

Errors name the database (``postgresql://user@host:port/dbname``), never the
password; failures to reach it are :class:`DatabaseUnavailableError` (temporary).
"""

from __future__ import annotations

import os
import secrets
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import anyio
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from mirrord.errors import DatabaseUnavailableError, LockedError, StateError
from mirrord.state import _postgres_jobs, _postgres_leases, _postgres_streams
from mirrord.state._leases import default_worker
from mirrord.state._lock import StateLock
from mirrord.state._postgres_conn import Database
from mirrord.state._postgres_lock import AdvisoryLock
from mirrord.state._postgres_schema import (
    DAEMON_NAMESPACE,
    PRESENCE_NAMESPACE,
    RUN_KEY,
    migrate,
    schema_version,
)
from mirrord.state._sqlstore import SQLStore

T = TypeVar("T")

POOL_SIZE = 8
POOL_TIMEOUT = 10.0  # seconds a call waits for a connection before it fails (temporary)


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


class PostgresStore(SQLStore):
    """:class:`Store` on PostgreSQL; see the module docstring.

    ``url`` is a libpq URL without a password; ``password`` (and ``password_source``,
    naming where it came from in messages) is passed beside it, else libpq looks in
    ``PGPASSFILE``/``~/.pgpass``. ``state_dir`` still holds what is not state (the
    default OCI layout, cluster resources). ``pool_timeout``: how long a call waits
    for a connection (the database down) before it fails, temporary. ``schema_found``:
    the schema version the database had when this store opened it.
    """

    streams: ClassVar[ModuleType] = _postgres_streams
    jobs: ClassVar[ModuleType] = _postgres_jobs
    lease_sql: ClassVar[ModuleType] = _postgres_leases
    several_daemons: ClassVar[bool] = True

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        password_source: str = "libpq (PGPASSFILE, ~/.pgpass)",
        state_dir: str | os.PathLike[str] = ".",
        worker: str | None = None,
        pool_size: int = POOL_SIZE,
        pool_timeout: float = POOL_TIMEOUT,
    ) -> None:
        self.worker = worker or default_worker()
        self.state_dir = Path(state_dir)
        self.db = Database(
            url, password=password, password_source=password_source, worker=self.worker
        )
        self.location = self.db.location
        self.presence = secrets.randbelow(2**31 - 2) + 1
        self._pool_timeout = pool_timeout
        self._pool: ConnectionPool[Any] | None = None
        self.schema_found = self._migrate()
        self._presence = AdvisoryLock(
            self.db.connect, self.db.error, (PRESENCE_NAMESPACE, self.presence), "presence"
        )
        if not self._presence.try_acquire():  # a random key another store drew
            raise StateError(f"state database {self.location}: presence key in use; retry")
        try:
            self._pool = self._open_pool(pool_size)
        except BaseException:
            self._presence.release()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r}, worker={self.worker!r})"

    def _migrate(self) -> int:
        conn = self.db.connect()
        try:
            return migrate(conn, f"state database {self.location}")
        except psycopg.Error as exc:
            raise self.db.error(exc, "cannot migrate the schema") from exc
        finally:
            conn.close()

    def _open_pool(self, size: int) -> ConnectionPool[Any]:
        pool: ConnectionPool[Any] = ConnectionPool(
            self.db.url,
            kwargs={**self.db.kwargs, "row_factory": dict_row},
            min_size=1,
            max_size=max(size, 1),
            open=False,
            name="mirrord-state",
            timeout=self._pool_timeout,
            check=ConnectionPool.check_connection,
            configure=_configure,
            # After an outage the pool retries with a growing delay; giving up soon lets
            # the next caller start a fresh attempt instead of waiting out the backoff.
            reconnect_timeout=self._pool_timeout,
        )
        try:
            pool.open(wait=True, timeout=self._pool_timeout)
        except PoolTimeout:
            pool.close()
            raise self._unreachable() from None
        return pool

    def _unreachable(self) -> StateError:
        """Why no connection came: a fresh attempt's own error, when it fails."""
        try:
            self.db.connect().close()
        except StateError as exc:
            return exc
        return DatabaseUnavailableError(
            f"state database {self.location}: no connection free within "
            f"{self._pool_timeout:.0f}s"
        )

    # -- plumbing ------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        pool = self._pool
        if pool is None:
            raise StateError(f"state database {self.location} is closed")
        try:
            with pool.connection() as conn:
                return fn(conn, *args)
        except PoolClosed:
            raise StateError(f"state database {self.location} is closed") from None
        except PoolTimeout:
            pass  # none to lend within pool_timeout: the database is away, or just back
        except psycopg.Error as exc:
            raise self.db.error(exc) from exc
        return self._call_alone(fn, *args)

    def _call_alone(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` on a connection of its own: the pool may still be backing off from an
        outage that is over. StateError (temporary) saying why when it is not over."""
        conn = self.db.connect(row_factory=dict_row)
        try:
            _configure(conn)
            return fn(conn, *args)
        except psycopg.Error as exc:
            raise self.db.error(exc) from exc
        finally:
            conn.close()

    def _keep_presence(self) -> None:
        """Take the presence lock again if its session was lost (the server restarted):
        without it, others would take this store's Running jobs for a dead worker's."""
        if self._pool is None or self._presence.alive():
            return
        self._presence.release()
        if not self._presence.try_acquire():  # the server has not noticed the loss yet
            raise DatabaseUnavailableError(
                f"state database {self.location}: this worker's lost session still holds "
                "its presence lock; retry"
            )

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            self._presence.release()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- locks ---------------------------------------------------------------------

    def acquire_run_lock(
        self, wait: bool = False, timeout: float | None = None, *, shared: bool = False
    ) -> StateLock:
        return AdvisoryLock(
            self.db.connect,
            self.db.error,
            RUN_KEY,
            f"the run lock of {self.location}",
            shared=shared,
            wait=wait,
            timeout=timeout,
        )

    def hold_daemon_lock(self) -> StateLock:
        key = zlib.crc32(self.worker.encode()) & 0x7FFFFFFF
        lock = AdvisoryLock(
            self.db.connect,
            self.db.error,
            (DAEMON_NAMESPACE, key),
            f"the daemon lock of worker {self.worker} in {self.location}",
        )
        if lock.try_acquire():
            return lock
        holder = lock.holder() or "another process"
        raise LockedError(
            f"another mirrord daemon ({holder}) runs as worker {self.worker!r} on "
            f"{self.location}; give each daemon its own worker_name"
        )


def database_has_state(
    url: str, *, password: str | None = None, password_source: str = "libpq"
) -> bool:
    """Whether the database holds a mirrord schema (readers check before opening, since
    opening creates one); synchronous."""
    db = Database(url, password=password, password_source=password_source, worker=default_worker())
    conn = db.connect()
    try:
        return schema_version(conn) > 0
    except psycopg.Error as exc:
        raise db.error(exc) from exc
    finally:
        conn.close()

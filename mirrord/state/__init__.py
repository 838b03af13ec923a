"""mirrord's state: image streams, tag history, job runs, the notification outbox,
the images of deleted streams (for the pruner), the leases several workers share the
work with, and where blobs landed in the mirror.

``open_state(config)`` opens the store a configuration names: PostgreSQL when it
sets ``database:``, else SQLite under ``state_dir``; ``open_store(state_dir)``
opens the SQLite store directly. Callers depend only on the :class:`Store`
interface (and :class:`StateLock` for its locks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mirrord.state._bloblocations import BlobLocation
from mirrord.state._leases import Lease, default_worker
from mirrord.state._lock import LOCK_FILE, RunLock, StateLock, hold_daemon_lock
from mirrord.state._open import database_password, open_state, state_exists
from mirrord.state._sqlite import SQLiteStore, open_store, store_exists
from mirrord.state._store import (
    JOB_DIED,
    JOB_KINDS,
    JobRun,
    OrphanedImage,
    OutboxEvent,
    PrunerCondition,
    ReceiverStatus,
    Store,
)

__all__ = [
    "JOB_DIED",
    "JOB_KINDS",
    "LOCK_FILE",
    "BlobLocation",
    "JobRun",
    "Lease",
    "OrphanedImage",
    "OutboxEvent",
    "PostgresStore",
    "PrunerCondition",
    "ReceiverStatus",
    "RunLock",
    "SQLiteStore",
    "StateLock",
    "Store",
    "database_password",
    "default_worker",
    "hold_daemon_lock",
    "open_state",
    "open_store",
    "state_exists",
    "store_exists",
]

if TYPE_CHECKING:
    from mirrord.state._postgres import PostgresStore


def __getattr__(name: str) -> Any:
    """``PostgresStore`` on first use: psycopg loads only where a database is used."""
    if name == "PostgresStore":
        from mirrord.state._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

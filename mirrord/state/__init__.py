"""mirrord's state: image streams, tag history, job runs, the notification outbox.

``open_store(state_dir)`` opens the default SQLite store; callers depend only on
the :class:`Store` interface.
"""

from __future__ import annotations

from mirrord.state._lock import LOCK_FILE, RunLock, hold_daemon_lock
from mirrord.state._sqlite import SQLiteStore, open_store, store_exists
from mirrord.state._store import (
    JOB_DIED,
    JOB_KINDS,
    JobRun,
    OutboxEvent,
    PrunerCondition,
    ReceiverStatus,
    Store,
)

__all__ = [
    "JOB_DIED",
    "JOB_KINDS",
    "LOCK_FILE",
    "JobRun",
    "OutboxEvent",
    "PrunerCondition",
    "ReceiverStatus",
    "RunLock",
    "SQLiteStore",
    "Store",
    "hold_daemon_lock",
    "open_store",
    "store_exists",
]

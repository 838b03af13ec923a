"""The daemon's side of the state's run lock.

:class:`RunGate` shares the state's run lock (``state_dir/mirrord.lock``) with
``mirrord sync``: the daemon's runs hold it together, a one-shot sync holds it
alone, and a run of the daemon waits (and says so) while a one-shot sync runs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from mirrord.state import StateLock

log = logging.getLogger("mirrord.scheduler")


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

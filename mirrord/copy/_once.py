"""Once per key within a run: concurrent callers of a running job wait for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from mirrord.errors import MirrordError


class Once:
    """Runs an async job once per key; concurrent callers wait for the first one."""

    def __init__(self) -> None:
        self._done: set[tuple[str, str]] = set()
        self._running: dict[tuple[str, str], anyio.Event] = {}
        self._failed: dict[tuple[str, str], MirrordError] = {}

    async def run(self, key: tuple[str, str], job: Callable[[], Awaitable[object]]) -> None:
        while key not in self._done:
            running = self._running.get(key)
            if running is None:
                break
            await running.wait()
            if key in self._failed:
                raise self._failed[key]
        if key in self._done:
            return
        event = self._running[key] = anyio.Event()
        self._failed.pop(key, None)
        try:
            await job()
            self._done.add(key)
        except MirrordError as error:
            self._failed[key] = error
            raise
        finally:
            del self._running[key]
            event.set()

"""Outages in the background, and ports nobody answers on.

    with registry_outage(mirror, duration=10.0, after=1.0) as outage:   # RegistryProcess
        run_mirrord(...)           # the mirror goes away 1 s in and is back 10 s later
    assert outage.downtime >= 10.0

    with proxy.outage(10.0):       # faultproxy.FaultProxy: refused, then accepting again
        ...

    with refused_port() as port:   # connections to 127.0.0.1:port are refused, and the port
        ...                        # cannot be taken by anyone else meanwhile

Leaving the `with` block waits for the outage to end (the thing is up again afterwards, also
when the block raised); `outage.wait()` does the same without leaving.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["Outage", "refused_port", "registry_outage"]


class Outage:
    """Calls `down()` after `after` seconds and `up()` `duration` seconds later, in a thread.

    `went_down` / `came_up` are `time.monotonic()` stamps (None until it happened); an
    exception from `down`/`up` is re-raised by `wait()`.
    """

    def __init__(self, down: Callable[[], object], up: Callable[[], object], *,
                 duration: float, after: float = 0.0) -> None:
        self._down, self._up = down, up
        self.duration, self.after = duration, after
        self.went_down: float | None = None
        self.came_up: float | None = None
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="outage")

    def start(self) -> Outage:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            if self._cancel.wait(self.after):
                return
            self._down()
            self.went_down = time.monotonic()
            self._cancel.wait(self.duration)
            self._up()
            self.came_up = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - handed to the test's thread by wait()
            self.error = exc

    @property
    def downtime(self) -> float:
        if self.went_down is None or self.came_up is None:
            return 0.0
        return self.came_up - self.went_down

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the outage is over (it is up again); re-raise its error."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the outage did not end in time")
        if self.error is not None:
            raise self.error

    def end_now(self) -> None:
        """Cut the outage short (or cancel it before it started) and wait until it is up."""
        self._cancel.set()
        self.wait(60)

    def __enter__(self) -> Outage:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None:
            self.end_now()
        else:
            self.wait(self.after + self.duration + 60)


class _Restartable(Protocol):
    def stop(self, *, keep_port: bool = ...) -> None: ...
    def start(self) -> object: ...


def registry_outage(registry: _Restartable, *, duration: float, after: float = 0.0) -> Outage:
    """A RegistryProcess outage: stopped (its port held, so connections are refused and the
    port cannot be taken) after `after` s, started again on the same port `duration` s later."""
    return Outage(lambda: registry.stop(keep_port=True), registry.start,
                  duration=duration, after=after)


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 bound but not listening: connecting is refused, and it stays
    reserved (unlike a bind-close-reuse "free port") until the block ends."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])

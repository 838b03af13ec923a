"""A delaying TCP proxy on loopback: makes a local registry look ``delay_ms`` away.

Every byte is held back half the round trip in each direction, in order, without
limiting throughput, so each HTTP request/response exchange on a connection costs
one extra round trip, and opening a connection costs one more (the TCP handshake
a real WAN charges). A client that waits for each answer before its next request
pays the delay per request; one with requests in flight on several connections
overlaps them — which is what the WAN profile measures.

It forwards bytes, not HTTP, so TLS passes through untouched: the client's handshake is
with the registry itself, and the registry's certificate must name the address the client
dialled (127.0.0.1, which a proxy on another port of it shares). Every accepted
connection's time (``time.monotonic()``) is kept in ``accepted``: with ``delay_ms=0`` the
proxy is a tap that times a command's first connection (its start-up).
Only loopback: it listens on 127.0.0.1 and refuses an upstream elsewhere.

    with DelayProxy("127.0.0.1", 5000, delay_ms=50) as proxy:
        ... talk to proxy.host ("127.0.0.1:PORT") ...

Runs its own asyncio loop in a daemon thread. ``python -m bench.wanproxy UPSTREAM``
runs one in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import threading
import time
from types import TracebackType

_EOF = b""
_READ = 256 * 1024


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a name: never resolved, so never trusted
        return False


class DelayProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_host:upstream_port`` with a delay."""

    def __init__(self, upstream_host: str, upstream_port: int, *, delay_ms: float = 50.0) -> None:
        if not _is_loopback(upstream_host):
            raise ValueError(f"the delay proxy forwards to loopback only, not {upstream_host}")
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay_ms / 1000.0
        self.port = 0
        self.connections = 0  # connections accepted so far
        self.accepted: list[float] = []  # time.monotonic() of each accepted connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def first_connection_after(self, started: float) -> float | None:
        """Seconds from ``started`` (a ``time.monotonic()``) to the first connection
        accepted since then, or None if none was."""
        later = [t for t in list(self.accepted) if t >= started]
        return min(later) - started if later else None

    # -- lifecycle (called from the owning thread) ------------------------------------------
    def start(self) -> DelayProxy:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._server is None:
            raise RuntimeError("the delay proxy did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=512)
            )
            self.port = int(self._server.sockets[0].getsockname()[1])
            ready.set()
            loop.run_forever()
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            ready.set()
            loop.close()

    # -- forwarding ---------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted.append(time.monotonic())
        self.connections += 1
        try:
            await asyncio.sleep(self.delay)  # the handshake's round trip
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except (ConnectionError, OSError):
            writer.close()
            self._tasks.discard(task)
            return
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        try:
            done, _ = await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            for finished in done:
                with contextlib.suppress(ConnectionError, OSError):
                    finished.result()
        finally:  # either side went away: close the other
            for pipe in pipes:
                pipe.cancel()
            up_writer.close()
            writer.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk released ``delay / 2`` after it arrived."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        one_way = self.delay / 2

        async def receive() -> None:
            while True:
                try:
                    chunk = await reader.read(_READ)
                except (ConnectionError, OSError):
                    chunk = _EOF
                queue.put_nowait((time.monotonic() + one_way, chunk))
                if chunk == _EOF:
                    return

        async def send() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if chunk == _EOF:
                    with contextlib.suppress(OSError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()

        receiver = asyncio.ensure_future(receive())
        try:
            await send()
        finally:
            receiver.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", help="HOST:PORT to forward to")
    parser.add_argument("--delay", type=float, default=25.0, help="round trip, ms (default 25)")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    with DelayProxy(host, int(port), delay_ms=args.delay) as proxy:
        print(f"forwarding {proxy.host} -> {args.upstream} (+{args.delay:g} ms round trip)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()

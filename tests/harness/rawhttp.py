"""A loopback server that answers HTTP/1.1 request heads with whatever bytes a test says:
for what a real registry never sends (a malformed status line, an endless head, a
connection closed while idle). Runs on the test's own asyncio loop.

    async with RawServer(lambda conn, req, head: b"HTTP/1.1 200 OK\\r\\n\\r\\n") as server:
        ... server.url, server.connections, server.heads ...

``answer(connection, request, head)``: the bytes for the ``request``-th request (from 0)
on the ``connection``-th connection (from 0), given its head; ``CLOSE`` closes the
connection instead (bytes ending in ``CLOSE``: those bytes, then the close), ``SILENT``
leaves it open and unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Self

__all__ = ["CLOSE", "SILENT", "RawServer"]

CLOSE = b"<close>"
SILENT = b"<silent>"

Answer = Callable[[int, int, bytes], bytes]


class RawServer:
    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._server: asyncio.Server | None = None
        self.connections = 0
        self.heads: list[bytes] = []  # every request head received, in order
        self._writers: list[asyncio.StreamWriter] = []
        self._host = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def host(self) -> str:
        assert self._host, "the server is not started"
        return self._host

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._host = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._writers:
            writer.transport.abort()
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            for request in range(1000):
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                answer = self._answer(number, request, head)
                if answer.endswith(CLOSE):
                    writer.write(answer.removesuffix(CLOSE))
                    await writer.drain()
                    break
                if answer == SILENT:
                    await asyncio.sleep(3600)
                writer.write(answer)
                await writer.drain()
        writer.transport.abort()

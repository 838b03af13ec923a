"""The transport under httpx: httpcore's connection pool over asyncio's own streams.

httpcore's default network backend (anyio's TLS stream) hands the HTTP layer one TLS
record per read, at most 16 KiB, and opens two cancel scopes and an exception-mapping
context for each: pulling a blob cost ~6.8 s of CPU per GiB in httpx alone. asyncio's
streams decrypt in bulk into their buffer, so a read here hands over everything buffered,
up to :data:`READ_MAX`: 1.7 → 0.75 CPU-s for a 256 MiB pull over TLS from Debian's
registry, and 0.63 → 0.5 for the push (``bench``'s big blob; the figures are in
issue 17's note). Under any event loop other than asyncio (trio), httpcore's anyio
backend is used as before.

The pool is httpcore's (public API); this module maps its exceptions to httpx's, as
httpx's own transport does, so everything above sees the same ``httpx.HTTPError`` tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpcore
import httpx

__all__ = ["AsyncioTransport"]

READ_MAX = 256 * 1024  # the most one read hands over (httpcore asks for 64 KiB)

# httpcore's exceptions and httpx's: the first class in an exception's MRO found here.
_EXCEPTIONS: dict[type[Exception], type[httpx.HTTPError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.ProtocolError: httpx.ProtocolError,
}


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        mapped = next((_EXCEPTIONS[t] for t in type(exc).__mro__ if t in _EXCEPTIONS), None)
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


@contextlib.contextmanager
def _network_errors(
    timeout: type[httpcore.TimeoutException], error: type[httpcore.NetworkError]
) -> Iterator[None]:
    """A socket's ``OSError``/``SSLError`` (``ssl.SSLError`` is one) and an expired wait,
    as the httpcore exceptions its connections expect from a network stream."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout(str(exc) or "timed out") from exc
    except OSError as exc:
        raise error(str(exc) or type(exc).__name__) from exc


class _Stream(httpcore.AsyncNetworkStream):
    """One TCP connection (TLS once :meth:`start_tls` has run) as asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # What is buffered past max_bytes is handed over too: h11 and h2 take any amount,
        # and each read is a turn of the whole HTTP stack.
        with _network_errors(httpcore.ReadTimeout, httpcore.ReadError):
            async with asyncio.timeout(timeout):
                return await self._reader.read(max(max_bytes, READ_MAX))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _network_errors(httpcore.WriteTimeout, httpcore.WriteError):
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()

    async def aclose(self) -> None:
        # As httpcore's anyio backend does: the socket is closed without waiting for the
        # peer's TLS close_notify (an unresponsive peer would hold the run).
        self._writer.transport.abort()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # asyncio wraps the context at once (SSLProtocol.__init__), before any await: the
        # ALPN protocols httpcore set on the shared context just before are the ones used.
        with _network_errors(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle pooled connection the server closed
            return (self._reader.at_eof() or self._reader.exception() is not None
                    or self._writer.is_closing())
        names = {"ssl_object": "ssl_object", "client_addr": "sockname",
                 "server_addr": "peername", "socket": "socket"}
        return self._writer.get_extra_info(names[info]) if info in names else None


class _Backend(httpcore.AsyncNetworkBackend):
    """asyncio streams under asyncio; httpcore's anyio backend under any other loop."""

    def __init__(self) -> None:
        self._anyio = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None, socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        if socket_options or not under_asyncio():
            return await self._anyio.connect_tcp(host, port, timeout, local_address,
                                                 socket_options)
        local = (local_address, 0) if local_address else None
        with _network_errors(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=local, limit=READ_MAX, happy_eyeballs_delay=0.25
                )
        return _Stream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await self._anyio.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._stream.aclose()


class AsyncioTransport(httpx.AsyncBaseTransport):
    """An httpx transport: httpcore's pool (HTTP/1.1, and HTTP/2 when ``http2`` and the
    server's ALPN agree) on :class:`_Backend`. ``ssl_context`` False: plain HTTP, or TLS
    that verifies nothing (``tls_verify: false``), as httpx's ``verify=False``."""

    def __init__(self, ssl_context: ssl.SSLContext | bool, *, limits: httpx.Limits,
                 http2: bool = False) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context if isinstance(ssl_context, ssl.SSLContext)
            else unverified_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True, http2=http2, network_backend=_Backend(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            answer = await self._pool.handle_async_request(core)
        return httpx.Response(answer.status, headers=answer.headers,
                              stream=_ResponseStream(answer.stream),
                              extensions=answer.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


def under_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio
        return False
    return True


def unverified_context() -> ssl.SSLContext:
    """``tls_verify: false``: TLS without checking the certificate (nor loading a store)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context

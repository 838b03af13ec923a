"""``HEAD`` requests without the HTTP stack: HTTP/1.1 keep-alive connections of our own.

A no-op sync is one ``HEAD`` per upstream tag. Through httpx's client and httpcore's
HTTP/2 each cost ~1 ms of CPU (450 HEADs to Debian's registry over TLS: 0.47-0.59
CPU-s, against 0.05 for the same exchanges written and parsed here; issue 17's note).
A ``HEAD`` answer has no body whatever its ``Content-Length`` says (RFC 9110 §9.3.2),
so an exchange is a request head written and a response head read: the status line and
the header fields, at most :data:`MAX_HEAD` bytes, parsed strictly (RFC 9112 §2-5: no
obsolete line folding, field names are tokens, nothing but visible text in values).

:meth:`HeadPool.send` answers with a complete :class:`httpx.Response`, or None when the
exchange is httpx's to make: a redirect (httpx follows it and checks where it goes), a
server that insists on HTTP/2, another origin, or an event loop other than asyncio. After
a redirect or an HTTP/2-only answer the pool declines every later exchange too.
Failures raise the ``httpx`` exceptions httpx would, chained to their cause, so the
error mapping and the retry tables above see no difference. A pooled connection the
server closed while idle is replaced once (a ``HEAD`` is idempotent, RFC 9110 §9.2.2).
Nothing here bounds concurrency: every request already holds a slot of the registry's
limiter, so at most that many connections are busy; at most :attr:`keep` stay idle.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from dataclasses import dataclass, field

import httpx

from mirrord.registry._transport import under_asyncio, unverified_context

__all__ = ["MAX_HEAD", "HeadPool"]

MAX_HEAD = 64 * 1024  # a response head larger than this is refused
MAX_INTERIM = 8  # 1xx answers skipped before the final one
IDLE_EXPIRY = 5.0  # seconds an idle connection is kept (httpx's keep-alive expiry)

_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_NAME = re.compile(_TOKEN)
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*")
_SAFE_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")

_Fields = list[tuple[bytes, bytes]]


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = field(default_factory=time.monotonic)

    def usable(self) -> bool:
        return (
            time.monotonic() - self.idle_since < IDLE_EXPIRY
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        # Abort, as the other transports do: no wait for a peer's TLS close_notify.
        self.writer.transport.abort()


class _Stale(Exception):
    """A reused connection gave no answer at all: the server had closed it."""


class HeadPool:
    """``HEAD`` exchanges with one origin (``base_url``) over pooled HTTP/1.1
    connections. ``verify``: the TLS context (False: TLS that checks nothing; unused
    for ``http``); ``stall_timeout`` bounds each wait for the network, ``connect_timeout``
    a connection's set-up."""

    def __init__(
        self,
        base_url: httpx.URL,
        verify: ssl.SSLContext | bool,
        *,
        stall_timeout: float,
        connect_timeout: float = 15.0,
        keep: int = 12,
    ) -> None:
        self._origin = (base_url.scheme, base_url.host, base_url.port)
        self._tls: ssl.SSLContext | None = None
        if base_url.scheme == "https":
            self._tls = verify if isinstance(verify, ssl.SSLContext) else unverified_context()
        self._stall, self._connect_timeout, self.keep = stall_timeout, connect_timeout, keep
        self._idle: list[_Connection] = []
        # Why httpx makes every exchange from now on: the server chose HTTP/2 in spite of
        # our ALPN offer, or it redirects HEADs (each would be sent twice).
        self.declined = ""
        self.opened = 0  # connections made (for tests and the curious)

    def serves(self, request: httpx.Request) -> bool:
        url = request.url
        return (
            request.method == "HEAD"
            and not self.declined
            and (url.scheme, url.host, url.port) == self._origin
            and under_asyncio()
        )

    async def send(
        self, request: httpx.Request, auth: httpx.Auth | None = None
    ) -> httpx.Response | None:
        """The answer to ``request`` (a ``HEAD`` this pool :meth:`serves`), or None;
        ``auth``'s flow runs as httpx runs it (a 401 may bring a new token and a resend)."""
        if not self.serves(request):
            return None
        if auth is None:
            return await self._send(request)
        flow = auth.async_auth_flow(request)
        try:
            request = await anext(flow)
            while True:
                response = await self._send(request)
                if response is None:
                    return None
                try:
                    request = await flow.asend(response)
                except StopAsyncIteration:
                    return response
        finally:
            await flow.aclose()

    async def _send(self, request: httpx.Request) -> httpx.Response | None:
        head = _request_head(request)
        while self._idle:
            connection = self._idle.pop()
            if not connection.usable():
                connection.close()
                continue
            try:
                return await self._exchange(connection, head, request, reused=True)
            except _Stale:
                continue
        fresh = await self._open(request.url)
        if fresh is None:
            return None
        return await self._exchange(fresh, head, request, reused=False)

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def _exchange(
        self, connection: _Connection, head: bytes, request: httpx.Request, *, reused: bool
    ) -> httpx.Response | None:
        kept = False
        try:
            await self._write(connection, head, reused)
            version, status, fields = await self._read_answer(connection, reused)
            if 300 <= status < 400 and status != 304:
                kept = self._keep(connection, version, fields)
                self.declined = "redirects"
                return None  # httpx follows redirects (and checks where they lead)
            response = httpx.Response(
                status, headers=fields, content=b"", request=request,
                extensions={"http_version": b"HTTP/1.%d" % version},
            )
            kept = self._keep(connection, version, fields)
            return response
        finally:
            if not kept:
                connection.close()

    def _keep(self, connection: _Connection, version: int, fields: _Fields) -> bool:
        """Pool ``connection`` again unless the answer closes it (RFC 9112 §9.3)."""
        tokens = b",".join(v for k, v in fields if k.lower() == b"connection").lower()
        if version == 0 or b"close" in (t.strip() for t in tokens.split(b",")):
            return False
        if len(self._idle) >= self.keep:
            return False
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        return True

    async def _open(self, url: httpx.URL) -> _Connection | None:
        host, port = url.host, url.port or (443 if self._tls else 80)
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, limit=MAX_HEAD, happy_eyeballs_delay=0.25
                )
                connection = _Connection(reader, writer)
                if self._tls is not None:
                    await self._start_tls(connection, host)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:  # ssl.SSLError is one
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        self.opened += 1
        if self._tls is not None:
            ssl_object = connection.writer.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() not in (
                None, "http/1.1"
            ):
                self.declined = "HTTP/2 only"
                connection.close()
                return None
        return connection

    async def _start_tls(self, connection: _Connection, host: str) -> None:
        assert self._tls is not None
        try:
            # The context is shared with httpcore's pools, which set ALPN just before
            # their handshakes; asyncio wraps it at once (no await between the two).
            self._tls.set_alpn_protocols(["http/1.1"])
            await connection.writer.start_tls(self._tls, server_hostname=host)
        except BaseException:
            connection.close()
            raise

    async def _write(self, connection: _Connection, head: bytes, reused: bool) -> None:
        try:
            connection.writer.write(head)
            async with asyncio.timeout(self._stall):
                await connection.writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("sending a HEAD timed out") from exc
        except OSError as exc:
            if reused:
                raise _Stale from exc
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    async def _read_answer(
        self, connection: _Connection, reused: bool
    ) -> tuple[int, int, _Fields]:
        """The final answer's HTTP minor version, status and fields (1xx skipped)."""
        for interim in range(MAX_INTERIM + 1):
            raw = await self._read_head(connection, reused and interim == 0)
            version, status, fields = parse_head(raw)
            if status >= 200:
                return version, status, fields
            if status == 101:
                raise httpx.RemoteProtocolError("the server switched protocols unasked")
        raise httpx.RemoteProtocolError(f"more than {MAX_INTERIM} interim (1xx) answers")

    async def _read_head(self, connection: _Connection, stale_possible: bool) -> bytes:
        try:
            async with asyncio.timeout(self._stall):
                return await connection.reader.readuntil(b"\r\n\r\n")
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer to a HEAD within {self._stall:g}s") from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError(
                f"the answer's head is larger than {MAX_HEAD} bytes"
            ) from exc
        except asyncio.IncompleteReadError as exc:
            if stale_possible and not exc.partial:
                raise _Stale from exc
            raise httpx.RemoteProtocolError(
                "the server closed the connection before its answer was complete"
            ) from exc
        except OSError as exc:
            if stale_possible:
                raise _Stale from exc
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


def _request_head(request: httpx.Request) -> bytes:
    """``request``'s head as HTTP/1.1 bytes; a header value that could end the line
    early (a token server's answer, say) is refused rather than sent."""
    lines = [b"HEAD " + request.url.raw_path + b" HTTP/1.1"]
    for name, value in request.headers.raw:
        if not _SAFE_VALUE.fullmatch(value) or not _NAME.fullmatch(name):
            raise httpx.LocalProtocolError(f"refused to send the header {name[:40]!r}: "
                                           "it holds a control character")
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def parse_head(raw: bytes) -> tuple[int, int, _Fields]:
    """A response head (through its blank line): HTTP minor version, status, fields."""
    status_line, *field_lines = raw[:-4].split(b"\r\n")
    matched = _STATUS.fullmatch(status_line)
    if matched is None:
        raise httpx.RemoteProtocolError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
    fields = []
    for line in field_lines:
        field_match = _FIELD.fullmatch(line)
        if field_match is None:
            raise httpx.RemoteProtocolError(f"malformed header field line: {line[:80]!r}")
        fields.append((field_match.group(1), field_match.group(2)))
    return int(matched.group(1)), int(matched.group(2)), fields

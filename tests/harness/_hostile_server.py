"""The HTTP machinery behind `hostile.HostileRegistry`: a threaded server on 127.0.0.1:0 that
tracks its connections (so a reset or stop can cut them) and a handler that writes a
`Response` through the fault actions. Routing and content live in hostile.py (`App.answer`)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from .faults import (
    Action,
    Corrupt,
    Delay,
    Endless,
    Headers,
    Redirect,
    Reset,
    ResetConnection,
    Status,
    error_body,
    is_terminal,
    shape_body,
)
from .reqlog import LoggedRequest, RequestLog

__all__ = ["App", "HarnessHTTPServer", "Request", "Response"]

_MAX_REQUEST_BODY = 1024 * 1024  # the fake reads at most this much of a request body
# a client that went away, timed out or refused our certificate: not a bug in the fake
_CONNECTION_ERRORS = (ConnectionError, TimeoutError, ResetConnection, ssl.SSLError)


@dataclass(frozen=True)
class Request:
    role: str  # "hostile" or "catcher"
    method: str
    target: str  # raw request target, query included
    raw_path: str  # the target's path, not decoded
    path: str  # percent-decoded
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Iterable[bytes] = ()
    size: int | None = 0  # None: unknown, sent chunked

    @classmethod
    def json(cls, status: int, data: bytes, headers: dict[str, str] | None = None) -> Response:
        return cls(status, {"Content-Type": "application/json", **(headers or {})}, (data,),
                   len(data))

    @classmethod
    def error(cls, status: int, code: str, message: str,
              headers: dict[str, str] | None = None) -> Response:
        return cls.json(status, error_body(status, code, message), headers)


class App(Protocol):
    """What the server needs from its owner."""

    errors: list[BaseException]

    def log_for(self, role: str) -> RequestLog: ...
    def actions_for(self, role: str, method: str, path: str) -> list[Action]: ...
    def redirect_base(self) -> str: ...
    def answer(self, request: Request) -> Response: ...


class HarnessHTTPServer(ThreadingHTTPServer):
    """Binds 127.0.0.1 port 0; `interrupt()` wakes every waiting handler and cuts every
    open connection; `stop()` does that, stops accepting and waits for the handlers.
    With `tls`, connections are wrapped, the handshake done in the handler's thread (a
    client that never finishes it cannot block the accept loop)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, app: App, role: str, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self.role = role
        self.tls = tls
        self.event = threading.Event()  # replaced on every interrupt
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True, name=f"{self.role}-{self.port}")
        self._thread.start()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Called when a connection is over, whatever happened (a failed TLS handshake too)."""
        super().shutdown_request(request)
        with self._lock:
            self._connections.discard(request)
            self._idle.notify_all()

    def interrupt(self) -> None:
        with self._lock:
            event, self.event = self.event, threading.Event()
            conns = list(self._connections)
        event.set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def stop(self, timeout: float = 5.0) -> None:
        self.shutdown()
        self.interrupt()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            self._idle.wait_for(lambda: not self._connections, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, _CONNECTION_ERRORS):
            self.app.errors.append(exc)  # a bug in the fake: the fixture reports it


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small writes must not wait for delayed ACKs (40 ms each)
    server: HarnessHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- one request ---------------------------------------------------------------------
    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if self.headers.get("Transfer-Encoding") or length > _MAX_REQUEST_BODY:
            self.close_connection = True  # not worth framing: answer, then close
            return b""
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        app, role = self.server.app, self.server.role
        event = self.server.event
        entry = app.log_for(role).record(self.command, self.path, self.headers.items())
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path)
        request = Request(role, self.command, self.path, split.path, path,
                          urllib.parse.parse_qs(split.query, keep_blank_values=True),
                          {k.lower(): v for k, v in self.headers.items()}, self._read_body())
        actions = app.actions_for(role, self.command, path)
        if actions:
            entry.fault = ",".join(type(a).__name__ for a in actions)
        try:
            for a in actions:
                if isinstance(a, Delay) and not self._wait(event, a.seconds):
                    raise ResetConnection("interrupted")
            if actions and is_terminal(actions[-1]):
                self._terminal(actions[-1], request, entry)
                return
            self._deliver(app.answer(request), actions, entry, event)
        except ResetConnection:
            self._reset()

    @staticmethod
    def _wait(event: threading.Event, seconds: float | None) -> bool:
        return not event.wait(seconds)

    def _terminal(self, action: Action, request: Request, entry: LoggedRequest) -> None:
        if isinstance(action, Status):
            body = error_body(action.status, action.code)
            self._head(Response(action.status, action.response_headers(), (body,), len(body)),
                       entry)
            if self.command != "HEAD":
                self.wfile.write(body)
        elif isinstance(action, Redirect):
            base = action.to or self.server.app.redirect_base()
            self._head(Response(action.status, {"Location": base + request.target}), entry)
        elif isinstance(action, Reset):
            raise ResetConnection("reset before answering")

    def _head(self, resp: Response, entry: LoggedRequest) -> None:
        entry.status = resp.status
        self.send_response(resp.status)
        headers = dict(resp.headers)
        if resp.size is None:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(resp.size)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _deliver(self, resp: Response, actions: list[Action], entry: LoggedRequest,
                 event: threading.Event) -> None:
        for a in actions:
            if isinstance(a, Headers):
                for name, value in a.set.items():
                    for key in [k for k in resp.headers if k.lower() == name.lower()]:
                        del resp.headers[key]
                    if value is not None:
                        resp.headers[name] = value
        endless = next((a for a in actions if isinstance(a, Endless)), None)
        body: Iterable[bytes] = resp.body
        original = resp.size
        if endless is not None:
            body, resp.size = _endless(endless, event), None
        elif resp.size is not None:
            for a in actions:
                if isinstance(a, Corrupt):
                    resp.size = a.adjust(resp.size)
        self._head(resp, entry)
        if self.command == "HEAD":
            return
        chunked = resp.size is None
        for chunk in shape_body(body, actions, lambda s: self._wait(event, s), time.monotonic,
                                original):
            if not chunk:
                continue
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0, then close)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()


def _endless(action: Endless, event: threading.Event) -> Iterator[bytes]:
    if action.prefix:
        yield action.prefix
    while not event.is_set():
        yield action.filler

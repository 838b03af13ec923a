"""One client connection of `faultproxy.FaultProxy`: parse requests with h11, apply the
proxy's faults, forward to the upstream over one keep-alive connection, stream the answer back.

Bodies are streamed in both directions (chunked or sized, as they came; h11 re-frames them),
so keep-alive, chunked uploads and large PUT/PATCH bodies pass through unchanged.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING

import h11

from .faults import (
    Action,
    Delay,
    Headers,
    Redirect,
    Reset,
    ResetConnection,
    Status,
    Throttle,
    error_body,
    is_terminal,
    route_kind,
    shape_body,
)
from .reqlog import LoggedRequest

if TYPE_CHECKING:
    from .faultproxy import FaultProxy

__all__ = ["ProxyConnection"]

_READ = 256 * 1024
_MAX_HEAD = 1024 * 1024


def _rst(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class _Peer:
    """A socket and its h11 state machine."""

    def __init__(self, sock: socket.socket, role: type[h11.CLIENT] | type[h11.SERVER]) -> None:
        self.sock = sock
        self.h11 = h11.Connection(role, max_incomplete_event_size=_MAX_HEAD)
        self.used = False  # served a request already (a stale keep-alive may fail once)

    def next(self) -> object:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(self.sock.recv(_READ))

    def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            self.sock.sendall(data)

    def reusable(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self.used = True
            return True
        return False


class ProxyConnection:
    def __init__(self, proxy: FaultProxy, sock: socket.socket) -> None:
        self.proxy = proxy
        self.client = _Peer(sock, h11.SERVER)
        self.upstream: _Peer | None = None
        self.event: threading.Event = proxy.event
        self.method = ""  # of the request being answered

    def close(self, reset: bool = False) -> None:
        """Close both sides (with a TCP reset when `reset`); safe from any thread."""
        for peer in (self.client, self.upstream):
            if peer is None:
                continue
            if reset:
                _rst(peer.sock)
            else:
                with contextlib.suppress(OSError):
                    peer.sock.shutdown(socket.SHUT_RDWR)
                peer.sock.close()

    def wait(self, seconds: float | None) -> bool:
        return not self.event.wait(seconds)

    def serve(self) -> None:
        try:
            while True:
                req = self.client.next()
                if not isinstance(req, h11.Request):
                    return
                self.event = self.proxy.event
                self._one(req)
                if not self.client.reusable():
                    return
        except ResetConnection:
            self.close(reset=True)
        except (OSError, h11.ProtocolError):
            pass  # the client or the upstream went away or spoke garbage: this connection is over
        finally:
            self.close()

    # -- one exchange ------------------------------------------------------------------------
    def _one(self, req: h11.Request) -> None:
        method, target = req.method.decode(), req.target.decode("latin-1")
        self.method = method
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in req.headers.raw_items()]
        entry = self.proxy.log.record(method, target, headers)
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        actions = self.proxy.rules.match(method, path)
        limit = self.proxy.ratelimit
        extra: dict[str, str] = {}
        terminal = bool(actions) and is_terminal(actions[-1])  # a fault rule answers first
        if limit is not None and not terminal and route_kind(path) == "manifests":
            extra, exhausted = limit.take(method)
            if exhausted:
                actions.append(Status(429, headers=extra, code="TOOMANYREQUESTS"))
        if actions:
            entry.fault = ",".join(type(a).__name__ for a in actions)
        delay = self.proxy.latency + sum(a.seconds for a in actions if isinstance(a, Delay))
        if delay > 0 and not self.wait(delay):
            raise ResetConnection("interrupted")
        if actions and is_terminal(actions[-1]):
            self._terminal(actions[-1], req, entry)
            return
        if self.proxy.bandwidth:
            actions.append(Throttle(self.proxy.bandwidth))
        self._forward(req, entry, actions, extra)

    def _drain(self) -> None:
        while not isinstance(self.client.next(), h11.EndOfMessage | h11.ConnectionClosed):
            pass

    def _answer(self, entry: LoggedRequest, status: int, headers: dict[str, str],
                body: bytes = b"") -> None:
        client = self.client.h11
        if client.their_state is h11.SEND_BODY and not client.they_are_waiting_for_100_continue:
            self._drain()  # (a client waiting for 100 sends no body; the connection closes)
        entry.status = status
        hdrs = [(k, v) for k, v in headers.items()] + [("Content-Length", str(len(body)))]
        self.client.send(h11.Response(status_code=status, headers=hdrs))
        if body and self.method != "HEAD":
            self.client.send(h11.Data(data=body))
        self.client.send(h11.EndOfMessage())

    def _terminal(self, action: Action, req: h11.Request, entry: LoggedRequest) -> None:
        if isinstance(action, Reset):
            raise ResetConnection("reset before answering")
        if isinstance(action, Status):
            self._answer(entry, action.status, action.response_headers(),
                         error_body(action.status, action.code))
        elif isinstance(action, Redirect):
            location = (action.to or "") + req.target.decode("latin-1")
            self._answer(entry, action.status, {"Location": location})

    def _connect(self) -> _Peer:
        if self.upstream is None:
            sock = socket.create_connection(self.proxy.upstream_address, timeout=30)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.upstream = _Peer(sock, h11.CLIENT)
        return self.upstream

    def _drop_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.sock.close()
            self.upstream = None

    def _forward(self, req: h11.Request, entry: LoggedRequest, actions: list[Action],
                 extra: dict[str, str]) -> None:
        has_body = any(k.lower() in (b"content-length", b"transfer-encoding") and v != b"0"
                       for k, v in req.headers.raw_items())
        for attempt in (1, 2):
            try:
                up = self._connect()
            except OSError as exc:
                self._answer(entry, 502, {"Content-Type": "application/json"},
                             error_body(502, "UNAVAILABLE", f"upstream: {exc.strerror or exc}"))
                return
            retry = up.used and not has_body and attempt == 1
            try:
                up.send(h11.Request(method=req.method, target=req.target,
                                    headers=list(req.headers.raw_items())))
                resp = self._send_request_body(up) or self._response_head(up)
                break
            except (OSError, h11.ProtocolError):
                self._drop_upstream()
                if retry:
                    continue  # a keep-alive connection the upstream had closed: once more
                self._answer(entry, 502, {"Content-Type": "application/json"},
                             error_body(502, "UNAVAILABLE", "upstream connection lost"))
                return
        self._relay_response(up, resp, entry, actions, extra)

    def _send_request_body(self, up: _Peer) -> h11.Response | None:
        """Stream the request body upstream; a final answer the upstream gave instead of
        `100 Continue` is returned (the client then sends no body)."""
        if self.client.h11.they_are_waiting_for_100_continue:
            event = up.next()
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.InformationalResponse):
                self.client.send(event)
        rate = self.proxy.upload_bandwidth
        sent, started = 0, time.monotonic()
        while True:
            event = self.client.next()
            if isinstance(event, h11.Data):
                up.send(event)
                sent += len(event.data)
                ahead = sent / rate - (time.monotonic() - started) if rate else 0
                if ahead > 0 and not self.wait(ahead):
                    raise ResetConnection("interrupted")
            elif isinstance(event, h11.EndOfMessage):
                up.send(event)
                return None
            else:
                raise h11.RemoteProtocolError("client went away mid-request")

    def _response_head(self, up: _Peer) -> h11.Response:
        while True:
            event = up.next()
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.InformationalResponse):
                with contextlib.suppress(h11.LocalProtocolError):  # 100 after the body
                    self.client.send(event)
                continue
            raise h11.RemoteProtocolError(f"upstream sent {event!r}")

    def _upstream_body(self, up: _Peer) -> Iterator[bytes]:
        while True:
            event = up.next()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise h11.RemoteProtocolError("upstream went away mid-body")

    def _relay_response(self, up: _Peer, resp: h11.Response, entry: LoggedRequest,
                        actions: list[Action], extra: dict[str, str]) -> None:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers.raw_items()]
        changes: dict[str, str | None] = dict(extra)
        for a in actions:
            if isinstance(a, Headers):
                changes.update(a.set)
        lowered = {k.lower() for k in changes}
        headers = [(k, v) for k, v in headers if k.lower() not in lowered]
        headers += [(k, v) for k, v in changes.items() if v is not None]
        entry.status = resp.status_code
        self.client.send(h11.Response(status_code=resp.status_code, headers=headers,
                                      reason=resp.reason))
        for chunk in shape_body(self._upstream_body(up), actions, self.wait, time.monotonic):
            if chunk:
                self.client.send(h11.Data(data=chunk))
        self.client.send(h11.EndOfMessage())
        if not up.reusable():
            self._drop_upstream()

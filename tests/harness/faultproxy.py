"""An HTTP fault proxy on loopback in front of a real registry (issue 11).

    with FaultProxy(registry) as proxy:       # or fault_proxy_factory(registry) in a test
        proxy.host, proxy.url                 # talk to this instead of registry.host
        proxy.latency = 0.05                  # seconds added before every request is forwarded
        proxy.bandwidth = 200_000             # response bodies at most this many bytes/s
        proxy.upload_bandwidth = 200_000      # request bodies (PUT/PATCH) likewise
        proxy.storm(0.2)                      # 20 % of GET/HEAD -> 429 Retry-After: 1 (seeded)
        proxy.storm(0.1, status=503, methods=None, route="blobs")
        proxy.ratelimit = DockerHubLimit(limit=100, remaining=5)   # ratelimit-* headers;
                                              # each manifest GET takes one; at 0 -> 429
        proxy.on("blobs", Corrupt("flip"), methods="GET", times=1)  # any faults.py rule
        proxy.on("blobs", Reset(after_bytes=1000), times=1)
        proxy.on("manifests", Reset(), fraction=0.1)               # RST instead of an answer
        proxy.cut()                           # reset every open connection now
        proxy.down(); ...; proxy.up()         # refused (port kept) and all connections cut
        with proxy.outage(10.0, after=1.0): ...   # the same in a background thread
        proxy.count("manifests", method="GET", status=429); proxy.log.counts()

Knobs are plain attributes, read per request, so a test may change them while a client runs.
The proxy speaks HTTP/1.1 with h11 on both sides (keep-alive, chunked and sized bodies, large
uploads and `Expect: 100-continue` pass through); it forwards the Host header unchanged, so
the registry's `Location` headers point back at the proxy. A request the upstream cannot be
reached for gets `502`; an idle keep-alive connection the upstream had closed is retried once
for body-less requests. Plain HTTP upstreams only.

`fraction` rules draw from one RNG seeded with `seed`: the same order of requests gets the
same faults (concurrent clients may interleave differently from run to run).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ._proxy_conn import ProxyConnection
from .faults import Action, Corrupt, Endless, Redirect, Rule, RuleSet, Status
from .outage import Outage
from .reqlog import RequestLog

__all__ = ["DockerHubLimit", "FaultProxy"]


class _HasHost(Protocol):
    @property
    def host(self) -> str: ...


@dataclass
class DockerHubLimit:
    """Docker Hub's pull limit: manifest answers carry `ratelimit-limit: L;w=W` and
    `ratelimit-remaining: R;w=W`; each manifest GET (not HEAD) takes one; with none left a
    manifest GET gets `429 TOOMANYREQUESTS`. Set `remaining` at any time."""

    limit: int = 100
    remaining: int | None = None  # None: start at `limit`
    window: int = 21600
    source: str = "127.0.0.1"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.remaining is None:
            self.remaining = self.limit

    def take(self, method: str) -> tuple[dict[str, str], bool]:
        """(headers to add, exhausted) for one manifest request."""
        with self._lock:
            left = self.remaining or 0
            exhausted = method == "GET" and left <= 0
            if method == "GET" and not exhausted:
                left -= 1
            self.remaining = left
        return {"ratelimit-limit": f"{self.limit};w={self.window}",
                "ratelimit-remaining": f"{left};w={self.window}",
                "docker-ratelimit-source": self.source}, exhausted


class FaultProxy:
    """See the module docstring. `upstream`: "host:port" or anything with a `.host`."""

    def __init__(self, upstream: str | _HasHost, *, seed: int = 0, name: str = "proxy") -> None:
        if getattr(upstream, "scheme", "http") != "http":
            raise ValueError("the fault proxy speaks plain HTTP only")
        target = upstream if isinstance(upstream, str) else upstream.host
        host, _, port = target.rpartition(":")
        self.upstream_address = (host, int(port))
        self.latency = 0.0
        self.bandwidth: float | None = None
        self.upload_bandwidth: float | None = None
        self.ratelimit: DockerHubLimit | None = None
        self.rules = RuleSet(seed)
        self.log = RequestLog(name)
        self.errors: list[BaseException] = []  # bugs in the proxy itself
        self.connections = 0  # accepted so far
        self.event = threading.Event()  # set (and replaced) to wake waiting connections
        self.port = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._held: socket.socket | None = None  # bound, not listening: "down"
        self._acceptor: threading.Thread | None = None
        self._active: dict[ProxyConnection, threading.Thread] = {}

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def is_down(self) -> bool:
        return self._held is not None

    def __repr__(self) -> str:
        up = "{}:{}".format(*self.upstream_address)
        return f"<FaultProxy {self.host} -> {up}{' down' if self.is_down else ''}>"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        if self._listener is None and self._held is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
            self._listen(sock)
        return self

    def _listen(self, sock: socket.socket) -> None:
        sock.listen(256)
        self._listener = sock
        self._acceptor = threading.Thread(target=self._accept, args=(sock,), daemon=True,
                                          name=f"fault-proxy-{self.port}")
        self._acceptor.start()

    def _stop_listening(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            sock.close()
        if self._acceptor is not None:
            self._acceptor.join(5)
            self._acceptor = None

    def stop(self) -> None:
        """Stop listening, cut every connection, wait for their threads."""
        self._stop_listening()
        if self._held is not None:
            self._held.close()
            self._held = None
        self.cut()
        with self._lock:
            threads = list(self._active.values())
        for t in threads:
            t.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """No faults, no latency or throttling, no rate limit, empty log; open connections cut."""
        self.cut()
        self.latency = 0.0
        self.bandwidth = self.upload_bandwidth = None
        self.ratelimit = None
        self.rules.clear()
        self.log.clear()

    # -- connections -------------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # shut down by down() or stop()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = ProxyConnection(self, sock)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self.connections += 1
                self._active[conn] = thread
            thread.start()

    def _serve(self, conn: ProxyConnection) -> None:
        try:
            conn.serve()
        except Exception as exc:  # noqa: BLE001 - a proxy bug: recorded; the fixture fails the test
            self.errors.append(exc)
            conn.close(reset=True)
        finally:
            with self._lock:
                self._active.pop(conn, None)

    def cut(self) -> None:
        """Reset every open connection now (waiting ones wake up and reset too)."""
        with self._lock:
            event, self.event = self.event, threading.Event()
            conns = list(self._active)
        event.set()
        for conn in conns:
            conn.close(reset=True)

    def down(self) -> None:
        """Refuse new connections (the port stays reserved) and cut the open ones."""
        with self._lock:
            if self._held is not None or self._listener is None:
                return
        self._stop_listening()
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", self.port))
        self._held = held
        self.cut()

    def up(self) -> None:
        """Accept connections again on the same port."""
        held, self._held = self._held, None
        if held is not None:
            self._listen(held)

    def outage(self, duration: float, *, after: float = 0.0) -> Outage:
        """`down()` after `after` s and `up()` `duration` s later, in a background thread."""
        return Outage(self.down, self.up, duration=duration, after=after)

    # -- faults ------------------------------------------------------------------------------
    def on(self, route: str, action: Action, *, methods: str | Iterable[str] | None = None,
           times: int | None = None, fraction: float | None = None) -> Rule:
        """Add a fault rule (faults.py); returns the `Rule` (see `rule.hits`). The proxy
        cannot `Endless`, corrupts only with "flip" and redirects only with an explicit `to`."""
        if isinstance(action, Endless) or (isinstance(action, Corrupt) and action.mode != "flip"):
            raise ValueError(f"the fault proxy cannot {action!r}")
        if isinstance(action, Redirect) and action.to is None:
            raise ValueError("a fault proxy Redirect needs `to`")
        return self.rules.add(route, action, methods=methods, times=times, fraction=fraction)

    def storm(self, fraction: float, *, status: int = 429, retry_after: float | None = 1,
              methods: str | Iterable[str] | None = ("GET", "HEAD"),
              route: str = "tags|manifests|blobs") -> Rule:
        """Answer `fraction` of the matching requests with `status` (+ Retry-After)."""
        return self.on(route, Status(status, retry_after=retry_after), methods=methods,
                       fraction=fraction)

    def count(self, route: str | None = None, *, method: str | None = None,
              status: int | None = None) -> int:
        return self.log.count(route, method=method, status=status)

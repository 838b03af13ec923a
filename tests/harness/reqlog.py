"""A thread-safe record of the requests a harness server received (hostile registry, its
credential catcher, the fault proxy).

    log.count("manifests", method="GET")           # route names or regexes, as in faults.py
    log.assert_no_request(r"^/v2/other/")          # fails naming what did arrive
    log.authorizations()                           # every Authorization value, in order
    log.assert_no_credentials()                    # no Authorization/Proxy-Authorization/Cookie

Entries are recorded when the request head arrives (so a request whose answer stalls is
already there); `status` is filled in when the answer starts (None if it never did). The log
keeps the newest `maxlen` entries; `total` counts all of them.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .faults import route_kind, route_regex

__all__ = ["CREDENTIAL_HEADERS", "LoggedRequest", "RequestLog"]

#: headers that carry a credential
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")


@dataclass(eq=False)
class LoggedRequest:
    """One request. `target` is the raw request target (query included); `path` is its
    percent-decoded path; `headers` are (lower-case name, value) pairs in arrival order."""

    server: str
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    time: float = field(default_factory=time.time)
    status: int | None = None
    fault: str | None = None  # the injected action, if any (its class name)

    @property
    def path(self) -> str:
        return urllib.parse.unquote(urllib.parse.urlsplit(self.target).path)

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.target).query,
                                     keep_blank_values=True)

    @property
    def route(self) -> str:
        return route_kind(self.path)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def credentials(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.headers if k in CREDENTIAL_HEADERS]

    def __repr__(self) -> str:  # never the header values (they may be credentials)
        return f"<{self.server} {self.method} {self.target!r} -> {self.status}>"


class RequestLog:
    def __init__(self, server: str, maxlen: int = 100_000) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._entries: deque[LoggedRequest] = deque(maxlen=maxlen)
        self.total = 0

    def record(self, method: str, target: str,
               headers: Iterable[tuple[str, str]]) -> LoggedRequest:
        entry = LoggedRequest(self.server, method, target,
                              tuple((k.lower(), v) for k, v in headers))
        with self._lock:
            self._entries.append(entry)
            self.total += 1
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.total = 0

    @property
    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return self.total

    def select(self, route: str | None = None, *, method: str | None = None,
               status: int | None = None) -> list[LoggedRequest]:
        """Entries matching a route (name or regex over the decoded path), method, status."""
        rx = route_regex(route) if route else None
        return [e for e in self.entries
                if (method is None or e.method == method)
                and (status is None or e.status == status)
                and (rx is None or rx.search(e.path))]

    def count(self, route: str | None = None, *, method: str | None = None,
              status: int | None = None) -> int:
        return len(self.select(route, method=method, status=status))

    def requests(self) -> list[tuple[str, str]]:
        """(method, target) of every entry, oldest first."""
        return [(e.method, e.target) for e in self.entries]

    def counts(self) -> Counter[tuple[str, str, int | None]]:
        """How many requests per (method, route kind, status)."""
        return Counter((e.method, e.route, e.status) for e in self.entries)

    def authorizations(self) -> list[str]:
        """Every Authorization header value received, in order."""
        return [v for e in self.entries for k, v in e.headers if k == "authorization"]

    def assert_no_request(self, route: str, *, method: str | None = None) -> None:
        hits = self.select(route, method=method)
        assert not hits, f"{self.server} received {len(hits)} request(s) on {route!r}: {hits[:5]}"

    def assert_no_credentials(self) -> None:
        """No request carried a credential header (the values are not shown)."""
        hits = [(e, [k for k, _ in e.credentials()]) for e in self.entries if e.credentials()]
        assert not hits, f"{self.server} received credentials: {hits[:5]}"

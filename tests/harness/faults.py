"""Fault rules shared by the hostile registry (`hostile.py`) and the fault proxy (`faultproxy.py`).

A rule says *which* requests (a route and methods) and *how often* (`times`, `fraction`), and
carries one action saying *what* goes wrong:

    server.on("blobs", Status(503), times=2)                    # the next two blob requests
    server.on("manifests|blobs", Status(429, retry_after=1), fraction=0.2, methods="GET")
    server.on(f"/blobs/{digest}$", Corrupt("flip"))             # a regex on the decoded path
    rule = server.on("blobs", Reset(after_bytes=100)); ...; assert rule.hits == 1

Terminal actions replace the answer: `Status`, `Redirect`, `Reset` (with `after_bytes=None`:
no answer at all). The others shape the real answer and combine: `Delay`, `Headers`,
`Corrupt`, `Throttle`, `Trickle`, `Stall`, `Endless` (hostile registry only) and `Reset`
with `after_bytes=N` (headers and N body bytes, then a TCP reset). Rules are tried in the
order added; every matching shaping rule applies, the first matching terminal one ends the list.

Routes: a name from `ROUTES` ("ping", "token", "catalog", "tags", "manifests", "uploads",
"blobs", "any"), several joined by "|", or else a regular expression searched in the request
path (percent-decoded, without the query). `fraction` draws from one `random.Random(seed)`
per rule set, so a run with the same request order makes the same choices.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ROUTES", "Action", "Corrupt", "Delay", "Endless", "Headers", "Redirect", "Reset",
    "ResetConnection", "Rule", "RuleSet", "Stall", "Status", "Throttle", "Trickle",
    "error_body", "is_terminal", "route_kind", "route_regex", "shape_body",
]

#: route names -> regexes over the decoded path (first match names a request's route kind)
ROUTES: dict[str, str] = {
    "ping": r"^/v2/?$",
    "token": r"^/token",
    "catalog": r"^/v2/_catalog$",
    "tags": r"^/v2/.+/tags/list$",
    "manifests": r"^/v2/.+/manifests/",
    "uploads": r"^/v2/.+/blobs/uploads/",
    "blobs": r"^/v2/.+/blobs/",
    "any": r"",
}
_COMPILED = {name: re.compile(rx) for name, rx in ROUTES.items() if name != "any"}

_ERROR_CODES = {400: "UNSUPPORTED", 401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND",
                405: "UNSUPPORTED", 429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}


def route_kind(path: str) -> str:
    """The first `ROUTES` name matching `path` ("other" when none does)."""
    for name, rx in _COMPILED.items():
        if rx.search(path):
            return name
    return "other"


def error_body(status: int, code: str | None = None, message: str = "injected fault") -> bytes:
    """A distribution-style `{"errors": [...]}` document."""
    code = code or _ERROR_CODES.get(status, "UNKNOWN")
    return (b'{"errors":[{"code":"%s","message":"%s","detail":null}]}'
            % (code.encode(), message.encode()))


# -- actions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    """Answer `status` instead (JSON error body; `retry_after` sets `Retry-After` in seconds;
    a 401 carries `WWW-Authenticate: Basic` unless `headers` says otherwise)."""

    status: int
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    code: str | None = None  # the error code in the body; default from the status

    def response_headers(self) -> dict[str, str]:
        out = {"Content-Type": "application/json"}
        if self.status == 401:
            out["WWW-Authenticate"] = 'Basic realm="injected-fault"'
        if self.retry_after is not None:
            ra = self.retry_after
            out["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        out.update(self.headers)
        return out


@dataclass(frozen=True)
class Redirect:
    """`status` (307) with `Location: <to><request path and query>`; `to` None means the
    hostile registry's catcher. The fault proxy needs an explicit `to`."""

    to: str | None = None
    status: int = 307


@dataclass(frozen=True)
class Reset:
    """A TCP reset (RST). `after_bytes=None`: instead of any answer; `N`: after the status
    line, the headers (with the full Content-Length) and N bytes of the body (a body no
    longer than N is sent whole, then the connection is reset)."""

    after_bytes: int | None = None


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` before answering (before the status line)."""

    seconds: float


@dataclass(frozen=True)
class Headers:
    """Set (or, with a None value, remove) response headers, e.g.
    `Headers({"Docker-Content-Digest": "foo:bar"})`, `Headers({"Docker-Content-Digest": None})`.
    """

    set: Mapping[str, str | None]


@dataclass(frozen=True)
class Corrupt:
    """Change the body: "flip" inverts the byte at `offset` (same length); "longer" appends
    `extra` bytes; "shorter" drops the last `extra` bytes (Content-Length follows the body, so
    HTTP stays consistent and only the content is wrong). The fault proxy supports "flip"."""

    mode: Literal["flip", "longer", "shorter"] = "flip"
    offset: int = 0
    extra: int = 16

    def adjust(self, size: int) -> int:
        if self.mode == "longer":
            return size + self.extra
        if self.mode == "shorter":
            return max(0, size - self.extra)
        return size


@dataclass(frozen=True)
class Throttle:
    """Send the body at most `bytes_per_second`."""

    bytes_per_second: float


@dataclass(frozen=True)
class Trickle:
    """Send the body `chunk` bytes at a time, one chunk every `interval` seconds."""

    interval: float
    chunk: int = 1


@dataclass(frozen=True)
class Stall:
    """After the headers and `after_bytes` of the body, send nothing for `seconds` (None:
    until the server is reset or stopped), then the rest."""

    after_bytes: int = 0
    seconds: float | None = None


@dataclass(frozen=True)
class Endless:
    """Hostile registry only: the real headers (chunked, no Content-Length) and then a body
    that never ends: `prefix`, then `filler` repeated until the client gives up."""

    prefix: bytes = b""
    filler: bytes = b"\0" * 65536


Action = (Status | Redirect | Reset | Delay | Headers | Corrupt | Throttle | Trickle | Stall
          | Endless)
TERMINAL = (Status, Redirect)


def is_terminal(action: Action) -> bool:
    """Whether `action` replaces the answer (rather than shaping it)."""
    return isinstance(action, TERMINAL) or (
        isinstance(action, Reset) and action.after_bytes is None)


# -- rules -----------------------------------------------------------------------------------
def route_regex(route: str) -> re.Pattern[str]:
    names = route.split("|")
    if all(n in ROUTES for n in names):
        return re.compile("|".join(f"(?:{ROUTES[n]})" for n in names))
    return re.compile(route)


@dataclass(eq=False)
class Rule:
    """One rule; `hits` counts the requests it applied to (read it in assertions)."""

    route: str
    action: Action
    methods: frozenset[str] | None = None
    times: int | None = None  # apply to this many requests, then stop matching
    fraction: float | None = None  # apply to this share of the matching requests
    hits: int = 0
    seen: int = 0  # matching requests, whether applied or not
    regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.regex = route_regex(self.route)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class RuleSet:
    """A thread-safe, ordered list of rules with one seeded RNG."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._seed = seed
        self._rng = random.Random(seed)

    def add(self, route: str, action: Action, *, methods: str | Iterable[str] | None = None,
            times: int | None = None, fraction: float | None = None) -> Rule:
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be within [0, 1], not {fraction}")
        wanted = (frozenset([methods]) if isinstance(methods, str)
                  else frozenset(methods) if methods is not None else None)
        rule = Rule(route, action, wanted, times, fraction)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r is not rule]

    def clear(self, seed: int | None = None) -> None:
        """Drop every rule and reseed the RNG (with `seed`, or the original seed)."""
        with self._lock:
            self._rules.clear()
            self._seed = self._seed if seed is None else seed
            self._rng = random.Random(self._seed)

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    def match(self, method: str, path: str) -> list[Action]:
        """The actions for one request (counting hits); a terminal action comes last."""
        out: list[Action] = []
        with self._lock:
            for rule in self._rules:
                if rule.exhausted or (rule.methods is not None and method not in rule.methods):
                    continue
                if not rule.regex.search(path):
                    continue
                rule.seen += 1
                if rule.fraction is not None and self._rng.random() >= rule.fraction:
                    continue
                rule.hits += 1
                out.append(rule.action)
                if is_terminal(rule.action):
                    break
        return out


# -- body shaping ----------------------------------------------------------------------------
class ResetConnection(Exception):
    """Raised by `shape_body` where a `Reset(after_bytes=N)` cuts the body; or by a wait that
    was interrupted (server reset or stopped). The server then resets the connection."""


Wait = Callable[[float | None], bool]  # wait(seconds or None=forever) -> False if interrupted


def _corrupt(chunks: Iterator[bytes], c: Corrupt, size: int | None) -> Iterator[bytes]:
    if c.mode == "longer":
        yield from chunks
        yield b"\xa5" * c.extra
        return
    if c.mode == "shorter":
        limit = max(0, (size or 0) - c.extra)
        sent = 0
        for chunk in chunks:
            take = chunk[: max(0, limit - sent)]
            sent += len(take)
            if take:
                yield take
        return
    pos = 0
    for chunk in chunks:
        if pos <= c.offset < pos + len(chunk):
            i = c.offset - pos
            chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
        pos += len(chunk)
        yield chunk


def _split(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    for chunk in chunks:
        for i in range(0, len(chunk), size):
            yield chunk[i : i + size]


@dataclass
class _Pacing:
    """The shaping actions of one answer, sorted out."""

    wait: Wait
    clock: Callable[[], float]
    corrupt: list[Corrupt] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    trickle: Trickle | None = None
    rate: float | None = None
    cut: int | None = None

    @classmethod
    def of(cls, actions: Iterable[Action], wait: Wait, clock: Callable[[], float]) -> _Pacing:
        p = cls(wait, clock)
        for a in actions:
            if isinstance(a, Corrupt):
                p.corrupt.append(a)
            elif isinstance(a, Reset) and a.after_bytes is not None:
                p.cut = a.after_bytes if p.cut is None else min(p.cut, a.after_bytes)
            elif isinstance(a, Stall):
                p.stalls.append(a)
            elif isinstance(a, Trickle) and p.trickle is None:
                p.trickle = a
            elif isinstance(a, Throttle):
                p.rate = min(p.rate or a.bytes_per_second, a.bytes_per_second)
        return p

    def pause(self, seconds: float | None) -> None:
        if not self.wait(seconds):
            raise ResetConnection("interrupted")

    def marks(self) -> list[int]:
        """Byte offsets where something happens: a stall starts, or the connection is cut."""
        cut = {self.cut} if self.cut is not None else set()
        return sorted({s.after_bytes for s in self.stalls} | cut)

    def at_mark(self, offset: int) -> None:
        for s in self.stalls:
            if s.after_bytes == offset:
                self.pause(s.seconds)
        if offset == self.cut:
            raise ResetConnection(f"reset after {offset} body bytes")

    def after_piece(self, sent: int, started: float) -> None:
        if self.trickle is not None:
            self.pause(self.trickle.interval)
        elif self.rate is not None:
            ahead = sent / self.rate - (self.clock() - started)
            if ahead > 0:
                self.pause(ahead)

    def run(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        sent, started, marks = 0, self.clock(), self.marks()
        if marks and marks[0] == 0:
            self.at_mark(marks.pop(0))
        for chunk in chunks:
            while chunk:
                piece = chunk
                if marks and sent + len(chunk) >= marks[0]:
                    piece = chunk[: marks[0] - sent]
                chunk = chunk[len(piece):]
                if piece:
                    yield piece
                    sent += len(piece)
                if marks and sent == marks[0]:
                    self.at_mark(marks.pop(0))
                if piece:
                    self.after_piece(sent, started)
        if self.cut is not None and self.cut > sent:
            raise ResetConnection(f"reset after the whole body ({sent} bytes)")


def shape_body(chunks: Iterable[bytes], actions: Iterable[Action], wait: Wait,
               clock: Callable[[], float], size: int | None = None) -> Iterator[bytes]:
    """Apply the shaping actions to a body: corruption, then the reset cut, then pacing
    (throttle, trickle, stall). `size` is the body's length before corruption; `wait(s)`
    sleeps (None: forever) and returns False when interrupted."""
    pacing = _Pacing.of(actions, wait, clock)
    it: Iterator[bytes] = iter(chunks)
    for c in pacing.corrupt:
        it = _corrupt(it, c, size)
    if pacing.trickle is not None:
        it = _split(it, max(1, pacing.trickle.chunk))
    elif pacing.rate is not None:
        it = _split(it, max(1, int(pacing.rate / 20)))  # ~20 sends a second: a smooth pace
    return pacing.run(it)

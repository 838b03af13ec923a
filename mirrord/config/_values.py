"""Scalar values of the configuration, each read from an :class:`_At` (errors name the line)."""

from __future__ import annotations

import difflib
import re
from urllib.parse import parse_qsl, unquote, urlsplit

from mirrord.config._types import MirrorTarget
from mirrord.config._yaml import _FLOAT, _INT, _At
from mirrord.core.modes import ImportMode, ReferencePolicy
from mirrord.core.oci import DIGEST_HELP, is_digest
from mirrord.core.reference import is_repository, is_tag, normalise_registry, parse_repository
from mirrord.core.schedule import parse_duration, schedule_interval, validate_cron
from mirrord.core.selection import parse_semver_range
from mirrord.core.units import parse_size
from mirrord.errors import InvalidReferenceError

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::([0-9]{{1,5}}))?")
_PLATFORM_RE = re.compile(r"[a-z0-9_]+/[a-z0-9_]+(?:/[a-z0-9_.]+)?")
_LISTEN_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
_RECEIVER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_PATH_HELP = "lower-case components of letters, digits and . _ - separated by /"


def _repo_path(at: _At) -> str:
    value = at.text()
    if not is_repository(value):
        raise at.error(f"invalid repository path {value!r}: {_PATH_HELP}")
    return value


_CREDENTIALS_IN_HOST = "credentials never go in the configuration file: remove user:password@"


def _refuse_userinfo(at: _At, value: str) -> None:
    """A host written as ``user:password@host``: refuse it without echoing the secret."""
    if "@" in value.split("/", 1)[0]:
        raise at.error(_CREDENTIALS_IN_HOST)


def _host(at: _At, value: str) -> str:
    _refuse_userinfo(at, value)
    if "://" in value or "/" in value:
        raise at.error(f"expected host[:port] (no scheme, no path), got {value!r}")
    match = _HOST_RE.fullmatch(value)
    if not match or (match.group(1) and not 0 < int(match.group(1)) <= 65535):
        raise at.error(f"invalid registry host {value!r} (host[:port], port 1-65535)")
    return normalise_registry(value)


def _source(at: _At) -> str:
    value = at.text()
    _refuse_userinfo(at, value)
    try:
        return parse_repository(value).name
    except InvalidReferenceError as exc:
        raise at.error(f"{exc} (`from:` names a repository; tags go under `tags:`)") from None


def _mirror(at: _At) -> MirrorTarget:
    value = at.text()
    if value.startswith("docker://"):
        _refuse_userinfo(at, value[len("docker://") :])
        host, _, prefix = value[len("docker://") :].strip("/").partition("/")
        if prefix and not is_repository(prefix):
            raise at.error(f"invalid mirror prefix {prefix!r}: {_PATH_HELP}")
        return MirrorTarget("registry", registry=_host(at, host), prefix=prefix)
    if value.startswith("oci:") and value[4:].strip():
        return MirrorTarget("oci", path=at.path(value[4:].strip()))
    raise at.error(f"expected docker://HOST[:PORT]/PREFIX or oci:/PATH, got {value!r}")


def _schedule(at: _At) -> str:
    value = at.text()
    try:
        interval = schedule_interval(value)
        if interval is None:
            validate_cron(value)
        elif interval < 1:
            raise ValueError("an interval must be at least 1s")
    except ValueError as exc:
        raise at.error(f"{exc}; expected cron ('*/15 * * * *') or an interval ('15m')") from None
    return value


def _duration(at: _At) -> float:
    """Seconds, from a Go duration (``60m``); a bare number other than 0 is refused."""
    try:
        return parse_duration(at.text())
    except ValueError as exc:
        raise at.error(str(exc)) from None


def _timeout(at: _At, maximum: float = 3600.0) -> float:
    """Seconds, from a number or a Go duration; more than 0, at most ``maximum``."""
    value = at.number(maximum=maximum) if at.node.tag in (_INT, _FLOAT) else _duration(at)
    if not 0 < value <= maximum:
        raise at.error(f"must be more than 0 and at most {maximum:g}s")
    return value


def _size(at: _At, minimum: int = 1, maximum: int = 1 << 40) -> int:
    """Bytes, from an integer or a size (``4MiB``, ``512KiB``), from ``minimum`` to
    ``maximum``."""
    if at.node.tag == _INT:
        value = at.integer(minimum)
    else:
        try:
            value = parse_size(at.text())
        except ValueError as exc:
            raise at.error(str(exc)) from None
    if not minimum <= value <= maximum:
        raise at.error(f"must be from {minimum} to {maximum} bytes, got {value}")
    return value


def _choice(at: _At, choices: type[ImportMode] | type[ReferencePolicy]) -> str:
    """A member of ``choices`` (an enum of :mod:`mirrord.core.modes`), in any case."""
    try:
        return choices.parse(at.text())
    except ValueError as exc:
        raise at.error(str(exc)) from None


def _platform(at: _At) -> str:
    value = at.text()
    if not _PLATFORM_RE.fullmatch(value):
        raise at.error(f"expected os/arch[/variant] like linux/amd64, got {value!r}")
    return value


def _max_tags(at: _At) -> int:
    value = at.integer()
    if value == 0 or value < -1:
        raise at.error(f"must be -1 (unlimited) or a positive number, got {value}")
    return value


def _url(at: _At) -> str:
    value = at.text()
    try:
        parts = urlsplit(value)
    except ValueError:
        raise at.error("expected an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise at.error("expected an http:// or https:// URL")  # the URL may hold a token
    if parts.username or parts.password:
        raise at.error(_CREDENTIALS_IN_HOST)
    return value


_DB_HELP = "expected postgresql://USER@HOST[:PORT]/DBNAME"
_DB_PASSWORD = (
    "a password never goes in the database URL: remove it, and put it in "
    "`database_password_file:`, the systemd credential database-password or PGPASSFILE"
)
# libpq connection parameters a `database:` URL may carry (host: a Unix socket directory).
_DB_PARAMS = frozenset(
    {
        "host", "hostaddr", "connect_timeout", "options", "passfile", "target_session_attrs",
        "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir", "sslsni",
        "channel_binding", "gssencmode", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout",
    }
)
_DB_NAME_RE = re.compile(r"[^\x00-\x20\x7f/]{1,63}")
_WORKER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,54}")


def _database_url(at: _At) -> str:
    """A libpq URL naming one host and one database, with a user and no password.

    The password check comes first, so no message below can echo one."""
    value = at.text()
    netloc = value.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    if ":" in netloc.rpartition("@")[0] or re.search(r"[?&]password=", value):
        raise at.error(_DB_PASSWORD)
    try:
        parts = urlsplit(value)
        port = parts.port
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise at.error(f"{_DB_HELP}, got {value!r} ({exc})") from None
    if parts.scheme not in ("postgresql", "postgres") or parts.fragment:
        raise at.error(f"{_DB_HELP}, got {value!r}")
    params = dict(query)
    for key, _ in query:
        if key not in _DB_PARAMS:
            hint = difflib.get_close_matches(key, _DB_PARAMS, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise at.error(f"unknown libpq parameter {key!r} in the database URL{extra}")
    if len(params) != len(query):
        raise at.error("a libpq parameter is given twice in the database URL")
    socket_dir = params.get("host", "")
    if not parts.hostname and not socket_dir.startswith("/"):
        raise at.error(f"{_DB_HELP} (the host is missing), got {value!r}")
    host = parts.hostname or ""
    if host and not _HOST_RE.fullmatch(f"[{host}]" if ":" in host else host):
        raise at.error(f"invalid database host {host!r}")
    if port is not None and not 1 <= port <= 65535:
        raise at.error(f"invalid database port {port}")
    for what, raw in (("user", parts.username or ""), ("database name", parts.path[1:])):
        if not _DB_NAME_RE.fullmatch(unquote(raw)):
            raise at.error(f"{_DB_HELP} (the {what} is missing or invalid), got {value!r}")
    return value


def _worker_name(at: _At) -> str:
    name = at.text()
    if not _WORKER_RE.fullmatch(name):
        raise at.error(
            f"expected up to 55 letters, digits and . _ : @ - (starting with a letter or "
            f"digit), got {name!r}"
        )
    return name


def _lease(at: _At) -> float:
    """A worker's lease on a stream: 5s to 1h (it renews a third of the way through)."""
    seconds = _duration(at)
    if not 5 <= seconds <= 3600:
        raise at.error(f"a lease lasts from 5s to 1h, got {at.text()!r}")
    return seconds


def _digest(at: _At) -> str:
    """A content digest (``sha256:`` and 64 hex digits, or ``sha512:`` and 128)."""
    value = at.text()
    if not is_digest(value):
        raise at.error(f"invalid digest {value!r}: {DIGEST_HELP}")
    return value


def _tags(at: _At) -> tuple[str, ...]:
    items = at.texts()
    if not items:
        raise at.error("the tag list is empty")
    seen: dict[str, int] = {}
    for item in items:
        tag = item.text()
        if not is_tag(tag):
            raise item.error(f"invalid tag {tag!r}")
        if tag in seen:
            raise item.error(f"tag {tag!r} is listed twice (also line {seen[tag]})")
        seen[tag] = item.line
    return tuple(seen)


def _pinned(at: _At) -> tuple[str, ...]:
    """Digests the pruner keeps: a list (or one string) of ``sha256:…``, each once."""
    seen: dict[str, int] = {}
    for item in at.texts():
        digest = _digest(item)
        if digest in seen:
            raise item.error(f"digest {digest!r} is pinned twice (also line {seen[digest]})")
        seen[digest] = item.line
    return tuple(seen)


def _regexes(at: _At | None) -> tuple[re.Pattern[str], ...]:
    out = []
    for item in at.texts() if at is not None else ():
        try:
            out.append(re.compile(item.text()))
        # OverflowError: a{99999999999}; RecursionError: parentheses nested too deep
        except (re.error, OverflowError, RecursionError) as exc:
            raise item.error(f"invalid regular expression {item.text()!r}: {exc}") from None
    return tuple(out)


def _semver(at: _At) -> str:
    value = at.text()
    try:
        parse_semver_range(value)
    except ValueError as exc:
        raise at.error(f"invalid semver range {value!r}: {exc}") from None
    return value

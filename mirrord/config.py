"""The configuration file (version 1): YAML in, frozen dataclasses out. Pure.

Every error is a :class:`ConfigError` naming the file, the line and the key
path (``mirrord.yaml:14: streams[1].semver: ...``). Unknown keys are errors
with a "did you mean" hint; credentials are refused (use ``auth_file`` or
``mirrord login``). Relative paths are relative to the file's directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from mirrord._errors import ConfigError, InvalidReferenceError
from mirrord.reference import normalise_registry, parse_repository
from mirrord.selection import parse_semver_range

ImportMode = Literal["PreserveOriginal", "Legacy"]
ReferencePolicy = Literal["Source", "Local"]
IMPORT_MODES: tuple[ImportMode, ...] = ("PreserveOriginal", "Legacy")
REFERENCE_POLICIES: tuple[ReferencePolicy, ...] = ("Source", "Local")
_CREDENTIAL_KEYS = frozenset(
    {
        "username",
        "user",
        "password",
        "pass",
        "passwd",
        "auth",
        "token",
        "identitytoken",
        "identity_token",
        "registrytoken",
        "credentials",
        "secret",
        "bearer",
    }
)


@dataclass(frozen=True)
class MirrorTarget:
    """Where images go: a registry (``docker://host[:port]/prefix``) or an OCI layout."""

    kind: Literal["registry", "oci"]
    registry: str | None = None
    prefix: str = ""
    path: Path | None = None

    def repository(self, to: str) -> str:
        """The mirror repository for a stream's ``to`` path (``prefix/to``)."""
        return f"{self.prefix}/{to}" if self.prefix else to

    def __str__(self) -> str:
        if self.kind == "oci":
            return f"oci:{self.path}"
        return f"docker://{self.registry}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class RegistryConfig:
    """Per host[:port]. ``insecure``: plain HTTP. ``rate``: requests/second."""

    auth_file: Path | None = None
    insecure: bool = False
    tls_verify: bool = True
    ca_file: Path | None = None
    max_concurrency: int = 6
    rate: float | None = None


@dataclass(frozen=True)
class Defaults:
    """Import policy every stream inherits unless it sets its own."""

    schedule: str = "15m"
    import_mode: ImportMode = "PreserveOriginal"
    max_tags: int = 50
    platform: str = "linux/amd64"
    reference_policy: ReferencePolicy = "Source"
    signatures: bool = True
    delete_removed_tags: bool = False


@dataclass(frozen=True)
class StreamConfig:
    """One source repository -> one mirror repository. ``name`` is the ``to`` path;
    ``source`` the normalised ``from`` (``docker.io/library/nginx``)."""

    name: str
    source: str
    to: str
    tags: tuple[str, ...] | None = None
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()
    semver: str | None = None
    newest: int | None = None
    max_tags: int = 50
    import_mode: ImportMode = "PreserveOriginal"
    platform: str = "linux/amd64"
    schedule: str = "15m"
    reference_policy: ReferencePolicy = "Source"
    signatures: bool = True
    delete_removed_tags: bool = False

    @property
    def source_registry(self) -> str:
        """``registry.redhat.io`` of ``registry.redhat.io/ubi9/ubi``."""
        return self.source.split("/", 1)[0]

    @property
    def source_repository(self) -> str:
        """``ubi9/ubi`` of ``registry.redhat.io/ubi9/ubi``."""
        return self.source.split("/", 1)[1]


@dataclass(frozen=True)
class NotificationConfig:
    """A webhook (``url``, optionally HMAC-signed with ``secret_file``) or a command.
    ``url`` stays out of the repr: webhook URLs often embed a token."""

    url: str | None = dataclasses.field(default=None, repr=False)
    secret_file: Path | None = None
    command: tuple[str, ...] | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:9464"
    token_file: Path | None = None

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


@dataclass(frozen=True)
class PruningConfig:
    """The ImagePruner. ``keep_younger_than`` is in seconds."""

    schedule: str = "0 0 * * *"
    suspend: bool = False
    keep_tag_revisions: int = 3
    keep_younger_than: float = 3600.0
    prune_registry: bool = True
    successful_jobs_history_limit: int = 3
    failed_jobs_history_limit: int = 3


@dataclass(frozen=True)
class Config:
    path: Path | None
    mirror: MirrorTarget
    state_dir: Path
    registries: dict[str, RegistryConfig]
    defaults: Defaults
    streams: tuple[StreamConfig, ...]
    notifications: tuple[NotificationConfig, ...] = ()
    server: ServerConfig = ServerConfig()
    pruning: PruningConfig = PruningConfig()

    def registry_config(self, host: str) -> RegistryConfig:
        """The settings for ``host[:port]``; defaults for a host not configured."""
        return self.registries.get(normalise_registry(host)) or RegistryConfig()

    def stream(self, name: str) -> StreamConfig:
        """The stream called ``name``; ConfigError (with a hint) when there is none."""
        for stream in self.streams:
            if stream.name == name:
                return stream
        names = [s.name for s in self.streams]
        hint = difflib.get_close_matches(name, names, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else f" (streams: {', '.join(names)})"
        file = str(self.path) if self.path else "<embedded default>"
        raise ConfigError(f"no stream named {name!r}{extra}", file=file)


# --- the YAML walker -------------------------------------------------------

_NULL, _BOOL = "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_KINDS = {_NULL: "nothing (null)", _BOOL: "a boolean", _INT: "an integer", _FLOAT: "a number"}


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KINDS.get(node.tag, "a string")


@dataclass(frozen=True)
class _Doc:
    file: str
    base: Path
    loader: yaml.SafeLoader


@dataclass(frozen=True)
class _At:
    """A YAML node with the file, its line and its key path, for error messages."""

    doc: _Doc
    node: yaml.Node
    key: str

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, file=self.doc.file, line=self.line, key=self.key)

    def sub(self, name: str, *, quoted: bool = False) -> str:
        if quoted:
            return f'{self.key}["{name}"]'
        return f"{self.key}.{name}" if self.key else name

    def missing(self, name: str, what: str) -> ConfigError:
        return _At(self.doc, self.node, self.sub(name)).error(f"missing `{name}:` ({what})")

    def mapping(self, allowed: Collection[str] | None) -> dict[str, _At]:
        """The values of a mapping by key; unknown keys are errors."""
        return {str(k.node.value): v for k, v in self.entries(allowed)}

    def entries(
        self,
        allowed: Collection[str] | None,
        *,
        quoted: bool = False,
    ) -> list[tuple[_At, _At]]:
        """(key, value) pairs of a mapping; ``allowed=None`` accepts any key."""
        node = self.node
        if node.tag == _NULL:  # `pruning:` with nothing after it
            return []
        if not isinstance(node, yaml.MappingNode):
            raise self.error(f"expected a mapping, got {_kind(node)}")
        merges = any(k.tag == _MERGE for k, _ in node.value)
        try:
            self.doc.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            raise self.error(f"invalid merge key: {exc.problem}") from None
        out: dict[str, tuple[_At, _At]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                raise _At(self.doc, key_node, self.key).error("keys must be plain names")
            name = str(key_node.value)
            at_key = _At(self.doc, key_node, self.sub(name, quoted=quoted))
            if name in out and not merges:
                raise at_key.error(f"duplicate key {name!r} (first on line {out[name][0].line})")
            if name.lower() in _CREDENTIAL_KEYS:
                raise at_key.error(
                    "credentials never go in the configuration file: set `auth_file:` "
                    "(a containers auth.json or pull secret) or run `mirrord login HOST`"
                )
            if allowed is not None and name not in allowed:
                raise at_key.error(f"unknown key {name!r}{_did_you_mean(name, allowed)}")
            out[name] = (at_key, _At(self.doc, value_node, at_key.key))
        return list(out.values())

    def sequence(self) -> list[_At]:
        if self.node.tag == _NULL:  # `streams:` with nothing after it
            return []
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"expected a list, got {_kind(self.node)}")
        return [_At(self.doc, n, f"{self.key}[{i}]") for i, n in enumerate(self.node.value)]

    def text(self) -> str:
        """A string; plain scalars stay as written (``9.4`` is "9.4", not 9.4)."""
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag == _NULL:
            raise self.error(f"expected a string, got {_kind(self.node)}")
        value = str(self.node.value).strip()
        if not value:
            raise self.error("must not be empty")
        return value

    def texts(self) -> tuple[_At, ...]:
        """A list of strings, or one string."""
        items = [self] if isinstance(self.node, yaml.ScalarNode) else self.sequence()
        for item in items:
            item.text()
        return tuple(items)

    def _typed(self, tags: Collection[str], what: str) -> Any:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag not in tags:
            raise self.error(f"expected {what}, got {_kind(self.node)}")
        return self.doc.loader.construct_object(self.node, deep=True)

    def integer(self, minimum: int | None = None) -> int:
        value = int(self._typed({_INT}, "an integer"))
        if minimum is not None and value < minimum:
            raise self.error(f"must be {minimum} or more, got {value}")
        return value

    def number(self) -> float:
        value = float(self._typed({_INT, _FLOAT}, "a number"))
        if not value > 0 or value == float("inf"):
            raise self.error(f"must be a positive number, got {value}")
        return value

    def boolean(self) -> bool:
        return bool(self._typed({_BOOL}, "true or false"))

    def path(self, text: str | None = None) -> Path:
        path = Path(os.path.expanduser(text if text is not None else self.text()))
        return path if path.is_absolute() else self.doc.base / path


def _did_you_mean(name: str, allowed: Collection[str]) -> str:
    squash = {a.lower().replace("_", "").replace("-", ""): a for a in allowed}
    same = squash.get(name.lower().replace("_", "").replace("-", ""))
    close = [same] if same else difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (expected one of: {', '.join(sorted(allowed))})"


# --- values ---------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_PLATFORM_RE = re.compile(r"[a-z0-9_]+/[a-z0-9_]+(?:/[a-z0-9_.]+)?")
_LISTEN_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
_PATH_HELP = "lower-case components of letters, digits and . _ - separated by /"


def _repo_path(at: _At) -> str:
    value = at.text()
    if not _PATH_RE.fullmatch(value) or len(value) > 255:
        raise at.error(f"invalid repository path {value!r}: {_PATH_HELP}")
    return value


def _host(at: _At, value: str) -> str:
    if "://" in value or "/" in value:
        raise at.error(f"expected host[:port] (no scheme, no path), got {value!r}")
    if not _HOST_RE.fullmatch(value):
        raise at.error(f"invalid registry host {value!r}")
    return normalise_registry(value)


def _source(at: _At) -> str:
    value = at.text()
    try:
        return parse_repository(value).name
    except InvalidReferenceError as exc:
        raise at.error(f"{exc} (`from:` names a repository; tags go under `tags:`)") from None


def _mirror(at: _At) -> MirrorTarget:
    value = at.text()
    if value.startswith("docker://"):
        host, _, prefix = value[len("docker://") :].strip("/").partition("/")
        if prefix and not _PATH_RE.fullmatch(prefix):
            raise at.error(f"invalid mirror prefix {prefix!r}: {_PATH_HELP}")
        return MirrorTarget("registry", registry=_host(at, host), prefix=prefix)
    if value.startswith("oci:") and value[4:].strip():
        return MirrorTarget("oci", path=at.path(value[4:].strip()))
    raise at.error(f"expected docker://HOST[:PORT]/PREFIX or oci:/PATH, got {value!r}")


# --- schedules and durations ---------------------------------------------

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)"
_DURATION_RE = re.compile(rf"(?:{_DURATION_PART})+")
_CRON_NAMES = {
    3: {
        m: i + 1
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        )
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_CRON_ITEM_RE = re.compile(r"(\*|\w+)(?:-(\w+))?(?:/(\d+))?")


def parse_duration(text: str) -> float:
    """A Go duration (``90s``, ``60m``, ``1h30m``, ``1.5h``, ``0``) in seconds."""
    text = text.strip()
    if text == "0":
        return 0.0
    if not _DURATION_RE.fullmatch(text):
        raise ValueError(f"invalid duration {text!r} (Go syntax: 90s, 15m, 1h30m)")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(_DURATION_PART, text))


def validate_cron(expr: str) -> None:
    """Check a 5-field cron expression (``*/15 * * * *``); ValueError names the field."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields, {expr!r} has {len(fields)}")
    for index, (text, (what, low, high)) in enumerate(zip(fields, _CRON_FIELDS, strict=True)):
        for item in text.split(","):
            match = _CRON_ITEM_RE.fullmatch(item.lower())
            if match is None:
                raise ValueError(f"invalid {what} {item!r} in {expr!r}")
            start, end, step = match.groups()
            values = [
                _cron_value(v, index, low, high, what) for v in (start, end) if v and v != "*"
            ]
            if (start == "*" and end) or (len(values) == 2 and values[0] > values[1]):
                raise ValueError(f"invalid {what} range {item!r} in {expr!r}")
            if step is not None and int(step) < 1:
                raise ValueError(f"invalid {what} step {item!r} in {expr!r}")


def _cron_value(text: str, index: int, low: int, high: int, what: str) -> int:
    value = _CRON_NAMES.get(index, {}).get(text)
    if value is None:
        if not text.isdigit():
            raise ValueError(f"invalid {what} {text!r}")
        value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{what} {value} is out of range {low}-{high}")
    return value


def schedule_interval(expr: str) -> float | None:
    """Seconds between runs for an interval schedule (``15m``); None for cron."""
    return parse_duration(expr) if _DURATION_RE.fullmatch(expr.strip()) else None


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


def _timeout(at: _At) -> float:
    """Seconds, from a number or a Go duration; must be positive."""
    value = at.number() if at.node.tag in (_INT, _FLOAT) else _duration(at)
    if value <= 0:
        raise at.error("must be more than 0")
    return value


# --- sections -------------------------------------------------------------


def _choice(at: _At, choices: tuple[str, ...]) -> str:
    value = at.text()
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise at.error(f"expected one of {', '.join(choices)}, got {value!r}")


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


_POLICY: dict[str, Callable[[_At], Any]] = {
    "schedule": _schedule,
    "import_mode": lambda at: _choice(at, IMPORT_MODES),
    "max_tags": _max_tags,
    "platform": _platform,
    "reference_policy": lambda at: _choice(at, REFERENCE_POLICIES),
    "signatures": _At.boolean,
    "delete_removed_tags": _At.boolean,
}
_SELECTION_KEYS = ("include", "exclude", "semver", "newest", "max_tags")
_STREAM_KEYS = ("from", "to", "tags", *_SELECTION_KEYS, *_POLICY)


def _defaults(at: _At) -> Defaults:
    keys = at.mapping(tuple(_POLICY))
    return dataclasses.replace(Defaults(), **{k: _POLICY[k](v) for k, v in keys.items()})


_REGISTRY: dict[str, Callable[[_At], Any]] = {
    "auth_file": _At.path,
    "insecure": _At.boolean,
    "tls_verify": _At.boolean,
    "ca_file": _At.path,
    "max_concurrency": lambda a: a.integer(1),
    "rate": _At.number,
}


def _registries(at: _At) -> dict[str, RegistryConfig]:
    out: dict[str, RegistryConfig] = {}
    lines: dict[str, int] = {}
    for key, value in at.entries(None, quoted=True):
        host = _host(key, str(key.node.value))
        if host in out:
            raise key.error(f"{key.node.value!r} is the same registry as line {lines[host]}")
        lines[host] = key.line
        keys = value.mapping(tuple(_REGISTRY))
        out[host] = RegistryConfig(**{k: _REGISTRY[k](v) for k, v in keys.items()})
    return out


def _stream(at: _At, defaults: Defaults) -> StreamConfig:
    keys = at.mapping(_STREAM_KEYS)
    if "from" not in keys:
        raise at.missing("from", "the source repository, e.g. quay.io/prometheus/node-exporter")
    source = _source(keys["from"])
    to = _repo_path(keys["to"]) if "to" in keys else source.split("/", 1)[1]
    tags: tuple[str, ...] | None = None
    if "tags" in keys:
        for name in _SELECTION_KEYS:
            if name in keys:
                raise keys[name].error(
                    f"`{name}` selects among all tags; it cannot be combined with `tags:`"
                )
        tags = _tags(keys["tags"])
    policy = {k: getattr(defaults, k) for k in _POLICY}
    policy.update({k: _POLICY[k](v) for k, v in keys.items() if k in _POLICY})
    return StreamConfig(
        name=to,
        source=source,
        to=to,
        tags=tags,
        include=_regexes(keys.get("include")),
        exclude=_regexes(keys.get("exclude")),
        semver=_semver(keys["semver"]) if "semver" in keys else None,
        newest=keys["newest"].integer(1) if "newest" in keys else None,
        **policy,
    )


def _tags(at: _At) -> tuple[str, ...]:
    items = at.texts()
    if not items:
        raise at.error("the tag list is empty")
    seen: dict[str, int] = {}
    for item in items:
        tag = item.text()
        if not _TAG_RE.fullmatch(tag):
            raise item.error(f"invalid tag {tag!r}")
        if tag in seen:
            raise item.error(f"tag {tag!r} is listed twice (also line {seen[tag]})")
        seen[tag] = item.line
    return tuple(seen)


def _regexes(at: _At | None) -> tuple[re.Pattern[str], ...]:
    out = []
    for item in at.texts() if at is not None else ():
        try:
            out.append(re.compile(item.text()))
        except re.error as exc:
            raise item.error(f"invalid regular expression {item.text()!r}: {exc}") from None
    return tuple(out)


def _semver(at: _At) -> str:
    value = at.text()
    try:
        parse_semver_range(value)
    except ValueError as exc:
        raise at.error(f"invalid semver range {value!r}: {exc}") from None
    return value


def _streams(at: _At, defaults: Defaults) -> tuple[StreamConfig, ...]:
    streams: list[StreamConfig] = []
    seen: dict[str, _At] = {}
    for item in at.sequence():
        stream = _stream(item, defaults)
        if stream.name in seen:
            keys = item.mapping(_STREAM_KEYS)
            where = keys.get("to") or keys["from"]
            raise where.error(
                f"stream name {stream.name!r} is already used by {seen[stream.name].key} "
                f"(line {seen[stream.name].line}); give one a different `to:`"
            )
        seen[stream.name] = item
        streams.append(stream)
    return tuple(streams)


def _notification(at: _At) -> NotificationConfig:
    keys = at.mapping(("url", "secret_file", "command", "timeout"))
    if ("url" in keys) == ("command" in keys):
        raise at.error("a notification needs exactly one of `url:` or `command:`")
    if "secret_file" in keys and "url" not in keys:
        raise keys["secret_file"].error("`secret_file` signs webhooks; it needs `url:`")
    command = tuple(a.text() for a in keys["command"].sequence()) if "command" in keys else None
    if command == ():
        raise keys["command"].error("the command list is empty")
    return NotificationConfig(
        url=_url(keys["url"]) if "url" in keys else None,
        secret_file=keys["secret_file"].path() if "secret_file" in keys else None,
        command=command,
        timeout=_timeout(keys["timeout"]) if "timeout" in keys else 10.0,
    )


def _url(at: _At) -> str:
    value = at.text()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise at.error("expected an http:// or https:// URL")  # the URL may hold a token
    if parts.username or parts.password:
        raise at.error("credentials never go in the configuration file: remove user:password@")
    return value


def _server(at: _At) -> ServerConfig:
    keys = at.mapping(("listen", "token_file"))
    listen = ServerConfig.listen
    if "listen" in keys:
        listen = keys["listen"].text()
        match = _LISTEN_RE.fullmatch(listen)
        if match is None or int(match.group(1)) > 65535:
            raise keys["listen"].error(f"expected HOST:PORT like 127.0.0.1:9464, got {listen!r}")
    token = keys["token_file"].path() if "token_file" in keys else None
    return ServerConfig(listen=listen, token_file=token)


_PRUNING: dict[str, tuple[str, Callable[[_At], Any]]] = {
    "schedule": ("schedule", _schedule),
    "suspend": ("suspend", _At.boolean),
    "keepTagRevisions": ("keep_tag_revisions", lambda a: a.integer(0)),
    "keepYoungerThanDuration": ("keep_younger_than", _duration),
    "keepYoungerThan": ("keep_younger_than", lambda a: a.integer(0) / 1e9),
    "pruneRegistry": ("prune_registry", _At.boolean),
    "successfulJobsHistoryLimit": ("successful_jobs_history_limit", lambda a: a.integer(1)),
    "failedJobsHistoryLimit": ("failed_jobs_history_limit", lambda a: a.integer(1)),
}


def _pruning(at: _At) -> PruningConfig:
    keys = at.mapping(tuple(_PRUNING))
    if "keepYoungerThanDuration" in keys:
        keys.pop("keepYoungerThan", None)  # deprecated nanoseconds lose to the duration
    values = {_PRUNING[k][0]: _PRUNING[k][1](v) for k, v in keys.items()}
    return dataclasses.replace(PruningConfig(), **values)


# --- entry points ---------------------------------------------------------

_TOP_KEYS = (
    "version",
    "mirror",
    "state_dir",
    "registries",
    "defaults",
    "streams",
    "notifications",
    "server",
    "pruning",
)
EMBEDDED_DEFAULT_YAML = """\
version: 1
streams:
  - from: registry.access.redhat.com/ubi9/ubi-micro
    tags: [latest]
"""


def parse_config(text: str, path: str | Path = "<config>") -> Config:
    """Parse and validate configuration text; ``path`` names it in errors and
    anchors relative paths."""
    file = str(path)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise ConfigError(
            f"invalid YAML: {exc.problem or exc.context}{context}", file=file, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    if node is None:
        raise ConfigError("the file is empty; it needs at least `version: 1`", file=file, line=1)
    try:
        return _config(_At(_Doc(file, Path(path).expanduser().absolute().parent, loader), node, ""))
    finally:
        loader.dispose()


def _config(root: _At) -> Config:
    keys = root.mapping(_TOP_KEYS)
    if "version" not in keys:
        raise root.missing("version", "write `version: 1` at the top")
    version = keys["version"].integer()
    if version != 1:
        raise keys["version"].error(f"unsupported version {version}; this mirrord reads version 1")
    state_dir = keys["state_dir"].path() if "state_dir" in keys else default_state_dir()
    mirror = (
        _mirror(keys["mirror"]) if "mirror" in keys else MirrorTarget("oci", path=state_dir / "oci")
    )
    defaults = _defaults(keys["defaults"]) if "defaults" in keys else Defaults()
    empty = _At(root.doc, yaml.SequenceNode("tag:yaml.org,2002:seq", []), "")
    return Config(
        path=Path(root.doc.file),
        mirror=mirror,
        state_dir=state_dir,
        registries=_registries(keys["registries"]) if "registries" in keys else {},
        defaults=defaults,
        streams=_streams(keys.get("streams", empty), defaults),
        notifications=tuple(_notification(n) for n in keys.get("notifications", empty).sequence()),
        server=_server(keys["server"]) if "server" in keys else ServerConfig(),
        pruning=_pruning(keys["pruning"]) if "pruning" in keys else PruningConfig(),
    )


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_config_path() -> Path:
    """``$MIRRORD_CONFIG``, else /etc/mirrord/mirrord.yaml (root) or
    ``$XDG_CONFIG_HOME``/``~/.config``/mirrord/mirrord.yaml."""
    if env := os.environ.get("MIRRORD_CONFIG"):
        return Path(env).expanduser()
    if _is_root():
        return Path("/etc/mirrord/mirrord.yaml")
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "mirrord" / "mirrord.yaml"


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` (systemd), else /var/lib/mirrord (root) or
    ``$XDG_DATA_HOME``/``~/.local/share``/mirrord."""
    if env := os.environ.get("STATE_DIRECTORY"):
        return Path(env.split(":")[0])
    if _is_root():
        return Path("/var/lib/mirrord")
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "mirrord"


def load_config(path: str | Path | None = None) -> Config:
    """Read and parse ``path`` (default: :func:`default_config_path`)."""
    file = Path(path).expanduser() if path is not None else default_config_path()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "configuration file not found (pass --config FILE or set $MIRRORD_CONFIG)",
            file=str(file),
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(file)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", file=str(file), line=line) from None
    return parse_config(text, file)


def embedded_default_config() -> Config:
    """The quick start: registry.access.redhat.com/ubi9/ubi-micro:latest into
    ``oci:<state_dir>/oci``. ``path`` is None."""
    return dataclasses.replace(parse_config(EMBEDDED_DEFAULT_YAML, "<embedded default>"), path=None)


def load_config_or_embedded(path: str | Path | None = None) -> Config:
    """Like :func:`load_config`, but when no path was given, ``$MIRRORD_CONFIG`` is
    unset and the default file does not exist, the embedded default."""
    if path is not None or os.environ.get("MIRRORD_CONFIG"):
        return load_config(path)
    candidate = default_config_path()
    return load_config(candidate) if candidate.exists() else embedded_default_config()

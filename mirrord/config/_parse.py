"""The configuration file (version 1): YAML in, frozen dataclasses out. Pure.

Every error is a :class:`ConfigError` naming the file, the line and the key
path (``mirrord.yaml:14: streams[1].semver: ...``). Unknown keys are errors
with a "did you mean" hint; credentials are refused (use ``auth_file`` or
``mirrord login``). Relative paths are relative to the file's directory.

This module reads the sections; the pieces live beside it: the value types in
:mod:`._types`, the YAML walker in :mod:`._yaml`, scalar values in :mod:`._values`.
What parsing needs of the machine (the file's directory, the home directory, the
default state directory) comes in as :class:`Surroundings`; :mod:`._locate` finds it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mirrord.config._pruning import pruning_config
from mirrord.config._registries import _limits, _registries
from mirrord.config._signing import _lookaside, _policy, _referrers
from mirrord.config._types import (
    NOTIFICATION_EVENTS,
    Config,
    Defaults,
    MirrorTarget,
    NotificationConfig,
    PruningConfig,
    ServerConfig,
    StreamConfig,
)
from mirrord.config._values import (
    _LISTEN_RE,
    _RECEIVER_NAME_RE,
    _choice,
    _database,
    _lease,
    _max_tags,
    _mirror,
    _pinned,
    _platform,
    _regexes,
    _repo_path,
    _schedule,
    _semver,
    _source,
    _tags,
    _timeout,
    _url,
    _verify_every,
    _worker_name,
)
from mirrord.config._yaml import _At, _Doc
from mirrord.core.limits import Limits
from mirrord.core.modes import ImportMode, ReferencePolicy
from mirrord.errors import ConfigError

# --- sections -------------------------------------------------------------

_POLICY: dict[str, Callable[[_At], Any]] = {
    "schedule": _schedule,
    "import_mode": lambda at: _choice(at, ImportMode),
    "max_tags": _max_tags,
    "platform": _platform,
    "reference_policy": lambda at: _choice(at, ReferencePolicy),
    "signatures": _At.boolean,
    "referrers": _referrers,
    "delete_removed_tags": _At.boolean,
}
_SELECTION_KEYS = ("include", "exclude", "semver", "newest", "max_tags")
_STREAM_KEYS = ("from", "to", "tags", *_SELECTION_KEYS, *_POLICY, "pinned")


def _defaults(at: _At) -> Defaults:
    keys = at.mapping(tuple(_POLICY))
    return dataclasses.replace(Defaults(), **{k: _POLICY[k](v) for k, v in keys.items()})


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
        pinned=_pinned(keys["pinned"]) if "pinned" in keys else (),
        **policy,
    )


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
    keys = at.mapping(("name", "url", "secret_file", "command", "timeout", "events"))
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
        name=_receiver_name(keys["name"]) if "name" in keys else None,
        events=_events(keys["events"]) if "events" in keys else NOTIFICATION_EVENTS,
    )


def _events(at: _At) -> tuple[str, ...]:
    chosen: list[str] = []
    for item in at.texts():
        if item.text() not in NOTIFICATION_EVENTS:
            raise item.error(
                f"unknown event {item.text()!r}; expected {', '.join(NOTIFICATION_EVENTS)}"
            )
        chosen.append(item.text())
    return tuple(dict.fromkeys(chosen))


def _receiver_name(at: _At) -> str:
    name = at.text()
    if not _RECEIVER_NAME_RE.fullmatch(name):
        raise at.error(f"expected a name of letters, digits, '.', '_' or '-', got {name!r}")
    return name


def _notifications(at: _At) -> tuple[NotificationConfig, ...]:
    """The receivers; two with the same id would share (and steal) each other's events."""
    receivers: dict[str, NotificationConfig] = {}
    for item in at.sequence():
        receiver = _notification(item)
        if receiver.receiver_id in receivers:
            raise item.error(
                f"{receiver.receiver_id} names an earlier receiver too (the host, or the "
                "program); give each of them a distinct `name:`"
            )
        receivers[receiver.receiver_id] = receiver
    return tuple(receivers.values())


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
    "database",
    "database_password_file",
    "worker_name",
    "lease",
    "verify_every",
    "limits",
    "lookaside_dir",
    "lookaside_url",
    "policy",
)
EMBEDDED_DEFAULT_YAML = """\
version: 1
streams:
  - from: registry.access.redhat.com/ubi9/ubi-micro
    tags: [latest]
"""


@dataclasses.dataclass(frozen=True)
class Surroundings:
    """What parsing needs from outside the text, given by the caller (so parsing stays
    pure): the directory relative paths start from, the home directory ``~`` stands for,
    and the state directory used when the file sets none."""

    base: Path
    home: Path
    state_dir: Path


MAX_NESTING = 64  # mappings and lists inside one another; a configuration needs ~5


def _check_depth(text: str, file: str) -> None:
    """Refuse nesting past :data:`MAX_NESTING` before composing: PyYAML's parser keeps
    its own stack, its composer recurses (slowly, into a RecursionError, when a file
    opens thousands of ``[``)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                line = event.start_mark.line + 1 if event.start_mark else None
                raise ConfigError(
                    f"invalid YAML: nested more than {MAX_NESTING} deep", file=file, line=line
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_document(text: str, file: str, surroundings: Surroundings) -> Config:
    """Parse and validate configuration text; ``file`` names it in errors."""
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses NUL and control characters
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            f"invalid YAML: character {chr(exc.character)!r} is not allowed (NUL and "
            "control characters never belong in the file)",
            file=file,
            line=text[: exc.position].count("\n") + 1,
        ) from None
    try:
        _check_depth(text, file)
        node = loader.get_single_node()
    except RecursionError:  # a fallback: _check_depth stops nesting long before
        where = loader.get_mark().line + 1
        loader.dispose()
        raise ConfigError("invalid YAML: nested too deeply", file=file, line=where) from None
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
        doc = _Doc(file, surroundings.base, loader, surroundings.home)
        return _config(_At(doc, node, ""), surroundings.state_dir)
    except RecursionError:  # merge keys or values nested past what anyone writes
        raise ConfigError("nested too deeply", file=file) from None
    finally:
        loader.dispose()


def _config(root: _At, default_state_dir: Path) -> Config:
    keys = root.mapping(_TOP_KEYS)
    if "version" not in keys:
        raise root.missing("version", "write `version: 1` at the top")
    version = keys["version"].integer()
    if version != 1:
        raise keys["version"].error(f"unsupported version {version}; this mirrord reads version 1")
    state_dir = keys["state_dir"].path() if "state_dir" in keys else default_state_dir
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
        notifications=_notifications(keys.get("notifications", empty)),
        server=_server(keys["server"]) if "server" in keys else ServerConfig(),
        pruning=pruning_config(keys["pruning"]) if "pruning" in keys else PruningConfig(),
        database=_database(keys),
        worker_name=_worker_name(keys["worker_name"]) if "worker_name" in keys else None,
        lease=_lease(keys["lease"]) if "lease" in keys else Config.lease,
        verify_every=(
            _verify_every(keys["verify_every"]) if "verify_every" in keys else Config.verify_every
        ),
        limits=_limits(keys["limits"]) if "limits" in keys else Limits(),
        lookaside_dir=keys["lookaside_dir"].path() if "lookaside_dir" in keys else None,
        lookaside_url=_lookaside(keys["lookaside_url"]) if "lookaside_url" in keys else None,
        **_policy(keys.get("policy")),
    )

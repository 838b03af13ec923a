"""The configuration's value types: frozen dataclasses, as :mod:`mirrord.config` builds them."""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Literal
from urllib.parse import urlsplit

from mirrord.core.limits import (
    MIN_TRANSFER_RATE,
    MONOLITHIC_DEFAULT,
    REQUEST_TIMEOUT,
    STALL_TIMEOUT,
    Limits,
)
from mirrord.core.modes import ImportMode, ReferencePolicy
from mirrord.core.reference import normalise_registry
from mirrord.errors import ConfigError


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
    """Per host[:port]. ``insecure``: plain HTTP. ``rate``: requests/second. The
    transfer bounds (seconds, bytes per second) are described in
    :mod:`mirrord.core.limits`.

    ``retry_budget`` / ``outage_budget``: seconds a request answered 429/503, or failing
    to connect, is retried. ``ratelimit_min``: below this many Docker Hub pulls left
    (``ratelimit-remaining``), no new manifest pull starts at the registry.
    """

    auth_file: Path | None = None
    insecure: bool = False
    tls_verify: bool = True
    ca_file: Path | None = None
    max_concurrency: int = 6
    rate: float | None = None
    http2: bool = True
    monolithic_max: int = MONOLITHIC_DEFAULT
    request_timeout: float = REQUEST_TIMEOUT
    stall_timeout: float = STALL_TIMEOUT
    min_transfer_rate: int = MIN_TRANSFER_RATE
    retry_budget: float = 300.0
    outage_budget: float = 120.0
    ratelimit_min: int = 10
    # Simple-signing lookaside of this registry (file://, http://, https://); None: the
    # built-in one for registry.redhat.io / registry.access.redhat.com, else none.
    lookaside: str | None = None


#: The ``registries:`` entry whose settings every other entry (and unlisted host) starts
#: from. Never a registry: a host without a dot or port is a Docker Hub namespace.
DEFAULT_REGISTRY = "default"


@dataclass(frozen=True)
class Defaults:
    """Import policy every stream inherits unless it sets its own."""

    schedule: str = "15m"
    import_mode: ImportMode = ImportMode.PRESERVE_ORIGINAL
    max_tags: int = 50
    platform: str = "linux/amd64"
    reference_policy: ReferencePolicy = ReferencePolicy.SOURCE
    signatures: bool = True
    # OCI 1.1 referrers copied with each image: None not copied, () every artifact type,
    # else only those artifact types (``referrers: false|true|[type, ...]``).
    referrers: tuple[str, ...] | None = None
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
    import_mode: ImportMode = ImportMode.PRESERVE_ORIGINAL
    platform: str = "linux/amd64"
    schedule: str = "15m"
    reference_policy: ReferencePolicy = ReferencePolicy.SOURCE
    signatures: bool = True
    # OCI 1.1 referrers copied with each image: None not copied, () every artifact type,
    # else only those artifact types (``referrers: false|true|[type, ...]``).
    referrers: tuple[str, ...] | None = None
    delete_removed_tags: bool = False
    pinned: tuple[str, ...] = ()
    """Digests the pruner never removes (nor any revision recording them)."""

    @property
    def source_registry(self) -> str:
        """``registry.redhat.io`` of ``registry.redhat.io/ubi9/ubi``."""
        return self.source.split("/", 1)[0]

    @property
    def source_repository(self) -> str:
        """``ubi9/ubi`` of ``registry.redhat.io/ubi9/ubi``."""
        return self.source.split("/", 1)[1]


NOTIFICATION_EVENTS = ("push", "cluster-resources.changed")


@dataclass(frozen=True)
class NotificationConfig:
    """A webhook (``url``, optionally HMAC-signed with ``secret_file``) or a command.
    ``url`` stays out of the repr: webhook URLs often embed a token."""

    url: str | None = dataclasses.field(default=None, repr=False)
    secret_file: Path | None = None
    command: tuple[str, ...] | None = None
    timeout: float = 10.0
    name: str | None = None
    events: tuple[str, ...] = NOTIFICATION_EVENTS
    """The actions this receiver gets (``push``: a tag moved; ``cluster-resources.changed``)."""

    @property
    def receiver_id(self) -> str:
        """``webhook:NAME`` / ``command:NAME``; without a ``name``, the URL's host[:port]
        or the program's file name stands in for it.

        Queued events are addressed by this id, so it does not change when receivers
        are added or reordered, nor when a token in the URL or an argument is rotated;
        and nothing that may hold a secret (path, query, userinfo, arguments) is in it.
        """
        kind = "webhook" if self.url is not None else "command"
        if self.name:
            return f"{kind}:{self.name}"
        if self.url is not None:
            parts = urlsplit(self.url)
            host = parts.hostname or ""
            host = f"[{host}]" if ":" in host else host
            return f"{kind}:{host}" + (f":{parts.port}" if parts.port is not None else "")
        return f"{kind}:{PurePath((self.command or ('',))[0]).name}"


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
class DatabaseConfig:
    """A shared PostgreSQL state database (top-level ``database:``). ``url`` is the libpq
    URL as written, never with a password in it; the password comes from
    ``password_file``, the systemd credential ``database-password`` or libpq itself
    (``PGPASSFILE``, ``~/.pgpass``)."""

    url: str
    password_file: Path | None = None

    def __str__(self) -> str:
        return self.url


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
    database: DatabaseConfig | None = None  # None: SQLite in state_dir
    worker_name: str | None = None  # None: host:pid
    lease: float = 60.0  # seconds a worker's claim on a stream lasts unless renewed
    # Seconds between the daemon's runs that HEAD every mirror tag (0: never); the
    # others trust one tag listing plus the state (an overwrite in the mirror waits).
    verify_every: float = 86400.0
    limits: Limits = dataclasses.field(default_factory=Limits)
    # The mirror's own lookaside directory (None: <state_dir>/sigstore).
    lookaside_dir: Path | None = None
    # The verification policy: a containers-policy.json file, or its text given inline
    # (JSON); checked by mirrord.signatures when a sync starts. None: no verification.
    policy: Path | None = None
    # The URL clients read the mirror's lookaside from (cluster-resources' registries.d);
    # None: the daemon's /sigstore at server.listen.
    lookaside_url: str | None = None
    policy_text: str | None = dataclasses.field(default=None, repr=False)

    @property
    def signature_dir(self) -> Path:
        """Where the mirror's lookaside lives (``lookaside_dir``, or ``state_dir/sigstore``)."""
        return self.lookaside_dir or self.state_dir / "sigstore"

    def registry_config(self, host: str) -> RegistryConfig:
        """The settings for ``host[:port]``; the ``default`` entry's (or the built-in
        defaults) for a host not configured."""
        found = self.registries.get(normalise_registry(host))
        return found or self.registries.get(DEFAULT_REGISTRY) or RegistryConfig()

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

"""How to reach one registry, and the bounds on what mirrord accepts from it.

Upstream data is hostile until checked, so every answer is bounded:

- a manifest is read incrementally and refused past ``max_manifest_size`` (4 MiB, as
  containers/image); every other body read into memory (tag-list pages, token and error
  answers) past :data:`~mirrord.core.limits.MAX_JSON_BODY`;
- a tag listing stops with an error past ``max_tag_pages`` pages or ``max_tags`` tags,
  and at a ``Link`` it has already followed (a loop);
- a request whose answer is read whole has ``request_timeout`` seconds overall, however
  its bytes trickle in; a streamed body (a blob) must keep at least
  ``min_transfer_rate`` bytes a second over every ``stall_timeout`` window, so a stalled
  or trickling body fails after ``stall_timeout`` seconds. Both failures are temporary
  (retried, each attempt bounded again).

Each bound's error names the limit, the registry and the configuration key that raises
it (:data:`mirrord.core.limits.KEYS`; the defaults are there too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mirrord.core.limits import (
    KEYS,
    MAX_JSON_BODY,
    MIN_TRANSFER_RATE,
    MONOLITHIC_DEFAULT,
    MONOLITHIC_LIMIT,
    REQUEST_TIMEOUT,
    STALL_TIMEOUT,
    Limits,
)

__all__ = [
    "CERTS_DIRS",
    "LIMIT_KEYS",
    "MAX_JSON_BODY",
    "MONOLITHIC_DEFAULT",
    "MONOLITHIC_LIMIT",
    "RegistryOptions",
]

CERTS_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))

_DEFAULT = Limits()
LIMIT_KEYS = KEYS


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How to reach one registry, and what it may send.

    ``insecure`` speaks plain HTTP; ``tls_verify=False`` keeps HTTPS but skips
    verification; ``ca_file`` and ``<certs_dir>/<host>/*.crt`` add CAs, and a
    ``*.cert``/``*.key`` pair there is a client certificate (as containers/image does);
    ``cert_dir`` is one such directory given directly (``login --cert-dir``).
    ``rate`` paces requests (per second); ``http2`` lets the small exchanges (``HEAD``,
    tag lists, manifests) use HTTP/2 over TLS when the registry offers it (see
    :mod:`._clients`); ``chunk_size`` forces chunked (PATCH)
    uploads in pieces of that many bytes; a blob of at most ``monolithic_max`` bytes
    (bounded by :data:`MONOLITHIC_LIMIT`) is read whole, verified, and sent as the body
    of the closing ``PUT`` (``POST`` + ``PUT``: one request fewer than a ``PATCH``).
    ``retry_budget`` and ``outage_budget``
    bound (in seconds) the retries of 429/503 answers and of connection failures
    (see :mod:`._retry`); ``ratelimit_min`` is the pull floor of :mod:`._ratelimit`.
    ``trusted_hosts`` are the other hosts
    (``host[:port]``) that may receive this registry's credential as a Bearer token
    realm over plain HTTP: the hosts configured under ``registries:``. The bounds are
    described in the module docstring.
    """

    insecure: bool = False
    tls_verify: bool = True
    ca_file: Path | None = None
    max_concurrency: int = 6
    rate: float | None = None
    http2: bool = True
    chunk_size: int = 0
    monolithic_max: int = MONOLITHIC_DEFAULT
    certs_dirs: tuple[Path, ...] = CERTS_DIRS
    cert_dir: Path | None = None
    trusted_hosts: frozenset[str] = frozenset()
    max_manifest_size: int = _DEFAULT.max_manifest_size
    max_tag_pages: int = _DEFAULT.max_tag_pages
    max_tags: int = _DEFAULT.max_upstream_tags
    request_timeout: float = REQUEST_TIMEOUT
    stall_timeout: float = STALL_TIMEOUT
    min_transfer_rate: int = MIN_TRANSFER_RATE
    retry_budget: float = 300.0
    outage_budget: float = 120.0
    ratelimit_min: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.monolithic_max <= MONOLITHIC_LIMIT:
            raise ValueError(f"monolithic_max must be 0 to {MONOLITHIC_LIMIT} bytes")

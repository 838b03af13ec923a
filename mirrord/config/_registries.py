"""The ``registries:`` and ``limits:`` sections: per-host settings and the caps on upstream data."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

from mirrord.config._signing import _lookaside
from mirrord.config._types import DEFAULT_REGISTRY, RegistryConfig
from mirrord.config._values import _duration, _host, _size, _timeout
from mirrord.config._yaml import _At
from mirrord.core.limits import MONOLITHIC_LIMIT, Limits

MAX_BUDGET = 24 * 3600.0

def _budget(at: _At) -> float:
    """A retry budget: a Go duration from 0 (no retries) to 24h."""
    seconds = _duration(at)
    if seconds > MAX_BUDGET:
        raise at.error(f"at most 24h, got {at.text()!r}")
    return seconds


_REGISTRY: dict[str, Callable[[_At], Any]] = {
    "auth_file": _At.path,
    "insecure": _At.boolean,
    "tls_verify": _At.boolean,
    "ca_file": _At.path,
    "max_concurrency": lambda a: a.integer(1, 1000),
    "http2": _At.boolean,
    "monolithic_max": lambda a: _size(a, minimum=0, maximum=MONOLITHIC_LIMIT),
    # At least a request every 100 seconds: a smaller rate never sends one.
    "rate": lambda a: a.number(0.01, 1e6),
    "request_timeout": lambda a: _timeout(a, maximum=86400.0),
    "stall_timeout": lambda a: _timeout(a, maximum=3600.0),
    "min_transfer_rate": lambda a: _size(a, minimum=0, maximum=1 << 30),
    "lookaside": _lookaside,
    "retry_budget": _budget,
    "outage_budget": _budget,
    "ratelimit_min": lambda a: a.integer(0, 1_000_000),
}

# The caps on upstream data (mirrord.core.limits): each at least 1 and at most a
# bound past which the cap protects nothing.
_LIMITS: dict[str, Callable[[_At], Any]] = {
    "max_manifest_size": lambda a: _size(a, minimum=1024, maximum=1 << 30),
    "max_layers": lambda a: a.integer(1, 1_000_000),
    "max_index_children": lambda a: a.integer(1, 1_000_000),
    "max_index_depth": lambda a: a.integer(1, 16),
    "max_tag_pages": lambda a: a.integer(1, 1_000_000),
    "max_upstream_tags": lambda a: a.integer(1, 100_000_000),
}


def _limits(at: _At) -> Limits:
    keys = at.mapping(tuple(_LIMITS))
    return Limits(**{k: _LIMITS[k](v) for k, v in keys.items()})


def _registries(at: _At) -> dict[str, RegistryConfig]:
    """Each host's settings; a ``default`` entry is what the others start from."""
    entries: dict[str, tuple[_At, dict[str, _At]]] = {}
    lines: dict[str, int] = {}
    for key, value in at.entries(None, quoted=True):
        name = str(key.node.value)
        host = DEFAULT_REGISTRY if name == DEFAULT_REGISTRY else _host(key, name)
        if host != DEFAULT_REGISTRY and "." not in host and ":" not in host and host != "localhost":
            # As in a reference (docker/distribution's rule), such a first component is
            # a Docker Hub namespace, never a host: the entry could apply to nothing.
            hint = " (did you mean 'default'?)" if _near(name, DEFAULT_REGISTRY) else ""
            raise key.error(
                f"{name!r} is not a registry host: a host has a '.' or a ':port', or is "
                f"localhost{hint}"
            )
        if host in entries:
            raise key.error(f"{name!r} is the same registry as line {lines[host]}")
        lines[host] = key.line
        entries[host] = (key, value.mapping(tuple(_REGISTRY)))
    base = RegistryConfig()
    if DEFAULT_REGISTRY in entries:
        base = _registry_entry(base, *entries[DEFAULT_REGISTRY])
    return {host: _registry_entry(base, *entry) for host, entry in entries.items()}


def _near(word: str, wanted: str) -> bool:
    return difflib.SequenceMatcher(None, word.lower(), wanted).ratio() >= 0.7


def _registry_entry(base: RegistryConfig, key: _At, keys: dict[str, _At]) -> RegistryConfig:
    return dataclasses.replace(base, **{k: _REGISTRY[k](v) for k, v in keys.items()})

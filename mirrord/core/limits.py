"""The bounds on what mirrord accepts from an upstream, their defaults and their keys.

Upstream data is hostile until checked: every count and size it controls is capped,
and each cap's error names the limit, the upstream and the configuration key that
raises it (:data:`KEYS`). :class:`Limits` is the top-level ``limits:`` section; the
transfer bounds are set per registry (``registries: HOST: request_timeout`` …). Pure.

=====================  ==========  ============================================
``limits:`` key        default     what it bounds
=====================  ==========  ============================================
max_manifest_size      4 MiB       one manifest (containers/image's limit), read
                                   incrementally and refused past it
max_layers             1000        layers of one image manifest
max_index_children     1000        manifests listed by one index
max_index_depth        2           indexes within indexes (1: no nesting)
max_tag_pages          1000        pages of one tag listing (Link pagination)
max_upstream_tags      100000      tags of one upstream repository
=====================  ==========  ============================================

Per registry: ``request_timeout`` (120s) is the deadline of a request whose answer is
read whole; a streamed body must keep ``min_transfer_rate`` (1024 bytes/s) over every
``stall_timeout`` (60s) window, so a stalled or trickling body fails after a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

REQUEST_TIMEOUT = 120.0
STALL_TIMEOUT = 60.0
MIN_TRANSFER_RATE = 1024  # bytes per second, over every stall_timeout window
MAX_JSON_BODY = 16 << 20  # a tag-list page, a token or an error answer (not configurable)
#: Blobs up to ``registries.HOST.monolithic_max`` bytes (default 1 MiB) go to a registry as
#: one monolithic ``PUT``; at most MONOLITHIC_LIMIT (the blob is held in memory, once per
#: concurrent blob stream).
MONOLITHIC_DEFAULT = 1 << 20
MONOLITHIC_LIMIT = 4 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """The ``limits:`` section (see the module docstring for each cap)."""

    max_manifest_size: int = 4 << 20
    max_layers: int = 1000
    max_index_children: int = 1000
    max_index_depth: int = 2
    max_tag_pages: int = 1000
    max_upstream_tags: int = 100_000


LIMIT_NAMES = tuple(f.name for f in fields(Limits))
TRANSFER_NAMES = ("request_timeout", "stall_timeout", "min_transfer_rate")

#: where a user raises each bound; named in the error that bound raises
KEYS = {name: f"limits.{name}" for name in LIMIT_NAMES} | {
    name: f"registries.HOST.{name}" for name in TRANSFER_NAMES
}

"""Where blobs landed in a mirror: the part of the store that outlives a run.

A run's copy engine mounts a blob it already put in another repository of the mirror
instead of pulling it again; this record carries that knowledge across runs and to
the other workers of a shared database. One row per (mirror, digest): the repository
the blob was last seen landing in (copied, mounted or found there), and when.

A row may go stale: pruning deletes manifests, and the registry's garbage collection
may then remove their blobs, or a repository is deleted out of band. That is harmless:
the mount from a stale repository answers 202 (an upload session), the engine uploads
the blob through that session (no request lost) and the row is forgotten or replaced.
Nothing trims the table; it holds one row per distinct blob ever mirrored per mirror.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from mirrord.core.oci import parse_digest
from mirrord.state._leases import MAX_MIRROR, MAX_REPOSITORY

#: Rows one :meth:`BlobLocationStore.record_blob_locations` call may write.
MAX_LOCATIONS_PER_CALL = 10_000


@dataclass(frozen=True)
class BlobLocation:
    """Blob ``digest`` of ``mirror`` was last recorded in ``repository`` at ``recorded``."""

    mirror: str
    digest: str
    repository: str
    recorded: datetime


def check_location(mirror: str, digest: str, repository: str | None = None) -> None:
    """ValueError for an empty or oversized mirror or repository; ManifestError for a
    malformed digest."""
    if not mirror or len(mirror) > MAX_MIRROR:
        raise ValueError(f"a mirror name has 1 to {MAX_MIRROR} characters")
    parse_digest(digest)
    if repository is not None and not 0 < len(repository) <= MAX_REPOSITORY:
        raise ValueError(f"a repository name has 1 to {MAX_REPOSITORY} characters")


def check_locations(mirror: str, locations: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (digest, repository) pairs to write, checked, sorted by digest: writers then
    lock rows in one order (two workers writing overlapping sets cannot deadlock)."""
    if len(locations) > MAX_LOCATIONS_PER_CALL:
        raise ValueError(f"at most {MAX_LOCATIONS_PER_CALL} blob locations per call")
    for digest, repository in locations.items():
        check_location(mirror, digest, repository)
    return sorted(locations.items())


class BlobLocationStore(abc.ABC):
    """The blob-location part of the :class:`~mirrord.state.Store` interface."""

    @abc.abstractmethod
    async def blob_location(self, mirror: str, digest: str) -> BlobLocation | None:
        """Where ``digest`` last landed in ``mirror`` (a registry mirror's description,
        ``docker://host/prefix``), or None when never recorded."""

    @abc.abstractmethod
    async def record_blob_locations(
        self, mirror: str, locations: Mapping[str, str], *, now: datetime | None = None
    ) -> int:
        """Record digest -> repository for ``mirror`` (each replacing the previous
        repository of its digest), in one transaction; how many were written. At most
        :data:`MAX_LOCATIONS_PER_CALL` (ValueError beyond)."""

    @abc.abstractmethod
    async def forget_blob_location(self, mirror: str, digest: str, repository: str) -> bool:
        """Forget the row of ``digest`` if it still names ``repository`` (a mount from
        there failed); False when it names another (recorded since) or is gone."""

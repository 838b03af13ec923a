"""Reading manifests back from the mirror: one by digest, and the children of indexes.

The state does not record which manifests an index lists; the pruner (and a sync
deleting tags gone upstream) read them here. A manifest that cannot be parsed raises:
what it references is unknown, so nothing it might reference may be deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio

from mirrord.core.oci import Descriptor, Manifest, is_index
from mirrord.errors import ManifestError, NotFoundError, ungrouped
from mirrord.registry import retrying
from mirrord.transports._base import Destination
from mirrord.transports._ocilayout import OCILayoutDestination
from mirrord.transports._registry import RegistryDestination

READ_CONCURRENCY = 8


async def read_manifest(destination: Destination, repository: str, digest: str) -> Manifest | None:
    """The manifest ``digest`` as the mirror holds it; None when it is not there."""
    if isinstance(destination, OCILayoutDestination):
        return await destination.read_manifest(digest)
    if isinstance(destination, RegistryDestination):
        client = destination.client
        try:
            return await retrying(
                lambda: client.get_manifest(repository, digest),
                f"GET {repository}@{digest}",
                client.retry,
            )
        except NotFoundError:
            return None
    return None


async def read_children(
    destination: Destination, locations: Mapping[str, Sequence[str]]
) -> dict[str, tuple[str, ...]]:
    """``{index digest: child digests}`` for the indexes among ``locations``' digests
    (and nested indexes). ``locations`` maps a digest to the repositories that hold it."""
    children: dict[str, tuple[str, ...]] = {}
    limiter = anyio.CapacityLimiter(READ_CONCURRENCY)
    pending = {d: tuple(dict.fromkeys(repos)) for d, repos in locations.items() if repos}
    seen = set(pending)
    while pending:
        found: dict[str, tuple[Descriptor, ...]] = {}
        with ungrouped():
            async with anyio.create_task_group() as tg:
                for digest, repositories in pending.items():
                    tg.start_soon(_read_into, destination, digest, repositories, found, limiter)
        following: dict[str, tuple[str, ...]] = {}
        for digest, kids in found.items():
            children[digest] = tuple(k.digest for k in kids)
            for kid in kids:
                if is_index(kid.media_type) and kid.digest not in seen:
                    seen.add(kid.digest)
                    following[kid.digest] = pending[digest]
        pending = following
    return children


async def _read_into(
    destination: Destination,
    digest: str,
    repositories: Sequence[str],
    found: dict[str, tuple[Descriptor, ...]],
    limiter: anyio.CapacityLimiter,
) -> None:
    async with limiter:
        for repository in repositories:
            try:
                manifest = await read_manifest(destination, repository, digest)
            except ManifestError as error:
                raise ManifestError(
                    f"{repository}@{digest} in the mirror: {error}; what it references is "
                    "unknown, so nothing it might reference is deleted"
                ) from error
            if manifest is not None:
                if manifest.is_index:
                    found[digest] = manifest.manifests
                return

"""What the pruner (and a sync deleting removed tags) reads from and removes in the
mirror, beyond deleting manifests.

- :func:`read_children`: the child manifests of every index among the digests
  considered, read from the mirror (the state does not record them). A manifest
  that cannot be parsed raises: what it references is unknown, so nothing may go.
- :func:`collect_garbage`: for an ``oci:`` mirror, remove the files under
  ``blobs/`` that nothing needs. The roots are every ``index.json`` entry plus
  every digest still recorded in a tag's history or pinned; from each root the
  walk follows index → child manifests and image manifest → config, layers and
  ``subject``. A manifest that cannot be parsed stops the collection (nothing is
  removed: its references are unknown). Files written after the run started
  (a concurrent writer) and files whose name is not a digest (temporary files)
  are never touched. Run it under the run lock: a sync writes blobs before the
  manifest that needs them.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import anyio

from mirrord._errors import (
    DigestMismatchError,
    ManifestError,
    MirrordError,
    NotFoundError,
    first_error,
)
from mirrord.copy import retrying
from mirrord.imagestream import ImageStream
from mirrord.oci import Descriptor, Manifest, is_index, parse_manifest
from mirrord.transports import Destination, OCILayoutDestination, RegistryDestination
from mirrord.transports._ocilayout import REF_NAME

log = logging.getLogger("mirrord.prune")

READ_CONCURRENCY = 8
_HEX = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}


def mirror_repository(destination: Destination, stream: ImageStream) -> str | None:
    """The stream's repository in ``destination``; None when its history was recorded
    for another mirror (then the pruner touches only its metadata)."""
    repository = destination.repository(stream.name)
    here = destination.reference(repository, "").rstrip(":")
    if stream.docker_image_repository != here:
        log.warning(
            "stream %s was mirrored to %s, not %s: only its metadata is pruned",
            stream.name,
            stream.docker_image_repository,
            here,
        )
        return None
    return repository


async def read_manifest(destination: Destination, repository: str, digest: str) -> Manifest | None:
    """The manifest ``digest`` as the mirror holds it; None when it is not there."""
    if isinstance(destination, OCILayoutDestination):
        path = destination.blob_path(digest)
        try:
            raw = await anyio.Path(path).read_bytes()
        except FileNotFoundError:
            return None
        return parse_manifest(raw, expected_digest=digest)
    if isinstance(destination, RegistryDestination):
        client = destination.client
        try:
            return await retrying(
                lambda: client.get_manifest(repository, digest), f"GET {repository}@{digest}"
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
        try:
            async with anyio.create_task_group() as tg:
                for digest, repositories in pending.items():
                    tg.start_soon(_read_into, destination, digest, repositories, found, limiter)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
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


async def collect_garbage(
    layout: OCILayoutDestination,
    roots: Collection[str],
    *,
    dropped: Collection[tuple[str, str]] = (),
    dry_run: bool = False,
) -> tuple[set[str], int]:
    """Remove (or, ``dry_run``, only find) unreferenced blobs: (their digests, bytes).

    ``dropped``: ``(repository, digest)`` tags a dry run treats as already gone
    from ``index.json`` (the confirmed run deletes them first).
    """
    started = time.time()
    return await anyio.to_thread.run_sync(
        lambda: _collect(layout, set(roots), set(dropped), dry_run, started)
    )


def _collect(
    layout: OCILayoutDestination,
    roots: set[str],
    dropped: set[tuple[str, str]],
    dry_run: bool,
    started: float,
) -> tuple[set[str], int]:
    for entry in layout._read_index():
        repository = str(entry.get("annotations", {}).get(REF_NAME, "")).rpartition(":")[0]
        if (repository, entry.get("digest")) not in dropped:
            roots.add(str(entry.get("digest")))
    try:
        needed = _reachable(layout, roots)
    except (ManifestError, DigestMismatchError) as error:
        log.error("blob garbage collection skipped in %s: %s", layout.description, error)
        return set(), 0
    removed: set[str] = set()
    freed = 0
    for path, digest in _blob_files(layout.root / "blobs"):
        if digest in needed:
            continue
        stat = path.stat()
        if stat.st_mtime >= started:
            continue
        if not dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # removed meanwhile: nothing to free
            except OSError as error:
                raise MirrordError(f"cannot remove blob {path}: {error.strerror}") from error
        removed.add(digest)
        freed += stat.st_size
    if removed:
        log.info(
            "%s %d unreferenced blobs (%d bytes) in %s",
            "would remove" if dry_run else "removed",
            len(removed),
            freed,
            layout.description,
        )
    return removed, freed


def _reachable(layout: OCILayoutDestination, roots: set[str]) -> set[str]:
    """Every digest the root manifests need, themselves included."""
    needed: set[str] = set()
    stack = sorted(roots)
    while stack:
        digest = stack.pop()
        if digest in needed:
            continue
        needed.add(digest)
        try:
            raw = layout.blob_path(digest).read_bytes()
        except FileNotFoundError:
            continue  # not in the layout: nothing of it to keep
        manifest = parse_manifest(raw, expected_digest=digest)
        stack.extend(d.digest for d in manifest.manifests)
        needed.update(d.digest for d in (manifest.config, *manifest.layers) if d is not None)
        if manifest.subject is not None:
            stack.append(manifest.subject.digest)
    return needed


def _blob_files(blobs: Path) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for algorithm, pattern in _HEX.items():
        directory = blobs / algorithm
        if not directory.is_dir():
            continue
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False) and pattern.fullmatch(entry.name):
                found.append((Path(entry.path), f"{algorithm}:{entry.name}"))
    return found

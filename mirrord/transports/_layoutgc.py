"""Garbage collection of an OCI layout mirror: remove the blobs nothing needs.

The roots are every ``index.json`` entry plus every digest still recorded in a
tag's history or pinned; from each root the walk follows index → child manifests
and image manifest → config, layers and ``subject``. A manifest that cannot be
parsed stops the collection (nothing is removed: its references are unknown). Files
written after the run started (a concurrent writer) and files whose name is not a
digest (temporary files) are never touched. Run it under the run lock: a sync writes
blobs before the manifest that needs them.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Collection
from pathlib import Path

import anyio

from mirrord.core.oci import parse_manifest
from mirrord.errors import DigestMismatchError, ManifestError, StorageError
from mirrord.transports._layoutfiles import read_small_file
from mirrord.transports._ocilayout import OCILayoutDestination

log = logging.getLogger("mirrord.prune")

_HEX = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}


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
    for repository, _tag, digest in layout.tagged():
        if (repository, digest) not in dropped:
            roots.add(digest)
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
                raise StorageError(f"cannot remove blob {path}: {error.strerror}") from error
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
            raw = read_small_file(layout.blob_path(digest), layout.max_manifest_size)
        except FileNotFoundError:
            continue  # not in the layout: nothing of it to keep
        except OSError as error:  # not a file, or too large to be a manifest
            raise ManifestError(f"{digest} in {layout.description}: {error}") from error
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

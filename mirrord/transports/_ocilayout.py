"""The mirror as one OCI image layout directory (image-spec ``image-layout.md``).

Every mirror repository shares the layout's ``blobs/`` (so a layer shared by
many repositories is stored once) and each tag is an ``index.json`` entry whose
``org.opencontainers.image.ref.name`` is ``<repository>:<tag>``; skopeo reads it
as ``oci:/path:<repository>:<tag>``.

Writes are crash-safe: a blob is written to ``ingest/``, fsynced, checked and
renamed into place; ``index.json`` is replaced atomically. A tag therefore never
names a manifest or blob that is not completely on disk.

Many writers share one layout (the streams of a daemon, each with its own
destination object, and other ``mirrord`` processes): every update of
``index.json`` re-reads it under an exclusive lock unless the cached copy is
provably current, and a partial file is removed only when its writer is gone
(see :mod:`mirrord.transports._layoutfiles`). :meth:`OCILayoutDestination.ping`
only checks; the first write creates the layout.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from mirrord.core.limits import Limits
from mirrord.core.oci import (
    OCI_INDEX,
    Descriptor,
    Manifest,
    is_digest,
    parse_digest,
    parse_manifest,
)
from mirrord.core.reference import check_repository, check_tag
from mirrord.errors import NotFoundError, StorageError
from mirrord.transports._layoutfiles import (
    IndexLock,
    Stamp,
    atomic_write,
    check_writable,
    close_and_discard,
    commit,
    create_locked,
    partial_path,
    read_generation,
    read_small_file,
    remove_dead_leftovers,
    stamp,
)

REF_NAME = "org.opencontainers.image.ref.name"
_LAYOUT = {"imageLayoutVersion": "1.0.0"}

Entries = list[dict[str, Any]]


class OCILayoutDestination:
    """A mirror in the OCI layout at ``root`` (created on first write)."""

    def __init__(self, root: Path, max_manifest_size: int = Limits().max_manifest_size) -> None:
        self.root = Path(root)
        self.max_manifest_size = max_manifest_size
        self.description = f"oci:{self.root}"
        self._index_lock = anyio.Lock()
        self._layout_lock = threading.Lock()
        self._layout_ready = False
        # index.json as last read or written: its entries, ref name -> entry, the
        # file's stamp and (when known) the lock generation it belongs to.
        self._cache_lock = threading.Lock()
        self._entries: Entries | None = None
        self._refs: dict[str, dict[str, Any]] = {}
        self._stamp: Stamp | None = None
        self._generation: int | None = None

    def repository(self, path: str) -> str:
        return path.strip("/")

    def reference(self, repository: str, tag_or_digest: str) -> str:
        return f"oci:{self.root}:{repository}:{tag_or_digest}"

    def blob_path(self, digest: str) -> Path:
        """``blobs/<algorithm>/<hex>`` of a checked digest: a DigestInvalidError for
        anything but sha256/sha512 hex, so no text ever picks a file outside ``blobs/``."""
        algorithm, _, hex_digest = parse_digest(digest, self.description).partition(":")
        return self.root / "blobs" / algorithm / hex_digest

    async def read_manifest(self, digest: str) -> Manifest | None:
        """The manifest stored as blob ``digest`` (checked); None when it is not there."""
        path = self.blob_path(digest)
        try:
            raw = await anyio.to_thread.run_sync(read_small_file, path, self.max_manifest_size)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"{self.description}: cannot read {digest}: {exc}") from exc
        return parse_manifest(raw, expected_digest=digest)

    async def ping(self) -> None:
        """Check that the layout can be written (or created); create or remove nothing."""
        try:
            await anyio.to_thread.run_sync(check_writable, self.root)
        except OSError as exc:
            raise StorageError(f"{self.description}: {exc}") from exc

    async def list_tags(self, repository: str) -> list[str]:
        entries = await anyio.to_thread.run_sync(self._read_index)
        prefix = f"{repository}:"
        return [
            name[len(prefix) :]
            for entry in entries
            if (name := entry.get("annotations", {}).get(REF_NAME, "")).startswith(prefix)
        ]

    async def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        if is_digest(reference):
            manifest = await self.read_manifest(reference)
            return manifest.descriptor() if manifest is not None else None
        ref_name = _ref_name_of(repository, reference)
        entry = await anyio.to_thread.run_sync(self._lookup, ref_name)
        return Descriptor.from_json(entry, "index.json") if entry else None

    async def put_manifest(
        self, repository: str, reference: str, manifest: Manifest
    ) -> str | None:
        """Store the manifest's file, then (for a tag) its ``index.json`` entry; a
        StorageError names which of them could not be written. A layout has no referrers
        API (None): referrers are found through the referrers tag schema's
        ``<repository>:sha256-<hex>`` entries."""
        try:
            await self._put_manifest(repository, reference, manifest)
        except OSError as exc:
            raise self._error(f"cannot store manifest {manifest.digest}", exc) from exc
        return None

    async def referrers_api(self, repository: str, digest: str) -> bool:
        return False

    async def _put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        ref_name = None if is_digest(reference) else _ref_name_of(repository, reference)
        await anyio.to_thread.run_sync(self._write_file, manifest.digest, manifest.raw)
        if ref_name is None:
            return
        entry: dict[str, Any] = {
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.size,
            "annotations": {REF_NAME: ref_name},
        }
        if manifest.artifact_type and manifest.is_index:
            entry["artifactType"] = manifest.artifact_type
        async with self._index_lock:
            await anyio.to_thread.run_sync(self._set_ref, ref_name, entry)

    def _error(self, what: str, exc: OSError) -> StorageError:
        return StorageError(f"{self.description}: {what}: {exc.strerror or exc}")

    async def delete_manifest(self, repository: str, digest: str) -> None:
        """Drop every tag of ``repository`` that names ``digest``; blobs stay for GC."""
        parse_digest(digest, self.description)
        try:
            async with self._index_lock:
                removed = await anyio.to_thread.run_sync(self._drop_refs, repository, digest)
        except OSError as exc:
            raise self._error(f"cannot untag {repository}@{digest}", exc) from exc
        if not removed:
            raise NotFoundError(f"{self.description}: {repository}@{digest} is not tagged")

    async def blob_exists(self, repository: str, digest: str) -> bool:
        return self.blob_path(digest).exists()

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        # Blobs are shared by every repository of the layout: present means mounted.
        return None if self.blob_path(digest).exists() else ""

    async def write_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        chunks: AsyncIterable[bytes],
        upload: str | None = None,
    ) -> None:
        ingest = partial_path(self.root, descriptor.digest)
        target = self.blob_path(descriptor.digest)
        try:
            await anyio.to_thread.run_sync(self._ensure_layout)
            raw = await anyio.to_thread.run_sync(create_locked, ingest)
            try:
                out = anyio.wrap_file(raw)
                async for chunk in chunks:
                    await out.write(chunk)
                await anyio.to_thread.run_sync(_finish, raw, ingest, target)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(_discard, raw, ingest)
        except OSError as exc:
            raise self._error(f"cannot store blob {descriptor.digest}", exc) from exc

    async def cancel_upload(self, repository: str, upload: str) -> None:
        return None  # no sessions: a write that never happened left nothing behind

    async def aclose(self) -> None:
        return None

    # -- blocking helpers (run in a worker thread) ----------------------------------------

    def tagged(self) -> list[tuple[str, str, str]]:
        """``(repository, tag, digest)`` of every ``index.json`` entry with a ref name
        (blocking: call it in a worker thread)."""
        found = []
        for entry in self._read_index():
            repository, _, tag = _ref_name(entry).rpartition(":")
            if repository:
                found.append((repository, tag, str(entry.get("digest", ""))))
        return found

    def _ensure_layout(self) -> None:
        # Once per object: create what is missing, remove what dead writers left.
        with self._layout_lock:
            if self._layout_ready:
                return
            try:
                for sub in ("blobs/sha256", "blobs/sha512", "ingest"):
                    (self.root / sub).mkdir(parents=True, exist_ok=True)
                remove_dead_leftovers(self.root)
            except OSError as exc:
                raise self._error("cannot create the layout's directories", exc) from exc
            if not (self.root / "oci-layout").exists():
                try:
                    atomic_write(self.root / "oci-layout", json.dumps(_LAYOUT).encode())
                except OSError as exc:
                    raise self._error("cannot write oci-layout", exc) from exc
            # Under the index lock: two writers must never both find index.json
            # missing and the later one overwrite the first's tag.
            self._update_index(self._create_if_missing, "creating it")
            self._layout_ready = True

    def _write_file(self, digest: str, data: bytes) -> None:
        self._ensure_layout()
        path = self.blob_path(digest)
        if not path.exists():
            try:
                atomic_write(path, data, partial_path(self.root, digest))
            except OSError as exc:
                raise self._error(f"cannot write manifest {digest}", exc) from exc

    def _read_index(self) -> Entries:
        """``index.json``'s entries as they are now (re-read only when it changed)."""
        with self._cache_lock:
            self._refresh()
            return list(self._entries or [])

    def _lookup(self, ref_name: str) -> dict[str, Any] | None:
        with self._cache_lock:
            self._refresh()
            return self._refs.get(ref_name)

    def _refresh(self) -> None:
        """Bring the cache up to date with the file; the caller holds ``_cache_lock``.

        Both the file's stat and the lock file's update count must match: a replaced
        file may reuse an inode, size and (coarse) mtime. The count is read before the
        file, so a cache is never taken for newer than it is.
        """
        path = self.root / "index.json"
        generation = read_generation(self.root)
        try:
            current = stamp(os.stat(path))
            if (
                self._entries is not None
                and current == self._stamp
                and generation == self._generation
            ):
                return
            with open(path, "rb") as index:
                current = stamp(os.fstat(index.fileno()))
                raw = index.read()
        except FileNotFoundError:
            self._remember([], None)
            self._generation = generation
            return
        try:
            data = json.loads(raw)
            entries = list(data.get("manifests") or [])
        except (ValueError, AttributeError, TypeError, RecursionError) as exc:
            raise StorageError(f"{self.description}: {path} is not an image index: {exc}") from exc
        self._remember(entries, current)
        self._generation = generation

    def _remember(self, entries: Entries, current: Stamp | None) -> None:
        # Entries without a ref name (written by other tools) are kept, just not looked up.
        self._entries = entries
        self._refs = {name: e for e in entries if (name := _ref_name(e))}
        self._stamp = current

    def _update_index(self, change: Callable[[Entries], Entries | None], why: str) -> None:
        """Read-modify-write ``index.json`` under the layout's lock (None: no write);
        ``why`` says what for, in the StorageError of a failure."""
        try:
            self._update_index_locked(change)
        except OSError as exc:
            raise self._error(f"cannot write index.json ({why})", exc) from exc

    def _update_index_locked(self, change: Callable[[Entries], Entries | None]) -> None:
        with IndexLock(self.root) as lock, self._cache_lock:
            generation = lock.generation()
            if generation != self._generation:
                self._entries = None  # another writer may have been here: read it again
            self._refresh()
            self._generation = generation
            entries = change(list(self._entries or []))
            if entries is None:
                return
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
            written = atomic_write(self.root / "index.json", json.dumps(index, indent=2).encode())
            self._remember(entries, stamp(written))
            self._generation = lock.advance()

    def _create_if_missing(self, entries: Entries) -> Entries | None:
        # Called by _update_index after its _refresh: no stamp means no index.json.
        return [] if self._stamp is None else None

    def _set_ref(self, ref_name: str, entry: dict[str, Any]) -> None:
        self._ensure_layout()

        def change(entries: Entries) -> Entries:
            kept = [e for e in entries if _ref_name(e) != ref_name]
            return [*kept, entry]

        self._update_index(change, f"tagging {ref_name} as {entry['digest']}")

    def _drop_refs(self, repository: str, digest: str) -> int:
        if not (self.root / "index.json").exists():
            return 0  # nothing is tagged, and an untag creates no layout
        self._ensure_layout()
        removed = 0

        def change(entries: Entries) -> Entries | None:
            nonlocal removed
            kept = [
                e
                for e in entries
                if not (e.get("digest") == digest and _ref_name(e).startswith(f"{repository}:"))
            ]
            removed = len(entries) - len(kept)
            return kept if removed else None

        self._update_index(change, f"untagging {repository}@{digest}")
        return removed


def _ref_name_of(repository: str, tag: str) -> str:
    """``<repository>:<tag>`` for ``index.json``, both checked (InvalidNameError): no
    ``a/b``, ``..``, ``latest\n`` or 200-character tag is ever written into it."""
    return f"{check_repository(repository)}:{check_tag(tag)}"


def _ref_name(entry: dict[str, Any]) -> str:
    return str(entry.get("annotations", {}).get(REF_NAME, ""))


def _finish(raw: BinaryIO, ingest: Path, target: Path) -> None:
    raw.flush()
    os.fsync(raw.fileno())
    commit(ingest, target)  # still open: its lock tells cleaners the writer lives


def _discard(raw: BinaryIO, ingest: Path) -> None:
    close_and_discard(raw, ingest)  # only still there when the write failed

"""The mirror as one OCI image layout directory (image-spec ``image-layout.md``).

Every mirror repository shares the layout's ``blobs/`` (so a layer shared by
many repositories is stored once) and each tag is an ``index.json`` entry whose
``org.opencontainers.image.ref.name`` is ``<repository>:<tag>``; skopeo reads it
as ``oci:/path:<repository>:<tag>``.

Writes are crash-safe: a blob is written to ``ingest/``, fsynced, checked and
renamed into place; ``index.json`` is replaced atomically. A tag therefore never
names a manifest or blob that is not completely on disk.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import anyio

from mirrord._errors import NotFoundError, StorageError
from mirrord.oci import OCI_INDEX, Descriptor, Manifest, parse_manifest

REF_NAME = "org.opencontainers.image.ref.name"
_LAYOUT = {"imageLayoutVersion": "1.0.0"}


class OCILayoutDestination:
    """A mirror in the OCI layout at ``root`` (created on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.description = f"oci:{self.root}"
        self._index_lock = anyio.Lock()
        self._layout_lock = threading.Lock()
        self._layout_ready = False
        # index.json as last read or written: ref name -> entry. This object is the
        # layout's only writer while it lives (a run holds the state lock).
        self._entries: list[dict[str, Any]] | None = None
        self._refs: dict[str, dict[str, Any]] = {}

    def repository(self, path: str) -> str:
        return path.strip("/")

    def reference(self, repository: str, tag_or_digest: str) -> str:
        return f"oci:{self.root}:{repository}:{tag_or_digest}"

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hex_digest = digest.partition(":")
        return self.root / "blobs" / algorithm / hex_digest

    async def ping(self) -> None:
        await anyio.to_thread.run_sync(self._ensure_layout)

    async def list_tags(self, repository: str) -> list[str]:
        entries = await anyio.to_thread.run_sync(self._read_index)
        prefix = f"{repository}:"
        return [
            name[len(prefix) :]
            for entry in entries
            if (name := entry.get("annotations", {}).get(REF_NAME, "")).startswith(prefix)
        ]

    async def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        if reference.startswith("sha") and ":" in reference:
            path = self.blob_path(reference)
            if not path.exists():
                return None
            raw = await anyio.Path(path).read_bytes()
            return parse_manifest(raw, expected_digest=reference).descriptor()
        if self._entries is None:
            await anyio.to_thread.run_sync(self._read_index)
        entry = self._refs.get(f"{repository}:{reference}")
        return Descriptor.from_json(entry, "index.json") if entry else None

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        try:
            await self._put_manifest(repository, reference, manifest)
        except OSError as exc:
            raise StorageError(
                f"{self.description}: cannot store {manifest.digest}: {exc}"
            ) from exc

    async def _put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        await anyio.to_thread.run_sync(self._write_file, manifest.digest, manifest.raw)
        if reference.startswith("sha") and ":" in reference:
            return
        entry: dict[str, Any] = {
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.size,
            "annotations": {REF_NAME: f"{repository}:{reference}"},
        }
        if manifest.artifact_type and manifest.is_index:
            entry["artifactType"] = manifest.artifact_type
        async with self._index_lock:
            await anyio.to_thread.run_sync(self._set_ref, f"{repository}:{reference}", entry)

    async def delete_manifest(self, repository: str, digest: str) -> None:
        """Drop every tag of ``repository`` that names ``digest``; blobs stay for GC."""
        async with self._index_lock:
            removed = await anyio.to_thread.run_sync(self._drop_refs, repository, digest)
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
        ingest = self.root / "ingest" / f"{secrets.token_hex(8)}.partial"
        try:
            await anyio.to_thread.run_sync(self._ensure_layout)
            async with await anyio.open_file(ingest, "wb") as out:
                async for chunk in chunks:
                    await out.write(chunk)
                await out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
            target = self.blob_path(descriptor.digest)
            await anyio.to_thread.run_sync(_commit, ingest, target)
        except OSError as exc:
            raise StorageError(
                f"{self.description}: cannot store blob {descriptor.digest}: {exc}"
            ) from exc
        finally:
            ingest.unlink(missing_ok=True)

    async def aclose(self) -> None:
        return None

    # -- blocking helpers (run in a worker thread) ----------------------------------------

    def _ensure_layout(self) -> None:
        # Once per process, under a thread lock: two workers must never both find
        # index.json missing and the later one overwrite the first's tag.
        with self._layout_lock:
            if self._layout_ready:
                return
            for sub in ("blobs/sha256", "blobs/sha512", "ingest"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            # Partial files of a killed run (the run lock keeps two runs apart).
            for leftover in (self.root / "ingest").glob("*.partial"):
                leftover.unlink(missing_ok=True)
            if not (self.root / "oci-layout").exists():
                _atomic_write(self.root / "oci-layout", json.dumps(_LAYOUT).encode())
            if not (self.root / "index.json").exists():
                self._write_index([])
            self._layout_ready = True

    def _write_file(self, digest: str, data: bytes) -> None:
        self._ensure_layout()
        path = self.blob_path(digest)
        if not path.exists():
            _atomic_write(path, data)

    def _read_index(self) -> list[dict[str, Any]]:
        if self._entries is not None:
            return list(self._entries)
        try:
            data = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            data = {}
        self._remember(list(data.get("manifests") or []))
        return list(self._entries or [])

    def _remember(self, entries: list[dict[str, Any]]) -> None:
        # Entries without a ref name (written by other tools) are kept, just not looked up.
        self._entries = entries
        self._refs = {name: e for e in entries if (name := _ref_name(e))}

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        _atomic_write(self.root / "index.json", json.dumps(index, indent=2).encode())
        self._remember(entries)

    def _set_ref(self, ref_name: str, entry: dict[str, Any]) -> None:
        entries = [
            e for e in self._read_index() if e.get("annotations", {}).get(REF_NAME) != ref_name
        ]
        entries.append(entry)
        self._write_index(entries)

    def _drop_refs(self, repository: str, digest: str) -> int:
        entries = self._read_index()
        kept = [
            e
            for e in entries
            if not (
                e.get("digest") == digest
                and e.get("annotations", {}).get(REF_NAME, "").startswith(f"{repository}:")
            )
        ]
        if len(kept) != len(entries):
            self._write_index(kept)
        return len(entries) - len(kept)


def _ref_name(entry: dict[str, Any]) -> str:
    return str(entry.get("annotations", {}).get(REF_NAME, ""))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    _commit(tmp, path)


def _commit(written: Path, target: Path) -> None:
    """Rename a fully written, fsynced file into place, durably (fsync the directory)."""
    os.replace(written, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

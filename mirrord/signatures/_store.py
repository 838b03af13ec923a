"""The mirror's own lookaside directory: ``<root>/<repository>@sha256=<hex>/signature-N``.

Signatures are kept byte for byte. :meth:`LookasideDir.add` never overwrites and never
renumbers: it appends the signatures whose bytes are not there yet after the last one, so
repeating a sync writes nothing and clients (which stop at the first missing number) see
every signature. Each file appears atomically (written to a temporary name, fsynced, then
hard-linked to its final name, which fails rather than replace a file another writer
created first). Paths are built from validated names only (see :mod:`._layout`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import anyio.to_thread

from mirrord.errors import StorageError

from ._files import FileProblem, read_bounded
from ._layout import signature_dir, signature_name
from ._lookaside import MAX_SIGNATURE_SIZE, MAX_SIGNATURES


class LookasideDir:
    """The lookaside directory at ``root`` (created on first write, mode 0755)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def directory(self, repository: str, digest: str) -> Path:
        """Where the signatures of ``repository@digest`` live (validated names)."""
        path = self.root / signature_dir(repository, digest)
        # Belt and braces: validated names cannot climb out, but say so if they ever did.
        if os.path.commonpath([self.root.absolute(), path.absolute()]) != str(self.root.absolute()):
            raise StorageError(f"{path} is outside the lookaside directory {self.root}")
        return path

    async def read(self, repository: str, digest: str) -> list[bytes]:
        """The stored signatures, ``signature-1`` onwards until the first missing one."""
        return await anyio.to_thread.run_sync(self._read, self.directory(repository, digest))

    async def add(self, repository: str, digest: str, signatures: Sequence[bytes]) -> int:
        """Store the ``signatures`` not already present (by content); returns how many new
        files were written. Raises :class:`StorageError` if the directory cannot be written."""
        where = self.directory(repository, digest)
        return await anyio.to_thread.run_sync(self._add, where, list(signatures))

    def _read(self, where: Path) -> list[bytes]:
        out: list[bytes] = []
        for index in range(1, MAX_SIGNATURES + 1):
            try:
                out.append(read_bounded(str(where / signature_name(index)), MAX_SIGNATURE_SIZE))
            except FileProblem as exc:
                if exc.missing:
                    return out
                raise StorageError(f"lookaside directory: {exc}") from None
        return out

    def _add(self, where: Path, signatures: list[bytes]) -> int:
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {where}: {exc.strerror}") from None
        written = 0
        for blob in signatures:
            while True:  # another writer may take the number we picked: re-read and retry
                existing = self._read(where)
                if _sha(blob) in {_sha(b) for b in existing}:
                    break
                if len(existing) >= MAX_SIGNATURES:
                    raise StorageError(f"{where}: already {MAX_SIGNATURES} signatures")
                if self._create(where, len(existing) + 1, blob):
                    written += 1
                    break
        if written:
            _fsync_dir(where)
        return written

    @staticmethod
    def _create(where: Path, index: int, blob: bytes) -> bool:
        """Create ``signature-<index>`` holding ``blob``; False if it appeared meanwhile."""
        final = where / signature_name(index)
        tmp = where / f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                _write_all(fd, blob)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
            return True
        except OSError as exc:
            raise StorageError(f"cannot write {final}: {exc.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Bounded reads of small local files: policy files, keys, lookaside signatures.

Every read opens the file once (``O_NONBLOCK`` so a FIFO cannot hang us), checks on the open
descriptor that it is a regular file, and refuses more than ``limit`` bytes. Callers turn the
:class:`FileProblem` into the error their context needs (a ``ConfigError`` for the policy, a
``LookasideError`` for signatures).
"""

from __future__ import annotations

import errno
import os
import stat

MiB = 1024 * 1024


class FileProblem(Exception):
    """Why a file could not be read. ``missing``: it does not exist; ``permanent``: it is
    not a regular file or too large (retrying cannot help, unlike an I/O error)."""

    def __init__(self, message: str, *, missing: bool = False, permanent: bool = False) -> None:
        super().__init__(message)
        self.missing = missing
        self.permanent = permanent


def read_bounded(path: str, limit: int) -> bytes:
    """The whole content of the regular file ``path``, at most ``limit`` bytes.

    Raises :class:`FileProblem` (``missing=True`` for ENOENT/ENOTDIR) for anything else:
    not a regular file, larger than ``limit``, unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        missing = exc.errno in (errno.ENOENT, errno.ENOTDIR)
        raise FileProblem(f"cannot open {path}: {exc.strerror}", missing=missing) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(f"{path} is not a regular file", permanent=True)
        if info.st_size > limit:
            raise FileProblem(f"{path} is larger than {_size(limit)} ({info.st_size} bytes)",
                              permanent=True)
        chunks: list[bytes] = []
        total = 0
        while True:  # the size may change under us: count what we actually read
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise FileProblem(f"{path} is larger than {_size(limit)}", permanent=True)
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise FileProblem(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit % MiB == 0 else f"{limit} bytes"

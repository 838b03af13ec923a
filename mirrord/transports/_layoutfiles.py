"""The files of an OCI layout that many writers share (blocking; run in worker threads).

Streams of one daemon, and separate ``mirrord`` processes, may write one layout
at once. So:

- a file being written is named after its writer (``<hex>.<pid>.<random>.partial``
  in ``ingest/``, ``.index.json.<pid>.<random>.tmp`` beside its target) and held
  under an exclusive ``flock`` until it is renamed into place or removed;
- a leftover is removed only when nobody holds its lock (a lock dies with its
  process, even on SIGKILL; it also covers a writer in another pid namespace) and
  either its pid is not alive here or it has not been touched for a minute (the pid
  may be reused: a restarted container's mirrord is pid 1 again). The minute covers
  the instant between creating a file and locking it;
- every read-modify-write of ``index.json`` holds :class:`IndexLock`, an exclusive
  ``flock`` on ``.mirrord-index.lock`` in the layout (not part of the OCI spec; other
  tools ignore it). The lock file also counts the writes made under it, so a writer
  knows whether its cached copy of ``index.json`` is still the current one.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import stat
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

log = logging.getLogger("mirrord.oci")

LOCK_NAME = ".mirrord-index.lock"
INGEST = "ingest"
# An unlocked file this fresh may be one its writer has just created, not yet locked.
FRESH_SECONDS = 60.0
# Leftovers of older versions carry no pid (nor lock): removed once untouched this long.
UNNAMED_STALE_SECONDS = 3600.0
_HEX = re.compile(r"[0-9a-f]{1,128}")
_TEMP = re.compile(r"\.(?:index\.json|oci-layout)\.(?:[0-9]+\.)?[0-9a-f]+\.tmp")

Stamp = tuple[int, int, int, int, int]


def stamp(st: os.stat_result) -> Stamp:
    """What tells one version of a file from another (``os.replace`` makes a new inode)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _writer() -> str:
    return f"{os.getpid()}.{secrets.token_hex(4)}"


def partial_path(root: Path, digest: str) -> Path:
    """A new, unique name in ``root/ingest`` for ``digest`` being written by this process."""
    hex_digest = digest.partition(":")[2]
    label = hex_digest if _HEX.fullmatch(hex_digest) else "blob"
    return root / INGEST / f"{label}.{_writer()}.partial"


def temp_path(target: Path) -> Path:
    """A new, unique name beside ``target`` for its next version."""
    return target.with_name(f".{target.name}.{_writer()}.tmp")


def create_locked(path: Path) -> BinaryIO:
    """Create ``path`` (never an existing file) and hold its lock while it is open."""
    out = open(path, "xb")  # noqa: SIM115 - the caller closes it after the rename
    try:
        fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        out.close()
        path.unlink(missing_ok=True)
        raise
    return out


def commit(written: Path, target: Path) -> None:
    """Rename a fully written, fsynced file into place, durably (fsync the directory)."""
    os.replace(written, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_write(target: Path, data: bytes, temp: Path | None = None) -> os.stat_result:
    """Replace ``target`` with ``data`` (written at ``temp``); the new file's stat.

    When anything fails (a full disk fails the write, the flush, the fsync, and the
    ``close()`` that flushes again), ``temp`` is removed and ``target`` is untouched.
    """
    temp = temp or temp_path(target)
    out = create_locked(temp)
    try:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
        commit(temp, target)
        return os.fstat(out.fileno())
    finally:
        close_and_discard(out, temp)


def close_and_discard(out: BinaryIO, path: Path) -> None:
    """Close ``out`` and remove ``path`` if it is still there (a write that failed; one
    renamed into place is not there any more). Never raises for the close: when it
    fails, the write before it failed too (a full disk fails the close's flush again)
    and that error is the one on its way; a file already renamed was flushed and
    fsynced, so nothing of it is lost."""
    try:
        out.close()
    except OSError as exc:
        log.debug("%s: closing after a failed write: %s", path, exc)
    path.unlink(missing_ok=True)


def writer_pid(name: str) -> int | None:
    """The pid in a partial or temporary file's name (None: an older version's name)."""
    parts = name.split(".")
    if len(parts) >= 4 and parts[-3].isdigit():
        return int(parts[-3])
    return None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def leftovers(root: Path) -> list[Path]:
    """The partial and temporary files in the layout, of live writers or not."""
    found: list[Path] = []
    for directory, matches in (
        (root / INGEST, lambda name: name.endswith(".partial")),
        (root, _TEMP.fullmatch),
    ):
        try:
            with os.scandir(directory) as entries:
                found.extend(Path(e.path) for e in entries if matches(e.name))
        except FileNotFoundError:
            continue
    return found


def remove_dead_leftovers(root: Path) -> list[Path]:
    """Remove the leftovers whose writer is gone; the paths removed."""
    now = time.time()
    removed: list[Path] = []
    for path in leftovers(root):
        pid = writer_pid(path.name)
        if pid is None:
            stale = _untouched_since(path, now - UNNAMED_STALE_SECONDS)
        else:
            stale = not pid_alive(pid) or _untouched_since(path, now - FRESH_SECONDS)
        if stale and _remove_unless_locked(path):
            removed.append(path)
    return removed


def _untouched_since(path: Path, when: float) -> bool:
    try:
        return path.stat().st_mtime < when
    except FileNotFoundError:
        return False


def _remove_unless_locked(path: Path) -> bool:
    try:
        # Opened for writing: an exclusive flock needs it on NFS.
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("%s: left in place, cannot check its writer: %s", path, exc)
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its writer lives
        except OSError as exc:  # a filesystem without flock: never guess
            log.warning("%s: left in place, cannot lock it: %s", path, exc)
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def read_small_file(path: Path, limit: int) -> bytes:
    """A regular file's bytes, at most ``limit`` of them (OSError otherwise): a blob
    path that is a FIFO, a device or larger than a manifest may be is never read whole."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen: a directory fails it
        os.close(fd)
        raise OSError(errno.EINVAL, f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"{path} is larger than the {limit} bytes a manifest may be")
    return data


def check_writable(root: Path) -> None:
    """Raise OSError unless the layout at ``root`` could be written (or created) there.

    Creates and changes nothing.
    """
    existing = next((p for p in (root, *root.parents) if os.path.lexists(p)), Path("."))
    if existing != root:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        _require_access(existing)
        return
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    for directory in (root, root / "blobs" / "sha256", root / INGEST):
        if directory.exists():
            _require_access(directory)


def _require_access(directory: Path) -> None:
    """Writable, and on a filesystem where ``flock`` works (writers depend on it)."""
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{directory} is not writable")
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # someone holds an exclusive lock on it: locks work
    except OSError as exc:
        raise OSError(exc.errno, f"{directory}: file locks (flock) do not work there") from exc
    finally:
        os.close(fd)  # releases the shared lock


def _parse_generation(raw: bytes) -> int:
    raw = raw.strip()
    return int(raw) if raw.isdigit() else 0


def read_generation(root: Path) -> int | None:
    """How many index updates the layout's lock file counts (None: no lock file yet).

    Read without taking the lock: a reader compares it with its cache's."""
    try:
        fd = os.open(root / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return _parse_generation(os.pread(fd, 32, 0))
    finally:
        os.close(fd)


class IndexLock:
    """An exclusive ``flock`` on the layout's lock file, for one ``index.json`` update."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_NAME
        self._fd = -1

    def __enter__(self) -> IndexLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fd, self._fd = self._fd, -1
        os.close(fd)  # releases the lock

    def generation(self) -> int:
        """How many updates were made under this lock (0 for a new lock file)."""
        return _parse_generation(os.pread(self._fd, 32, 0))

    def advance(self) -> int:
        """Count one more update; the new generation."""
        generation = self.generation() + 1
        os.pwrite(self._fd, f"{generation:020d}\n".encode(), 0)
        return generation

"""Write the generated files into a directory: atomically, and only what changed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mirrord.cluster._documents import FILE_NAMES
from mirrord.errors import ClusterResourcesError

CLUSTER_RESOURCES_DIR = "cluster-resources"  # under the state directory
FILE_MODE = 0o644  # no secret in them; an `oc apply` hook may run as another user


@dataclass(frozen=True)
class Change:
    """One file that differs from what the directory holds: ``written`` or ``removed``."""

    name: str
    action: str


def plan_changes(
    files: Mapping[str, str], directory: Path, *, known: Iterable[str] = FILE_NAMES
) -> list[Change]:
    """What :func:`write_files` would do, without doing it (``--dry-run``).

    A ``known`` file absent from ``files`` (nothing to describe any more) is removed;
    other files in the directory are never touched.
    """
    changes = [Change(n, "written") for n, text in files.items() if _differs(directory / n, text)]
    for name in known:
        if name not in files and (directory / name).is_file():
            changes.append(Change(name, "removed"))
    return changes


def write_files(
    files: Mapping[str, str], directory: Path, *, known: Iterable[str] = FILE_NAMES
) -> list[Change]:
    """Bring ``directory`` to ``files`` (relative name → text); the changes made.

    Each file is replaced by rename from a temporary file beside it, so a reader sees
    the old or the new content, never a part; an unchanged file is not rewritten (its
    mtime stays, a watcher sees nothing). Blocking: call it in a worker thread.
    Raises ClusterResourcesError naming the file when the directory cannot be written.
    """
    changes = plan_changes(files, directory, known=known)
    touched: set[Path] = set()
    path = directory
    try:
        for change in changes:
            path = directory / change.name
            if change.action == "removed":
                path.unlink(missing_ok=True)
            else:
                _replace(path, files[change.name])
            touched.add(path.parent)
        for path in touched:
            _fsync_directory(path)
    except OSError as error:
        raise ClusterResourcesError(f"cannot write {path}: {error.strerror or error}") from None
    return changes


def _differs(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() != text.encode()
    except FileNotFoundError:
        return True
    except OSError as error:
        raise ClusterResourcesError(f"cannot read {path}: {error.strerror or error}") from None


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(text.encode())
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _fsync_directory(directory: Path) -> None:
    """Make the renames durable (a crash after a sync keeps the new files)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

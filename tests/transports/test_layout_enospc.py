"""A full disk under an OCI layout: no temp file is left, the message names what could not
be written (a blob, a manifest, index.json), and what was there stays as it was.

Injected failures (a file whose writes, flush and close all fail with ENOSPC, as a full
disk makes them) run everywhere; a real full tmpfs runs where mounting one is permitted
(root, outside a restricted container) and skips cleanly elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from harness.images import Blob, build_image

from mirrord.core.oci import Descriptor, Digester, parse_manifest
from mirrord.errors import StorageError
from mirrord.transports import OCILayoutDestination, _layoutfiles
from mirrord.transports._layoutfiles import leftovers

pytestmark = pytest.mark.anyio

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def chunks(blob: Blob) -> AsyncIterator[bytes]:
    digester = Digester(blob.digest, blob.size)
    for start in range(0, blob.size, 4096):
        piece = blob.data[start : start + 4096]
        digester.update(piece)
        yield piece
    digester.verify()


def descriptor(blob: Blob) -> Descriptor:
    return Descriptor(blob.media_type, blob.digest, blob.size)


class FullDisk:
    """A file object over a real file whose write, flush and close fail with ENOSPC once
    `room` bytes are written (close() fails too, as a BufferedWriter's does when its
    flush fails, but still closes the descriptor)."""

    def __init__(self, real: BinaryIO, room: int) -> None:
        self._real = real
        self._room = room

    def fileno(self) -> int:
        return self._real.fileno()

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            raise ENOSPC
        self._room -= len(data)
        return self._real.write(data)

    def flush(self) -> None:
        if self._room <= 0:
            raise ENOSPC
        self._real.flush()

    def close(self) -> None:
        self._real.close()
        if self._room <= 0:
            raise ENOSPC


def fill_disk_for(monkeypatch: pytest.MonkeyPatch, name_part: str, room: int = 0) -> list[str]:
    """Files created by the layout whose name contains `name_part` get a full disk."""
    created: list[str] = []
    real_open = open

    def fake_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(path, mode, *args, **kwargs)
        if "x" in mode and name_part in os.fspath(path):
            created.append(os.fspath(path))
            return FullDisk(handle, room)
        return handle

    monkeypatch.setattr(_layoutfiles, "open", fake_open, raising=False)
    return created


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.suffix in (".tmp", ".partial")]


async def tagged_layout(tmp_path: Path) -> tuple[OCILayoutDestination, Any]:
    layout = OCILayoutDestination(tmp_path / "oci")
    image = build_image("app", "v1", seed="enospc", layer_sizes=(20_000,))
    for blob in image.blobs:
        await layout.write_blob("app", descriptor(blob), chunks(blob))
    await layout.put_manifest("app", "v1", parse_manifest(image.raw, image.media_type))
    return layout, image


async def test_a_blob_that_does_not_fit_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, _ = await tagged_layout(tmp_path)
    blob = build_image("app", "v2", seed="big", layer_sizes=(100_000,)).layers[0]
    created = fill_disk_for(monkeypatch, ".partial", room=30_000)
    with pytest.raises(StorageError) as caught:
        await layout.write_blob("app", descriptor(blob), chunks(blob))
    assert created, "the failure was not injected"
    assert f"cannot store blob {blob.digest}: No space left on device" in str(caught.value)
    assert temp_files(layout.root) == [] and leftovers(layout.root) == []
    assert not layout.blob_path(blob.digest).exists()


async def test_a_manifest_that_does_not_fit_is_named_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, old = await tagged_layout(tmp_path)
    index_before = (layout.root / "index.json").read_bytes()
    new = build_image("app", "v1", seed="enospc-2", layer_sizes=(1000,))
    for blob in new.blobs:
        await layout.write_blob("app", descriptor(blob), chunks(blob))
    created = fill_disk_for(monkeypatch, ".partial")
    with pytest.raises(StorageError) as caught:
        await layout.put_manifest("app", "v1", parse_manifest(new.raw, new.media_type))
    assert created
    assert f"cannot write manifest {new.digest}: No space left on device" in str(caught.value)
    assert temp_files(layout.root) == []
    assert (layout.root / "index.json").read_bytes() == index_before  # v1 still names old
    assert (await layout.head_manifest("app", "v1")).digest == old.digest  # type: ignore[union-attr]


async def test_index_json_that_does_not_fit_is_named_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, _ = await tagged_layout(tmp_path)
    index_before = (layout.root / "index.json").read_bytes()
    new = build_image("app", "v2", seed="enospc-3", layer_sizes=(1000,))
    for blob in new.blobs:
        await layout.write_blob("app", descriptor(blob), chunks(blob))
    created = fill_disk_for(monkeypatch, ".index.json.")
    with pytest.raises(StorageError) as caught:
        await layout.put_manifest("app", "v2", parse_manifest(new.raw, new.media_type))
    assert created
    message = str(caught.value)
    assert f"cannot write index.json (tagging app:v2 as {new.digest})" in message
    assert "No space left on device" in message and "cannot store manifest" not in message
    assert temp_files(layout.root) == []
    assert (layout.root / "index.json").read_bytes() == index_before
    assert await layout.head_manifest("app", "v2") is None


async def test_a_failing_fsync_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some filesystems report ENOSPC (or EIO) only at fsync."""
    layout, _ = await tagged_layout(tmp_path)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if ".index.json." in os.readlink(f"/proc/self/fd/{fd}"):
            raise ENOSPC
        real_fsync(fd)

    monkeypatch.setattr(_layoutfiles.os, "fsync", fsync)
    new = build_image("app", "v3", seed="enospc-4", layer_sizes=(1000,))
    for blob in new.blobs:
        await layout.write_blob("app", descriptor(blob), chunks(blob))
    with pytest.raises(StorageError, match=r"cannot write index\.json"):
        await layout.put_manifest("app", "v3", parse_manifest(new.raw, new.media_type))
    assert temp_files(layout.root) == []


# -- a real full filesystem (where mounting is permitted) ---------------------------------


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    ) if os.geteuid() == 0 else None
    if mounted is None or mounted.returncode != 0:
        why = mounted.stderr.strip() if mounted else "not root"
        pytest.skip(f"cannot mount a tmpfs here: {why}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_a_really_full_disk_leaves_no_temp_file_and_keeps_the_tag(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "disk", "512k") as disk:
        layout = OCILayoutDestination(disk / "oci")
        image = build_image("app", "v1", seed="tmpfs", layer_sizes=(50_000,))
        for blob in image.blobs:
            await layout.write_blob("app", descriptor(blob), chunks(blob))
        await layout.put_manifest("app", "v1", parse_manifest(image.raw, image.media_type))
        index_before = (layout.root / "index.json").read_bytes()

        big = build_image("app", "v2", seed="tmpfs-big", layer_sizes=(1 << 20,))
        with pytest.raises(StorageError, match="No space left on device") as caught:
            await layout.write_blob("app", descriptor(big.layers[0]), chunks(big.layers[0]))
        assert f"cannot store blob {big.layers[0].digest}" in str(caught.value)
        assert temp_files(layout.root) == []

        filler = disk / "filler"  # the rest of the disk, to the last block
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as out:
            while True:
                out.write(b"\0" * 4096)
        small = build_image("app", "v1", seed="tmpfs-small", layer_sizes=(100,))
        with pytest.raises(StorageError, match="No space left on device"):
            for blob in small.blobs:
                await layout.write_blob("app", descriptor(blob), chunks(blob))
            await layout.put_manifest("app", "v1", parse_manifest(small.raw, small.media_type))
        assert temp_files(layout.root) == []
        assert (layout.root / "index.json").read_bytes() == index_before
        assert (await layout.head_manifest("app", "v1")).digest == image.digest  # type: ignore[union-attr]

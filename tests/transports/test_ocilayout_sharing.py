"""One OCI layout, many writers: destination objects, threads and processes.

The daemon gives each run its own destination object, and two ``mirrord``
processes may share a layout: no tag may be lost, no live writer's file removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from harness.images import build_image

from mirrord.core.oci import Descriptor, Manifest, parse_manifest
from mirrord.errors import StorageError
from mirrord.transports import OCILayoutDestination, _ocilayout
from mirrord.transports._layoutfiles import FRESH_SECONDS, LOCK_NAME, UNNAMED_STALE_SECONDS

pytestmark = pytest.mark.anyio

# A child process that writes tags through its own destination object.
WRITER = textwrap.dedent(
    """
    import sys, anyio
    from pathlib import Path
    from mirrord.core.oci import parse_manifest
    from mirrord.transports import OCILayoutDestination

    root, manifest_file, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    manifest = parse_manifest(manifest_file.read_bytes())

    async def main() -> None:
        layout = OCILayoutDestination(root)
        await layout.put_manifest("child", "warm-up", manifest)
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(count):
            await layout.put_manifest("child", f"c{i}", manifest)

    anyio.run(main)
    """
)

# A child process that holds a file in ingest/ open as a writer does, until killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mirrord.transports._layoutfiles import create_locked, partial_path

    root = Path(sys.argv[1])
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else partial_path(root, "sha256:ab")
    out = create_locked(target)
    out.write(b"half")
    out.flush()
    print(target, flush=True)
    time.sleep(600)
    """
)



@pytest.fixture
def manifest() -> Manifest:
    image = build_image("app", "v1", seed="shared")
    return parse_manifest(image.raw, image.media_type)


def ref_names(root: Path) -> list[str]:
    index = json.loads((root / "index.json").read_bytes())
    return sorted(e["annotations"][_ocilayout.REF_NAME] for e in index["manifests"])


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)


def start_holder(
    spawn: list[subprocess.Popen[str]], root: Path, target: Path | None = None
) -> tuple[subprocess.Popen[str], Path]:
    args = [sys.executable, "-c", HOLDER, str(root), *([str(target)] if target else [])]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    spawn.append(child)
    assert child.stdout is not None
    return child, Path(child.stdout.readline().strip())


async def test_tags_written_at_once_through_many_objects_are_all_kept(
    tmp_path: Path, manifest: Manifest
) -> None:
    root = tmp_path / "oci"
    layouts = [OCILayoutDestination(root) for _ in range(4)]
    for number, layout in enumerate(layouts):  # every object has read index.json
        await layout.put_manifest("warm", f"w{number}", manifest)

    async def write(layout: OCILayoutDestination, tags: range) -> None:
        for i in tags:
            await layout.put_manifest(f"repo{i % 3}", f"t{i}", manifest)

    async with anyio.create_task_group() as tg:
        for number, layout in enumerate(layouts):
            tg.start_soon(write, layout, range(number * 5, number * 5 + 5))

    expected = sorted([f"warm:w{n}" for n in range(4)] + [f"repo{i % 3}:t{i}" for i in range(20)])
    assert ref_names(root) == expected
    for layout in layouts:  # and every object sees the others' tags
        assert sorted(await layout.list_tags("repo0")) == sorted(f"t{i}" for i in range(0, 20, 3))
        found = await layout.head_manifest("repo1", "t19")
        assert found is not None and found.digest == manifest.digest


async def test_two_processes_writing_tags_keep_each_others(
    tmp_path: Path, manifest: Manifest, spawn: list[subprocess.Popen[str]]
) -> None:
    root = tmp_path / "oci"
    layout = OCILayoutDestination(root)
    await layout.put_manifest("parent", "warm-up", manifest)  # cached before the child writes
    (tmp_path / "manifest.json").write_bytes(manifest.raw)
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(tmp_path / "manifest.json"), "25"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    spawn.append(child)
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "ready"
    child.stdin.write("go\n")
    child.stdin.flush()
    for i in range(25):
        await layout.put_manifest("parent", f"p{i}", manifest)
    assert await anyio.to_thread.run_sync(lambda: child.wait(timeout=60)) == 0

    await layout.put_manifest("parent", "last", manifest)
    expected = [f"child:c{i}" for i in range(25)] + [f"parent:p{i}" for i in range(25)]
    assert ref_names(root) == sorted([*expected, "child:warm-up", "parent:warm-up", "parent:last"])
    assert len(await layout.list_tags("child")) == 26


async def test_an_index_json_replaced_by_another_tool_is_read_again(
    tmp_path: Path, manifest: Manifest
) -> None:
    root = tmp_path / "oci"
    layout = OCILayoutDestination(root)
    await layout.put_manifest("a", "v1", manifest)
    index = json.loads((root / "index.json").read_bytes())
    foreign = {
        "mediaType": manifest.media_type,
        "digest": manifest.digest,
        "size": manifest.size,
        "annotations": {_ocilayout.REF_NAME: "b:v9"},
    }
    index["manifests"].append(foreign)
    (root / "other.json").write_text(json.dumps(index))
    os.replace(root / "other.json", root / "index.json")  # without mirrord's lock
    assert await layout.list_tags("b") == ["v9"]
    await layout.put_manifest("a", "v2", manifest)
    assert ref_names(root) == ["a:v1", "a:v2", "b:v9"]


async def test_tag_writes_reparse_index_json_only_after_another_writer(
    tmp_path: Path, manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "oci"
    layout, other = OCILayoutDestination(root), OCILayoutDestination(root)
    await layout.put_manifest("a", "v0", manifest)
    parsed: list[int] = []
    real_loads = json.loads
    monkeypatch.setattr(_ocilayout.json, "loads", lambda raw: parsed.append(1) or real_loads(raw))
    for i in range(1, 11):
        await layout.put_manifest("a", f"v{i}", manifest)
        assert await layout.head_manifest("a", f"v{i}") is not None
    assert parsed == []
    await other.put_manifest("b", "v1", manifest)  # reads it once
    await layout.put_manifest("a", "v11", manifest)  # and so does this one, once
    assert len(parsed) == 2
    assert len(ref_names(root)) == 13


async def test_a_new_object_leaves_a_running_copy_alone(
    tmp_path: Path, manifest: Manifest
) -> None:
    """The QA report: /readyz or a dry run during a copy removed its partial file."""
    root = tmp_path / "oci"
    blob = b"x" * 5000
    descriptor = Descriptor("application/octet-stream", _sha256(blob), len(blob))
    halfway = anyio.Event()
    resume = anyio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield blob[:1000]
        halfway.set()
        await resume.wait()
        yield blob[1000:]

    async def copy() -> None:
        await OCILayoutDestination(root).write_blob("a", descriptor, chunks())

    async with anyio.create_task_group() as tg:
        tg.start_soon(copy)
        await halfway.wait()
        [partial] = (root / "ingest").iterdir()
        await OCILayoutDestination(root).ping()
        await OCILayoutDestination(root).put_manifest("b", "v1", manifest)  # a first write
        assert partial.exists()
        assert partial.name.split(".")[1] == str(os.getpid())
        resume.set()
    assert (root / "blobs" / "sha256" / descriptor.digest[7:]).read_bytes() == blob
    assert list((root / "ingest").iterdir()) == []


async def test_only_the_leftovers_of_dead_writers_are_removed(
    tmp_path: Path, manifest: Manifest, spawn: list[subprocess.Popen[str]]
) -> None:
    root = tmp_path / "oci"
    await OCILayoutDestination(root).put_manifest("a", "v0", manifest)
    gone = dead_pid()
    mine = root / "ingest" / f"ab.{os.getpid()}.0a1b2c3d.partial"
    dead = root / "ingest" / f"cd.{gone}.0a1b2c3d.partial"
    dead_temp = root / f".index.json.{gone}.0a1b2c3d.tmp"
    old_unnamed = root / ".index.json.0a1b2c3d.tmp"  # an older version's name: no pid
    new_unnamed = root / "ingest" / "0a1b2c3d4e5f6a7b.partial"
    # a live pid but no lock for minutes: a crashed writer whose pid was reused (pid 1 in
    # a restarted container)
    reused = root / "ingest" / f"12.{os.getpid()}.0a1b2c3d.partial"
    for path in (mine, dead, dead_temp, old_unnamed, new_unnamed, reused):
        path.write_bytes(b"half")
    long_ago = time.time() - UNNAMED_STALE_SECONDS - 60
    os.utime(old_unnamed, (long_ago, long_ago))
    minutes_ago = time.time() - FRESH_SECONDS - 5
    os.utime(reused, (minutes_ago, minutes_ago))
    holder, held = start_holder(spawn, root)  # a live writer in another process
    # A live writer whose pid is not ours to see (another pid namespace): its lock tells.
    _, locked = start_holder(spawn, root, root / "ingest" / f"ef.{dead_pid()}.0a1b2c3d.partial")

    await OCILayoutDestination(root).ping()
    assert all(p.exists() for p in (mine, dead, dead_temp, old_unnamed, held, locked, reused))
    await OCILayoutDestination(root).put_manifest("a", "v1", manifest)
    assert not any(p.exists() for p in (dead, dead_temp, old_unnamed, reused))
    assert all(p.exists() for p in (mine, new_unnamed, held, locked))

    holder.send_signal(signal.SIGKILL)  # killed mid-write: its file stays behind
    holder.wait(timeout=30)
    assert held.exists()
    await OCILayoutDestination(root).put_manifest("a", "v2", manifest)
    assert not held.exists() and locked.exists() and mine.exists()
    assert ref_names(root) == ["a:v0", "a:v1", "a:v2"]


async def test_ping_on_a_missing_layout_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "state" / "mirror"
    await OCILayoutDestination(root).ping()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="is not a directory"):
        await OCILayoutDestination(tmp_path / "file" / "mirror").ping()
    with pytest.raises(StorageError, match="is not a directory"):
        await OCILayoutDestination(tmp_path / "file").ping()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
async def test_ping_names_a_layout_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(StorageError, match="is not writable"):
        await OCILayoutDestination(tmp_path / "ro" / "mirror").ping()


async def test_the_lock_file_counts_updates_and_is_left_alone_by_readers(
    tmp_path: Path, manifest: Manifest
) -> None:
    root = tmp_path / "oci"
    layout = OCILayoutDestination(root)
    await layout.put_manifest("a", "v1", manifest)
    await layout.put_manifest("a", "v2", manifest)
    assert int((root / LOCK_NAME).read_text()) == 3  # the empty index, then two tags
    await OCILayoutDestination(root).list_tags("a")
    assert int((root / LOCK_NAME).read_text()) == 3


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_ping_names_a_filesystem_without_file_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers depend on flock; a filesystem without it (some NFS setups) is refused at
    the readiness check, not at the first write. No such filesystem here: flock is made
    to fail as it does there."""
    import errno

    from mirrord.transports import _layoutfiles

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(_layoutfiles.fcntl, "flock", no_locks)
    with pytest.raises(StorageError, match=r"file locks \(flock\) do not work"):
        await OCILayoutDestination(tmp_path / "oci").ping()

"""The SQLite state store: schema, rules in transactions, crash safety, the run lock."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mirrord._errors import LockedError, StateError
from mirrord.imagestream import IMPORT_SUCCESS, StreamSpec, to_openshift
from mirrord.state import ReceiverStatus, RunLock, SQLiteStore, _migrations, open_store
from mirrord.state._migrations import SCHEMA_VERSION

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SRC = "registry.redhat.io/ubi9/ubi"
MIRROR = "127.0.0.1:5000/mirror/ubi9/ubi"
SPEC = StreamSpec("ubi9/ubi", SRC, MIRROR)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = open_store(tmp_path / "state")
    yield s
    s.close()


def raw(state_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(state_dir / "state.db")


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        text=True,
    )


# -- opening and migrating -------------------------------------------------------------


def test_open_creates_wal_database_with_current_schema(store: SQLiteStore) -> None:
    assert store.path == store.state_dir / "state.db"
    with raw(store.state_dir) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    pragmas = store._call(
        lambda c: [c.execute(f"PRAGMA {p}").fetchone()[0] for p in ("synchronous", "foreign_keys")]
    )
    assert pragmas == [1, 1]  # NORMAL, ON


@pytest.mark.anyio
async def test_reopen_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    first = open_store(tmp_path)
    await first.upsert_stream(SPEC, now=T0)
    await first.record_tag_import("ubi9/ubi", "9.4", digest(1), f"{SRC}@{digest(1)}", now=T0)
    first.close()
    with raw(tmp_path) as conn:
        schema = conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    for _ in range(2):
        again = open_store(tmp_path)
        tag = await again.get_tag("ubi9/ubi", "9.4")
        assert tag is not None
        assert tag.items[0].image == digest(1)
        again.close()
    with raw(tmp_path) as conn:
        assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_concurrent_first_open_migrates_once(tmp_path: Path) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    stores: list[SQLiteStore] = []

    def opener() -> None:
        barrier.wait()
        try:
            stores.append(open_store(tmp_path))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == []
    assert len(stores) == 4


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    with raw(tmp_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match="schema version 99 is newer"):
        open_store(tmp_path)


def test_failed_migration_rolls_back_whole_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (*_migrations.MIGRATIONS[0], "CREATE TABLE half_done (")
    monkeypatch.setattr(_migrations, "MIGRATIONS", (broken,))
    with pytest.raises(StateError, match="cannot open state database"):
        open_store(tmp_path)
    with raw(tmp_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    monkeypatch.undo()
    open_store(tmp_path).close()
    with raw(tmp_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def make_version_1_database(state_dir: Path) -> None:
    """A database as the first mirrord release left it: schema version 1 with rows."""
    conn = raw(state_dir)
    try:
        for statement in _migrations.MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        with conn:
            conn.execute(
                "INSERT INTO image_streams (id, name, source, mirror_repository, scheduled, "
                "import_mode, reference_policy, created_by, generation, created, updated) "
                "VALUES (1, 'ubi9/ubi', ?, ?, 1, 'Legacy', 'Source', 'config', 3, ?, ?)",
                (SRC, MIRROR, "2024-05-01T12:00:00.000000Z", "2024-05-01T12:00:00.000000Z"),
            )
            conn.execute("INSERT INTO tags (id, stream_id, tag) VALUES (7, 1, '9.4')")
            for n, created in (
                (1, "2024-05-01T12:00:00.000000Z"),
                (2, "2024-05-02T12:00:00.000000Z"),
            ):
                conn.execute(
                    "INSERT INTO tag_events (tag_id, created, docker_image_reference, image, "
                    "generation) VALUES (7, ?, ?, ?, ?)",
                    (created, f"{SRC}@{digest(n)}", digest(n), n),
                )
            conn.execute(
                "INSERT INTO tag_conditions VALUES (7, 'ImportSuccess', 'False', 'NotFound', "
                "'gone', 3, '2024-05-03T12:00:00.000000Z')"
            )
            conn.execute(
                "INSERT INTO job_runs (kind, stream, status, started, finished, counts) "
                "VALUES ('sync', 'ubi9/ubi', 'Succeeded', ?, ?, '{\"copied\": 2}')",
                ("2024-05-02T12:00:00.000000Z", "2024-05-02T12:01:00.000000Z"),
            )
    finally:
        conn.close()


@pytest.mark.anyio
async def test_version_1_database_migrates_keeping_its_rows(tmp_path: Path) -> None:
    make_version_1_database(tmp_path)
    store = open_store(tmp_path)
    try:
        with raw(tmp_path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stream = await store.get_stream("ubi9/ubi")
        assert stream is not None
        assert (stream.generation, stream.import_mode, stream.created) == (3, "Legacy", T0)
        assert stream.last_synced is None  # not known for a stream synced before version 3
        assert stream.import_all is False
        tag = stream.tag("9.4")
        assert tag is not None
        assert [(e.image, e.generation, e.source_digest) for e in tag.items] == [
            (digest(2), 2, ""),
            (digest(1), 1, ""),
        ]
        assert tag.items[1].created == T0
        assert [(c.reason, c.message) for c in tag.conditions] == [("NotFound", "gone")]
        [job] = await store.list_jobs(kind="sync")
        assert (job.status, job.counts) == ("Succeeded", {"copied": 2})

        # an old event gains no source digest by being imported again: no new event
        same = await store.record_tag_import(
            "ubi9/ubi", "9.4", digest(2), f"{SRC}@{digest(2)}", source_digest=digest(9)
        )
        assert same.changed is False
        # no new event; items[0] now remembers the source digest it came from
        assert same.status.items[0].source_digest == digest(9)
        assert same.status.items[1:] == tag.items[1:]
        tag = await store.get_tag("ubi9/ubi", "9.4")
        assert tag is not None and tag.items == same.status.items
        assert await store.delete_tag_events("ubi9/ubi", "9.4", tag.items[1:]) == 1
    finally:
        store.close()
    reopened = open_store(tmp_path)
    try:
        again = await reopened.get_tag("ubi9/ubi", "9.4")
        assert again is not None
        assert again.items == tag.items[:1]
        assert again.conditions == ()
    finally:
        reopened.close()


@pytest.mark.anyio
@pytest.mark.parametrize("version", range(1, len(_migrations.MIGRATIONS)))
async def test_every_older_schema_migrates_to_the_current_one(tmp_path: Path, version: int) -> None:
    conn = raw(tmp_path)
    try:
        for statements in _migrations.MIGRATIONS[:version]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        with conn:
            conn.execute(
                "INSERT INTO image_streams (name, source, mirror_repository, scheduled, "
                "import_mode, reference_policy, created_by, generation, created, updated) "
                "VALUES ('s', ?, ?, 1, 'PreserveOriginal', 'Source', 'import-image', 2, ?, ?)",
                (SRC, MIRROR, "2024-05-01T12:00:00.000000Z", "2024-05-01T12:00:00.000000Z"),
            )
    finally:
        conn.close()
    async with open_store(tmp_path) as store:
        [stream] = await store.list_streams()
    assert (stream.name, stream.generation, stream.created_by) == ("s", 2, "import-image")
    assert (stream.last_synced, stream.import_all, stream.failure) == (None, False, None)
    with raw(tmp_path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_unwritable_state_dir_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError, match="state directory"):
        open_store(blocker / "state")


def test_schema_has_no_secret_columns(store: SQLiteStore) -> None:
    with raw(store.state_dir) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        columns = [
            row[1].lower() for t in tables for row in conn.execute(f"PRAGMA table_info({t})")
        ]
    assert columns
    for word in ("password", "secret", "token", "auth", "credential"):
        assert not [c for c in columns if word in c]


@pytest.mark.anyio
async def test_closed_store_refuses(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    await s.aclose()
    with pytest.raises(StateError, match="closed"):
        await s.list_streams()


# -- image streams and tags ------------------------------------------------------------


@pytest.mark.anyio
async def test_upsert_bumps_generation_only_on_spec_change(store: SQLiteStore) -> None:
    created = await store.upsert_stream(SPEC, now=T0)
    assert (created.generation, created.created, created.created_by) == (1, T0, "config")
    same = await store.upsert_stream(StreamSpec("ubi9/ubi", SRC, MIRROR, created_by="import-image"))
    assert same.generation == 1
    assert same.created_by == "import-image"
    changed = await store.upsert_stream(StreamSpec("ubi9/ubi", SRC, MIRROR, import_mode="Legacy"))
    assert changed.generation == 2
    assert changed.import_mode == "Legacy"
    assert changed.created == T0
    assert await store.bump_generation("ubi9/ubi") == 3
    with pytest.raises(StateError, match="unknown image stream"):
        await store.bump_generation("nope")


@pytest.mark.anyio
async def test_mark_synced_is_kept_per_stream_and_survives_a_spec_change(
    store: SQLiteStore,
) -> None:
    await store.upsert_stream(SPEC, now=T0)
    await store.upsert_stream(StreamSpec("other", SRC, MIRROR), now=T0)
    assert (await store.get_stream("ubi9/ubi")).last_synced is None  # type: ignore[union-attr]
    later = T0 + timedelta(hours=1)
    await store.mark_synced("ubi9/ubi", now=later)
    await store.upsert_stream(StreamSpec("ubi9/ubi", SRC, MIRROR, import_mode="Legacy"))
    synced = {s.name: s.last_synced for s in await store.list_streams()}
    assert synced == {"ubi9/ubi": later, "other": None}


@pytest.mark.anyio
async def test_a_stream_failure_keeps_its_time_until_it_changes_or_clears(
    store: SQLiteStore,
) -> None:
    await store.upsert_stream(SPEC, now=T0)
    later = T0 + timedelta(minutes=5)
    await store.set_stream_failure("ubi9/ubi", "Unauthorized", "401 from quay.io", now=T0)
    await store.set_stream_failure("ubi9/ubi", "Unauthorized", "401 from quay.io", now=later)
    failure = (await store.get_stream("ubi9/ubi")).failure  # type: ignore[union-attr]
    assert failure is not None
    assert (failure.reason, failure.last_transition_time) == ("Unauthorized", T0)
    await store.set_stream_failure("ubi9/ubi", "NotFound", "no such repository", now=later)
    failure = (await store.get_stream("ubi9/ubi")).failure  # type: ignore[union-attr]
    assert failure is not None and failure.last_transition_time == later
    await store.set_stream_failure("ubi9/ubi", None)
    assert (await store.get_stream("ubi9/ubi")).failure is None  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_tag_import_history_through_the_store(store: SQLiteStore) -> None:
    await store.upsert_stream(SPEC, now=T0)
    r1 = await store.record_tag_import("ubi9/ubi", "9.4", digest(1), f"{SRC}@{digest(1)}", now=T0)
    assert (r1.changed, r1.previous_digest) == (True, None)
    later = T0 + timedelta(hours=1)
    r2 = await store.record_tag_import(
        "ubi9/ubi", "9.4", digest(1), f"{SRC}@{digest(1)}", now=later
    )
    assert (r2.changed, r2.previous_digest) == (False, digest(1))
    await store.bump_generation("ubi9/ubi")
    r3 = await store.record_tag_import(
        "ubi9/ubi", "9.4", digest(2), f"{SRC}@{digest(2)}", now=later
    )
    assert (r3.changed, r3.previous_digest) == (True, digest(1))
    tag = await store.get_tag("ubi9/ubi", "9.4")
    assert tag is not None
    assert [(e.image, e.generation, e.created) for e in tag.items] == [
        (digest(2), 2, later),
        (digest(1), 1, T0),
    ]
    assert tag == r3.status
    with pytest.raises(StateError, match="unknown image stream"):
        await store.record_tag_import("nope", "x", digest(1), "r")
    assert await store.get_tag("ubi9/ubi", "missing") is None
    assert await store.get_tag("nope", "9.4") is None


@pytest.mark.anyio
async def test_source_digest_round_trips(tmp_path: Path) -> None:
    index, platform = digest(0xA), digest(0xB)
    store = open_store(tmp_path)
    try:
        await store.upsert_stream(StreamSpec("ubi9/ubi", SRC, MIRROR, import_mode="Legacy"))
        legacy = await store.record_tag_import(
            "ubi9/ubi", "9.4", platform, f"{SRC}@{platform}", source_digest=index,
            platform="linux/arm64", now=T0,
        )
        assert legacy.status.items[0].source_digest == index
        later = T0 + timedelta(hours=1)
        await store.record_tag_import(
            "ubi9/ubi", "latest", index, f"{SRC}@{index}", source_digest=index, now=later
        )
        await store.record_tag_import("ubi9/ubi", "old", index, f"{SRC}@{index}", now=later)
    finally:
        store.close()
    store = open_store(tmp_path)
    try:
        stream = await store.get_stream("ubi9/ubi")
        assert stream is not None
        sources = {
            t.tag: [(e.image, e.source_digest, e.platform) for e in t.items] for t in stream.tags
        }
        assert sources == {
            "9.4": [(platform, index, "linux/arm64")],
            "latest": [(index, index, "")],
            "old": [(index, "", "")],
        }
        tag = await store.get_tag("ubi9/ubi", "9.4")
        assert tag == legacy.status == stream.tag("9.4")
        assert tag is not None
        # events are deleted by value, the source digest included
        other = replace(tag.items[0], source_digest=platform)
        assert await store.delete_tag_events("ubi9/ubi", "9.4", [other]) == 0
        assert await store.delete_tag_events("ubi9/ubi", "9.4", tag.items) == 1
    finally:
        store.close()


@pytest.mark.anyio
async def test_failure_condition_kept_then_cleared(store: SQLiteStore) -> None:
    await store.upsert_stream(SPEC, now=T0)
    first = await store.record_tag_failure("ubi9/ubi", "latest", "Unauthorized", "denied", now=T0)
    assert first.items == ()
    again = await store.record_tag_failure(
        "ubi9/ubi", "latest", "Unauthorized", "denied", now=T0 + timedelta(hours=1)
    )
    assert len(again.conditions) == 1
    assert again.conditions[0].last_transition_time == T0
    stored = await store.get_tag("ubi9/ubi", "latest")
    assert stored == again
    ok = await store.record_tag_import("ubi9/ubi", "latest", digest(3), f"{SRC}@{digest(3)}")
    assert ok.status.condition(IMPORT_SUCCESS) is None
    stored = await store.get_tag("ubi9/ubi", "latest")
    assert stored is not None
    assert stored.conditions == ()


@pytest.mark.anyio
async def test_removed_tags(store: SQLiteStore) -> None:
    await store.upsert_stream(SPEC, now=T0)
    await store.record_tag_import("ubi9/ubi", "old", digest(1), f"{SRC}@{digest(1)}", now=T0)
    assert await store.record_tag_removed("ubi9/ubi", "ghost", delete_removed_tags=True) is None
    kept = await store.record_tag_removed("ubi9/ubi", "old", delete_removed_tags=False)
    assert kept is not None
    assert not kept.removed
    gone = await store.record_tag_removed(
        "ubi9/ubi", "old", delete_removed_tags=True, now=T0 + timedelta(days=1)
    )
    assert gone is not None
    assert gone.removed_at == T0 + timedelta(days=1)
    stream = await store.get_stream("ubi9/ubi")
    assert stream is not None
    assert to_openshift(stream)["status"]["tags"] == []
    assert stream.tag("old") == gone


@pytest.mark.anyio
async def test_list_streams_and_delete_cascade(store: SQLiteStore) -> None:
    await store.upsert_stream(StreamSpec("b/two", "quay.io/b/two", "m/b/two"), now=T0)
    await store.upsert_stream(SPEC, now=T0)
    for tag in ("9.4", "latest"):
        await store.record_tag_import("ubi9/ubi", tag, digest(1), f"{SRC}@{digest(1)}", now=T0)
    await store.record_tag_failure("ubi9/ubi", "latest", "NotFound", "gone", now=T0)
    streams = await store.list_streams()
    assert [s.name for s in streams] == ["b/two", "ubi9/ubi"]
    assert [t.tag for t in streams[1].tags] == ["9.4", "latest"]
    assert streams[1].tag("latest").conditions[0].reason == "NotFound"  # type: ignore[union-attr]
    assert await store.delete_stream("ubi9/ubi") is True
    assert await store.delete_stream("ubi9/ubi") is False
    with raw(store.state_dir) as conn:
        for table in ("tags", "tag_events", "tag_conditions"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


@pytest.mark.anyio
async def test_delete_tag_events_for_pruning(store: SQLiteStore) -> None:
    await store.upsert_stream(SPEC, now=T0)
    for n in range(4):
        await store.record_tag_import(
            "ubi9/ubi", "9.4", digest(n), f"{SRC}@{digest(n)}", now=T0 + timedelta(hours=n)
        )
    tag = await store.get_tag("ubi9/ubi", "9.4")
    assert tag is not None
    assert await store.delete_tag_events("ubi9/ubi", "9.4", tag.items[2:]) == 2
    assert await store.delete_tag_events("ubi9/ubi", "9.4", tag.items[2:]) == 0
    pruned = await store.get_tag("ubi9/ubi", "9.4")
    assert pruned is not None
    assert pruned.items == tag.items[:2]


# -- crash safety ----------------------------------------------------------------------

WRITER = """
    import sys
    import anyio
    from mirrord.imagestream import StreamSpec
    from mirrord.state import open_store

    async def main() -> None:
        store = open_store(sys.argv[1])
        await store.upsert_stream(StreamSpec("s", "src/s", "mirror/s"))
        i = int(sys.argv[2])
        while True:
            d = f"sha256:{i:064x}"
            await store.record_tag_import("s", f"t{i % 7}", d, f"src/s@{d}")
            await store.record_tag_failure("s", f"t{(i + 3) % 7}", "Flaky", f"attempt {i}")
            job = await store.start_job("sync", "s")
            await store.finish_job(job, "Succeeded", {"copied": i})
            print(i, flush=True)
            i += 1

    anyio.run(main)
"""


def run_and_kill(state_dir: Path, start: int, commits: int) -> int:
    """Run the writer until it reports ``commits`` commits, SIGKILL it; the last index."""
    proc = spawn(WRITER, str(state_dir), str(start))
    assert proc.stdout is not None
    last = -1
    try:
        for line in proc.stdout:
            last = int(line)
            if last >= start + commits:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return last


@pytest.mark.anyio
async def test_sigkill_mid_write_loop_leaves_consistent_db(tmp_path: Path) -> None:
    last = run_and_kill(tmp_path, 0, 150)
    last = run_and_kill(tmp_path, last + 1, 150)  # recovers the WAL, then killed again
    with raw(tmp_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        images = {r[0] for r in conn.execute("SELECT image FROM tag_events")}
    assert {digest(i) for i in range(last + 1)} <= images  # every reported commit is there
    store = open_store(tmp_path)
    try:
        stream = await store.get_stream("s")
        assert stream is not None
        for tag in stream.tags:
            assert len({e.image for e in tag.items}) == len(tag.items)
            assert len(tag.conditions) <= 1
        jobs = await store.list_jobs(limit=1000, kind="sync")
        assert sum(j.status == "Succeeded" for j in jobs) >= last + 1
        assert all(j.status in ("Running", "Succeeded") for j in jobs)
        assert await store.abandon_running_jobs("killed", now=T0) <= 2  # at most one per child
        assert all(j.status != "Running" for j in await store.list_jobs(limit=1000))
    finally:
        store.close()


# -- run lock --------------------------------------------------------------------------

HOLDER = """
    import sys, time
    from mirrord.state import open_store

    store = open_store(sys.argv[1])
    with store.acquire_run_lock():
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
"""


def hold_lock(state_dir: Path, seconds: float) -> subprocess.Popen[str]:
    proc = spawn(HOLDER, str(state_dir), str(seconds))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_run_lock_refuses_second_holder_naming_pid(store: SQLiteStore) -> None:
    holder = hold_lock(store.state_dir, 60)
    try:
        lock = store.acquire_run_lock(wait=False)
        with pytest.raises(LockedError, match=rf"pid {holder.pid}\b") as info, lock:
            pytest.fail("acquired a lock held by another process")
        assert "mirrord.lock" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_run_lock_wait_waits_for_the_holder(store: SQLiteStore) -> None:
    holder = hold_lock(store.state_dir, 1.0)
    try:
        started = time.monotonic()
        with store.acquire_run_lock(wait=True, timeout=30) as lock:
            waited = time.monotonic() - started
            assert lock.held
            assert lock.holder_pid() == os.getpid()
        assert holder.wait(timeout=5) == 0  # it finished its run before we got the lock
        assert waited > 0.3
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_run_lock_freed_when_holder_is_killed(store: SQLiteStore) -> None:
    holder = hold_lock(store.state_dir, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert holder.stdout is not None
    holder.stdout.close()
    with store.acquire_run_lock(wait=False) as lock:
        assert lock.held


@pytest.mark.anyio
async def test_run_lock_async_refuses_and_times_out(store: SQLiteStore) -> None:
    holder = hold_lock(store.state_dir, 60)
    try:
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            async with store.acquire_run_lock():
                pytest.fail("acquired a held lock")
        started = time.monotonic()
        with pytest.raises(LockedError, match="gave up"):
            async with store.acquire_run_lock(wait=True, timeout=0.3):
                pytest.fail("acquired a held lock")
        assert time.monotonic() - started >= 0.3
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    async with store.acquire_run_lock(wait=True, timeout=5) as lock:
        assert lock.held
    assert not lock.held


def test_run_lock_is_exclusive_within_one_process(tmp_path: Path) -> None:
    with RunLock(tmp_path / "mirrord.lock") as first:
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path / "mirrord.lock").acquire()
        assert first.held
    with RunLock(tmp_path / "mirrord.lock"):
        pass


# -- job runs --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_jobs_finish_list_and_trim(store: SQLiteStore) -> None:
    ids: dict[str, list[int]] = {"Succeeded": [], "Failed": []}
    for n, status in enumerate(["Succeeded"] * 5 + ["Failed"] * 4 + ["Succeeded"]):
        job = await store.start_job("sync", "ubi9/ubi", now=T0 + timedelta(minutes=n))
        await store.finish_job(job, status, {"copied": n}, f"run {n}")
        ids[status].append(job)
    running = await store.start_job("sync")
    prune = [await store.start_job("prune") for _ in range(5)]
    for job in prune:
        await store.finish_job(job, "Succeeded")
    newest = (await store.list_jobs(limit=1, kind="sync"))[0]
    assert (newest.id, newest.status, newest.finished) == (running, "Running", None)
    done = (await store.list_jobs(limit=2, kind="sync"))[1]
    assert (done.counts, done.message, done.pid) == ({"copied": 9}, "run 9", os.getpid())
    assert done.started == T0 + timedelta(minutes=9)

    assert await store.trim_jobs("sync", successful_limit=3, failed_limit=2) == 3 + 2
    left = await store.list_jobs(limit=100, kind="sync")
    assert [j.id for j in left if j.status == "Succeeded"] == ids["Succeeded"][::-1][:3]
    assert [j.id for j in left if j.status == "Failed"] == ids["Failed"][::-1][:2]
    assert [j.id for j in left if j.status == "Running"] == [running]
    assert len(await store.list_jobs(limit=100, kind="prune")) == 5  # other kind untouched
    assert await store.trim_jobs("sync", successful_limit=3, failed_limit=2) == 0

    with pytest.raises(StateError, match="not running"):
        await store.finish_job(ids["Failed"][-1], "Succeeded")
    with pytest.raises(ValueError, match="kind"):
        await store.start_job("backup")
    assert await store.abandon_running_jobs("mirrord was killed") == 1
    abandoned = (await store.list_jobs(limit=1, kind="sync"))[0]
    assert (abandoned.status, abandoned.message) == ("Failed", "mirrord was killed")


# -- notification outbox ---------------------------------------------------------------


@pytest.mark.anyio
async def test_outbox_retry_bookkeeping(store: SQLiteStore) -> None:
    payload = {"stream": "ubi9/ubi", "tag": "9.4", "image": digest(1)}
    first = await store.enqueue_event(payload, "webhook[0]", now=T0)
    second = await store.enqueue_event({"n": 2}, "command[0]", now=T0 + timedelta(seconds=1))
    due = await store.due_events(T0 + timedelta(seconds=5))
    assert [e.id for e in due] == [first, second]
    assert due[0].payload == payload
    assert (due[0].attempts, due[0].last_error, due[0].delivered) == (0, None, None)
    assert await store.due_events(T0 - timedelta(seconds=1)) == []

    retry_at = T0 + timedelta(minutes=1)
    await store.mark_failed(first, 1, retry_at, "HTTP 503 from hooks.example.internal")
    assert [e.id for e in await store.due_events(T0 + timedelta(seconds=5))] == [second]
    retried = await store.due_events(retry_at)
    assert [e.id for e in retried] == [second, first] or [e.id for e in retried] == [first, second]
    event = next(e for e in retried if e.id == first)
    assert (event.attempts, event.next_attempt) == (1, retry_at)
    assert event.last_error == "HTTP 503 from hooks.example.internal"
    assert [e.id for e in await store.failed_events()] == [first]
    assert await store.receiver_statuses() == [
        ReceiverStatus("command[0]", pending=1),
        ReceiverStatus(
            "webhook[0]", pending=1, retrying=1, last_error="HTTP 503 from hooks.example.internal"
        ),
    ]

    await store.mark_delivered(second, now=T0 + timedelta(seconds=6))
    await store.mark_failed(first, 5, None, "gave up after 5 attempts")  # dead letter
    assert await store.due_events(T0 + timedelta(days=365)) == []
    [dead] = await store.failed_events()
    assert dead.dead
    assert (dead.id, dead.attempts, dead.last_error) == (first, 5, "gave up after 5 attempts")
    assert await store.receiver_statuses() == [
        ReceiverStatus("command[0]", delivered=1, last_delivered=T0 + timedelta(seconds=6)),
        ReceiverStatus("webhook[0]", given_up=1, last_error="gave up after 5 attempts"),
    ]
    with pytest.raises(StateError, match="not pending"):
        await store.mark_delivered(second)
    assert await store.purge_delivered(T0 + timedelta(seconds=5)) == 0
    assert await store.purge_delivered(T0 + timedelta(seconds=7)) == 1


# -- pruner conditions -----------------------------------------------------------------


@pytest.mark.anyio
async def test_pruner_condition_transition_time_changes_only_on_flip(store: SQLiteStore) -> None:
    c1 = await store.set_pruner_condition("pruner", "Scheduled", "True", "Scheduled", now=T0)
    assert c1.last_transition_time == T0
    c2 = await store.set_pruner_condition(
        "pruner", "Scheduled", "True", "Scheduled", "next at midnight", now=T0 + timedelta(hours=1)
    )
    assert (c2.last_transition_time, c2.message) == (T0, "next at midnight")
    flip = T0 + timedelta(hours=2)
    c3 = await store.set_pruner_condition("pruner", "Scheduled", "False", "Suspended", now=flip)
    assert c3.last_transition_time == flip
    await store.set_pruner_condition("pruner", "Available", "True", now=T0)
    await store.set_pruner_condition("other", "Failed", "True", now=T0)
    conditions = await store.pruner_conditions("pruner")
    assert [(c.type, c.status, c.reason) for c in conditions] == [
        ("Available", "True", ""),
        ("Scheduled", "False", "Suspended"),
    ]
    assert conditions[1].last_transition_time == flip

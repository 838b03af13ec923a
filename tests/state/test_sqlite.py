"""What is SQLite's own in the state store: the file, WAL, its schema and migrations, the
flock. Everything else the SQLite store does is the store contract (test_store*.py),
which it passes with PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mirrord.errors import LockedError, StateError
from mirrord.state import RunLock, SQLiteStore, _migrations, hold_daemon_lock, open_store
from mirrord.state._migrations import SCHEMA_VERSION

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SRC = "registry.redhat.io/ubi9/ubi"
MIRROR = "127.0.0.1:5000/mirror/ubi9/ubi"


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = open_store(tmp_path / "state")
    yield s
    s.close()


def raw(state_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(state_dir / "state.db")


# -- the file and its schema -----------------------------------------------------------


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


def test_reopen_leaves_the_schema_as_it_was(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    with raw(tmp_path) as conn:
        schema = conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    for _ in range(2):
        open_store(tmp_path).close()
    with raw(tmp_path) as conn:
        assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


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
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 11
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
        assert (job.status, job.counts, job.worker) == ("Succeeded", {"copied": 2}, None)
        queued = await store.start_job("sync", "ubi9/ubi", queued=True)  # version 8's status
        assert queued == job.id + 1  # ids continue after the rebuilt table's rows
        assert await store.start_job("sync", "ubi9/ubi") == queued  # taken over
        taken = await store.get_job(queued)
        assert taken is not None and (taken.status, taken.worker) == ("Running", store.worker)

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
        await store.record_blob_locations("docker://m", {digest(1): "m/s"})  # version 11's
        assert (await store.blob_location("docker://m", digest(1))).repository == "m/s"  # type: ignore[union-attr]
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


def test_a_file_that_is_not_a_database_is_a_clear_state_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"not a database\n" * 512)
    with pytest.raises(StateError, match=r"cannot open state database .*state\.db: file is not a"):
        open_store(tmp_path)


# -- the flock -------------------------------------------------------------------------


def test_run_lock_is_exclusive_within_one_process(tmp_path: Path) -> None:
    with RunLock(tmp_path / "mirrord.lock") as first:
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path / "mirrord.lock").acquire()
        assert first.held
    with RunLock(tmp_path / "mirrord.lock"):
        pass


def test_run_lock_file_names_the_first_live_shared_holder(tmp_path: Path) -> None:
    path = tmp_path / "mirrord.lock"
    path.write_text("999999999\n")  # left by a holder long dead
    with RunLock(path, shared=True) as first:
        assert first.holder_pid() == os.getpid()  # a dead holder's pid is replaced
        with RunLock(path, shared=True):
            pass
        assert first.holder_pid() == os.getpid()  # the second let go: still named
    assert path.read_text() == ""


def test_daemon_lock_is_a_file_in_state_dir(store: SQLiteStore) -> None:
    held = store.hold_daemon_lock()
    try:
        assert held.where == str(store.state_dir / "mirrord-daemon.lock")
        with pytest.raises(LockedError, match=f"another mirrord daemon \\(pid {os.getpid()}\\)"):
            hold_daemon_lock(store.state_dir)
    finally:
        held.release()

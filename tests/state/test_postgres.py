"""What is PostgreSQL's own in the state store: its schema and migrations (the same
versions as SQLite's), processes starting together, live workers' jobs, collation,
the connection's failures and the password. The rest is the store contract
(test_store*.py), which it passes with SQLite."""

from __future__ import annotations

import logging
import signal
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness.postgres import PostgresCluster, PostgresDatabase
from harness.processes import spawn_python

from mirrord.core.imagestream import StreamSpec
from mirrord.errors import DatabaseUnavailableError, StateError
from mirrord.state import PostgresStore, _migrations, _postgres_schema, open_store
from mirrord.state._postgres_schema import SCHEMA_VERSION

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SRC = "registry.redhat.io/ubi9/ubi"


def open_pg(db: PostgresDatabase, **kw: Any) -> PostgresStore:
    return PostgresStore(db.url, password=db.password, **kw)


@pytest.fixture
def pg(pg_database: PostgresDatabase) -> Iterator[PostgresStore]:
    store = open_pg(pg_database)
    yield store
    store.close()


def version(db: PostgresDatabase) -> int:
    with db.connect() as conn:
        return _postgres_schema.schema_version(conn)


def columns(rows: list[tuple[str, str]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found


# -- schema and migrations -------------------------------------------------------------


def test_open_migrates_once_and_reopening_changes_nothing(pg_database: PostgresDatabase) -> None:
    first = open_pg(pg_database)
    first.close()
    assert first.schema_found == 0
    assert version(pg_database) == SCHEMA_VERSION == _migrations.SCHEMA_VERSION
    again = open_pg(pg_database)
    again.close()
    assert again.schema_found == SCHEMA_VERSION


def test_the_schema_has_the_tables_and_columns_of_sqlites(
    pg: PostgresStore, pg_database: PostgresDatabase, tmp_path: Path
) -> None:
    open_store(tmp_path).close()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        lite = columns(
            [(t, r[1]) for t in tables if t != "sqlite_sequence"
             for r in conn.execute(f"PRAGMA table_info({t})")]
        )
    with pg_database.connect() as conn:
        found = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name <> 'mirrord_schema'"
        ).fetchall()
    assert columns(found) == lite
    for words in ("password", "secret", "token", "auth", "credential"):
        assert not [c for cs in lite.values() for c in cs if words in c.lower()]


@pytest.mark.anyio
@pytest.mark.parametrize("old", range(1, SCHEMA_VERSION))
async def test_every_older_schema_migrates_to_the_current_one(
    pg_database: PostgresDatabase, old: int
) -> None:
    with pg_database.connect() as conn, conn.transaction():
        for statements in _postgres_schema.MIGRATIONS[:old]:
            for statement in statements:
                conn.execute(statement.encode())
        conn.execute(_postgres_schema._VERSION_TABLE)
        conn.execute("INSERT INTO mirrord_schema (version) VALUES (%s)", (old,))
        conn.execute(
            "INSERT INTO image_streams (name, source, mirror_repository, scheduled, "
            "import_mode, reference_policy, created_by, generation, created, updated) "
            "VALUES ('s', %s, 'm/s', true, 'PreserveOriginal', 'Source', 'import-image', 2, "
            "%s, %s)",
            (SRC, T0, T0),
        )
    store = open_pg(pg_database)
    try:
        assert store.schema_found == old
        [stream] = await store.list_streams()
        assert (stream.name, stream.generation, stream.created_by) == ("s", 2, "import-image")
        assert (stream.created, stream.last_synced, stream.import_all) == (T0, None, False)
        job = await store.start_job("sync", "s")  # the newest columns are there
        assert (await store.list_jobs())[0].id == job
        await store.record_blob_locations("docker://m", {f"sha256:{'a' * 64}": "m/s"})
        assert await store.blob_location("docker://m", f"sha256:{'a' * 64}") is not None
    finally:
        store.close()
    assert version(pg_database) == SCHEMA_VERSION


def test_newer_schema_is_refused(pg: PostgresStore, pg_database: PostgresDatabase) -> None:
    with pg_database.connect() as conn:
        conn.execute("UPDATE mirrord_schema SET version = 99")
    with pytest.raises(StateError, match="schema version 99 is newer") as info:
        open_pg(pg_database)
    assert pg_database.name in str(info.value)


def test_failed_migration_rolls_back_whole_version(
    pg_database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (*_postgres_schema.MIGRATIONS[0], "CREATE TABLE half_done (")
    monkeypatch.setattr(_postgres_schema, "MIGRATIONS", (broken,))
    monkeypatch.setattr(_postgres_schema, "SCHEMA_VERSION", 1)
    with pytest.raises(StateError, match="cannot migrate the schema: syntax error"):
        open_pg(pg_database)
    with pg_database.connect() as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchone()
    assert tables == (0,)
    monkeypatch.undo()
    open_pg(pg_database).close()
    assert version(pg_database) == SCHEMA_VERSION


OPENER = """
    import sys, time
    from pathlib import Path
    from mirrord.state import PostgresStore

    start = Path(sys.argv[3])
    while not start.exists():
        time.sleep(0.001)
    store = PostgresStore(sys.argv[1], password=sys.argv[2])
    print(store.schema_found, flush=True)
    store.close()
"""


def test_processes_starting_together_migrate_once(
    pg_database: PostgresDatabase, tmp_path: Path
) -> None:
    start = tmp_path / "go"
    openers = [
        spawn_python(OPENER, pg_database.url, pg_database.password, str(start)) for _ in range(3)
    ]
    start.touch()
    found = []
    for proc in openers:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        found.append(int(out))
    assert sorted(found) == [0, SCHEMA_VERSION, SCHEMA_VERSION]  # one migrated, two found it
    assert version(pg_database) == SCHEMA_VERSION


# -- several workers -------------------------------------------------------------------


@pytest.mark.anyio
async def test_abandon_spares_the_running_jobs_of_live_workers(
    pg_database: PostgresDatabase,
) -> None:
    alive, other = open_pg(pg_database, worker="alive"), open_pg(pg_database, worker="other")
    try:
        job = await alive.start_job("sync", "s")
        assert await other.abandon_running_jobs("gone?") == 0  # alive still runs it
        assert (await other.list_jobs())[0].status == "Running"
        assert await other.abandon_running_jobs("gone?", stream="s") == 0  # per stream too
        alive.close()  # the worker is gone
        assert await other.abandon_running_jobs("gone", stream="t") == 0  # another stream
        assert await other.abandon_running_jobs("gone", stream="s") == 1
        [failed] = await other.list_jobs()
        assert (failed.id, failed.status, failed.worker) == (job, "Failed", "alive")
    finally:
        alive.close()
        other.close()


@pytest.mark.anyio
async def test_order_is_bytewise_in_a_database_that_collates_otherwise(
    postgres: PostgresCluster,
) -> None:
    db = postgres.create_database(icu_locale="en-US")
    try:
        with db.connect() as conn:
            icu = [r[0] for r in conn.execute(
                "SELECT x FROM unnest(ARRAY['b', 'B', 'a', '_a']) x ORDER BY x"
            )]
        assert icu != sorted(icu)  # the database's own order is not bytewise
        store = open_pg(db)
        try:
            for name in ("b", "B", "a", "_a"):
                await store.upsert_stream(StreamSpec(name, f"quay.io/x/{name}", f"m/{name}"))
            assert [s.name for s in await store.list_streams()] == ["B", "_a", "a", "b"]
        finally:
            store.close()
    finally:
        postgres.drop_database(db.name)


# -- failures and the password ---------------------------------------------------------


def test_a_database_that_is_down_is_a_temporary_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailableError) as info:
        PostgresStore("postgresql://mirrord@127.0.0.1:1/mirrord", password="Pa55-not-shown")
    assert info.value.temporary
    assert str(info.value).startswith(
        "state database postgresql://mirrord@127.0.0.1:1/mirrord: cannot connect:"
    )
    assert "refused" in str(info.value)
    assert "Pa55-not-shown" not in str(info.value)


def test_a_wrong_password_is_a_permanent_error_naming_its_source(
    pg_database: PostgresDatabase,
) -> None:
    with pytest.raises(StateError) as info:
        PostgresStore(
            pg_database.url, password="wrong-Pa55", password_source="database_password_file /x"
        )
    assert not info.value.temporary
    assert str(info.value) == (
        f"state database {pg_database.url}: the server refused the password of user "
        "mirrord (password from database_password_file /x)"
    )
    with pytest.raises(StateError, match="a password never goes in the database URL") as url:
        PostgresStore(pg_database.url.replace("mirrord@", "mirrord:hunter2@"))
    assert "hunter2" not in str(url.value)


@pytest.mark.anyio
async def test_a_restarted_server_is_reconnected_and_its_absence_is_temporary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with PostgresCluster() as cluster:
        db = cluster.create_database()
        store = open_pg(db, pool_timeout=1.0)
        try:
            await store.upsert_stream(StreamSpec("s", "quay.io/x/s", "m/s"))
            lock = store.acquire_run_lock()
            assert lock.try_acquire()
            cluster.restart()  # every session is cut
            assert [s.name for s in await store.list_streams()] == ["s"]  # a new connection
            assert not lock.alive()  # the lock went with its session
            cluster.stop()
            with pytest.raises(DatabaseUnavailableError, match=db.url) as info:
                await store.list_streams()
            assert info.value.temporary
            cluster.start()
            assert [s.name for s in await store.list_streams()] == ["s"]
            job = await store.start_job("sync", "s")  # retakes its presence first
            with open_pg(db) as other:
                assert await other.abandon_running_jobs() == 0  # still seen alive
            await store.finish_job(job, "Succeeded")
        finally:
            lock.release()
            store.close()
    for secret in (db.password, cluster.password):
        assert secret not in caplog.text
        assert secret not in repr(store) + repr(store.db) + str(info.value)


HALF_MIGRATOR = """
    import sys, time
    import psycopg
    from mirrord.state import _postgres_schema as schema

    conn = psycopg.connect(sys.argv[1], password=sys.argv[2], autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s, %s)", schema.MIGRATE_KEY)
    conn.execute("BEGIN")
    for statement in schema.MIGRATIONS[0][:3]:  # as migrate() does, killed part way
        conn.execute(statement.encode())
    print("migrating", flush=True)
    time.sleep(60)
"""


def test_a_process_killed_mid_migration_leaves_the_database_openable(
    pg_database: PostgresDatabase,
) -> None:
    """The server rolls the killed process's transaction back and drops its lock; the next
    opener, which waited for that lock, migrates from scratch."""
    child = spawn_python(HALF_MIGRATOR, pg_database.url, pg_database.password)
    assert child.stdout is not None and child.stdout.readline().strip() == "migrating"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    store = open_pg(pg_database)
    store.close()
    assert store.schema_found == 0
    assert version(pg_database) == SCHEMA_VERSION
    with psycopg.connect(pg_database.url, password=pg_database.password) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        ).fetchone() == (0,)

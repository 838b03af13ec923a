"""open_state(config): which store a configuration names, and where the database password
comes from (database_password_file, the systemd credential, libpq's PGPASSFILE) — each
source checked by logging in to a real PostgreSQL with it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from harness.postgres import PostgresDatabase

from mirrord.config import Config, parse_config
from mirrord.errors import CredentialError, StateError
from mirrord.state import PostgresStore, SQLiteStore, database_password, open_state, state_exists


def config(tmp_path: Path, extra: str = "") -> Config:
    text = f"version: 1\nstate_dir: {tmp_path / 'state'}\n{extra}"
    return parse_config(text, tmp_path / "m.yaml")


def test_without_database_the_state_is_sqlite_in_state_dir(tmp_path: Path) -> None:
    settings = config(tmp_path, "worker_name: host-a\n")
    assert not state_exists(settings)
    store = open_state(settings)
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == tmp_path / "state" / "state.db"
        assert store.worker == "host-a"
        assert not store.several_daemons
    finally:
        store.close()
    assert state_exists(settings)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("CREDENTIALS_DIRECTORY", "PGPASSFILE", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.pgpass of this machine
    return monkeypatch


def test_database_password_file(
    tmp_path: Path, pg_database: PostgresDatabase, clean_env: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "db-password"
    secret.write_text(pg_database.password + "\n")
    settings = config(tmp_path, f"database: {pg_database.url}\ndatabase_password_file: {secret}\n")
    assert not state_exists(settings)  # connects, finds no schema, creates none
    store = open_state(settings, worker="w9")
    try:
        assert isinstance(store, PostgresStore) and store.several_daemons
        assert (store.location, store.worker) == (pg_database.url, "w9")
        assert store.state_dir == tmp_path / "state"
    finally:
        store.close()
    assert state_exists(settings)


def test_systemd_credential(
    tmp_path: Path, pg_database: PostgresDatabase, clean_env: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "database-password").write_text(pg_database.password)
    clean_env.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert database_password(None)[1] == "systemd credential database-password"
    open_state(config(tmp_path, f"database: {pg_database.url}\n")).close()


def test_libpq_finds_the_password_in_pgpassfile(
    tmp_path: Path, pg_database: PostgresDatabase, clean_env: pytest.MonkeyPatch
) -> None:
    passfile = tmp_path / "pgpass"
    db = pg_database
    passfile.write_text(f"{db.host}:{db.port}:{db.name}:{db.user}:{db.password}\n")
    passfile.chmod(0o600)  # libpq ignores a passfile others can read
    settings = config(tmp_path, f"database: {db.url}\n")
    with pytest.raises(StateError, match="wants a password for user mirrord and none was found"):
        open_state(settings)  # no source at all
    clean_env.setenv("PGPASSFILE", str(passfile))
    assert database_password(None) == (None, "libpq (PGPASSWORD, PGPASSFILE or ~/.pgpass)")
    open_state(settings).close()


def test_password_sources_fail_clearly_and_never_show_it(
    tmp_path: Path,
    pg_database: PostgresDatabase,
    clean_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = tmp_path / "db-password"
    settings = config(tmp_path, f"database: {pg_database.url}\ndatabase_password_file: {secret}\n")
    with pytest.raises(CredentialError, match=rf"\(database_password_file {secret}\): No such"):
        open_state(settings)
    secret.write_text("\n")
    with pytest.raises(CredentialError, match="is empty"):
        open_state(settings)
    secret.write_bytes(b"x" * 5000)
    with pytest.raises(CredentialError, match="over 4096 bytes"):
        open_state(settings)
    wrong = "Wr0ng-" + pg_database.password[::-1]
    secret.write_text(wrong + "\r\n")
    with pytest.raises(StateError) as refused:
        open_state(settings)
    assert str(refused.value) == (
        f"state database {pg_database.url}: the server refused the password of user mirrord "
        f"(password from database_password_file {secret})"
    )
    secret.write_text(pg_database.password)
    store = open_state(settings)
    store.close()
    for password in (wrong, pg_database.password):
        assert password not in caplog.text + str(refused.value) + repr(store)
        assert password not in repr(settings) and password not in repr(store.__dict__.keys())
    assert os.environ.get("PGPASSWORD") is None  # nothing leaked into the environment

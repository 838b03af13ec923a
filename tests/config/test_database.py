"""The shared-state keys of the configuration: `database:` (a libpq URL, never with a
password), `database_password_file:`, `worker_name:` and `lease:`."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrord.config import Config, DatabaseConfig, parse_config
from mirrord.errors import ConfigError

FILE = "/etc/mirrord/mirrord.yaml"


def parse(extra: str) -> Config:
    return parse_config(f"version: 1\n{extra}", FILE)


def test_without_database_the_state_is_sqlite() -> None:
    config = parse("")
    assert (config.database, config.worker_name, config.lease) == (None, None, 60.0)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://mirrord@db.internal:5432/mirrord",
        "postgres://mirrord@127.0.0.1/mirrord?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        "postgresql://mirrord@[::1]:5433/state",
        "postgresql://mirrord@/mirrord?host=/run/postgresql",  # a Unix socket
        "postgresql://mirr%40ord@db/my-state",
    ],
)
def test_database_urls_libpq_takes(url: str) -> None:
    config = parse(f"database: '{url}'\ndatabase_password_file: secrets/db\n")
    assert config.database == DatabaseConfig(url, Path("/etc/mirrord/secrets/db"))
    assert str(config.database) == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://mirrord:hunter2@db.internal:5432/mirrord",
        "postgresql://mirrord:hunter2@db.internal:notaport/mirrord",
        "postgresql://mirrord@db.internal/mirrord?sslmode=require&password=hunter2",
        "postgresql://mirrord:hunter2@/mirrord?host=/run/postgresql",
    ],
)
def test_a_password_in_the_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"database: '{url}'\n")
    assert str(info.value).startswith(f"{FILE}:2: database: a password never goes in the")
    assert "hunter2" not in str(info.value)
    assert "database_password_file" in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@db/x", "expected postgresql://USER@HOST[:PORT]/DBNAME, got 'mysql://"),
        ("postgresql://db/x", "the user is missing"),
        ("postgresql://u@db", "the database name is missing"),
        ("postgresql://u@db/a/b", "the database name is missing or invalid"),
        ("postgresql://u@/x", "the host is missing"),
        ("postgresql://u@db:0/x", "invalid database port 0"),
        ("postgresql://u@db:99999/x", "Port out of range"),
        ("postgresql://u@db_1/x", "invalid database host 'db_1'"),
        ("postgresql://u@db/x?sslmod=require", "unknown libpq parameter 'sslmod' in the "
         "database URL; did you mean 'sslmode'?"),
        ("postgresql://u@db/x?sslmode=a&sslmode=b", "given twice"),
        ("postgresql://u@db/x#frag", "expected postgresql://"),
    ],
)
def test_bad_database_urls_name_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{FILE}:2: database: ") as info:
        parse(f"database: '{url}'\n")
    assert message in str(info.value)


def test_database_password_file_needs_a_database() -> None:
    with pytest.raises(ConfigError, match=f"^{FILE}:2: database_password_file: .*needs"):
        parse("database_password_file: /etc/mirrord/db\n")


def test_worker_name_and_lease() -> None:
    config = parse("worker_name: mirror-2.dc1\nlease: 90s\n")
    assert (config.worker_name, config.lease) == ("mirror-2.dc1", 90.0)
    for bad in ("'a b'", "'-x'", "x" * 56):
        with pytest.raises(ConfigError, match=f"^{FILE}:2: worker_name: expected up to 55"):
            parse(f"worker_name: {bad}\n")
    for bad, shown in (("1s", "1s"), ("2h", "2h"), ("0", "0")):
        with pytest.raises(ConfigError, match=f"^{FILE}:2: lease: "):
            parse(f"lease: {bad}\n")
        assert shown


def test_the_design_example_of_version_0_2_parses() -> None:
    config = parse("database: postgresql://mirrord@db.internal:5432/mirrord   # shared state\n")
    assert config.database is not None
    assert config.database.url == "postgresql://mirrord@db.internal:5432/mirrord"
    assert config.database.password_file is None

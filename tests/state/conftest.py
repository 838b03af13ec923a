"""Fixtures of the state tests: every backend of the Store behind one interface.

    backend     "sqlite" or "postgresql" (parametrised: a test using it runs on both);
                `backend.open(worker=...)` opens another store on the same state,
                `backend.config_path` names that state for a child process
                (`open_state(load_config(path))`), `backend.name`
    store       `backend.open()`, closed after the test
                `backend.count(table)`, `backend.problems()`: raw looks at the database

As apscheduler runs every data store through one suite, the contract tests take
`store`/`backend` and assert the same results on both; a test specific to one
backend lives in test_sqlite.py or test_postgres.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.postgres import PostgresCluster
from harness.storetools import Backend

from mirrord.state import Store

BACKENDS = ["sqlite", "postgresql"]



@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        made = Backend("sqlite", tmp_path, "", None)
        yield made
        made.close()
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    database = cluster.create_database()
    password_file = tmp_path / "db-password"
    password_file.write_text(database.password + "\n", encoding="utf-8")
    made = Backend(
        "postgresql",
        tmp_path,
        f"database: {database.url}\ndatabase_password_file: {password_file}\n",
        database,
    )
    yield made
    made.close()
    cluster.drop_database(database.name)


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()

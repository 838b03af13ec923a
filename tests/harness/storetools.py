"""A state for the store tests to open again and again: a SQLite state_dir, or a
PostgreSQL database, with a configuration file naming it (tests/state/conftest.py
makes one per backend)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harness.postgres import PostgresDatabase
from mirrord.config import load_config
from mirrord.state import Store, open_state


class Backend:
    """One state (a SQLite state_dir, or a fresh PostgreSQL database) and a config naming it."""

    def __init__(
        self, name: str, tmp_path: Path, config_text: str, database: PostgresDatabase | None
    ) -> None:
        self.name = name
        self.database = database
        self.state_dir = tmp_path / "state"
        self.config_path = tmp_path / "mirrord.yaml"
        self.config_path.write_text(
            f"version: 1\nstate_dir: {self.state_dir}\n{config_text}", encoding="utf-8"
        )
        self._open: list[Store] = []

    def __repr__(self) -> str:
        return self.name

    def open(self, *, worker: str | None = None) -> Store:
        store = open_state(load_config(self.config_path), worker=worker)
        self._open.append(store)
        return store

    def close(self) -> None:
        for store in self._open:
            store.close()

    def query(self, sql: str) -> list[tuple[object, ...]]:
        """Rows of ``sql`` (no parameters), straight from the database."""
        if self.database is None:
            with sqlite3.connect(self.state_dir / "state.db") as conn:
                return [tuple(r) for r in conn.execute(sql).fetchall()]
        with self.database.connect() as conn:
            return [tuple(r) for r in conn.execute(sql.encode()).fetchall()]

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT count(*) FROM {table}")[0][0])  # type: ignore[call-overload]

    def problems(self) -> list[str]:
        """What is wrong with the database: SQLite's integrity checks; on both, rows
        whose parent is gone (foreign keys broken)."""
        found: list[str] = []
        if self.database is None:
            found += [str(r[0]) for r in self.query("PRAGMA integrity_check") if r[0] != "ok"]
        for child, key, parent in (
            ("tags", "stream_id", "image_streams"),
            ("tag_events", "tag_id", "tags"),
            ("tag_conditions", "tag_id", "tags"),
        ):
            orphans = self.query(
                f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p ON p.id = c.{key} "
                "WHERE p.id IS NULL"
            )[0][0]
            if orphans:
                found.append(f"{orphans} rows of {child} without their {parent} row")
        return found

"""Which store a configuration names, and opening it.

``database:`` set: PostgreSQL there; else SQLite in ``state_dir``. The password
for the database comes, in this order, from ``database_password_file:``, the
systemd credential ``database-password`` (``$CREDENTIALS_DIRECTORY``), or libpq
itself (``PGPASSWORD``, ``PGPASSFILE``, ``~/.pgpass``); messages name where it
came from, never what it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from mirrord.errors import CredentialError
from mirrord.state._leases import default_worker
from mirrord.state._postgres import PostgresStore, database_has_state
from mirrord.state._sqlite import SQLiteStore, store_exists
from mirrord.state._store import Store

CREDENTIAL = "database-password"
MAX_PASSWORD_BYTES = 4096
LIBPQ_SOURCE = "libpq (PGPASSWORD, PGPASSFILE or ~/.pgpass)"


class DatabaseSettings(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def password_file(self) -> Path | None: ...


class StateSettings(Protocol):
    """What :func:`open_state` reads of a :class:`~mirrord.config.Config`."""

    @property
    def state_dir(self) -> Path: ...

    @property
    def database(self) -> DatabaseSettings | None: ...

    @property
    def worker_name(self) -> str | None: ...


def _read_secret(path: Path, source: str) -> str:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PASSWORD_BYTES + 1)
    except OSError as exc:
        raise CredentialError(f"cannot read the database password ({source}): "
                              f"{exc.strerror}") from None
    if len(data) > MAX_PASSWORD_BYTES:
        raise CredentialError(f"the database password ({source}) is over "
                              f"{MAX_PASSWORD_BYTES} bytes: is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"the database password ({source}) is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")  # one line ending, as editors write it
    if not text:
        raise CredentialError(f"the database password ({source}) is empty")
    return text


def database_password(
    password_file: Path | None, environ: Mapping[str, str] | None = None
) -> tuple[str | None, str]:
    """(the password, where it came from); (None, libpq) to let libpq find one."""
    env = os.environ if environ is None else environ
    if password_file is not None:
        source = f"database_password_file {password_file}"
        return _read_secret(password_file, source), source
    if directory := env.get("CREDENTIALS_DIRECTORY"):
        path = Path(directory) / CREDENTIAL
        if path.exists():
            source = f"systemd credential {CREDENTIAL}"
            return _read_secret(path, source), source
    return None, LIBPQ_SOURCE


def open_state(settings: StateSettings, *, worker: str | None = None) -> Store:
    """Open (creating and migrating) the store ``settings`` names; synchronous.

    ``worker`` (default: the configured ``worker_name``, else ``host:pid``) is
    recorded in the jobs this store starts and names its locks to others.
    """
    name = worker or settings.worker_name or default_worker()
    database = settings.database
    if database is None:
        return SQLiteStore(settings.state_dir, worker=name)
    password, source = database_password(database.password_file)
    return PostgresStore(
        database.url,
        password=password,
        password_source=source,
        state_dir=settings.state_dir,
        worker=name,
    )


def state_exists(settings: StateSettings) -> bool:
    """Whether the store ``settings`` names holds state yet: readers and dry runs check
    before opening, since opening creates it. Connects, for PostgreSQL."""
    database = settings.database
    if database is None:
        return store_exists(settings.state_dir)
    password, source = database_password(database.password_file)
    return database_has_state(database.url, password=password, password_source=source)

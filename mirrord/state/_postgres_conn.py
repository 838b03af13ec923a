"""Connecting to the PostgreSQL state database, and what its errors become.

:class:`Database` holds the libpq URL (never with a password: one in it is refused
without being echoed), the password passed beside it (from a file or a systemd
credential; else libpq finds one itself in ``PGPASSFILE``/``~/.pgpass``) and the
connection settings every mirrord connection uses. Messages name the database as
``postgresql://user@host:port/dbname`` and never carry the password: libpq's
texts do not, and any that did would have it blanked out.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from mirrord.errors import DatabaseUnavailableError, StateError

CONNECT_TIMEOUT = 5  # seconds, unless the URL sets connect_timeout
# TCP keepalives: a half-open connection (the peer host died) is noticed within ~1 minute,
# and with it the advisory locks it held are dropped by the server.
_DEFAULTS = {
    "connect_timeout": CONNECT_TIMEOUT,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # ms: a statement sent to a vanished host fails, not hangs
}
# libpq texts of failures that retrying will not cure.
_PERMANENT = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "not permitted to log in",
    "pg_hba.conf",
    "permission denied",
    "authentication method",
)
_MAX_TEXT = 500
_PASSWORD_IN_URL = (
    "a password never goes in the database URL: use database_password_file, "
    "the systemd credential database-password or PGPASSFILE"
)


def location(params: dict[str, Any]) -> str:
    """``postgresql://user@host:port/dbname`` from libpq's parameters (defaults filled in)."""
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    shown = f"[{host}]" if ":" in host else host
    user = params.get("user") or "?"
    port = params.get("port") or 5432
    return f"postgresql://{user}@{shown}:{port}/{params.get('dbname') or user}"


def returned(row: Any) -> Any:
    """The row an ``INSERT … RETURNING`` gave (one always comes back)."""
    if row is None:
        raise StateError("the state database returned no row for an insert")
    return row


class Database:
    """One PostgreSQL database mirrord connects to; see the module docstring.

    ``worker`` goes into each session's ``application_name`` (``mirrord <worker>``),
    which is how a lock's holder is named to others.
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        password_source: str = "libpq (PGPASSFILE, ~/.pgpass)",
        worker: str,
    ) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            raise StateError("invalid PostgreSQL URL (libpq cannot parse it)") from None
        if "password" in params:
            raise StateError(_PASSWORD_IN_URL)
        self.url = url
        self.params = params
        self.location = location(params)
        self.user = str(params.get("user") or "?")
        self.password_source = password_source
        self._password = password
        kwargs: dict[str, Any] = {k: v for k, v in _DEFAULTS.items() if k not in params}
        kwargs.update(autocommit=True, application_name=f"mirrord {worker}"[:63])
        if password is not None:
            kwargs["password"] = password
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"Database({self.location!r})"

    def connect(self, **extra: Any) -> psycopg.Connection[Any]:
        """A new autocommit connection; StateError (DatabaseUnavailableError when it may
        pass) naming the database. ``extra``: more of psycopg.connect's arguments."""
        try:
            return psycopg.connect(self.url, **self.kwargs, **extra)
        except psycopg.Error as exc:
            raise self.connect_error(exc) from None

    def text(self, exc: BaseException) -> str:
        """The driver's message on one line, bounded, without the password."""
        text = " ".join(str(exc).split())
        if self._password:
            text = text.replace(self._password, "***")
        return text[:_MAX_TEXT] or type(exc).__name__

    def connect_error(self, exc: psycopg.Error) -> StateError:
        text = self.text(exc)
        where = f"state database {self.location}"
        if "no password supplied" in text:
            return StateError(
                f"{where}: the server wants a password for user {self.user} and none was "
                "found: set database_password_file, the systemd credential "
                "database-password, or PGPASSFILE"
            )
        if "password authentication failed" in text:
            return StateError(
                f"{where}: the server refused the password of user {self.user} "
                f"(password from {self.password_source})"
            )
        if any(marker in text for marker in _PERMANENT):
            return StateError(f"{where}: cannot connect: {text}")
        return DatabaseUnavailableError(f"{where}: cannot connect: {text}")

    def error(self, exc: psycopg.Error, doing: str = "") -> StateError:
        """A failed statement: temporary when the connection broke (or the server shut
        down, cancelled it, or found a serialisation conflict), else permanent."""
        prefix = f"state database {self.location}: " + (f"{doing}: " if doing else "")
        if isinstance(exc, psycopg.OperationalError):
            return DatabaseUnavailableError(prefix + self.text(exc))
        return StateError(prefix + self.text(exc))

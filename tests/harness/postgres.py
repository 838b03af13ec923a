"""A real PostgreSQL (Debian's `postgresql` package) run by the tests: a throwaway cluster.

    cluster = PostgresCluster().start()         # initdb + postgres on 127.0.0.1:<free port>
    db = cluster.create_database()              # owned by cluster.user (a password login)
    db.url                                      # postgresql://mirrord@127.0.0.1:PORT/<name>
    cluster.password                            # that user's password (scram-sha-256)
    cluster.drop_database(db.name)
    cluster.stop()                              # and the cluster's files are removed

The cluster is made with the package's own `initdb` under /usr/lib/postgresql/<N>/bin (not
the /usr/bin wrappers, not the distribution's default cluster, which may or may not be
running) in a fresh temporary directory, and its `postgres` server runs as a child of the
test process (so it dies with pytest, like the registries). As root both run as the
`postgres` system user, since PostgreSQL refuses to run as root. Settings favour speed over
durability (fsync off): nothing here must survive a crash of the machine.

TCP connections from 127.0.0.1 need the password (scram-sha-256); the Unix socket in the
cluster's directory trusts anyone, which `admin()` uses to create users and databases.
"""

from __future__ import annotations

import atexit
import ctypes
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["PostgresCluster", "PostgresDatabase", "PostgresStartError", "postgres_bindir"]

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIVE: set[PostgresCluster] = set()
_SYSTEM_USER = "postgres"
_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresStartError(RuntimeError):
    pass


def postgres_bindir() -> Path:
    """``$MIRRORD_TEST_PG_BINDIR``, else the newest /usr/lib/postgresql/<N>/bin with initdb."""
    if env := os.environ.get("MIRRORD_TEST_PG_BINDIR"):
        return Path(env)
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresStartError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "apt-get install postgresql"
        )
    return found[-1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # in the child, after it changed user (so the flag stays)
    _LIBC.prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG: fast shutdown when pytest dies


@dataclass(frozen=True)
class PostgresDatabase:
    """One database of the cluster, owned by the cluster's login user."""

    name: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)

    @property
    def url(self) -> str:
        """The libpq URL without the password, as mirrord's `database:` takes it."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.name}"

    def connect(self, **kw: Any) -> psycopg.Connection[Any]:
        """A connection as the login user over TCP (with the password), autocommit."""
        return psycopg.connect(self.url, password=self.password, autocommit=True, **kw)


class PostgresCluster:
    """One throwaway cluster; see the module docstring.

    Attributes: `port`, `host` ("127.0.0.1"), `user` (the login user, "mirrord"),
    `password`, `directory`, `data_dir`, `socket_dir`, `log_path`, `bindir`.
    """

    def __init__(self, *, user: str = "mirrord", bindir: Path | None = None) -> None:
        self.bindir = bindir or postgres_bindir()
        self.host = "127.0.0.1"
        self.port = 0
        self.user = user
        self.password = "harness-" + secrets.token_urlsafe(18)
        self._as_root = os.geteuid() == 0
        # Not under pytest's tmp_path: the server user must be able to reach it, and
        # pytest's directories are private to root.
        self.directory = Path(tempfile.mkdtemp(prefix="mirrord-pg-", dir=self._parent()))
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory  # short: a Unix socket path has ~100 bytes
        self.log_path = self.directory / "postgres.log"
        if self._as_root:
            entry = pwd.getpwnam(_SYSTEM_USER)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._proc: subprocess.Popen[bytes] | None = None
        self._databases = 0
        self._initdb()

    def _parent(self) -> str | None:
        """Where the cluster's directory goes: the temporary directory, unless (as root)
        the server's user could not reach into it; then /tmp."""
        if not self._as_root:
            return None
        base = Path(tempfile.gettempdir()).resolve()
        if all(p.stat().st_mode & 0o001 for p in (base, *base.parents)):
            return str(base)
        return "/tmp"

    def __repr__(self) -> str:  # never the password
        return f"PostgresCluster({self.host}:{self.port}, {self.directory})"

    # -- running the server's programs ----------------------------------------------------
    def _user_kw(self) -> dict[str, Any]:
        if not self._as_root:
            return {}
        return {
            "user": _SYSTEM_USER,
            "group": grp.getgrgid(pwd.getpwnam(_SYSTEM_USER).pw_gid).gr_name,
            "extra_groups": [],
        }

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync", "--no-instructions",
            ],
            stdin=subprocess.DEVNULL, capture_output=True, cwd=self.directory,
            check=False, **self._user_kw(),
        )
        if result.returncode != 0:
            raise PostgresStartError(
                f"initdb failed ({result.returncode}):\n"
                + (result.stdout + result.stderr).decode(errors="replace")[-3000:]
            )
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# mirrord test harness\n"
                f"listen_addresses = '{self.host}'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "log_min_messages = warning\nlog_connections = off\n"
            )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> PostgresCluster:
        """Start the server (a fresh port, retried on a collision, unless it has one) and
        create the login user once."""
        if self.running:
            return self
        fixed = self.port != 0
        for _ in range(8):
            if not fixed:
                self.port = _free_port()
            if self._launch(timeout):
                _LIVE.add(self)
                self._ensure_user()
                return self
            time.sleep(0.25)
        raise PostgresStartError(f"postgres did not start; see {self.log_path}:\n{self.log_tail()}")

    def _launch(self, timeout: float) -> bool:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        in_main = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.directory,
                preexec_fn=_die_with_parent if in_main else None, **self._user_kw(),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_path.read_bytes()[offset:]
                self._proc = None
                if b"could not bind" in tail or b"already in use" in tail:
                    return False
                raise PostgresStartError("postgres exited:\n" + tail.decode(errors="replace"))
            try:
                with self.admin():
                    return True
            except psycopg.OperationalError:
                time.sleep(0.02)
        self.stop()
        raise PostgresStartError(f"postgres not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are disconnected), SIGKILL after 10 s; the files
        stay (start() again)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _LIVE.discard(self)

    def restart(self) -> PostgresCluster:
        """Stop and start again on the same port: every session is cut."""
        self.stop()
        return self.start()

    def remove(self) -> None:
        """Stop and delete the cluster's directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    # -- users and databases -----------------------------------------------------------------
    @contextmanager
    def admin(self, dbname: str = "postgres") -> Iterator[psycopg.Connection[Any]]:
        """The superuser over the cluster's Unix socket (trusted), autocommit."""
        conn = psycopg.connect(
            host=str(self.socket_dir), port=self.port, user="postgres", dbname=dbname,
            autocommit=True, connect_timeout=2,
        )
        try:
            yield conn
        finally:
            conn.close()

    def _ensure_user(self) -> None:
        with self.admin() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,)
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            # The password is sent as a literal: utility statements take no parameters.
            conn.execute(
                psycopg.sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    psycopg.sql.SQL(verb),
                    psycopg.sql.Identifier(self.user),
                    psycopg.sql.Literal(self.password),
                )
            )

    def create_database(
        self, name: str | None = None, *, icu_locale: str | None = None
    ) -> PostgresDatabase:
        """A new, empty database owned by the login user (``t<N>`` unless named);
        ``icu_locale`` (``en-US``) collates its text by ICU instead of bytes (C.UTF-8)."""
        self._databases += 1
        name = name or f"t{self._databases}_{secrets.token_hex(3)}"
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"database name {name!r}: lower-case letters, digits and _")
        # FILE_COPY: half the time of the default WAL_LOG with fsync off.
        statement = psycopg.sql.SQL("CREATE DATABASE {} OWNER {} STRATEGY FILE_COPY").format(
            psycopg.sql.Identifier(name), psycopg.sql.Identifier(self.user)
        )
        if icu_locale is not None:
            statement += psycopg.sql.SQL(
                " TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE {}"
            ).format(psycopg.sql.Literal(icu_locale))
        with self.admin() as conn:
            conn.execute(statement)
        return PostgresDatabase(name, self.host, self.port, self.user, self.password)

    def drop_database(self, name: str) -> None:
        """Drop it, disconnecting whoever is still connected."""
        with self.admin() as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)
                )
            )


def _stop_all() -> None:
    for cluster in list(_LIVE):
        cluster.remove()


atexit.register(_stop_all)

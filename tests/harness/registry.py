"""A real CNCF distribution registry (Debian's `docker-registry`) run by the tests.

    reg = RegistryProcess(tmp_path / "mirror").start()        # anonymous
    reg = RegistryProcess(d, users={"alice": "pw"}).start()   # htpasswd Basic auth
    reg = RegistryProcess(d, token_server=ts).start()         # token auth (see tokenserver.py)
    reg = RegistryProcess(d, tls=True).start()                # https with a self-signed cert
    reg = RegistryProcess(d, tls=ca_and_leaf(d)).start()      # https, a leaf of a CA (tls.py)

It binds 127.0.0.1 on a free port, keeps its storage, config and log in `directory`, and logs
every HTTP request (Apache combined format, on stdout) to `log_path` together with the
registry's own log (stderr). `requests()` parses that log:

    m = reg.mark()
    ... run mirrord ...
    assert reg.requests(since=m) == [("HEAD", "/v2/app/manifests/1.0")]
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from .images import RegistryHTTP
from .tls import ServerTLS, self_signed
from .tokenserver import TokenServer

__all__ = ["AccessEntry", "RegistryProcess", "RegistryStartError", "free_port"]

BINARY = os.environ.get("MIRRORD_TEST_REGISTRY_BIN", "docker-registry")
_MARK_PARAM = "harness-mark"
# Apache combined format, e.g.
#   127.0.0.1 - - [28/Nov/2026:04:04:00 +0000] "HEAD /v2/a/manifests/1 HTTP/1.1" 404 96 ""
#   "curl/7.88.1"   (one line)
_ACCESS_RE = re.compile(
    r'^(?P<remote>\S+) \S+ (?P<user>\S+) \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) '
    r'(?P<proto>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-)'
)
_LIVE: set[RegistryProcess] = set()  # started and not stopped: stopped at exit
_LIBC = ctypes.CDLL(None, use_errno=True)


class RegistryStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class AccessEntry:
    """One line of the registry's access log."""

    method: str
    path: str  # request URI, query string included
    status: int
    size: int
    protocol: str = ""  # "HTTP/1.1", "HTTP/2.0"

    @property
    def route(self) -> str:
        """The path without its query string."""
        return self.path.partition("?")[0]


def free_port() -> int:
    """A port the kernel just considered free on 127.0.0.1 (bind 0, read, close).

    Racy by nature (someone else may bind it before the caller does): only for a server that
    must be told its port up front, and then retried on "address in use", as `start()` does.
    A port where nothing must answer: `outage.refused_port()` (the `refused_host` fixture);
    an in-process server: bind port 0 and read the port back."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the registry dies with pytest


class RegistryProcess:
    """One `docker-registry serve` process. See the module docstring.

    Attributes: `host` ("127.0.0.1:PORT"), `url`, `port`, `scheme`, `directory`,
    `storage_path`, `config_path`, `log_path`, `users` (name -> password; {} if anonymous),
    `username`/`password` (the first user, or None), `token_server`, `ca_file` (the TLS
    certificate to trust, or None), `delete_enabled`.
    """

    def __init__(
        self,
        directory: Path,
        *,
        users: Mapping[str, str] | None = None,
        token_server: TokenServer | None = None,
        tls: bool | ServerTLS = False,
        delete_enabled: bool = True,
        extra_config: Mapping[str, Any] | None = None,
        port: int | None = None,
    ) -> None:
        if users and token_server:
            raise ValueError("choose htpasswd `users` or a `token_server`, not both")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.storage_path = self.directory / "storage"
        self.config_path = self.directory / "config.yml"
        self.log_path = self.directory / "registry.log"
        self.token_server = token_server
        self.users: dict[str, str] = dict(token_server.users if token_server else users or {})
        self.delete_enabled = delete_enabled
        self.extra_config = dict(extra_config or {})
        self.port = port or 0
        self._secret = "mirrord-harness-" + uuid.uuid4().hex  # kept across restarts
        self._instance = uuid.uuid4().hex
        self.ca_file: Path | None = None
        self._tls_files: tuple[Path, Path] | None = None  # (certificate chain, key)
        if isinstance(tls, ServerTLS):
            self.ca_file, self._tls_files = tls.ca_path, (tls.cert_path, tls.key_path)
        elif tls:
            self.ca_file = self_signed(self.directory, "registry-tls").cert_path
            self._tls_files = (self.ca_file, self.ca_file.with_suffix(".key"))
        self._htpasswd: Path | None = self._write_htpasswd(users) if users else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._probe: httpx.Client | None = None
        self._placeholder: socket.socket | None = None  # holds the port while stopped

    # -- properties ------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.ca_file else "http"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def username(self) -> str | None:
        return next(iter(self.users), None)

    @property
    def password(self) -> str | None:
        return self.users[self.username] if self.username else None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What to pass as httpx `verify=` to trust this registry (True without TLS)."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The registry process's id while it runs (the benchmark reads its CPU time)."""
        return self._proc.pid if self.running and self._proc is not None else None

    def __repr__(self) -> str:  # never the passwords
        auth = "token" if self.token_server else "htpasswd" if self._htpasswd else "anonymous"
        return f"<RegistryProcess {self.url} {auth} running={self.running}>"

    # -- configuration ---------------------------------------------------------------------
    def _write_htpasswd(self, users: Mapping[str, str]) -> Path:
        lines = []
        for name, password in users.items():
            out = subprocess.run(
                ["htpasswd", "-nbB", "-C", "4", name, password],
                check=True, capture_output=True, text=True,
            ).stdout.strip()
            lines.append(out)
        path = self.directory / "htpasswd"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _config(self) -> dict[str, Any]:
        http: dict[str, Any] = {
            "addr": self.host,
            "secret": self._secret,
            # lets the readiness probe tell this process from whatever else holds the port
            "headers": {"X-Content-Type-Options": ["nosniff"],
                        "X-Harness-Instance": [self._instance]},
        }
        if self._tls_files:
            http["tls"] = {"certificate": str(self._tls_files[0]),
                           "key": str(self._tls_files[1])}
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False},
                    "fields": {"service": "registry"}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_path)},
                "delete": {"enabled": self.delete_enabled},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        if self._htpasswd:
            cfg["auth"] = {"htpasswd": {"realm": "mirrord-harness", "path": str(self._htpasswd)}}
        elif self.token_server:
            ts = self.token_server
            cfg["auth"] = {"token": {"realm": ts.realm, "service": ts.service,
                                     "issuer": ts.issuer, "rootcertbundle": str(ts.cert_path)}}
        for key, value in self.extra_config.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        return cfg

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> RegistryProcess:
        """Start and wait until `GET /v2/` answers. A fresh port is chosen (and retried on a
        collision) unless the registry already has one (restart keeps it)."""
        if self.running:
            return self
        fixed = self.port != 0
        for _ in range(8):
            if not fixed:
                self.port = free_port()
            if self._launch(timeout):
                _LIVE.add(self)
                return self
            if fixed:  # same port: wait for whoever holds it to let go
                time.sleep(0.25)
        raise RegistryStartError(f"registry did not start on {self.host}; see {self.log_path}:\n"
                                 + self._log_tail())

    def _launch(self, timeout: float) -> bool:
        self._release_port()
        self.config_path.write_text(yaml.safe_dump(self._config(), sort_keys=False))
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            in_main = threading.current_thread() is threading.main_thread()
            self._proc = subprocess.Popen(
                [BINARY, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.directory,
                preexec_fn=_die_with_parent if in_main else None,
            )
        self._probe = httpx.Client(verify=self.ssl_context(), timeout=2.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._close_probe()
                tail = self.log_path.read_bytes()[log_offset:]
                if b"address already in use" in tail:
                    return False
                raise RegistryStartError(f"registry exited ({self._proc.returncode}):\n"
                                         + tail.decode(errors="replace")[-2000:])
            try:
                resp = self._probe.get(f"{self.url}/v2/")
                if resp.headers.get("x-harness-instance") == self._instance:
                    return True  # 200 (anonymous) or 401 (auth)
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        self.stop()
        raise RegistryStartError(f"registry on {self.host} not ready after {timeout}s:\n"
                                 + self._log_tail())

    def _close_probe(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def stop(self, *, keep_port: bool = False) -> None:
        """Terminate (SIGTERM, then SIGKILL after 5 s) and wait. Storage is kept.

        `keep_port`: hold the port until the next `start()` with a bound, non-listening
        socket, so connections are refused (a real outage) and nothing else can take it."""
        self._close_probe()
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            _LIVE.discard(self)
        if keep_port and self.port and self._placeholder is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # SO_REUSEADDR: the registry's own connections may linger in TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", self.port))
            except OSError:
                sock.close()
            else:
                self._placeholder = sock
        elif not keep_port:
            self._release_port()

    def _release_port(self) -> None:
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    def restart(self) -> RegistryProcess:
        """Stop and start again on the same port with the same storage (the port is held
        in between)."""
        self.stop(keep_port=True)
        return self.start()

    def wipe(self) -> None:
        """Delete all content (stop, remove storage, start on the same port)."""
        self.stop()
        shutil.rmtree(self.storage_path, ignore_errors=True)
        self.start()

    def __enter__(self) -> RegistryProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    # -- clients ---------------------------------------------------------------------------
    def client(self, username: str | None = None, password: str | None = None, *,
               anonymous: bool = False) -> RegistryHTTP:
        """A `RegistryHTTP` for this registry; the first user's credentials by default.
        Close it (or use `with`)."""
        if not anonymous and username is None:
            username, password = self.username, self.password
        return RegistryHTTP(self.url, username, password, verify=self.ssl_context())

    # -- request log -----------------------------------------------------------------------
    def _sync(self) -> None:
        """Make sure every request answered so far is in the log: send a marker request and
        wait until its log line appears (the access log is written before a response ends)."""
        if not self.running or self._probe is None:
            return
        token = uuid.uuid4().hex
        needle = f"{_MARK_PARAM}={token}".encode()
        self._probe.get(f"{self.url}/v2/", params={_MARK_PARAM: token})
        deadline = time.monotonic() + 5
        with open(self.log_path, "rb") as f:
            while time.monotonic() < deadline:
                f.seek(max(0, self.log_path.stat().st_size - 65536))
                if needle in f.read():
                    return
                time.sleep(0.005)
        raise RuntimeError(f"marker request never reached {self.log_path}")

    def mark(self) -> int:
        """A position in the log: `requests(since=mark)` returns only later requests."""
        self._sync()
        return self.log_path.stat().st_size

    def access_log(self, since: int | None = None) -> list[AccessEntry]:
        """Parsed access-log entries (marker requests excluded), oldest first."""
        self._sync()
        with open(self.log_path, "rb") as f:
            f.seek(since or 0)
            text = f.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            m = _ACCESS_RE.match(line)
            if m and f"{_MARK_PARAM}=" not in m["path"]:
                size = int(m["size"]) if m["size"] != "-" else 0
                out.append(AccessEntry(m["method"], m["path"], int(m["status"]), size,
                                       m["proto"]))
        return out

    def requests(self, since: int | None = None) -> list[tuple[str, str]]:
        """(method, path) of every request since `since` (a `mark()`), oldest first."""
        return [(e.method, e.path) for e in self.access_log(since)]

    def count(self, method: str | None = None, path: str | None = None,
              since: int | None = None) -> int:
        """How many requests match `method` and the regex `path` (searched) since `since`."""
        rx = re.compile(path) if path else None
        return sum(1 for e in self.access_log(since)
                   if (method is None or e.method == method) and (rx is None or rx.search(e.path)))


@atexit.register
def _stop_all() -> None:
    for reg in list(_LIVE):
        reg.stop()

"""Helpers for tests that run `mirrord daemon` as a real process.

    with DaemonProcess(setup.path, stop_timeout=2) as daemon:   # started, URL known
        daemon.wait_until(lambda: daemon.metric("mirrord_stream_runs_total", ...) >= 1)
        code, seconds = daemon.terminate()

Also: `SlowProxy`, a TCP proxy that forwards the upstream's answers at a fixed rate
(a slow source on loopback), and `NotifySocket`, an AF_UNIX datagram socket standing in
for systemd's $NOTIFY_SOCKET.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

_LIBC = ctypes.CDLL(None, use_errno=True)
_LISTENING = re.compile(r"listening on (http://\S+)")


def _die_with_parent() -> None:
    _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no daemon outlives pytest


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.05)


class DaemonProcess:
    """`python -m mirrord daemon --config PATH` with its log in a file next to the config."""

    def __init__(
        self,
        config: Path,
        *,
        stop_timeout: float | None = None,
        log_format: str = "text",
        log_level: str = "info",
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.log_path = config.parent / "daemon.log"
        self.stop_timeout = stop_timeout
        self.log_format = log_format
        self.log_level = log_level
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.http = httpx.Client(timeout=10.0)

    def start(self, timeout: float = 15.0) -> DaemonProcess:
        args = [sys.executable, "-m", "mirrord", "--log-format", self.log_format,
                "--log-level", self.log_level, "daemon", "--config", str(self.config)]
        if self.stop_timeout is not None:
            args += ["--stop-timeout", str(self.stop_timeout)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                preexec_fn=_die_with_parent,
            )
        match = wait_until(
            lambda: self._exited() or _LISTENING.search(self.log()), timeout, "the daemon to listen"
        )
        self.url = match.group(1)
        return self

    def _exited(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({self.proc.returncode}):\n{self.log()}")

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        self.http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0, since: int = 0) -> re.Match[str]:
        """The first match of regex `pattern` in the log after character `since`."""
        rx = re.compile(pattern)
        return wait_until(  # type: ignore[no-any-return]
            lambda: rx.search(self.log(), since), timeout, f"log line {pattern!r}"
        )

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def terminate(self, timeout: float = 30.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took to exit)."""
        assert self.proc is not None
        started = time.monotonic()
        self.signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    # -- HTTP ---------------------------------------------------------------------------
    def get(self, path: str) -> httpx.Response:
        return self.http.get(self.url + path)

    def post(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.http.post(self.url + path, headers=headers)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of /metrics, parsed by prometheus_client's own parser."""
        response = self.get("/metrics")
        assert response.status_code == 200
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """One sample's value (0 when absent)."""
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def runs(self, stream: str, result: str = "succeeded") -> float:
        return self.metric("mirrord_stream_runs_total", stream=stream, result=result)

    def wait_for_runs(self, stream: str, count: int, timeout: float = 15.0) -> None:
        wait_until(lambda: self.runs(stream) >= count, timeout, f"{count} runs of {stream}")


class SlowProxy:
    """A TCP proxy on 127.0.0.1 forwarding to `target` ("host:port"); answers flow back at
    `rate` bytes per second. `bytes_down` counts what it forwarded to clients."""

    def __init__(self, target: str, rate: float) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.rate = rate
        self.bytes_down = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.rate),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rate: float | None) -> None:
        chunk = 16384
        with contextlib.suppress(OSError):  # either side went away: the connection is over
            while data := src.recv(chunk):
                dst.sendall(data)
                if rate is not None:
                    self.bytes_down += len(data)
                    time.sleep(len(data) / rate)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for s in self._sockets:
            s.close()


class NotifySocket:
    """A bound AF_UNIX datagram socket; `env` points $NOTIFY_SOCKET at it."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")  # sun_path is short
        self.path = os.path.join(self._dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.path}

    def receive(self) -> list[str]:
        """Every message received so far."""
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return self.messages

    def wait_for(self, field: str, timeout: float = 10.0) -> str:
        """The first message holding the line `field` (or starting with it when it ends '=')."""
        def found() -> str | None:
            for message in self.receive():
                for line in message.split("\n"):
                    if line == field or (field.endswith("=") and line.startswith(field)):
                        return message
            return None
        return wait_until(found, timeout, f"sd_notify {field}")  # type: ignore[no-any-return]

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self._dir)

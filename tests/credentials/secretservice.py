"""A private, real Secret Service for tests: dbus-daemon + gnome-keyring-daemon.

:class:`PrivateSecretService` starts its own D-Bus session bus (a minimal
config with no service activation, so nothing of the host's session is
started) and ``gnome-keyring-daemon --unlock --components=secrets`` on it,
with a private HOME / XDG_DATA_HOME / XDG_RUNTIME_DIR, and waits until the
default collection is open and unlocked. It works headless (no X, no prompts).

The pytest fixture :func:`secret_service` (session scope) runs one for the
whole session, points this process's ``DBUS_SESSION_BUS_ADDRESS`` at it, and
makes ``keyring.backends.SecretService.Keyring`` the keyring backend; both are
restored afterwards. To reuse it elsewhere, import it into a conftest::

    from tests.credentials.secretservice import secret_service  # noqa: F401
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import keyring
import pytest
import secretstorage
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from keyring.backends.SecretService import Keyring as SecretServiceKeyring

SECRETS_BUS_NAME = "org.freedesktop.secrets"
KEYRING_PASSWORD = "mirrord-test-keyring"
START_TIMEOUT = 20.0

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class SecretServiceUnavailable(RuntimeError):
    """The private Secret Service did not come up; the message says why."""


class PrivateSecretService:
    """One dbus-daemon and one gnome-keyring-daemon, owned by this object."""

    def __init__(self, password: str = KEYRING_PASSWORD) -> None:
        self.password = password
        # The bus socket lives in here: keep the path well under AF_UNIX's 108 bytes.
        short = "/tmp" if len(tempfile.gettempdir()) > 60 else None
        self.root = Path(tempfile.mkdtemp(prefix="mirrord-ss-", dir=short))
        self.address = ""
        self._bus: subprocess.Popen[bytes] | None = None
        self._keyring: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The daemons' environment: private HOME and XDG dirs, this bus."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.root / "home"),
            "XDG_DATA_HOME": str(self.root / "data"),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_CACHE_HOME": str(self.root / "cache"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
        }
        if self.address:
            env["DBUS_SESSION_BUS_ADDRESS"] = self.address
        return env

    def start(self) -> None:
        """Start both daemons and wait for an unlocked default collection."""
        for name in ("home", "data", "config", "cache", "run"):
            (self.root / name).mkdir(mode=0o700, exist_ok=True)
        try:
            self._start_bus()
            self._start_keyring()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the daemons this object started and remove its directory."""
        for process in (self._keyring, self._bus):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._keyring = self._bus = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateSecretService:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start_bus(self) -> None:
        socket = self.root / "run" / "bus"
        config = self.root / "bus.conf"
        config.write_text(_BUS_CONFIG.format(socket=socket))
        self._log = (self.root / "daemons.log").open("wb")
        self._bus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=self.env,
        )
        assert self._bus.stdout is not None
        address = self._bus.stdout.readline().decode().strip()
        self._bus.stdout.close()
        if not address:
            raise SecretServiceUnavailable(f"dbus-daemon did not start: {self._output()}")
        self.address = address

    def _start_keyring(self) -> None:
        self._keyring = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        assert self._keyring.stdin is not None
        self._keyring.stdin.write(self.password.encode())
        self._keyring.stdin.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        why = "not started"
        while time.monotonic() < deadline:
            assert self._keyring is not None
            if self._keyring.poll() is not None:
                raise SecretServiceUnavailable(
                    f"gnome-keyring-daemon exited ({self._keyring.returncode}): {self._output()}"
                )
            why = self._check_collection()
            if not why:
                return
            time.sleep(0.05)
        raise SecretServiceUnavailable(f"Secret Service not ready: {why}; {self._output()}")

    def _check_collection(self) -> str:
        """'' when the default collection is open and unlocked, else why not."""
        if not self._name_has_owner():
            return f"{SECRETS_BUS_NAME} not on the bus yet"
        with self.connect() as connection:
            try:
                collection = secretstorage.get_default_collection(connection)
            except secretstorage.exceptions.SecretStorageException as exc:
                return f"no default collection ({exc})"
            if collection.is_locked():
                return "the default collection is locked"
        return ""

    def connect(self) -> DBusConnection:
        """A new D-Bus connection to this private bus (use it as a context manager)."""
        return open_dbus_connection(bus=self.address)

    def _name_has_owner(self) -> bool:
        bus = DBusAddress(
            "/org/freedesktop/DBus",
            bus_name="org.freedesktop.DBus",
            interface="org.freedesktop.DBus",
        )
        with self.connect() as connection:
            reply = connection.send_and_get_reply(
                new_method_call(bus, "NameHasOwner", "s", (SECRETS_BUS_NAME,)), timeout=5
            )
        return bool(reply.body[0])

    def _output(self) -> str:
        path = self.root / "daemons.log"
        return path.read_text(errors="replace").strip() if path.exists() else ""

    def clear(self, service_prefix: str = "mirrord:") -> int:
        """Delete every item whose ``service`` attribute starts with the prefix."""
        deleted = 0
        with self.connect() as connection:
            collection = secretstorage.get_default_collection(connection)
            for item in collection.get_all_items():
                if item.get_attributes().get("service", "").startswith(service_prefix):
                    item.delete()
                    deleted += 1
        return deleted


@contextlib.contextmanager
def secret_service_environment() -> Iterator[PrivateSecretService]:
    """A running private Secret Service that this process and ``keyring`` use."""
    if shutil.which("dbus-daemon") is None or shutil.which("gnome-keyring-daemon") is None:
        raise SecretServiceUnavailable("dbus-daemon and gnome-keyring-daemon are required")
    with PrivateSecretService() as service, pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBUS_SESSION_BUS_ADDRESS", service.address)
        # Restored as it was (possibly not yet detected) without running detection now.
        patch.setattr(keyring.core, "_keyring_backend", SecretServiceKeyring())
        yield service


@pytest.fixture(scope="session")
def secret_service() -> Iterator[PrivateSecretService]:
    """A real, private Secret Service (gnome-keyring) as the keyring backend."""
    with secret_service_environment() as service:
        yield service

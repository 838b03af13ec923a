"""sd_notify(3) by hand: datagrams to ``$NOTIFY_SOCKET`` (READY=1, STATUS=, WATCHDOG=1...).

Without ``$NOTIFY_SOCKET`` (not under systemd) every call does nothing. The
variables are removed from the environment, so the commands mirrord runs
(notification hooks) cannot speak for it.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("mirrord.sdnotify")


class SystemdNotifier:
    def __init__(self) -> None:
        address = os.environ.pop("NOTIFY_SOCKET", "")
        usec = os.environ.pop("WATCHDOG_USEC", "")
        pid = os.environ.pop("WATCHDOG_PID", "")
        # "@name" is an abstract socket; only AF_UNIX paths and abstract names are supported
        self.address = "\0" + address[1:] if address.startswith("@") else address
        if not address.startswith(("/", "@")):
            self.address = ""
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) and mine else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> None:
        """Send ``fields`` ("READY=1", "STATUS=...") as one message."""
        if not self.address:
            return
        message = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), exc)

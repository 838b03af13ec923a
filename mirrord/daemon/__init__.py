"""``mirrord daemon``: the scheduler, the run gate, the HTTP endpoints, the metrics and
the systemd notifications, in one task group. See :mod:`._daemon` for the lifecycle."""

from __future__ import annotations

from mirrord.daemon._daemon import Daemon
from mirrord.daemon._gate import RunGate
from mirrord.daemon._metrics import Metrics
from mirrord.daemon._scheduler import JobSpec, Scheduler
from mirrord.daemon._server import HTTPServer, create_app

__all__ = ["Daemon", "HTTPServer", "JobSpec", "Metrics", "RunGate", "Scheduler", "create_app"]

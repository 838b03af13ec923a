"""Log output: plain lines for a terminal or journald, JSON lines on request.

Plain lines carry no timestamp when journald is the reader (it adds its own,
``$JOURNAL_STREAM`` tells), and logfmt-style ``key=value`` extras otherwise.
Secrets never reach a log record: errors name credential sources, not values.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

_STANDARD = frozenset(vars(logging.makeLogRecord({})))


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    """``LEVEL logger: message key=value…``; a timestamp unless journald adds one."""

    def __init__(self, with_time: bool) -> None:
        super().__init__()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD and k != "message"
        )
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f" {extras}"
        if self.with_time:
            line = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + " " + line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(fmt: str = "text", level: str = "info", stream: str = "stderr") -> None:
    """Configure the root logger (``fmt``: ``text`` or ``json``; ``stream``: stderr or stdout)."""
    handler = logging.StreamHandler(sys.stdout if stream == "stdout" else sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(PlainFormatter(with_time="JOURNAL_STREAM" not in os.environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; that is our metrics' job, not the log's.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # psycopg's pool logs every connection it lends at INFO; its warnings (a failed
    # connection attempt, never with the password) stay.
    logging.getLogger("psycopg").setLevel(logging.WARNING)

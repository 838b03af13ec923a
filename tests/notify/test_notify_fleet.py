"""Two workers delivering one PostgreSQL outbox (issue 16): each event reaches its
receiver once, though both notifiers run at the same time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness.postgres import PostgresCluster
from harness.storetools import Backend

from mirrord.config import NotificationConfig
from mirrord.notify import Notifier

pytestmark = pytest.mark.anyio
DIGEST = "sha256:" + "a" * 64


@pytest.fixture
def hook() -> Iterator[tuple[str, list[bytes]]]:
    """A webhook receiver answering 200 after 0.3 s (the two workers' rounds overlap)."""
    bodies: list[bytes] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                bodies.append(body)
            time.sleep(0.3)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_two_workers_deliver_each_event_once(
    postgres: PostgresCluster, tmp_path: Path, hook: tuple[str, list[bytes]]
) -> None:
    url, bodies = hook
    database = postgres.create_database()
    password_file = tmp_path / "db-password"
    password_file.write_text(database.password + "\n", encoding="utf-8")
    text = f"database: {database.url}\ndatabase_password_file: {password_file}\n"
    backend = Backend("postgresql", tmp_path, text, database)
    try:
        receivers = [NotificationConfig(url=url)]
        one = Notifier(backend.open(worker="one"), receivers, max_parallel=2)
        two = Notifier(backend.open(worker="two"), receivers, max_parallel=2)
        for n in range(8):
            await one.publish({"action": "push", "n": n, "digest": DIGEST})
        reports = []

        async def deliver(notifier: Notifier) -> None:
            reports.append(await notifier.deliver_due())

        async with anyio.create_task_group() as tg:
            tg.start_soon(deliver, one)
            tg.start_soon(deliver, two)
        sent = sorted(json.loads(b)["events"][0]["n"] for b in bodies)
        assert sent == list(range(8))  # every event once, none twice
        assert sum(r.delivered for r in reports) == 8
    finally:
        backend.close()
        postgres.drop_database(database.name)

"""Notifications: real webhook receivers on loopback, real commands, the SQLite outbox."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from mirrord.config import NotificationConfig
from mirrord.notify import (
    EVENTS_MEDIA_TYPE,
    INSTANCE_ID,
    SIGNATURE_HEADER,
    DeliveryReport,
    Notifier,
    tag_event,
)
from mirrord.state import SQLiteStore, open_store

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
OLD_DIGEST = "sha256:" + "b" * 64
KEY = "hmac-key-do-not-leak"
TOKEN = "tok-s3cr3t-in-query"



@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: records every request, answers ``statuses`` in turn (then 200)."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def posts(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.requests.append(
                    Received("POST", self.path, dict(self.headers.items()), body)
                )
                status = state.statuses.pop(0) if state.statuses else 200
            if state.delay:
                state.stop.wait(state.delay)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = open_store(tmp_path / "state")
    yield s
    s.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook.key"
    path.write_text(KEY + "\n")
    return path


def event(tag: str = "9.4", previous: str | None = OLD_DIGEST) -> dict[str, Any]:
    return tag_event(
        stream="ubi9/ubi",
        tag=tag,
        repository="mirror/ubi9/ubi",
        digest=DIGEST,
        media_type="application/vnd.oci.image.index.v1+json",
        size=1234,
        url=f"http://127.0.0.1:5000/v2/mirror/ubi9/ubi/manifests/{DIGEST}",
        source=f"registry.redhat.io/ubi9/ubi:{tag}",
        previous_digest=previous,
        now=T0,
    )


def verify(request: Received, key: str) -> None:
    expected = "sha256=" + hmac.new(key.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers[SIGNATURE_HEADER], expected)


def script(code: str, *args: str, timeout: float = 10.0) -> NotificationConfig:
    return NotificationConfig(command=(sys.executable, "-c", code, *args), timeout=timeout)


def test_tag_event_has_the_distribution_shape() -> None:
    e = event()
    assert uuid.UUID(e["id"]).version == 4
    assert e["timestamp"] == "2024-05-01T12:00:00.000000Z"
    assert e["action"] == "push"
    assert e["target"] == {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": DIGEST,
        "size": 1234,
        "length": 1234,
        "repository": "mirror/ubi9/ubi",
        "tag": "9.4",
        "url": f"http://127.0.0.1:5000/v2/mirror/ubi9/ubi/manifests/{DIGEST}",
    }
    assert e["source"] == {
        "addr": socket.gethostname(),
        "instanceID": INSTANCE_ID,
        "stream": "ubi9/ubi",
        "upstream": "registry.redhat.io/ubi9/ubi:9.4",
    }
    assert e["previousDigest"] == OLD_DIGEST
    assert event(previous=None)["previousDigest"] is None
    assert event()["id"] != e["id"]
    json.dumps(e)  # serialisable as is
    with pytest.raises(ValueError, match="naive"):
        tag_event(stream="s", tag="t", repository="r", digest=DIGEST, media_type="m", size=1,
                  url="u", source="s", previous_digest=None, now=datetime(2024, 1, 1))


@pytest.mark.anyio
async def test_one_signed_post_per_event(
    store: SQLiteStore, receiver: Receiver, key_file: Path
) -> None:
    notifier = Notifier(store, [NotificationConfig(url=receiver.url(), secret_file=key_file)])
    events = [event("9.4"), event("latest")]
    for e in events:
        await notifier.publish(e, now=T0)

    report = await notifier.deliver_due(now=T0)

    assert report == DeliveryReport(delivered=2, failed=0, dead=0)
    posts = receiver.posts()
    assert len(posts) == 2
    for post in posts:
        assert post.path == "/hook"
        assert post.headers["Content-Type"] == EVENTS_MEDIA_TYPE
        verify(post, KEY)
    bodies = sorted((json.loads(p.body) for p in posts), key=lambda b: b["events"][0]["id"])
    assert bodies == sorted(({"events": [e]} for e in events), key=lambda b: b["events"][0]["id"])
    # delivered means done: nothing due, nothing failed, no second POST
    assert await store.due_events(T0 + timedelta(days=1)) == []
    assert await store.failed_events() == []
    assert await notifier.deliver_due(now=T0 + timedelta(days=1)) == DeliveryReport()
    assert len(receiver.posts()) == 2


@pytest.mark.anyio
async def test_signature_is_over_the_exact_body_and_absent_without_a_key(
    store: SQLiteStore, receiver: Receiver, key_file: Path
) -> None:
    notifier = Notifier(store, [
        NotificationConfig(url=receiver.url("/signed"), secret_file=key_file, name="signed"),
        NotificationConfig(url=receiver.url("/plain"), name="plain"),
    ])
    await notifier.publish(event(), now=T0)
    assert (await notifier.deliver_due(now=T0)).delivered == 2
    by_path = {p.path: p for p in receiver.posts()}
    assert set(by_path) == {"/signed", "/plain"}
    assert SIGNATURE_HEADER not in by_path["/plain"].headers
    with pytest.raises(AssertionError):
        verify(by_path["/signed"], KEY + "x")  # a different key does not verify
    verify(by_path["/signed"], KEY)  # the trailing newline of the file is not part of the key
    assert by_path["/signed"].body == by_path["/plain"].body


@pytest.mark.anyio
async def test_failing_receiver_is_retried_with_backoff_then_dead(
    store: SQLiteStore, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500, 500, 500]
    notifier = Notifier(
        store, [NotificationConfig(url=receiver.url(), name="ci")],
        max_attempts=3, base_delay=10.0, max_delay=15.0,
    )
    await notifier.publish(event(), now=T0)

    assert await notifier.deliver_due(now=T0) == DeliveryReport(failed=1)
    [pending] = await store.failed_events()
    assert pending.attempts == 1 and not pending.dead
    assert pending.receiver == "webhook:ci"
    assert "webhook:ci" in (pending.last_error or "") and "500" in (pending.last_error or "")
    assert pending.next_attempt is not None
    assert T0 + timedelta(seconds=5) <= pending.next_attempt <= T0 + timedelta(seconds=10)
    # not due yet: no request
    assert await notifier.deliver_due(now=T0 + timedelta(seconds=4)) == DeliveryReport()
    assert len(receiver.posts()) == 1

    later = T0 + timedelta(minutes=1)
    assert await notifier.deliver_due(now=later) == DeliveryReport(failed=1)
    [pending] = await store.failed_events()
    assert pending.attempts == 2 and pending.next_attempt is not None
    assert later + timedelta(seconds=7.5) <= pending.next_attempt <= later + timedelta(seconds=15)

    assert await notifier.deliver_due(now=T0 + timedelta(hours=1)) == DeliveryReport(dead=1)
    [dead] = await store.failed_events()
    assert dead.dead and dead.attempts == 3 and dead.delivered is None
    assert "500" in (dead.last_error or "")
    assert len(receiver.posts()) == 3
    # a dead letter is never tried again
    assert await notifier.deliver_due(now=T0 + timedelta(days=30)) == DeliveryReport()
    assert len(receiver.posts()) == 3


@pytest.mark.anyio
async def test_a_retry_that_succeeds_clears_the_failure(
    store: SQLiteStore, receiver: Receiver
) -> None:
    receiver.statuses = [503]
    notifier = Notifier(store, [NotificationConfig(url=receiver.url())], base_delay=1.0)
    published = event()
    await notifier.publish(published, now=T0)
    assert await notifier.deliver_due(now=T0) == DeliveryReport(failed=1)
    assert await notifier.deliver_due(now=T0 + timedelta(minutes=5)) == DeliveryReport(delivered=1)
    assert await store.failed_events() == []
    posts = receiver.posts()
    assert len(posts) == 2 and posts[0].body == posts[1].body  # the same event, resent
    assert json.loads(posts[1].body) == {"events": [published]}


@pytest.mark.anyio
async def test_secret_and_url_token_never_reach_the_store(
    tmp_path: Path, store: SQLiteStore, receiver: Receiver, key_file: Path, refused_host: str
) -> None:
    receiver.statuses = [500]
    refused = f"http://{refused_host}/hooks/{TOKEN}-path?token={TOKEN}"
    answering, down = (
        NotificationConfig(url=receiver.url(f"/hook?token={TOKEN}"), secret_file=key_file),
        NotificationConfig(url=refused, secret_file=key_file),
    )
    notifier = Notifier(store, [answering, down])
    await notifier.publish(event(), now=T0)
    assert await notifier.deliver_due(now=T0) == DeliveryReport(failed=2)

    errors = {e.receiver: e.last_error or "" for e in await store.failed_events()}
    assert set(errors) == {answering.receiver_id, down.receiver_id}
    assert "HTTP 500" in errors[answering.receiver_id]
    assert down.receiver_id in errors[down.receiver_id]
    assert "127.0.0.1" in errors[down.receiver_id]
    for receiver_id in errors:  # host and port only
        assert receiver_id.startswith("webhook:127.0.0.1:") and TOKEN not in receiver_id
    for message in errors.values():
        assert TOKEN not in message and KEY not in message
    store.close()
    for path in (tmp_path / "state").iterdir():
        data = path.read_bytes()
        assert TOKEN.encode() not in data and KEY.encode() not in data, path.name


@pytest.mark.anyio
async def test_command_gets_the_envelope_on_stdin(store: SQLiteStore, tmp_path: Path) -> None:
    out = tmp_path / "event.json"
    code = "import sys; open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())"
    notifier = Notifier(store, [script(code, str(out))])
    published = event()
    await notifier.publish(published, now=T0)

    assert await notifier.deliver_due(now=T0) == DeliveryReport(delivered=1)
    assert json.loads(out.read_bytes()) == {"events": [published]}
    assert await store.failed_events() == []


@pytest.mark.anyio
async def test_command_exit_1_is_a_failure_with_its_stderr(store: SQLiteStore) -> None:
    code = "import sys; sys.stdin.read(); print('boom: disk on fire', file=sys.stderr); sys.exit(1)"
    notifier = Notifier(store, [script(code)])
    await notifier.publish(event(), now=T0)

    assert await notifier.deliver_due(now=T0) == DeliveryReport(failed=1)
    [failed] = await store.failed_events()
    assert failed.receiver == script(code).receiver_id and failed.attempts == 1
    message = failed.last_error or ""
    assert failed.receiver in message and "status 1" in message and "disk on fire" in message


@pytest.mark.anyio
async def test_command_that_hangs_is_killed_at_its_timeout(store: SQLiteStore) -> None:
    notifier = Notifier(store, [script("import time; time.sleep(60)", timeout=0.5)])
    await notifier.publish(event(), now=T0)
    started = time.monotonic()
    assert await notifier.deliver_due(now=T0) == DeliveryReport(failed=1)
    assert time.monotonic() - started < 10
    [failed] = await store.failed_events()
    assert "did not finish within 0.5s" in (failed.last_error or "")


@pytest.mark.anyio
async def test_missing_program_is_a_failure(store: SQLiteStore, tmp_path: Path) -> None:
    notifier = Notifier(store, [NotificationConfig(command=(str(tmp_path / "no-such-hook"),))])
    await notifier.publish(event(), now=T0)
    assert await notifier.deliver_due(now=T0) == DeliveryReport(failed=1)
    [failed] = await store.failed_events()
    assert "cannot run" in (failed.last_error or "")


@pytest.mark.anyio
async def test_one_failing_receiver_does_not_affect_the_others(
    store: SQLiteStore, receiver: Receiver, tmp_path: Path, refused_host: str
) -> None:
    out = tmp_path / "event.json"
    down, exits_3 = (
        NotificationConfig(url=f"http://{refused_host}/down"),
        dataclasses.replace(script("import sys; sys.exit(3)"), name="exits-3"),
    )
    notifier = Notifier(store, [
        down,
        exits_3,
        NotificationConfig(url=receiver.url()),
        script("import sys; open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())", str(out)),
    ])
    await notifier.publish(event(), now=T0)
    assert await notifier.deliver_due(now=T0) == DeliveryReport(delivered=2, failed=2)
    assert len(receiver.posts()) == 1 and out.exists()
    failed = {e.receiver for e in await store.failed_events()}
    assert failed == {down.receiver_id, exits_3.receiver_id}


@pytest.mark.anyio
async def test_event_for_a_receiver_no_longer_configured_is_dead(
    store: SQLiteStore, receiver: Receiver
) -> None:
    both = [
        NotificationConfig(url=receiver.url("/a"), name="a"),
        NotificationConfig(url=receiver.url("/b"), name="b"),
    ]
    await Notifier(store, both).publish(event(), now=T0)
    # /a is removed from the configuration and /b moves up: /b still gets only its own event
    report = await Notifier(store, both[1:]).deliver_due(now=T0)
    assert report == DeliveryReport(delivered=1, dead=1)
    [dead] = await store.failed_events()
    assert dead.receiver == both[0].receiver_id and dead.dead
    assert [p.path for p in receiver.posts()] == ["/b"]


@pytest.mark.anyio
async def test_deadline_abandons_slow_deliveries_for_next_time(
    store: SQLiteStore, receiver: Receiver
) -> None:
    receiver.delay = 30.0
    notifier = Notifier(store, [NotificationConfig(url=receiver.url(), timeout=60.0)])
    await notifier.publish(event(), now=T0)
    started = time.monotonic()
    report = await notifier.deliver_due(deadline=anyio.current_time() + 0.5, now=T0)
    assert time.monotonic() - started < 10
    assert report == DeliveryReport()
    [still_due] = await store.due_events(T0)
    assert still_due.attempts == 0 and still_due.last_error is None


@pytest.mark.anyio
async def test_publish_without_receivers_queues_nothing(store: SQLiteStore) -> None:
    notifier = Notifier(store, [])
    await notifier.publish(event(), now=T0)
    assert await store.due_events(T0) == []
    assert await notifier.deliver_due(now=T0) == DeliveryReport()


def test_receivers_are_described_without_the_url_path_or_query(
    store: SQLiteStore, receiver: Receiver
) -> None:
    notifier = Notifier(store, [
        NotificationConfig(url=receiver.url(f"/hook?token={TOKEN}"), name="ci"),
        NotificationConfig(command=("/usr/local/bin/on-new-image", "--flag"), name="scan"),
    ])
    assert notifier.receivers == {
        "webhook:ci": f"POST http://127.0.0.1:{receiver.port}",
        "command:scan": "on-new-image",
    }
    with pytest.raises(ValueError, match="exactly one"):
        Notifier(store, [NotificationConfig()])
    with pytest.raises(ValueError, match="the same id"):
        twice = NotificationConfig(url=receiver.url())
        Notifier(store, [twice, twice])


def test_a_receiver_id_holds_no_secret_and_survives_a_token_rotation() -> None:
    webhook = NotificationConfig(url=f"https://user:pw@hooks.example:8443/x/{TOKEN}?t={TOKEN}")
    rotated = NotificationConfig(url="https://hooks.example:8443/x/new-token?t=new")
    assert webhook.receiver_id == rotated.receiver_id == "webhook:hooks.example:8443"
    assert NotificationConfig(url="http://[::1]/h").receiver_id == "webhook:[::1]"
    command = NotificationConfig(command=("/usr/local/bin/on-new-image", f"--token={TOKEN}"))
    assert command.receiver_id == "command:on-new-image"
    assert dataclasses.replace(command, name="scan").receiver_id == "command:scan"


@pytest.mark.anyio
async def test_a_receiver_gets_only_the_actions_it_asked_for(tmp_path: Path) -> None:
    from mirrord.notify import cluster_resources_event

    store = open_store(tmp_path)
    try:
        everything = script("pass")
        pushes = dataclasses.replace(script("pass"), name="pushes-only", events=("push",))
        notifier = Notifier(store, [everything, pushes])
        await notifier.publish(cluster_resources_event("/d", {"registries.conf": "written"}))
        await notifier.publish(event())
        queued = sorted(
            (e.receiver, e.payload["action"]) for e in await store.due_events(limit=10)
        )
    finally:
        store.close()
    assert queued == sorted([
        ("command:pushes-only", "push"),
        (everything.receiver_id, "cluster-resources.changed"),
        (everything.receiver_id, "push"),
    ])



@pytest.mark.anyio
async def test_a_failed_event_without_a_stream_is_shown_by_its_action(
    store: SQLiteStore,
) -> None:
    from mirrord.notify import cluster_resources_event, status_document

    payload = cluster_resources_event("/etc/mirrord/cluster", {"idms.yaml": "written"})
    event_id = await store.enqueue_event(payload, "command:hook")
    await store.mark_failed(event_id, 1, None, "exit 1")

    [failure] = (await status_document(store, []))["failures"]

    assert failure["action"] == "cluster-resources.changed" and failure["stream"] is None
    assert failure["givenUp"] and failure["error"] == "exit 1"

"""Tag pagination and blob redirects, through a small HTTP front in front of a real registry.

Debian's distribution 2.8 neither paginates `tags/list` nor redirects blob GETs (its
filesystem driver serves blobs itself), so the test puts a front before it that does what
distribution 3 / quay.io / an S3-backed registry do, and forwards everything else, the
Authorization header included. Auth stays the real registry's (Basic or the token server).
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from harness import ALICE
from harness.clients import options_for
from harness.images import build_image, push, push_image
from harness.registry import RegistryProcess

from mirrord.credentials import Credential
from mirrord.registry import RegistryClient

pytestmark = pytest.mark.anyio

_FORWARDED = ("content-type", "docker-content-digest", "www-authenticate", "location",
              "docker-distribution-api-version")


class _Server:
    """A ThreadingHTTPServer on a loopback address and a free port, in a daemon thread."""

    def __init__(self, host: str, handle: Callable[[BaseHTTPRequestHandler], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                handle(self)

            def do_HEAD(self) -> None:
                handle(self)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
          headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    if "Content-Length" not in (headers or {}):
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def other_loopback_host() -> str:
    """127.0.0.2 when it can be bound (another host); else 127.0.0.1 (another port)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return "127.0.0.1"
    return "127.0.0.2"


class BlobHost:
    """Stands in for object storage: serves stored bytes at one-time paths, records headers."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.seen: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.server = _Server(other_loopback_host(), self._handle)

    def store(self, data: bytes) -> str:
        key = secrets.token_hex(8)
        self.blobs[key] = data
        return f"http://{self.server.host}/storage/{key}?X-Signature={secrets.token_hex(4)}"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        self.seen.append((h.command, h.path, h.headers.get("Authorization")))
        key = urllib.parse.urlsplit(h.path).path.rsplit("/", 1)[-1]
        if key in self.blobs:
            reply(h, 200, self.blobs[key], {"Content-Type": "application/octet-stream"})
        else:
            reply(h, 404)


class Front:
    """Forwards GET/HEAD to `upstream`; paginates tag lists; redirects blob GETs."""

    def __init__(self, upstream: RegistryProcess, *, absolute_links: bool = False,
                 blob_host: BlobHost | None = None) -> None:
        self.upstream = upstream
        self.absolute_links = absolute_links
        self.blob_host = blob_host
        self.http = httpx.Client(timeout=10)
        self.seen: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.server = _Server("127.0.0.1", self._handle)
        self.host = self.server.host

    def stop(self) -> None:
        self.server.stop()
        self.http.close()

    def _forward(self, method: str, path: str, h: BaseHTTPRequestHandler) -> httpx.Response:
        headers = {k: v for k, v in h.headers.items() if k.lower() in ("authorization", "accept")}
        return self.http.request(method, self.upstream.url + path, headers=headers)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        self.seen.append((h.command, h.path, h.headers.get("Authorization")))
        parts = urllib.parse.urlsplit(h.path)
        if parts.path.endswith("/tags/list") and h.command == "GET":
            return self._tags(h, parts)
        if "/blobs/sha256:" in parts.path and h.command == "GET" and self.blob_host:
            return self._redirect(h, parts.path)
        answer = self._forward(h.command, h.path, h)
        headers = {k: v for k, v in answer.headers.items() if k.lower() in _FORWARDED}
        if h.command == "HEAD":  # what the GET would send
            headers["Content-Length"] = answer.headers.get("content-length", "0")
        reply(h, answer.status_code, answer.content, headers)
        return None

    def _tags(self, h: BaseHTTPRequestHandler, parts: urllib.parse.SplitResult) -> None:
        answer = self._forward("GET", parts.path, h)
        if answer.status_code != 200:
            reply(h, answer.status_code, answer.content,
                  {k: v for k, v in answer.headers.items() if k.lower() in _FORWARDED})
            return
        query = urllib.parse.parse_qs(parts.query)
        n = int(query.get("n", ["100"])[0])
        last = query.get("last", [""])[0]
        remaining = [t for t in sorted(answer.json()["tags"]) if t > last]
        page = remaining[:n]
        headers = {"Content-Type": "application/json"}
        if len(remaining) > n:
            link = f"{parts.path}?{urllib.parse.urlencode({'n': n, 'last': page[-1]})}"
            if self.absolute_links:
                link = f"http://{self.host}{link}"
            headers["Link"] = f'<{link}>; rel="next"'
        body = json.dumps({"name": answer.json()["name"], "tags": page}).encode()
        reply(h, 200, body, headers)

    def _redirect(self, h: BaseHTTPRequestHandler, path: str) -> None:
        # The registry checks the credentials; only then is the client sent elsewhere.
        answer = self._forward("GET", path, h)
        if answer.status_code != 200:
            reply(h, answer.status_code, answer.content,
                  {k: v for k, v in answer.headers.items() if k.lower() in _FORWARDED})
            return
        assert self.blob_host is not None
        reply(h, 307, b"", {"Location": self.blob_host.store(answer.content)})


@pytest.fixture
def front() -> Iterator[Callable[..., Front]]:
    fronts: list[Front] = []

    def make(upstream: RegistryProcess, **kw: Any) -> Front:
        fronts.append(Front(upstream, **kw))
        return fronts[-1]

    yield make
    for f in fronts:
        f.stop()


@pytest.fixture
def blob_host() -> Iterator[BlobHost]:
    host = BlobHost()
    yield host
    host.server.stop()


def client_for(front: Front) -> RegistryClient:
    credential = (Credential(ALICE.username, ALICE.password, "test")
                  if front.upstream.users else None)
    # The front forwards to the upstream, whose token server is trusted like a host
    # configured under `registries:`.
    return RegistryClient(front.host, credential=credential,
                          options=options_for(front.upstream))


@pytest.mark.parametrize("flavour", ["mirror_registry", "basic_registry", "token_registry"])
@pytest.mark.parametrize("absolute_links", [False, True], ids=["relative-link", "absolute-link"])
async def test_tag_list_follows_link_pages(
    flavour: str,
    absolute_links: bool,
    request: pytest.FixtureRequest,
    front: Callable[..., Front],
    repo_name: str,
) -> None:
    upstream: RegistryProcess = request.getfixturevalue(flavour)
    tags = ["1.0", "1.1", "1.2", "2.0", "2.1", "3.0", "latest"]
    with upstream.client() as http:
        image = build_image(repo_name, None, seed=repo_name)
        for tag in tags:
            push(http, image, tag=tag)
    f = front(upstream, absolute_links=absolute_links)
    async with client_for(f) as client:
        assert await client.list_tags(repo_name, page_size=2) == tags
    pages = [path for method, path, _ in f.seen if "/tags/list" in path]
    base = f"/v2/{repo_name}/tags/list"
    assert pages == [f"{base}?n=2", f"{base}?n=2&last=1.1", f"{base}?n=2&last=2.0",
                     f"{base}?n=2&last=3.0"]
    if upstream.users:
        assert all(auth for method, path, auth in f.seen if "/tags/list" in path)


@pytest.mark.parametrize("flavour", ["basic_registry", "token_registry"])
async def test_blob_redirect_is_followed_without_authorization(
    flavour: str,
    request: pytest.FixtureRequest,
    front: Callable[..., Front],
    blob_host: BlobHost,
    repo_name: str,
) -> None:
    upstream: RegistryProcess = request.getfixturevalue(flavour)
    with upstream.client() as http:
        image = push_image(http, repo_name, "v1", seed=repo_name, layer_sizes=(300_000,))
    layer = image.layers[0]
    f = front(upstream, blob_host=blob_host)
    async with client_for(f) as client:
        async with client.get_blob(repo_name, layer.digest) as chunks:
            received = b"".join([chunk async for chunk in chunks])
        assert received == layer.data
        assert await client.head_blob(repo_name, layer.digest) == layer.size  # not redirected

    blob_gets = [(m, a) for m, p, a in f.seen if p == f"/v2/{repo_name}/blobs/{layer.digest}"]
    scheme = "Basic " if flavour == "basic_registry" else "Bearer "
    assert [m for m, _ in blob_gets] == ["GET", "HEAD"]
    assert all(a is not None and a.startswith(scheme) for _, a in blob_gets)
    assert [(m, p.split("?")[0].rsplit("/", 2)[1], a) for m, p, a in blob_host.seen] == [
        ("GET", "storage", None)]
    assert blob_host.server.host != f.host

"""The HEAD pool: HEADs over HTTP/1.1 keep-alive connections of mirrord's own.

Against the real registry (TLS) for what a sync relies on (a refused Bearer token on a
HEAD is in test_registry_tokens), and against a raw loopback server for what a real
registry never sends."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
import pytest
from harness.images import push_image
from harness.rawhttp import CLOSE, SILENT, RawServer
from harness.registry import RegistryProcess

from mirrord.errors import ConnectError, TransferTimeoutError
from mirrord.registry import RegistryClient, RegistryOptions
from mirrord.registry._clients import HttpClients
from mirrord.registry._headpool import MAX_HEAD, HeadPool
from mirrord.registry._tls import ssl_context

pytestmark = pytest.mark.anyio

DIGEST = "sha256:" + "ab" * 32
OK = (b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: " + DIGEST.encode()
      + b"\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
      b"Content-Length: 321\r\n\r\n")


def head(url: str, path: str = "/v2/r/manifests/v1", **headers: str) -> httpx.Request:
    return httpx.Request("HEAD", url + path, headers=headers)


def raw_pool(server: RawServer, stall_timeout: float = 5.0) -> HeadPool:
    return HeadPool(httpx.URL(server.url), False, stall_timeout=stall_timeout)


def always(answer: bytes) -> Callable[[int, int, bytes], bytes]:
    return lambda connection, request, head: answer


# -- against the real registry -----------------------------------------------------------


async def test_heads_share_one_tls_connection_and_say_what_get_says(
    tls_registry: RegistryProcess, repo_name: str
) -> None:
    with tls_registry.client() as http:
        image = push_image(http, repo_name, "v1", seed=repo_name)
    options = RegistryOptions(ca_file=tls_registry.ca_file, certs_dirs=())
    pool = HeadPool(httpx.URL(tls_registry.url), ssl_context(tls_registry.host, options),
                    stall_timeout=5.0)
    try:
        answers = [await pool.send(head(tls_registry.url, f"/v2/{repo_name}/manifests/v1",
                                        Accept=image.media_type)) for _ in range(20)]
    finally:
        await pool.aclose()
    assert pool.opened == 1
    assert {(a.status_code, a.headers["docker-content-digest"], a.headers["content-length"])
            for a in answers if a is not None} == {(200, image.digest, str(len(image.raw)))}
    assert len(answers) == 20 and all(a is not None and a.content == b"" for a in answers)


# -- what a real registry never sends -----------------------------------------------------


async def test_a_connection_the_server_closed_while_idle_is_replaced_once() -> None:
    # The server answers one request per connection without saying "Connection: close".
    async with RawServer(lambda c, r, h: OK if r == 0 else CLOSE) as server:
        pool = raw_pool(server)
        for _ in range(3):
            answer = await pool.send(head(server.url))
            assert answer is not None and answer.status_code == 200
        await pool.aclose()
    assert server.connections == 3 and len(server.heads) == 5  # two replayed on a new one


async def test_connection_close_is_honoured_and_interim_answers_skipped() -> None:
    closing = b"HTTP/1.1 100 Continue\r\n\r\n" + OK.replace(
        b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    async with RawServer(always(closing)) as server:
        pool = raw_pool(server)
        for _ in range(2):
            answer = await pool.send(head(server.url))
            assert answer is not None and answer.headers["docker-content-digest"] == DIGEST
        await pool.aclose()
    assert server.connections == 2 and len(server.heads) == 2


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (b"HTTP/1.1 2OO OK\r\n\r\n", "not an HTTP/1.1 status line"),
        (b"ICY 200 OK\r\n\r\n", "not an HTTP/1.1 status line"),
        (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", "malformed header field line"),
        (b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n", "malformed header field line"),
        (b"HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n", "malformed header field line"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", "larger than 65536 bytes"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 9, "more than 8 interim"),
        (b"HTTP/1.1 200 OK\r\nContent-Le" + CLOSE, "closed the connection before"),
    ],
)
async def test_a_malformed_answer_is_refused_and_says_what(answer: bytes, complaint: str) -> None:
    async with RawServer(always(answer)) as server:
        pool = raw_pool(server)
        with pytest.raises(httpx.RemoteProtocolError, match=complaint):
            await pool.send(head(server.url))
        await pool.aclose()
    assert server.connections == 1


async def test_through_the_client_a_malformed_answer_names_the_registry_and_the_request() -> None:
    def answer(connection: int, request: int, head: bytes) -> bytes:
        if head.startswith(b"GET /v2/ "):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        return b"HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n"

    async with RawServer(answer) as server, RegistryClient(
        server.host, options=RegistryOptions(insecure=True)
    ) as client:
        with pytest.raises(ConnectError) as caught:
            await client.head_manifest("r", "v1")
    assert caught.value.registry == server.host
    assert "HEAD manifest r:v1" in str(caught.value) and "malformed header" in str(caught.value)


async def test_a_silent_server_times_out_within_the_stall_window() -> None:
    async with RawServer(always(SILENT)) as server:
        options = RegistryOptions(insecure=True, stall_timeout=0.5)
        with anyio.fail_after(10):
            async with RegistryClient(server.host, options=options) as client:
                client._pinged = True  # the answer to GET /v2/ would be silent too
                with pytest.raises(TransferTimeoutError, match=r"within 0\.5s"):
                    await client.head_manifest("r", "v1")


async def test_a_redirect_is_left_to_httpx_which_follows_it() -> None:
    def answer(connection: int, request: int, head: bytes) -> bytes:
        if head.startswith(b"HEAD /v2/r/manifests/v1 "):
            return b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /v2/r/manifests/v2\r\n\r\n"
        return OK

    async with RawServer(answer) as server:
        pool = raw_pool(server)
        assert await pool.send(head(server.url)) is None
        # A registry that redirects one HEAD likely redirects them all: httpx takes
        # the rest rather than each being sent twice.
        assert pool.declined == "redirects" and not pool.serves(head(server.url))
        await pool.aclose()
        async with RegistryClient(server.host, options=RegistryOptions(insecure=True)) as client:
            client._pinged = True
            found = await client.head_manifest("r", "v1")
            assert found is not None and found.digest == DIGEST
            assert (await client.head_manifest("r", "v1")) == found
    assert [h.split(b" ")[:2] for h in server.heads[1:]] == [
        [b"HEAD", b"/v2/r/manifests/v1"], [b"HEAD", b"/v2/r/manifests/v1"],
        [b"HEAD", b"/v2/r/manifests/v2"],
        [b"HEAD", b"/v2/r/manifests/v1"], [b"HEAD", b"/v2/r/manifests/v2"]]


async def test_a_header_value_that_would_end_the_line_is_never_sent() -> None:
    async with RawServer(always(OK)) as server:
        pool = raw_pool(server)
        request = head(server.url)
        request.headers["Authorization"] = "Bearer t\r\nX-Injected: 1"
        with pytest.raises(httpx.LocalProtocolError, match="control character"):
            await pool.send(request)
        await pool.aclose()
    assert server.heads == []


async def test_only_heads_to_its_own_origin_are_served() -> None:
    pool = HeadPool(httpx.URL("http://127.0.0.1:5000"), False, stall_timeout=1.0)
    assert pool.serves(head("http://127.0.0.1:5000"))
    assert not pool.serves(httpx.Request("GET", "http://127.0.0.1:5000/v2/"))
    assert not pool.serves(head("http://127.0.0.1:5001"))
    assert not pool.serves(head("https://127.0.0.1:5000"))


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_no_head_pool_through_a_proxy(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    # httpx reads proxies from the environment; the HEAD pool would go around them.
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    url, auth = httpx.URL("https://127.0.0.1:5000"), httpx.BasicAuth("u", "p")
    assert HttpClients(RegistryOptions(), url, auth=auth, verify=False).heads is not None
    monkeypatch.setenv(variable, "http://127.0.0.1:3128")
    assert HttpClients(RegistryOptions(), url, auth=auth, verify=False).heads is None


def test_outside_asyncio_httpx_makes_the_exchange() -> None:
    # The pool runs on asyncio's streams: under trio (or no loop at all) it serves nothing.
    pool = HeadPool(httpx.URL("http://127.0.0.1:5000"), False, stall_timeout=1.0)
    assert not pool.serves(head("http://127.0.0.1:5000"))

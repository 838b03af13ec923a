"""The asyncio transport under httpx: bulk reads over TLS, the protocols each client
speaks when both share one TLS context, and httpcore's errors as httpx's."""

from __future__ import annotations

import hashlib
import socket

import anyio
import httpx
import pytest
from harness.images import Blob, push_blob
from harness.registry import RegistryProcess

from mirrord.errors import NotFoundError
from mirrord.registry import RegistryClient, RegistryOptions
from mirrord.registry._tls import ssl_context
from mirrord.registry._transport import AsyncioTransport

pytestmark = pytest.mark.anyio

TLS_RECORD = 16 * 1024  # the most one TLS record carries (RFC 8446 §5.1)


async def test_a_blob_over_tls_arrives_in_reads_larger_than_one_tls_record(
    tls_registry: RegistryProcess, repo_name: str
) -> None:
    # httpcore's anyio backend hands over one record per read; this one what is buffered.
    data = bytes(range(256)) * (16 * 1024)  # 4 MiB
    blob = Blob.of(data, "application/octet-stream")
    with tls_registry.client() as http:
        push_blob(http, repo_name, blob)
    options = RegistryOptions(ca_file=tls_registry.ca_file, certs_dirs=())
    transport = AsyncioTransport(ssl_context(tls_registry.host, options),
                                 limits=httpx.Limits(max_connections=4))
    async with httpx.AsyncClient(transport=transport) as client:
        url = f"{tls_registry.url}/v2/{repo_name}/blobs/{blob.digest}"
        async with client.stream("GET", url) as response:
            assert response.http_version == "HTTP/1.1"
            reads = [chunk async for chunk in response.aiter_raw()]
    assert hashlib.sha256(b"".join(reads)).hexdigest() == blob.digest.split(":")[1]
    assert max(len(r) for r in reads) > TLS_RECORD


async def test_concurrent_clients_on_one_context_keep_their_protocols(
    tls_registry: RegistryProcess, repo_name: str
) -> None:
    # httpcore and the HEAD pool set the ALPN list on the (shared) context before each
    # handshake: the blob client and the HEAD pool must not pick up the HTTP/2 client's
    # list, nor the HTTP/2 client theirs.
    blob = Blob.of(b"x" * 4096, "application/octet-stream")
    with tls_registry.client() as http:
        push_blob(http, repo_name, blob)
    options = RegistryOptions(ca_file=tls_registry.ca_file, certs_dirs=())
    async with RegistryClient(tls_registry.host, options=options) as client:
        async def pull() -> None:
            async with client.get_blob(repo_name, blob.digest) as chunks:
                assert b"".join([c async for c in chunks]) == blob.data

        async def head() -> None:
            assert await client.head_blob(repo_name, blob.digest) == len(blob.data)

        async def tags() -> None:
            with pytest.raises(NotFoundError):  # no tag yet: the repository is unknown
                await client.list_tags(repo_name)

        mark = tls_registry.mark()
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(pull)
                tg.start_soon(head)
                tg.start_soon(tags)
    seen = {(e.method, e.path.split("/")[-2], e.protocol)
            for e in tls_registry.access_log(since=mark) if e.path.startswith("/v2/" + repo_name)}
    assert seen == {("GET", "blobs", "HTTP/1.1"), ("HEAD", "blobs", "HTTP/1.1"),
                    ("GET", "tags", "HTTP/2.0")}


async def test_a_refused_connection_and_a_silent_server_are_httpx_errors() -> None:
    transport = AsyncioTransport(False, limits=httpx.Limits(max_connections=2))
    with socket.socket() as placeholder:  # bound, never listening: connections refused
        placeholder.bind(("127.0.0.1", 0))
        refused = placeholder.getsockname()[1]
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{refused}/v2/")
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        transport = AsyncioTransport(False, limits=httpx.Limits(max_connections=2))
        async with httpx.AsyncClient(transport=transport, timeout=0.3) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"http://127.0.0.1:{port}/v2/")

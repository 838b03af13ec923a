"""Bearer tokens against the real token registry: scopes, the account, caching, expiry."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest
from harness import ALICE, ROBOT, Credentials
from harness.images import RegistryHTTP, make_layer, push_blob, push_image
from harness.registry import RegistryProcess
from harness.tokenserver import REGISTRY_LEEWAY, TokenServer

from mirrord.core.oci import Descriptor
from mirrord.credentials import Credential
from mirrord.errors import ConnectError, UnauthorizedError
from mirrord.registry import RegistryClient, RegistryOptions

pytestmark = pytest.mark.anyio


def scopes_asked(server: TokenServer) -> list[tuple[str, ...]]:
    return [r.scopes for r in server.requests]


async def chunks_of(data: bytes, size: int = 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def descriptor_of(blob: object) -> Descriptor:
    return Descriptor(blob.media_type, blob.digest, blob.size)  # type: ignore[attr-defined]


@pytest.mark.parametrize("user", [ALICE, ROBOT], ids=["alice", "robot"])
async def test_pull_and_push_tokens_are_separate_scopes_with_the_account(
    user: Credentials,
    token_registry: RegistryProcess,
    token_server: TokenServer,
    token_client: RegistryHTTP,
    open_client: Callable[..., RegistryClient],
    credential: Callable[..., Credential],
    repo_name: str,
) -> None:
    image = push_image(token_client, repo_name, "v1", seed=repo_name)
    token_server.reset()
    client = open_client(token_registry, credential(user))

    manifest = await client.get_manifest(repo_name, "v1")
    assert await client.head_blob(repo_name, image.layers[0].digest) == image.layers[0].size
    await client.put_manifest(repo_name, "v2", manifest)
    assert (await client.get_manifest(repo_name, "v2")).raw == image.raw
    await client.list_tags(repo_name)

    pull, push = f"repository:{repo_name}:pull", f"repository:{repo_name}:pull,push"
    assert scopes_asked(token_server) == [(pull,), (push,)]
    assert client.auth.tokens_fetched == 2
    for request in token_server.requests:
        assert (request.status, request.method) == (200, "GET")
        assert request.account == user.username  # the `account` parameter
        assert request.user == user.username  # Basic auth on the token request
        assert request.service == token_server.service
    assert [g.actions for r in token_server.requests for g in r.granted] == [
        ("pull",), ("pull", "push")]


async def test_mount_asks_for_pull_on_the_source_repository(
    token_registry: RegistryProcess,
    token_server: TokenServer,
    token_client: RegistryHTTP,
    open_client: Callable[..., RegistryClient],
    credential: Callable[..., Credential],
    repo_name: str,
) -> None:
    blob = make_layer(1000, repo_name)
    source, target = f"{repo_name}/a", f"{repo_name}/b"
    push_blob(token_client, source, blob)
    token_server.reset()
    client = open_client(token_registry, credential(ALICE))
    assert await client.mount_blob(target, blob.digest, source) is None
    assert [set(s) for s in scopes_asked(token_server)] == [
        {f"repository:{target}:pull,push", f"repository:{source}:pull"}]


async def test_repository_path_with_api_words_gets_its_own_scope(
    token_registry: RegistryProcess,
    token_server: TokenServer,
    token_client: RegistryHTTP,
    open_client: Callable[..., RegistryClient],
    credential: Callable[..., Credential],
    repo_name: str,
) -> None:
    """`team/tags/app` and `team/blobs/x` are valid repository names, not API paths."""
    repo = f"{repo_name}/tags/blobs/app"
    push_image(token_client, repo, "v1", seed=repo)
    token_server.reset()
    client = open_client(token_registry, credential(ALICE))
    await client.ping()
    mark = token_registry.mark()
    for _ in range(3):
        await client.head_manifest(repo, "v1")
        await client.get_manifest(repo, "v1")
    assert scopes_asked(token_server) == [(f"repository:{repo}:pull",)]
    assert [e.status for e in token_registry.access_log(since=mark)] == [200] * 6


async def test_anonymous_token_reads_but_cannot_push(
    token_registry: RegistryProcess,
    token_server: TokenServer,
    token_client: RegistryHTTP,
    open_client: Callable[..., RegistryClient],
    repo_name: str,
) -> None:
    image = push_image(token_client, repo_name, "v1", seed=repo_name)
    token_server.reset()
    token_server.anonymous_pull = True
    client = open_client(token_registry)
    manifest = await client.get_manifest(repo_name, "v1")
    assert manifest.raw == image.raw
    with pytest.raises(UnauthorizedError) as caught:
        await client.put_manifest(repo_name, "pushed", manifest)
    assert "anonymous (no credentials found)" in str(caught.value)
    assert token_registry.host in str(caught.value)
    assert all(r.account is None and r.user is None for r in token_server.requests)
    assert token_client.head_manifest(repo_name, "pushed") is None


async def test_blob_copy_outlives_short_lived_tokens(
    token_registry: RegistryProcess,
    token_server: TokenServer,
    token_client: RegistryHTTP,
    open_client: Callable[..., RegistryClient],
    credential: Callable[..., Credential],
    repo_name: str,
) -> None:
    """A 2-second token; a throttled, chunked blob copy that takes ~4.5 s still succeeds,
    with tokens refreshed before they lapse (no request is ever refused)."""
    token_server.ttl = 2
    blob = make_layer(28_000, repo_name)
    source, target = f"{repo_name}/src", f"{repo_name}/dst"
    push_blob(token_client, source, blob)
    token_server.reset()
    client = open_client(token_registry, credential(ALICE), chunk_size=1024, rate=7)
    mark = token_registry.mark()
    started = time.monotonic()
    async with client.get_blob(source, blob.digest) as chunks:
        await client.upload_blob(target, descriptor_of(blob), chunks)
    elapsed = time.monotonic() - started

    # A token lives at most ttl + 1 s (the token server rounds exp up): the copy outlived it.
    assert elapsed > token_server.ttl + 1.5
    push_tokens = [r for r in token_server.requests
                   if r.scopes == (f"repository:{target}:pull,push",)]
    assert len(push_tokens) >= 2
    assert client.auth.tokens_fetched == len(token_server.requests) >= 3
    assert all(r.status == 200 and r.account == "alice" for r in token_server.requests)
    log = token_registry.access_log(since=mark)
    assert sum(e.method == "PATCH" for e in log) == -(-blob.size // 1024)
    assert [e.route for e in log if e.status == 401] == ["/v2/"]  # only the first ping
    assert token_client.get_blob(target, blob.digest) == blob.data


@pytest.mark.parametrize("method", ["GET", "HEAD"])  # a HEAD goes by the HEAD pool
async def test_token_the_registry_refuses_is_fetched_again(
    registry_factory: Callable[..., RegistryProcess],
    open_client: Callable[..., RegistryClient],
    credential: Callable[..., Credential],
    repo_name: str,
    method: str,
) -> None:
    """expires_in says 300 s but the registry stops accepting the token after ~1 s: the
    401 makes the client fetch a new token and resend, once."""
    server = registry_factory.token_server(leeway_compensation=300 + REGISTRY_LEEWAY - 1)
    reg = registry_factory(token_server=server)
    with reg.client() as http:
        image = push_image(http, repo_name, "v1", seed=repo_name)
    server.reset()
    client = open_client(reg, credential(ALICE))

    async def fetched() -> str | None:
        if method == "GET":
            return (await client.get_manifest(repo_name, "v1")).descriptor().digest
        found = await client.head_manifest(repo_name, "v1")
        return found.digest if found else None

    assert await fetched() == image.digest
    await anyio.sleep(2.1)
    server.leeway_compensation = REGISTRY_LEEWAY  # the replacement is good for its full ttl
    mark = reg.mark()
    assert await fetched() == image.digest
    assert [(e.method, e.status, e.protocol) for e in reg.access_log(since=mark)] == [
        (method, 401, "HTTP/1.1"), (method, 200, "HTTP/1.1")]
    assert scopes_asked(server) == [(f"repository:{repo_name}:pull",)] * 2


# -- the token cache's clock, under either anyio backend (mock registry: timing only) ---------


def fake_token_registry(expires_in: int, fetched: list[float]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            fetched.append(time.monotonic())
            body = {"token": f"t{len(fetched)}", "expires_in": expires_in}
            return httpx.Response(200, content=json.dumps(body).encode())
        if request.headers.get("authorization", "").startswith("Bearer "):
            return httpx.Response(200, json={"tags": []})
        challenge = 'Bearer realm="https://auth.example/token",service="fake"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_token_refresh_uses_one_clock(anyio_backend: str) -> None:
    fetched: list[float] = []
    async with RegistryClient(
        "registry.example", transport=fake_token_registry(2, fetched), options=RegistryOptions()
    ) as client:
        await client.list_tags("a/b")
        await client.list_tags("a/b")
        assert len(fetched) == 1  # cached
        await anyio.sleep(1.2)  # past the refresh point (lifetime 2 s, 1 s early)
        await client.list_tags("a/b")
        assert len(fetched) == 2


async def test_streamed_upload_whose_token_is_refused_fails_temporarily(
    registry_factory: Callable[..., RegistryProcess],
    open_client: Callable[..., RegistryClient],
    credential: Callable[..., Credential],
    repo_name: str,
) -> None:
    """A streamed body cannot be sent twice: the 401 becomes a temporary error (inside
    mirrord's tree), the new token is already cached, and the retried upload succeeds."""
    server = registry_factory.token_server(leeway_compensation=300 + REGISTRY_LEEWAY - 1)
    reg = registry_factory(token_server=server)
    blob = make_layer(5000, repo_name)
    # monolithic_max=0: the streamed PATCH even for a small blob (a PUT's bytes resend)
    client = open_client(reg, credential(ALICE), monolithic_max=0)
    location = await client.start_upload(repo_name)
    await anyio.sleep(2.1)  # the registry no longer accepts the token
    # the replacement lives its full ttl, so the retry below does not race its expiry
    server.leeway_compensation = REGISTRY_LEEWAY
    with pytest.raises(ConnectError) as caught:
        await client.upload_blob(repo_name, descriptor_of(blob), chunks_of(blob.data), location)
    assert caught.value.temporary
    assert "refused the token" in str(caught.value)
    # the refused token and its replacement; then one to DELETE the session given up on
    pushes = [r for r in server.requests if not any(s.endswith(":delete") for s in r.scopes)]
    assert len(pushes) == 2
    assert [r.scopes for r in server.requests[2:]] == [(f"repository:{repo_name}:delete",)]
    assert not client.abandoned_uploads  # alice may delete: the session is gone
    await client.upload_blob(repo_name, descriptor_of(blob), chunks_of(blob.data))
    assert len(server.requests) == 3
    assert await client.head_blob(repo_name, blob.digest) == blob.size


async def test_a_refused_token_is_replaced_where_it_was_cached() -> None:
    """The 401 for a refused token names the scope with its actions in another order:
    the replacement serves the next requests of that scope, with no 401 and no fetch."""
    issued: list[str] = []
    refusals: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            issued.append(request.url.params.get("scope", ""))
            return httpx.Response(200, json={"token": f"t{len(issued)}", "expires_in": 300})
        sent = request.headers.get("authorization", "").removeprefix("Bearer ")
        if sent and sent != "t1":
            return httpx.Response(202, headers={"Location": "/v2/a/b/blobs/uploads/u"})
        challenge = 'Bearer realm="https://auth.example/token",service="fake"'
        if sent:  # t1 is refused from the start: an expired or revoked token
            refusals.append(sent)
            challenge += ',scope="repository:a/b:push,pull",error="invalid_token"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    async with RegistryClient(
        "registry.example", transport=httpx.MockTransport(handle), options=RegistryOptions()
    ) as client:
        for _ in range(3):
            await client.start_upload("a/b")
    assert issued == ["repository:a/b:pull,push"] * 2
    assert refusals == ["t1"]

"""The registry client against a lying upstream (harness/hostile.py): names checked before
any request, digests refused, bodies and listings bounded, credentials kept on their host.
Upload `Location`s come from a mock transport (the hostile registry is read-only)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest
from harness import ALICE
from harness.faults import Endless, Headers, Redirect, Stall, Throttle, Trickle
from harness.hostile import HostileRegistry
from harness.hostile_images import BAD_DIGESTS, WEIRD_TAGS, MiB, huge_manifest

from mirrord.credentials import Credential
from mirrord.errors import (
    DigestInvalidError,
    InvalidNameError,
    LimitExceededError,
    RegistryError,
    TransferTimeoutError,
    UnauthorizedError,
)
from mirrord.registry import RegistryClient, RegistryOptions

pytestmark = pytest.mark.anyio

Open = Callable[..., RegistryClient]


@pytest.fixture
async def hostile_client(hostile_registry: HostileRegistry) -> AsyncIterator[Open]:
    clients: list[RegistryClient] = []

    def make(credential: bool = True, **options: object) -> RegistryClient:
        cred = Credential(ALICE.username, ALICE.password, "auth file /x") if credential else None
        client = RegistryClient(hostile_registry.host, credential=cred,
                                options=RegistryOptions(insecure=True, **options))  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.mark.parametrize("tag", [t for t in WEIRD_TAGS if t not in ("1.0",)])
async def test_an_odd_reference_is_refused_before_any_request(
    hostile_registry: HostileRegistry, hostile_client: Open, tag: str
) -> None:
    client = hostile_client()
    with pytest.raises(InvalidNameError) as caught:
        await client.head_manifest(hostile_registry.repository, tag)
    assert repr(tag[:150]) in str(caught.value)
    assert not hostile_registry.log.select("manifests")


async def test_an_odd_repository_is_refused_before_any_request(
    hostile_registry: HostileRegistry, hostile_client: Open
) -> None:
    client = hostile_client()
    for repository in ("../other", "Upper/case", "a//b", "a/b/", "x" * 300):
        with pytest.raises(InvalidNameError):
            await client.list_tags(repository)
    assert len(hostile_registry.log) == 0


async def test_tag_lists_come_back_unchecked_for_the_caller_to_skip(
    hostile_registry: HostileRegistry, hostile_client: Open
) -> None:
    hostile_registry.behave(tags=(*WEIRD_TAGS, "1.0"))
    tags = await hostile_client().list_tags(hostile_registry.repository)
    assert tags == [*WEIRD_TAGS, "1.0"]


@pytest.mark.parametrize("name", sorted(set(BAD_DIGESTS) - {"wrong", "empty"}))
async def test_a_malformed_digest_header_is_digest_invalid(
    hostile_registry: HostileRegistry, hostile_client: Open, name: str
) -> None:
    hostile_registry.on("manifests", Headers({"Docker-Content-Digest": BAD_DIGESTS[name]}))
    with pytest.raises(DigestInvalidError) as caught:
        await hostile_client().head_manifest(hostile_registry.repository, "latest")
    assert caught.value.reason == "DigestInvalid" and not caught.value.temporary


@pytest.mark.parametrize("digest", ["md5:d41d8cd98f00b204e9800998ecf8427e", "shake_128:00",
                                    "sha256:/etc/passwd", "foo:bar"])
async def test_a_non_sha_digest_is_never_asked_for(
    hostile_registry: HostileRegistry, hostile_client: Open, digest: str
) -> None:
    client = hostile_client()
    with pytest.raises(DigestInvalidError):
        async with client.get_blob(hostile_registry.repository, digest):
            pass
    with pytest.raises(DigestInvalidError):
        await client.get_manifest(hostile_registry.repository, "latest", digest)
    assert not hostile_registry.log.select("blobs")


async def test_a_manifest_past_the_cap_is_refused_from_its_length(
    hostile_registry: HostileRegistry, hostile_client: Open
) -> None:
    hostile_registry.serve_tag("big", huge_manifest(8 * MiB, hostile_registry.image))
    client = hostile_client()
    with pytest.raises(LimitExceededError, match=r"limits\.max_manifest_size"):
        await client.head_manifest(hostile_registry.repository, "big")
    with pytest.raises(LimitExceededError, match="Content-Length is 8388608 bytes"):
        await client.get_manifest(hostile_registry.repository, "big")


async def test_a_body_without_length_is_read_only_up_to_the_cap(
    hostile_registry: HostileRegistry, hostile_client: Open
) -> None:
    hostile_registry.on("manifests", Endless(prefix=b"{"), methods="GET")
    client = hostile_client(max_manifest_size=256 * 1024)
    started = time.monotonic()
    with pytest.raises(LimitExceededError, match="grew past 262144 bytes"):
        await client.get_manifest(hostile_registry.repository, "latest")
    assert time.monotonic() - started < 10


async def test_a_link_elsewhere_keeps_only_its_path_and_query(
    hostile_registry: HostileRegistry, hostile_client: Open
) -> None:
    reg = hostile_registry
    reg.behave(tags=("a", "b", "c"), page_size=1, link_base=reg.catcher.url, auth="basic")
    assert await hostile_client().list_tags(reg.repository) == ["a", "b", "c"]
    assert len(reg.catcher.log) == 0
    assert len(reg.log.select("tags")) == 3


async def test_a_link_to_another_route_is_refused(
    hostile_registry: HostileRegistry, hostile_client: Open
) -> None:
    def transport(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"tags": ["a"]},
                              headers={"Link": '</v2/other/repo/tags/list?n=1>; rel="next"'})

    client = RegistryClient("registry.test", options=RegistryOptions(insecure=True),
                            transport=httpx.MockTransport(transport))
    async with client:
        with pytest.raises(RegistryError, match="does not name this repository's tag list"):
            await client.list_tags("mine/repo")


@pytest.mark.parametrize(("pagination", "message"), [
    ("loop", "already read"), ("endless", "more than 20 pages"),
])
async def test_listings_that_never_end_are_cut_off(
    hostile_registry: HostileRegistry, hostile_client: Open, pagination: str, message: str
) -> None:
    hostile_registry.behave(page_size=1, pagination=pagination)
    with pytest.raises(LimitExceededError, match=message) as caught:
        await hostile_client(max_tag_pages=20).list_tags(hostile_registry.repository)
    assert "limits.max_tag_pages" in str(caught.value) or pagination == "loop"
    assert len(hostile_registry.log.select("tags")) <= 20


@pytest.mark.parametrize("action", [Trickle(interval=0.2), Stall(after_bytes=5)],
                         ids=["trickle", "stall"])
async def test_a_slow_blob_fails_after_the_stall_window(
    hostile_registry: HostileRegistry, hostile_client: Open, action: object
) -> None:
    reg = hostile_registry
    reg.on("blobs", action)  # type: ignore[arg-type]
    client = hostile_client(stall_timeout=1.0, min_transfer_rate=1024)
    started = time.monotonic()
    with pytest.raises(TransferTimeoutError) as caught:
        async with client.get_blob(reg.repository, reg.layer.digest) as chunks:
            async for _ in chunks:
                pass
    assert 0.9 < time.monotonic() - started < 5
    assert caught.value.temporary and caught.value.reason == "Timeout"
    assert "registries.HOST.min_transfer_rate" in str(caught.value)


async def test_a_slow_consumer_is_not_blamed_on_the_upstream(
    hostile_registry: HostileRegistry, hostile_client: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only time spent waiting for upstream counts: a mirror that takes 1.5s per chunk
    # (longer than the window) does not fail an upstream that keeps the rate.
    monkeypatch.setattr("mirrord.registry._http.BLOB_CHUNK", 512)
    reg = hostile_registry
    reg.on("blobs", Trickle(interval=0.05, chunk=512))
    client = hostile_client(stall_timeout=1.0, min_transfer_rate=1024)
    got: list[bytes] = []
    async with client.get_blob(reg.repository, reg.layer.digest) as chunks:
        async for chunk in chunks:
            await anyio.sleep(1.5)  # the upstream's window would have passed meanwhile
            got.append(chunk)
    assert b"".join(got) == reg.layer.data and len(got) >= 2


async def test_a_throttled_answer_fails_at_the_request_deadline(
    hostile_registry: HostileRegistry, hostile_client: Open
) -> None:
    reg = hostile_registry
    reg.serve_tag("slow", huge_manifest(1 * MiB, reg.image))
    reg.on("manifests", Throttle(bytes_per_second=4000), methods="GET")
    started = time.monotonic()
    with pytest.raises(TransferTimeoutError, match=r"registries\.HOST\.request_timeout"):
        await hostile_client(request_timeout=1.0).get_manifest(reg.repository, "slow")
    assert time.monotonic() - started < 4


async def test_a_blob_redirect_drops_the_credential(
    hostile_registry: HostileRegistry, hostile_client: Open
) -> None:
    reg = hostile_registry
    reg.behave(auth="basic")
    reg.on("blobs", Redirect())
    client = hostile_client()
    async with client.get_blob(reg.repository, reg.layer.digest) as chunks:
        assert b"".join([c async for c in chunks]) == reg.layer.data
    assert reg.catcher.log.select("blobs")
    reg.catcher.log.assert_no_credentials()
    assert reg.authorizations()  # the registry itself got it


async def test_a_challenge_from_a_redirect_target_is_not_learnt(
    hostile_registry: HostileRegistry, hostile_client: Open
) -> None:
    reg = hostile_registry
    reg.behave(auth="basic", catcher_challenge="bearer")
    reg.on("blobs", Redirect())
    client = hostile_client()
    with pytest.raises(UnauthorizedError):
        async with client.get_blob(reg.repository, reg.layer.digest):
            pass
    assert client.auth.scheme == "basic"
    assert not reg.catcher.log.select("token")
    reg.catcher.log.assert_no_credentials()


async def test_a_plain_http_realm_on_another_host_is_asked_anonymously(
    hostile_registry: HostileRegistry, hostile_client: Open
) -> None:
    reg = hostile_registry
    reg.behave(auth="bearer", realm=reg.catcher.realm, token_requires_auth=False)
    manifest = await hostile_client().get_manifest(reg.repository, "latest")
    assert manifest.digest == reg.doc.digest
    assert reg.catcher.log.select("token")
    reg.catcher.log.assert_no_credentials()
    assert "account" not in reg.catcher.log.select("token")[0].query


def _alice() -> Credential:
    return Credential(ALICE.username, ALICE.password, "auth file /x")


async def test_a_realm_over_verified_https_gets_the_credential() -> None:
    with HostileRegistry(tls=True) as reg:
        reg.behave(auth="bearer", realm=reg.catcher.realm)
        options = RegistryOptions(ca_file=reg.ca_file, certs_dirs=())
        async with RegistryClient(reg.host, credential=_alice(), options=options) as client:
            await client.get_manifest(reg.repository, "latest")
        token = reg.catcher.log.select("token")[0]
        assert (token.header("authorization") or "").startswith("Basic ")


async def test_an_https_realm_without_tls_verification_gets_no_credential() -> None:
    with HostileRegistry(catcher_tls=True) as reg:  # the registry speaks plain HTTP
        reg.behave(auth="bearer", realm=reg.catcher.realm)
        options = RegistryOptions(insecure=True)
        async with RegistryClient(reg.host, credential=_alice(), options=options) as client:
            with pytest.raises(UnauthorizedError, match="asked without credentials"):
                await client.get_manifest(reg.repository, "latest")
        assert reg.catcher.log.select("token")
        reg.catcher.log.assert_no_credentials()


async def test_a_realm_host_configured_under_registries_gets_the_credential() -> None:
    with HostileRegistry() as reg:
        reg.behave(auth="bearer", realm=reg.catcher.realm)
        options = RegistryOptions(insecure=True, trusted_hosts=frozenset({reg.catcher.host}))
        async with RegistryClient(reg.host, credential=_alice(), options=options) as client:
            await client.get_manifest(reg.repository, "latest")
        token = reg.catcher.log.select("token")[0]
        assert (token.header("authorization") or "").startswith("Basic ")


@pytest.mark.parametrize("location", [
    "http://catcher.test/v2/mine/repo/blobs/uploads/u1",
    "https://registry.test/v2/mine/repo/blobs/uploads/u1",
    "http://registry.test:8080/v2/mine/repo/blobs/uploads/u1",
    "//catcher.test/v2/mine/repo/blobs/uploads/u1",
    "/v2/other/repo/blobs/uploads/u1",
    "/v2/mine/repo/blobs/uploads/../../../other/manifests/x",
    "uploads/u1",
    "http://[::1",
])
async def test_an_upload_location_elsewhere_is_refused(location: str) -> None:
    sent: list[str] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(202, headers={"Location": location})

    client = RegistryClient("registry.test", options=RegistryOptions(insecure=True),
                            transport=httpx.MockTransport(transport))
    async with client:
        with pytest.raises(RegistryError, match="upload Location"):
            await client.start_upload("mine/repo")
    assert all(url.startswith("http://registry.test/") for url in sent)


async def test_an_upload_location_on_the_registry_is_followed() -> None:
    def transport(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(202, headers={
            "Location": "/v2/mine/repo/blobs/uploads/u1?_state=abc"})

    client = RegistryClient("registry.test", options=RegistryOptions(insecure=True),
                            transport=httpx.MockTransport(transport))
    async with client:
        location = await client.start_upload("mine/repo")
    assert location == "http://registry.test/v2/mine/repo/blobs/uploads/u1?_state=abc"

"""Errors that change nothing, each with a clear message.

Real registries for what they can produce (wrong password, unknown repository, refused
connection); httpx.MockTransport only for answers a real distribution will not give on
demand (schema1, 429, 5xx, 403 DENIED).
"""

from __future__ import annotations

import email.utils
import json
import time
import traceback
from collections.abc import Callable

import httpx
import pytest
from harness import ALICE
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.tokenserver import TokenServer

from mirrord.core.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    parse_manifest,
)
from mirrord.credentials import Credential
from mirrord.errors import (
    ConnectError,
    DigestMismatchError,
    ForbiddenError,
    MirrordError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
    ServerError,
    UnauthorizedError,
    UnsupportedManifestError,
)
from mirrord.registry import RegistryClient, RegistryOptions

pytestmark = pytest.mark.anyio

WRONG_PASSWORD = "Wr0ng-Pa55-do-not-print-me"
SOURCE = "auth file /etc/mirrord/pull-secret.json"


def assert_secret_free(error: BaseException, *secrets: str) -> None:
    rendered = "".join(traceback.format_exception(error)) + repr(error) + repr(error.args)
    for secret in secrets:
        assert secret not in rendered


# -- real registries -----------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["basic_registry", "token_registry"])
async def test_wrong_password_names_registry_and_source_never_the_secret(
    flavour: str,
    request: pytest.FixtureRequest,
    open_client: Callable[..., RegistryClient],
    repo_name: str,
) -> None:
    reg: RegistryProcess = request.getfixturevalue(flavour)
    with reg.client() as http:
        image = push_image(http, repo_name, "v1", seed=repo_name)
        good = open_client(reg, Credential(ALICE.username, ALICE.password, SOURCE))
        manifest = await good.get_manifest(repo_name, "v1")
        client = open_client(reg, Credential("alice", WRONG_PASSWORD, SOURCE))
        attempts = [
            client.check_credentials(),
            client.get_manifest(repo_name, "v1"),
            client.list_tags(repo_name),
            client.put_manifest(repo_name, "v2", manifest),
            client.delete_manifest(repo_name, image.digest),
        ]
        for attempt in attempts:
            with pytest.raises(UnauthorizedError) as caught:
                await attempt
            error = caught.value
            message = str(error)
            assert message.startswith(f"{reg.host}: ")
            assert f"(credentials from {SOURCE})" in message
            assert "401" in message
            assert (error.registry, error.status, error.credential_source) == (
                reg.host, 401, SOURCE)
            assert (error.temporary, error.reason) == (False, "Unauthorized")
            assert_secret_free(error, WRONG_PASSWORD)
        # Nothing changed.
        assert sorted(http.tags(repo_name)) == ["v1"]
        assert http.head_manifest(repo_name, image.digest) == image.digest


async def test_wrong_password_at_the_token_server(
    token_registry: RegistryProcess,
    token_server: TokenServer,
    open_client: Callable[..., RegistryClient],
) -> None:
    client = open_client(token_registry, Credential("12345678|robot", WRONG_PASSWORD, SOURCE))
    with pytest.raises(UnauthorizedError) as caught:
        await client.list_tags("some/repo")
    assert f"token from {token_server.realm}" in str(caught.value)
    assert_secret_free(caught.value, WRONG_PASSWORD)
    assert [(r.status, r.account, r.user) for r in token_server.requests] == [
        (401, "12345678|robot", None)]


async def test_a_credential_without_push_access_is_told_apart_from_a_wrong_one(
    token_registry: RegistryProcess,
    token_server: TokenServer,
    open_client: Callable[..., RegistryClient],
) -> None:
    """The token server grants only pull: the registry's 401 says insufficient_scope."""
    def pull_only(
        user: str | None, kind: str, name: str, actions: tuple[str, ...]
    ) -> tuple[str, ...]:
        return tuple(a for a in actions if a == "pull")

    token_server.policy = pull_only
    client = open_client(token_registry, Credential(ALICE.username, ALICE.password, SOURCE))
    with pytest.raises(UnauthorizedError) as caught:
        await client.start_upload("some/repo")
    assert "the credential was accepted but is not allowed this access" in str(caught.value)
    assert_secret_free(caught.value, ALICE.password)


async def test_insecure_against_an_https_registry_says_it_speaks_https(
    tls_registry: RegistryProcess, open_client: Callable[..., RegistryClient]
) -> None:
    with pytest.raises(RegistryError) as caught:
        await open_client(tls_registry, insecure=True).ping()
    assert f"{tls_registry.host} speaks HTTPS: remove 'insecure: true'" in str(caught.value)


async def test_anonymous_against_basic_auth_says_no_credentials_were_found(
    basic_registry: RegistryProcess, open_client: Callable[..., RegistryClient]
) -> None:
    with pytest.raises(UnauthorizedError, match=r"credentials from anonymous \(no credentials"):
        await open_client(basic_registry).list_tags("any/repo")


@pytest.mark.parametrize("flavour", ["mirror_registry", "basic_registry", "token_registry"])
async def test_unknown_repository(
    flavour: str,
    request: pytest.FixtureRequest,
    open_client: Callable[..., RegistryClient],
    repo_name: str,
) -> None:
    reg: RegistryProcess = request.getfixturevalue(flavour)
    client = open_client(reg, Credential(*ALICE, SOURCE) if reg.users else None)
    missing = f"{repo_name}/nowhere"
    digest = "sha256:" + "0" * 64
    with pytest.raises(NotFoundError) as caught:
        await client.list_tags(missing)
    assert (caught.value.status, caught.value.code) == (404, "NAME_UNKNOWN")
    assert f"list tags of {missing}" in str(caught.value)
    assert (caught.value.temporary, caught.value.reason) == (False, "NotFound")
    with pytest.raises(NotFoundError, match=f"GET manifest {missing}:v1: 404"):
        await client.get_manifest(missing, "v1")
    with pytest.raises(NotFoundError, match="BLOB_UNKNOWN"):
        async with client.get_blob(missing, digest):
            pass
    assert await client.head_manifest(missing, "v1") is None
    assert await client.head_blob(missing, digest) is None


async def test_unknown_tag_in_a_known_repository(
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    open_client: Callable[..., RegistryClient],
    repo_name: str,
) -> None:
    push_image(mirror_client, repo_name, "v1", seed=repo_name)
    with pytest.raises(NotFoundError) as caught:
        await open_client(mirror_registry).get_manifest(repo_name, "v2")
    assert caught.value.code == "MANIFEST_UNKNOWN"


async def test_refused_connection_is_temporary(refused_host: str) -> None:
    host = refused_host
    async with RegistryClient(host, options=RegistryOptions(insecure=True)) as client:
        with pytest.raises(ConnectError) as caught:
            await client.ping()
    assert caught.value.temporary
    assert caught.value.reason == "Unreachable"
    assert str(caught.value).startswith(f"{host}: ping: cannot reach the registry: ConnectError")


@pytest.mark.anyio
async def test_a_name_that_does_not_resolve_fails_at_once_and_says_so() -> None:
    """Not spent on retries: a name that does not resolve will not resolve a second later."""
    from mirrord.errors import NameResolutionError
    from mirrord.registry import RetryPolicy, retrying

    calls = 0
    async with RegistryClient("mirrord-test.invalid", options=RegistryOptions()) as client:

        async def ping() -> str:
            nonlocal calls
            calls += 1
            return await client.ping()

        started = time.monotonic()
        with pytest.raises(NameResolutionError) as caught:
            await retrying(ping, "ping", RetryPolicy(attempts=5, outage_budget=60))
    assert calls == 1 and time.monotonic() - started < 5
    assert not caught.value.temporary and caught.value.reason == "Unreachable"
    assert "cannot reach the registry: its host name does not resolve" in str(caught.value)


# -- answers only a mock gives on demand --------------------------------------------------


Handler = Callable[[httpx.Request], httpx.Response]


def mock_client(handler: Handler) -> RegistryClient:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200, json={})
        return handler(request)

    return RegistryClient("registry.example", transport=httpx.MockTransport(handle))


def oci_error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"errors": [{"code": code, "message": message}]}
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


SCHEMA1 = json.dumps({
    "schemaVersion": 1, "name": "old/image", "tag": "v1", "architecture": "amd64",
    "fsLayers": [{"blobSum": "sha256:" + "a" * 64}], "history": [{"v1Compatibility": "{}"}],
    "signatures": [{"header": {}, "signature": "x", "protected": "y"}],
}, indent=3).encode()


@pytest.mark.parametrize("content_type", [
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/json",
])
async def test_schema1_manifest_is_refused(content_type: str) -> None:
    seen: list[httpx.Request] = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=SCHEMA1, headers={"Content-Type": content_type})

    async with mock_client(serve) as client:
        with pytest.raises(UnsupportedManifestError) as caught:
            await client.get_manifest("old/image", "v1")
    assert "schema1" in str(caught.value)
    assert "re-push the image as schema2 or OCI" in str(caught.value)
    accept = [t.strip() for t in seen[0].headers["accept"].split(",")]
    assert sorted(accept) == sorted([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST,
                                     DOCKER_MANIFEST])


async def test_429_with_retry_after_seconds_is_temporary_and_slows_the_next_request() -> None:
    answers = [oci_error(429, "TOOMANYREQUESTS", "slow down", **{"Retry-After": "0.4"}),
               httpx.Response(200, json={"tags": ["a"]})]
    async with mock_client(lambda request: answers.pop(0)) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.list_tags("busy/repo")
        error = caught.value
        assert (error.temporary, error.retry_after, error.reason) == (True, 0.4, "RateLimited")
        assert "429" in str(error) and "TOOMANYREQUESTS: slow down" in str(error)
        started = time.monotonic()
        assert await client.list_tags("busy/repo") == ["a"]
        assert time.monotonic() - started >= 0.3
        assert client.throttle.waited >= 0.3


async def test_429_with_retry_after_date() -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    with_date = oci_error(429, "TOOMANYREQUESTS", "later", **{"Retry-After": when})
    async with mock_client(lambda request: with_date) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.head_blob("busy/repo", "sha256:" + "1" * 64)
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_temporary(status: int) -> None:
    answer = oci_error(status, "UNAVAILABLE", "maintenance")
    async with mock_client(lambda request: answer) as client:
        with pytest.raises(ServerError) as caught:
            await client.get_manifest("some/repo", "v1")
    assert caught.value.temporary and caught.value.status == status
    assert f"registry.example: GET manifest some/repo:v1: {status}" in str(caught.value)


async def test_denied_is_forbidden_and_final() -> None:
    raw = b'{"schemaVersion":2,"mediaType":"%s","manifests":[]}' % OCI_INDEX.encode()
    answer = oci_error(403, "DENIED", "requested access to the resource is denied")
    async with mock_client(lambda request: answer) as client:
        with pytest.raises(ForbiddenError) as caught:
            await client.put_manifest("ro/repo", "v1", parse_manifest(raw, OCI_INDEX))
    assert not caught.value.temporary and caught.value.reason == "Forbidden"
    assert "DENIED: requested access" in str(caught.value)


async def test_broken_connection_mid_request_is_temporary() -> None:
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    async with mock_client(reset) as client:
        with pytest.raises(ConnectError) as caught:
            await client.list_tags("a/b")
    assert caught.value.temporary and "ReadError" in str(caught.value)


async def test_upload_answer_without_location() -> None:
    async with mock_client(lambda request: httpx.Response(202)) as client:
        with pytest.raises(RegistryError, match="without Location"):
            await client.start_upload("a/b")


async def test_manifest_bytes_not_matching_the_requested_digest() -> None:
    served = b'{"schemaVersion":2,"mediaType":"%s","manifests":[]}' % OCI_INDEX.encode()
    answer = httpx.Response(200, content=served, headers={"Content-Type": OCI_INDEX})
    async with mock_client(lambda request: answer) as client:
        with pytest.raises(DigestMismatchError) as caught:
            await client.get_manifest("a/b", "sha256:" + "2" * 64)
    assert isinstance(caught.value, MirrordError) and caught.value.reason == "DigestMismatch"

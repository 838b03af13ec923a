"""Every RegistryClient verb against real registries: anonymous, Basic (htpasswd), Bearer.

The harness pushes images with its own independent client; mirrord's client reads them,
copies them into another repository with nothing but its verbs, and the harness reads the
copy back byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable

import anyio
import pytest
from harness import ALICE
from harness.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    HELM_CHART,
    HELM_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    RegistryHTTP,
    make_layer,
    push_artifact,
    push_blob,
    push_image,
    push_index,
)
from harness.registry import RegistryProcess

from mirrord.core.oci import Descriptor, Digester, Manifest
from mirrord.credentials import Credential
from mirrord.errors import (
    DigestMismatchError,
    MethodNotAllowedError,
    NotFoundError,
    RegistryError,
)
from mirrord.registry import RegistryClient

pytestmark = pytest.mark.anyio

FLAVOURS = {"mirror_registry": "", "basic_registry": "basic", "token_registry": "bearer"}
KINDS = ("oci", "docker", "oci-index", "docker-list", "artifact")


@pytest.fixture(params=list(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> tuple[str, RegistryProcess]:
    return request.param, request.getfixturevalue(request.param)


@pytest.fixture
def client(
    flavour: tuple[str, RegistryProcess],
    open_client: Callable[..., RegistryClient],
    credential: Callable[..., Credential],
) -> RegistryClient:
    reg = flavour[1]
    return open_client(reg, credential(ALICE) if reg.users else None)


@pytest.fixture
def harness(flavour: tuple[str, RegistryProcess]) -> Iterable[RegistryHTTP]:
    with flavour[1].client() as http:
        yield http


def push_kind(http: RegistryHTTP, repo: str, kind: str, tag: str, seed: str) -> Image:
    if kind == "artifact":
        return push_artifact(http, repo, tag, seed=seed)
    fmt, _, shape = kind.partition("-")
    if shape:
        return push_index(http, repo, tag, fmt=fmt, seed=seed)
    return push_image(http, repo, tag, fmt=fmt, seed=seed)


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def verified(chunks: AsyncIterator[bytes], descriptor: Descriptor) -> AsyncIterator[bytes]:
    digester = Digester(descriptor.digest, descriptor.size)
    async for chunk in chunks:
        digester.update(chunk)
        yield chunk
    digester.verify()


async def copy_manifest(
    src: RegistryClient, src_repo: str, dst: RegistryClient, dst_repo: str, reference: str
) -> Manifest:
    """A minimal copy with the client's verbs only: children, blobs, then the manifest."""
    manifest = await src.get_manifest(src_repo, reference)
    for child in manifest.manifests:
        await copy_manifest(src, src_repo, dst, dst_repo, child.digest)
    for blob in manifest.blobs:
        if await dst.head_blob(dst_repo, blob.digest) is not None:
            continue
        async with src.get_blob(src_repo, blob.digest) as chunks:
            await dst.upload_blob(dst_repo, blob, verified(chunks, blob))
    await dst.put_manifest(dst_repo, reference, manifest)
    return manifest


async def test_ping_names_the_scheme_and_credentials_check(
    flavour: tuple[str, RegistryProcess], client: RegistryClient
) -> None:
    assert await client.ping() == FLAVOURS[flavour[0]]
    await client.check_credentials()


@pytest.mark.parametrize("kind", KINDS)
async def test_manifest_head_get_put_round_trip_byte_exact(
    kind: str,
    flavour: tuple[str, RegistryProcess],
    client: RegistryClient,
    harness: RegistryHTTP,
    repo_name: str,
) -> None:
    image = push_kind(harness, repo_name, kind, "v1", seed=f"{repo_name}/{kind}")
    expected_type = {"oci": OCI_MANIFEST, "docker": DOCKER_MANIFEST, "oci-index": OCI_INDEX,
                     "docker-list": DOCKER_LIST, "artifact": OCI_MANIFEST}[kind]
    assert image.media_type == expected_type

    head = await client.head_manifest(repo_name, "v1")
    assert head == Descriptor(expected_type, image.digest, len(image.raw))
    assert await client.head_manifest(repo_name, "no-such-tag") is None

    got = await client.get_manifest(repo_name, "v1")
    assert (got.raw, got.digest, got.media_type) == (image.raw, image.digest, expected_type)
    if image.is_index:
        assert [d.digest for d in got.manifests] == [c.digest for c in image.children]
        assert got.blobs == ()
    else:
        assert [d.digest for d in got.blobs] == [b.digest for b in image.blobs]
    if kind == "artifact":
        assert got.artifact_type == HELM_CONFIG
        assert [layer.media_type for layer in got.layers] == [HELM_CHART]
    by_digest = await client.get_manifest(repo_name, image.digest)
    assert by_digest.raw == image.raw

    copy = f"{repo_name}/copy"
    await copy_manifest(client, repo_name, client, copy, "v1")
    served = harness.get_manifest(copy, "v1")
    assert (served.raw, served.digest, served.media_type) == (
        image.raw, image.digest, expected_type)
    for child in image.children:
        assert harness.get_manifest(copy, child.digest).raw == child.raw
    for blob in image.blobs:
        assert harness.get_blob(copy, blob.digest) == blob.data
    assert await client.head_manifest(copy, "v1") == head


@pytest.mark.parametrize(
    ("chunk_size", "monolithic_max"),
    [(0, 0), (4096, 0), (0, 9_999), (0, 10_000)],
    ids=["streamed-patch", "chunked-patch", "just-over-monolithic", "monolithic-put"],
)
async def test_blob_head_get_upload(
    chunk_size: int,
    monolithic_max: int,
    flavour: tuple[str, RegistryProcess],
    open_client: Callable[..., RegistryClient],
    credential: Callable[..., Credential],
    harness: RegistryHTTP,
    repo_name: str,
) -> None:
    reg = flavour[1]
    client = open_client(reg, credential(ALICE) if reg.users else None,
                         chunk_size=chunk_size, monolithic_max=monolithic_max)
    blob = make_layer(10_000, f"{repo_name}/upload")
    descriptor = Descriptor(blob.media_type, blob.digest, blob.size)
    assert await client.head_blob(repo_name, blob.digest) is None

    mark = reg.mark()
    await client.upload_blob(repo_name, descriptor, chunks_of(blob.data, 3000))
    log = [e for e in reg.access_log(since=mark) if e.route != "/v2/"]
    methods = [e.method for e in log]
    if monolithic_max >= blob.size:  # the body goes with the closing PUT
        patches = 0
    else:
        patches = math.ceil(blob.size / chunk_size) if chunk_size else 1  # or one streamed
    assert methods == ["POST"] + ["PATCH"] * patches + ["PUT"]
    assert [e.status for e in log] == [202] + [202] * patches + [201]
    assert f"digest={blob.digest.replace(':', '%3A')}" in log[-1].path

    assert await client.head_blob(repo_name, blob.digest) == blob.size
    async with client.get_blob(repo_name, blob.digest) as chunks:
        received = b"".join([chunk async for chunk in chunks])
    assert received == blob.data
    assert harness.get_blob(repo_name, blob.digest) == blob.data


async def test_monolithic_put_sends_nothing_unverified(
    mirror_registry: RegistryProcess,
    open_client: Callable[..., RegistryClient],
    repo_name: str,
) -> None:
    """A small blob whose source content does not match its digest: the verifying
    stream refuses it before the PUT, nothing is committed and the session is cancelled."""
    reg = mirror_registry
    client = open_client(reg, None)
    blob = make_layer(5000, f"{repo_name}/bad")
    descriptor = Descriptor(blob.media_type, blob.digest, blob.size)
    tampered = blob.data[:-1] + bytes([blob.data[-1] ^ 1])
    mark = reg.mark()
    with pytest.raises(DigestMismatchError):
        await client.upload_blob(repo_name, descriptor, verified(chunks_of(tampered), descriptor))
    log = [(e.method, e.status) for e in reg.access_log(since=mark) if e.route != "/v2/"]
    assert log == [("POST", 202), ("DELETE", 204)]
    assert await client.head_blob(repo_name, blob.digest) is None

    # A source that sends more than the descriptor's size is refused before the PUT too.
    mark = reg.mark()
    with pytest.raises(DigestMismatchError, match=f"more than {blob.size} bytes"):
        await client.upload_blob(repo_name, descriptor, chunks_of(blob.data + b"x"))
    log = [e.method for e in reg.access_log(since=mark) if e.route != "/v2/"]
    assert log == ["POST", "DELETE"]


async def test_mount_201_and_202_fallback(
    flavour: tuple[str, RegistryProcess],
    client: RegistryClient,
    harness: RegistryHTTP,
    repo_name: str,
) -> None:
    reg = flavour[1]
    blob = make_layer(3000, f"{repo_name}/mount")
    descriptor = Descriptor(blob.media_type, blob.digest, blob.size)
    source, target = f"{repo_name}/source", f"{repo_name}/target"
    push_blob(harness, source, blob)

    mark = reg.mark()
    assert await client.mount_blob(target, blob.digest, source) is None
    assert await client.head_blob(target, blob.digest) == blob.size
    posts = [e for e in reg.access_log(since=mark) if e.method == "POST"]
    assert [(e.route, e.status) for e in posts] == [(f"/v2/{target}/blobs/uploads/", 201)]

    # From a repository that lacks the blob, the registry answers 202 with an upload.
    other = f"{repo_name}/other"
    mark = reg.mark()
    location = await client.mount_blob(other, blob.digest, f"{repo_name}/empty")
    assert location is not None and "/blobs/uploads/" in location
    assert location.startswith(reg.url)
    await client.upload_blob(other, descriptor, chunks_of(blob.data), location=location)
    assert await client.head_blob(other, blob.digest) == blob.size
    log = [(e.method, e.status) for e in reg.access_log(since=mark) if e.route != "/v2/"]
    assert log == [("POST", 202), ("PUT", 201), ("HEAD", 200)]  # small: a monolithic PUT
    assert harness.get_blob(other, blob.digest) == blob.data


async def test_list_tags(
    client: RegistryClient, harness: RegistryHTTP, repo_name: str
) -> None:
    tags = ["1.0", "1.1", "2.0", "latest"]
    for tag in tags:
        push_image(harness, repo_name, tag, seed=f"{repo_name}/{tag}")
    assert sorted(await client.list_tags(repo_name)) == tags


async def test_delete_manifest(
    client: RegistryClient, harness: RegistryHTTP, repo_name: str
) -> None:
    image = push_image(harness, repo_name, "gone", seed=repo_name)
    await client.delete_manifest(repo_name, image.digest)
    assert await client.head_manifest(repo_name, "gone") is None
    assert harness.head_manifest(repo_name, image.digest) is None
    with pytest.raises(NotFoundError):
        await client.delete_manifest(repo_name, image.digest)


async def test_delete_refused_by_a_registry_that_disallows_it(
    registry_factory: Callable[..., RegistryProcess],
    open_client: Callable[..., RegistryClient],
    repo_name: str,
) -> None:
    reg = registry_factory(delete_enabled=False)
    with reg.client() as http:
        image = push_image(http, repo_name, "kept", seed=repo_name)
        client = open_client(reg)
        with pytest.raises(MethodNotAllowedError) as caught:
            await client.delete_manifest(repo_name, image.digest)
        assert reg.host in str(caught.value)
        assert "does not allow" in str(caught.value)
        assert not caught.value.temporary
        assert http.head_manifest(repo_name, "kept") == image.digest


async def test_every_request_is_authorised_up_front(
    flavour: tuple[str, RegistryProcess],
    client: RegistryClient,
    harness: RegistryHTTP,
    repo_name: str,
) -> None:
    """After the one ping, no request costs a 401 and a retry."""
    reg = flavour[1]
    image = push_image(harness, repo_name, "v1", seed=repo_name)
    mark = reg.mark()
    await copy_manifest(client, repo_name, client, f"{repo_name}/copy", "v1")
    await client.list_tags(repo_name)
    log = reg.access_log(since=mark)
    assert [e.route for e in log if e.status == 401] == (["/v2/"] if reg.users else [])
    assert ("GET", f"/v2/{repo_name}/manifests/v1") in [(e.method, e.route) for e in log]
    assert sum(client.requests.values()) == len(log)
    assert image.digest == (await client.head_manifest(f"{repo_name}/copy", "v1")).digest


async def test_blobs_stream_within_one_registry_without_starving_the_limiter(
    mirror_registry: RegistryProcess,
    open_client: Callable[..., RegistryClient],
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """Source and mirror on one registry share a client (and its limit of 2 requests):
    4 blobs streamed concurrently from one repository into another all arrive."""
    client = open_client(mirror_registry, max_concurrency=2)
    blobs = [make_layer(5000, f"{repo_name}/{i}") for i in range(4)]
    for blob in blobs:
        push_blob(mirror_client, repo_name, blob)

    async def copy(descriptor: Descriptor) -> None:
        async with client.get_blob(repo_name, descriptor.digest) as chunks:
            await client.upload_blob(f"{repo_name}/copy", descriptor, verified(chunks, descriptor))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for blob in blobs:
                tg.start_soon(copy, Descriptor(blob.media_type, blob.digest, blob.size))
    for blob in blobs:
        assert mirror_client.get_blob(f"{repo_name}/copy", blob.digest) == blob.data


async def test_get_path_reads_referrers_and_manifests_and_nothing_else(
    client: RegistryClient, harness: RegistryHTTP, repo_name: str
) -> None:
    image = push_image(harness, repo_name, "1.0", seed=repo_name)
    got = await client.get_path(f"/v2/{repo_name}/manifests/{image.digest}", {})
    assert got.status_code == 200 and got.content == image.raw
    # Distribution 2.8 has no referrers API: a 404 is an answer, not an error.
    none = await client.get_path(f"/v2/{repo_name}/referrers/{image.digest}", {})
    assert none.status_code == 404
    missing = await client.get_path(f"/v2/{repo_name}/manifests/sha256-{'0' * 64}", {})
    assert missing.status_code == 404
    for bad in (f"/v2/{repo_name}/blobs/{image.digest}", "/v2/../etc/manifests/x",
                f"/v2/{repo_name}/referrers/{image.digest}/../../x", "http://elsewhere/v2/a"):
        with pytest.raises(RegistryError, match="refused"):
            await client.get_path(bad, {})

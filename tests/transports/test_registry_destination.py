"""The registry destination: mirror repositories under a prefix of a real registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from harness.images import RegistryHTTP, build_index, make_layer, push_blob
from harness.registry import RegistryProcess

from mirrord.core.oci import Descriptor, parse_manifest
from mirrord.errors import NotFoundError
from mirrord.registry import RegistryClient, RegistryOptions
from mirrord.transports import RegistryDestination

pytestmark = pytest.mark.anyio



@pytest.fixture
async def destination(mirror_registry: RegistryProcess) -> AsyncIterator[RegistryDestination]:
    client = RegistryClient(mirror_registry.host, options=RegistryOptions(insecure=True))
    dest = RegistryDestination(client, "/mirror/")
    yield dest
    await dest.aclose()


@pytest.fixture
def harness(mirror_registry: RegistryProcess) -> Iterator[RegistryHTTP]:
    with mirror_registry.client() as http:
        yield http


async def pieces(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


def test_names(mirror_registry: RegistryProcess) -> None:
    client = RegistryClient(mirror_registry.host, options=RegistryOptions(insecure=True))
    dest = RegistryDestination(client, "/mirror/")
    assert dest.description == f"docker://{mirror_registry.host}/mirror"
    assert dest.repository("/ubi9/ubi") == "mirror/ubi9/ubi"
    assert RegistryDestination(client).repository("ubi9/ubi") == "ubi9/ubi"
    assert RegistryDestination(client).description == f"docker://{mirror_registry.host}"
    digest = "sha256:" + "a" * 64
    assert dest.reference("mirror/a", "v1") == f"{mirror_registry.host}/mirror/a:v1"
    assert dest.reference("mirror/a", digest) == f"{mirror_registry.host}/mirror/a@{digest}"


async def test_write_mount_put_head_list_delete(
    destination: RegistryDestination, harness: RegistryHTTP, repo_name: str
) -> None:
    await destination.ping()
    repo = destination.repository(repo_name)
    index = build_index(repo, "multi", seed=repo_name)
    for blob in index.blobs:
        assert not await destination.blob_exists(repo, blob.digest)
        await destination.write_blob(
            repo, Descriptor(blob.media_type, blob.digest, blob.size), pieces(blob.data))
        assert await destination.blob_exists(repo, blob.digest)
    for child in index.children:
        await destination.put_manifest(repo, child.digest, parse_manifest(child.raw))
    await destination.put_manifest(repo, "multi", parse_manifest(index.raw, index.media_type))
    assert harness.get_manifest(repo, "multi").raw == index.raw
    assert await destination.list_tags(repo) == ["multi"]
    head = await destination.head_manifest(repo, "multi")
    assert head is not None and head.digest == index.digest

    blob = make_layer(2000, repo_name)
    push_blob(harness, f"{repo}/elsewhere", blob)
    assert await destination.mount_blob(repo, blob.digest, f"{repo}/elsewhere") is None
    upload = await destination.mount_blob(f"{repo}/third", blob.digest, f"{repo}/nowhere")
    assert upload
    await destination.write_blob(f"{repo}/third", Descriptor(blob.media_type, blob.digest,
                                                             blob.size), pieces(blob.data), upload)
    assert harness.get_blob(f"{repo}/third", blob.digest) == blob.data

    await destination.delete_manifest(repo, index.digest)
    assert await destination.head_manifest(repo, "multi") is None
    with pytest.raises(NotFoundError):
        await destination.delete_manifest(repo, index.digest)

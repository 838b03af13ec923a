"""The Destination contract, one suite over both mirrors: a real registry under a prefix
and an OCI layout directory (as apscheduler runs every data store through one suite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness.images import Blob, build_image, build_index, make_layer
from harness.referrers import OCI_INDEX, build_referrer
from harness.registry import RegistryProcess

from mirrord.core.oci import Descriptor, parse_manifest
from mirrord.errors import DigestMismatchError, NotFoundError
from mirrord.registry import RegistryClient, RegistryOptions
from mirrord.transports import (
    Destination,
    OCILayoutDestination,
    RegistryDestination,
    read_children,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["registry", "oci-layout"])
async def destination(
    request: pytest.FixtureRequest, tmp_path: Path, mirror_registry: RegistryProcess
) -> AsyncIterator[Destination]:
    dest: Destination
    if request.param == "registry":
        client = RegistryClient(mirror_registry.host, options=RegistryOptions(insecure=True))
        dest = RegistryDestination(client, "contract")
    else:
        dest = OCILayoutDestination(tmp_path / "layout")
    yield dest
    await dest.aclose()


async def _chunks(data: bytes, size: int = 700) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _bad_chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data[: len(data) // 2]
    raise DigestMismatchError("the stream was refused half-way")


def _descriptor(blob: Blob) -> Descriptor:
    return Descriptor(blob.media_type, blob.digest, blob.size)


async def _store_image(dest: Destination, repo: str, tag: str, seed: str) -> str:
    image = build_image(repo, tag, seed=seed)
    for blob in image.blobs:
        await dest.write_blob(repo, _descriptor(blob), _chunks(blob.data))
    await dest.put_manifest(repo, tag, parse_manifest(image.raw, image.media_type))
    return image.digest


async def test_a_tag_names_the_manifest_written_byte_for_byte(
    destination: Destination, repo_name: str
) -> None:
    await destination.ping()
    repo = destination.repository(repo_name)
    digest = await _store_image(destination, repo, "v1", repo_name)
    head = await destination.head_manifest(repo, "v1")
    assert head is not None and head.digest == digest
    by_digest = await destination.head_manifest(repo, digest)
    assert by_digest is not None and by_digest.digest == digest
    assert await destination.list_tags(repo) == ["v1"]
    assert await destination.head_manifest(repo, "v2") is None


async def test_blobs_exist_once_written_and_a_refused_stream_stores_nothing(
    destination: Destination, repo_name: str
) -> None:
    repo = destination.repository(repo_name)
    blob = make_layer(3000, f"{repo_name}/blob")
    assert not await destination.blob_exists(repo, blob.digest)
    with pytest.raises(DigestMismatchError):
        await destination.write_blob(repo, _descriptor(blob), _bad_chunks(blob.data))
    assert not await destination.blob_exists(repo, blob.digest)
    await destination.write_blob(repo, _descriptor(blob), _chunks(blob.data))
    assert await destination.blob_exists(repo, blob.digest)


async def test_a_blob_in_one_repository_mounts_into_another(
    destination: Destination, repo_name: str
) -> None:
    first, second = destination.repository(repo_name), destination.repository(f"{repo_name}-2")
    blob = make_layer(3000, f"{repo_name}/mount")
    await destination.write_blob(first, _descriptor(blob), _chunks(blob.data))
    assert await destination.mount_blob(second, blob.digest, first) is None
    assert await destination.blob_exists(second, blob.digest)


async def test_an_index_is_stored_after_its_children_and_read_back(
    destination: Destination, repo_name: str
) -> None:
    repo = destination.repository(repo_name)
    index = build_index(repo, "multi", seed=repo_name)
    for blob in index.blobs:
        await destination.write_blob(repo, _descriptor(blob), _chunks(blob.data))
    for child in index.children:
        await destination.put_manifest(repo, child.digest, parse_manifest(child.raw))
    await destination.put_manifest(repo, "multi", parse_manifest(index.raw, index.media_type))
    found = await read_children(destination, {index.digest: [repo]})
    assert found == {index.digest: tuple(c.digest for c in index.children)}
    assert await destination.list_tags(repo) == ["multi"]  # children carry no tag


async def test_deleting_a_manifest_untags_it(destination: Destination, repo_name: str) -> None:
    repo = destination.repository(repo_name)
    digest = await _store_image(destination, repo, "gone", repo_name)
    await destination.delete_manifest(repo, digest)
    assert await destination.head_manifest(repo, "gone") is None
    with pytest.raises(NotFoundError):
        await destination.delete_manifest(repo, digest)


async def test_a_referrer_is_stored_by_digest_and_neither_mirror_indexes_it(
    destination: Destination, repo_name: str
) -> None:
    """Distribution 2.8 and an OCI layout have no referrers API: a pushed referrer gets no
    OCI-Subject answer, and the referrers tag schema index is an ordinary tag."""
    repo = destination.repository(repo_name)
    digest = await _store_image(destination, repo, "1.0", seed=repo_name)
    subject = await destination.head_manifest(repo, "1.0")
    assert subject is not None
    raw, blobs = build_referrer({"mediaType": subject.media_type, "digest": digest,
                                 "size": subject.size}, "application/spdx+json", b"{}")
    for blob_digest, data in blobs.items():
        await destination.write_blob(repo, Descriptor("application/octet-stream", blob_digest,
                                                      len(data)), _chunks(data))
    referrer = parse_manifest(raw)
    assert referrer.subject is not None and referrer.subject.digest == digest
    assert await destination.put_manifest(repo, referrer.digest, referrer) is None
    assert not await destination.referrers_api(repo, digest)
    held = await destination.head_manifest(repo, referrer.digest)
    assert held is not None and held.digest == referrer.digest
    tag = "sha256-" + digest.split(":", 1)[1]
    index = parse_manifest(
        b'{"schemaVersion":2,"mediaType":"%s","manifests":[{"mediaType":"%s","digest":"%s",'
        b'"size":%d}]}' % (OCI_INDEX.encode(), referrer.media_type.encode(),
                           referrer.digest.encode(), referrer.size))
    await destination.put_manifest(repo, tag, index)
    assert tag in await destination.list_tags(repo)
    found = await destination.head_manifest(repo, tag)
    assert found is not None and found.digest == index.digest

"""The OCI layout never lets a name or digest pick a file: digests are checked before
they become paths under blobs/, names before they go into index.json, and manifest files
are read only when regular and small."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from harness.hostile_images import BAD_DIGESTS, WEIRD_TAGS
from harness.images import build_image

from mirrord.core.oci import parse_manifest
from mirrord.errors import DigestInvalidError, InvalidNameError, StorageError
from mirrord.transports import OCILayoutDestination, read_manifest

pytestmark = pytest.mark.anyio


@pytest.fixture
def layout(tmp_path: Path) -> OCILayoutDestination:
    return OCILayoutDestination(tmp_path / "oci")


@pytest.mark.parametrize("digest", [d for d in BAD_DIGESTS.values() if d and ":" in d])
async def test_a_bad_digest_is_never_a_path(layout: OCILayoutDestination, digest: str) -> None:
    if digest == BAD_DIGESTS["wrong"]:
        assert layout.blob_path(digest).parent == layout.root / "blobs" / "sha256"
        return
    with pytest.raises(DigestInvalidError):
        layout.blob_path(digest)
    with pytest.raises(DigestInvalidError):
        await layout.blob_exists("a", digest)
    with pytest.raises(DigestInvalidError):
        await layout.delete_manifest("a", digest)


async def test_a_digest_shaped_tag_never_opens_the_file_it_names(
    layout: OCILayoutDestination, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"{}")
    past = time.time() - 2 * 86400
    os.utime(secret, (past, past + 60))
    before = secret.stat().st_atime
    for reference in (f"sha256:{secret}", "sha256:/dev/zero", f"sha256:../../{secret.name}"):
        with pytest.raises(InvalidNameError):
            await layout.head_manifest("a", reference)
    assert secret.stat().st_atime == before


@pytest.mark.parametrize("tag", WEIRD_TAGS)
async def test_no_invalid_name_is_written_into_index_json(
    layout: OCILayoutDestination, tag: str
) -> None:
    image = build_image("a", "1", seed="names")
    manifest = parse_manifest(image.raw, image.media_type)
    await layout.put_manifest("a", "ok", manifest)
    with pytest.raises(InvalidNameError):
        await layout.put_manifest("a", tag, manifest)
    for repository in ("a/../b", "A", "a//b", "x" * 300):
        with pytest.raises(InvalidNameError):
            await layout.put_manifest(repository, "ok", manifest)
    index = json.loads((layout.root / "index.json").read_text())
    names = [e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]]
    assert names == ["a:ok"]


async def test_a_manifest_file_that_is_no_regular_file_or_too_big_is_refused(
    tmp_path: Path,
) -> None:
    layout = OCILayoutDestination(tmp_path / "oci", max_manifest_size=1024)
    image = build_image("a", "1", seed="names")
    manifest = parse_manifest(image.raw, image.media_type)
    await layout.put_manifest("a", "1", manifest)
    path = layout.blob_path(manifest.digest)
    path.unlink()
    os.mkfifo(path)  # a reader that blocked on it would never return
    with pytest.raises(StorageError, match="not a regular file"):
        await read_manifest(layout, "a", manifest.digest)
    path.unlink()
    path.write_bytes(b" " * 2048)
    with pytest.raises(StorageError, match="larger than the 1024 bytes"):
        await layout.head_manifest("a", manifest.digest)

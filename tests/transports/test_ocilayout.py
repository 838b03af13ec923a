"""The OCI image layout destination: crash-safe blobs, tags in index.json, readable by skopeo."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness.images import Blob, build_artifact, build_image, build_index

from mirrord.core.oci import OCI_INDEX, Descriptor, Digester, Manifest, parse_manifest
from mirrord.errors import DigestMismatchError, NotFoundError
from mirrord.transports import OCILayoutDestination
from mirrord.transports._ocilayout import REF_NAME

pytestmark = pytest.mark.anyio



@pytest.fixture
def layout(tmp_path: Path) -> OCILayoutDestination:
    return OCILayoutDestination(tmp_path / "oci")


def descriptor(blob: Blob) -> Descriptor:
    return Descriptor(blob.media_type, blob.digest, blob.size)


async def verified(blob: Blob, data: bytes | None = None) -> AsyncIterator[bytes]:
    """The blob's bytes in pieces, checked on the way as the copy engine does."""
    digester = Digester(blob.digest, blob.size)
    payload = blob.data if data is None else data
    for start in range(0, len(payload), 700):
        piece = payload[start : start + 700]
        digester.update(piece)
        yield piece
    digester.verify()


async def store_image(layout: OCILayoutDestination, repo: str, image: object, tag: str) -> None:
    for blob in image.blobs:  # type: ignore[attr-defined]
        await layout.write_blob(repo, descriptor(blob), verified(blob))
    for child in image.children:  # type: ignore[attr-defined]
        await layout.put_manifest(repo, child.digest, parse_manifest(child.raw, child.media_type))
    manifest = parse_manifest(image.raw, image.media_type)  # type: ignore[attr-defined]
    await layout.put_manifest(repo, tag, manifest)


def index_entries(layout: OCILayoutDestination) -> list[dict[str, object]]:
    index = json.loads((layout.root / "index.json").read_bytes())
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    return list(index["manifests"])


async def test_ping_only_checks_and_the_first_write_creates_the_layout(
    layout: OCILayoutDestination,
) -> None:
    await layout.ping()
    assert not layout.root.exists()  # a dry run or a readiness probe changes nothing
    assert await layout.list_tags("a") == []
    assert await layout.head_manifest("a", "v1") is None
    assert not layout.root.exists()
    await store_image(layout, "a", build_image("a", "v1", seed="first"), "v1")
    assert json.loads((layout.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert [e["annotations"] for e in index_entries(layout)] == [{REF_NAME: "a:v1"}]
    await layout.ping()


async def test_an_empty_layout_is_created_on_the_first_write(
    layout: OCILayoutDestination,
) -> None:
    blob = build_image("x", None, seed="empty").layers[0]
    await layout.write_blob("a", descriptor(blob), verified(blob))
    assert json.loads((layout.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert index_entries(layout) == []
    assert layout.description == f"oci:{layout.root}"
    assert layout.reference("a/b", "v1") == f"oci:{layout.root}:a/b:v1"


async def test_blob_written_exactly_and_shared_by_repositories(
    layout: OCILayoutDestination,
) -> None:
    image = build_image("x", None, seed="blob")
    blob = image.layers[0]
    assert not await layout.blob_exists("a", blob.digest)
    assert await layout.mount_blob("b", blob.digest, "a") == ""  # absent: an upload handle
    await layout.write_blob("a", descriptor(blob), verified(blob), upload="")
    assert layout.blob_path(blob.digest).read_bytes() == blob.data
    assert await layout.blob_exists("b", blob.digest)  # one blobs/ for every repository
    assert await layout.mount_blob("b", blob.digest, "a") is None
    assert list((layout.root / "ingest").iterdir()) == []


async def test_a_failing_stream_stores_nothing(layout: OCILayoutDestination) -> None:
    blob = build_image("x", None, seed="bad").layers[0]
    corrupted = blob.data[:-1] + bytes([blob.data[-1] ^ 1])
    with pytest.raises(DigestMismatchError):
        await layout.write_blob("a", descriptor(blob), verified(blob, corrupted))
    assert not await layout.blob_exists("a", blob.digest)
    assert list((layout.root / "ingest").iterdir()) == []


async def test_tags_live_in_index_json(layout: OCILayoutDestination) -> None:
    v1 = build_image("team/app", "v1", seed="v1")
    v2 = build_image("team/app", "v2", fmt="docker", seed="v2")
    await store_image(layout, "team/app", v1, "v1")
    await store_image(layout, "team/app", v2, "v2")
    await store_image(layout, "other/app", v1, "v1")
    assert sorted(await layout.list_tags("team/app")) == ["v1", "v2"]
    assert await layout.list_tags("team") == []
    head = await layout.head_manifest("team/app", "v2")
    assert head is not None and (head.digest, head.media_type, head.size) == (
        v2.digest, v2.media_type, len(v2.raw))
    by_digest = await layout.head_manifest("team/app", v1.digest)
    assert by_digest is not None and by_digest.digest == v1.digest
    assert await layout.head_manifest("team/app", "v3") is None
    assert await layout.head_manifest("team/app", "sha256:" + "9" * 64) is None

    # Re-tagging replaces the entry; the manifest bytes stay as they were served.
    await store_image(layout, "team/app", v2, "v1")
    names = [e["annotations"][REF_NAME] for e in index_entries(layout)]  # type: ignore[index]
    assert sorted(names) == ["other/app:v1", "team/app:v1", "team/app:v2"]
    assert layout.blob_path(v1.digest).read_bytes() == v1.raw
    head = await layout.head_manifest("team/app", "v1")
    assert head is not None and head.digest == v2.digest


async def test_index_children_are_stored_by_digest_only(layout: OCILayoutDestination) -> None:
    index = build_index("multi", "all", seed="idx")
    await store_image(layout, "multi", index, "all")
    assert [e["digest"] for e in index_entries(layout)] == [index.digest]
    for child in index.children:
        assert layout.blob_path(child.digest).read_bytes() == child.raw
        head = await layout.head_manifest("multi", child.digest)
        assert head is not None and head.media_type == child.media_type


async def test_delete_drops_the_tags_of_one_repository(layout: OCILayoutDestination) -> None:
    image = build_image("a", "v1", seed="del")
    await store_image(layout, "a", image, "v1")
    await store_image(layout, "a", image, "latest")
    await store_image(layout, "b", image, "v1")
    await layout.delete_manifest("a", image.digest)
    assert await layout.list_tags("a") == []
    assert await layout.list_tags("b") == ["v1"]
    assert layout.blob_path(image.digest).exists()  # blobs stay for garbage collection
    with pytest.raises(NotFoundError, match=f"a@{image.digest} is not tagged"):
        await layout.delete_manifest("a", image.digest)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
async def test_skopeo_reads_what_was_written(layout: OCILayoutDestination) -> None:
    chart = build_artifact("charts/app", "0.1.0", seed="skopeo")
    image = build_image("team/app", "v1", seed="skopeo")
    await store_image(layout, "team/app", image, "v1")
    await store_image(layout, "charts/app", chart, "0.1.0")
    for name, expected in (("team/app:v1", image), ("charts/app:0.1.0", chart)):
        out = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout.root}:{name}"],
                             check=True, capture_output=True, timeout=30).stdout
        assert out == expected.raw
        manifest: Manifest = parse_manifest(out)
        assert manifest.digest == expected.digest


async def test_entries_without_a_ref_name_survive_tag_writes(tmp_path: Path) -> None:
    first = OCILayoutDestination(tmp_path / "oci")
    await store_image(first, "app/a", build_image("app/a", "0.9", seed="first"), "0.9")
    foreign = {"mediaType": OCI_INDEX, "digest": "sha256:" + "f" * 64, "size": 10}
    index = json.loads((tmp_path / "oci" / "index.json").read_bytes())
    index["manifests"].append(foreign)
    (tmp_path / "oci" / "index.json").write_text(json.dumps(index))
    layout = OCILayoutDestination(tmp_path / "oci")
    image = build_image("app/a", "1.0", seed="named")
    await store_image(layout, "app/a", image, "1.0")
    await store_image(layout, "app/a", build_image("app/a", "2.0", seed="two"), "2.0")

    assert foreign in index_entries(layout)
    found = await layout.head_manifest("app/a", "1.0")
    assert found is not None and found.digest == image.digest
    assert await OCILayoutDestination(tmp_path / "oci").head_manifest("app/a", "1.0") == found

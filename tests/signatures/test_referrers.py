"""OCI 1.1 referrers: through the API (a referrers-capable fake, since distribution 2.8 has
none) and through the referrers tag schema against Debian's docker-registry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from harness.images import OCI_MANIFEST, Image, RegistryHTTP, push_image
from harness.referrers import OCI_INDEX, ReferrersRegistry, build_referrer
from harness.registry import RegistryProcess

from mirrord.errors import ManifestError
from mirrord.signatures import (
    filter_referrers,
    list_referrers,
    merge_referrers_index,
    referrer_descriptor,
    referrers_tag,
    subject_of,
)

pytestmark = pytest.mark.anyio
SBOM = "application/spdx+json"
SIG = "application/vnd.dev.sigstore.bundle.v0.3+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_referrer(client: RegistryHTTP, image: Image, artifact_type: str, payload: bytes,
                  ) -> tuple[bytes, str]:
    raw, blobs = build_referrer(image.descriptor(), artifact_type, payload,
                                {"org.example.note": artifact_type})
    for digest, blob in blobs.items():
        if not client.blob_exists(image.repo, digest):
            client.upload_blob(image.repo, blob, digest)
    digest = client.put_manifest(image.repo, sha(raw), raw, OCI_MANIFEST)
    return raw, digest


@pytest.fixture
async def http_get(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def make(base_url: str) -> Any:
        client = httpx.AsyncClient(base_url=base_url)
        clients.append(client)

        async def get(path: str, headers: Mapping[str, str]) -> httpx.Response:
            return await client.get(path, headers=dict(headers))
        return get

    yield make
    for client in clients:
        await client.aclose()


async def test_referrers_api_lists_and_filters(http_get: Any) -> None:
    with ReferrersRegistry(page_size=1) as reg, RegistryHTTP(reg.url) as client:
        image = push_image(client, "team/app", "1.0")
        other = push_image(client, "team/app", "2.0", seed="other")
        sbom_raw, sbom = push_referrer(client, image, SBOM, b'{"spdx": 1}')
        _, sig = push_referrer(client, image, SIG, b"bundle")
        push_referrer(client, other, SBOM, b'{"spdx": 2}')
        get = http_get(reg.url)

        found = await list_referrers(get, "team/app", image.digest)
        assert found.via == "api"
        assert sorted(d["digest"] for d in found.descriptors) == sorted([sbom, sig])
        by_type = {d["artifactType"]: d for d in found.descriptors}
        assert by_type[SBOM] == referrer_descriptor(sbom_raw, sbom)
        assert by_type[SBOM]["annotations"] == {"org.example.note": SBOM}
        paged = [path for _, path in reg.requests if "/referrers/" in path]
        assert any("page=1" in path for path in paged)  # followed the Link header

        only = await list_referrers(get, "team/app", image.digest, artifact_type=SBOM)
        assert [d["digest"] for d in only.descriptors] == [sbom]
        assert reg.requests[-1][1].endswith(
            f"/referrers/{image.digest}?artifactType=application%2Fspdx%2Bjson")
        assert subject_of(sbom_raw) == image.digest
        assert subject_of(image.raw) is None


async def test_referrers_tag_schema_on_distribution(mirror_registry: RegistryProcess,
                                                    mirror_client: RegistryHTTP, repo_name: str,
                                                    http_get: Any) -> None:
    image = push_image(mirror_client, repo_name, "1.0", seed=repo_name)
    get = http_get(mirror_registry.url)
    before = await list_referrers(get, repo_name, image.digest)
    assert before.via == "tag" and before.descriptors == ()  # no API, no fallback tag yet

    tag = referrers_tag(image.digest)
    sbom_raw, sbom = push_referrer(mirror_client, image, SBOM, b'{"spdx": 1}')
    index, changed = merge_referrers_index(None, [referrer_descriptor(sbom_raw, sbom)])
    assert changed
    mirror_client.put_manifest(repo_name, tag, index, OCI_INDEX)

    sig_raw, sig = push_referrer(mirror_client, image, SIG, b"bundle")
    existing = mirror_client.get_manifest(repo_name, tag, accept=[OCI_INDEX]).raw
    assert existing == index
    merged, changed = merge_referrers_index(existing, [referrer_descriptor(sig_raw, sig),
                                                       referrer_descriptor(sbom_raw, sbom)])
    assert changed
    mirror_client.put_manifest(repo_name, tag, merged, OCI_INDEX)
    again, changed = merge_referrers_index(merged, [referrer_descriptor(sig_raw, sig)])
    assert (again, changed) == (merged, False)  # nothing new: same bytes, no push

    found = await list_referrers(get, repo_name, image.digest)
    assert found.via == "tag"
    assert [d["digest"] for d in found.descriptors] == [sbom, sig]  # kept order, appended
    only = await list_referrers(get, repo_name, image.digest, artifact_type=SIG)
    assert [d["digest"] for d in only.descriptors] == [sig]


def test_merge_keeps_unknown_entries_and_is_byte_stable() -> None:
    foreign = {"mediaType": OCI_MANIFEST, "digest": sha(b"a"), "size": 1,
               "artifactType": "x/y", "annotations": {"k": "v"}}
    existing = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": [foreign]}, indent=2).encode()
    new = {"mediaType": OCI_MANIFEST, "digest": sha(b"b"), "size": 2, "artifactType": SBOM}
    one, changed = merge_referrers_index(existing, [new, new])
    assert changed
    assert json.loads(one)["manifests"] == [foreign, new]
    assert merge_referrers_index(existing, [new])[0] == one
    fresh_a, _ = merge_referrers_index(None, [new])
    fresh_b, _ = merge_referrers_index(None, [dict(reversed(list(new.items())))])
    assert fresh_a == fresh_b
    assert filter_referrers(json.loads(one)["manifests"], "x/y") == [foreign]


@pytest.mark.parametrize("existing", [
    b"not json",
    json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode(),
    json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:x", "size": 1}]}
               ).encode(),
    json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(b"a"), "size": -1}]}
               ).encode(),
    json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(str(i).encode()), "size": 1}
        for i in range(1001)]}).encode(),
])
def test_merge_refuses_to_overwrite_what_is_not_a_referrers_index(existing: bytes) -> None:
    new = {"mediaType": OCI_MANIFEST, "digest": sha(b"b"), "size": 2}
    with pytest.raises(ManifestError):
        merge_referrers_index(existing, [new])


def test_referrers_tag_needs_sha256() -> None:
    assert referrers_tag("sha256:" + "a" * 64) == "sha256-" + "a" * 64
    with pytest.raises(ManifestError):
        referrers_tag("sha512:" + "a" * 128)

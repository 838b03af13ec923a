"""Manifests are raw bytes plus their digest; the parsed view only reads references out."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from harness.images import (
    DOCKER_CONFIG,
    HELM_CHART,
    HELM_CONFIG,
    OCI_CONFIG,
    build_artifact,
    build_image,
    build_index,
)

from mirrord.core.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    is_index,
    parse_manifest,
)
from mirrord.errors import DigestMismatchError, ManifestError, UnsupportedManifestError

LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
         "digest": "sha256:" + "1" * 64, "size": 10}
CONFIG = {"mediaType": OCI_CONFIG, "digest": "sha256:" + "2" * 64, "size": 5}


def raw(doc: dict[str, Any], indent: int | None = None) -> bytes:
    return json.dumps(doc, indent=indent).encode()


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_image_manifest(fmt: str) -> None:
    image = build_image("a/b", "v1", fmt=fmt, seed=fmt, layer_sizes=(100, 200))
    manifest = parse_manifest(image.raw, image.media_type)
    assert manifest.raw is image.raw  # kept, never re-encoded
    assert manifest.digest == image.digest == "sha256:" + hashlib.sha256(image.raw).hexdigest()
    assert manifest.media_type == (OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST)
    assert manifest.size == len(image.raw)
    assert not manifest.is_index and manifest.manifests == ()
    assert manifest.config is not None
    assert manifest.config.media_type == (OCI_CONFIG if fmt == "oci" else DOCKER_CONFIG)
    assert [b.digest for b in manifest.blobs] == [b.digest for b in image.blobs]
    assert manifest.blobs[0] == manifest.config  # config first, then layers
    assert [layer.size for layer in manifest.layers] == [b.size for b in image.layers]
    assert manifest.descriptor() == Descriptor(manifest.media_type, image.digest, len(image.raw),
                                               artifact_type=manifest.config.media_type)
    assert "raw" not in repr(manifest)


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_index_and_manifest_list(fmt: str) -> None:
    index = build_index("a/b", "multi", fmt=fmt, seed=fmt)
    manifest = parse_manifest(index.raw, index.media_type)
    assert manifest.is_index and is_index(manifest.media_type)
    assert manifest.media_type == (OCI_INDEX if fmt == "oci" else DOCKER_MANIFEST_LIST)
    assert manifest.config is None and manifest.blobs == ()
    assert [d.digest for d in manifest.manifests] == [c.digest for c in index.children]
    assert [d.platform for d in manifest.manifests] == [
        Platform("linux", "amd64"), Platform("linux", "arm64", "v8")]


def test_oci_artifact_with_a_helm_config() -> None:
    chart = build_artifact("charts/app", "0.1.0", seed="x")
    manifest = parse_manifest(chart.raw, OCI_MANIFEST)
    assert manifest.media_type == OCI_MANIFEST
    assert manifest.artifact_type == HELM_CONFIG  # from the config when not declared
    assert manifest.config is not None and manifest.config.media_type == HELM_CONFIG
    assert [layer.media_type for layer in manifest.layers] == [HELM_CHART]
    assert len(manifest.blobs) == 2


def test_artifact_type_and_subject_as_declared() -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
           "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                      "digest": "sha256:" + "4" * 64, "size": 2},
           "layers": [LAYER],
           "subject": {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "5" * 64, "size": 9}}
    manifest = parse_manifest(raw(doc))
    assert manifest.artifact_type == "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert manifest.subject is not None and manifest.subject.digest == "sha256:" + "5" * 64


def test_bytes_are_kept_exactly_as_served() -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": CONFIG, "layers": [LAYER]}
    odd = b"\n\n" + raw(doc, indent=7).replace(b": ", b" :  ") + b"\t\n"
    manifest = parse_manifest(odd)
    assert manifest.raw == odd
    assert manifest.digest == "sha256:" + hashlib.sha256(odd).hexdigest()


def test_media_type_from_content_type_or_shape() -> None:
    image_doc = {"schemaVersion": 2, "config": CONFIG, "layers": [LAYER]}
    assert parse_manifest(raw(image_doc), DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    assert parse_manifest(raw(image_doc), "").media_type == OCI_MANIFEST
    assert parse_manifest(raw(image_doc), "application/json").media_type == OCI_MANIFEST
    index_doc = {"schemaVersion": 2, "manifests": []}
    assert parse_manifest(raw(index_doc), f"{OCI_INDEX}; charset=utf-8").media_type == OCI_INDEX
    assert parse_manifest(raw(index_doc)).media_type == OCI_INDEX


def test_expected_digest() -> None:
    image = build_image("a/b", "v1", seed="digest")
    assert parse_manifest(image.raw, expected_digest=image.digest).digest == image.digest
    sha512 = "sha512:" + hashlib.sha512(image.raw).hexdigest()
    assert parse_manifest(image.raw, expected_digest=sha512).digest == sha512
    with pytest.raises(DigestMismatchError, match="does not match sha256:0000"):
        parse_manifest(image.raw, expected_digest="sha256:" + "0" * 64)


@pytest.mark.parametrize(("doc", "content_type"), [
    ({"schemaVersion": 1, "name": "a/b", "tag": "v1", "fsLayers": []}, ""),
    ({"schemaVersion": 1, "name": "a/b", "tag": "v1", "fsLayers": []}, "application/json"),
    ({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v1+json",
      "config": CONFIG, "layers": []}, ""),
    ({"name": "a/b", "fsLayers": [], "signatures": []},
     "application/vnd.docker.distribution.manifest.v1+prettyjws"),
])
def test_schema1_is_refused_with_a_clear_message(doc: dict[str, Any], content_type: str) -> None:
    with pytest.raises(UnsupportedManifestError) as caught:
        parse_manifest(raw(doc), content_type)
    assert "Docker schema1, which mirrord does not copy" in str(caught.value)
    assert str(caught.value).startswith("manifest sha256:")


def test_unknown_media_type_is_named() -> None:
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json"}
    with pytest.raises(UnsupportedManifestError, match=r"'application/vnd\.example\.thing\+json'"):
        parse_manifest(raw(doc))
    with pytest.raises(UnsupportedManifestError, match="'text/html'"):
        parse_manifest(b"{}", "text/html")


@pytest.mark.parametrize(("data", "message"), [
    (b"not json", "is not valid JSON"),
    (b"\xff\xfe", "is not valid JSON"),
    (b"[1, 2]", "is not a JSON object"),
    (raw({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}),
     "config: descriptor is not an object"),
    (raw({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"size": 1}}),
     "has no digest"),
    (raw({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
          "config": {**CONFIG, "digest": "md5:abc"}}), "invalid digest 'md5:abc'"),
    (raw({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {**CONFIG, "size": -1}}),
     "size '-1' is invalid"),
    (raw({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": CONFIG, "layers": {"a": LAYER}}),
     "layers is not a list"),
    (raw({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"digest": 1}]}),
     "manifests[0]"),
])
def test_malformed_manifests(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    assert not isinstance(caught.value, UnsupportedManifestError)
    assert message in str(caught.value)


def test_foreign_layers_are_not_blobs_to_copy() -> None:
    foreign = {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
               "digest": "sha256:" + "6" * 64, "size": 99, "urls": ["https://x/layer"]}
    nondist = {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
               "digest": "sha256:" + "7" * 64, "size": 98}
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": CONFIG,
           "layers": [foreign, LAYER, nondist]}
    manifest = parse_manifest(raw(doc))
    assert len(manifest.layers) == 3
    assert [b.digest for b in manifest.blobs] == [CONFIG["digest"], LAYER["digest"]]


def test_accept_header_lists_every_copied_type_and_not_schema1() -> None:
    accepted = [t.strip() for t in MANIFEST_ACCEPT.split(",")]
    assert sorted(accepted) == sorted([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST,
                                       DOCKER_MANIFEST])
    assert "distribution.manifest.v1" not in MANIFEST_ACCEPT

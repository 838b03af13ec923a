"""The caps on what one image references: layers, index children, nesting, cycles."""

from __future__ import annotations

import json

import pytest

from mirrord.copy import check_manifest, index_level
from mirrord.core.limits import Limits
from mirrord.core.oci import OCI_INDEX, OCI_MANIFEST, Manifest, compute_digest, parse_manifest
from mirrord.errors import LimitExceededError, ManifestError

CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json",
          "digest": compute_digest(b"{}"), "size": 2}


def image(layers: int) -> Manifest:
    layer = [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
              "digest": compute_digest(str(i).encode()), "size": 1} for i in range(layers)]
    return parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                      "config": CONFIG, "layers": layer}).encode())


def index(children: int) -> Manifest:
    child = image(1).descriptor()
    entry = {"mediaType": child.media_type, "digest": child.digest, "size": child.size}
    return parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                      "manifests": [entry] * children}).encode())


def test_layers_and_children_up_to_the_cap_pass_and_one_more_is_refused() -> None:
    limits = Limits(max_layers=10, max_index_children=5)
    check_manifest(image(10), limits, "q.io/a@x")
    check_manifest(index(5), limits, "q.io/a@x")
    with pytest.raises(LimitExceededError, match=r"11 layers.*limit of 10 \(limits\.max_layers\)"):
        check_manifest(image(11), limits, "q.io/a@x")
    with pytest.raises(LimitExceededError, match=r"limits\.max_index_children"):
        check_manifest(index(6), limits, "q.io/a@x")


def test_the_default_caps() -> None:
    check_manifest(image(1000), Limits(), "q.io/a@x")
    with pytest.raises(LimitExceededError, match=r"q\.io/a@x"):
        check_manifest(image(1001), Limits(), "q.io/a@x")


def test_index_depth_counts_indexes_and_refuses_past_the_cap_or_a_cycle() -> None:
    limits = Limits(max_index_depth=2)
    top, leaf = index(1), image(1)
    assert index_level(leaf, (), limits, "w") == 0
    assert index_level(top, (), limits, "w") == 1
    assert index_level(top, ("sha256:" + "1" * 64,), limits, "w") == 2
    assert index_level(leaf, ("sha256:" + "1" * 64, "sha256:" + "2" * 64), limits, "w") == 2
    with pytest.raises(LimitExceededError, match=r"nested 3 deep.*limits\.max_index_depth"):
        index_level(top, ("sha256:" + "1" * 64, "sha256:" + "2" * 64), limits, "w")
    with pytest.raises(ManifestError, match="lists itself"):
        index_level(top, (top.digest,), limits, "w")

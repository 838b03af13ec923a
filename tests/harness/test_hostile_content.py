"""Self-tests of the hostile registry's documents and faults: monster manifests, lying
headers, bad blobs, status faults and resets, seen by httpx."""

from __future__ import annotations

import hashlib
import json
import time
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from harness.faults import Corrupt, Endless, Headers, Reset, Stall, Status, Throttle, Trickle
from harness.hostile import HostileRegistry
from harness.hostile_images import (
    BAD_DIGESTS,
    MiB,
    cyclic_index,
    huge_manifest,
    many_layers,
    nested_index,
)
from harness.images import OCI_INDEX, OCI_MANIFEST, sha256


@pytest.fixture
def http(hostile_registry: HostileRegistry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_registry.url, timeout=5) as client:
        yield client


# -- manifests -------------------------------------------------------------------------------
def test_huge_manifest_streams_with_bounded_memory(hostile_registry: HostileRegistry,
                                                   http: httpx.Client) -> None:
    reg = hostile_registry
    reg.serve_tag("big", huge_manifest(200 * MiB, reg.image))
    tracemalloc.start()
    try:
        h, n = hashlib.sha256(), 0
        with http.stream("GET", reg.path("manifests", "big")) as resp:
            assert int(resp.headers["content-length"]) == 200 * MiB
            for chunk in resp.iter_raw():
                h.update(chunk)
                n += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 200 * MiB and peak < 8 * MiB  # neither the fake nor the client held it
    assert resp.headers["docker-content-digest"] == "sha256:" + h.hexdigest()
    assert "big" in http.get(f"/v2/{reg.repository}/tags/list").json()["tags"]


def test_many_layers_are_distinct_and_servable(hostile_registry: HostileRegistry,
                                               http: httpx.Client) -> None:
    reg = hostile_registry
    doc = reg.serve_tag("wide", many_layers(100_000, reg.image))
    resp = http.get(reg.path("manifests", "wide"))
    manifest = json.loads(resp.content)
    layers = manifest["layers"]
    assert len(layers) == 100_000 and len({x["digest"] for x in layers}) == 100_000
    assert resp.headers["docker-content-digest"] == sha256(resp.content) == doc.digest
    for layer in (layers[0], layers[77_777]):
        blob = http.get(reg.path("blobs", layer["digest"])).content
        assert (sha256(blob), len(blob)) == (layer["digest"], layer["size"])
    assert http.get(reg.path("blobs", manifest["config"]["digest"])).content == reg.config.data


def test_nested_and_cyclic_indexes(hostile_registry: HostileRegistry, http: httpx.Client) -> None:
    reg = hostile_registry
    reg.serve_tag("deep", nested_index(reg.doc, depth=20))
    ref, depth = "deep", 0
    while True:
        resp = http.get(reg.path("manifests", ref))
        body = json.loads(resp.content)
        assert resp.headers["docker-content-digest"] == sha256(resp.content) or ref == "deep"
        if resp.headers["content-type"] != OCI_INDEX:
            break
        ref, depth = body["manifests"][0]["digest"], depth + 1
    assert depth == 20 and resp.content == reg.image.raw
    cycle = reg.serve_tag("cycle", cyclic_index(reg.doc))
    raw = http.get(reg.path("manifests", "cycle")).content
    child = json.loads(raw)["manifests"][1]
    assert child["digest"] == cycle.aliases[0] and child["size"] == len(raw)
    again = http.get(reg.path("manifests", child["digest"]))
    assert again.content == raw and sha256(raw) != child["digest"]  # served under a lie


@pytest.mark.parametrize("name", sorted(BAD_DIGESTS))
def test_lying_digest_headers(hostile_registry: HostileRegistry, http: httpx.Client,
                              name: str) -> None:
    reg = hostile_registry
    reg.on(r"/manifests/latest$", Headers({"Docker-Content-Digest": BAD_DIGESTS[name]}))
    for method in ("HEAD", "GET"):
        resp = http.request(method, reg.path("manifests", "latest"))
        assert resp.headers["docker-content-digest"] == BAD_DIGESTS[name]
    assert resp.content == reg.image.raw


def test_missing_digest_and_content_type_mismatch(hostile_registry: HostileRegistry,
                                                  http: httpx.Client) -> None:
    reg = hostile_registry
    reg.on("manifests", Headers({"Docker-Content-Digest": None}))
    reg.on("manifests", Headers({"Content-Type": OCI_INDEX}), methods="HEAD")
    head = http.head(reg.path("manifests", "latest"))
    get = http.get(reg.path("manifests", "latest"))
    assert "docker-content-digest" not in {**head.headers, **get.headers}
    assert (head.headers["content-type"], get.headers["content-type"]) == (OCI_INDEX, OCI_MANIFEST)


# -- blobs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["flip", "longer", "shorter"])
def test_corrupt_blobs(hostile_registry: HostileRegistry, http: httpx.Client, mode: str) -> None:
    reg = hostile_registry
    reg.on(f"/blobs/{reg.layer.digest}$", Corrupt(mode))  # type: ignore[arg-type]
    resp = http.get(reg.path("blobs", reg.layer.digest))
    assert int(resp.headers["content-length"]) == len(resp.content)  # HTTP stays consistent
    assert sha256(resp.content) != reg.layer.digest
    assert len(resp.content) - reg.layer.size == {"flip": 0, "longer": 16, "shorter": -16}[mode]
    assert http.get(reg.path("blobs", reg.config.digest)).content == reg.config.data


def test_trickle_throttle_and_stall(hostile_registry: HostileRegistry, http: httpx.Client) -> None:
    reg = hostile_registry
    blob = reg.path("blobs", reg.config.digest)
    reg.on("blobs", Trickle(interval=0.05, chunk=max(1, reg.config.size // 5)), times=1)
    started = time.monotonic()
    assert http.get(blob).content == reg.config.data
    assert 0.2 < time.monotonic() - started < 1.5
    reg.on("blobs", Throttle(20_000), times=1)
    started = time.monotonic()
    assert http.get(reg.path("blobs", reg.layer.digest)).content == reg.layer.data
    assert time.monotonic() - started > reg.layer.size / 20_000 * 0.8
    reg.on("blobs", Stall(), times=1)
    with http.stream("GET", blob, timeout=httpx.Timeout(5, read=0.3)) as resp:
        assert resp.status_code == 200  # the headers came
        with pytest.raises(httpx.ReadTimeout):
            resp.read()
    reg.on("blobs", Stall(after_bytes=10, seconds=0.3), times=1)
    started = time.monotonic()
    assert http.get(blob).content == reg.config.data and time.monotonic() - started > 0.25


def test_endless_body_ends_only_when_the_client_gives_up(hostile_registry: HostileRegistry,
                                                         http: httpx.Client) -> None:
    reg = hostile_registry
    reg.on("blobs", Endless())
    n = 0
    with http.stream("GET", reg.path("blobs", reg.layer.digest)) as resp:
        assert "content-length" not in resp.headers
        for chunk in resp.iter_raw():
            n += len(chunk)
            if n > 20 * MiB:
                break
    assert n > 20 * MiB


# -- status faults ---------------------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503, 401, 404])
def test_status_faults_then_recovery(hostile_registry: HostileRegistry, http: httpx.Client,
                                     status: int) -> None:
    reg = hostile_registry
    rule = reg.on("manifests", Status(status), times=2)
    codes = [http.get(reg.path("manifests", "latest")).status_code for _ in range(3)]
    assert codes == [status, status, 200] and rule.hits == 2
    assert reg.log.count("manifests", status=status) == 2


def test_429_with_retry_after_on_a_fraction(hostile_registry: HostileRegistry,
                                            http: httpx.Client) -> None:
    reg = hostile_registry
    reg.on("manifests", Status(429, retry_after=3), fraction=0.5)
    codes = [http.head(reg.path("manifests", "latest")) for _ in range(40)]
    limited = [r for r in codes if r.status_code == 429]
    assert 8 < len(limited) < 32 and all(r.headers["retry-after"] == "3" for r in limited)
    again = HostileRegistry(seed=0)  # the same seed draws the same pattern
    again.rules.add("manifests", Status(429), fraction=0.5)
    pattern = [bool(again.rules.match("HEAD", "/v2/x/manifests/y")) for _ in range(40)]
    assert pattern == [r.status_code == 429 for r in codes]


def test_connection_resets(hostile_registry: HostileRegistry, http: httpx.Client) -> None:
    reg = hostile_registry
    reg.on("blobs", Reset(after_bytes=100), times=1)
    with http.stream("GET", reg.path("blobs", reg.layer.digest)) as resp:
        assert int(resp.headers["content-length"]) == reg.layer.size
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            resp.read()
    reg.on("manifests", Reset(), times=1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        http.get(reg.path("manifests", "latest"))
    assert http.get(reg.path("blobs", reg.layer.digest)).content == reg.layer.data

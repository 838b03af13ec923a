"""Self-tests of the fault proxy (in front of a real docker-registry) and of outages."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from harness.faultproxy import DockerHubLimit, FaultProxy
from harness.faults import Corrupt, Delay, Endless, Headers, Redirect, Reset, Stall, Status
from harness.images import (
    ALL_MANIFEST_TYPES,
    Blob,
    Image,
    RegistryHTTP,
    push_blob,
    push_image,
    push_index,
    sha256,
)
from harness.outage import refused_port, registry_outage
from harness.registry import RegistryProcess

skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
ACCEPT = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}


@pytest.fixture
def proxy(fault_proxy_factory: Any, mirror_registry: RegistryProcess) -> FaultProxy:
    proxied: FaultProxy = fault_proxy_factory(mirror_registry)
    return proxied


@pytest.fixture
def pushed(mirror_client: RegistryHTTP, repo_name: str) -> Image:
    """An image in the upstream (the session mirror registry), pushed directly."""
    return push_image(mirror_client, repo_name, "1", layer_sizes=(300_000,))


@pytest.fixture
def via(proxy: FaultProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, timeout=10, headers=ACCEPT) as client:
        yield client


def _blob_url(image: Image, blob: Blob) -> str:
    return f"/v2/{image.repo}/blobs/{blob.digest}"


def _manifest_url(image: Image, ref: str | None = None) -> str:
    return f"/v2/{image.repo}/manifests/{ref or image.tag}"


def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _random(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# -- transparency ----------------------------------------------------------------------------
def test_uploads_downloads_and_keep_alive_pass_through(proxy: FaultProxy, repo_name: str,
                                                       mirror_client: RegistryHTTP) -> None:
    with RegistryHTTP(proxy.url) as client:
        index = push_index(client, repo_name, "multi", layer_sizes=(2_000_000,))  # PUT bodies
        assert client.get_manifest(repo_name, "multi").raw == index.raw
        for blob in index.blobs:
            assert client.get_blob(repo_name, blob.digest) == blob.data
    assert proxy.connections == 1  # one keep-alive connection carried all of it
    data = _random(3_000_000, 1)
    with httpx.Client(base_url=proxy.url, timeout=30) as http:  # chunked PATCH, then PUT
        start = http.post(f"/v2/{repo_name}/blobs/uploads/")
        assert start.status_code == 202
        chunks = (data[i : i + 65536] for i in range(0, len(data), 65536))
        patch = http.patch(start.headers["location"], content=chunks,
                           headers={"Content-Type": "application/octet-stream"})
        assert patch.status_code == 202 and patch.request.headers["transfer-encoding"] == "chunked"
        location = patch.headers["location"]
        assert location.startswith(proxy.url)  # the registry saw the proxy's Host
        put = http.put(location + f"&digest={urllib.parse.quote(sha256(data))}")
        assert put.status_code == 201
    assert mirror_client.get_blob(repo_name, sha256(data)) == data
    assert proxy.count("uploads", method="PATCH", status=202) == 1
    assert proxy.log.counts()[("PUT", "manifests", 201)] == 3


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_expect_100_continue_upload_with_curl(proxy: FaultProxy, repo_name: str,
                                              mirror_client: RegistryHTTP, tmp_path: Any) -> None:
    data = _random(2_000_000, 2)
    (tmp_path / "blob").write_bytes(data)
    with httpx.Client(base_url=proxy.url, headers=ACCEPT) as http:
        location = http.post(f"/v2/{repo_name}/blobs/uploads/").headers["location"]
    url = location + f"&digest={urllib.parse.quote(sha256(data))}"
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T",
                          str(tmp_path / "blob"), "-H", "Expect: 100-continue", url],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout == "201", out.stderr
    assert mirror_client.get_blob(repo_name, sha256(data)) == data


def test_upstream_unreachable_is_502(fault_proxy_factory: Any, refused_host: str) -> None:
    proxy = fault_proxy_factory(refused_host)
    resp = httpx.get(proxy.url + "/v2/")
    assert resp.status_code == 502 and resp.json()["errors"][0]["code"] == "UNAVAILABLE"


# -- delays and bandwidth ----------------------------------------------------------------------
def test_latency_and_bandwidth_change_at_runtime(proxy: FaultProxy, via: httpx.Client,
                                                 pushed: Image) -> None:
    layer = pushed.layers[0]

    def timed(method: str, url: str) -> float:
        started = time.monotonic()
        assert via.request(method, url).status_code == 200
        return time.monotonic() - started

    assert timed("GET", "/v2/") < 0.15
    proxy.latency = 0.3
    assert timed("GET", "/v2/") >= 0.3
    proxy.latency = 0.0
    proxy.bandwidth = 1_000_000
    assert timed("GET", _blob_url(pushed, layer)) >= layer.size / 1_000_000 - 0.06
    proxy.bandwidth = None
    assert timed("GET", _blob_url(pushed, layer)) < 0.2
    proxy.on("manifests", Delay(0.25), methods="HEAD", times=1)
    assert timed("HEAD", _manifest_url(pushed)) >= 0.25
    assert timed("HEAD", _manifest_url(pushed)) < 0.15


def test_upload_bandwidth(proxy: FaultProxy, repo_name: str) -> None:
    proxy.upload_bandwidth = 2_000_000
    blob = Blob.of(_random(600_000, 3), "application/octet-stream")
    started = time.monotonic()
    with RegistryHTTP(proxy.url) as client:
        push_blob(client, repo_name, blob)
    assert time.monotonic() - started >= blob.size / 2_000_000 - 0.06


# -- rate limits -----------------------------------------------------------------------------
def test_storm_is_seeded_and_filtered(fault_proxy_factory: Any, mirror_registry: RegistryProcess,
                                      pushed: Image) -> None:
    patterns = []
    for _ in range(2):
        proxy = fault_proxy_factory(mirror_registry, seed=7)
        rule = proxy.storm(0.3, retry_after=2)
        with httpx.Client(base_url=proxy.url, headers=ACCEPT) as http:
            answers = [http.head(_manifest_url(pushed)) for _ in range(40)]
            assert http.post(f"/v2/{pushed.repo}/blobs/uploads/").status_code == 202  # POST: spared
        limited = [r for r in answers if r.status_code == 429]
        assert 4 < len(limited) < 24 and rule.hits == len(limited)
        assert {r.headers["retry-after"] for r in limited} == {"2"}
        assert all(r.status_code == 200 for r in answers if r.status_code != 429)
        assert proxy.count("manifests", status=429) == len(limited)
        patterns.append([r.status_code for r in answers])
    assert patterns[0] == patterns[1]  # same seed, same order: the same storm
    proxy.rules.clear()
    proxy.storm(1.0, status=503, retry_after=None, methods=None, route="blobs")
    with httpx.Client(base_url=proxy.url, headers=ACCEPT) as http:
        assert http.get(_blob_url(pushed, pushed.layers[0])).status_code == 503
        assert http.head(_manifest_url(pushed)).status_code == 200


@skopeo
def test_skopeo_completes_through_a_429_storm(fault_proxy_factory: Any, repo_name: str,
                                              mirror_registry: RegistryProcess,
                                              mirror_client: RegistryHTTP) -> None:
    """containers/image retries 429 on body-less requests, honouring Retry-After; its
    uploads (POST, PATCH, PUT from Go) pass through a second, fault-free proxy."""
    index = push_index(mirror_client, f"{repo_name}/src", "multi")
    source = fault_proxy_factory(mirror_registry, seed=1)
    rule = source.storm(0.2, retry_after=1)  # GET/HEAD only: c/image cannot retry bodies
    dest = fault_proxy_factory(mirror_registry)
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--all", "--preserve-digests", "--src-tls-verify=false",
         "--dest-tls-verify=false", f"docker://{source.host}/{repo_name}/src:multi",
         f"docker://{dest.host}/{repo_name}/dst:multi"],
        check=True, capture_output=True, timeout=60)
    assert source.count(status=429) == rule.hits >= 1  # seed 1: the first draw already hits
    assert dest.count("uploads", method="PATCH") >= 1 and dest.count(status=502) == 0
    assert mirror_client.get_manifest(f"{repo_name}/dst", "multi").raw == index.raw
    for child in index.children:
        assert mirror_client.head_manifest(f"{repo_name}/dst", child.digest) == child.digest
        for blob in child.blobs:
            assert mirror_client.get_blob(f"{repo_name}/dst", blob.digest) == blob.data


def test_docker_hub_ratelimit(proxy: FaultProxy, via: httpx.Client, pushed: Image) -> None:
    proxy.ratelimit = DockerHubLimit(limit=100, remaining=3)
    head = via.head(_manifest_url(pushed))
    assert head.headers["ratelimit-limit"] == "100;w=21600"
    assert head.headers["ratelimit-remaining"] == "3;w=21600"  # HEAD is free
    seen = [via.get(_manifest_url(pushed)).headers["ratelimit-remaining"] for _ in range(3)]
    assert seen == ["2;w=21600", "1;w=21600", "0;w=21600"]
    refused = via.get(_manifest_url(pushed))
    assert refused.status_code == 429 and refused.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert refused.headers["ratelimit-remaining"] == "0;w=21600"
    assert "ratelimit-limit" not in via.get(_blob_url(pushed, pushed.layers[0])).headers
    proxy.ratelimit.remaining = 50  # settable while running
    assert via.get(_manifest_url(pushed)).headers["ratelimit-remaining"] == "49;w=21600"


# -- resets, corruption, stalls ----------------------------------------------------------------
def test_resets_before_and_mid_body(proxy: FaultProxy, via: httpx.Client, pushed: Image) -> None:
    layer = pushed.layers[0]
    proxy.on("manifests", Reset(), times=1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        via.get(_manifest_url(pushed))
    proxy.on("blobs", Reset(after_bytes=100_000), methods="GET", times=1)
    got = bytearray()
    with (pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
          via.stream("GET", _blob_url(pushed, layer)) as resp):
        assert int(resp.headers["content-length"]) == layer.size
        for chunk in resp.iter_raw():
            got += chunk
    assert 0 < len(got) <= 100_000 and bytes(got) == layer.data[: len(got)]
    assert via.get(_blob_url(pushed, layer)).content == layer.data  # then all is well


def test_corrupt_blob_bytes(proxy: FaultProxy, via: httpx.Client, pushed: Image) -> None:
    layer = pushed.layers[0]
    proxy.on("blobs", Corrupt("flip", offset=1234), methods="GET", times=1)
    bad = via.get(_blob_url(pushed, layer)).content
    assert len(bad) == layer.size and sha256(bad) != layer.digest
    assert [i for i in range(len(bad)) if bad[i] != layer.data[i]] == [1234]
    assert via.get(_blob_url(pushed, layer)).content == layer.data
    for impossible in (Corrupt("longer"), Endless(), Redirect()):
        with pytest.raises(ValueError, match="fault proxy"):
            proxy.on("blobs", impossible)


def test_headers_status_and_redirect_rules(proxy: FaultProxy, via: httpx.Client,
                                           pushed: Image) -> None:
    proxy.on("manifests", Headers({"Docker-Content-Digest": "foo:bar", "X-Extra": "1"}), times=1)
    resp = via.get(_manifest_url(pushed))
    assert resp.headers["docker-content-digest"] == "foo:bar" and resp.headers["x-extra"] == "1"
    proxy.on("blobs", Redirect(to="http://127.0.0.1:9"), times=1)
    moved = via.get(_blob_url(pushed, pushed.layers[0]))
    assert moved.status_code == 307
    assert moved.headers["location"] == "http://127.0.0.1:9" + _blob_url(pushed, pushed.layers[0])
    proxy.on("tags", Status(401), times=1)
    assert via.get(f"/v2/{pushed.repo}/tags/list").status_code == 401


def test_cut_wakes_stalled_answers(proxy: FaultProxy, pushed: Image) -> None:
    proxy.on("blobs", Stall(), methods="GET")
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            httpx.get(proxy.url + _blob_url(pushed, pushed.layers[0]), timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    _until(lambda: proxy.count("blobs") >= 3)
    started = time.monotonic()
    proxy.cut()
    for t in threads:
        t.join(5)
    assert len(errors) == 3 and time.monotonic() - started < 2


# -- outages ---------------------------------------------------------------------------------
def test_down_and_up_keep_the_port(proxy: FaultProxy, pushed: Image) -> None:
    with httpx.Client(base_url=proxy.url, timeout=5, headers=ACCEPT) as kept:
        assert kept.get("/v2/").status_code == 200
        proxy.down()
        assert proxy.is_down
        with pytest.raises(httpx.ConnectError):
            httpx.get(proxy.url + "/v2/")
        with pytest.raises(httpx.TransportError):  # the open keep-alive connection was cut
            kept.get("/v2/", extensions={"timeout": {"pool": 1}})
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", proxy.port))  # nobody else can take the port
        proxy.up()
        assert kept.get(_manifest_url(pushed)).status_code == 200
    with proxy.outage(0.4, after=0.1) as outage:
        _until(lambda: outage.went_down is not None)
        with pytest.raises(httpx.ConnectError):
            httpx.get(proxy.url + "/v2/")
    assert outage.downtime >= 0.4 and not proxy.is_down
    assert httpx.get(proxy.url + "/v2/").status_code == 200


def test_registry_outage_and_restart_on_the_same_port(registry_factory: Any, repo_name: str,
                                                      fault_proxy_factory: Any) -> None:
    reg: RegistryProcess = registry_factory()
    with reg.client() as client:
        image = push_image(client, repo_name, "1")
    proxy = fault_proxy_factory(reg)
    port = reg.port
    with httpx.Client(base_url=proxy.url, timeout=5, headers=ACCEPT) as via, registry_outage(
            reg, duration=0.6, after=0.0) as outage:
        assert via.head(f"/v2/{repo_name}/manifests/1").status_code in (200, 502)
        _until(lambda: outage.went_down is not None)
        assert via.get("/v2/").status_code == 502  # behind the proxy: bad gateway
        with pytest.raises(httpx.ConnectError):
            httpx.get(reg.url + "/v2/")  # directly: refused
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
    assert outage.downtime >= 0.6 and reg.running and reg.port == port
    with httpx.Client(base_url=proxy.url, headers=ACCEPT) as via:
        assert via.get(f"/v2/{repo_name}/manifests/1").content == image.raw
    reg.restart()
    assert reg.port == port and reg.running


def test_refused_port_refuses_and_stays_reserved() -> None:
    with refused_port() as port:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/")
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))


def test_stop_is_clean_with_connections_open(mirror_registry: RegistryProcess,
                                             pushed: Image) -> None:
    proxy = FaultProxy(mirror_registry).start()
    proxy.on("blobs", Stall())
    failed: list[httpx.HTTPError] = []

    def fetch() -> None:
        try:
            httpx.get(proxy.url + _blob_url(pushed, pushed.layers[0]), timeout=30)
        except httpx.HTTPError as exc:
            failed.append(exc)

    worker = threading.Thread(target=fetch)
    worker.start()
    _until(lambda: proxy.count("blobs") >= 1)
    started = time.monotonic()
    proxy.stop()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 2
    assert len(failed) == 1 and proxy.errors == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(proxy.url + "/v2/")

"""Self-tests of the hostile registry: honest serving (skopeo copies it), tag names,
pagination, redirects, auth and lifecycle. Documents and faults: test_hostile_content.py."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import ALICE
from harness.faults import Redirect, Stall, Status
from harness.hostile import HostileRegistry
from harness.hostile_images import WEIRD_TAGS, GeneratedTags, MiB, huge_manifest
from harness.registry import RegistryProcess

skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
BASIC = "Basic " + base64.b64encode(f"{ALICE.username}:{ALICE.password}".encode()).decode()


@pytest.fixture
def http(hostile_registry: HostileRegistry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_registry.url, timeout=5) as client:
        yield client


def _tags(http: httpx.Client, url: str, limit: int = 50) -> tuple[list[str], list[str]]:
    """Follow Link pagination up to `limit` pages: (tags, the links followed)."""
    tags: list[str] = []
    links: list[str] = []
    for _ in range(limit):
        resp = http.get(url)
        assert resp.status_code == 200
        tags += resp.json()["tags"]
        link = resp.headers.get("link")
        if not link:
            break
        url = link.split(";")[0].strip("<> ")
        links.append(url)
    return tags, links


# -- honest ----------------------------------------------------------------------------------
@skopeo
def test_skopeo_copies_the_honest_image(hostile_registry: HostileRegistry,
                                        mirror_registry: RegistryProcess, repo_name: str) -> None:
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false",
         "--dest-tls-verify=false", f"docker://{hostile_registry.reference('latest')}",
         f"docker://{mirror_registry.host}/{repo_name}:latest"],
        check=True, capture_output=True, timeout=60)
    with mirror_registry.client() as mirror:
        assert mirror.get_manifest(repo_name, "latest").raw == hostile_registry.image.raw
    assert hostile_registry.log.count("blobs", method="GET") == 3  # config + two layers


def test_routes_and_request_log(hostile_registry: HostileRegistry, http: httpx.Client) -> None:
    reg = hostile_registry
    assert http.get("/v2/").status_code == 200
    assert http.get("/v2/_catalog").json() == {"repositories": [reg.repository]}
    assert http.get(reg.path("tags", "list").replace("%2F", "/")).json()["tags"] == [
        "1.0", "latest"]
    head = http.head(reg.path("manifests", "1.0"))
    assert head.headers["docker-content-digest"] == reg.image.digest
    assert int(head.headers["content-length"]) == len(reg.image.raw)
    assert http.get(reg.path("manifests", reg.image.digest)).content == reg.image.raw
    assert http.get(reg.path("blobs", reg.layer.digest)).content == reg.layer.data
    assert http.get(reg.path("manifests", "nope")).status_code == 404
    assert http.get("/v2/other/repo/manifests/latest").status_code == 404
    assert reg.log.count("manifests") == 4 and reg.log.count("blobs", method="GET") == 1
    assert reg.log.select(r"/manifests/nope$")[0].status == 404
    with pytest.raises(AssertionError, match="other/repo"):
        reg.log.assert_no_request(r"^/v2/other/")
    reg.log.assert_no_request(r"^/v2/third/")
    reg.catcher.log.assert_no_credentials()
    assert reg.errors == []


# -- tag names -------------------------------------------------------------------------------
def test_weird_tags_are_listed_and_resolvable(hostile_registry: HostileRegistry,
                                              http: httpx.Client) -> None:
    reg = hostile_registry
    reg.behave(tags=WEIRD_TAGS)
    listed = json.loads(http.get(f"/v2/{reg.repository}/tags/list").content)["tags"]
    assert listed == list(WEIRD_TAGS)
    for tag in WEIRD_TAGS:  # percent-encoded, every name reaches the fake
        resp = http.get(reg.path("manifests", tag))
        assert (resp.status_code, resp.headers["docker-content-digest"]) == (200, reg.image.digest)
    assert http.get(f"/v2/{reg.repository}/manifests/a/b").status_code == 200  # unencoded
    # what a client that joins the name into its URL unquoted would send instead
    joined = httpx.URL(f"{reg.url}/v2/{reg.repository}/manifests/{WEIRD_TAGS[0]}")
    assert joined.path == "/other/repo/manifests/latest"


def test_generated_tag_lists_are_lazy_and_paginate(hostile_registry: HostileRegistry,
                                                   http: httpx.Client) -> None:
    reg = hostile_registry
    reg.behave(tags=GeneratedTags(1_000_000))
    started = time.monotonic()
    with http.stream("GET", f"/v2/{reg.repository}/tags/list") as resp:
        assert resp.headers["transfer-encoding"] == "chunked"
        tags = json.loads(resp.read())["tags"]
    assert len(tags) == len(set(tags)) == 1_000_000
    assert tags[::99_999] == [f"tag-{i:06d}" for i in range(0, 1_000_000, 99_999)]
    assert time.monotonic() - started < 10
    reg.behave(page_size=1)  # a million pages: each Link points at the next tag
    got, links = _tags(http, f"/v2/{reg.repository}/tags/list?last=tag-499998", limit=3)
    assert got == ["tag-499999", "tag-500000", "tag-500001"]
    assert links[0] == f"/v2/{reg.repository}/tags/list?n=1&last=tag-499999"


# -- pagination ------------------------------------------------------------------------------
def test_honest_pagination_follows_n_and_last(hostile_registry: HostileRegistry,
                                              http: httpx.Client) -> None:
    reg = hostile_registry
    reg.behave(tags=[f"v{i}" for i in range(7)])
    tags, links = _tags(http, f"/v2/{reg.repository}/tags/list?n=3")
    assert tags == [f"v{i}" for i in range(7)] and len(links) == 2
    reg.behave(page_size=2)  # the server's cap wins over a larger n
    tags, links = _tags(http, f"/v2/{reg.repository}/tags/list?n=100")
    assert len(tags) == 7 and len(links) == 3


def test_link_to_the_catcher_collects_credentials(hostile_registry: HostileRegistry,
                                                  http: httpx.Client) -> None:
    reg = hostile_registry
    reg.behave(tags=[f"v{i}" for i in range(4)], page_size=2, link_base=reg.catcher.url)
    first = http.get(f"/v2/{reg.repository}/tags/list", headers={"Authorization": BASIC})
    link = first.headers["link"].split(";")[0].strip("<>")
    assert link.startswith(reg.catcher.url + "/v2/")
    # a careless client carries its credential along; the catcher serves the next page
    nxt = httpx.get(link, headers={"Authorization": BASIC})
    assert nxt.json()["tags"] == ["v2", "v3"]
    assert reg.catcher.authorizations() == [BASIC]
    with pytest.raises(AssertionError, match="catcher received credentials"):
        reg.catcher.log.assert_no_credentials()


def test_loop_and_endless_pagination(hostile_registry: HostileRegistry,
                                     http: httpx.Client) -> None:
    reg = hostile_registry
    reg.behave(tags=["a", "b", "c"], page_size=2, pagination="loop")
    tags, links = _tags(http, f"/v2/{reg.repository}/tags/list", limit=5)
    assert links == [f"/v2/{reg.repository}/tags/list?n=2"] * 5 and tags == ["a", "b"] * 5
    reg.behave(pagination="endless", page_size=None)
    tags, links = _tags(http, f"/v2/{reg.repository}/tags/list", limit=30)
    assert len(links) == 30 and len(tags) == 3000 and len(set(tags)) == 3000


# -- redirects and auth ----------------------------------------------------------------------
def test_redirect_to_the_catcher(hostile_registry: HostileRegistry, http: httpx.Client) -> None:
    reg = hostile_registry
    rule = reg.on("blobs", Redirect(), methods="GET")
    path = f"/v2/{reg.repository}/blobs/{reg.layer.digest}?sig=1"
    resp = http.get(path, headers={"Authorization": BASIC})
    assert resp.status_code == 307
    location = resp.headers["location"]
    assert location == reg.catcher.url + path
    assert httpx.get(location).content == reg.layer.data  # the catcher serves the content
    assert rule.hits == 1 and reg.catcher.log.count("blobs") == 1
    reg.catcher.log.assert_no_credentials()


def test_basic_auth(hostile_registry: HostileRegistry, http: httpx.Client) -> None:
    reg = hostile_registry
    reg.behave(auth="basic")
    denied = http.get("/v2/")
    assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Basic ")
    assert http.get("/v2/", auth=(ALICE.username, "wrong")).status_code == 401
    assert http.get(reg.path("manifests", "latest"), headers={"Authorization": BASIC}
                    ).status_code == 200
    assert reg.authorizations()[-1] == BASIC


@pytest.mark.parametrize("realm_on", ["hostile", "catcher"])
def test_bearer_challenge_and_token(hostile_registry: HostileRegistry, http: httpx.Client,
                                    realm_on: str) -> None:
    reg = hostile_registry
    realm = reg.realm if realm_on == "hostile" else reg.catcher.realm
    reg.behave(auth="bearer", realm=None if realm_on == "hostile" else realm)
    challenge = http.get(reg.path("manifests", "latest")).headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="{realm}"')
    assert f'scope="repository:{reg.repository}:pull"' in challenge
    assert httpx.get(realm).status_code == 401  # the token endpoint wants credentials
    token = httpx.get(realm, auth=(ALICE.username, ALICE.password)).json()["token"]
    ok = http.get(reg.path("manifests", "latest"), headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    where = reg.log if realm_on == "hostile" else reg.catcher.log
    assert BASIC in where.authorizations()  # who received the password
    reg.behave(token_requires_auth=False)
    assert httpx.get(realm).status_code == 200


def test_catcher_challenge_lures_credentials(hostile_registry: HostileRegistry) -> None:
    reg = hostile_registry
    reg.behave(catcher_challenge="basic")
    url = reg.catcher.url + reg.path("manifests", "latest")
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, auth=(ALICE.username, ALICE.password)).status_code == 200
    assert reg.catcher.authorizations() == [BASIC]


def test_tls_for_both_or_only_the_catcher(tmp_path: Path) -> None:
    with HostileRegistry(tls=True, directory=tmp_path) as reg:
        assert reg.url.startswith("https://") and reg.catcher.url.startswith("https://")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(reg.url + "/v2/")
        verify = reg.ssl_context()
        assert httpx.get(reg.url + "/v2/", verify=verify).status_code == 200
        assert httpx.get(reg.catcher.realm, verify=verify,
                         auth=(ALICE.username, ALICE.password)).status_code == 200
        assert reg.catcher.authorizations() == [BASIC]
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 1  # the refused handshake left no connection behind
    assert reg.errors == []  # a refused certificate is the client's business, not a bug
    with HostileRegistry(catcher_tls=True) as reg:
        assert reg.url.startswith("http://") and reg.catcher.realm.startswith("https://")
        reg.behave(auth="bearer", realm=reg.catcher.realm)
        challenge = httpx.get(reg.url + "/v2/").headers["www-authenticate"]
        assert challenge.startswith(f'Bearer realm="https://{reg.catcher.host}/token"')
    assert reg.ca_file is None  # its temporary certificate directory is gone


# -- lifecycle -------------------------------------------------------------------------------
def test_concurrent_clients_and_a_clean_stop() -> None:
    reg = HostileRegistry().start()
    reg.on(r"/blobs/", Stall(), methods="GET")
    errors: list[BaseException] = []

    def stalled() -> None:
        try:
            httpx.get(reg.url + reg.path("blobs", reg.layer.digest), timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stalled) for _ in range(5)]
    for t in threads:
        t.start()
    with httpx.Client(base_url=reg.url) as http:  # others are served meanwhile
        for _ in range(20):
            assert http.get(reg.path("manifests", "latest")).status_code == 200
    started = time.monotonic()
    reg.stop()
    for t in threads:
        t.join(5)
    assert time.monotonic() - started < 3 and len(errors) == 5
    with pytest.raises(httpx.ConnectError):
        httpx.get(reg.url + "/v2/")


def test_reset_restores_honesty(hostile_registry: HostileRegistry, http: httpx.Client) -> None:
    reg = hostile_registry
    reg.behave(auth="basic", tags=["x"])
    reg.on("any", Status(500))
    reg.serve_tag("big", huge_manifest(1 * MiB, reg.image))
    reg.reset()
    assert http.get(f"/v2/{reg.repository}/tags/list").json()["tags"] == ["1.0", "latest"]
    assert http.get(reg.path("manifests", "big")).status_code == 404
    assert len(reg.log) == 2 and reg.rules.rules == []
    with pytest.raises(TypeError):
        reg.behave(no_such_knob=1)

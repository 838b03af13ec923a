"""Self-tests: the fixtures start real servers and the generator pushes real images."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from cryptography import x509

from harness import ALICE, ROBOT, Credentials
from harness.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    HELM_CHART,
    HELM_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryHTTP,
    build_corpus,
    build_image,
    make_layer,
    push,
    push_artifact,
    push_corpus,
    push_image,
    push_index,
)
from harness.registry import RegistryProcess
from harness.synctools import run_measured
from harness.tokenserver import TokenServer


def _jwt_part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


@pytest.mark.parametrize("flavour", ["mirror_registry", "basic_registry", "token_registry",
                                     "tls_registry"])
def test_push_every_kind_and_read_back(
    flavour: str, request: pytest.FixtureRequest, repo_name: str
) -> None:
    reg: RegistryProcess = request.getfixturevalue(flavour)
    with reg.client() as client:
        pushed = [
            push_image(client, repo_name, "oci"),
            push_image(client, repo_name, "docker", fmt="docker"),
            push_index(client, repo_name, "index"),
            push_index(client, repo_name, "list", fmt="docker"),
            push_artifact(client, f"{repo_name}/chart", "0.1.0"),
        ]
        assert [p.media_type for p in pushed] == [
            OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST, OCI_MANIFEST]
        for image in pushed:
            got = client.get_manifest(image.repo, image.tag or image.digest)
            assert (got.raw, got.digest, got.media_type) == (
                image.raw, image.digest, image.media_type)
            for blob in image.blobs:
                assert client.get_blob(image.repo, blob.digest) == blob.data
        index = pushed[2]
        assert [c.platform for c in index.children] == [("linux", "amd64"), ("linux", "arm64")]
        for child in index.children:
            assert client.head_manifest(repo_name, child.digest) == child.digest
        assert sorted(client.tags(repo_name, page_size=2)) == ["docker", "index", "list", "oci"]
        art = pushed[4]
        assert art.config is not None and art.config.media_type == HELM_CONFIG
        assert [b.media_type for b in art.layers] == [HELM_CHART]


def test_basic_auth_is_enforced(basic_registry: RegistryProcess, repo_name: str) -> None:
    resp = httpx.get(f"{basic_registry.url}/v2/")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Basic ")
    with basic_registry.client(*ROBOT) as robot:
        image = push_image(robot, repo_name, "1")
    with basic_registry.client("alice", "wrong") as bad, pytest.raises(Exception, match="401"):
        bad.get_manifest(repo_name, "1")
    with basic_registry.client() as alice:
        assert alice.get_manifest(repo_name, "1").digest == image.digest


def test_token_carries_x5c_and_scopes(
    token_registry: RegistryProcess, token_server: TokenServer, repo_name: str
) -> None:
    with token_registry.client() as client:
        push_image(client, repo_name, "1")
    req = token_server.requests[-1]
    assert (req.user, req.account, req.status) == ("alice", "alice", 200)
    assert req.scopes == (f"repository:{repo_name}:pull,push",)
    scopes = [f"repository:{repo_name}:pull", "registry:catalog:*"]
    resp = httpx.get(token_server.realm, params={"service": token_server.service, "scope": scopes},
                     auth=(ALICE.username, ALICE.password))
    body = resp.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    header, claims = _jwt_part(body["token"], 0), _jwt_part(body["token"], 1)
    assert header["alg"] == "RS256" and header["kid"]
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert cert.public_key() == x509.load_pem_x509_certificate(
        token_server.cert_path.read_bytes()).public_key()
    assert claims["iss"] == token_server.issuer and claims["aud"] == token_server.service
    assert claims["sub"] == "alice"
    assert claims["access"] == [
        {"type": "repository", "name": repo_name, "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]


def test_anonymous_token_has_no_access(
    token_registry: RegistryProcess, token_server: TokenServer, repo_name: str
) -> None:
    with token_registry.client() as alice:
        image = push_image(alice, repo_name, "1")
    with token_registry.client(anonymous=True) as anon:
        resp = anon.request("HEAD", f"/v2/{repo_name}/manifests/1")
        assert resp.status_code == 401
        denied = token_server.requests[-1]
        assert (denied.user, denied.granted) == (None, ())
        token_server.anonymous_pull = True  # now the cached empty token is refused, then renewed
        assert anon.get_manifest(repo_name, "1").raw == image.raw
        renewed = token_server.requests[-1]
        assert [a.actions for a in renewed.granted] == [("pull",)]


def test_token_expires_after_ttl(
    token_registry: RegistryProcess, token_server: TokenServer, repo_name: str
) -> None:
    token_server.ttl = 1
    scope = f"repository:{repo_name}:pull"
    body = httpx.get(token_server.realm, params={"service": token_server.service, "scope": scope},
                     auth=(ALICE.username, ALICE.password)).json()
    assert body["expires_in"] == 1
    url = f"{token_registry.url}/v2/{repo_name}/tags/list"
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert httpx.get(url, headers=headers).status_code == 404  # accepted: repo unknown
    time.sleep(2.1)
    resp = httpx.get(url, headers=headers)
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]


def test_token_server_oauth_post_and_bad_password(token_server: TokenServer) -> None:
    bad = httpx.get(token_server.realm, auth=("alice", "nope"))
    assert bad.status_code == 401
    form = {"grant_type": "password", "username": ROBOT.username, "password": ROBOT.password,
            "service": token_server.service, "scope": "repository:a/b:pull",
            "access_type": "offline", "client_id": "mirrord"}
    body = httpx.post(token_server.realm, data=form).json()
    assert body["refresh_token"]
    again = httpx.post(token_server.realm, data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
        "service": token_server.service, "scope": "repository:a/b:pull"})
    assert again.status_code == 200
    assert [(r.status, r.user) for r in token_server.requests] == [
        (401, None), (200, ROBOT.username), (200, ROBOT.username)]
    token_server.fail_next.append(503)
    assert httpx.get(token_server.realm).status_code == 503


def test_request_counting(mirror_registry: RegistryProcess, repo_name: str) -> None:
    with mirror_registry.client() as client:
        image = push_image(client, repo_name, "1.0")
        mark = mirror_registry.mark()
        for _ in range(3):
            client.head_manifest(repo_name, "1.0")
        client.get_manifest(repo_name, image.digest)
        client.head_manifest(repo_name, "missing")
    manifests = f"/v2/{repo_name}/manifests"
    assert mirror_registry.requests(since=mark) == [("HEAD", f"{manifests}/1.0")] * 3 + [
        ("GET", f"{manifests}/{image.digest}"), ("HEAD", f"{manifests}/missing")]
    assert mirror_registry.count("HEAD", since=mark) == 4
    assert mirror_registry.count(path="/missing$", since=mark) == 1
    assert [e.status for e in mirror_registry.access_log(since=mark)] == [200] * 4 + [404]
    assert mirror_registry.requests(since=mirror_registry.mark()) == []


def test_restart_keeps_port_and_content(registry_factory: Any, repo_name: str) -> None:
    reg = registry_factory(delete_enabled=False)
    with reg.client() as client:
        image = push_image(client, repo_name, "1")
        host = reg.host
        reg.restart()
        assert reg.host == host
        assert client.get_manifest(repo_name, "1").raw == image.raw
        resp = client.request("DELETE", f"/v2/{repo_name}/manifests/{image.digest}")
        assert resp.status_code == 405  # deletes disabled
    reg.stop()
    assert not reg.running


def test_deletes_enabled_on_mirror(mirror_client: RegistryHTTP, repo_name: str) -> None:
    image = push_image(mirror_client, repo_name, "1")
    mirror_client.delete_manifest(repo_name, image.digest)
    assert mirror_client.head_manifest(repo_name, image.digest) is None


def test_tls_registry_needs_its_ca(tls_registry: RegistryProcess) -> None:
    assert tls_registry.url.startswith("https://") and tls_registry.ca_file
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_registry.url}/v2/")
    ctx = ssl.create_default_context(cafile=str(tls_registry.ca_file))
    assert httpx.get(f"{tls_registry.url}/v2/", verify=ctx).status_code == 200


def test_builds_are_deterministic_and_corpus_shares_layers(mirror_client: RegistryHTTP,
                                                            repo_name: str) -> None:
    a, b = make_layer(10_000, 7), make_layer(10_000, 7)
    assert a.digest == b.digest and a.size > 10_000 and a.diff_id != a.digest
    assert make_layer(10_000, 8).digest != a.digest
    assert build_image("x", "1", seed=3).digest == build_image("y", "2", seed=3).digest
    corpus = build_corpus([f"{repo_name}/a", f"{repo_name}/b"], seed=repo_name)
    push_corpus(mirror_client, corpus)
    for repo in corpus.repos:
        assert sorted(mirror_client.tags(repo)) == sorted(corpus.tags(repo))
        assert corpus.get(repo, "latest").digest == corpus.get(repo, "2.0").digest
        for image in corpus.images:
            if image.repo == repo:
                assert corpus.base.digest in {x.digest for x in image.blobs}
    again = push(mirror_client, corpus.images[0], tag="again")
    assert mirror_client.head_manifest(again.repo, "again") == corpus.images[0].digest


def test_credentials_do_not_leak_in_repr(basic_registry: RegistryProcess,
                                         alice: Credentials) -> None:
    assert alice.password not in repr(alice)
    assert alice.password not in repr(basic_registry)
    assert tuple(alice) == (basic_registry.username, basic_registry.password)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_skopeo_copies_through_token_auth(token_registry: RegistryProcess,
                                          mirror_registry: RegistryProcess,
                                          token_server: TokenServer, repo_name: str) -> None:
    """A real client (containers/image) accepts the token server and the generated images."""
    with token_registry.client() as client:
        index = push_index(client, repo_name, "multi")
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--all", "--preserve-digests",
         "--src-tls-verify=false", "--dest-tls-verify=false",
         "--src-creds", f"{ROBOT.username}:{ROBOT.password}",
         f"docker://{token_registry.host}/{repo_name}:multi",
         f"docker://{mirror_registry.host}/{repo_name}:multi"],
        check=True, capture_output=True, timeout=60,
    )
    assert ROBOT.username in {r.user for r in token_server.requests}
    with mirror_registry.client() as mirror:
        assert mirror.get_manifest(repo_name, "multi").raw == index.raw


def test_measured_peak_rss_is_the_childs_own() -> None:
    """A grown test session must not inflate a child's peak RSS (Linux keeps the
    pre-exec high-water mark in ru_maxrss), and a child's real growth must show."""
    ballast = bytearray(400 * 1024 * 1024)
    ballast[:: 4096] = b"\1" * len(range(0, len(ballast), 4096))  # touch every page
    small = run_measured([sys.executable, "-c", "import time; time.sleep(0.2)"], timeout=30)
    grown = run_measured(
        [sys.executable, "-c",
         "import time; b = bytearray(150 * 2**20); b[::4096] = b'1' * len(b[::4096]);"
         " time.sleep(0.3)"],
        timeout=30,
    )
    del ballast
    assert small.code == grown.code == 0
    assert small.max_rss < 100 * 2**20, small.max_rss
    assert grown.max_rss > 150 * 2**20, grown.max_rss

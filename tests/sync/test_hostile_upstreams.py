"""Issue 10: `mirrord sync` against an upstream that lies, one test per attack.

Each test runs `python -m mirrord sync -o json` as a child process against the hostile
registry (tests/harness/hostile.py) into a real mirror: the session's docker-registry
under a prefix, or an OCI layout. It asserts what the issue asks: the run ends within its
bound with bounded memory, never with a traceback, with exit 1 (0 where the upstream's
behaviour is legitimate) and a `-o json` document naming the failure; nothing outside
the stream changed in the mirror (every repository and tag listed before and after), no
file outside the layout was read or written, and no credential reached the catcher host.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import ALICE
from harness.faults import Endless, Headers, Redirect, Stall, Throttle, Trickle
from harness.hostile import HostileRegistry
from harness.hostile_images import (
    BAD_DIGESTS,
    WEIRD_TAGS,
    GeneratedTags,
    MiB,
    cyclic_index,
    huge_manifest,
    many_layers,
    nested_index,
)
from harness.images import RegistryHTTP
from harness.registry import RegistryProcess
from harness.synctools import Measured, Setup, sync_setup, write_auth_file

TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MEMORY_BOUND = 300 * MiB  # a 200 MB manifest read whole took ~650 MB


@dataclass
class Mirror:
    """The mirror under test: its URL for the config and a snapshot of everything in it."""

    kind: str
    url: str
    repository: str  # where the stream lands
    client: RegistryHTTP | None = None
    layout: Path | None = None

    def snapshot(self) -> dict[str, Any]:
        """Every repository and tag (registry), or every ref name (layout)."""
        if self.client is not None:
            return {repo: sorted(self.client.tags(repo)) for repo in self.client.catalog()}
        assert self.layout is not None
        index = self.layout / "index.json"
        if not index.exists():
            return {}
        entries = json.loads(index.read_text())["manifests"]
        names = [e.get("annotations", {}).get("org.opencontainers.image.ref.name") for e in entries]
        return {"refs": sorted(n for n in names if n)}

    def tags_of_stream(self) -> list[str]:
        if self.client is not None:
            return sorted(self.client.tags(self.repository)) if self._exists() else []
        refs = self.snapshot().get("refs", [])
        return sorted(r.split(":", 1)[1] for r in refs if r.startswith(f"{self.repository}:"))

    def _exists(self) -> bool:
        assert self.client is not None
        return self.repository in self.client.catalog()


@pytest.fixture(params=["registry", "oci"])
def mirror(
    request: pytest.FixtureRequest, tmp_path: Path, repo_name: str
) -> Iterator[Mirror]:
    if request.param == "oci":
        layout = tmp_path / "layout"
        yield Mirror("oci", f"oci:{layout}", "hostile/app", layout=layout)
        return
    registry: RegistryProcess = request.getfixturevalue("mirror_registry")
    with registry.client() as client:
        yield Mirror("registry", f"docker://{registry.host}/{repo_name}",
                     f"{repo_name}/hostile/app", client=client)


@dataclass
class Bystander:
    """A file outside the layout that the test owns: its access time is set two days in
    the past, so any read updates it (relatime), and its bytes and mtime are known."""

    path: Path
    atime: float
    mtime: int
    data: bytes

    @classmethod
    def create(cls, path: Path) -> Bystander:
        data = b"secret bytes no mirror may read\n"
        path.write_bytes(data)
        past = time.time() - 2 * 86400
        os.utime(path, (past, past + 60))
        st = path.stat()
        return cls(path, st.st_atime, st.st_mtime_ns, data)

    def assert_untouched(self) -> None:
        st = self.path.stat()
        assert st.st_atime == self.atime, f"{self.path} was read"
        assert (st.st_mtime_ns, self.path.read_bytes()) == (self.mtime, self.data)


def config(
    tmp_path: Path,
    reg: HostileRegistry,
    mirror: Mirror,
    *,
    stream: dict[str, Any] | None = None,
    registry: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    trusted: list[str] = (),  # type: ignore[assignment]
) -> Setup:
    """Mirror the hostile repository (every tag, no signatures) with ALICE's credential;
    ``trusted`` hosts are listed under `registries:` too."""
    auth = write_auth_file(tmp_path / "hostile-auth.json",
                           {reg.host: (ALICE.username, ALICE.password)})
    settings = {reg.host: {"insecure": True, "auth_file": str(auth), **(registry or {})}}
    settings.update({host: {} for host in trusted})
    spec = {"from": f"{reg.host}/{reg.repository}", "max_tags": -1, "signatures": False,
            **(stream or {})}
    return sync_setup(tmp_path, mirror=mirror.url, streams=[spec], sources=[],
                      settings=settings, extra={"limits": limits} if limits else None)


def outside_files(tmp_path: Path, mirror: Mirror) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under tmp_path but the layout and the state."""
    skip = [p for p in (mirror.layout, tmp_path / "state") if p is not None]
    found = {}
    for path in tmp_path.rglob("*"):
        if path.is_file() and not any(path.is_relative_to(s) for s in skip):
            st = path.stat()
            found[str(path)] = (st.st_size, st.st_mtime_ns)
    return found


@dataclass
class Outcome:
    run: Measured
    document: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def reasons(self) -> list[str]:
        return [f["reason"] for f in self.document["failures"]]

    @property
    def messages(self) -> str:
        return "\n".join(f["message"] for f in self.document["failures"])


def attack(
    setup: Setup,
    reg: HostileRegistry,
    mirror: Mirror,
    tmp_path: Path,
    *,
    code: int = 1,
    bound: float = 60.0,
) -> Outcome:
    """Run the sync and check what every attack must leave true."""
    before = mirror.snapshot()
    files = outside_files(tmp_path, mirror)
    run = setup.sync_measured(timeout=bound + 60)
    assert "Traceback" not in run.stderr, run.stderr[-4000:]
    assert run.code == code, (run.code, run.stdout[-2000:], run.stderr[-2000:])
    assert run.seconds < bound, f"took {run.seconds:.1f}s, bound {bound}s"
    assert run.max_rss < MEMORY_BOUND, f"peak RSS {run.max_rss / MiB:.0f} MiB"
    document = run.document()
    after = mirror.snapshot()
    # Nothing outside the stream's repository changed, and no invalid name is in it.
    others = {k: v for k, v in after.items() if k != mirror.repository}
    if mirror.kind == "registry":
        assert others == {k: v for k, v in before.items() if k != mirror.repository}
    else:
        refs = after.get("refs", [])
        assert all(r.startswith(f"{mirror.repository}:") for r in refs), refs
    assert all(TAG.fullmatch(t) for t in mirror.tags_of_stream()), mirror.tags_of_stream()
    assert outside_files(tmp_path, mirror) == files  # no file outside the layout written
    reg.catcher.log.assert_no_credentials()
    return Outcome(run, document, before, after)


# -- names ---------------------------------------------------------------------------------


def test_odd_tag_names_are_skipped_by_name_and_never_reach_a_url_or_file(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    reg = hostile_registry
    reg.behave(tags=(*WEIRD_TAGS, "1.0"))
    setup = config(tmp_path, reg, mirror)
    out = attack(setup, reg, mirror, tmp_path)
    assert mirror.tags_of_stream() == ["1.0"]
    # Every weird name fails the run by name (escaped), none became a request.
    assert out.reasons.count("InvalidName") == len([t for t in WEIRD_TAGS if not TAG.fullmatch(t)])
    assert set(out.reasons) == {"InvalidName"}
    assert "'../../../../other/repo/manifests/latest'" in out.messages
    assert "'nul\\x00byte'" in out.messages and "'latest\\n'" in out.messages
    assert "\x00" not in out.run.stdout + out.run.stderr
    assert "\x1b" not in out.run.stderr
    asked = {e.path.rpartition("/manifests/")[2] for e in reg.log.select("manifests")}
    assert all(TAG.fullmatch(a) or DIGEST.fullmatch(a) for a in asked), asked
    assert "1.0" in asked
    if mirror.kind == "registry":
        assert "other/repo" not in out.after


def test_an_exclude_silences_odd_names_the_upstream_will_not_fix(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    reg = hostile_registry
    reg.behave(tags=("1.0", "a/b", "latest\n"))
    setup = config(tmp_path, reg, mirror, stream={"exclude": ["/", "\\n"]})
    out = attack(setup, reg, mirror, tmp_path, code=0)
    assert out.document["failures"] == [] and mirror.tags_of_stream() == ["1.0"]
    assert "'a/b'" in out.run.stderr and "'latest\\n'" in out.run.stderr  # the warning


def test_a_tag_that_looks_like_a_digest_path_never_opens_the_file(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    reg = hostile_registry
    secret = Bystander.create(tmp_path / "bystander.txt")
    reg.behave(tags=(f"sha256:{secret.path}", "sha256:/dev/zero", f"sha256:{tmp_path}/../x",
                     "1.0"))
    setup = config(tmp_path, reg, mirror)
    out = attack(setup, reg, mirror, tmp_path, bound=30)
    secret.assert_untouched()
    assert out.reasons == ["InvalidName"] * 3
    assert mirror.tags_of_stream() == ["1.0"]


@pytest.mark.parametrize("name", sorted(set(BAD_DIGESTS) - {"wrong", "empty"}))
def test_a_malformed_digest_header_fails_that_tag_cleanly(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror, name: str
) -> None:
    reg = hostile_registry
    reg.behave(tags=("1.0",))
    reg.on("manifests", Headers({"Docker-Content-Digest": BAD_DIGESTS[name]}), methods="HEAD")
    setup = config(tmp_path, reg, mirror)
    out = attack(setup, reg, mirror, tmp_path)
    assert out.reasons == ["DigestInvalid"]
    assert "Docker-Content-Digest" in out.messages and "sha512" in out.messages
    assert mirror.tags_of_stream() == []
    assert not reg.log.select("blobs")  # nothing was fetched on its word


def test_a_digest_header_that_lies_fails_its_tag_and_no_header_is_fine(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    reg = hostile_registry
    reg.behave(tags=("1.0", "latest"))
    reg.on("/manifests/1.0$", Headers({"Docker-Content-Digest": BAD_DIGESTS["wrong"]}),
           methods="HEAD")
    reg.on("/manifests/latest$", Headers({"Docker-Content-Digest": None}), methods="HEAD")
    setup = config(tmp_path, reg, mirror)
    out = attack(setup, reg, mirror, tmp_path)
    # The image is asked for by the digest HEAD named: the upstream has no such manifest.
    assert out.reasons == ["NotFound"] and out.document["failures"][0]["tag"] == "1.0"
    assert f"/v2/{reg.repository}/manifests/{BAD_DIGESTS['wrong']}" in {
        e.path for e in reg.log.select("manifests", method="GET")
    }
    assert mirror.tags_of_stream() == ["latest"]  # its GET's digest was checked


# -- credentials stay on their host ----------------------------------------------------------


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_a_link_to_another_host_is_followed_only_on_the_registry_itself(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror, auth: str
) -> None:
    reg = hostile_registry
    reg.behave(tags=("1.0", "1.1", "1.2", "latest"), page_size=1, link_base=reg.catcher.url,
               auth=auth)
    setup = config(tmp_path, reg, mirror)
    out = attack(setup, reg, mirror, tmp_path, code=0)
    assert len(reg.catcher.log) == 0  # only the Link's path and query were used
    assert len(reg.log.select("tags")) == 4
    assert mirror.tags_of_stream() == ["1.0", "1.1", "1.2", "latest"]
    assert out.document["failures"] == []


def test_a_blob_redirect_to_another_host_goes_without_credentials(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    # CDNs do this legitimately (S3, CloudFront): the copy succeeds, the CDN sees no secret.
    reg = hostile_registry
    reg.behave(tags=("1.0",), auth="basic")
    reg.on("blobs", Redirect(), methods="GET")
    setup = config(tmp_path, reg, mirror)
    attack(setup, reg, mirror, tmp_path, code=0)
    assert len(reg.catcher.log.select("blobs")) == 3  # config and two layers, from the CDN
    assert all(a.startswith("Basic ") for a in reg.authorizations())  # the registry had it
    assert mirror.tags_of_stream() == ["1.0"]


def test_a_redirect_target_that_challenges_gets_no_credentials(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    reg = hostile_registry
    reg.behave(tags=("1.0",), auth="basic", catcher_challenge="bearer")
    reg.on("blobs", Redirect(), methods="GET")
    setup = config(tmp_path, reg, mirror)
    out = attack(setup, reg, mirror, tmp_path)
    assert set(out.reasons) == {"Unauthorized"}
    assert reg.catcher.log.select("blobs") and not reg.catcher.log.select("token")


def test_a_token_realm_on_another_host_over_plain_http_gets_no_credentials(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    reg = hostile_registry
    reg.behave(tags=("1.0",), auth="bearer", realm=reg.catcher.realm)
    setup = config(tmp_path, reg, mirror)
    out = attack(setup, reg, mirror, tmp_path)
    assert reg.catcher.log.select("token")  # asked, anonymously: it refuses
    assert set(out.reasons) == {"Unauthorized"}
    assert "without credentials" in out.messages


def test_a_token_realm_host_configured_under_registries_gets_credentials(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    # The rule's other side: a host the user listed is trusted like the registry itself.
    reg = hostile_registry
    reg.behave(tags=("1.0",), auth="bearer", realm=reg.catcher.realm)
    setup = config(tmp_path, reg, mirror, trusted=[reg.catcher.host])
    run = setup.sync_measured(timeout=60)
    assert run.code == 0, run.stderr[-2000:]
    token = reg.catcher.log.select("token")[0].header("authorization") or ""
    assert token.startswith("Basic ")
    assert mirror.tags_of_stream() == ["1.0"]


# -- bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["sized", "no-digest"])
def test_a_200_mb_manifest_is_refused_without_reading_it(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror, head: str
) -> None:
    reg = hostile_registry
    reg.behave(tags=())
    reg.serve_tag("big", huge_manifest(200 * MiB, reg.image))
    if head == "no-digest":  # HEAD says nothing useful: the GET's Content-Length refuses it
        reg.on("manifests", Headers({"Docker-Content-Digest": None}), methods="HEAD")
    setup = config(tmp_path, reg, mirror)
    out = attack(setup, reg, mirror, tmp_path, bound=30)
    assert out.reasons == ["LimitExceeded"]
    assert "limits.max_manifest_size" in out.messages and reg.host in out.messages
    assert "209715200 bytes" in out.messages
    gets = reg.log.select("manifests", method="GET")
    assert len(gets) == (1 if head == "no-digest" else 0)


def test_an_endless_manifest_body_is_read_only_up_to_the_cap(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    # No digest on HEAD, so a GET must tell; its body has no length and never ends.
    reg = hostile_registry
    reg.behave(tags=("1.0",))
    reg.on("manifests", Headers({"Docker-Content-Digest": None}), methods="HEAD")
    reg.on("manifests", Endless(prefix=b'{"schemaVersion":2,"x":"', filler=b"a" * 65536),
           methods="GET")
    setup = config(tmp_path, reg, mirror, limits={"max_manifest_size": "1MiB"})
    out = attack(setup, reg, mirror, tmp_path, bound=30)
    assert out.reasons == ["LimitExceeded"] and "1.0 MiB" in out.messages


@pytest.mark.parametrize("size", ["default", "raised"])
def test_100000_layers_are_refused(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror, size: str
) -> None:
    reg = hostile_registry
    reg.behave(tags=())
    reg.serve_tag("wide", many_layers(100_000, reg.image))
    limits = {"max_manifest_size": "64MiB"} if size == "raised" else None
    setup = config(tmp_path, reg, mirror, limits=limits)
    out = attack(setup, reg, mirror, tmp_path, bound=60)
    assert out.reasons == ["LimitExceeded"]
    key = "limits.max_layers" if size == "raised" else "limits.max_manifest_size"
    assert key in out.messages
    assert len(reg.log.select("blobs")) == 0  # refused before any layer was fetched


def test_indexes_nested_50_deep_and_an_index_listing_itself_are_refused(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    reg = hostile_registry
    reg.behave(tags=("1.0",))
    reg.serve_tag("deep", nested_index(reg.doc, depth=50))
    reg.serve_tag("loop", cyclic_index(reg.doc))
    setup = config(tmp_path, reg, mirror)
    out = attack(setup, reg, mirror, tmp_path, bound=30)
    by_tag = {f["tag"]: f for f in out.document["failures"]}
    assert by_tag["deep"]["reason"] == "LimitExceeded"
    assert "limits.max_index_depth" in by_tag["deep"]["message"]
    assert by_tag["loop"]["reason"] == "DigestMismatch"
    assert "loop" not in mirror.tags_of_stream() and "deep" not in mirror.tags_of_stream()
    assert mirror.tags_of_stream() == ["1.0"]
    assert len(reg.log.select("manifests")) < 20


@pytest.mark.parametrize("pagination", ["loop", "endless"])
def test_a_pagination_that_never_ends_is_cut_off(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror, pagination: str
) -> None:
    reg = hostile_registry
    reg.behave(tags=("1.0", "1.1", "1.2"), page_size=2, pagination=pagination)
    setup = config(tmp_path, reg, mirror, limits={"max_tag_pages": 50})
    out = attack(setup, reg, mirror, tmp_path, bound=30)
    assert out.reasons == ["LimitExceeded"] and out.document["failures"][0]["tag"] == ""
    expected = "already read" if pagination == "loop" else "limits.max_tag_pages"
    assert expected in out.messages
    assert len(reg.log.select("tags")) <= 51
    assert mirror.tags_of_stream() == []


def test_a_million_tags_are_refused_past_the_default_cap(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    reg = hostile_registry
    reg.behave(tags=GeneratedTags(1_000_000))
    setup = config(tmp_path, reg, mirror)
    out = attack(setup, reg, mirror, tmp_path, bound=60)
    assert out.reasons == ["LimitExceeded"] and "limits.max_upstream_tags" in out.messages
    assert len(reg.log.select("tags")) == 101  # 1000 a page: refused past 100,000
    assert not reg.log.select("manifests")


def test_more_tags_than_the_cap_are_refused(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    reg = hostile_registry
    reg.behave(tags=GeneratedTags(5000), page_size=1000)
    setup = config(tmp_path, reg, mirror, limits={"max_upstream_tags": 2500})
    out = attack(setup, reg, mirror, tmp_path, bound=30)
    assert out.reasons == ["LimitExceeded"] and "limits.max_upstream_tags" in out.messages
    assert len(reg.log.select("tags")) == 3


@pytest.mark.parametrize("fault", ["trickle", "stall"])
def test_a_trickled_or_stalled_blob_fails_after_the_stall_timeout(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror, fault: str
) -> None:
    reg = hostile_registry
    reg.behave(tags=("1.0",))
    action = Trickle(interval=0.3) if fault == "trickle" else Stall(after_bytes=10)
    reg.on(f"/blobs/{reg.layer.digest}$", action, methods="GET")
    setup = config(tmp_path, reg, mirror,
                   registry={"stall_timeout": "1s", "min_transfer_rate": "1KiB"})
    out = attack(setup, reg, mirror, tmp_path, bound=40)
    assert out.reasons == ["Timeout"]
    assert "registries.HOST.stall_timeout" in out.messages
    assert out.document["retries"] >= 4  # temporary: retried, each attempt bounded
    assert len(reg.log.select(f"/blobs/{reg.layer.digest}$")) == 5
    assert mirror.tags_of_stream() == []


def test_a_manifest_slower_than_the_request_deadline_fails_in_time(
    tmp_path: Path, hostile_registry: HostileRegistry, mirror: Mirror
) -> None:
    # 2 KB/s passes the minimum rate; the whole answer would take minutes.
    reg = hostile_registry
    reg.behave(tags=())
    reg.serve_tag("slow", huge_manifest(1 * MiB, reg.image))
    reg.on("/manifests/", Throttle(bytes_per_second=2000), methods="GET")
    setup = config(tmp_path, reg, mirror,
                   registry={"request_timeout": "1s", "min_transfer_rate": "1KiB"})
    out = attack(setup, reg, mirror, tmp_path, bound=40)
    assert out.reasons == ["Timeout"] and "registries.HOST.request_timeout" in out.messages

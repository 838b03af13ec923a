"""Faults a service must survive, against real registries (issue 11): a 429 storm, a mirror
outage, two runs writing one prefix, a refused blob's upload session.

The fault proxy (tests/harness/faultproxy.py) sits in front of a real docker-registry where
a fault must be injected; `mirrord sync` runs as a real child process. Each test prints its
figures (seconds, retries, 429s seen) for the record: run with `-s` to see them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness.faultproxy import DockerHubLimit, FaultProxy
from harness.faults import Status
from harness.images import Image, RegistryHTTP, build_image, push
from harness.outage import registry_outage
from harness.registry import RegistryProcess
from harness.synctools import Setup, corrupt_blob, sync_setup

IMAGE_COUNT = 12  # distinct images; the tags name them in turn


def push_tags(client: RegistryHTTP, repo: str, count: int, seed: str) -> dict[str, str]:
    """`count` tags over IMAGE_COUNT tiny images sharing a base layer: tag -> digest."""
    base = build_image(repo, None, seed=f"{seed}/base", layer_sizes=(512,)).layers[0]
    images: list[Image] = [
        push(client, build_image(repo, f"t{i}", seed=f"{seed}/{i}", layers=(base,),
                                 layer_sizes=(256 + i,)))
        for i in range(min(count, IMAGE_COUNT))
    ]
    tags = {}
    for n in range(count):
        image = images[n % len(images)]
        tag = f"t{n}"
        if n >= len(images):
            client.put_manifest(repo, tag, image.raw, image.media_type)
        tags[tag] = image.digest
    return tags


def run_sync(setup: Setup, *args: str, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    proc = setup.sync_process("-o", "json", "--no-progress", *args)
    out, err = proc.communicate(timeout=timeout)
    start = out.find("{")
    return proc.returncode, json.loads(out[start:]) if start >= 0 else {}, err


def mirrored_digests(client: RegistryHTTP, repo: str, tags: dict[str, str]) -> dict[str, str]:
    found = {}
    for tag in tags:
        head = client.head_manifest(repo, tag)
        found[tag] = head or ""
    return found


def test_a_429_storm_over_hundreds_of_tags_completes_with_every_tag_identical(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """20 % of the source's GET and HEAD answers are 429 (seeded): more failures per tag
    than five attempts survive, and all of it within the retry budget."""
    source = registry_factory()
    with source.client() as client:
        tags = push_tags(client, repo_name, 300, repo_name)
    proxy: FaultProxy = fault_proxy_factory(source, seed=11)
    storm = proxy.storm(0.2, retry_after=0.25)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/storm",
        streams=[{"from": f"{proxy.host}/{repo_name}", "max_tags": -1, "signatures": False}],
        sources=[],
        settings={proxy.host: {"insecure": True}},
    )
    started = time.monotonic()
    code, summary, err = run_sync(setup)
    seconds = time.monotonic() - started
    assert code == 0, err[-3000:]
    assert summary["images"]["copied"] == 300 and summary["images"]["failed"] == 0
    assert mirrored_digests(mirror_client, f"storm/{repo_name}", tags) == tags
    refused = proxy.count(status=429)
    assert refused == storm.hits and refused >= 50  # a storm, not a shower
    assert summary["retries"] >= refused  # each 429 was waited out and retried
    assert "slow down" in err  # the registry's concurrency was lowered (AIMD), and said so
    print(
        f"\n429 storm: 300 tags, {proxy.count()} source requests, {refused} answered 429, "
        f"{summary['retries']} retries, {summary['rateLimitWaitSeconds']:.1f}s waited, "
        f"{seconds:.1f}s"
    )


def test_a_ten_second_mirror_outage_mid_run_is_absorbed(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    repo_name: str,
) -> None:
    """The mirror registry is stopped (its port refusing) 1.5 s into the run and started
    again on the same port 10 s later: every tag ends copied, exit 0."""
    source = registry_factory()
    mirror = registry_factory()
    with source.client() as client:
        tags = push_tags(client, repo_name, 40, repo_name)
    proxy: FaultProxy = fault_proxy_factory(source)
    proxy.latency = 0.15  # a run long enough to be hit by the outage
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror.host}/outage",
        streams=[{"from": f"{proxy.host}/{repo_name}", "max_tags": -1, "signatures": False}],
        sources=[],
        settings={proxy.host: {"insecure": True, "max_concurrency": 2}},
    )
    started = time.monotonic()
    with registry_outage(mirror, duration=10.0, after=1.5) as outage:
        code, summary, err = run_sync(setup)
    seconds = time.monotonic() - started
    assert outage.downtime >= 10.0
    assert outage.came_up is not None and outage.came_up - started < seconds  # mid-run
    assert code == 0, err[-3000:]
    assert summary["images"]["copied"] == 40 and summary["images"]["failed"] == 0
    assert "cannot reach the registry" in err  # the outage was seen, and retried
    with mirror.client() as client:
        assert mirrored_digests(client, f"outage/{repo_name}", tags) == tags
    print(
        f"\nmirror outage: {outage.downtime:.1f}s down, run {seconds:.1f}s, "
        f"{summary['retries']} retries, exit {code}"
    )


def push_shared_streams(client: RegistryHTTP, repos: list[str], seed: str) -> dict[str, str]:
    """Eight images in each repository, all sharing two layers across repositories (so
    blobs are mounted and linked everywhere at once): "repo:tag" -> digest."""
    base = build_image("x", None, seed=f"{seed}/base", layer_sizes=(4096,)).layers[0]
    mid = build_image("x", None, seed=f"{seed}/mid", layer_sizes=(8192,)).layers[0]
    pushed = {}
    for repo in repos:
        for i in range(8):
            image = build_image(repo, f"t{i}", seed=f"{seed}/{repo}/{i}", layers=(base, mid),
                                layer_sizes=(20_000,))
            pushed[f"{repo}:t{i}"] = push(client, image).digest
    return pushed


def test_two_runs_writing_one_prefix_both_succeed(
    tmp_path: Path,
    registry_factory: Any,
    repo_name: str,
) -> None:
    """Two `mirrord sync` processes with their own state directories copy the same images
    into one prefix at the same time, three times over: both exit 0 every time.

    distribution answers a manifest PUT with 400 DIGEST_INVALID while the other run is
    (re)writing the link of a blob the manifest references; before the fix about one
    run in eight failed so."""
    source = registry_factory()
    mirror = registry_factory()
    races = 0
    for attempt in range(3):
        repos = [f"{repo_name}/try{attempt}/s{k}" for k in range(3)]
        with source.client() as client:
            pushed = push_shared_streams(client, repos, f"{repo_name}-{attempt}")
        streams = [{"from": f"{source.host}/{r}", "max_tags": -1, "signatures": False}
                   for r in repos]
        setups = []
        for n in range(2):
            (tmp_path / f"try{attempt}-run{n}").mkdir()
            setups.append(sync_setup(
                tmp_path / f"try{attempt}-run{n}", mirror=f"docker://{mirror.host}/shared",
                streams=streams, sources=[source], settings={mirror.host: {"max_concurrency": 12}},
            ))
        procs = [s.sync_process("-o", "json", "--no-progress") for s in setups]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
            assert json.loads(out[out.index("{"):])["images"]["copied"] == 24
            races += err.count("DIGEST_INVALID") + err.count("MANIFEST_BLOB_UNKNOWN")
        with mirror.client() as client:
            for ref, digest in pushed.items():
                repo, tag = ref.rsplit(":", 1)
                assert client.head_manifest(f"shared/{repo}", tag) == digest
    print(f"\ntwo writers, one prefix: 3 tries x 2 runs, all exit 0; {races} racing PUTs retried")


def test_a_refused_blob_leaves_no_upload_session(
    tmp_path: Path,
    registry_factory: Any,
    repo_name: str,
) -> None:
    """A corrupt source blob is refused (DigestMismatch); the upload session it began in
    the mirror is cancelled: no blob data and no session record are left in `_uploads`.

    (distribution 2.8 leaves a `hashstates/sha256/0` file behind after every DELETE of a
    session, even one that never received a byte: a bug of that registry; its upload
    purging removes it.)"""
    source = registry_factory()
    mirror = registry_factory()
    with source.client() as client:
        image = push(client, build_image(repo_name, "v1", seed=repo_name,
                                         layer_sizes=(3_000_000,)))
    corrupt_blob(source, image.layers[0].digest)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror.host}/refused",
        streams=[{"from": f"{source.host}/{repo_name}", "tags": ["v1"]}],
        sources=[source],
    )
    code, summary, err = run_sync(setup)
    assert code == 1, err
    assert [f["reason"] for f in summary["failures"]] == ["DigestMismatch"]
    uploads = mirror.storage_path / f"docker/registry/v2/repositories/refused/{repo_name}/_uploads"
    assert uploads.is_dir()  # an upload was begun there
    left = [p for p in uploads.rglob("*") if p.is_file() and p.parent.name != "sha256"]
    assert left == [], left  # no `data`, no `startedat`
    deletes = [e for e in mirror.access_log() if e.method == "DELETE"]
    assert [e.status for e in deletes] == [204]
    with mirror.client() as client:
        assert not client.blob_exists(f"refused/{repo_name}", image.layers[0].digest)
        assert client.head_manifest(f"refused/{repo_name}", "v1") is None


def test_a_failed_manifest_put_is_accepted_when_the_mirror_holds_that_digest(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    repo_name: str,
) -> None:
    """Another writer put the image there between planning and the push: the PUT fails
    (an answer no retry would change), the HEAD that follows finds the intended digest."""
    source = registry_factory()
    mirror = registry_factory()
    with source.client() as client:
        image = push(client, build_image(repo_name, "v1", seed=repo_name))
    with mirror.client() as client:
        push(client, build_image(f"m/{repo_name}", "v1", seed=repo_name))  # the other writer
    front: FaultProxy = fault_proxy_factory(mirror)
    missed = front.on(r"/manifests/v1$", Status(404, code="MANIFEST_UNKNOWN"), methods="HEAD",
                      times=1)  # planning looked before the other writer's push
    refused = front.on(r"/manifests/v1$", Status(400, code="MANIFEST_INVALID"), methods="PUT",
                       times=1)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{front.host}/m",
        streams=[{"from": f"{source.host}/{repo_name}", "tags": ["v1"], "signatures": False}],
        sources=[source],
    )
    code, summary, err = run_sync(setup)
    assert (missed.hits, refused.hits) == (1, 1)
    assert code == 0, err
    assert summary["images"]["copied"] == 1 and summary["retries"] == 0
    assert "the mirror holds" in err and image.digest in err


def test_digest_invalid_on_a_manifest_put_is_retried(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    repo_name: str,
) -> None:
    """distribution's answer while another client links a blob the manifest references."""
    source = registry_factory()
    mirror = registry_factory()
    with source.client() as client:
        image = push(client, build_image(repo_name, "v1", seed=repo_name))
    front: FaultProxy = fault_proxy_factory(mirror)
    raced = front.on(r"/manifests/v1$", Status(400, code="DIGEST_INVALID"), methods="PUT",
                     times=2)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{front.host}/m",
        streams=[{"from": f"{source.host}/{repo_name}", "tags": ["v1"], "signatures": False}],
        sources=[source],
    )
    code, summary, err = run_sync(setup)
    assert raced.hits == 2
    assert code == 0, err
    assert summary["retries"] == 2
    with mirror.client() as client:
        assert client.head_manifest(f"m/{repo_name}", "v1") == image.digest


def test_below_the_pull_floor_no_new_manifest_pull_starts_and_the_tag_says_until_when(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> None:
    """Docker Hub's `ratelimit-remaining` (the fault proxy's DockerHubLimit): 12 pulls left,
    a floor of 10. Three pulls go (12, 11, 10 left before each); the rest wait for the
    window, longer than the retry budget, so their tags fail at once saying when pulls
    resume; the HEADs of planning go on and cost no pull."""
    source = registry_factory()
    with source.client() as client:
        for i in range(5):
            push(client, build_image(repo_name, f"v{i}", seed=f"{repo_name}/{i}"))
    proxy: FaultProxy = fault_proxy_factory(source)
    proxy.ratelimit = DockerHubLimit(limit=100, remaining=12)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/floor",
        streams=[{"from": f"{proxy.host}/{repo_name}", "max_tags": -1, "signatures": False}],
        sources=[],
        settings={proxy.host: {"insecure": True, "max_concurrency": 1, "ratelimit_min": 10}},
    )
    code, summary, err = run_sync(setup)
    assert code == 1, err
    assert summary["images"]["copied"] == 3 and summary["images"]["failed"] == 2
    assert proxy.ratelimit.remaining == 9  # never pulled below the floor again
    assert proxy.count("manifests", method="GET") == 3
    for failure in summary["failures"]:
        assert failure["reason"] == "RateLimited"
        assert "9 pulls left of 100 in the 21600s window, below ratelimit_min 10" in failure[
            "message"]
        assert "no new manifest pulls until" in failure["message"]
    assert "no new manifest pulls until" in err  # logged when the pause began

"""Import modes and signatures: Legacy next to PreserveOriginal, cosign tags (real registries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.images import (
    RegistryHTTP,
    build_image,
    push,
    push_image,
    push_index,
)
from harness.registry import RegistryProcess
from harness.synctools import corrupt_blob, sync_setup


def test_legacy_copies_one_platform_beside_preserve_original(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    index = push_index(basic_client, repo_name, "multi", seed=repo_name)
    arm64 = next(c for c in index.children if c.platform == ("linux", "arm64"))
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/modes",
        streams=[
            {"from": f"{basic_registry.host}/{repo_name}", "to": "whole", "tags": ["multi"]},
            {"from": f"{basic_registry.host}/{repo_name}", "to": "legacy", "tags": ["multi"],
             "import_mode": "Legacy", "platform": "linux/arm64"},
        ],
        sources=[basic_registry],
    )

    code, summary = setup.sync_json()

    assert code == 0, summary
    assert mirror_client.get_manifest("modes/whole", "multi").digest == index.digest
    legacy = mirror_client.get_manifest("modes/legacy", "multi")
    assert legacy.digest == arm64.digest and legacy.raw == arm64.raw
    amd64 = next(c for c in index.children if c.platform == ("linux", "amd64"))
    assert not mirror_client.blob_exists("modes/legacy", amd64.layers[0].digest)
    # Legacy's mirror digest differs from the source's; the state knows it came from it.
    code, again = setup.sync_json()
    assert code == 0 and again["images"]["copied"] == 0 and again["images"]["unchanged"] == 2


def test_legacy_follows_a_changed_platform_or_mode(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    index = push_index(basic_client, repo_name, "multi", seed=repo_name)
    by_arch = {c.platform[1]: c for c in index.children if c.platform}

    def sync_with(**stream: str) -> dict[str, Any]:
        setup = sync_setup(
            tmp_path,
            mirror=f"docker://{mirror_registry.host}/switch",
            streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": "app",
                      "tags": ["multi"], **stream}],
            sources=[basic_registry],
        )
        code, summary = setup.sync_json()
        assert code == 0, summary
        return summary

    assert sync_with()["images"]["copied"] == 1  # PreserveOriginal: the whole index
    assert mirror_client.head_manifest("switch/app", "multi") == index.digest
    # to Legacy: one platform replaces the index, though the source did not move
    assert sync_with(import_mode="Legacy", platform="linux/arm64")["images"]["copied"] == 1
    assert mirror_client.head_manifest("switch/app", "multi") == by_arch["arm64"].digest
    mark = basic_registry.mark()
    assert sync_with(import_mode="Legacy", platform="linux/arm64")["images"]["unchanged"] == 1
    manifests = [(m, p) for m, p in basic_registry.requests(since=mark) if "/manifests/" in p]
    assert manifests == [("HEAD", f"/v2/{repo_name}/manifests/multi")]  # one HEAD, no GET
    # another platform
    assert sync_with(import_mode="Legacy", platform="linux/amd64")["images"]["copied"] == 1
    assert mirror_client.head_manifest("switch/app", "multi") == by_arch["amd64"].digest
    assert sync_with(import_mode="Legacy", platform="linux/amd64")["images"]["unchanged"] == 1
    # and back to the whole index
    assert sync_with()["images"]["copied"] == 1
    assert mirror_client.head_manifest("switch/app", "multi") == index.digest


def test_cosign_signature_tags_travel_with_their_image(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    image = push_image(basic_client, repo_name, "1.0", seed=repo_name)
    signature_tag = image.digest.replace(":", "-") + ".sig"
    push(basic_client, build_image(repo_name, signature_tag, seed="sig"))
    push_image(basic_client, repo_name, "sha256-" + "0" * 64 + ".sig", seed="orphan")
    streams = [
        {"from": f"{basic_registry.host}/{repo_name}", "to": "with", "tags": ["1.0"]},
        {"from": f"{basic_registry.host}/{repo_name}", "to": "without", "tags": ["1.0"],
         "signatures": False},
        {"from": f"{basic_registry.host}/{repo_name}", "to": "explicit",
         "tags": ["1.0", signature_tag]},
    ]
    setup = sync_setup(
        tmp_path, mirror=f"docker://{mirror_registry.host}/sig", streams=streams,
        sources=[basic_registry],
    )

    code, summary = setup.sync_json()
    assert code == 0

    assert sorted(mirror_client.tags("sig/with")) == sorted(["1.0", signature_tag])
    assert mirror_client.tags("sig/without") == ["1.0"]
    assert sorted(mirror_client.tags("sig/explicit")) == sorted(["1.0", signature_tag])
    assert summary["images"]["copied"] == 5, "a listed signature tag is copied once"


def signature_of(client: RegistryHTTP, repo: str, digest: str, seed: str) -> str:
    """Push a cosign-style signature tag for ``digest``; its tag name."""
    tag = digest.replace(":", "-") + ".sig"
    push(client, build_image(repo, tag, seed=seed))
    return tag


def test_a_legacy_image_takes_its_platform_images_signature(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    index = push_index(basic_client, repo_name, "multi", seed=repo_name)
    arm64 = next(c for c in index.children if c.platform == ("linux", "arm64"))
    of_index = signature_of(basic_client, repo_name, index.digest, "index-sig")
    of_arm64 = signature_of(basic_client, repo_name, arm64.digest, "arm64-sig")
    setup = sync_setup(
        tmp_path, mirror=f"docker://{mirror_registry.host}/legacy-sig",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": "app", "tags": ["multi"],
                  "import_mode": "Legacy", "platform": "linux/arm64"}],
        sources=[basic_registry],
    )

    assert setup.sync_json()[0] == 0  # the platform image; its digest is known once copied
    assert setup.sync_json()[0] == 0  # now its signature

    assert sorted(mirror_client.tags("legacy-sig/app")) == sorted(["multi", of_arm64])
    assert of_index not in mirror_client.tags("legacy-sig/app")  # names an image not mirrored


def test_a_signature_waits_for_its_image(
    tmp_path: Path,
    registry_factory: object,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source: RegistryProcess = registry_factory()  # type: ignore[operator]
    client = source.client()
    bad = push_image(client, repo_name, "bad", seed="bad", layer_sizes=(50_000,))
    signed = signature_of(client, repo_name, bad.digest, "bad-sig")
    corrupt_blob(source, bad.layers[0].digest)  # the image cannot be copied
    setup = sync_setup(
        tmp_path, mirror=f"docker://{mirror_registry.host}/sig-waits",
        streams=[{"from": f"{source.host}/{repo_name}", "to": "app", "tags": ["bad"]}],
        sources=[source],
    )

    code, summary = setup.sync_json()

    assert code == 1
    failures = {f["tag"]: f["message"] for f in summary["failures"]}
    assert set(failures) == {"bad", signed}
    assert "its image" in failures[signed] and "failed" in failures[signed]
    assert mirror_client.tags("sig-waits/app") == []


def test_signature_of_an_image_with_two_tags_is_planned_once(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    image = push_image(basic_client, repo_name, "1.0", seed=repo_name)
    push(basic_client, image.with_repo(repo_name, "latest"))
    push(basic_client, build_image(repo_name, image.digest.replace(":", "-") + ".sig", seed="s"))
    setup = sync_setup(
        tmp_path, mirror=f"docker://{mirror_registry.host}/sig2",
        streams=[{"from": f"{basic_registry.host}/{repo_name}"}], sources=[basic_registry],
    )
    code, first = setup.sync_json()
    assert code == 0 and first["images"]["copied"] == 3

    mark = basic_registry.mark()
    code, again = setup.sync_json()

    heads = [p for m, p in basic_registry.requests(since=mark) if m == "HEAD"]
    assert again["images"]["unchanged"] == 3 and len(heads) == 3, heads


def test_a_dry_run_of_legacy_counts_only_the_platform_it_would_copy(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    index = push_index(basic_client, repo_name, "multi", seed=repo_name)
    arm64 = next(c for c in index.children if c.platform == ("linux", "arm64"))
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/dry",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": "legacy",
                  "tags": ["multi"], "import_mode": "Legacy", "platform": "linux/arm64"}],
        sources=[basic_registry],
    )

    code, planned = setup.sync_json("--dry-run")

    assert code == 0, planned
    assert planned["bytesToCopy"] == sum(b.size for b in arm64.blobs)
    code, done = setup.sync_json()
    assert code == 0 and done["bytes"] == planned["bytesToCopy"]

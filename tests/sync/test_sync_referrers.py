"""`mirrord sync` with `referrers:`: OCI 1.1 referrers travel with their image.

Debian's docker-registry (distribution 2.8, no referrers API) is source and mirror for the
referrers tag schema; the small referrers-capable fake of `harness.referrers` stands in for
a registry with the API (as source, and as mirror answering `OCI-Subject`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.images import OCI_MANIFEST, Image, RegistryHTTP, push, push_image, push_index
from harness.referrers import OCI_INDEX, ReferrersRegistry, push_referrer
from harness.registry import RegistryProcess
from harness.synctools import sync_setup

SBOM = "application/spdx+json"
SIG = "application/vnd.dev.sigstore.bundle.v0.3+json"
FOREIGN = "application/vnd.example.foreign"


def fallback_tag(digest: str) -> str:
    return "sha256-" + digest.split(":", 1)[1]


def listed(client: RegistryHTTP, repo: str, digest: str) -> list[str] | None:
    """The digests the referrers tag of `digest` lists in `repo` (None: no such tag)."""
    resp = client.request("GET", f"/v2/{repo}/manifests/{fallback_tag(digest)}",
                          headers={"Accept": OCI_INDEX})
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    return [d["digest"] for d in resp.json()["manifests"]]


def test_referrers_travel_through_the_tag_schema_and_existing_entries_stay(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    host = mirror_registry.host
    src = f"{repo_name}/src/app"
    index = push_index(mirror_client, src, "1.0", seed=repo_name)
    child = index.children[0].with_repo(src)
    sbom_raw, sbom = push_referrer(mirror_client, index, SBOM, b'{"spdx": 1}')
    _, sig = push_referrer(mirror_client, child, SIG, b"bundle")
    # The mirror's referrers tag of the index already lists an artifact someone else put.
    mirror_repo = f"m/{repo_name}/app"
    _, foreign = push_referrer(mirror_client, index.with_repo(mirror_repo), FOREIGN, b"kept")

    setup = sync_setup(
        tmp_path, mirror=f"docker://{host}/m", sources=[mirror_registry],
        streams=[
            {"from": f"{host}/{src}", "to": f"{repo_name}/app", "tags": ["1.0"],
             "referrers": True},
            {"from": f"{host}/{src}", "to": f"{repo_name}/sbom", "tags": ["1.0"],
             "referrers": [SBOM]},
        ],
    )
    code, planned = setup.sync_json("--dry-run")
    assert code == 0, planned
    assert planned["referrers"] == {"copied": 0, "planned": 3}
    plan_text = setup.sync("--dry-run").output
    assert "with 2 referrers" in plan_text, plan_text
    assert "with 1 referrer\n" in plan_text, plan_text
    assert listed(mirror_client, mirror_repo, index.digest) == [foreign]  # nothing written

    code, summary = setup.sync_json()
    assert code == 0, summary
    assert summary["referrers"] == {"copied": 3}  # sbom + sig; sbom again for the 2nd stream
    assert summary["warnings"] == []
    # Merged into what was there, never dropping it; the child's referrer under the child.
    assert listed(mirror_client, mirror_repo, index.digest) == [foreign, sbom]
    assert listed(mirror_client, mirror_repo, child.digest) == [sig]
    # Byte for byte by digest, with what it references.
    assert mirror_client.get_manifest(mirror_repo, sbom).raw == sbom_raw
    for layer in json.loads(sbom_raw)["layers"]:
        assert mirror_client.blob_exists(mirror_repo, layer["digest"])
    # The artifactType filter: the signature is not copied, so the child has no tag; the
    # source's own referrers tags are not copied as image tags either.
    sbom_repo = f"m/{repo_name}/sbom"
    assert listed(mirror_client, sbom_repo, index.digest) == [sbom]
    assert listed(mirror_client, sbom_repo, child.digest) is None
    assert mirror_client.head_manifest(sbom_repo, sig) is None
    before = mirror_client.get_manifest(mirror_repo, fallback_tag(index.digest),
                                        accept=[OCI_INDEX]).raw

    code, again = setup.sync_json()
    assert code == 0 and again["referrers"] == {"copied": 0}
    assert again["images"]["copied"] == 0
    assert mirror_client.get_manifest(mirror_repo, fallback_tag(index.digest),
                                      accept=[OCI_INDEX]).raw == before

    # A new tag naming the same image, and a new referrer: only the new one is copied.
    mirror_client.put_manifest(src, "1.1", index.raw, index.media_type)
    _, att = push_referrer(mirror_client, index, "application/vnd.in-toto+json", b"{}")
    setup_text = sync_setup(
        tmp_path, mirror=f"docker://{host}/m", sources=[mirror_registry],
        streams=[{"from": f"{host}/{src}", "to": f"{repo_name}/app", "tags": ["1.0", "1.1"],
                  "referrers": True}],
    )
    result = setup_text.sync()
    assert result.exit_code == 0, result.output
    assert "referrers: 1 copied" in result.output
    assert listed(mirror_client, mirror_repo, index.digest) == [foreign, sbom, att]


def push_api_image(client: RegistryHTTP) -> tuple[Image, str, str]:
    image = push_image(client, "team/app", "1.0", seed="api")
    _, sbom = push_referrer(client, image, SBOM, b'{"spdx": 2}', tag_schema=False)
    _, sig = push_referrer(client, image, SIG, b"bundle-2", tag_schema=False)
    return image, sbom, sig


def test_referrers_listed_through_the_api_of_the_source(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    with ReferrersRegistry(page_size=1) as upstream, RegistryHTTP(upstream.url) as client:
        image, sbom, sig = push_api_image(client)
        setup = sync_setup(
            tmp_path, mirror=f"docker://{mirror_registry.host}/m", sources=[mirror_registry],
            streams=[{"from": f"{upstream.host}/team/app", "to": f"{repo_name}/app",
                      "tags": ["1.0"], "referrers": True}],
            settings={upstream.host: {}},
        )
        code, summary = setup.sync_json()
        asked = [path for _, path in upstream.requests]
        # A referrer attached later: an ordinary run leaves the unchanged tag alone, a
        # verifying run copies it.
        _, late = push_referrer(client, image, FOREIGN, b"late", tag_schema=False)
        code_plain, plain = setup.sync_json()
        code_verify, verified = setup.sync_json("--verify")
    assert code == 0, summary
    assert summary["referrers"] == {"copied": 2}
    assert code_plain == 0 and plain["referrers"] == {"copied": 0}
    assert code_verify == 0 and verified["referrers"] == {"copied": 1}, verified
    assert verified["images"] == {**verified["images"], "copied": 0, "unchanged": 1}
    assert any(f"/referrers/{image.digest}" in p and "page=1" in p for p in asked)  # paged
    assert not any(fallback_tag(image.digest) in p for p in asked)  # the API answered
    # Distribution 2.8 answers no OCI-Subject: the mirror's referrers tag lists them.
    assert sorted(listed(mirror_client, f"m/{repo_name}/app", image.digest) or []) == sorted(
        [sbom, sig, late])


def test_a_mirror_with_the_referrers_api_indexes_them_itself(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    src = f"{repo_name}/src"
    image = push_image(mirror_client, src, "1.0", seed=repo_name)
    _, sbom = push_referrer(mirror_client, image, SBOM, b'{"spdx": 3}')
    with ReferrersRegistry() as mirror:
        setup = sync_setup(
            tmp_path, mirror=f"docker://{mirror.host}/m", sources=[mirror_registry],
            streams=[{"from": f"{mirror_registry.host}/{src}", "to": "app", "tags": ["1.0"],
                      "referrers": True}],
        )
        code, summary = setup.sync_json()
        found = mirror.referrers("m/app", image.digest, None)
        tags = {tag for (repo, tag) in mirror.tags if repo == "m/app"}
        # Another tag of the same image, in a new run: the referrer is there already (no
        # push, so no OCI-Subject to learn from): the mirror is asked whether it has the API.
        mirror_client.put_manifest(src, "1.1", image.raw, image.media_type)
        setup = sync_setup(
            tmp_path, mirror=f"docker://{mirror.host}/m", sources=[mirror_registry],
            streams=[{"from": f"{mirror_registry.host}/{src}", "to": "app",
                      "tags": ["1.0", "1.1"], "referrers": True}],
        )
        mirror.requests.clear()
        code_again, again = setup.sync_json()
        probed = [p for m, p in mirror.requests if m == "GET" and "/referrers/" in p]
        tags_again = {tag for (repo, tag) in mirror.tags if repo == "m/app"}
    assert code == 0, summary
    assert summary["referrers"] == {"copied": 1}
    assert [d["digest"] for d in found] == [sbom]
    assert tags == {"1.0"}  # OCI-Subject said it is indexed: no referrers tag pushed
    assert code_again == 0 and again["referrers"] == {"copied": 0}, again
    assert probed == [f"/v2/m/app/referrers/{image.digest}"]
    assert tags_again == {"1.0", "1.1"}


def test_an_oci_layout_mirror_keeps_referrers_under_the_tag_schema(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    src = f"{repo_name}/src"
    image = push_image(mirror_client, src, "1.0", seed=repo_name)
    sbom_raw, sbom = push_referrer(mirror_client, image, SBOM, b'{"spdx": 4}')
    layout = tmp_path / "layout"
    setup = sync_setup(
        tmp_path, mirror=f"oci:{layout}", sources=[mirror_registry],
        streams=[{"from": f"{mirror_registry.host}/{src}", "to": "app", "tags": ["1.0"],
                  "referrers": True}],
    )
    code, summary = setup.sync_json()
    assert code == 0, summary
    assert summary["referrers"] == {"copied": 1}
    entries: dict[str, Any] = {
        e["annotations"]["org.opencontainers.image.ref.name"]: e
        for e in json.loads((layout / "index.json").read_text())["manifests"]
    }
    entry = entries[f"app:{fallback_tag(image.digest)}"]
    assert entry["mediaType"] == OCI_INDEX
    referrers_index = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_bytes())
    assert [d["digest"] for d in referrers_index["manifests"]] == [sbom]
    assert referrers_index["manifests"][0]["mediaType"] == OCI_MANIFEST
    assert (layout / "blobs/sha256" / sbom[7:]).read_bytes() == sbom_raw


def test_hostile_referrers_listings_are_skipped_or_refused(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    host = mirror_registry.host
    src = f"{repo_name}/src"
    image = push_image(mirror_client, src, "1.0", seed=repo_name)
    other = push_image(mirror_client, src, "2.0", seed=repo_name + "o")
    _, stray = push_referrer(mirror_client, other, SBOM, b"of another image")
    # The source's referrers tag of `image` claims the referrer of `other`, and lists a
    # Docker manifest (no referrer can be one).
    forged = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": stray, "size": 10, "artifactType": SBOM},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "digest": other.digest, "size": other.size, "artifactType": SBOM}]}
    mirror_client.put_manifest(src, fallback_tag(image.digest), json.dumps(forged).encode(),
                               OCI_INDEX)
    # In the mirror, the referrers tag of `other` is not an index: never overwritten.
    mirror_repo = f"h/{repo_name}/app"
    push(mirror_client, other.with_repo(mirror_repo), tag=fallback_tag(other.digest))
    setup = sync_setup(
        tmp_path, mirror=f"docker://{host}/h", sources=[mirror_registry],
        streams=[{"from": f"{host}/{src}", "to": f"{repo_name}/app", "tags": ["1.0", "2.0"],
                  "referrers": True}],
    )
    code, summary = setup.sync_json()
    assert code != 0, summary
    reasons = {(w["tag"], w["reason"]) for w in summary["warnings"]}
    assert reasons == {("1.0", "ReferrerSkipped")}
    messages = " ".join(w["message"] for w in summary["warnings"])
    assert "its subject is not this image" in messages and "is no OCI manifest" in messages
    assert mirror_client.head_manifest(mirror_repo, "1.0") == image.digest
    assert listed(mirror_client, mirror_repo, image.digest) is None
    # 2.0's referrer is copied (as 2.0's, not 1.0's), but 2.0's referrers tag in the mirror
    # is no referrers index: the tag fails (the image is not tagged) and what is there stays.
    assert mirror_client.head_manifest(mirror_repo, stray) == stray
    [failure] = summary["failures"]
    assert failure["tag"] == "2.0" and "not an OCI image index" in failure["message"]
    assert mirror_client.head_manifest(mirror_repo, "2.0") is None
    assert mirror_client.head_manifest(mirror_repo, fallback_tag(other.digest)) == other.digest


def test_hostile_referrers_api_answers_are_bounded_and_checked(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    with ReferrersRegistry() as upstream, RegistryHTTP(upstream.url) as client:
        images = {tag: push_image(client, "team/app", tag, seed=f"hostile-{tag}")
                  for tag in ("odd", "many", "away")}
        _, good = push_referrer(client, images["odd"], SBOM, b"fine", tag_schema=False)
        real = upstream.referrers("team/app", images["odd"].digest, None)
        entry = {"mediaType": OCI_MANIFEST, "size": 10, "artifactType": SBOM}
        odd = [*real, {**entry, "digest": "md5:" + "a" * 32}]
        many = [{**entry, "digest": f"sha256:{i:064x}"} for i in range(1001)]

        def index(manifests: list[dict[str, Any]]) -> bytes:
            return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                               "manifests": manifests}).encode()

        upstream.forged = {
            images["odd"].digest: (index(odd), {}),
            images["many"].digest: (index(many), {}),
            images["away"].digest: (index([]), {
                "Link": f'</v2/other/app/referrers/{images["away"].digest}>; rel="next"'}),
        }
        setup = sync_setup(
            tmp_path, mirror=f"docker://{mirror_registry.host}/x", sources=[mirror_registry],
            streams=[{"from": f"{upstream.host}/team/app", "to": f"{repo_name}/app",
                      "tags": ["odd", "many", "away"], "referrers": True}],
            settings={upstream.host: {}},
        )
        code, summary = setup.sync_json()
        asked = [p for _, p in upstream.requests]
    assert code != 0, summary
    # An entry whose digest is off the grammar is skipped (never asked for); the rest copied.
    [warning] = summary["warnings"]
    assert warning["tag"] == "odd" and warning["reason"] == "ReferrerSkipped"
    assert "invalid digest" in warning["message"] and "md5:" in warning["message"]
    assert not any("md5" in p for p in asked)
    assert summary["referrers"] == {"copied": 1}
    mirror_repo = f"x/{repo_name}/app"
    assert listed(mirror_client, mirror_repo, images["odd"].digest) == [good]
    # Too many referrers, or a Link out of the repository: the tag fails, untouched.
    failures = {f["tag"]: f["message"] for f in summary["failures"]}
    assert set(failures) == {"many", "away"}
    assert "more than 1000" in failures["many"]
    assert "leaves the repository" in failures["away"]
    assert not any(p.startswith("/v2/other/") for p in asked)
    for tag in ("many", "away"):
        assert mirror_client.head_manifest(mirror_repo, tag) is None

"""`mirrord sync` with signatures, end to end: Debian's skopeo signs (`copy --sign-by`),
mirrord carries the signature to its lookaside and checks its policy, skopeo pulls from
the mirror with a `signedBy` policy and a registries.d pointing at mirrord's lookaside."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.signing import (
    COSIGN_SIMPLESIGNING,
    CosignKey,
    GPGKey,
    StaticServer,
    cosign_payload,
    cosign_signature_manifest,
    signed_by,
    skopeo_pull,
    skopeo_sign,
)
from harness.synctools import Setup, sync_setup

from mirrord.cli import main
from mirrord.signatures import SIGNATURE_ANNOTATION, attachment_tag


@pytest.fixture(scope="module")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GPGKey]:
    key = GPGKey.generate(tmp_path_factory.mktemp("gpg") / "home", "mirrord sync signer")
    yield key
    key.close()


def setup_describe(setup: Setup, name: str) -> dict[str, Any]:
    """`mirrord describe NAME -o json` for the image stream."""
    result = CliRunner().invoke(main, ["describe", name, "--config", str(setup.path),
                                       "-o", "json"])
    assert result.exit_code == 0, result.output
    described: dict[str, Any] = json.loads(result.stdout[result.stdout.index("{"):])
    return described


def test_signed_image_travels_with_its_signature_and_unsigned_is_refused(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str, gpg_key: GPGKey,
) -> None:
    host = mirror_registry.host
    push_image(mirror_client, f"{repo_name}/src/app", "1.0", seed=repo_name)
    unsigned = push_image(mirror_client, f"{repo_name}/up/app", "2.0", seed=repo_name + "u")
    staging = tmp_path / "upstream-lookaside"
    skopeo_sign(f"{host}/{repo_name}/src/app:1.0", f"{host}/{repo_name}/up/app:1.0",
                tmp_path / "sign", gpg=gpg_key, staging=staging)
    key = gpg_key.write_public(tmp_path / "signer.asc")
    policy = {"default": [{"type": "reject"}],
              "transports": {"docker": {f"{host}/{repo_name}/up": signed_by(key)}}}
    lookaside_dir = tmp_path / "mirror-lookaside"
    with StaticServer(staging) as upstream:
        setup = sync_setup(
            tmp_path, mirror=f"docker://{host}/m", sources=[mirror_registry],
            streams=[{"from": f"{host}/{repo_name}/up/app", "to": f"{repo_name}/app",
                      "tags": ["1.0", "2.0"], "signatures": False}],
            settings={host: {"lookaside": upstream.url}},
            extra={"policy": policy, "lookaside_dir": str(lookaside_dir)},
        )
        code, summary = setup.sync_json()
        requests_first = len(upstream.requests)
        code2, summary2 = setup.sync_json()  # again: nothing new to fetch or write

    assert code != 0, summary
    assert summary["images"]["copied"] == 1 and summary["images"]["failed"] == 1
    assert summary["signatures"] == {"copied": 1, "verified": 1, "rejected": 1}
    [failure] = summary["failures"]
    assert failure["tag"] == "2.0" and failure["reason"] == "SignatureRejected"
    assert f"{host}/{repo_name}/up/app:2.0" in failure["message"]
    assert "signedBy" in failure["message"]
    # The refused tag never reached the mirror; the accepted one did.
    assert mirror_client.head_manifest(f"m/{repo_name}/app", "2.0") is None
    accepted = mirror_client.head_manifest(f"m/{repo_name}/app", "1.0")
    assert accepted is not None and accepted != unsigned.digest
    # The signature is in mirrord's lookaside, byte for byte, under the mirror's path.
    [upstream_sig] = staging.rglob("signature-1")
    mirrored = lookaside_dir / f"m/{repo_name}/app@sha256={upstream_sig.parent.name.split('=')[1]}"
    assert (mirrored / "signature-1").read_bytes() == upstream_sig.read_bytes()
    assert not (mirrored / "signature-2").exists()
    # Second run: the 1.0 signature is held, only signature-2 is asked for; the refusal stays.
    assert code2 != 0 and summary2["signatures"]["copied"] == 0
    assert summary2["images"]["failed"] == 1
    assert len(upstream.requests) - requests_first <= 2

    # skopeo, pulling from the mirror, accepts the signature (identity remapped) ...
    client_policy = {"default": [{"type": "reject"}], "transports": {"docker": {
        f"{host}/m": signed_by(key, signedIdentity={
            "type": "remapIdentity", "prefix": f"{host}/m/{repo_name}",
            "signedPrefix": f"{host}/{repo_name}/up"})}}}
    pulled = skopeo_pull(tmp_path, f"{host}/m/{repo_name}/app:1.0", client_policy,
                          lookaside_dir.as_uri(), f"{host}/m")
    assert pulled.returncode == 0, pulled.stderr
    # ... and refuses it when mirrord's lookaside is not there to show the signature.
    refused = skopeo_pull(tmp_path, f"{host}/m/{repo_name}/app:1.0", client_policy,
                           (tmp_path / "empty").as_uri(), f"{host}/m")
    assert refused.returncode != 0 and "signature" in refused.stderr.lower()


def test_a_tampered_signature_is_refused_and_the_tag_stays(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str, gpg_key: GPGKey,
) -> None:
    host = mirror_registry.host
    push_image(mirror_client, f"{repo_name}/src/app", "1.0", seed=repo_name)
    staging = tmp_path / "upstream-lookaside"
    skopeo_sign(f"{host}/{repo_name}/src/app:1.0", f"{host}/{repo_name}/up/app:1.0",
                tmp_path / "sign", gpg=gpg_key, staging=staging)
    [sig] = staging.rglob("signature-1")
    blob = bytearray(sig.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one bit in the signed payload
    sig.write_bytes(bytes(blob))
    key = gpg_key.write_public(tmp_path / "signer.asc")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": signed_by(key)}))
    setup = sync_setup(
        tmp_path, mirror=f"docker://{host}/m", sources=[mirror_registry],
        streams=[{"from": f"{host}/{repo_name}/up/app", "to": f"{repo_name}/app",
                  "tags": ["1.0"], "signatures": False}],
        settings={host: {"lookaside": staging.as_uri()}},
        extra={"policy": str(policy)},
    )
    code, summary = setup.sync_json()
    assert code != 0
    assert summary["signatures"]["rejected"] == 1 and summary["signatures"]["copied"] == 0
    assert summary["failures"][0]["reason"] == "SignatureRejected"
    assert mirror_client.head_manifest(f"m/{repo_name}/app", "1.0") is None
    # Nothing of a refused image lands in the default lookaside (<state_dir>/sigstore).
    assert not list((setup.state_dir / "sigstore").rglob("signature-*"))
    # The refusal is the tag's condition in its image stream (OpenShift's spelling).
    described = setup_describe(setup, f"{repo_name}/app")
    [tag] = [t for t in described["status"]["tags"] if t["tag"] == "1.0"]
    [condition] = tag["conditions"]
    assert condition["type"] == "ImportSuccess" and condition["status"] == "False"
    assert condition["reason"] == "SignatureRejected" and "signedBy" in condition["message"]


def test_a_bad_lookaside_or_policy_is_a_configuration_error(
    tmp_path: Path, mirror_registry: RegistryProcess,
) -> None:
    host = mirror_registry.host
    setup = sync_setup(tmp_path, mirror=f"docker://{host}/m", sources=[mirror_registry],
                       streams=[{"from": f"{host}/x/app", "tags": ["1"]}],
                       settings={host: {"lookaside": "ftp://example.invalid/sigs"}})
    result = setup.sync()
    assert result.exit_code != 0
    assert "lookaside" in result.output and "mirrord.yaml:" in result.output
    assert "Traceback" not in result.output
    setup = sync_setup(tmp_path, mirror=f"docker://{host}/m", sources=[mirror_registry],
                       streams=[{"from": f"{host}/x/app", "tags": ["1"]}],
                       extra={"policy": {"default": [{"type": "signedBy"}]}})
    result = setup.sync()
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "policy" in result.output and "keyType" in result.output


def test_a_cosign_key_signed_image_passes_sigstore_signed_and_a_forged_one_fails(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    host = mirror_registry.host
    repo = f"{repo_name}/cosign/app"
    key = CosignKey.generate(tmp_path / "cosign")
    forger = CosignKey.generate(tmp_path / "forger")
    good = push_image(mirror_client, repo, "good", seed=repo_name + "g")
    bad = push_image(mirror_client, repo, "bad", seed=repo_name + "b")
    for image, signer in ((good, key), (bad, forger)):
        payload = cosign_payload(image.digest, f"{host}/{repo}:{image.tag}")
        raw, blobs = cosign_signature_manifest(
            [(payload, {SIGNATURE_ANNOTATION: signer.sign(payload)}, COSIGN_SIMPLESIGNING)])
        for digest, blob in blobs.items():
            mirror_client.upload_blob(repo, blob, digest)
        mirror_client.put_manifest(repo, attachment_tag(image.digest), raw,
                                   "application/vnd.oci.image.manifest.v1+json")
    policy = {"default": [{"type": "sigstoreSigned", "keyPath": str(key.public_path),
                           "signedIdentity": {"type": "matchRepository"}}]}
    setup = sync_setup(
        tmp_path, mirror=f"docker://{host}/c", sources=[mirror_registry],
        streams=[{"from": f"{host}/{repo}", "to": repo, "tags": ["good", "bad"]}],
        extra={"policy": policy},
    )
    code, summary = setup.sync_json()
    assert code != 0, summary
    assert summary["signatures"] == {"copied": 0, "verified": 1, "rejected": 1}
    rejected = [f for f in summary["failures"] if f["reason"] == "SignatureRejected"]
    assert [f["tag"] for f in rejected] == ["bad"]
    # The refused image's signature tag stays behind with it; the accepted one's travels.
    assert {f["tag"] for f in summary["failures"]} == {"bad", attachment_tag(bad.digest)}
    assert mirror_client.head_manifest(f"c/{repo}", attachment_tag(good.digest)) is not None
    assert mirror_client.head_manifest(f"c/{repo}", "good") == good.digest
    assert mirror_client.head_manifest(f"c/{repo}", "bad") is None


def test_a_failing_lookaside_is_retried_and_a_lasting_failure_is_a_warning_without_policy(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str, gpg_key: GPGKey,
) -> None:
    host = mirror_registry.host
    push_image(mirror_client, f"{repo_name}/src/app", "1.0", seed=repo_name)
    staging = tmp_path / "upstream-lookaside"
    skopeo_sign(f"{host}/{repo_name}/src/app:1.0", f"{host}/{repo_name}/up/app:1.0",
                tmp_path / "sign", gpg=gpg_key, staging=staging)
    with StaticServer(staging) as upstream:
        setup = sync_setup(
            tmp_path, mirror=f"docker://{host}/r", sources=[mirror_registry],
            streams=[{"from": f"{host}/{repo_name}/up/app", "to": f"{repo_name}/app",
                      "tags": ["1.0"], "signatures": False}],
            settings={host: {"lookaside": upstream.url}},
        )
        upstream.fail_next = [503]
        code, summary = setup.sync_json()
        assert code == 0, summary
        assert summary["signatures"]["copied"] == 1 and summary["retries"] >= 1
        assert not any(auth for _, auth in upstream.requests)  # no credentials to a lookaside

        (tmp_path / "again").mkdir()
        setup = sync_setup(
            tmp_path / "again", mirror=f"docker://{host}/r2", sources=[mirror_registry],
            streams=[{"from": f"{host}/{repo_name}/up/app", "to": f"{repo_name}/app",
                      "tags": ["1.0"], "signatures": False}],
            settings={host: {"lookaside": upstream.url}},
        )
        upstream.fail_next = [403] * 50
        code, summary = setup.sync_json()
    # No policy needs the signatures: the tag moves without them, the summary says so.
    assert code == 0, summary
    assert summary["failures"] == [] and summary["signatures"]["copied"] == 0
    [warning] = summary["warnings"]
    assert warning["reason"] == "SignaturesNotCopied" and "HTTP 403" in warning["message"]
    assert mirror_client.head_manifest(f"r2/{repo_name}/app", "1.0") is not None


def test_a_failing_lookaside_warns_unless_the_policy_needs_its_signatures(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str, gpg_key: GPGKey,
) -> None:
    host = mirror_registry.host
    repo = f"{repo_name}/up/app"
    image = push_image(mirror_client, repo, "1.0", seed=repo_name)
    key = gpg_key.write_public(tmp_path / "signer.asc")
    lenient = {"default": [{"type": "insecureAcceptAnything"}]}
    strict = {"default": signed_by(key)}
    with StaticServer(tmp_path / "empty-lookaside") as upstream:
        outcomes = []
        for name, policy in (("lenient", lenient), ("strict", strict)):
            upstream.fail_next = [500] * 50  # every retry of signature-1 fails
            (tmp_path / name).mkdir()
            setup = sync_setup(
                tmp_path / name, mirror=f"docker://{host}/{name}", sources=[mirror_registry],
                streams=[{"from": f"{host}/{repo}", "to": repo, "tags": ["1.0"],
                          "signatures": False}],
                settings={host: {"lookaside": upstream.url}},
                extra={"policy": policy} if policy else None,
            )
            outcomes.append(setup.sync_json())
    (code_lenient, lenient_run), (code_strict, strict_run) = outcomes
    # No requirement reads simple signatures: the tag moves, the summary names what is missing.
    assert code_lenient == 0, lenient_run
    assert lenient_run["images"]["copied"] == 1 and lenient_run["failures"] == []
    [warning] = lenient_run["warnings"]
    assert warning["reason"] == "SignaturesNotCopied" and warning["tag"] == "1.0"
    assert f"{host}/{repo}:1.0@{image.digest}" in warning["message"]
    assert "HTTP 500" in warning["message"]
    assert mirror_client.head_manifest(f"lenient/{repo}", "1.0") == image.digest
    # signedBy needs them: the tag fails and is not moved.
    assert code_strict != 0
    [failure] = strict_run["failures"]
    assert failure["reason"] == "SignatureUnavailable" and "HTTP 500" in failure["message"]
    assert strict_run["warnings"] == []
    assert mirror_client.head_manifest(f"strict/{repo}", "1.0") is None


def _imported_signatures(setup: Setup) -> tuple[int, bool]:
    """A `mirrord sync` child process: its exit code, and whether it imported the
    signatures package (`-X importtime` names every module a process imports)."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mirrord", "sync", "--config",
         str(setup.path), "-o", "json"],
        capture_output=True, text=True, timeout=120,
    )
    return run.returncode, " mirrord.signatures\n" in run.stderr


def test_a_no_op_without_a_policy_has_no_signature_gate(
    tmp_path: Path, mirror_registry: RegistryProcess, repo_name: str
) -> None:
    # Nothing to copy and no policy: the gate would only open a lookaside client, and
    # importing the signatures stack costs a no-op ~20 ms. A copy has its gate.
    host = mirror_registry.host
    with mirror_registry.client() as http:
        push_image(http, repo_name, "1", seed=repo_name)
    setup = sync_setup(tmp_path, mirror=f"docker://{host}/m", sources=[mirror_registry],
                       streams=[{"from": f"{host}/{repo_name}", "tags": ["1"]}])
    assert _imported_signatures(setup) == (0, True)
    assert _imported_signatures(setup) == (0, False)

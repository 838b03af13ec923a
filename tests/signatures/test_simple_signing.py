"""Simple signing end to end with real tools: skopeo signs, gpgv verifies through the policy.

The image is pushed to Debian's docker-registry and copied by `skopeo copy --sign-by` with a
GnuPG key made in the test; skopeo stages the signature in a directory, which a test web
server serves as the source lookaside. mirrord's lookaside client fetches it and mirrord's
verifier evaluates containers-policy.json documents against it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness.signing import GPGKey, StaticServer

from mirrord.errors import ConfigError, DigestMismatchError, SignatureRejectedError
from mirrord.signatures import ImageToVerify, LookasideClient, Verifier, load_policy

from .conftest import SignedImage

pytestmark = pytest.mark.anyio
WritePolicy = Callable[[dict[str, Any]], Path]


def signed_by(key_path: Path, identity: dict[str, Any] | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key_path)}
    if identity is not None:
        req["signedIdentity"] = identity
    return req


def policy_for(host: str, *reqs: dict[str, Any]) -> dict[str, Any]:
    return {"default": [{"type": "reject"}], "transports": {"docker": {host: list(reqs)}}}


async def fetch(signed: SignedImage) -> list[bytes]:
    with StaticServer(signed.staging) as server:
        async with LookasideClient() as client:
            return await client.fetch(server.url, signed.repository, signed.image.digest)


async def verdict(policy_path: Path, reference: str, manifest: bytes, sigs: list[bytes]) -> Any:
    async with Verifier(load_policy(policy_path)) as verifier:
        return await verifier.check(ImageToVerify(reference, manifest, simple_signatures=sigs))


async def test_lookaside_client_fetches_what_skopeo_staged(signed_image: SignedImage) -> None:
    staged = sorted(signed_image.staging.rglob("signature-*"))
    assert [p.name for p in staged] == ["signature-1"]
    with StaticServer(signed_image.staging) as server:
        async with LookasideClient() as client:
            sigs = await client.fetch(server.url, signed_image.repository,
                                      signed_image.image.digest)
    assert sigs == [staged[0].read_bytes()]
    hex_ = signed_image.image.digest.removeprefix("sha256:")
    base = f"/{signed_image.repository}@sha256={hex_}"
    # signature-1 found, signature-2 is the 404 that ends the list; no credentials sent
    assert server.requests == [(f"{base}/signature-1", False), (f"{base}/signature-2", False)]


async def test_signed_by_accepts_and_other_key_rejects(
        signed_image: SignedImage, gpg_key: GPGKey, other_gpg_key: GPGKey,
        write_policy: WritePolicy, tmp_path: Path) -> None:
    sigs = await fetch(signed_image)
    host = signed_image.registry.host
    good = write_policy(policy_for(host, signed_by(gpg_key.write_public(tmp_path / "k.asc"))))
    result = await verdict(good, signed_image.reference, signed_image.image.raw, sigs)
    assert result.accepted, result.message
    assert result.scope == f'transports.docker["{host}"]'

    other = write_policy(policy_for(host, signed_by(other_gpg_key.write_public(tmp_path / "o"))))
    result = await verdict(other, signed_image.reference, signed_image.image.raw, sigs)
    assert not result.accepted
    assert f"signature by key {gpg_key.fingerprint} is not accepted" in result.reason
    assert result.requirement.startswith("signedBy GPGKeys keyPath ")
    with pytest.raises(SignatureRejectedError) as caught:
        result.raise_if_rejected()
    assert caught.value.reason == "SignatureRejected"
    assert str(other) in str(caught.value) and "signedBy" in str(caught.value)


async def test_tampered_manifest_and_wrong_identity_are_rejected(
        signed_image: SignedImage, gpg_key: GPGKey, write_policy: WritePolicy,
        tmp_path: Path) -> None:
    sigs = await fetch(signed_image)
    path = write_policy(policy_for(signed_image.registry.host,
                                   signed_by(gpg_key.write_public(tmp_path / "k.asc"))))
    tampered = signed_image.image.raw.replace(b'"schemaVersion":2', b'"schemaVersion": 2')
    assert tampered != signed_image.image.raw
    result = await verdict(path, signed_image.reference, tampered, sigs)
    assert not result.accepted
    assert result.reason == f"Signature for digest {signed_image.image.digest} does not match"

    for wrong in (signed_image.reference.replace(":1.0", ":2.0"),
                  signed_image.reference.replace("/signed/", "/src/")):
        result = await verdict(path, wrong, signed_image.image.raw, sigs)
        assert not result.accepted
        assert f"Signature for identity '{signed_image.reference}' is not accepted" in result.reason

    # by digest, matchRepoDigestOrExact only needs the repository
    by_digest = f"{signed_image.reference.rsplit(':', 1)[0]}@{signed_image.image.digest}"
    assert (await verdict(path, by_digest, signed_image.image.raw, sigs)).accepted

    async with Verifier(load_policy(path)) as verifier:
        with pytest.raises(DigestMismatchError):
            await verifier.check(ImageToVerify(signed_image.reference, tampered,
                                               signed_image.image.digest))


async def test_remap_identity_accepts_the_mirror_reference(
        signed_image: SignedImage, gpg_key: GPGKey, write_policy: WritePolicy,
        tmp_path: Path) -> None:
    sigs = await fetch(signed_image)
    key = gpg_key.write_public(tmp_path / "k.asc")
    source_prefix = signed_image.reference.rsplit("/", 1)[0]        # host/<repo>/signed
    mirror_prefix = "mirror.example:5000/prefix"
    mirror_ref = signed_image.reference.replace(source_prefix, mirror_prefix)
    remap = {"type": "remapIdentity", "prefix": mirror_prefix, "signedPrefix": source_prefix}
    path = write_policy(policy_for("mirror.example:5000", signed_by(key, remap)))
    assert (await verdict(path, mirror_ref, signed_image.image.raw, sigs)).accepted
    plain = write_policy(policy_for("mirror.example:5000", signed_by(key)))
    result = await verdict(plain, mirror_ref, signed_image.image.raw, sigs)
    assert not result.accepted and "is not accepted" in result.reason


@pytest.mark.parametrize(("identity", "same_tag", "other_tag"), [
    ({"type": "matchExact"}, True, False),
    ({"type": "matchRepoDigestOrExact"}, True, False),
    ({"type": "matchRepository"}, True, True),
    ({"type": "exactRepository", "dockerRepository": "REPO"}, True, True),
    ({"type": "exactReference", "dockerReference": "REPO:1.0"}, True, True),
    ({"type": "exactReference", "dockerReference": "REPO:other"}, False, False),
])
async def test_signed_identity_rules(signed_image: SignedImage, gpg_key: GPGKey,
                                     write_policy: WritePolicy, tmp_path: Path,
                                     identity: dict[str, Any], same_tag: bool,
                                     other_tag: bool) -> None:
    """The signature names <repo>:1.0; the image is checked as <repo>:1.0 and <repo>:9."""
    sigs = await fetch(signed_image)
    ref = signed_image.reference
    repo = ref.rsplit(":", 1)[0]
    identity = {k: v.replace("REPO", repo) for k, v in identity.items()}
    path = write_policy(policy_for(signed_image.registry.host,
                                   signed_by(gpg_key.write_public(tmp_path / "k"), identity)))
    assert (await verdict(path, ref, signed_image.image.raw, sigs)).accepted is same_tag
    assert (await verdict(path, f"{repo}:9", signed_image.image.raw, sigs)).accepted is other_tag


async def test_reject_insecure_and_scope_precedence(
        signed_image: SignedImage, gpg_key: GPGKey, write_policy: WritePolicy,
        tmp_path: Path) -> None:
    sigs = await fetch(signed_image)
    host, repo = signed_image.registry.host, signed_image.repository
    key = gpg_key.write_public(tmp_path / "k.asc")
    accept = [{"type": "insecureAcceptAnything"}]
    doc = {"default": accept,
           "transports": {"docker": {host: [{"type": "reject"}],
                                     f"{host}/{repo}": [signed_by(key)],
                                     f"{host}/{repo}:unsigned": accept}}}
    path = write_policy(doc)
    ref = signed_image.reference
    assert (await verdict(path, ref, signed_image.image.raw, sigs)).accepted
    other = await verdict(path, f"{host}/elsewhere/app:1.0", signed_image.image.raw, sigs)
    assert not other.accepted and other.requirement == "reject"
    assert other.reason == f"Running image {host}/elsewhere/app:1.0 is rejected by policy."
    unsigned = await verdict(path, f"{host}/{repo}:unsigned", b"{}", [])
    assert unsigned.accepted and unsigned.scope.endswith(':unsigned"]')
    missing = await verdict(path, f"{host}/{repo}:2.0", b"{}", [])
    assert missing.reason == "A signature was required, but no signature exists"
    assert (await verdict(path, "quay.io/x/y:1", b"{}", [])).scope == "default"


async def test_several_signatures_one_good_is_enough(
        signed_image: SignedImage, gpg_key: GPGKey, other_gpg_key: GPGKey,
        write_policy: WritePolicy, tmp_path: Path) -> None:
    good = (await fetch(signed_image))[0]
    by_other = other_gpg_key.sign(b'{"not":"a payload"}')
    not_payload = gpg_key.sign(b'{"critical":{},"optional":{}}')
    garbage = b"\x89" + b"\x00" * 40
    path = write_policy(policy_for(signed_image.registry.host,
                                   signed_by(gpg_key.write_public(tmp_path / "k.asc"))))
    ref, raw = signed_image.reference, signed_image.image.raw
    assert (await verdict(path, ref, raw, [garbage, by_other, not_payload, good])).accepted
    result = await verdict(path, ref, raw, [garbage, by_other, not_payload])
    assert not result.accepted
    assert result.reason.startswith("None of the 3 signatures were accepted, reasons: ")
    assert f"signature by key {other_gpg_key.fingerprint} is not accepted" in result.reason
    assert "critical: missing ['identity', 'image', 'type']" in result.reason


async def test_key_data_and_key_paths(signed_image: SignedImage, gpg_key: GPGKey,
                                      other_gpg_key: GPGKey, write_policy: WritePolicy,
                                      tmp_path: Path) -> None:
    sigs = await fetch(signed_image)
    host = signed_image.registry.host
    data = {"type": "signedBy", "keyType": "GPGKeys",
            "keyData": base64.b64encode(gpg_key.public).decode()}
    paths = {"type": "signedBy", "keyType": "GPGKeys",
             "keyPaths": [str(other_gpg_key.write_public(tmp_path / "o")),
                          str(gpg_key.write_public(tmp_path / "g"))]}
    for req in (data, paths):
        result = await verdict(write_policy(policy_for(host, req)), signed_image.reference,
                               signed_image.image.raw, sigs)
        assert result.accepted, result.message


async def test_a_key_file_without_keys_fails_when_the_verifier_opens(
        write_policy: WritePolicy, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gpg"
    junk.write_text("this is not a key\n")
    policy = load_policy(write_policy(policy_for("quay.io", signed_by(junk))))
    with pytest.raises(ConfigError, match=r"junk\.gpg: no OpenPGP public key could be imported"):
        async with Verifier(policy):
            pass


_CREATOR = {"creator": "test"}


def atomic_payload(digest: str, reference: str, optional: Any = _CREATOR) -> bytes:
    return json.dumps({"critical": {"type": "atomic container signature",
                                    "image": {"docker-manifest-digest": digest},
                                    "identity": {"docker-reference": reference}},
                       "optional": optional}).encode()


async def test_subkey_signatures_and_strict_payloads(write_policy: WritePolicy,
                                                     tmp_path: Path) -> None:
    """A key whose signing subkey signs (VALIDSIG names the primary), and payloads a signer
    could get wrong: each refused with the reason containers/image would give."""
    key = GPGKey.generate(tmp_path / "gnupg", "release key", subkey=True)
    try:
        manifest = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        ref = "registry.example/team/app:1.0"
        path = write_policy({"default": [signed_by(key.write_public(tmp_path / "k.asc"))]})
        cases = [
            (atomic_payload(digest, ref), None),
            (atomic_payload(digest, ref, {"timestamp": 1700000000}), None),
            (atomic_payload(digest, ref, None), "optional must be an object"),
            (atomic_payload(digest, ref).replace(b"atomic container", b"cosign container image"),
             "unrecognised signature type"),
            (atomic_payload("sha256:1234", ref), 'invalid docker-manifest-digest "sha256:1234"'),
            (atomic_payload(digest, ref)[:-1] + b', "extra": 1}', "unexpected ['extra']"),
        ]
        async with Verifier(load_policy(path)) as verifier:
            for payload, reason in cases:
                result = await verifier.check(ImageToVerify(ref, manifest,
                                                            simple_signatures=[key.sign(payload)]))
                assert result.accepted is (reason is None), (payload, result.message)
                if reason is not None:
                    assert reason in result.reason, (payload, result.reason)
    finally:
        key.close()


async def test_a_compressed_signature_cannot_inflate_without_bound(
        gpg_key: GPGKey, write_policy: WritePolicy, tmp_path: Path) -> None:
    bomb = gpg_key.sign(b"0" * (12 * 1024 * 1024))  # gpg compresses: a few KiB signed
    assert len(bomb) < 100_000
    path = write_policy({"default": [signed_by(gpg_key.write_public(tmp_path / "k.asc"))]})
    result = await verdict(path, "quay.io/a/b:1", b"{}", [bomb])
    assert not result.accepted
    assert result.reason == "signed content larger than allowed"

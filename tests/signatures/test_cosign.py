"""Cosign key-based signatures (``sigstoreSigned``) verified with ``cryptography``.

Debian's skopeo 1.9.3 is built with sigstore disabled (signing and verifying both fail with
"Debian-local change: sigstore disabled"), so the test signs the way cosign does: ECDSA P-256
(and RSA, Ed25519) over the payload bytes, base64 in the layer annotation, in a
``sha256-<hex>.sig`` manifest pushed to Debian's docker-registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from harness.images import Image, RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.signing import (
    COSIGN_SIMPLESIGNING,
    CosignKey,
    cosign_payload,
    cosign_signature_manifest,
)

from mirrord.errors import ConfigError, DigestMismatchError, ManifestError
from mirrord.signatures import (
    SIGNATURE_ANNOTATION,
    CosignSignature,
    ImageToVerify,
    Verifier,
    attachment_tag,
    cosign_signatures,
    load_policy,
)

pytestmark = pytest.mark.anyio
WritePolicy = Callable[[dict[str, Any]], Path]


def sigstore(key_path: Path, identity: str = "matchRepoDigestOrExact") -> dict[str, Any]:
    return {"type": "sigstoreSigned", "keyPath": str(key_path),
            "signedIdentity": {"type": identity}}


async def check(policy: Path, ref: str, manifest: bytes, sigs: list[CosignSignature]) -> Any:
    async with Verifier(load_policy(policy)) as verifier:
        return await verifier.check(ImageToVerify(ref, manifest, cosign_signatures=sigs))


def push_signature(client: RegistryHTTP, image: Image, layers: list[tuple[bytes, str, str]],
                   ) -> bytes:
    """Push a `.sig` manifest for `image`; layers are (payload, base64 sig, media type)."""
    raw, blobs = cosign_signature_manifest(
        [(p, {SIGNATURE_ANNOTATION: s} if s else {}, m) for p, s, m in layers])
    for digest, blob in blobs.items():
        client.upload_blob(image.repo, blob, digest)
    client.put_manifest(image.repo, attachment_tag(image.digest), raw,
                        "application/vnd.oci.image.manifest.v1+json")
    return raw


async def signatures_from_registry(client: RegistryHTTP, image: Image) -> list[CosignSignature]:
    fetched = await anyio.to_thread.run_sync(client.get_manifest, image.repo,
                                             attachment_tag(image.digest))

    async def get_blob(digest: str, size: int) -> bytes:
        return await anyio.to_thread.run_sync(client.get_blob, image.repo, digest)

    return await cosign_signatures(fetched.raw, get_blob)


async def test_cosign_signature_from_the_registry_verifies(
        mirror_registry: RegistryProcess, mirror_client: RegistryHTTP, repo_name: str,
        write_policy: WritePolicy, tmp_path: Path) -> None:
    image = push_image(mirror_client, repo_name, "1.0", seed=repo_name)
    key, other = CosignKey.generate(tmp_path / "k"), CosignKey.generate(tmp_path / "o")
    ref = f"{mirror_registry.host}/{repo_name}:1.0"
    payload = cosign_payload(image.digest, ref)
    push_signature(mirror_client, image, [(payload, key.sign(payload), COSIGN_SIMPLESIGNING)])

    sigs = await signatures_from_registry(mirror_client, image)
    assert [s.payload for s in sigs] == [payload]
    good = write_policy({"default": [sigstore(key.public_path)]})
    result = await check(good, ref, image.raw, sigs)
    assert result.accepted, result.message
    bad = write_policy({"default": [sigstore(other.public_path)]})
    result = await check(bad, ref, image.raw, sigs)
    assert not result.accepted
    assert result.reason == "cryptographic signature verification failed with every key"
    assert result.requirement == f"sigstoreSigned keyPath {other.public_path}"


async def test_digest_identity_and_payload_checks(write_policy: WritePolicy,
                                                  tmp_path: Path) -> None:
    key = CosignKey.generate(tmp_path / "k")
    manifest = b'{"schemaVersion":2}'
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    other_digest = "sha256:" + "0" * 64
    ref = "registry.example/team/app:1.0"
    policy = write_policy({"default": [sigstore(key.public_path)]})

    def signed(payload: bytes) -> CosignSignature:
        return CosignSignature(payload, key.sign(payload))

    cases = [
        (cosign_payload(digest, ref), None),
        (cosign_payload(digest, ref, {"creator": "cosign", "timestamp": 1700000000}), None),
        (cosign_payload(other_digest, ref), f"Signature for digest {other_digest} does not match"),
        (cosign_payload(digest, "registry.example/team/app:2.0"),
         "Signature for identity 'registry.example/team/app:2.0' is not accepted"),
        (cosign_payload(digest, ref, {"timestamp": 1.5}), "optional.timestamp is not an integer"),
        (cosign_payload(digest, ref).replace(b"cosign container image", b"atomic container"),
         'unrecognised signature type "atomic container signature"'),
        (b'{"critical":{},"critical":{}}', 'duplicate key "critical"'),
    ]
    for payload, reason in cases:
        result = await check(policy, ref, manifest, [signed(payload)])
        assert result.accepted is (reason is None), (payload, result.message)
        if reason is not None:
            assert reason in result.reason, (payload, result.reason)

    # a signature over other bytes than the payload, no annotation, a non-signature layer
    payload = cosign_payload(digest, ref)
    forged = CosignSignature(payload.replace(b"1.0", b"1.1"), key.sign(payload))
    assert "verification failed" in (await check(policy, ref, manifest, [forged])).reason
    unsigned = CosignSignature(payload, "")
    assert (await check(policy, ref, manifest, [unsigned])).reason == (
        f"missing {SIGNATURE_ANNOTATION} annotation")
    attestation = CosignSignature(b"{}", "", "application/vnd.dsse.envelope.v1+json")
    assert (await check(policy, ref, manifest, [attestation])).reason == (
        "A signature was required, but no signature exists (1 sigstore non-signature "
        "attachments)")


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
async def test_rsa_and_ed25519_keys(kind: str, write_policy: WritePolicy, tmp_path: Path) -> None:
    manifest = b'{"schemaVersion":2,"x":1}'
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    payload = cosign_payload(digest, "quay.io/org/app:1")
    if kind == "rsa":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signature = private.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
        signature = private.sign(payload)
    pub = tmp_path / f"{kind}.pub"
    pub.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    key_data = {"type": "sigstoreSigned", "signedIdentity": {"type": "matchExact"},
                "keyData": base64.b64encode(pub.read_bytes()).decode()}
    sig = CosignSignature(payload, base64.b64encode(signature).decode())
    for req in (sigstore(pub, "matchExact"), key_data):
        result = await check(write_policy({"default": [req]}), "quay.io/org/app:1", manifest, [sig])
        assert result.accepted, result.message
    # One bit of R flipped (an Ed25519 signature's last byte is below 0x10, so setting it to
    # 0 left it unchanged one time in 16).
    broken = CosignSignature(payload, base64.b64encode(bytes([signature[0] ^ 1]) + signature[1:])
                             .decode())
    result = await check(write_policy({"default": [key_data]}), "quay.io/org/app:1", manifest,
                         [broken])
    assert not result.accepted


async def test_cosign_signatures_checks_the_attachment(tmp_path: Path) -> None:
    payload = b'{"critical":{}}'
    raw, blobs = cosign_signature_manifest([(payload, {SIGNATURE_ANNOTATION: "c2ln"},
                                             COSIGN_SIMPLESIGNING)])

    async def honest(digest: str, size: int) -> bytes:
        return blobs[digest]

    async def lying(digest: str, size: int) -> bytes:
        return payload + b" "

    assert await cosign_signatures(raw, honest) == [CosignSignature(payload, "c2ln")]
    with pytest.raises(DigestMismatchError):
        await cosign_signatures(raw, lying)
    doc = json.loads(raw)
    doc["layers"] = doc["layers"] * 129
    with pytest.raises(ManifestError, match="129 layers"):
        await cosign_signatures(json.dumps(doc).encode(), honest)
    doc["layers"] = [{**doc["layers"][0], "size": 5 * 1024 * 1024}]
    with pytest.raises(ManifestError, match="size"):
        await cosign_signatures(json.dumps(doc).encode(), honest)
    with pytest.raises(ManifestError):
        await cosign_signatures(b"[]", honest)


def test_sigstore_policy_refuses_what_is_not_verified(write_policy: WritePolicy,
                                                      tmp_path: Path) -> None:
    key = CosignKey.generate(tmp_path / "k")
    fulcio = {"type": "sigstoreSigned", "fulcio": {"caPath": "/x", "oidcIssuer": "https://i",
                                                   "subjectEmail": "a@b"},
              "rekorPublicKeyPath": "/r", "signedIdentity": {"type": "matchRepository"}}
    with pytest.raises(ConfigError, match=r"default\[0\]\.fulcio: fulcio is not supported"):
        load_policy(write_policy({"default": [fulcio]}))
    rekor = {**sigstore(key.public_path), "rekorPublicKeyPath": str(key.public_path)}
    with pytest.raises(ConfigError, match="rekorPublicKeyPath is not supported"):
        load_policy(write_policy({"default": [rekor]}))
    no_identity = {"type": "sigstoreSigned", "keyPath": str(key.public_path)}
    with pytest.raises(ConfigError, match=r"default\[0\]\.signedIdentity: missing"):
        load_policy(write_policy({"default": [no_identity]}))
    gpg_as_pem = tmp_path / "not-pem"
    gpg_as_pem.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_policy(write_policy({"default": [sigstore(gpg_as_pem)]}))

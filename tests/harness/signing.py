"""Signing for tests with real tools: GnuPG keys, cosign keys, skopeo signing, a lookaside server.

    key = GPGKey.generate(tmp_path / "gnupg", "Test Signer")   # ed25519, no passphrase
    skopeo_sign(src, dest, workdir, gpg=key, staging=dir)     # skopeo copy --sign-by
    cosign = CosignKey.generate(tmp_path / "cosign")          # ECDSA P-256, cosign.pub
    sig = cosign.sign(cosign_payload(digest, reference))      # what cosign puts in the layer
    with StaticServer(directory) as server: server.url        # serves files over http

`GPGKey.close()` stops the gpg-agent that signing starts in its home (the fixture does it).
This module does not import mirrord.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["COSIGN_SIMPLESIGNING", "CosignKey", "GPGKey", "StaticServer", "cosign_payload",
           "cosign_signature_manifest", "skopeo_sign"]


def _gpg(home: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
                          input=input, capture_output=True, check=True, timeout=60)


@dataclass
class GPGKey:
    """A secret key in its own GnuPG home. `public` is the ASCII-armoured public key."""

    home: Path
    fingerprint: str
    public: bytes = field(repr=False)

    @classmethod
    def generate(cls, home: Path, name: str = "mirrord test signer", *,
                 subkey: bool = False) -> GPGKey:
        """`subkey`: the primary key only certifies, a subkey signs (as release keys do)."""
        home.mkdir(mode=0o700, parents=True)
        usage = ("Key-Usage: cert\nSubkey-Type: eddsa\nSubkey-Curve: ed25519\n"
                 "Subkey-Usage: sign\n") if subkey else "Key-Usage: sign\n"
        spec = (f"%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\n{usage}"
                f"Name-Real: {name}\nName-Email: signer@example.invalid\nExpire-Date: 0\n"
                f"%commit\n").encode()
        _gpg(home, "--generate-key", input=spec)
        listing = _gpg(home, "--with-colons", "--list-secret-keys").stdout.decode()
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        public = _gpg(home, "--armor", "--export", fpr).stdout
        return cls(home, fpr, public)

    def write_public(self, path: Path) -> Path:
        path.write_bytes(self.public)
        return path

    def sign(self, data: bytes) -> bytes:
        """A binary OpenPGP signed message (what simple signing stores) holding `data`."""
        return _gpg(self.home, "--sign", "--local-user", self.fingerprint, "--output", "-",
                    input=data).stdout

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"],
                       capture_output=True, check=False, timeout=30)


@dataclass
class CosignKey:
    """An ECDSA P-256 key pair as cosign uses it; `public_path` holds the PEM public key.

    (Debian's skopeo 1.9.3 is built with sigstore signing disabled, so the test signs the
    way cosign does, with this key: ECDSA-SHA256 over the payload bytes, DER, base64.)
    """

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    public_path: Path

    @classmethod
    def generate(cls, directory: Path) -> CosignKey:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        public = directory / "cosign.pub"
        public.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return cls(key, public)

    @property
    def public_pem(self) -> bytes:
        return self.public_path.read_bytes()

    def sign(self, payload: bytes) -> str:
        """The base64 signature cosign puts in the layer annotation: ECDSA-SHA256, DER."""
        return base64.b64encode(self.private_key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()


def cosign_payload(digest: str, reference: str, optional: Any = None) -> bytes:
    """A payload the way cosign writes it (`optional: null` unless annotations are given)."""
    doc = {"critical": {"identity": {"docker-reference": reference},
                        "image": {"docker-manifest-digest": digest},
                        "type": "cosign container image signature"},
           "optional": optional}
    return json.dumps(doc, separators=(",", ":")).encode()


def skopeo_sign(src: str, dest: str, workdir: Path, *, gpg: GPGKey, staging: Path,
                identity: str | None = None) -> None:
    """`skopeo copy --sign-by` from docker://src to docker://dest (plain-http registries):
    the simple signature is written under `staging` (dest host's lookaside-staging)."""
    dest_host = dest.split("/")[0]
    section: dict[str, Any] = {"lookaside-staging": staging.as_uri()}
    regd = workdir / "registries.d"
    regd.mkdir(parents=True, exist_ok=True)
    (regd / "sign.yaml").write_text(yaml.safe_dump({"docker": {dest_host: section}}))
    cmd = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
           "--registries.d", str(regd), "--policy", str(_accept_anything(workdir))]
    env = {**os.environ, "GNUPGHOME": str(gpg.home)}
    cmd += ["--sign-by", gpg.fingerprint]
    if identity is not None:
        cmd += ["--sign-identity", identity]
    cmd += [f"docker://{src}", f"docker://{dest}"]
    done = subprocess.run(cmd, capture_output=True, env=env, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"skopeo copy failed: {done.stderr.decode(errors='replace')}")


def _accept_anything(workdir: Path) -> Path:
    path = workdir / "accept-anything.json"
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


class StaticServer:
    """Serves `directory` over http on 127.0.0.1 (404 for what is missing). `fail_next` is a
    list of statuses to answer the next requests with (a broken lookaside); `requests` the
    paths asked for, with whether an Authorization header came along."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fail_next: list[int] = []
        self.requests: list[tuple[str, bool]] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                server.requests.append((self.path, "Authorization" in self.headers))
                if server.fail_next:
                    self.send_error(server.fail_next.pop(0))
                    return
                super().do_GET()

        handler = partial(Handler, directory=str(directory))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> StaticServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def cosign_signature_manifest(
        layers: list[tuple[bytes, dict[str, str], str]]) -> tuple[bytes, dict[str, bytes]]:
    """A cosign `.sig` manifest over `layers` ((payload, annotations, media type) each), the
    way cosign writes it (OCI image manifest, a config naming the payloads); returns the
    manifest bytes and the blobs (digest -> bytes) to push first."""
    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    config = json.dumps({"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z",
                         "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                         "rootfs": {"type": "layers",
                                    "diff_ids": [digest(p) for p, _, _ in layers]}}).encode()
    blobs = {digest(config): config}
    descs = []
    for payload, notes, media_type in layers:
        blobs[digest(payload)] = payload
        descs.append({"mediaType": media_type, "size": len(payload), "digest": digest(payload),
                      "annotations": notes})
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "size": len(config), "digest": digest(config)},
           "layers": descs}
    return json.dumps(doc).encode(), blobs

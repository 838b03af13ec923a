"""Lookasides: mirrord's client against hostile servers, its writer, and real skopeo reading
what the writer laid out (through a registries.d mirrord generated)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness.images import push
from harness.registry import RegistryProcess
from harness.signing import GPGKey, StaticServer

from mirrord.errors import ConfigError, InvalidReferenceError, LookasideError
from mirrord.signatures import (
    BUILTIN_LOOKASIDES,
    ImageToVerify,
    LookasideClient,
    LookasideDir,
    RegistriesDEntry,
    Verifier,
    builtin_lookaside,
    parse_policy,
    registries_d_document,
)

from .conftest import SignedImage

pytestmark = pytest.mark.anyio
DIGEST = "sha256:" + "ab" * 32
SIG = b"\xa3\x01" + b"x" * 30  # starts like a compressed OpenPGP message


def lay_out(root: Path, repository: str, digest: str, blobs: list[bytes]) -> Path:
    where = root / f"{repository}@sha256={digest.removeprefix('sha256:')}"
    where.mkdir(parents=True)
    for i, blob in enumerate(blobs, 1):
        (where / f"signature-{i}").write_bytes(blob)
    return where


async def test_fetch_over_http_and_file_until_missing(tmp_path: Path) -> None:
    blobs = [SIG + b"1", SIG + b"2", SIG + b"3"]
    lay_out(tmp_path, "ns/app", DIGEST, blobs)
    with StaticServer(tmp_path) as server:
        async with LookasideClient() as client:
            assert await client.fetch(server.url, "ns/app", DIGEST) == blobs
            assert await client.fetch(server.url + "/", "ns/app", DIGEST, start=3) == blobs[2:]
            assert await client.fetch(server.url, "ns/other", DIGEST) == []
            assert await client.fetch(tmp_path.as_uri(), "ns/app", DIGEST) == blobs
            assert await client.fetch(tmp_path.as_uri(), "ns/none", DIGEST) == []
    assert [p for p, _ in server.requests][-1].endswith("/ns/other@sha256=" + "ab" * 32
                                                        + "/signature-1")
    assert not any(auth for _, auth in server.requests)


async def test_server_errors_are_temporary_and_bad_content_permanent(tmp_path: Path) -> None:
    lay_out(tmp_path, "ns/app", DIGEST, [SIG, b"<html>login</html>"])
    lay_out(tmp_path, "ns/many", DIGEST, [SIG + bytes([i]) for i in range(5)])
    lay_out(tmp_path, "ns/big", DIGEST, [SIG + b"x" * 5000])
    with StaticServer(tmp_path) as server:
        async with LookasideClient(max_signatures=4, max_size=4096) as client:
            for status in (500, 403, 429):
                server.fail_next = [status]
                with pytest.raises(LookasideError, match=f"HTTP {status}") as caught:
                    await client.fetch(server.url, "ns/app", DIGEST)
                assert caught.value.temporary
            with pytest.raises(LookasideError, match="not a simple-signing signature") as caught:
                await client.fetch(server.url, "ns/app", DIGEST)
            assert not caught.value.temporary
            with pytest.raises(LookasideError, match="more than 4 signatures") as caught:
                await client.fetch(server.url, "ns/many", DIGEST)
            assert not caught.value.temporary
            for base in (server.url, tmp_path.as_uri()):
                with pytest.raises(LookasideError, match="larger than") as caught:
                    await client.fetch(base, "ns/big", DIGEST)
                assert not caught.value.temporary
            with pytest.raises(LookasideError) as caught:  # nobody listens there
                await client.fetch("http://127.0.0.1:9", "ns/app", DIGEST)
            assert caught.value.temporary and caught.value.reason == "SignatureUnavailable"


@pytest.mark.parametrize(("base", "repository", "digest", "error"), [
    ("ftp://example.com/x", "ns/app", DIGEST, ConfigError),
    ("https://user:secret@example.com/x", "ns/app", DIGEST, ConfigError),
    ("https://example.com/x?token=1", "ns/app", DIGEST, ConfigError),
    ("file://otherhost/x", "ns/app", DIGEST, ConfigError),
    ("https://example.com", "../etc", DIGEST, InvalidReferenceError),
    ("https://example.com", "ns/../../x", DIGEST, InvalidReferenceError),
    ("https://example.com", "/abs", DIGEST, InvalidReferenceError),
    ("https://example.com", "ns/app", "sha256:../../x", InvalidReferenceError),
    ("https://example.com", "ns/app", "sha512:" + "a" * 128, InvalidReferenceError),
])
async def test_bad_names_are_refused_before_any_request(
        base: str, repository: str, digest: str, error: type[Exception]) -> None:
    async with LookasideClient() as client:
        with pytest.raises(error) as caught:
            await client.fetch(base, repository, digest)
    assert "secret" not in str(caught.value)


def test_builtin_lookasides_for_red_hat() -> None:
    assert builtin_lookaside("registry.redhat.io") == "https://registry.redhat.io/containers/sigstore"
    assert builtin_lookaside("Registry.Access.RedHat.com") == (
        "https://access.redhat.com/webassets/docker/content/sigstore")
    assert builtin_lookaside("quay.io") is None
    assert len(BUILTIN_LOOKASIDES) == 2


async def test_writer_appends_new_signatures_only(tmp_path: Path) -> None:
    store = LookasideDir(tmp_path / "sigstore")
    assert await store.read("prefix/ns/app", DIGEST) == []
    assert await store.add("prefix/ns/app", DIGEST, [SIG + b"1", SIG + b"2"]) == 2
    assert await store.add("prefix/ns/app", DIGEST, [SIG + b"2", SIG + b"1"]) == 0
    assert await store.add("prefix/ns/app", DIGEST, [SIG + b"3", SIG + b"1", SIG + b"3"]) == 1
    where = tmp_path / "sigstore" / f"prefix/ns/app@sha256={'ab' * 32}"
    assert sorted(p.name for p in where.iterdir()) == ["signature-1", "signature-2",
                                                       "signature-3"]
    assert (where / "signature-3").read_bytes() == SIG + b"3"
    assert await store.read("prefix/ns/app", DIGEST) == [SIG + b"1", SIG + b"2", SIG + b"3"]
    with pytest.raises(InvalidReferenceError):
        await store.add("../escape", DIGEST, [SIG])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sigstore"]


async def test_concurrent_writers_never_lose_or_duplicate(tmp_path: Path) -> None:
    store = LookasideDir(tmp_path)
    blobs = [SIG + bytes([i]) for i in range(12)]
    async with anyio.create_task_group() as tg:
        for i in range(7):  # overlapping sets, racing for the same numbers
            tg.start_soon(store.add, "ns/app", DIGEST, blobs[i:i + 6])
    stored = await store.read("ns/app", DIGEST)
    assert sorted(stored) == sorted(blobs) and len(stored) == len(blobs)
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_registries_d_document_is_stable_and_validated() -> None:
    entries = [RegistriesDEntry("mirror:5000/b", "http://mirror:8080/sigstore/", True),
               RegistriesDEntry("mirror:5000/a", use_sigstore_attachments=True),
               RegistriesDEntry("mirror:5000/b", "http://mirror:8080/sigstore/", True)]
    text = registries_d_document(entries)
    assert text == registries_d_document(reversed(entries))
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert body == ("docker:\n"
                    "  mirror:5000/a:\n"
                    "    use-sigstore-attachments: true\n"
                    "  mirror:5000/b:\n"
                    "    lookaside: http://mirror:8080/sigstore\n"
                    "    sigstore: http://mirror:8080/sigstore\n"
                    "    use-sigstore-attachments: true")
    for bad in ([RegistriesDEntry("mirror:5000/b", "http://x"), RegistriesDEntry("mirror:5000/b",
                                                                                 "http://y")],
                [RegistriesDEntry("http://mirror", "http://x")],
                [RegistriesDEntry("mirror", None, False)],
                [RegistriesDEntry("mirror", "https://u:p@x")]):
        with pytest.raises(ConfigError):
            registries_d_document(bad)


def skopeo_pull(ref: str, policy: dict[str, Any], registries_d: Path, out: Path,
                ) -> subprocess.CompletedProcess[str]:
    policy_path = out.parent / f"{out.name}-policy.json"
    policy_path.write_text(json.dumps(policy))
    return subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                           "--policy", str(policy_path), "--registries.d", str(registries_d),
                           f"docker://{ref}", f"dir:{out}"],
                          capture_output=True, text=True, timeout=120, check=False)


async def test_skopeo_accepts_what_the_writer_laid_out(
        signed_image: SignedImage, gpg_key: GPGKey, registry_factory: Callable[..., Any],
        tmp_path: Path) -> None:
    """The mirror: mirrord fetches the source's signature, writes it to its lookaside for the
    mirror repository, registries.d says where; skopeo pulls from the mirror and accepts it
    under signedBy + remapIdentity — and refuses when the lookaside has nothing."""
    mirror: RegistryProcess = registry_factory()
    mirror_repo = f"mirror/{signed_image.repository}"
    with mirror.client() as client:
        push(client, signed_image.image.with_repo(mirror_repo, "1.0"))
    sigstore = tmp_path / "sigstore"
    with StaticServer(signed_image.staging) as source_lookaside:
        async with LookasideClient() as lookaside:
            blobs = await lookaside.fetch(source_lookaside.url, signed_image.repository,
                                          signed_image.image.digest)
    assert await LookasideDir(sigstore).add(mirror_repo, signed_image.image.digest, blobs) == 1

    key = gpg_key.write_public(tmp_path / "key.asc")
    source_prefix = f"{signed_image.registry.host}/{signed_image.repository}"
    remap = {"type": "remapIdentity", "prefix": f"{mirror.host}/{mirror_repo}",
             "signedPrefix": source_prefix}
    policy = {"default": [{"type": "reject"}], "transports": {"docker": {mirror.host: [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key), "signedIdentity": remap}]}}}
    mirror_ref = f"{mirror.host}/{mirror_repo}:1.0"
    with StaticServer(sigstore) as served:
        regd = tmp_path / "registries.d"
        regd.mkdir()
        (regd / "mirrord.yaml").write_text(
            registries_d_document([RegistriesDEntry(mirror.host, served.url)]))
        done = await anyio.to_thread.run_sync(skopeo_pull, mirror_ref, policy, regd,
                                              tmp_path / "pulled")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "pulled" / "manifest.json").read_bytes() == signed_image.image.raw

        # mirrord's own verifier agrees, on the same layout
        async with LookasideClient() as lookaside:
            stored = await lookaside.fetch(served.url, mirror_repo, signed_image.image.digest)
    async with Verifier(parse_policy(json.dumps(policy))) as verifier:
        verdict = await verifier.check(ImageToVerify(mirror_ref, signed_image.image.raw,
                                                     simple_signatures=stored))
    assert verdict.accepted, verdict.message

    empty = tmp_path / "empty"
    empty.mkdir()
    with StaticServer(empty) as served:
        (regd / "mirrord.yaml").write_text(
            registries_d_document([RegistriesDEntry(mirror.host, served.url)]))
        done = await anyio.to_thread.run_sync(skopeo_pull, mirror_ref, policy, regd,
                                              tmp_path / "refused")
    assert done.returncode != 0
    assert "A signature was required, but no signature exists" in done.stderr


"""Parsing containers-policy.json(5) strictly, and scope lookup as containers/image does it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mirrord.errors import ConfigError, InvalidReferenceError
from mirrord.signatures import (
    ExactReference,
    InsecureAcceptAnything,
    MatchRepoDigestOrExact,
    Reject,
    RemapIdentity,
    SignedBy,
    load_policy,
    parse_policy,
)

WritePolicy = Callable[[dict[str, Any]], Path]
ACCEPT = [{"type": "insecureAcceptAnything"}]
REJECT = [{"type": "reject"}]


def scopes(*names: str) -> Any:
    """A policy whose docker scopes each reject, labelled by name; default accepts."""
    return parse_policy(json.dumps({"default": ACCEPT, "transports": {"docker": {
        name: [{"type": "reject"}] for name in names}}}))


@pytest.mark.parametrize(("reference", "present", "expected"), [
    # most specific first: identity, repository, namespaces, host, wildcards, "", default
    ("quay.io/org/team/app:1", ["quay.io/org/team/app:1", "quay.io/org/team/app", "quay.io"],
     'transports.docker["quay.io/org/team/app:1"]'),
    ("quay.io/org/team/app:1", ["quay.io/org/team/app", "quay.io/org", "quay.io"],
     'transports.docker["quay.io/org/team/app"]'),
    ("quay.io/org/team/app:1", ["quay.io/org/team", "quay.io/org", "quay.io"],
     'transports.docker["quay.io/org/team"]'),
    ("quay.io/org/team/app:1", ["quay.io/org", "quay.io", ""], 'transports.docker["quay.io/org"]'),
    ("quay.io/org/app:2", ["quay.io/org/app:1", "quay.io"], 'transports.docker["quay.io"]'),
    ("a.b.example.com:5000/x/y:1", ["*.example.com", "*.com", "a.b.example.com:5000"],
     'transports.docker["a.b.example.com:5000"]'),
    ("a.b.example.com:5000/x/y:1", ["*.com", "*.example.com", "*.b.example.com"],
     'transports.docker["*.b.example.com"]'),
    ("a.b.example.com/x/y:1", ["*.com", ""], 'transports.docker["*.com"]'),
    ("quay.io/org/app:1", ["", "quay.io/other"], 'transports.docker[""]'),
    ("quay.io/org/app:1", ["quay.io/org/ap", "quay.io/or"], "default"),
    ("busybox:1", ["docker.io/library/busybox"], 'transports.docker["docker.io/library/busybox"]'),
    (f"quay.io/org/app@sha256:{'a' * 64}", [f"quay.io/org/app@sha256:{'a' * 64}", "quay.io"],
     f'transports.docker["quay.io/org/app@sha256:{"a" * 64}"]'),
])
def test_scope_lookup_order(reference: str, present: list[str], expected: str) -> None:
    assert scopes(*present).scope_for(reference).label == expected


def test_scope_needs_a_tag_or_a_digest_not_both() -> None:
    policy = scopes("quay.io")
    with pytest.raises(InvalidReferenceError):
        policy.scope_for(f"quay.io/org/app:1@sha256:{'a' * 64}")
    with pytest.raises(InvalidReferenceError):
        policy.scope_for("quay.io/org/app")


def test_a_full_policy_parses_into_values(write_policy: WritePolicy, tmp_path: Path) -> None:
    key = tmp_path / "key.gpg"
    key.write_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n")
    doc = {
        "default": REJECT,
        "transports": {
            "docker": {
                "registry.redhat.io": [{"type": "signedBy", "keyType": "GPGKeys",
                                        "keyPath": str(key)}],
                "mirror:5000/rh": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key),
                                    "signedIdentity": {"type": "remapIdentity",
                                                       "prefix": "mirror:5000/rh",
                                                       "signedPrefix": "registry.redhat.io"}}],
                "quay.io/pinned": [{"type": "signedBy", "keyType": "GPGKeys",
                                    "keyPath": str(key),
                                    "signedIdentity": {"type": "exactReference",
                                                       "dockerReference": "quay.io/x:1"}}],
                "": ACCEPT,
            },
            "docker-daemon": {"": ACCEPT},
            "atomic": {"whatever": REJECT},
        },
    }
    policy = load_policy(write_policy(doc))
    assert policy.default == (Reject(),)
    assert policy.transports == ("docker", "docker-daemon", "atomic")
    rh = policy.docker["registry.redhat.io"][0]
    assert isinstance(rh, SignedBy)
    assert rh.keys == (key.read_bytes(),) and rh.sources == (f"keyPath {key}",)
    assert rh.signed_identity == MatchRepoDigestOrExact()
    mirror = policy.docker["mirror:5000/rh"][0]
    assert isinstance(mirror, SignedBy)
    assert mirror.signed_identity == RemapIdentity("mirror:5000/rh", "registry.redhat.io")
    pinned = policy.docker["quay.io/pinned"][0]
    assert isinstance(pinned, SignedBy)
    assert pinned.signed_identity == ExactReference("quay.io/x:1")
    assert policy.docker[""] == (InsecureAcceptAnything(),)
    assert policy.scope_for("registry.redhat.io/ubi9/ubi:latest").signature_kinds == {
        "simple-signing"}
    assert policy.scope_for("quay.io/other:1").signature_kinds == frozenset()


def test_podman_default_policy_loads() -> None:
    policy = load_policy("/etc/containers/policy.json")
    assert policy.scope_for("quay.io/a:1").requirements == (InsecureAcceptAnything(),)


@pytest.mark.parametrize(("doc", "where", "message"), [
    ({}, "default", "missing"),
    ({"default": []}, "default", "must not be empty"),
    ({"default": ACCEPT, "extra": 1}, "extra", "unknown field"),
    ({"default": [{"type": "signedby"}]}, "default[0].type", 'unknown requirement type "signedby"'),
    ({"default": [{"type": "reject", "x": 1}]}, "default[0].x", "unknown field"),
    ({"default": ACCEPT, "transports": {"docker": {"quay.io": "reject"}}},
     'transports.docker["quay.io"]', "must be a list"),
    ({"default": ACCEPT, "transports": {"docker": {"docker://quay.io": REJECT}}},
     'transports.docker["docker://quay.io"]', "without a transport prefix"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}, "default[0]",
     "exactly one of keyPath, keyPaths, keyData must be given"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a",
                   "keyData": "eA=="}]}, "default[0]", "not keyPath and keyData"),
    ({"default": [{"type": "signedBy", "keyType": "X509Certificates", "keyData": "eA=="}]},
     "default[0].keyType", 'keyType "X509Certificates" is not supported'),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "!!"}]},
     "default[0].keyData", "keyData must be base64"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "relative/key.gpg"}]},
     "default[0].keyPath", "a key path must be absolute"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent/k"}]},
     "default[0].keyPath", "cannot open /nonexistent/k"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": []}]},
     "default[0].keyPaths", "must be a non-empty list"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "eA==",
                   "signedIdentity": {"type": "exactReference", "dockerReference": "quay.io/x"}}]},
     "default[0].signedIdentity.dockerReference", "has neither tag nor digest"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "eA==",
                   "signedIdentity": {"type": "remapIdentity", "prefix": "quay.io/x:1",
                                      "signedPrefix": "a.b"}}]},
     "default[0].signedIdentity.prefix", "is not a host[:port] or host[:port]/path prefix"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "eA==",
                   "signedIdentity": {"type": "matchAnything"}}]},
     "default[0].signedIdentity.type", 'unknown signedIdentity type "matchAnything"'),
    ({"default": [{"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchExact"}}]},
     "default[0].type", "signedBaseLayer is not supported"),
])
def test_invalid_policies_name_the_file_and_json_path(
        write_policy: WritePolicy, doc: dict[str, Any], where: str, message: str) -> None:
    path = write_policy(doc)
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    assert caught.value.file == str(path)
    assert caught.value.key == where
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}: {where}: ")


@pytest.mark.parametrize(("text", "message"), [
    ('{"default": [{"type": "reject"}], "default": []}', 'duplicate key "default"'),
    ('{"default": [{"type": "reject"}]', "invalid JSON"),
    ('{"default": NaN}', "NaN is not JSON"),
    ("[]", "must be a JSON object"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_malformed_json_is_a_clear_error(text: str | bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy(text, source="p.json")


def test_policy_file_must_be_a_bounded_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_policy(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):  # and does not hang
        load_policy(fifo)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (1024 * 1024 + 1))
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_policy(big)
    with pytest.raises(ConfigError, match="cannot open"):
        load_policy(tmp_path / "missing.json")

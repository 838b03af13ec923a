"""Parse containers-policy.json(5) strictly, the way containers/image ``policy_config.go`` does.

Unknown fields, duplicate keys, wrong types and empty requirement lists are errors (a typo in
a security policy must not silently weaken it). Every error is a :class:`ConfigError` naming
the file and the JSON path (``transports.docker["quay.io/org"][0].keyPath``).

What mirrord cannot evaluate is refused here, at load time, rather than rejecting every image
later: ``signedBy`` with a ``keyType`` other than ``GPGKeys``, ``signedBaseLayer``, and
``sigstoreSigned`` with ``fulcio``, ``pki`` or Rekor keys (only cosign key-based signatures are
verified). Key files must be absolute paths; each is read here (at most 1 MiB, regular file).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from mirrord.core.reference import parse
from mirrord.errors import ConfigError, InvalidReferenceError

from ._cosign import load_public_key
from ._files import FileProblem, MiB, read_bounded
from ._identity import (
    ExactReference,
    ExactRepository,
    IdentityRule,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
    valid_remap_prefix,
)
from ._policy import InsecureAcceptAnything, Policy, Reject, Requirement, SignedBy, SigstoreSigned

MAX_POLICY_SIZE = 1 * MiB
MAX_KEY_SIZE = 1 * MiB
_UNSUPPORTED_SIGSTORE = ("fulcio", "pki", "rekorPublicKeyPath", "rekorPublicKeyPaths",
                         "rekorPublicKeyData", "rekorPublicKeyDatas")


class _Duplicate(ValueError):
    pass


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and parse the policy file ``path`` (a regular file of at most 1 MiB)."""
    name = os.fspath(path)
    try:
        data = read_bounded(name, MAX_POLICY_SIZE)
    except FileProblem as exc:
        raise ConfigError(f"policy file: {exc}", file=name) from None
    return parse_policy(data, source=name)


def parse_policy(data: bytes | str, *, source: str = "<policy>") -> Policy:
    """Parse policy JSON text; ``source`` names it in errors."""
    ctx = _Ctx(source)
    doc = ctx.load_json(data)
    ctx.fields(doc, "", required={"default"}, optional={"transports"})
    default = ctx.requirements(doc["default"], "default")
    transports = doc.get("transports", {})
    ctx.expect(isinstance(transports, dict), "transports", "must be an object")
    docker: dict[str, tuple[Requirement, ...]] = {}
    for transport, scopes in transports.items():
        where = f"transports.{transport}"
        ctx.expect(isinstance(scopes, dict), where, "must be an object of scopes")
        for scope, reqs in scopes.items():
            at = f"{where}[{json.dumps(scope)}]"
            if transport == "docker":
                ctx.check_docker_scope(scope, at)
            parsed = ctx.requirements(reqs, at)
            if transport == "docker":
                docker[scope] = parsed
    return Policy(source, default, MappingProxyType(docker), tuple(transports))


class _Ctx:
    """Error reporting for one file: every failure names ``source`` and a JSON path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str, line: int | None = None) -> ConfigError:
        return ConfigError(message, file=self.source, line=line, key=where or "")

    def expect(self, condition: bool, where: str, message: str) -> None:
        if not condition:
            raise self.fail(where, message)

    def load_json(self, data: bytes | str) -> dict[str, Any]:
        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in items:
                if key in out:
                    raise _Duplicate(f"duplicate key {json.dumps(key)}")
                out[key] = value
            return out

        def constant(name: str) -> Any:
            raise _Duplicate(f"{name} is not JSON")

        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            doc = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
        except UnicodeDecodeError:
            raise self.fail("", "not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise self.fail("", f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) \
                from None
        except _Duplicate as exc:
            raise self.fail("", str(exc)) from None
        if not isinstance(doc, dict):
            raise self.fail("", "the policy must be a JSON object")
        return doc

    def fields(self, obj: Any, where: str, *, required: set[str], optional: set[str]) -> None:
        self.expect(isinstance(obj, dict), where, "must be an object")
        for key in obj:
            if key not in required and key not in optional:
                raise self.fail(_join(where, key), "unknown field")
        for key in sorted(required - set(obj)):
            raise self.fail(_join(where, key), "missing")

    def string(self, obj: Mapping[str, Any], key: str, where: str) -> str:
        value = obj[key]
        self.expect(isinstance(value, str) and value != "", _join(where, key),
                    "must be a non-empty string")
        return str(value)

    def check_docker_scope(self, scope: str, where: str) -> None:
        # containers/image accepts any string; these can never match a registry reference
        # and are almost certainly a mistake (a transport prefix, stray white space).
        self.expect("://" not in scope and scope.strip() == scope and " " not in scope,
                    where, "a docker scope is host[/namespace[/repo[:tag|@digest]]] or "
                    "*.domain, without a transport prefix or white space")

    def requirements(self, value: Any, where: str) -> tuple[Requirement, ...]:
        self.expect(isinstance(value, list), where, "must be a list of requirements")
        self.expect(len(value) > 0, where, "the list of requirements must not be empty")
        return tuple(self.requirement(item, f"{where}[{i}]") for i, item in enumerate(value))

    def requirement(self, obj: Any, where: str) -> Requirement:
        self.expect(isinstance(obj, dict), where, "must be an object")
        kind = obj.get("type")
        if kind in ("insecureAcceptAnything", "reject"):
            self.fields(obj, where, required={"type"}, optional=set())
            return InsecureAcceptAnything() if kind == "insecureAcceptAnything" else Reject()
        if kind == "signedBy":
            return self.signed_by(obj, where)
        if kind == "sigstoreSigned":
            return self.sigstore_signed(obj, where)
        if kind == "signedBaseLayer":
            raise self.fail(_join(where, "type"), "signedBaseLayer is not supported (neither "
                            "containers/image nor mirrord implements it)")
        raise self.fail(_join(where, "type"), f"unknown requirement type {json.dumps(kind)}")

    def signed_by(self, obj: dict[str, Any], where: str) -> SignedBy:
        self.fields(obj, where, required={"type", "keyType"},
                    optional={"keyPath", "keyPaths", "keyData", "signedIdentity"})
        key_type = obj["keyType"]
        if key_type != "GPGKeys":
            raise self.fail(_join(where, "keyType"), f"keyType {json.dumps(key_type)} is not "
                            'supported; mirrord verifies "GPGKeys" only')
        keys, sources = self.keys(obj, where, ("keyPath", "keyPaths", "keyData"), _nonempty)
        identity = (self.identity(obj["signedIdentity"], _join(where, "signedIdentity"))
                    if "signedIdentity" in obj else MatchRepoDigestOrExact())
        return SignedBy(keys, sources, identity)

    def sigstore_signed(self, obj: dict[str, Any], where: str) -> SigstoreSigned:
        for key in _UNSUPPORTED_SIGSTORE:
            if key in obj:
                raise self.fail(_join(where, key), f"{key} is not supported: mirrord verifies "
                                "cosign key-based signatures only (keyPath, keyPaths, keyData, "
                                "keyDatas), not Fulcio certificates, PKI or Rekor")
        self.fields(obj, where, required={"type", "signedIdentity"},
                    optional={"keyPath", "keyPaths", "keyData", "keyDatas"})
        keys, sources = self.keys(obj, where, ("keyPath", "keyPaths", "keyData", "keyDatas"),
                                  load_public_key)
        identity = self.identity(obj["signedIdentity"], _join(where, "signedIdentity"))
        return SigstoreSigned(keys, sources, identity)

    def keys(self, obj: dict[str, Any], where: str, allowed: tuple[str, ...],
             check: Callable[[bytes], object]) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
        """Exactly one key source among ``allowed``; returns (key blobs, their sources)."""
        present = [k for k in allowed if k in obj]
        if len(present) != 1:
            raise self.fail(where, f"exactly one of {', '.join(allowed)} must be given"
                            + (f", not {' and '.join(present)}" if present else ""))
        key = present[0]
        at = _join(where, key)
        if key in ("keyPath", "keyData"):
            items: list[tuple[str, Any]] = [(at, obj[key])]
        else:
            values = obj[key]
            self.expect(isinstance(values, list) and len(values) > 0, at,
                        "must be a non-empty list")
            items = [(f"{at}[{i}]", v) for i, v in enumerate(values)]
        out: list[bytes] = []
        sources: list[str] = []
        for item_at, value in items:
            self.expect(isinstance(value, str) and value != "", item_at,
                        "must be a non-empty string")
            if key.startswith("keyPath"):
                data, source = self.key_file(value, item_at), f"keyPath {value}"
            else:
                data, source = self.key_data(value, item_at), "keyData"
            try:
                check(data)
            except ValueError as exc:
                raise self.fail(item_at, f"{source}: {exc}") from None
            out.append(data)
            sources.append(source)
        return tuple(out), tuple(sources)

    def key_file(self, path: str, where: str) -> bytes:
        self.expect(os.path.isabs(path), where, f"{path}: a key path must be absolute")
        try:
            return read_bounded(path, MAX_KEY_SIZE)
        except FileProblem as exc:
            raise self.fail(where, str(exc)) from None

    def key_data(self, text: str, where: str) -> bytes:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(where, "keyData must be base64") from None

    def identity(self, obj: Any, where: str) -> IdentityRule:
        self.expect(isinstance(obj, dict), where, "must be an object")
        kind = obj.get("type")
        simple: dict[str, Callable[[], IdentityRule]] = {
            "matchExact": MatchExact, "matchRepoDigestOrExact": MatchRepoDigestOrExact,
            "matchRepository": MatchRepository}
        if kind in simple:
            self.fields(obj, where, required={"type"}, optional=set())
            return simple[kind]()
        if kind == "exactReference":
            self.fields(obj, where, required={"type", "dockerReference"}, optional=set())
            text = self.string(obj, "dockerReference", where)
            ref = self.reference(text, _join(where, "dockerReference"))
            self.expect(ref.tag is not None or ref.digest is not None,
                        _join(where, "dockerReference"), f"{text} has neither tag nor digest")
            return ExactReference(text)
        if kind == "exactRepository":
            self.fields(obj, where, required={"type", "dockerRepository"}, optional=set())
            text = self.string(obj, "dockerRepository", where)
            self.reference(text, _join(where, "dockerRepository"))
            return ExactRepository(text)
        if kind == "remapIdentity":
            self.fields(obj, where, required={"type", "prefix", "signedPrefix"}, optional=set())
            prefix, signed = (self.string(obj, k, where) for k in ("prefix", "signedPrefix"))
            for key, value in (("prefix", prefix), ("signedPrefix", signed)):
                self.expect(valid_remap_prefix(value), _join(where, key),
                            f"{value!r} is not a host[:port] or host[:port]/path prefix")
            return RemapIdentity(prefix, signed)
        raise self.fail(_join(where, "type"), f"unknown signedIdentity type {json.dumps(kind)}")

    def reference(self, text: str, where: str) -> Any:
        try:
            return parse(text)
        except InvalidReferenceError as exc:
            raise self.fail(where, str(exc)) from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _nonempty(data: bytes) -> None:
    if not data.strip():
        raise ValueError("the key data is empty")

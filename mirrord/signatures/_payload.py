"""The signed payload both signature kinds carry, parsed as strictly as containers/image.

Simple signing (``atomic container signature``) and cosign (``cosign container image
signature``) share one shape::

    {"critical": {"type": ..., "image": {"docker-manifest-digest": "sha256:..."},
                  "identity": {"docker-reference": "host/repo:tag"}},
     "optional": {"creator": ..., "timestamp": ...}}

Exactly these fields in ``critical`` (no more, no fewer), no duplicate keys anywhere,
``optional`` an object (cosign may write ``null``); its ``timestamp`` must be an integer.
Parse this only from bytes whose signature has already been verified.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

SIMPLE_SIGNING_TYPE = "atomic container signature"
COSIGN_TYPE = "cosign container image signature"

_DIGEST = re.compile(r"(sha256|sha384|sha512):([a-f0-9]+)")
_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}


class PayloadError(ValueError):
    """The payload is not a well-formed signature payload; the message says what is wrong."""


@dataclass(frozen=True)
class Payload:
    """What a verified signature claims: the manifest digest and the image identity."""

    manifest_digest: str
    docker_reference: str
    creator: str | None = None
    timestamp: int | None = None


def parse_payload(data: bytes, expected_type: str) -> Payload:
    """Parse ``data`` as a payload of ``expected_type``; raises :class:`PayloadError`."""
    doc = _load(data)
    _exact(doc, "", {"critical", "optional"})
    critical = doc["critical"]
    _exact(critical, "critical", {"type", "image", "identity"})
    if critical["type"] != expected_type:
        raise PayloadError(f"unrecognised signature type {json.dumps(critical['type'])}")
    _exact(critical["image"], "critical.image", {"docker-manifest-digest"})
    _exact(critical["identity"], "critical.identity", {"docker-reference"})
    digest = critical["image"]["docker-manifest-digest"]
    reference = critical["identity"]["docker-reference"]
    if not isinstance(digest, str) or not _valid_digest(digest):
        raise PayloadError(f"invalid docker-manifest-digest {json.dumps(digest)}")
    if not isinstance(reference, str):
        raise PayloadError("critical.identity.docker-reference must be a string")
    creator, timestamp = _optional(doc["optional"], allow_null=expected_type == COSIGN_TYPE)
    return Payload(digest, reference, creator, timestamp)


def digest_matches(manifest: bytes, digest: str) -> bool:
    """manifest.MatchesDigest: ``manifest`` hashes to ``digest`` (sha256/384/512)."""
    m = _DIGEST.fullmatch(digest)
    if m is None or not _valid_digest(digest):
        return False
    actual = hashlib.new(m.group(1), manifest).hexdigest()
    return hmac.compare_digest(actual, m.group(2))


def _valid_digest(digest: str) -> bool:
    m = _DIGEST.fullmatch(digest)
    return m is not None and len(m.group(2)) == _HEX_LENGTH[m.group(1)]


def _load(data: bytes) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise PayloadError(f"duplicate key {json.dumps(key)}")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise PayloadError(f"{name} is not JSON")

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    except RecursionError:
        raise PayloadError("JSON nested too deeply") from None


def _exact(obj: Any, where: str, fields: set[str]) -> None:
    name = where or "the payload"
    if not isinstance(obj, dict):
        raise PayloadError(f"{name} must be an object")
    if set(obj) != fields:
        extra, missing = sorted(set(obj) - fields), sorted(fields - set(obj))
        detail = "; ".join(
            part for part in (f"unexpected {extra}" if extra else "",
                              f"missing {missing}" if missing else "") if part)
        raise PayloadError(f"{name}: {detail}")


def _optional(obj: Any, *, allow_null: bool) -> tuple[str | None, int | None]:
    if obj is None and allow_null:  # /usr/bin/cosign writes "optional": null
        return None, None
    if not isinstance(obj, dict):
        raise PayloadError("optional must be an object")
    creator = obj.get("creator")
    if creator is not None and not isinstance(creator, str):
        raise PayloadError("optional.creator must be a string")
    timestamp = obj.get("timestamp")
    if timestamp is not None:
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
            raise PayloadError("optional.timestamp must be a number")
        if isinstance(timestamp, float):
            if not timestamp.is_integer():
                raise PayloadError("optional.timestamp is not an integer")
            timestamp = int(timestamp)
    return creator, timestamp

"""The signature keys of the configuration: ``registries.<host>.lookaside``, ``policy``,
the streams' ``referrers``.

Only their shape is checked here (the configuration imports nothing but the core); the
policy's contents are checked by :mod:`mirrord.signatures` when a sync opens it, with the
file and key in its errors (``mirrord.yaml:12 policy: transports.docker…``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from mirrord.config._yaml import _BOOL, _At

_LOOKASIDE_HELP = "expected a file:///path, http:// or https:// URL (the signatures' lookaside)"
MAX_INLINE_POLICY = 1 << 20


def _lookaside(at: _At) -> str:
    """A lookaside base URL: ``file:///abs/path``, or http(s) with a host and no
    credentials, query or fragment (``signature-N`` paths are appended to it)."""
    value = at.text()
    try:
        parts = urlsplit(value)
    except ValueError:
        raise at.error(_LOOKASIDE_HELP) from None
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise at.error("a file:// lookaside needs an absolute path: file:///dir")
    elif parts.scheme not in ("http", "https") or not parts.hostname:
        raise at.error(_LOOKASIDE_HELP)
    if parts.username or parts.password:
        raise at.error("credentials never go in a lookaside URL (none are ever sent to one)")
    if parts.query or parts.fragment:
        raise at.error("a lookaside URL has no query or fragment")
    return value.rstrip("/")


def _policy(at: _At | None) -> dict[str, Any]:
    """``policy: FILE`` (a containers-policy.json) or the policy itself as a mapping.

    Returns the :class:`~mirrord.config.Config` fields it sets (``policy`` or
    ``policy_text``)."""
    if at is None:
        return {}
    if isinstance(at.node, yaml.ScalarNode):
        return {"policy": at.path()}
    if not isinstance(at.node, yaml.MappingNode):
        raise at.error("expected a containers-policy.json path or the policy as a mapping")
    keys = at.mapping(None)
    if "default" not in keys:
        raise at.missing("default", "the requirements of every image no scope names, e.g. "
                         "[{type: reject}]")
    try:
        doc = at.doc.loader.construct_object(at.node, deep=True)
        text = json.dumps(doc, default=str)
    except (yaml.YAMLError, TypeError, ValueError) as exc:
        raise at.error(f"the inline policy cannot be read as JSON: {exc}") from None
    if len(text) > MAX_INLINE_POLICY:
        raise at.error(f"the inline policy is larger than {MAX_INLINE_POLICY} bytes")
    return {"policy": Path(f"{at.doc.file}:{at.line}"), "policy_text": text}


#: An artifact type is a media type (RFC 6838 names), as OCI descriptors carry it.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(f"{_NAME}/{_NAME}")
MAX_REFERRER_TYPES = 32


def _referrers(at: _At) -> tuple[str, ...] | None:
    """``referrers: false`` (None: not copied), ``true`` (``()``: every artifact type), or
    the artifact types to copy (``[application/spdx+json, …]``), each a media type, once."""
    if isinstance(at.node, yaml.ScalarNode) and at.node.tag == _BOOL:
        return () if at.boolean() else None
    items = at.texts()
    if not items:
        raise at.error("expected true, false or a list of artifact types (media types)")
    if len(items) > MAX_REFERRER_TYPES:
        raise at.error(f"more than {MAX_REFERRER_TYPES} artifact types")
    seen: dict[str, int] = {}
    for item in items:
        kind = item.text()
        if not _MEDIA_TYPE.fullmatch(kind):
            raise item.error(f"{kind[:80]!r} is not an artifact type (a media type such as "
                             "application/spdx+json)")
        if kind in seen:
            raise item.error(f"artifact type {kind!r} is listed twice (also line {seen[kind]})")
        seen[kind] = item.line
    return tuple(seen)

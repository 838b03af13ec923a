"""Reading auth files: containers auth.json, OpenShift pull secrets, Docker config.json.

All three share one shape::

    {"auths": {"quay.io": {"auth": "<base64 user:password>", "email": "..."},
               "registry.example/ns": {"username": "u", "password": "p"},
               "https://index.docker.io/v1/": {"identitytoken": "..."}},
     "credHelpers": {"gcr.io": "gcloud"}, "credsStore": "desktop"}

Credential helpers are never executed: an entry that needs one is skipped. Only a
regular file of at most :data:`MAX_AUTH_FILE` bytes is read (never a FIFO or a device).
Errors name the file and the ``auths`` key, never a value from the file.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mirrord.credentials._credential import (
    TOKEN_USERNAME,
    Credential,
    candidate_keys,
    normalise_auth_key,
)
from mirrord.errors import CredentialError

log = logging.getLogger(__name__)

_STRING_FIELDS = ("auth", "username", "password", "identitytoken")
MAX_AUTH_FILE = 1 << 20  # an OpenShift pull secret is a few KiB


@dataclass(frozen=True)
class AuthDocument:
    """A parsed auth file. ``origin`` names it in errors and ``Credential.source``.

    ``auths`` maps canonical keys (see :func:`normalise_auth_key`) to the raw
    entries; those hold secrets and never show in ``repr``.
    """

    origin: str
    auths: Mapping[str, Mapping[str, object]] = field(repr=False)
    cred_helpers: Mapping[str, str] = field(default_factory=dict)
    creds_store: str | None = None

    def find(self, registry: str, repository: str = "") -> tuple[Credential | None, str]:
        """The most specific entry's credential, and a description of the outcome."""
        keys = candidate_keys(registry, repository)
        for key in keys:
            entry = self.auths.get(key)
            if entry is None:
                continue
            credential = _entry_credential(entry, key, self.origin)
            if credential is not None:
                return credential, f"used entry {key}"
            log.debug(
                "%s: entry %s holds no credential; trying less specific keys", self.origin, key
            )
        host = keys[-1]
        helper = self.cred_helpers.get(host) or self.creds_store
        if helper:
            log.debug(
                "%s: %s needs credential helper %r, which mirrord does not run",
                self.origin,
                host,
                helper,
            )
            return None, f"credential helper {helper!r} for {host} not run"
        return None, f"no entry for {keys[0]}"


def read_auth_file(path: Path, origin: str) -> AuthDocument | None:
    """Parse ``path``; None when it does not exist. Malformed: CredentialError."""
    raw = read_secret_file(path, origin)
    if raw is None:
        log.debug("%s: not found", origin)
        return None
    return parse_auth_document(decode_json(raw, origin), origin)


def read_secret_file(path: Path, origin: str, limit: int = MAX_AUTH_FILE) -> bytes | None:
    """A regular file's bytes, at most ``limit``; None when it does not exist.

    A FIFO, a device (``/dev/zero``, ``/dev/urandom``), a directory or a larger file is
    a CredentialError naming ``origin``: it is opened without blocking and never read
    past the limit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CredentialError(f"{origin}: cannot read: {why}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen: a directory fails it
        os.close(fd)
        raise CredentialError(f"{origin}: not a regular file (a FIFO, device or directory)")
    with os.fdopen(fd, "rb") as file:
        try:
            raw = file.read(limit + 1)
        except OSError as exc:
            raise CredentialError(f"{origin}: cannot read: {exc.strerror}") from None
    if len(raw) > limit:
        raise CredentialError(f"{origin}: larger than {limit >> 10} KiB; not an auth file")
    return raw


def decode_json(raw: bytes, origin: str) -> object:
    """The JSON value in ``raw``; the error quotes the position, never the text."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise CredentialError(f"{origin}: JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise CredentialError(f"{origin}: not valid UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise CredentialError(
            f"{origin}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def parse_auth_document(data: object, origin: str) -> AuthDocument:
    """Validate the shape of an auth file's JSON and canonicalise its keys."""
    if not isinstance(data, dict):
        raise CredentialError(f"{origin}: expected a JSON object at the top level")
    auths = data.get("auths", {})
    if not isinstance(auths, dict):
        raise CredentialError(f"{origin}: 'auths' must be an object")
    helpers = data.get("credHelpers", {})
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise CredentialError(f"{origin}: 'credHelpers' must map registries to helper names")
    store = data.get("credsStore")
    if store is not None and not isinstance(store, str):
        raise CredentialError(f"{origin}: 'credsStore' must be a string")
    return AuthDocument(
        origin=origin,
        auths=_canonical_auths(auths, origin),
        cred_helpers={normalise_auth_key(k): v for k, v in helpers.items()},
        creds_store=store or None,
    )


def _canonical_auths(auths: Mapping[str, object], origin: str) -> dict[str, Mapping[str, object]]:
    """Entries by canonical key; a key already canonical beats an alias of it."""
    result: dict[str, Mapping[str, object]] = {}
    exact: set[str] = set()
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise CredentialError(f"{origin}: auths[{key!r}] must be an object")
        for name in _STRING_FIELDS:
            if name in entry and not isinstance(entry[name], str):
                raise CredentialError(f"{origin}: auths[{key!r}].{name} must be a string")
        canonical = normalise_auth_key(key)
        if canonical in exact:
            continue
        if key == canonical:
            exact.add(canonical)
            result[canonical] = entry
        else:
            result.setdefault(canonical, entry)
    return result


def _entry_credential(entry: Mapping[str, object], key: str, origin: str) -> Credential | None:
    """The credential in one entry, None for an empty one (a helper's placeholder)."""
    auth = str(entry.get("auth") or "")
    token = str(entry.get("identitytoken") or "") or None
    if auth:
        username, password = _decode_basic(auth, key, origin)
        return Credential(username, password, origin, identity_token=token)
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    if bool(username) != bool(password):
        missing = "password" if username else "username"
        raise CredentialError(f"{origin}: auths[{key!r}] has no {missing}")
    if not username and token:
        username, password = TOKEN_USERNAME, token
    if not username:
        return None
    return Credential(username, password, origin, identity_token=token)


def _decode_basic(auth: str, key: str, origin: str) -> tuple[str, str]:
    """``base64(user:password)`` split on the first colon (user names may hold ``|``)."""
    text = "".join(auth.split())
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        plain = decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        raise CredentialError(f"{origin}: auths[{key!r}].auth is not valid base64") from None
    username, colon, password = plain.partition(":")
    if not colon:
        raise CredentialError(f"{origin}: auths[{key!r}].auth does not decode to user:password")
    return username, password.strip("\x00")

"""Writing auth files as ``podman login`` does: the same ``auths`` entries, atomically.

``podman login HOST`` (containers/common ``pkg/auth``) stores ``{"auth": base64(user:pass)}``
under the key ``HOST``; ``podman login HOST/PATH`` under ``HOST/PATH`` (a
repository-scoped entry, used before the host's); a URL (``https://HOST/v2/``) stands for
its host. The file is read, the one entry replaced (every other entry and top-level key
kept as it was), and written to a temporary file in the same directory, fsynced and
renamed over the original with mode 0600; missing directories are created (0700).

The default file is podman's: ``$XDG_RUNTIME_DIR/containers/auth.json``, or
``/run/containers/<uid>/auth.json`` when ``$XDG_RUNTIME_DIR`` is unset. Errors name the
file, never a value from it. Every call blocks (file I/O).
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mirrord.credentials._authfile import decode_json, read_secret_file
from mirrord.credentials._credential import normalise_auth_key
from mirrord.errors import CredentialError

# A repository path below the host: distribution's path components, no tag or digest.
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


def default_auth_file(env: Mapping[str, str] | None = None) -> Path:
    """podman's read/write auth file for this user."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if runtime := environ.get("XDG_RUNTIME_DIR"):
        return Path(runtime, "containers", "auth.json")
    return Path(f"/run/containers/{os.getuid()}/auth.json")


def login_key(registry: str) -> str:
    """The ``auths`` key ``podman login REGISTRY`` writes: ``host[:port]`` or
    ``host[:port]/path``; a URL gives its host. CredentialError for anything else."""
    text = registry.strip()
    if text.startswith(("https://", "http://")):
        text = text.split("://", 1)[1].split("/", 1)[0]
    host, sep, path = text.rstrip("/").partition("/")
    if not host or any(c in host for c in "@ "):
        raise CredentialError(f"expected a registry (host[:port][/path]), got {registry!r}")
    if sep and not all(_COMPONENT.match(part) for part in path.split("/")):
        raise CredentialError(
            f"{registry!r}: a login names a registry or a repository (host/path), "
            "without a tag or digest"
        )
    return normalise_auth_key(text)


def set_auth_entry(path: Path, key: str, username: str, password: str) -> None:
    """Store ``username``/``password`` under ``key`` in ``path`` (created when missing)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    document = _read(path)
    auths = document.setdefault("auths", {})
    auths[key] = {"auth": token}
    _write(path, document)


def remove_auth_entry(path: Path, key: str) -> bool:
    """Remove ``key`` from ``path``; for a bare host, also the legacy keys that stand for
    it (``https://index.docker.io/v1/``). False when nothing was there."""
    if not path.exists():
        return False
    document = _read(path)
    auths: dict[str, Any] = document.get("auths", {})
    gone = [k for k in auths if k == key or ("/" not in key and _legacy_alias(k) == key)]
    for k in gone:
        del auths[k]
    if gone:
        _write(path, document)
    return bool(gone)


def remove_all_auth_entries(path: Path) -> int:
    """``podman logout --all``: empty ``auths`` in ``path``; how many entries went."""
    if not path.exists():
        return 0
    document = _read(path)
    count = len(document.get("auths", {}))
    if count:
        document["auths"] = {}
        _write(path, document)
    return count


def _legacy_alias(key: str) -> str:
    """The host a URL-shaped key stands for ("" for a plain key)."""
    return normalise_auth_key(key) if "://" in key else ""


def _read(path: Path) -> dict[str, Any]:
    """The file's JSON object ({} when absent); CredentialError when it is not one."""
    origin = f"auth file {path}"
    raw = read_secret_file(path, origin)  # bounded; a FIFO or device is refused
    if raw is None:
        return {}
    if not raw.strip():
        return {}
    document = decode_json(raw, origin)
    if not isinstance(document, dict) or not isinstance(document.get("auths", {}), dict):
        raise CredentialError(f"{origin}: not an auth file (expected an object with 'auths')")
    return document


def _write(path: Path, document: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``document`` (mode 0600)."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    except OSError as exc:
        raise CredentialError(f"auth file {path}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            json.dump(document, out, indent="\t")
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise CredentialError(f"auth file {path}: cannot write: {exc.strerror}") from None
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename survives a crash
        finally:
            os.close(dir_fd)
    except OSError as exc:
        message = f"auth file {path}: written, but not synced: {exc.strerror}"
        raise CredentialError(message) from None

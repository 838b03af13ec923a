"""Fixtures for the credentials tests: a real private Secret Service, isolated lookups."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

try:  # tests/ as a package (tests/__init__.py present)
    from .secretservice import PrivateSecretService, secret_service
except ImportError:  # rootdir-less layout: pytest put this directory on sys.path
    from secretservice import PrivateSecretService, secret_service  # type: ignore[no-redef]

__all__ = ["secret_service"]

_registry_numbers = itertools.count(1)


@pytest.fixture
def clean_keyring(secret_service: PrivateSecretService) -> Iterator[PrivateSecretService]:
    """The session's Secret Service, emptied of mirrord entries after the test."""
    yield secret_service
    secret_service.clear("mirrord:")


@pytest.fixture(autouse=True)
def private_podman_auth_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """podman's auth file ($XDG_RUNTIME_DIR/containers/auth.json) under ``tmp_path``, and
    no $REGISTRY_AUTH_FILE: login/logout never touch the real user's files."""
    runtime = tmp_path / "xdg-run"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return runtime / "containers" / "auth.json"


@pytest.fixture
def registry() -> str:
    """A registry host[:port] no other test uses (keyring entries never collide)."""
    return f"registry{next(_registry_numbers)}.test:5000"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty home directory for ``env``."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """An isolated environment: only a private HOME, none of the lookup variables."""
    return {"HOME": str(home)}


def basic(username: str, password: str) -> dict[str, str]:
    """An ``auths`` entry in the pull-secret form: base64 ``user:password``."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"auth": token, "email": f"{username.split('|')[-1]}@example.com"}


@pytest.fixture
def write_auth() -> Callable[..., Path]:
    """``write_auth(path, {key: entry}, **top_level)`` writes an auth file, returns path."""

    def write(path: Path, auths: dict[str, Any], **top_level: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"auths": auths, **top_level}))
        return path

    return write


@pytest.fixture
def auth_entry() -> Callable[[str, str], dict[str, str]]:
    """``auth_entry(user, password)``: an entry in the pull-secret (base64) form."""
    return basic

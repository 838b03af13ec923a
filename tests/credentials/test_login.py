"""``login`` checks before it stores; ``logout`` forgets."""

from __future__ import annotations

import stat
from pathlib import Path

import anyio
import keyring
import keyring.backends.fail
import pytest

from mirrord.credentials import Credential, keyring_credential, login, logout, resolve_credential
from mirrord.errors import CredentialError, UnauthorizedError

pytestmark = pytest.mark.usefixtures("clean_keyring")


def test_login_stores_after_the_check_passes(registry: str) -> None:
    seen: list[tuple[Credential, Credential | None]] = []

    async def check(credential: Credential) -> None:
        # Nothing is stored while the check runs.
        seen.append((credential, keyring_credential(registry)))

    anyio.run(lambda: login(registry, "12345678|bot", "pw:1", check=check))
    ((checked, stored_during_check),) = seen
    assert (checked.username, checked.password) == ("12345678|bot", "pw:1")
    assert stored_during_check is None
    credential = resolve_credential(registry, env={})
    assert credential is not None
    assert (credential.username, credential.password, credential.source) == (
        "12345678|bot",
        "pw:1",
        "keyring",
    )


def test_failing_check_stores_nothing(registry: str) -> None:
    async def refuse(credential: Credential) -> None:
        raise UnauthorizedError("authentication required", registry=registry, status=401)

    with pytest.raises(UnauthorizedError):
        anyio.run(lambda: login(registry, "alice", "wrong", check=refuse))
    assert keyring_credential(registry) is None


def test_failing_check_keeps_the_previous_login(registry: str) -> None:
    async def accept(credential: Credential) -> None:
        return None

    async def refuse(credential: Credential) -> None:
        raise UnauthorizedError("denied", registry=registry, status=401)

    anyio.run(lambda: login(registry, "alice", "good", check=accept))
    with pytest.raises(UnauthorizedError):
        anyio.run(lambda: login(registry, "mallory", "bad", check=refuse))
    credential = keyring_credential(registry)
    assert credential is not None and (credential.username, credential.password) == (
        "alice",
        "good",
    )


def test_logout_removes(registry: str) -> None:
    async def accept(credential: Credential) -> None:
        return None

    anyio.run(lambda: login(registry, "alice", "pw", check=accept))
    assert anyio.run(logout, registry) == ["the keyring"]
    assert keyring_credential(registry) is None
    assert anyio.run(logout, registry) == []


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """No keyring backend at all (as without a Secret Service and keyring's fail backend)."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.backends.fail.Keyring())


@pytest.mark.usefixtures("no_keyring")
def test_login_without_keyring_falls_back_to_podmans_auth_file(
    registry: str, tmp_path: Path
) -> None:
    checked: list[Credential] = []

    async def check(credential: Credential) -> None:
        checked.append(credential)

    env = {"XDG_RUNTIME_DIR": str(tmp_path / "run")}
    stored = anyio.run(lambda: login(registry, "alice", "s3cret-pw", check=check, env=env))

    assert [c.username for c in checked] == ["alice"]
    path = tmp_path / "run" / "containers" / "auth.json"
    assert stored.where == f"auth file {path}" and stored.key == registry
    assert stored.why.startswith("no keyring is reachable")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    credential = resolve_credential(registry, env={**env, "HOME": str(tmp_path)})
    assert credential is not None and (credential.username, credential.password) == (
        "alice", "s3cret-pw")
    assert anyio.run(lambda: logout(registry, env=env)) == [f"auth file {path}"]
    assert resolve_credential(registry, env={**env, "HOME": str(tmp_path)}) is None


@pytest.mark.usefixtures("no_keyring")
def test_login_without_keyring_or_writable_file_says_valid_but_not_stored(
    registry: str, tmp_path: Path
) -> None:
    async def check(credential: Credential) -> None:
        return None

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {"XDG_RUNTIME_DIR": str(blocker)}
    with pytest.raises(CredentialError) as caught:
        anyio.run(lambda: login(registry, "alice", "s3cret-pw", check=check, env=env))
    message = str(caught.value)
    assert message.startswith(f"login to {registry}: the credentials are valid, but they were "
                              "not stored: no keyring is reachable")
    assert "--authfile" in message
    assert "s3cret-pw" not in message


@pytest.mark.usefixtures("no_keyring")
def test_login_without_keyring_reports_a_refused_credential_as_such(registry: str) -> None:
    async def refuse(credential: Credential) -> None:
        raise UnauthorizedError("authentication required", registry=registry, status=401)

    with pytest.raises(UnauthorizedError):
        anyio.run(lambda: login(registry, "alice", "wrong", check=refuse))


@pytest.mark.parametrize(("username", "password"), [("", "pw"), ("alice", "")])
def test_login_refuses_empty_values(registry: str, username: str, password: str) -> None:
    async def check(credential: Credential) -> None:
        raise AssertionError("must not be called")

    with pytest.raises(CredentialError):
        anyio.run(lambda: login(registry, username, password, check=check))

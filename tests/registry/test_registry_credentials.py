"""Credential sources end to end: resolved by the lookup chain, used by RegistryClient.

Every source of the chain feeds a real pull (and push) from the Basic and the token
registry; `login`/`logout` go through the real Secret Service with
`RegistryClient.check_credentials` as the check.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness import ALICE, ROBOT, Credentials
from harness.clients import options_for
from harness.images import Image, push_image
from harness.registry import RegistryProcess

from mirrord.credentials import (
    Credential,
    keyring_credential,
    login,
    logout,
    resolve_credential,
)
from mirrord.errors import UnauthorizedError
from mirrord.registry import RegistryClient

pytestmark = pytest.mark.anyio

FLAVOURS = ["basic_registry", "token_registry"]


def pull_secret_entry(user: Credentials) -> dict[str, str]:
    token = base64.b64encode(f"{user.username}:{user.password}".encode()).decode()
    return {"auth": token, "email": "robot@example.com"}


def auth_json_entry(user: Credentials) -> dict[str, str]:
    return {"username": user.username, "password": user.password}


def write(path: Path, auths: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths}))
    return path


@pytest.fixture(params=FLAVOURS)
def reg(request: pytest.FixtureRequest) -> RegistryProcess:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.fixture
def image(reg: RegistryProcess, repo_name: str) -> Image:
    with reg.client() as http:
        return push_image(http, repo_name, "v1", seed=repo_name)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


async def resolve(reg: RegistryProcess, repo: str, env: dict[str, str],
                  auth_file: Path | None = None, use_keyring: bool = False) -> Credential | None:
    return await anyio.to_thread.run_sync(partial(
        resolve_credential, reg.host, repo, auth_file=auth_file, env=env,
        use_keyring=use_keyring))


def client(reg: RegistryProcess, credential: Credential | None) -> RegistryClient:
    return RegistryClient(reg.host, credential=credential, options=options_for(reg))


async def assert_pull_and_push(reg: RegistryProcess, credential: Credential | None,
                               image: Image) -> None:
    async with client(reg, credential) as c:
        manifest = await c.get_manifest(image.repo, "v1")
        assert manifest.raw == image.raw
        layer = manifest.layers[0]
        async with c.get_blob(image.repo, layer.digest) as chunks:
            assert b"".join([chunk async for chunk in chunks]) == image.layers[0].data
        await c.put_manifest(image.repo, "pushed", manifest)
        head = await c.head_manifest(image.repo, "pushed")
        assert head is not None
        assert (head.digest, head.media_type, head.size) == (
            manifest.digest, manifest.media_type, manifest.size)


# Each case: (user, where the file goes and what the env says) -> expected source.
def _config_auth_file(tmp: Path, home: Path, host: str, user: Credentials) -> tuple[
        dict[str, str], Path | None, str]:
    path = write(tmp / "etc" / "pull-secret.json", {host: pull_secret_entry(user)})
    return {"HOME": str(home)}, path, f"auth file {path}"


def _registry_auth_file(tmp: Path, home: Path, host: str, user: Credentials) -> tuple[
        dict[str, str], Path | None, str]:
    path = write(tmp / "auth.json", {host: auth_json_entry(user)})
    return ({"HOME": str(home), "REGISTRY_AUTH_FILE": str(path)}, None,
            f"$REGISTRY_AUTH_FILE ({path})")


def _xdg_runtime_dir(tmp: Path, home: Path, host: str, user: Credentials) -> tuple[
        dict[str, str], Path | None, str]:
    path = write(tmp / "run" / "containers" / "auth.json", {host: pull_secret_entry(user)})
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp / "run")}, None, f"auth file {path}"


def _home_containers(tmp: Path, home: Path, host: str, user: Credentials) -> tuple[
        dict[str, str], Path | None, str]:
    path = write(home / ".config" / "containers" / "auth.json", {host: auth_json_entry(user)})
    return {"HOME": str(home)}, None, f"auth file {path}"


def _docker_config_env(tmp: Path, home: Path, host: str, user: Credentials) -> tuple[
        dict[str, str], Path | None, str]:
    path = write(tmp / "docker" / "config.json", {f"https://{host}/v1/": pull_secret_entry(user)})
    return ({"HOME": str(home), "DOCKER_CONFIG": str(tmp / "docker")}, None,
            f"docker config {path}")


def _docker_config_home(tmp: Path, home: Path, host: str, user: Credentials) -> tuple[
        dict[str, str], Path | None, str]:
    path = write(home / ".docker" / "config.json", {host: pull_secret_entry(user)})
    return {"HOME": str(home)}, None, f"docker config {path}"


def _systemd_credentials(tmp: Path, home: Path, host: str, user: Credentials) -> tuple[
        dict[str, str], Path | None, str]:
    directory = tmp / "credentials"
    (directory / "api-token").parent.mkdir(parents=True)
    (directory / "api-token").write_text("not an auth file")
    write(directory / "pull-secret", {host: pull_secret_entry(user)})
    return ({"HOME": str(home), "CREDENTIALS_DIRECTORY": str(directory)}, None,
            "systemd credential pull-secret")


SOURCES = {
    "config-auth-file": (_config_auth_file, ROBOT),
    "REGISTRY_AUTH_FILE": (_registry_auth_file, ALICE),
    "XDG_RUNTIME_DIR": (_xdg_runtime_dir, ROBOT),
    "home-containers-auth": (_home_containers, ALICE),
    "DOCKER_CONFIG": (_docker_config_env, ROBOT),
    "home-docker-config": (_docker_config_home, ALICE),
    "CREDENTIALS_DIRECTORY": (_systemd_credentials, ROBOT),
}


@pytest.mark.parametrize("source", list(SOURCES))
async def test_every_file_source_pulls_and_pushes(
    source: str, reg: RegistryProcess, image: Image, tmp_path: Path, home: Path
) -> None:
    make, user = SOURCES[source]
    env, auth_file, expected_source = make(tmp_path, home, reg.host, user)
    credential = await resolve(reg, image.repo, env, auth_file)
    assert credential is not None
    assert (credential.username, credential.source) == (user.username, expected_source)
    await assert_pull_and_push(reg, credential, image)
    token_server = reg.token_server
    if token_server is not None:
        assert {r.account for r in token_server.requests if r.status == 200} >= {user.username}


async def test_most_specific_key_wins_against_the_registry(
    reg: RegistryProcess, image: Image, tmp_path: Path, home: Path
) -> None:
    wrong = Credentials(ALICE.username, "not-the-password")
    path = write(tmp_path / "auth.json", {
        reg.host: auth_json_entry(wrong),
        f"{reg.host}/{image.repo}": pull_secret_entry(ROBOT),
    })
    env = {"HOME": str(home)}
    credential = await resolve(reg, image.repo, env, path)
    assert credential is not None and credential.username == ROBOT.username
    await assert_pull_and_push(reg, credential, image)

    elsewhere = await resolve(reg, "other/repo", env, path)
    async with client(reg, elsewhere) as c:
        with pytest.raises(UnauthorizedError) as caught:
            await c.list_tags(image.repo)
    assert f"(credentials from auth file {path})" in str(caught.value)
    assert "not-the-password" not in str(caught.value)


async def test_no_source_means_anonymous(
    reg: RegistryProcess, image: Image, home: Path
) -> None:
    credential = await resolve(reg, image.repo, {"HOME": str(home)})
    assert credential is None
    async with client(reg, credential) as c:
        with pytest.raises(UnauthorizedError, match="anonymous"):
            await c.get_manifest(image.repo, "v1")


# -- login / logout through the real Secret Service -----------------------------------------


@pytest.fixture
def keyring_service(secret_service: Any) -> Iterator[Any]:
    secret_service.clear("mirrord:")
    yield secret_service
    secret_service.clear("mirrord:")


async def check_against(reg: RegistryProcess, credential: Credential) -> None:
    async with client(reg, credential) as c:
        await c.check_credentials()


@pytest.mark.parametrize("user", [ROBOT, ALICE], ids=["robot", "alice"])
async def test_login_checks_stores_and_logout_forgets(
    user: Credentials, reg: RegistryProcess, image: Image, home: Path, keyring_service: Any
) -> None:
    check: Callable[[Credential], Any] = partial(check_against, reg)
    await login(reg.host, user.username, user.password, check=check)

    credential = await resolve(reg, image.repo, {"HOME": str(home)}, use_keyring=True)
    assert credential is not None
    assert (credential.username, credential.source) == (user.username, "keyring")
    await assert_pull_and_push(reg, credential, image)

    assert await logout(reg.host) is True
    assert await resolve(reg, image.repo, {"HOME": str(home)}, use_keyring=True) is None
    assert await logout(reg.host) is False


async def test_login_with_a_wrong_password_stores_nothing(
    reg: RegistryProcess, keyring_service: Any
) -> None:
    check: Callable[[Credential], Any] = partial(check_against, reg)
    password = "Wr0ng-login-Pa55"
    with pytest.raises(UnauthorizedError) as caught:
        await login(reg.host, ALICE.username, password, check=check)
    message = str(caught.value)
    assert reg.host in message and "(credentials from mirrord login)" in message
    assert password not in message
    assert await anyio.to_thread.run_sync(keyring_credential, reg.host) is None

    # A refused login keeps the credential that was there.
    await login(reg.host, ROBOT.username, ROBOT.password, check=check)
    with pytest.raises(UnauthorizedError):
        await login(reg.host, ALICE.username, password, check=check)
    kept = await anyio.to_thread.run_sync(keyring_credential, reg.host)
    assert kept is not None and (kept.username, kept.password) == tuple(ROBOT)

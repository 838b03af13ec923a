"""``mirrord login`` / ``logout`` on the command line, against the real Basic-auth registry.

The registry is asked first: a wrong password or an unreachable registry is reported as
such wherever the credential would have gone. ``--authfile`` writes what podman writes,
checked by reading it back with Debian's skopeo; without a keyring, podman's own auth
file takes the credential, and mirrord's lookup finds it there.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import keyring
import keyring.backends.fail
import pytest
from click.testing import CliRunner, Result
from harness import Credentials
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess

from mirrord.cli import main

pytestmark = pytest.mark.usefixtures("clean_keyring")


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No keyring backend; podman's auth file under a private $XDG_RUNTIME_DIR (returned)."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.backends.fail.Keyring())
    runtime = tmp_path / "run"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return runtime / "containers" / "auth.json"


def _config(tmp_path: Path, host: str, insecure: bool = True) -> Path:
    config = tmp_path / "mirrord.yaml"
    config.write_text(
        f"version: 1\nstate_dir: {tmp_path / 'state'}\n"
        + (f"registries:\n  '{host}':\n    insecure: true\n" if insecure else "")
    )
    return config


def login(tmp_path: Path, host: str, username: str, password: str, *extra: str) -> Result:
    config = _config(tmp_path, host.split("://")[-1].split("/")[0], insecure=not extra)
    args = ["login", host, "-u", username, "--password-stdin", "--config", str(config), *extra]
    return CliRunner().invoke(main, args, input=password + "\n")


def skopeo_inspect(authfile: Path, reference: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", "inspect", "--authfile", str(authfile), "--tls-verify=false",
         f"docker://{reference}"],
        capture_output=True, text=True, timeout=60, check=False,
    )


def _entry(user: Credentials) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user.username}:{user.password}".encode()).decode()}


def test_authfile_login_is_what_podman_writes_and_skopeo_reads_it(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    alice: Credentials,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "v1", seed=repo_name)
    authfile = tmp_path / "new" / "dir" / "auth.json"
    reference = f"{basic_registry.host}/{repo_name}:v1"
    assert skopeo_inspect(authfile, reference).returncode != 0  # no file, no access

    # --tls-verify=false reaches the plain-HTTP registry as podman does (HTTPS first).
    result = login(tmp_path, basic_registry.host, alice.username, alice.password,
                   "--authfile", str(authfile), "--tls-verify=false")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Login Succeeded: {basic_registry.host} (stored in auth file {authfile})\n")
    assert json.loads(authfile.read_text()) == {"auths": {basic_registry.host: _entry(alice)}}
    assert stat.S_IMODE(authfile.stat().st_mode) == 0o600
    assert stat.S_IMODE(authfile.parent.stat().st_mode) == 0o700
    inspected = skopeo_inspect(authfile, reference)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Name"] == f"{basic_registry.host}/{repo_name}"

    logout = CliRunner().invoke(main, ["logout", basic_registry.host, "--authfile", str(authfile)])
    assert logout.exit_code == 0, logout.output
    assert f"Removed login credentials for {basic_registry.host} from auth file" in logout.stdout
    assert json.loads(authfile.read_text()) == {"auths": {}}
    assert skopeo_inspect(authfile, reference).returncode != 0
    again = CliRunner().invoke(main, ["logout", basic_registry.host, "--authfile", str(authfile)])
    assert again.exit_code == 1 and "not logged in to" in again.stderr


def test_repository_scoped_and_url_logins_keep_the_other_entries(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    alice: Credentials,
    robot: Credentials,
    repo_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    push_image(basic_client, repo_name, "v1", seed=repo_name)
    authfile = tmp_path / "auth.json"
    other = {"auth": "b3RoZXI6c2VjcmV0"}
    authfile.write_text(json.dumps({"auths": {"quay.io": other}, "credHelpers": {"x.io": "h"}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(authfile))  # podman's variable

    scoped = login(tmp_path, f"{basic_registry.host}/{repo_name}", robot.username, robot.password)
    url = login(tmp_path, f"http://{basic_registry.host}/v2/", alice.username, alice.password)

    assert scoped.exit_code == 0, scoped.output
    assert url.exit_code == 0, url.output
    assert f"Login Succeeded: {basic_registry.host}/{repo_name} " in scoped.stdout
    document = json.loads(authfile.read_text())
    assert document["credHelpers"] == {"x.io": "h"}
    assert document["auths"] == {
        "quay.io": other,
        f"{basic_registry.host}/{repo_name}": _entry(robot),
        basic_registry.host: _entry(alice),
    }
    assert skopeo_inspect(authfile, f"{basic_registry.host}/{repo_name}:v1").returncode == 0

    everything = CliRunner().invoke(main, ["logout", "--all"])
    assert everything.exit_code == 0, everything.output
    assert json.loads(authfile.read_text())["auths"] == {}
    bad = login(tmp_path, f"{basic_registry.host}/{repo_name}:v1", alice.username, "x")
    assert bad.exit_code == 2 and "without a tag or digest" in bad.stderr


def test_wrong_password_names_the_registry_and_the_source_only(
    tmp_path: Path, basic_registry: RegistryProcess, alice: Credentials, no_keyring: Path
) -> None:
    result = login(tmp_path, basic_registry.host, alice.username, "wrong-password")
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"error: invalid username or password for {basic_registry.host} "
        "(credentials from mirrord login)\n"
    )
    assert "wrong-password" not in result.output
    assert not no_keyring.exists()  # nothing stored


def test_unreachable_registry_without_keyring_is_a_connection_error(
    tmp_path: Path, no_keyring: Path
) -> None:
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{sock.getsockname()[1]}"
    result = login(tmp_path, host, "alice", "pw")
    assert result.exit_code == 1, result.output
    assert f"error: {host}: connecting: cannot reach the registry: ConnectError" in result.stderr
    assert not no_keyring.exists()


def test_without_a_keyring_the_login_goes_to_podmans_file_and_sync_uses_it(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    alice: Credentials,
    repo_name: str,
) -> None:
    """A real headless process: no D-Bus session, so no Secret Service to reach."""
    push_image(basic_client, repo_name, "v1", seed=repo_name)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DBUS_SESSION_BUS_ADDRESS", "REGISTRY_AUTH_FILE")}
    env.update(XDG_RUNTIME_DIR=str(runtime), HOME=str(tmp_path))
    config = tmp_path / "mirrord.yaml"
    config.write_text(
        f"version: 1\nstate_dir: {tmp_path / 'state'}\n"
        f"mirror: docker://{mirror_registry.host}/fallback\n"
        f"registries:\n  '{basic_registry.host}': {{insecure: true}}\n"
        f"  '{mirror_registry.host}': {{insecure: true}}\n"
        f"streams:\n  - from: {basic_registry.host}/{repo_name}\n    tags: [v1]\n"
    )

    def mirrord(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mirrord", *args, "--config", str(config)],
                              input=stdin, capture_output=True, text=True, env=env, timeout=120,
                              check=False)

    logged_in = mirrord("login", basic_registry.host, "-u", alice.username, "--password-stdin",
                        stdin=alice.password + "\n")
    synced = mirrord("sync", "--no-progress")
    logged_out = mirrord("logout", basic_registry.host)

    authfile = runtime / "containers" / "auth.json"
    assert logged_in.returncode == 0, logged_in.stderr
    assert logged_in.stdout == (
        f"Login Succeeded: {basic_registry.host} (stored in auth file {authfile})\n")
    assert "warning: no keyring is reachable" in logged_in.stderr
    assert synced.returncode == 0, synced.stderr
    assert "images: 1 copied" in synced.stdout
    assert logged_out.returncode == 0, logged_out.stderr
    assert json.loads(authfile.read_text()) == {"auths": {}}


def test_valid_password_is_stored_in_the_keyring(
    tmp_path: Path, basic_registry: RegistryProcess, alice: Credentials
) -> None:
    result = login(tmp_path, basic_registry.host, alice.username, alice.password)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Login Succeeded: {basic_registry.host} (stored in the keyring)\n"
    stored = keyring.get_password(f"mirrord:{basic_registry.host}", "__username__")
    assert stored == alice.username
    everything = CliRunner().invoke(main, ["logout", "--all"])
    assert everything.exit_code == 0, everything.output
    assert f"the keyring: {basic_registry.host}" in everything.stdout
    assert keyring.get_password(f"mirrord:{basic_registry.host}", "__username__") is None


def test_authfile_login_at_a_token_server_registry_is_read_by_skopeo(
    tmp_path: Path,
    token_registry: RegistryProcess,
    token_server: Any,
    robot: Credentials,
    repo_name: str,
) -> None:
    """Bearer-token auth: login checks at the token server, skopeo gets a token with it.
    A plain-HTTP token server on another port must be listed under registries: first."""
    with token_registry.client() as http:
        push_image(http, repo_name, "v1", seed=repo_name)
    authfile = tmp_path / "auth.json"
    reference = f"{token_registry.host}/{repo_name}:v1"
    assert skopeo_inspect(authfile, reference).returncode != 0  # anonymous: refused
    tls_off = ("--authfile", str(authfile), "--tls-verify=false")

    untrusted = login(tmp_path, token_registry.host, robot.username, robot.password, *tls_off)
    assert untrusted.exit_code == 1, untrusted.output
    realm_host = token_server.realm.split("://", 1)[1].split("/", 1)[0]
    assert (f"check credentials: not checked: the token server {realm_host} is untrusted"
            in untrusted.stderr)
    assert not authfile.exists()  # an anonymous token proves nothing: nothing stored

    config = tmp_path / "trusted.yaml"
    config.write_text(f"version: 1\nstate_dir: {tmp_path / 'state'}\n"
                      f"registries:\n  '{realm_host}': {{}}\n")
    def trusted_login(password: str) -> Result:
        args = ["login", token_registry.host, "-u", robot.username, "--password-stdin",
                "--config", str(config), *tls_off]
        return CliRunner().invoke(main, args, input=password + "\n")

    wrong = trusted_login("Wr0ng-pa55")
    assert (wrong.exit_code, wrong.stderr) == (1, (
        f"error: invalid username or password for {token_registry.host} "
        "(credentials from mirrord login)\n"))
    assert not authfile.exists()

    result = trusted_login(robot.password)

    assert result.exit_code == 0, result.output
    assert json.loads(authfile.read_text()) == {"auths": {token_registry.host: _entry(robot)}}
    assert [(r.status, r.account) for r in token_server.requests][-1] == (200, robot.username)
    inspected = skopeo_inspect(authfile, reference)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Name"] == f"{token_registry.host}/{repo_name}"


def test_a_login_elsewhere_than_the_configured_auth_file_is_warned_about(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    alice: Credentials,
    no_keyring: Path,
) -> None:
    configured = tmp_path / "site-auth.json"
    config = tmp_path / "mirrord.yaml"
    config.write_text(
        f"version: 1\nstate_dir: {tmp_path / 'state'}\nregistries:\n"
        f"  '{basic_registry.host}':\n    insecure: true\n    auth_file: {configured}\n"
    )

    def login_to(*extra: str) -> Result:
        args = ["login", basic_registry.host, "-u", alice.username, "--password-stdin",
                "--config", str(config), *extra]
        return CliRunner().invoke(main, args, input=alice.password + "\n")

    elsewhere = login_to()
    there = login_to("--authfile", str(configured))

    assert elsewhere.exit_code == 0 and there.exit_code == 0, elsewhere.output + there.output
    assert (f"warning: the configuration sets auth_file {configured} for "
            f"{basic_registry.host}, which mirrord reads first") in elsewhere.stderr
    assert f"mirrord login --authfile {configured}" in elsewhere.stderr
    assert "warning" not in there.stderr and json.loads(configured.read_text())["auths"]


def test_without_a_terminal_the_password_is_asked_for_on_stdin(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mirrord", "login", "127.0.0.1:1", "-u", "alice",
         "--config", str(_config(tmp_path, "127.0.0.1:1"))],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: no terminal to ask for the password on: pass --password-stdin\n"

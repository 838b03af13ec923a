"""``mirrord login`` and ``mirrord logout``: credentials in the keyring."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click

from mirrord.cli._app import config_option, fail, load, main, run_async
from mirrord.cli._exitcodes import EXIT_FAILED, EXIT_USAGE
from mirrord.config import Config


@main.command()
@click.argument("registry")
@click.option("-u", "--username", help="User name (prompted for when absent).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@config_option
def login(
    registry: str, username: str | None, password_stdin: bool, config_path: Path | None
) -> None:
    """Check credentials against REGISTRY, then store them in the keyring."""
    if password_stdin:
        if not username:
            fail("--password-stdin needs --username", EXIT_USAGE)
        password = sys.stdin.read().rstrip("\r\n")
    else:
        username = username or click.prompt("Username")
        password = getpass.getpass("Password: ")
    if not password:
        fail("empty password", EXIT_USAGE)
    assert username is not None
    config = load(config_path, embedded=True)
    run_async(lambda: login_command(config, registry, username, password))
    click.echo(f"Login Succeeded: {registry} (stored in the keyring)")


async def login_command(config: Config, registry: str, username: str, password: str) -> None:
    """Check the credential against the registry, then store it in the keyring."""
    from mirrord.credentials import Credential
    from mirrord.credentials import login as keyring_login
    from mirrord.registry import RegistryClient
    from mirrord.transports import registry_options

    options = registry_options(config, registry)

    async def check(credential: Credential) -> None:
        async with RegistryClient(registry, credential=credential, options=options) as client:
            await client.check_credentials()

    await keyring_login(registry, username, password, check=check)


@main.command()
@click.argument("registry")
def logout(registry: str) -> None:
    """Remove REGISTRY's credentials from the keyring."""
    from mirrord.credentials import logout as keyring_logout

    removed = run_async(lambda: keyring_logout(registry))
    if not removed:
        fail(f"not logged in to {registry}", EXIT_FAILED)
    click.echo(f"Removed login credentials for {registry}")

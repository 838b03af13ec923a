"""``mirrord login`` and ``mirrord logout``, with podman's options and files.

``--authfile FILE`` (default ``$REGISTRY_AUTH_FILE``) writes the entry podman writes;
without one the keyring holds it, or podman's auth file when no keyring is reachable.
``--tls-verify=false`` skips certificate checks and, like podman, falls back to plain
HTTP when the registry does not speak HTTPS; ``--cert-dir`` adds CAs and a client
certificate. ``REGISTRY`` may be ``host[:port]``, ``host[:port]/path`` (a
repository-scoped entry) or a URL.
"""

from __future__ import annotations

import dataclasses
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mirrord.cli._app import config_option, fail, load, main, run_async
from mirrord.cli._exitcodes import EXIT_FAILED, EXIT_USAGE
from mirrord.config import Config

if TYPE_CHECKING:
    from mirrord.credentials import Stored

authfile_option = click.option(
    "--authfile",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="REGISTRY_AUTH_FILE",
    default=None,
    help="Auth file to write, as podman does (default: $REGISTRY_AUTH_FILE; without "
    "either: the keyring, else $XDG_RUNTIME_DIR/containers/auth.json).",
)


@main.command()
@click.argument("registry")
@click.option("-u", "--username", help="User name (prompted for when absent).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@authfile_option
@click.option(
    "--tls-verify",
    type=click.BOOL,
    is_flag=False,
    flag_value=True,
    default=None,
    metavar="BOOL",
    help="Verify the registry's certificate (--tls-verify=false: skip it, and fall back "
    "to plain HTTP, like podman).",
)
@click.option(
    "--cert-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A directory of CA certificates (*.crt) and a client certificate (*.cert, *.key).",
)
@config_option
def login(
    registry: str,
    username: str | None,
    password_stdin: bool,
    authfile: Path | None,
    tls_verify: bool | None,
    cert_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Check credentials against REGISTRY, then store them (like `podman login`)."""
    _check_registry(registry)
    if password_stdin:
        if not username:
            fail("--password-stdin needs --username", EXIT_USAGE)
        password = sys.stdin.read().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():  # getpass would warn and read the password visibly
            fail("no terminal to ask for the password on: pass --password-stdin", EXIT_USAGE)
        username = username or click.prompt("Username")
        password = getpass.getpass("Password: ")
    if not password:
        fail("empty password", EXIT_USAGE)
    assert username is not None
    config = load(config_path, embedded=True, announce=False)
    stored = run_async(
        lambda: login_command(
            config, registry, username, password, authfile, tls_verify, cert_dir
        )
    )
    if stored.why:
        click.echo(f"warning: {stored.why}; stored in {stored.where} instead", err=True)
    click.echo(f"Login Succeeded: {stored.key} (stored in {stored.where})")
    _shadowed_by_auth_file(config, stored.key, authfile)


def _shadowed_by_auth_file(config: Config, key: str, authfile: Path | None) -> None:
    """Warn when the configuration's ``auth_file`` for the host, which mirrord reads
    before any login, is not where this login went."""
    host = key.split("/", 1)[0]
    configured = config.registry_config(host).auth_file
    if configured is not None and (authfile is None or authfile.absolute() != configured):
        click.echo(
            f"warning: the configuration sets auth_file {configured} for {host}, which "
            "mirrord reads first; to use this login there, "
            f"run mirrord login --authfile {configured}",
            err=True,
        )


async def login_command(
    config: Config,
    registry: str,
    username: str,
    password: str,
    authfile: Path | None = None,
    tls_verify: bool | None = None,
    cert_dir: Path | None = None,
) -> Stored:
    """Check the credential against the registry, then store it; where it went."""
    from mirrord.credentials import Credential, login_key
    from mirrord.credentials import login as store_login
    from mirrord.errors import ConnectError, TLSError
    from mirrord.registry import RegistryClient
    from mirrord.transports import registry_options

    host = login_key(registry).split("/", 1)[0]
    options = registry_options(config, host)
    if tls_verify is not None:
        options = dataclasses.replace(options, tls_verify=tls_verify)
    if cert_dir is not None:
        options = dataclasses.replace(options, cert_dir=cert_dir)

    async def check(credential: Credential) -> None:
        async with RegistryClient(host, credential=credential, options=options) as client:
            try:
                await client.check_credentials()
                return
            except (TLSError, ConnectError):
                # podman: without TLS verification, a registry that does not answer
                # HTTPS is tried over plain HTTP.
                if options.tls_verify or options.insecure:
                    raise
        plain = dataclasses.replace(options, insecure=True)
        async with RegistryClient(host, credential=credential, options=plain) as client:
            await client.check_credentials()

    return await store_login(registry, username, password, check=check, authfile=authfile)


@main.command()
@click.argument("registry", required=False)
@click.option("-a", "--all", "everything", is_flag=True, help="Remove every stored login.")
@authfile_option
@config_option
def logout(
    registry: str | None, everything: bool, authfile: Path | None, config_path: Path | None
) -> None:
    """Remove REGISTRY's credentials (from --authfile, or the keyring and podman's file)."""
    from mirrord.credentials import logout as remove_login
    from mirrord.credentials import logout_all

    if everything == (registry is not None):
        fail("name a registry, or pass --all", EXIT_USAGE)
    if everything:
        config = load(config_path, embedded=True, announce=False)
        done = run_async(lambda: logout_all(authfile=authfile, known=config.registries))
        for line in done:
            click.echo(f"Removed login credentials from {line}")
        if not done:
            click.echo("No login credentials were stored")
        return
    assert registry is not None
    _check_registry(registry)
    removed = run_async(lambda: remove_login(registry, authfile=authfile))
    if not removed:
        fail(f"not logged in to {registry}", EXIT_FAILED)
    click.echo(f"Removed login credentials for {registry} from {' and '.join(removed)}")


def _check_registry(registry: str) -> None:
    """A REGISTRY argument that names no registry is a usage error, before any prompt."""
    from mirrord.credentials import login_key
    from mirrord.errors import CredentialError

    try:
        login_key(registry)
    except CredentialError as error:
        fail(str(error), EXIT_USAGE)

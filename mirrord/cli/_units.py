"""``mirrord systemd-unit``: the systemd units for this installation of mirrord.

The shipped unit files cannot know where pip put mirrord (a virtual environment,
``/usr/local/bin``, ``~/.local/bin``), so the command writes them with the path of the
running installation's ``mirrord`` script (``--bindir auto``), like ``podman generate
systemd``: printed, or with ``--install`` written to /etc/systemd/system.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

import click

import mirrord
from mirrord.cli._app import config_option, echo_error, fail, main
from mirrord.cli._exitcodes import EXIT_FAILED, EXIT_USAGE
from mirrord.cli._unitfiles import UnitSettings, render_units

DEFAULT_CONFIG = Path("/etc/mirrord/mirrord.yaml")
UNIT_DIR = Path("/etc/systemd/system")
DEFAULTS = {
    "--bindir": "auto",
    "--pull-secret": "/etc/mirrord/pull-secret.json",
    "--api-token": "/etc/mirrord/api.token",
}


def installed_mirrord(bindir: str) -> Path:
    """The ``mirrord`` executable: in ``bindir``, or (``auto``) the console script of
    the Python running this command, else the one on $PATH."""
    if bindir != "auto":
        path = Path(bindir).expanduser().absolute() / "mirrord"
        if not os.access(path, os.X_OK):
            echo_error(f"{path} is not an executable here (the unit names it anyway)", "warning")
        return path
    script = Path(sysconfig.get_path("scripts")) / "mirrord"
    if os.access(script, os.X_OK):
        return script
    found = shutil.which("mirrord")
    if found is None:
        fail(f"no mirrord executable in {script.parent} or on $PATH; pass --bindir DIR", EXIT_USAGE)
    return Path(found).absolute()


def documentation_uri(bindir: str) -> str | None:
    """The README pip installs beside mirrord (``<prefix>/share/doc/mirrord``): for an
    explicit ``bindir`` the one of its prefix; for ``auto`` this installation's, else the
    source checkout's (an editable install); None when neither is on this machine."""
    if bindir != "auto":
        prefix = Path(bindir).expanduser().absolute().parent
        return (prefix / "share" / "doc" / "mirrord" / "README.md").as_uri()
    candidates = (
        Path(sys.prefix) / "share" / "doc" / "mirrord" / "README.md",
        Path(mirrord.__file__).resolve().parent.parent / "README.md",
    )
    return next((p.as_uri() for p in candidates if p.is_file()), None)


def _optional(value: str) -> Path | None:
    return Path(value).absolute() if value else None


def _env_config() -> Path | None:
    """``$MIRRORD_CONFIG``, as every command reads it when ``--config`` is not given."""
    value = os.environ.get("MIRRORD_CONFIG", "")
    return Path(value) if value else None


#: What the units' sandbox hides from the service: ProtectHome=yes, PrivateTmp=yes.
HIDDEN = {
    "ProtectHome=yes": (Path("/home"), Path("/root"), Path("/run/user")),
    "PrivateTmp=yes": (Path("/tmp"), Path("/var/tmp")),
}


def sandbox_warnings(settings: UnitSettings) -> list[str]:
    """One line per file the unit names that its sandbox hides from the service."""
    named = {
        "the mirrord executable": settings.mirrord,
        "--config": settings.config,
        "the pull secret": settings.pull_secret,
        "the API token": settings.api_token,
    }
    warnings = []
    for what, path in named.items():
        for option, hidden in HIDDEN.items():
            if path is not None and any(path.is_relative_to(h) for h in hidden):
                warnings.append(
                    f"{what} {path} is hidden from the service by the unit's {option}: "
                    "install it elsewhere (e.g. pip install into /opt or /usr/local) "
                    "or relax that line"
                )
    return warnings


@main.command("systemd-unit")
@click.option("--timer", is_flag=True, help="The one-shot sync on a 15-minute timer instead.")
@click.option(
    "--bindir",
    default="auto",
    show_default=True,
    metavar="DIR|auto",
    help="Where the mirrord executable is (auto: this installation's).",
)
@click.option("--install", is_flag=True, help="Write the units to --unit-dir, not stdout.")
@click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=UNIT_DIR,
    show_default=True,
)
@click.option(
    "--pull-secret",
    default=DEFAULTS["--pull-secret"],
    show_default=True,
    metavar="FILE",
    help='Passed as the credential "pull-secret" ("" for none).',
)
@click.option(
    "--api-token",
    default=DEFAULTS["--api-token"],
    show_default=True,
    metavar="FILE",
    help='Passed to the daemon as the credential "api-token" ("" for none).',
)
@config_option
def systemd_unit(
    timer: bool,
    bindir: str,
    install: bool,
    unit_dir: Path,
    pull_secret: str,
    api_token: str,
    config_path: Path | None,
) -> None:
    """Print (or --install) systemd units that run this installation of mirrord.

    The daemon's mirrord.service, or with --timer mirrord-sync.service and
    mirrord-sync.timer. They run as a dynamic user with the pull secret and API
    token passed as systemd credentials (LoadCredential=).
    """
    given = {"--bindir": bindir, "--pull-secret": pull_secret, "--api-token": api_token}
    args = " ".join(
        ["--timer"] * timer
        + ([f"--config {shlex.quote(str(config_path))}"] if config_path else [])
        + [f"{k} {shlex.quote(v)}" for k, v in given.items() if v != DEFAULTS[k]]
    )
    settings = UnitSettings(
        mirrord=installed_mirrord(bindir),
        config=(config_path or _env_config() or DEFAULT_CONFIG).absolute(),
        pull_secret=_optional(pull_secret),
        api_token=_optional(api_token),
        documentation=documentation_uri(bindir),
        args=f" {args}" if args else "",
    )
    for warning in sandbox_warnings(settings):
        echo_error(warning, "warning")
    units = render_units(settings, timer=timer)
    if not install:
        several = len(units) > 1
        click.echo(
            "\n".join(f"# {name}\n{text}" if several else text for name, text in units.items()),
            nl=False,
        )
        return
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            (unit_dir / name).write_text(text)
            click.echo(f"wrote {unit_dir / name}")
    except OSError as error:
        fail(f"cannot write the units to {unit_dir}: {error.strerror or error}", EXIT_FAILED)
    first = next(iter(units)) if not timer else "mirrord-sync.timer"
    click.echo(f"next: systemctl daemon-reload && systemctl enable --now {first}")

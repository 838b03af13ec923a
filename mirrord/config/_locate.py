"""Where the configuration and the state live, and reading the file: the I/O edge of
:mod:`mirrord.config` (environment variables, the user's identity, the file system).

``$MIRRORD_CONFIG``, else ``/etc/mirrord/mirrord.yaml`` (root) or the XDG config
directory; the state in ``$STATE_DIRECTORY`` (systemd), else ``/var/lib/mirrord``
(root) or the XDG data directory. Parsing itself is :mod:`._parse`'s, pure.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import yaml

from mirrord.config._parse import EMBEDDED_DEFAULT_YAML, Surroundings, parse_document
from mirrord.config._types import Config
from mirrord.config._yaml import _At, _Doc
from mirrord.errors import ConfigError

MAX_CONFIG_BYTES = 4 << 20  # thousands of streams fit in far less


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_config_path() -> Path:
    """``$MIRRORD_CONFIG``, else /etc/mirrord/mirrord.yaml (root) or
    ``$XDG_CONFIG_HOME``/``~/.config``/mirrord/mirrord.yaml."""
    if env := os.environ.get("MIRRORD_CONFIG"):
        return Path(env).expanduser()
    if _is_root():
        return Path("/etc/mirrord/mirrord.yaml")
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "mirrord" / "mirrord.yaml"


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` (systemd), else /var/lib/mirrord (root) or
    ``$XDG_DATA_HOME``/``~/.local/share``/mirrord."""
    if env := os.environ.get("STATE_DIRECTORY"):
        return Path(env.split(":")[0])
    if _is_root():
        return Path("/var/lib/mirrord")
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "mirrord"


def surroundings(path: str | Path) -> Surroundings:
    """This machine's :class:`Surroundings` for a file at ``path``."""
    base = Path(path).expanduser().absolute().parent
    return Surroundings(base=base, home=Path.home(), state_dir=default_state_dir())


def parse_config(text: str, path: str | Path = "<config>") -> Config:
    """Parse and validate configuration text; ``path`` names it in errors and
    anchors relative paths (the state directory defaults as on this machine)."""
    return parse_document(text, str(path), surroundings(path))


def load_config(path: str | Path | None = None) -> Config:
    """Read and parse ``path`` (default: :func:`default_config_path`)."""
    file = Path(path).expanduser() if path is not None else default_config_path()
    raw = read_config_file(file)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", file=str(file), line=line) from None
    return parse_config(text, file)


def read_config_file(file: Path) -> bytes:
    """The file's bytes: a regular file of at most :data:`MAX_CONFIG_BYTES`.

    A FIFO, a device (``/dev/zero``), a directory or a larger file is a ConfigError;
    the file is opened without blocking, so a FIFO without a writer never hangs."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            "configuration file not found (pass --config FILE or set $MIRRORD_CONFIG)",
            file=str(file),
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(file)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen: a directory fails it
        os.close(fd)
        raise ConfigError("not a regular file (a FIFO, device or directory)", file=str(file))
    with os.fdopen(fd, "rb") as stream:
        try:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=str(file)) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES >> 20} MiB", file=str(file))
    return raw


def embedded_default_config() -> Config:
    """The quick start: registry.access.redhat.com/ubi9/ubi-micro:latest into
    ``oci:<state_dir>/oci``. ``path`` is None."""
    return dataclasses.replace(parse_config(EMBEDDED_DEFAULT_YAML, "<embedded default>"), path=None)


def load_config_or_embedded(path: str | Path | None = None, *, announce: bool = True) -> Config:
    """Like :func:`load_config`, but when no path was given, ``$MIRRORD_CONFIG`` is
    unset and the default file does not exist, the embedded default (said in an INFO
    line when ``announce``: for the commands that work on its mirror)."""
    if path is not None or os.environ.get("MIRRORD_CONFIG"):
        return load_config(path)
    candidate = default_config_path()
    if candidate.exists():
        return load_config(candidate)
    config = embedded_default_config()
    logging.getLogger("mirrord").log(
        logging.INFO if announce else logging.DEBUG,
        "no configuration at %s: using the embedded default (%s into %s)",
        candidate,
        ", ".join(s.source for s in config.streams),
        config.mirror,
    )
    return config


def missing_file_warnings(config: Config) -> tuple[str, ...]:
    """``file:line: key: PATH does not exist on this machine`` for each file the
    configuration names that is absent here (a registry's ``auth_file`` and ``ca_file``,
    ``server.token_file``, a receiver's ``secret_file``, ``database_password_file``,
    ``policy``; the secrets and the policy also when empty). ``mirrord validate`` prints them as
    warnings: the file may exist on the machine that runs mirrord. ``config`` was
    parsed from ``config.path``; a file that no longer reads or parses gives none."""
    if config.path is None:
        return ()
    try:
        loader = yaml.SafeLoader(read_config_file(config.path).decode("utf-8-sig"))
    except (ConfigError, ValueError, yaml.YAMLError):
        return ()
    try:
        node = loader.get_single_node()
        if node is None:
            return ()
        doc = _Doc(str(config.path), config.path.absolute().parent, loader, Path.home())
        root = _At(doc, node, "")
        return _missing_files(root.mapping(None))
    except (yaml.YAMLError, ConfigError):
        return ()
    finally:
        loader.dispose()


def _file_values(top: dict[str, _At]) -> Iterator[tuple[_At, bool]]:
    """Every key naming a file mirrord reads, and whether the file must hold something
    (a secret or token file that is empty is as good as absent)."""
    registries = top.get("registries")
    for _, entry in registries.entries(None, quoted=True) if registries is not None else ():
        values = entry.mapping(None)
        yield from ((values[n], False) for n in ("auth_file", "ca_file") if n in values)
    server = top["server"].mapping(None) if "server" in top else {}
    if "token_file" in server:
        yield server["token_file"], True
    for receiver in top["notifications"].sequence() if "notifications" in top else ():
        values = receiver.mapping(None)
        if "secret_file" in values:
            yield values["secret_file"], True
    for name in ("database_password_file", "policy"):  # policy: a file, or its text inline
        if name in top and isinstance(top[name].node, yaml.ScalarNode):
            yield top[name], True


def _missing_files(top: dict[str, _At]) -> tuple[str, ...]:
    warnings: list[str] = []
    for value, needs_content in _file_values(top):
        path = value.path()
        if not path.exists():
            warnings.append(str(value.error(f"{path} does not exist on this machine")))
        elif not path.is_file():
            warnings.append(str(value.error(f"{path} is not a regular file")))
        elif needs_content and path.stat().st_size == 0:
            warnings.append(str(value.error(f"{path} is empty")))
    return tuple(warnings)

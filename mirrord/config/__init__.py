"""The configuration file (version 1): YAML in, frozen dataclasses out.

Every error is a :class:`~mirrord.errors.ConfigError` naming the file, the line and
the key path (``mirrord.yaml:14: streams[1].semver: ...``). Parsing is pure
(:func:`parse_document` takes what it needs of the machine as :class:`Surroundings`);
:func:`load_config` and friends find the file and read it.
"""

from __future__ import annotations

from mirrord.config._locate import (
    default_config_path,
    default_state_dir,
    embedded_default_config,
    load_config,
    load_config_or_embedded,
    missing_file_warnings,
    parse_config,
)
from mirrord.config._parse import EMBEDDED_DEFAULT_YAML, Surroundings, parse_document
from mirrord.config._types import (
    DEFAULT_REGISTRY,
    Config,
    DatabaseConfig,
    Defaults,
    MirrorTarget,
    NotificationConfig,
    PruningConfig,
    RegistryConfig,
    ServerConfig,
    StreamConfig,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "EMBEDDED_DEFAULT_YAML",
    "Config",
    "DatabaseConfig",
    "Defaults",
    "MirrorTarget",
    "NotificationConfig",
    "PruningConfig",
    "RegistryConfig",
    "ServerConfig",
    "StreamConfig",
    "Surroundings",
    "default_config_path",
    "default_state_dir",
    "embedded_default_config",
    "load_config",
    "load_config_or_embedded",
    "missing_file_warnings",
    "parse_config",
    "parse_document",
]

"""What a run and the daemon build from a configuration, built once up front.

:func:`check_buildable` builds every schedule (and its next fire time), every stream's
platform and selection, each registry's options and the pruner's age bound, so a
configuration that loads but cannot run is refused (a reload keeps the running one)
instead of failing later inside the scheduler. ``mirrord validate`` accepts nothing this
refuses: parsing checks the same bounds; this is the second line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mirrord.config import Config
from mirrord.core.oci import Platform
from mirrord.core.schedule import Schedule
from mirrord.core.selection import select_tags
from mirrord.errors import ConfigError, MirrordError
from mirrord.transports import registry_options

# Tags of the shapes real repositories have: the selection of every stream runs on them.
SAMPLE_TAGS = ("latest", "1.0", "v1.2.3", "9.4-rc1", "2024.01.02", "sha256-" + "0" * 64 + ".sig")


def check_buildable(config: Config) -> None:
    """ConfigError (naming the file and what fails) unless everything a run and the
    daemon build from ``config`` can be built."""
    now = datetime.now(UTC)
    what = "the configuration"
    try:
        schedules = {f"streams {s.name}: schedule": s.schedule for s in config.streams}
        schedules["pruning.schedule"] = config.pruning.schedule
        for name, text in schedules.items():
            what = name
            Schedule.parse(text).next_after(now, now)
        for stream in config.streams:
            what = f"streams {stream.name}"
            Platform.parse(stream.platform)
            select_tags(SAMPLE_TAGS, stream)
        hosts = {*config.registries, *(s.source_registry for s in config.streams)}
        if config.mirror.registry:
            hosts.add(config.mirror.registry)
        for host in sorted(hosts):
            what = f"registries {host}"
            registry_options(config, host)
        what = "pruning.keepYoungerThanDuration"
        _ = now - timedelta(seconds=config.pruning.keep_younger_than)
    except (ValueError, OverflowError, MirrordError) as exc:
        file = str(config.path) if config.path else "<embedded default>"
        raise ConfigError(f"{what}: cannot be used: {exc}", file=file) from None

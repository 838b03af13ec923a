"""check_buildable: what loads but could not be scheduled or run is refused up front."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mirrord.config import Config, parse_config
from mirrord.errors import ConfigError
from mirrord.sync import check_buildable

TEXT = """\
version: 1
state_dir: /tmp/mirrord-checks
streams:
  - from: 127.0.0.1:5000/app
    include: ['^v']
"""


def config() -> Config:
    return parse_config(TEXT, Path("/etc/mirrord/mirrord.yaml"))


def with_stream(**changes: object) -> Config:
    base = config()
    return dataclasses.replace(base, streams=(dataclasses.replace(base.streams[0], **changes),))


def test_a_parsed_configuration_builds() -> None:
    check_buildable(config())


@pytest.mark.parametrize(("changes", "message"), [
    ({"schedule": "99999999999999999999h"}, "streams app: schedule: cannot be used"),
    ({"schedule": "0 0 31 2 *"}, "never fires"),
    ({"platform": "linux"}, "streams app: cannot be used: invalid platform"),
    ({"semver": "not a range"}, "not an npm-style version range"),
])
def test_what_could_not_run_is_a_config_error_naming_what(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=r"mirrord\.yaml") as caught:
        check_buildable(with_stream(**changes))
    assert message in str(caught.value)


def test_an_unusable_pruner_age_is_refused() -> None:
    base = config()
    pruning = dataclasses.replace(base.pruning, keep_younger_than=1e300)
    with pytest.raises(ConfigError, match="keepYoungerThanDuration"):
        check_buildable(dataclasses.replace(base, pruning=pruning))

"""``verify_every:``: how often the daemon HEADs every mirror tag (issue 17)."""

from __future__ import annotations

import pytest

from mirrord.config import Config, parse_config
from mirrord.errors import ConfigError

FILE = "/etc/mirrord/mirrord.yaml"


def parse(extra: str) -> Config:
    return parse_config(f"version: 1\n{extra}", FILE)


def test_verify_every_defaults_to_a_day_and_takes_a_duration_or_zero() -> None:
    assert parse("").verify_every == 86400.0
    assert parse("verify_every: 6h\n").verify_every == 6 * 3600.0
    assert parse("verify_every: 0s\n").verify_every == 0.0


@pytest.mark.parametrize("bad", ["30s", "721h", "-1h", "often", "[1]"])
def test_verify_every_out_of_range_or_malformed_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match=f"^{FILE}:2: verify_every: "):
        parse(f"verify_every: {bad}\n")

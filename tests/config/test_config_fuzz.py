"""Mutation fuzzing of the configuration loader (issue 10), with a fixed seed.

Hypothesis mutates valid configurations (the shipped examples and a compact one using
every section): it inserts hostile characters and YAML syntax, deletes and duplicates
spans, swaps values for the ones issue 10 found (huge numbers, control characters,
device paths, impossible schedules), and nests flow lists. Each mutant must

- load as a Config, or fail as a ConfigError that names the file (and, but for a few
  whole-file errors, the line): never another exception;
- do so within a time bound;
- when it loads, survive what `sync` and the daemon build from it
  (:func:`mirrord.sync.check_buildable`: schedules and their next fire time, platforms,
  the selection regexes on a sample tag list, every registry's options) and the
  selection on hostile tag names.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness.hostile_images import WEIRD_TAGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirrord.config import Config, parse_config
from mirrord.core.selection import select_tags, split_invalid, wanted_invalid
from mirrord.errors import ConfigError
from mirrord.sync import check_buildable

REPO = Path(__file__).resolve().parents[2]
FILE = Path("/etc/mirrord/fuzz.yaml")
TIME_BOUND = 2.0  # seconds for one mutant: parse and build

COMPACT = """\
version: 1
mirror: docker://127.0.0.1:5000/mirror
state_dir: /var/lib/mirrord
registries:
  127.0.0.1:5000:
    insecure: true
    rate: 5
    max_concurrency: 4
    request_timeout: 30s
    stall_timeout: 10
    min_transfer_rate: 2KiB
  quay.io:
    auth_file: /etc/mirrord/auth.json
    ca_file: ca.pem
limits:
  max_manifest_size: 4MiB
  max_layers: 100
  max_index_depth: 2
  max_tag_pages: 10
defaults:
  schedule: "*/5 * * * *"
  max_tags: 5
streams:
  - from: quay.io/prometheus/node-exporter
    include: ['^v1\\.\\d+$']
    exclude: ['-rc']
    semver: ">=1.0.0"
    newest: 3
    schedule: 1h
    import_mode: Legacy
    platform: linux/arm64
  - from: 127.0.0.1:5000/app
    to: apps/app
    tags: [latest, "1.0"]
    pinned: [sha256:2f6a3b1f4c8f0e2a7a5d8a5d0b2c7e1f9c3b6a4d8e2f1a0b9c8d7e6f5a4b3c2d]
notifications:
  - url: https://hooks.example/x
    timeout: 5
  - command: [/bin/true]
server:
  listen: 127.0.0.1:9464
pruning:
  schedule: 0 0 * * *
  keepTagRevisions: 2
  keepYoungerThanDuration: 90m
"""
BASES = [
    COMPACT,
    (REPO / "config" / "mirrord.yaml").read_text(),
    (REPO / "config" / "minimal.yaml").read_text(),
]

HOSTILE_VALUES = [
    "99999999999999999999h", "0 0 31 2 *", "1.0e-308", "1.0e+308", "-1", "0", "9" * 400,
    "'a{99999999999}'", "'(' ", '"\\0"', '"\\x01"', "/dev/zero", "/dev/urandom",
    "127.0.0.1:99999/x", "'" + "a" * 300 + "'", "~", "[]", "{}", "null", "*x", "&x a",
    "!!python/object:os.system", "'\\u0000'", "0x7fffffffffffffff", ".inf", ".nan",
    "2001-01-01", "yes", "'sha256:/etc/passwd'", "'../../etc'", "1KiB", "1TiB", "5 MB",
    "'" + "(" * 200 + ")" * 200 + "'", "'[a-'", "'\\ud800'", "oci:", "docker://",
]
INSERTIONS = st.sampled_from(
    ["\x00", "\x01", "\x1b", "\x7f", "\t", "\n", "\r", "\ufeff", "\u2028", "\ud7ff",
     "[", "]", "{", "}", ":", ": ", "- ", "&a ", "*a", "!!str ", "%YAML 1.1\n", "---\n",
     "<<: *a\n", "'", '"', "#", "|\n", ">\n", ",", "?", "@", "`", "\\", "é", "日本"]
) | st.text(min_size=1, max_size=8)


@st.composite
def mutants(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(BASES))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "duplicate", "value", "nest"]))
        at = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:at] + draw(INSERTIONS) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif kind == "duplicate":
            end = at + draw(st.integers(1, 200))
            text = text[:end] + text[at:end] + text[end:]
        elif kind == "value":
            colon = text.find(": ", at)
            if colon >= 0:
                eol = text.find("\n", colon)
                eol = len(text) if eol < 0 else eol
                text = text[: colon + 2] + draw(st.sampled_from(HOSTILE_VALUES)) + text[eol:]
        else:
            depth = draw(st.sampled_from([10, 200, 1000, 5000]))
            text = text[:at] + "[" * depth + "]" * depth + text[at:]
    return text


def _built(config: Config) -> None:
    """What a run and the daemon build, and the selection on hostile upstream names."""
    check_buildable(config)
    valid, invalid = split_invalid([*WEIRD_TAGS, "latest", "1.0", "v1.2.3"])
    for stream in config.streams:
        select_tags(valid, stream)
        wanted_invalid(invalid, stream)


WHOLE_FILE = ("invalid YAML", "nested too deeply", "the file is empty")


@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutants())
def test_a_mutated_configuration_loads_or_names_the_file_and_line(text: str) -> None:
    started = time.monotonic()
    try:
        config = parse_config(text, FILE)
    except ConfigError as error:
        assert error.file == str(FILE), str(error)
        assert error.line is not None or any(w in str(error) for w in WHOLE_FILE), str(error)
    else:
        try:
            _built(config)
        except ConfigError as error:  # refused like a file that does not load: fine
            assert error.file == str(FILE)
    assert time.monotonic() - started < TIME_BOUND, f"{time.monotonic() - started:.1f}s"


@pytest.mark.parametrize("base", BASES, ids=["compact", "example", "minimal"])
def test_the_unmutated_bases_load_and_build(base: str) -> None:
    _built(parse_config(base, FILE))

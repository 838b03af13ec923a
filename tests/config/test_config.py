from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrord.cli import main
from mirrord.config import (
    Config,
    Defaults,
    MirrorTarget,
    NotificationConfig,
    PruningConfig,
    RegistryConfig,
    ServerConfig,
    _locate,
    _parse,
    _pruning,
    _registries,
    default_config_path,
    default_state_dir,
    embedded_default_config,
    load_config,
    load_config_or_embedded,
    missing_file_warnings,
    parse_config,
)
from mirrord.core.schedule import parse_duration, schedule_interval, validate_cron
from mirrord.errors import ConfigError

FILE = "/etc/mirrord/mirrord.yaml"
REPO = Path(__file__).resolve().parents[2]

# DESIGN.md's "Configuration (version 1)" example, verbatim (one comment shortened).
DESIGN_EXAMPLE = r"""
version: 1
mirror: docker://mirror.example.internal:5000/mirror   # or oci:/path (default: oci:<state_dir>/oci)
state_dir: /var/lib/mirrord                             # SQLite state lives here
registries:                     # per host[:port]: sources and the mirror alike
  registry.redhat.io:
    auth_file: /etc/mirrord/pull-secret.json   # containers auth.json / pull-secret format
  127.0.0.1:5101:
    insecure: true              # plain HTTP (also: tls_verify: false, ca_file: PATH)
    max_concurrency: 8
defaults:
  schedule: "*/15 * * * *"      # cron, or "15m" for an interval
  import_mode: PreserveOriginal # or Legacy (one platform, chosen by `platform`)
  max_tags: 50                  # bulk limit when a stream selects all tags; -1 = unlimited
streams:
  - from: registry.redhat.io/ubi9/ubi          # source repository
    to: ubi9/ubi                               # mirror path under the mirror prefix
    tags: ["9.4", latest]                      # explicit tags, or a selection:
  - from: quay.io/prometheus/node-exporter
    include: ['^v1\.\d+\.\d+$']
    exclude: ['-rc']
    semver: ">=1.6.0"
    newest: 5
  - from: docker.io/library/nginx
    max_tags: -1                               # every tag
notifications:
  - url: https://hooks.example.internal/mirrord  # POST one JSON event per changed tag
    secret_file: /etc/mirrord/webhook.key          # HMAC-SHA256 signature header
  - command: [/usr/local/bin/on-new-image]         # the event on stdin
server:
  listen: 127.0.0.1:9464        # daemon's /healthz /readyz /metrics /api/v1 (loopback by default)
  token_file: /etc/mirrord/api.token              # required by mutating endpoints
pruning:
  schedule: "0 0 * * *"
  suspend: false
  keepTagRevisions: 3
  keepYoungerThanDuration: 60m
  pruneRegistry: true
  successfulJobsHistoryLimit: 3
  failedJobsHistoryLimit: 3
"""


def parse(text: str, path: str = FILE) -> Config:
    return parse_config(textwrap.dedent(text), path)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MIRRORD_CONFIG", "STATE_DIRECTORY", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(_locate, "_is_root", lambda: False)


# --- the documented example -------------------------------------------------


def test_design_example_parses_as_written() -> None:
    cfg = parse(DESIGN_EXAMPLE)
    assert cfg.path == Path(FILE)
    assert cfg.mirror == MirrorTarget("registry", "mirror.example.internal:5000", "mirror")
    assert cfg.state_dir == Path("/var/lib/mirrord")
    assert cfg.registries == {
        "registry.redhat.io": RegistryConfig(auth_file=Path("/etc/mirrord/pull-secret.json")),
        "127.0.0.1:5101": RegistryConfig(insecure=True, max_concurrency=8),
    }
    assert cfg.defaults == Defaults(schedule="*/15 * * * *")
    ubi, node, nginx = cfg.streams
    assert (ubi.name, ubi.source, ubi.to, ubi.tags) == (
        "ubi9/ubi",
        "registry.redhat.io/ubi9/ubi",
        "ubi9/ubi",
        ("9.4", "latest"),
    )
    assert node.name == "prometheus/node-exporter"
    assert [p.pattern for p in node.include] == [r"^v1\.\d+\.\d+$"]
    assert [p.pattern for p in node.exclude] == ["-rc"]
    assert (node.semver, node.newest, node.tags) == (">=1.6.0", 5, None)
    assert (nginx.name, nginx.source, nginx.max_tags) == (
        "library/nginx",
        "docker.io/library/nginx",
        -1,
    )
    assert cfg.notifications == (
        NotificationConfig(
            url="https://hooks.example.internal/mirrord",
            secret_file=Path("/etc/mirrord/webhook.key"),
        ),
        NotificationConfig(command=("/usr/local/bin/on-new-image",)),
    )
    assert cfg.server == ServerConfig("127.0.0.1:9464", Path("/etc/mirrord/api.token"))
    assert cfg.pruning == PruningConfig()


@pytest.mark.parametrize("name", ["mirrord.yaml", "minimal.yaml"])
def test_shipped_examples_parse(name: str) -> None:
    cfg = load_config(REPO / "config" / name)
    assert cfg.streams


def test_shipped_example_uses_every_key() -> None:
    text = (REPO / "config" / "mirrord.yaml").read_text()
    keys = set(_parse._TOP_KEYS) | set(_parse._STREAM_KEYS)
    keys |= set(_registries._REGISTRY) | set(_registries._LIMITS) | {"default"}
    keys |= {"url", "secret_file", "command", "timeout", "events", "listen", "token_file"}
    keys |= set(_pruning._PRUNING)
    missing = [k for k in keys if f"{k}:" not in text]
    assert missing == []


def test_full_example_stream_overrides() -> None:
    cfg = load_config(REPO / "config" / "mirrord.yaml")
    node = cfg.stream("prometheus/node-exporter")
    assert (node.schedule, node.import_mode, node.platform) == ("1h", "Legacy", "linux/arm64")
    assert (node.reference_policy, node.signatures, node.delete_removed_tags) == (
        "Local",
        False,
        True,
    )
    assert cfg.registry_config("registry.redhat.io").rate == 20.0
    assert cfg.notifications[1].command == ("/usr/local/bin/on-new-image", "--quiet")


# --- defaults and inheritance -----------------------------------------------


def test_minimal_config_defaults(tmp_path: Path) -> None:
    cfg = parse("""\
        version: 1
        streams:
          - from: quay.io/a/b
        """)
    assert cfg.state_dir == tmp_path / "home" / ".local" / "share" / "mirrord"
    assert cfg.mirror == MirrorTarget("oci", path=cfg.state_dir / "oci")
    assert cfg.defaults == Defaults()
    assert cfg.defaults.schedule == "15m" and cfg.defaults.max_tags == 50
    assert cfg.server.listen == "127.0.0.1:9464"
    assert cfg.pruning.keep_younger_than == 3600.0
    stream = cfg.streams[0]
    assert (stream.max_tags, stream.import_mode, stream.platform) == (
        50,
        "PreserveOriginal",
        "linux/amd64",
    )
    assert (stream.reference_policy, stream.signatures, stream.delete_removed_tags) == (
        "Source",
        True,
        False,
    )


def test_streams_inherit_defaults_and_may_override() -> None:
    cfg = parse("""\
        version: 1
        defaults:
          schedule: 1h
          import_mode: legacy
          max_tags: 10
          platform: linux/arm64/v8
          reference_policy: local
          signatures: false
          delete_removed_tags: true
        streams:
          - from: quay.io/a/inherits
          - from: quay.io/a/overrides
            schedule: "0 * * * *"
            import_mode: PreserveOriginal
            max_tags: -1
            platform: linux/s390x
            reference_policy: Source
            signatures: true
            delete_removed_tags: false
        """)
    inherits, overrides = cfg.streams
    assert (inherits.schedule, inherits.import_mode, inherits.max_tags) == ("1h", "Legacy", 10)
    assert (inherits.platform, inherits.reference_policy) == ("linux/arm64/v8", "Local")
    assert (inherits.signatures, inherits.delete_removed_tags) == (False, True)
    assert (overrides.schedule, overrides.import_mode, overrides.max_tags) == (
        "0 * * * *",
        "PreserveOriginal",
        -1,
    )
    assert (overrides.platform, overrides.reference_policy) == ("linux/s390x", "Source")
    assert (overrides.signatures, overrides.delete_removed_tags) == (True, False)


@pytest.mark.parametrize(
    ("source", "normalised", "name"),
    [
        ("docker.io/library/nginx", "docker.io/library/nginx", "library/nginx"),
        ("nginx", "docker.io/library/nginx", "library/nginx"),
        ("index.docker.io/bitnami/redis", "docker.io/bitnami/redis", "bitnami/redis"),
        ("localhost:5000/team/app", "localhost:5000/team/app", "team/app"),
        ("Quay.IO/a/b", "quay.io/a/b", "a/b"),
    ],
)
def test_source_normalised_and_name_defaults_to_path(
    source: str, normalised: str, name: str
) -> None:
    stream = parse(f"version: 1\nstreams:\n  - from: {source}\n").streams[0]
    assert (stream.source, stream.name, stream.to) == (normalised, name, name)
    assert stream.source_registry == normalised.split("/")[0]
    assert stream.source_repository == name


def test_unquoted_version_tags_keep_their_text() -> None:
    stream = parse("version: 1\nstreams:\n  - from: a.io/b\n    tags: [9.10, 1.0, 8]\n").streams[0]
    assert stream.tags == ("9.10", "1.0", "8")


def test_single_string_for_list_keys() -> None:
    stream = parse("version: 1\nstreams:\n  - from: a.io/b\n    include: '^v'\n").streams[0]
    assert [p.pattern for p in stream.include] == ["^v"]


def test_empty_sections_are_empty() -> None:
    cfg = parse("version: 1\nregistries:\ndefaults:\nstreams:\nnotifications:\npruning:\n")
    assert (cfg.registries, cfg.streams, cfg.notifications) == ({}, (), ())
    assert cfg.pruning == PruningConfig()


def test_yaml_anchors_and_merge_keys() -> None:
    cfg = parse("""\
        version: 1
        streams:
          - &base
            from: quay.io/a/one
            schedule: 2h
          - <<: *base
            from: quay.io/a/two
        """)
    assert [(s.name, s.schedule) for s in cfg.streams] == [("a/one", "2h"), ("a/two", "2h")]


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    cfg = parse(
        """\
        version: 1
        mirror: oci:layout
        state_dir: state
        registries:
          quay.io: {auth_file: auth.json, ca_file: ~/ca.pem}
        """,
        str(tmp_path / "mirrord.yaml"),
    )
    assert cfg.mirror == MirrorTarget("oci", path=tmp_path / "layout")
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.registries["quay.io"].auth_file == tmp_path / "auth.json"
    assert cfg.registries["quay.io"].ca_file == tmp_path / "home" / "ca.pem"


# --- mirror target and registries -------------------------------------------


@pytest.mark.parametrize(
    ("text", "target", "repo"),
    [
        (
            "docker://mirror.internal:5000/mirror",
            MirrorTarget("registry", "mirror.internal:5000", "mirror"),
            "mirror/ubi9/ubi",
        ),
        (
            "docker://Mirror.Internal/a/b/",
            MirrorTarget("registry", "mirror.internal", "a/b"),
            "a/b/ubi9/ubi",
        ),
        ("docker://127.0.0.1:5000", MirrorTarget("registry", "127.0.0.1:5000", ""), "ubi9/ubi"),
        ("oci:/srv/mirror", MirrorTarget("oci", path=Path("/srv/mirror")), "ubi9/ubi"),
    ],
)
def test_mirror_target(text: str, target: MirrorTarget, repo: str) -> None:
    cfg = parse(f"version: 1\nmirror: {text}\n")
    assert cfg.mirror == target
    assert cfg.mirror.repository("ubi9/ubi") == repo


def test_mirror_target_str() -> None:
    assert str(MirrorTarget("registry", "m:5000", "mirror")) == "docker://m:5000/mirror"
    assert str(MirrorTarget("registry", "m:5000", "")) == "docker://m:5000"
    assert str(MirrorTarget("oci", path=Path("/srv/x"))) == "oci:/srv/x"


def test_registry_config_lookup() -> None:
    cfg = parse("""\
        version: 1
        registries:
          Registry.RedHat.io: {max_concurrency: 2, rate: 0.5, tls_verify: false}
          index.docker.io: {max_concurrency: 3}
        """)
    assert cfg.registry_config("registry.redhat.io") == RegistryConfig(
        max_concurrency=2, rate=0.5, tls_verify=False
    )
    assert cfg.registry_config("REGISTRY.REDHAT.IO").max_concurrency == 2
    assert cfg.registry_config("registry-1.docker.io").max_concurrency == 3
    assert cfg.registry_config("docker.io").max_concurrency == 3
    assert cfg.registry_config("quay.io") == RegistryConfig()
    assert RegistryConfig().max_concurrency == 6


def test_retry_budgets_and_the_pull_floor_per_registry_and_by_default() -> None:
    cfg = parse("""\
        version: 1
        registries:
          docker.io: {ratelimit_min: 25}
          default: {retry_budget: 10m, outage_budget: 90s}
          127.0.0.1:5000: {outage_budget: "0"}
        """)
    assert RegistryConfig().retry_budget == 300 and RegistryConfig().outage_budget == 120
    assert RegistryConfig().ratelimit_min == 10
    hub = cfg.registry_config("docker.io")
    assert (hub.retry_budget, hub.outage_budget, hub.ratelimit_min) == (600, 90, 25)
    mirror = cfg.registry_config("127.0.0.1:5000")
    assert (mirror.retry_budget, mirror.outage_budget) == (600, 0)  # "0": no retries
    assert cfg.registry_config("quay.io") == RegistryConfig(retry_budget=600, outage_budget=90)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("retry_budget: 25h", r'registries\["quay\.io"\]\.retry_budget: at most 24h'),
        ("outage_budget: 5", r"outage_budget: .*invalid duration"),
        ("ratelimit_min: -1", r"ratelimit_min: must be 0 or more"),
        ("retry_budgt: 5m", r"did you mean 'retry_budget'"),
    ],
)
def test_retry_settings_are_checked(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(f"version: 1\nregistries:\n  quay.io: {{{entry}}}\n")


def test_stream_lookup() -> None:
    cfg = parse("version: 1\nstreams:\n  - from: quay.io/a/node-exporter\n")
    assert cfg.stream("a/node-exporter").source == "quay.io/a/node-exporter"
    with pytest.raises(ConfigError, match="did you mean 'a/node-exporter'"):
        cfg.stream("a/node-exportr")


def test_notification_repr_hides_the_url() -> None:
    note = NotificationConfig(url="https://hooks.example/services/T0/B0/SECRETTOKEN")
    assert "SECRETTOKEN" not in repr(note)


def test_server_host_and_port() -> None:
    assert (ServerConfig().host, ServerConfig().port) == ("127.0.0.1", 9464)
    server = parse("version: 1\nserver:\n  listen: '[::1]:8080'\n").server
    assert (server.host, server.port) == ("::1", 8080)


def test_notification_events_choose_what_a_receiver_gets() -> None:
    cfg = parse_config(
        "version: 1\nnotifications:\n  - url: https://h.example/x\n    events: push\n"
        "  - command: [true]\n",
        FILE,
    )
    assert [n.events for n in cfg.notifications] == [
        ("push",), ("push", "cluster-resources.changed")]
    with pytest.raises(ConfigError, match=r"notifications\[0\]\.events\[0\]: unknown event 'pull'"):
        parse_config("version: 1\nnotifications:\n  - command: [x]\n    events: [pull]\n", FILE)


def test_notification_timeout_forms() -> None:
    cfg = parse("""\
        version: 1
        notifications:
          - {command: [a], timeout: 2.5}
          - {command: [b], timeout: 1m}
        """)
    assert [n.timeout for n in cfg.notifications] == [2.5, 60.0]


# --- pruning and time ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60m", 3600),
        ("1h30m", 5400),
        ("90s", 90),
        ("1.5h", 5400),
        ("500ms", 0.5),
        ("2h45m30s", 9930),
        ("0", 0),
        ("1us", 1e-6),
        ("1µs", 1e-6),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["60", "1d", "", "-5m", "1h 30m", "m", "1.2.3s", "5 m"])
def test_go_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_pruning_keys() -> None:
    cfg = parse("""\
        version: 1
        pruning:
          schedule: 6h
          suspend: true
          keepTagRevisions: 0
          keepYoungerThanDuration: 1h30m
          pruneRegistry: false
          successfulJobsHistoryLimit: 1
          failedJobsHistoryLimit: 5
        """)
    assert cfg.pruning == PruningConfig("6h", True, 0, 5400.0, False, 1, 5)


def test_pruning_keys_have_snake_case_aliases() -> None:
    cfg = parse("""\
        version: 1
        pruning:
          keep_tag_revisions: 0
          keep_younger_than_duration: 1h30m
          prune_registry: false
          successful_jobs_history_limit: 1
          failedJobsHistoryLimit: 5
        """)
    assert cfg.pruning == PruningConfig("0 0 * * *", False, 0, 5400.0, False, 1, 5)
    assert parse("version: 1\npruning:\n  keep_younger_than: 60000000000\n").pruning \
        .keep_younger_than == 60.0


def test_both_spellings_of_one_pruning_key_name_both_lines() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("version: 1\npruning:\n  keepTagRevisions: 3\n  suspend: true\n"
              "  keep_tag_revisions: 2\n")
    error = caught.value
    assert error.line == 5 and error.key == "pruning.keep_tag_revisions"
    assert "`keep_tag_revisions` and `keepTagRevisions` are the same setting" in str(error)
    assert "lines 3 and 5" in str(error)


def test_deprecated_keep_younger_than_nanoseconds() -> None:
    cfg = parse("version: 1\npruning:\n  keepYoungerThan: 90000000000\n")
    assert cfg.pruning.keep_younger_than == 90.0


def test_keep_younger_than_duration_wins_over_deprecated() -> None:
    cfg = parse("version: 1\npruning:\n  keepYoungerThan: 1\n  keepYoungerThanDuration: 2m\n")
    assert cfg.pruning.keep_younger_than == 120.0


D1 = "sha256:" + "a" * 64
D2 = "sha512:" + "b" * 128


def test_pinned_digests_per_stream() -> None:
    cfg = parse(f"""\
        version: 1
        streams:
          - from: quay.io/a/b
            pinned: [{D1}, {D2}]
          - from: quay.io/c/d
            pinned: {D1}
          - from: quay.io/e/f
        """)
    assert [s.pinned for s in cfg.streams] == [(D1, D2), (D1,), ()]


def test_shipped_example_pins_a_digest() -> None:
    cfg = load_config(REPO / "config" / "mirrord.yaml")
    assert cfg.stream("ubi9/ubi").pinned[0].startswith("sha256:")


@pytest.mark.parametrize(
    ("value", "line", "key", "fragment"),
    [
        ("[sha256:abc]", 4, "streams[0].pinned[0]", "invalid digest 'sha256:abc'"),
        (f"[{D1.upper()}]", 4, "streams[0].pinned[0]", "lower-case hex"),
        ("['quay.io/a/b@" + D1 + "']", 4, "streams[0].pinned[0]", "invalid digest"),
        (f"\n      - {D1}\n      - {D1}", 6, "streams[0].pinned[1]", "pinned twice (also line 5)"),
        ("{a: 1}", 4, "streams[0].pinned", "expected a list"),
        ("[7]", 4, "streams[0].pinned[0]", "invalid digest '7'"),
    ],
)
def test_pinned_errors_name_file_line_and_key(
    value: str, line: int, key: str, fragment: str
) -> None:
    text = f"version: 1\nstreams:\n  - from: quay.io/a/b\n    pinned: {value}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    assert str(info.value).startswith(f"{FILE}:{line}: {key}: "), str(info.value)
    assert fragment in str(info.value)


def test_pinned_is_not_a_default_or_pruning_key() -> None:
    with pytest.raises(ConfigError, match=r"defaults\.pinned: unknown key"):
        parse_config(f"version: 1\ndefaults:\n  pinned: [{D1}]\n", FILE)


@pytest.mark.parametrize(
    "expr",
    [
        "* * * * *",
        "*/15 * * * *",
        "0 0 * * *",
        "0,30 8-18 * * mon-fri",
        "5 4 1 jan,jul sun",
        "0 0 1-31/2 * 7",
        "59 23 31 12 6",
    ],
)
def test_cron_valid(expr: str) -> None:
    validate_cron(expr)
    assert schedule_interval(expr) is None


@pytest.mark.parametrize(
    "expr",
    [
        "* * * *",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "5-1 * * * *",
        "*/0 * * * *",
        "*-5 * * * *",
        "a * * * *",
        "1,,2 * * * *",
        "* * * foo *",
        # steps wider than their range: APScheduler refuses them, so must the config
        "0 */30 * * *",
        "*/100 * * * *",
        "0 0 */40 * *",
        "5-10/7 * * * *",
        "0 0 * * */7",
    ],
)
def test_cron_invalid(expr: str) -> None:
    with pytest.raises(ValueError):
        validate_cron(expr)


def test_schedule_interval() -> None:
    assert schedule_interval("15m") == 900.0
    assert schedule_interval("1h30m") == 5400.0


# --- paths and the embedded default ----------------------------------------


def test_default_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_config_path() == tmp_path / "home" / ".config" / "mirrord" / "mirrord.yaml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_config_path() == tmp_path / "xdg" / "mirrord" / "mirrord.yaml"
    monkeypatch.setattr(_locate, "_is_root", lambda: True)
    assert default_config_path() == Path("/etc/mirrord/mirrord.yaml")
    monkeypatch.setenv("MIRRORD_CONFIG", str(tmp_path / "x.yaml"))
    assert default_config_path() == tmp_path / "x.yaml"


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_state_dir() == tmp_path / "home" / ".local" / "share" / "mirrord"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_state_dir() == tmp_path / "data" / "mirrord"
    monkeypatch.setattr(_locate, "_is_root", lambda: True)
    assert default_state_dir() == Path("/var/lib/mirrord")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/mirrord-svc:/var/lib/other")
    assert default_state_dir() == Path("/var/lib/mirrord-svc")


def test_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/mirrord")
    cfg = embedded_default_config()
    assert cfg.path is None
    assert cfg.state_dir == Path("/var/lib/mirrord")
    assert cfg.mirror == MirrorTarget("oci", path=Path("/var/lib/mirrord/oci"))
    (stream,) = cfg.streams
    assert (stream.source, stream.name, stream.tags) == (
        "registry.access.redhat.com/ubi9/ubi-micro",
        "ubi9/ubi-micro",
        ("latest",),
    )


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("version: 1\nstreams:\n  - from: quay.io/a/b\n")
    assert load_config(path).streams[0].name == "a/b"
    assert load_config(str(path)).path == path


def test_load_config_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("version: 1\n")
    monkeypatch.setenv("MIRRORD_CONFIG", str(path))
    assert load_config().path == path


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)
    assert info.value.file == str(path)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"version: 1\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:2: not UTF-8"):
        load_config(path)


def test_load_config_or_embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_config_or_embedded().path is None  # nothing configured: quick start
    default = tmp_path / "home" / ".config" / "mirrord" / "mirrord.yaml"
    default.parent.mkdir(parents=True)
    default.write_text("version: 1\n")
    assert load_config_or_embedded().path == default
    with pytest.raises(ConfigError, match="not found"):
        load_config_or_embedded(tmp_path / "explicit.yaml")
    monkeypatch.setenv("MIRRORD_CONFIG", str(tmp_path / "env.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        load_config_or_embedded()


# --- errors: every one names the file, the line and the key path ------------

ERRORS = [
    # (yaml, line, key, fragment of the message)
    ("version: 1\nstreams:\n  - from: a/b\n   to: x\n", 4, "", "invalid YAML"),
    ("version: 1\n\tstreams: []\n", 2, "", "invalid YAML"),
    ("version: 1\n---\nversion: 1\n", 2, "", "single document"),
    ("- a\n- b\n", 1, "", "expected a mapping, got a list"),
    ("streams: []\n", 1, "version", "missing `version:`"),
    ("version: 2\n", 1, "version", "unsupported version 2"),
    ("version: '1'\n", 1, "version", "expected an integer, got a string"),
    ("version: 1\nversion: 1\n", 2, "version", "duplicate key 'version' (first on line 1)"),
    ("version: 1\nstream: []\n", 2, "stream", "did you mean 'streams'?"),
    ("version: 1\nmirorr: x\n", 2, "mirorr", "did you mean 'mirror'?"),
    ("version: 1\nbogus: 1\n", 2, "bogus", "expected one of"),
    ("version: 1\nmirror: registry.local/x\n", 2, "mirror", "docker://HOST[:PORT]/PREFIX"),
    ("version: 1\nmirror: docker://h:5000/UP\n", 2, "mirror", "invalid mirror prefix"),
    ("version: 1\nmirror: docker://bad_host/x\n", 2, "mirror", "invalid registry host"),
    ("version: 1\nmirror: 'oci:'\n", 2, "mirror", "oci:/PATH"),
    ("version: 1\nstate_dir: [a]\n", 2, "state_dir", "expected a string, got a list"),
    ("version: 1\nregistries: [a]\n", 2, "registries", "expected a mapping"),
    (
        "version: 1\nregistries:\n  https://quay.io: {}\n",
        3,
        'registries["https://quay.io"]',
        "no scheme",
    ),
    (
        "version: 1\nregistries:\n  quay.io:\n    insecure: yes please\n",
        4,
        'registries["quay.io"].insecure',
        "expected true or false, got a string",
    ),
    (
        "version: 1\nregistries:\n  quay.io:\n    max_concurrency: 0\n",
        4,
        'registries["quay.io"].max_concurrency',
        "must be 1 or more",
    ),
    (
        "version: 1\nregistries:\n  quay.io:\n    rate: -1\n",
        4,
        'registries["quay.io"].rate',
        "positive number",
    ),
    (
        "version: 1\nregistries:\n  quay.io:\n    max_concurency: 3\n",
        4,
        'registries["quay.io"].max_concurency',
        "did you mean 'max_concurrency'?",
    ),
    (
        "version: 1\nregistries:\n  quay.io: {}\n  QUAY.io: {}\n",
        4,
        'registries["QUAY.io"]',
        "same registry as line 3",
    ),
    ("version: 1\ndefaults:\n  schedule: 15 minutes\n", 3, "defaults.schedule", "5 fields"),
    (
        "version: 1\ndefaults:\n  schedule: '*/15 * * * mon-xyz'\n",
        3,
        "defaults.schedule",
        "day of week",
    ),
    ("version: 1\ndefaults:\n  schedule: 0s\n", 3, "defaults.schedule", "at least 1s"),
    (
        "version: 1\ndefaults:\n  import_mode: Preserve\n",
        3,
        "defaults.import_mode",
        "PreserveOriginal, Legacy",
    ),
    (
        "version: 1\ndefaults:\n  reference_policy: remote\n",
        3,
        "defaults.reference_policy",
        "Source, Local",
    ),
    ("version: 1\ndefaults:\n  max_tags: 0\n", 3, "defaults.max_tags", "-1 (unlimited)"),
    ("version: 1\ndefaults:\n  max_tags: -2\n", 3, "defaults.max_tags", "-1 (unlimited)"),
    ("version: 1\ndefaults:\n  max_tags: true\n", 3, "defaults.max_tags", "got a boolean"),
    ("version: 1\ndefaults:\n  max_tags: 5.5\n", 3, "defaults.max_tags", "got a number"),
    ("version: 1\ndefaults:\n  platform: amd64\n", 3, "defaults.platform", "os/arch"),
    ("version: 1\ndefaults:\n  signatures: 1\n", 3, "defaults.signatures", "true or false"),
    ("version: 1\ndefaults:\n  from: x\n", 3, "defaults.from", "unknown key 'from'"),
    ("version: 1\nstreams: {from: a}\n", 2, "streams", "expected a list"),
    ("version: 1\nstreams:\n  - to: a/b\n", 3, "streams[0].from", "missing `from:`"),
    (
        "version: 1\nstreams:\n  - from: a.io/b\n  - to: x\n",
        4,
        "streams[1].from",
        "missing `from:`",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b:1.0\n",
        3,
        "streams[0].from",
        "tags go under `tags:`",
    ),
    ("version: 1\nstreams:\n  - from: quay.io/A/b\n", 3, "streams[0].from", "lowercase"),
    ("version: 1\nstreams:\n  - from: https://quay.io/a/b\n", 3, "streams[0].from", "scheme"),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n    to: /abs\n",
        4,
        "streams[0].to",
        "invalid repository path",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n    inclde: [x]\n",
        4,
        "streams[0].inclde",
        "did you mean 'include'?",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n  - from: quay.io/a/c\n    semver: '>>1'\n",
        5,
        "streams[1].semver",
        "invalid semver range",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n    include:\n      - ok\n      - '(['\n",
        6,
        "streams[0].include[1]",
        "invalid regular expression",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n    exclude: '*x'\n",
        4,
        "streams[0].exclude",
        "invalid regular expression",
    ),
    ("version: 1\nstreams:\n  - from: quay.io/a/b\n    tags: []\n", 4, "streams[0].tags", "empty"),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n    tags: [a, 'b c']\n",
        4,
        "streams[0].tags[1]",
        "invalid tag",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n    tags:\n      - a\n      - a\n",
        6,
        "streams[0].tags[1]",
        "listed twice (also line 5)",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n    tags: [a]\n    newest: 3\n",
        5,
        "streams[0].newest",
        "cannot be combined with `tags:`",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n    tags: [a]\n    max_tags: 3\n",
        5,
        "streams[0].max_tags",
        "cannot be combined with `tags:`",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n    newest: 0\n",
        4,
        "streams[0].newest",
        "must be 1 or more",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n    schedule: '61 * * * *'\n",
        4,
        "streams[0].schedule",
        "minute 61 is out of range",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n  - from: docker.io/a/b\n",
        4,
        "streams[1].from",
        "already used by streams[0] (line 3)",
    ),
    (
        "version: 1\nstreams:\n  - from: quay.io/a/b\n  - from: quay.io/c/d\n    to: a/b\n",
        5,
        "streams[1].to",
        "stream name 'a/b' is already used",
    ),
    (
        "version: 1\nnotifications:\n  - secret_file: k\n",
        3,
        "notifications[0]",
        "exactly one of `url:` or `command:`",
    ),
    (
        "version: 1\nnotifications:\n  - {url: 'https://h/', command: [x]}\n",
        3,
        "notifications[0]",
        "exactly one",
    ),
    (
        "version: 1\nnotifications:\n  - command: [x]\n    secret_file: k\n",
        4,
        "notifications[0].secret_file",
        "needs `url:`",
    ),
    (
        "version: 1\nnotifications:\n  - url: ftp://h/x\n",
        3,
        "notifications[0].url",
        "http:// or https://",
    ),
    ("version: 1\nnotifications:\n  - command: []\n", 3, "notifications[0].command", "empty"),
    (
        "version: 1\nnotifications:\n  - command: /bin/x\n",
        3,
        "notifications[0].command",
        "expected a list",
    ),
    (
        "version: 1\nnotifications:\n  - command: [x]\n    timeout: 0\n",
        4,
        "notifications[0].timeout",
        "positive",
    ),
    (
        "version: 1\nnotifications:\n  - command: [x]\n    timeout: soon\n",
        4,
        "notifications[0].timeout",
        "invalid duration",
    ),
    (
        "version: 1\nnotifications:\n  - url: https://h/x\n  - {url: 'https://h/y?t=1'}\n",
        4,
        "notifications[1]",
        "webhook:h names an earlier receiver too",
    ),
    (
        "version: 1\nnotifications:\n  - {command: [a], name: n}\n  - {command: [b], name: n}\n",
        4,
        "notifications[1]",
        "give each of them a distinct `name:`",
    ),
    (
        "version: 1\nnotifications:\n  - command: [x]\n    name: 'on new'\n",
        4,
        "notifications[0].name",
        "letters, digits",
    ),
    ("version: 1\nserver:\n  listen: 9464\n", 3, "server.listen", "HOST:PORT"),
    ("version: 1\nserver:\n  listen: 127.0.0.1:99999\n", 3, "server.listen", "HOST:PORT"),
    ("version: 1\nserver:\n  token: abc\n", 3, "server.token", "credentials never go"),
    (
        "version: 1\npruning:\n  keep_tag_revisions: -1\n",
        3,
        "pruning.keep_tag_revisions",
        "must be 0 or more",
    ),
    (
        "version: 1\npruning:\n  keepTagRevision: 3\n",
        3,
        "pruning.keepTagRevision",
        "did you mean 'keepTagRevisions'?",
    ),
    (
        "version: 1\npruning:\n  keepTagRevisions: -1\n",
        3,
        "pruning.keepTagRevisions",
        "must be 0 or more",
    ),
    (
        "version: 1\npruning:\n  successfulJobsHistoryLimit: 0\n",
        3,
        "pruning.successfulJobsHistoryLimit",
        "must be 1 or more",
    ),
    (
        "version: 1\npruning:\n  failedJobsHistoryLimit: 0\n",
        3,
        "pruning.failedJobsHistoryLimit",
        "must be 1 or more",
    ),
    (
        "version: 1\npruning:\n  keepYoungerThanDuration: 60\n",
        3,
        "pruning.keepYoungerThanDuration",
        "invalid duration '60'",
    ),
    (
        "version: 1\npruning:\n  keepYoungerThanDuration: 1d\n",
        3,
        "pruning.keepYoungerThanDuration",
        "Go syntax",
    ),
    (
        "version: 1\npruning:\n  keepYoungerThan: 1h\n",
        3,
        "pruning.keepYoungerThan",
        "expected an integer",
    ),
    (
        "version: 1\npruning:\n  keepYoungerThan: -5\n",
        3,
        "pruning.keepYoungerThan",
        "must be 0 or more",
    ),
    ("version: 1\npruning:\n  schedule: '0 0 * *'\n", 3, "pruning.schedule", "5 fields"),
    ("version: 1\npruning:\n  suspend: 'no'\n", 3, "pruning.suspend", "true or false"),
]


@pytest.mark.parametrize(("text", "line", "key", "fragment"), ERRORS)
def test_config_errors_name_file_line_and_key(
    text: str, line: int, key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    message = str(info.value)
    assert message.startswith(f"{FILE}:{line}: "), message
    if key:
        assert message.startswith(f"{FILE}:{line}: {key}: "), message
    assert fragment in message, message
    assert (info.value.file, info.value.line, info.value.key) == (FILE, line, key)


def test_empty_file_is_an_error() -> None:
    for text in ("", "# only a comment\n"):
        with pytest.raises(ConfigError, match=r"mirrord\.yaml:1: the file is empty"):
            parse_config(text, FILE)


@pytest.mark.parametrize("key", ["password", "username", "auth", "identitytoken", "Password"])
def test_credentials_under_registries_are_refused(key: str) -> None:
    text = f"version: 1\nregistries:\n  quay.io:\n    {key}: s3cr3t-value\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    message = str(info.value)
    assert message.startswith(f'{FILE}:4: registries["quay.io"].{key}: ')
    assert "auth_file" in message and "mirrord login" in message
    assert "s3cr3t-value" not in message


def test_credentials_in_a_webhook_url_are_refused_without_echoing_them() -> None:
    text = "version: 1\nnotifications:\n  - url: https://bob:s3cr3t-value@hooks.example/x\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    assert str(info.value).startswith(f"{FILE}:3: notifications[0].url: credentials never go")
    assert "s3cr3t-value" not in str(info.value)


def test_errors_in_a_loaded_file_name_that_file(tmp_path: Path) -> None:
    path = tmp_path / "mirrord.yaml"
    path.write_text("version: 1\nstreams:\n  - from: quay.io/a/b\n    semver: nope\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:4: streams[0].semver: ")


def test_block_style_host_errors_point_at_the_key() -> None:
    text = "version: 1\nregistries:\n  https://quay.io:\n    insecure: true\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    assert str(info.value).startswith(f'{FILE}:3: registries["https://quay.io"]: ')


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfversion: 1\n")
    assert load_config(path).streams == ()


def test_missing_auth_and_ca_files_are_warnings_naming_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "present.json").write_text("{}")
    path = tmp_path / "mirrord.yaml"
    path.write_text(
        "version: 1\n"
        "registries:\n"
        "  quay.io:\n"
        "    auth_file: /nonexistent/auth.json\n"
        "  127.0.0.1:5000:\n"
        "    insecure: true\n"
        "    auth_file: present.json\n"
        "    ca_file: certs/ca.pem\n"
    )
    config = load_config(path)
    assert missing_file_warnings(config) == (
        f'{path}:4: registries["quay.io"].auth_file: /nonexistent/auth.json does not exist '
        "on this machine",
        f'{path}:8: registries["127.0.0.1:5000"].ca_file: {tmp_path / "certs" / "ca.pem"} '
        "does not exist on this machine",
    )
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("")
    assert len(missing_file_warnings(config)) == 1
    assert missing_file_warnings(parse_config("version: 1\n", FILE)) == ()  # no such file
    assert missing_file_warnings(embedded_default_config()) == ()


def test_empty_or_missing_token_secret_password_and_policy_files_are_warnings(
    tmp_path: Path,
) -> None:
    (tmp_path / "token").write_text("")
    (tmp_path / "policy.json").write_text('{"default": [{"type": "reject"}]}')
    path = tmp_path / "mirrord.yaml"
    path.write_text(
        "version: 1\n"
        "server:\n"
        "  listen: 127.0.0.1:0\n"
        "  token_file: token\n"
        "notifications:\n"
        "  - url: https://hooks.example.com/x\n"
        "    secret_file: /nonexistent/hook.key\n"
        "policy: policy.json\n"
    )
    config = load_config(path)
    assert missing_file_warnings(config) == (
        f"{path}:4: server.token_file: {tmp_path / 'token'} is empty",
        f"{path}:7: notifications[0].secret_file: /nonexistent/hook.key does not exist on "
        "this machine",
    )
    (tmp_path / "token").write_text("t0ken-value-long-enough-0123456789\n")
    assert len(missing_file_warnings(config)) == 1


def test_validate_prints_the_warnings_and_still_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "mirrord.yaml"
    path.write_text("version: 1\nregistries:\n  quay.io: {auth_file: /nonexistent/auth.json}\n")
    result = CliRunner().invoke(main, ["validate", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f'warning: {path}:3: registries["quay.io"].auth_file: /nonexistent/auth.json does not '
        "exist on this machine\n"
    )
    assert result.stdout.startswith(f"{path}: valid: 0 streams")
    path.write_text("version: 1\n")
    result = CliRunner().invoke(main, ["validate", "--config", str(path)])
    assert (result.exit_code, result.stderr) == (0, "")


def test_validate_warns_about_an_auth_file_it_cannot_read(tmp_path: Path) -> None:
    """Present but unusable: a directory, broken JSON, a JSON list. Readable: no warning."""
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "broken.json").write_text('{"auths": {"quay.io": {"auth": "c2VjcmV0"')
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "good.json").write_text('{"auths": {"r.io": {"auth": "YTpi"}}}')
    path = tmp_path / "mirrord.yaml"
    path.write_text(
        "version: 1\nregistries:\n"
        "  a.io: {auth_file: dir.json}\n"
        "  b.io: {auth_file: broken.json}\n"
        "  c.io: {auth_file: list.json}\n"
        "  r.io: {auth_file: good.json}\n"
    )
    result = CliRunner().invoke(main, ["validate", "--config", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines == [
        f'warning: {path}:3: registries["a.io"].auth_file: {tmp_path / "dir.json"} is not a '
        "regular file",
        f'warning: registries["b.io"].auth_file: {tmp_path / "broken.json"}: invalid JSON: '
        "Expecting ',' delimiter at line 1 column 42 (mirrord cannot use it)",
        f'warning: registries["c.io"].auth_file: {tmp_path / "list.json"}: expected a JSON '
        "object at the top level (mirrord cannot use it)",
    ]
    assert "c2VjcmV0" not in result.output
    assert result.stdout.startswith(f"{path}: valid: 0 streams")


def test_a_registries_key_that_cannot_be_a_host_is_refused_with_a_hint() -> None:
    for name, hint in (("defualt", True), ("myregistry", False)):
        with pytest.raises(ConfigError) as info:
            parse_config(f"version: 1\nregistries:\n  {name}:\n    insecure: true\n", FILE)
        message = str(info.value)
        assert message.startswith(f'{FILE}:3: registries["{name}"]: ')
        assert "not a registry host" in message
        assert ("did you mean 'default'?" in message) is hint
    for host in ("localhost", "localhost:5000", "registry.lab", "10.0.0.1"):
        parse_config(f"version: 1\nregistries:\n  {host}:\n    insecure: true\n", FILE)

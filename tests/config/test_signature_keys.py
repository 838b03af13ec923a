"""The signature keys: registries.<host>.lookaside, lookaside_dir, lookaside_url, policy."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from mirrord.config import parse_config
from mirrord.errors import ConfigError


def _parse(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    return parse_config("version: 1\n" + textwrap.dedent(text), tmp_path / "m.yaml")


def test_the_keys_and_their_defaults(tmp_path: Path) -> None:
    cfg = _parse(tmp_path, """\
        state_dir: state
        registries:
          quay.io: {lookaside: "https://sigs.example/quay/"}
          src.lab: {lookaside: "file:///srv/sigstore"}
        policy:
          default: [{type: reject}]
          transports: {docker: {quay.io: [{type: insecureAcceptAnything}]}}
        """)
    assert cfg.registries["quay.io"].lookaside == "https://sigs.example/quay"
    assert cfg.registries["src.lab"].lookaside == "file:///srv/sigstore"
    assert cfg.signature_dir == tmp_path / "state" / "sigstore"
    assert cfg.policy_text is not None
    assert json.loads(cfg.policy_text)["transports"]["docker"]["quay.io"] == [
        {"type": "insecureAcceptAnything"}]
    assert str(cfg.policy) == f"{tmp_path / 'm.yaml'}:7"  # where the inline policy's text starts
    cfg = _parse(tmp_path, "lookaside_dir: /x/sig\npolicy: ../policy.json\n")
    assert cfg.signature_dir == Path("/x/sig")
    assert cfg.policy == tmp_path / "../policy.json" and cfg.policy_text is None


@pytest.mark.parametrize(("text", "where", "what"), [
    ("registries:\n  q.io: {lookaside: 'ftp://x/y'}\n", 'm.yaml:3: registries["q.io"].lookaside',
     "file:///path, http:// or https://"),
    ("registries:\n  q.io: {lookaside: 'https://u:p@x/y'}\n", "lookaside", "credentials"),
    ("registries:\n  q.io: {lookaside: 'file://host/y'}\n", "lookaside", "absolute path"),
    ("lookaside_url: 'https://x/s?token=1'\n", "m.yaml:2: lookaside_url", "no query"),
    ("policy: [a]\n", "m.yaml:2: policy", "containers-policy.json path"),
    ("policy: {transports: {}}\n", "m.yaml:2: policy.default", "missing `default:`"),
    ("lookaside_di: /x\n", "m.yaml:2: lookaside_di", "did you mean 'lookaside_dir'"),
])
def test_bad_values_name_the_line_and_key(tmp_path: Path, text: str, where: str,
                                          what: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(tmp_path, text)
    message = str(info.value)
    assert where in message and what in message, message
    assert "u:p" not in message


def test_referrers_key_in_defaults_and_streams(tmp_path: Path) -> None:
    cfg = _parse(tmp_path, """\
        defaults: {referrers: true}
        streams:
          - {from: quay.io/a/b, tags: ["1"]}
          - {from: quay.io/a/c, tags: ["1"], referrers: false}
          - from: quay.io/a/d
            tags: ["1"]
            referrers: [application/spdx+json, application/vnd.dev.sigstore.bundle.v0.3+json]
          - {from: quay.io/a/e, tags: ["1"], referrers: application/spdx+json}
        """)
    assert [s.referrers for s in cfg.streams] == [
        (), None, ("application/spdx+json", "application/vnd.dev.sigstore.bundle.v0.3+json"),
        ("application/spdx+json",)]
    assert _parse(tmp_path, "streams: [{from: quay.io/a/b}]\n").streams[0].referrers is None


@pytest.mark.parametrize(("value", "what"), [
    ("[not-a-media-type]", "is not an artifact type"),
    ("['a/b', 'a/b']", "listed twice"),
    ("[]", "expected true, false or a list"),
    ("'x/y z'", "is not an artifact type"),
    ("{a: b}", "expected"),
    ("[" + ", ".join(f"a/t{i}" for i in range(33)) + "]", "more than 32"),
])
def test_bad_referrers_values(tmp_path: Path, value: str, what: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(tmp_path, f"streams:\n  - from: quay.io/a/b\n    referrers: {value}\n")
    message = str(info.value)
    assert "m.yaml:4" in message and "referrers" in message and what in message, message

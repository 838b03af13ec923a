from __future__ import annotations

import re

import pytest

from mirrord.config import parse_config
from mirrord.core.selection import (
    Criteria,
    Selection,
    cosign_tags,
    is_attached_tag,
    is_cosign_tag,
    newest_tags,
    parse_semver_range,
    parse_version,
    prioritize_tags,
    select_tags,
)

DIGEST = "sha256:" + "ab" * 32
SIG = "sha256-" + "ab" * 32 + ".sig"
ATT = "sha256-" + "ab" * 32 + ".att"
SBOM = "sha256-" + "ab" * 32 + ".sbom"


def rx(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


# --- explicit tags ----------------------------------------------------------


def test_explicit_tags_keep_their_order_and_report_missing() -> None:
    result = select_tags(["latest", "9.3", "9.4", "9.5"], Criteria(tags=("9.4", "nope", "latest")))
    assert result == Selection(selected=("9.4", "latest"), missing=("nope",))


def test_explicit_tags_ignore_the_bulk_limit() -> None:
    tags = [f"1.{i}" for i in range(10)]
    result = select_tags(tags, Criteria(tags=tuple(tags), max_tags=2))
    assert result.selected == tuple(tags)
    assert result.left_out == ()


def test_explicit_list_may_name_a_cosign_tag() -> None:
    assert select_tags([SIG, "latest"], Criteria(tags=(SIG,))).selected == (SIG,)


def test_explicit_duplicates_collapse() -> None:
    assert select_tags(["a"], Criteria(tags=("a", "a", "b", "b"))).missing == ("b",)


# --- filters ----------------------------------------------------------------


def test_include_any_and_exclude_none() -> None:
    tags = ["v1.2.3", "v1.3.0-rc1", "v2.0.0", "main", "1.2.3"]
    crit = Criteria(include=rx(r"^v1\.", r"^main$"), exclude=rx("-rc"))
    assert set(select_tags(tags, crit).selected) == {"v1.2.3", "main"}


def test_include_uses_search_not_match() -> None:
    assert select_tags(["foo-alpine", "foo"], Criteria(include=rx("alpine"))).selected == (
        "foo-alpine",
    )


def test_semver_range_reads_v_prefixes_and_partial_versions() -> None:
    tags = ["v1.5.9", "v1.6.0", "1.7", "v2", "latest", "main", "1.8.0-rc.1", "V1.9.1"]
    result = select_tags(tags, Criteria(semver=">=1.6.0 <2.0.0"))
    assert set(result.selected) == {"v1.6.0", "1.7", "V1.9.1"}


def test_semver_range_drops_non_versions_and_prereleases() -> None:
    result = select_tags(["latest", "stable", "2.0.0-beta.1", "2.0.0"], Criteria(semver=">=1"))
    assert result.selected == ("2.0.0",)


def test_semver_range_naming_a_prerelease_matches_it() -> None:
    crit = Criteria(semver=">=2.0.0-beta.0")
    assert set(select_tags(["2.0.0-beta.1", "1.0.0"], crit).selected) == {"2.0.0-beta.1"}


def test_filters_combine_before_newest() -> None:
    tags = ["v1.5.0", "v1.6.0", "v1.7.0", "v1.8.0-rc", "v1.8.0", "v1.9.0", "v2.0.0"]
    crit = Criteria(include=rx(r"^v1\."), exclude=rx("-rc"), semver=">=1.6.0", newest=2)
    assert select_tags(tags, crit).selected == ("v1.9.0", "v1.8.0")


def test_cosign_tags_never_selected_in_bulk() -> None:
    result = select_tags(["latest", SIG, ATT, SBOM], Criteria(max_tags=-1))
    assert result.selected == ("latest",)
    assert result.left_out == ()


def test_referrers_tag_schema_tags_never_selected_in_bulk() -> None:
    fallback = "sha256-" + "a" * 64
    result = select_tags(["latest", fallback, "sha256-" + "b" * 63], Criteria(max_tags=-1))
    assert result.selected == ("latest", "sha256-" + "b" * 63)  # 63 hex: an ordinary tag
    assert is_attached_tag(fallback) and is_attached_tag(SIG)
    assert not is_attached_tag("latest") and not is_cosign_tag(fallback)
    assert select_tags([fallback], Criteria(tags=(fallback,))).selected == (fallback,)


def test_duplicate_upstream_tags_are_counted_once() -> None:
    assert select_tags(["a", "a", "b"], Criteria()).selected == ("a", "b")


# --- newest -----------------------------------------------------------------


def test_newest_orders_by_version_then_non_versions_by_name() -> None:
    tags = ["zeta", "1.10.0", "1.9.0", "alpha", "v1.11.0", "1.2"]
    assert newest_tags(tags, 10) == ("v1.11.0", "1.10.0", "1.9.0", "1.2", "alpha", "zeta")
    assert newest_tags(tags, 2) == ("v1.11.0", "1.10.0")


def test_newest_fills_with_non_versions_when_short() -> None:
    assert newest_tags(["b", "a", "1.0"], 2) == ("1.0", "a")


def test_newest_is_numeric_not_lexical() -> None:
    sel = select_tags(["1.9.0", "1.10.0", "1.2.0"], Criteria(newest=1))
    assert sel.selected == ("1.10.0",)


# --- oc ordering and limit -------------------------------------------------


def test_prioritize_tags_like_oc() -> None:
    tags = ["abc", "5.1.3", "v5.1", "latest", "5.2", "5.1.10", "5.1-rc1", "v5.1.3", "5", "zzz"]
    assert prioritize_tags(tags) == (
        "latest",
        "5.2",
        "v5.1",
        "5.1-rc1",
        "5.1.10",
        "5.1.3",
        "v5.1.3",
        "5",
        "abc",
        "zzz",
    )


def test_prioritize_full_versions_use_semver_precedence() -> None:
    tags = ["1.0.0-alpha", "1.0.0", "1.0.0-alpha.1", "1.0.0-beta.11", "1.0.0-beta.2", "1.0.0-rc.1"]
    assert prioritize_tags(tags) == (
        "1.0.0",
        "1.0.0-rc.1",
        "1.0.0-beta.11",
        "1.0.0-beta.2",
        "1.0.0-alpha.1",
        "1.0.0-alpha",
    )


def test_prioritize_strict_semver_only_for_full_versions() -> None:
    # zero-padded versions are no semver: they sort with the other tags
    assert prioritize_tags(["01.2.3", "1.2.3", "1.02"]) == ("1.2.3", "01.2.3", "1.02")


def test_bulk_limit_cuts_after_ordering() -> None:
    tags = [f"1.{i}.0" for i in range(60)] + ["latest", "nightly"]
    result = select_tags(tags, Criteria())
    assert len(result.selected) == 50
    assert result.selected[:3] == ("latest", "1.59.0", "1.58.0")
    assert result.left_out[-1] == "nightly"
    assert len(result.left_out) == 12
    assert set(result.selected) | set(result.left_out) == set(tags)


def test_unlimited_selects_everything() -> None:
    tags = [f"t{i}" for i in range(120)]
    result = select_tags(tags, Criteria(max_tags=-1))
    assert len(result.selected) == 120
    assert result.left_out == ()


def test_small_limit() -> None:
    result = select_tags(["a", "latest", "2.0", "1.0"], Criteria(max_tags=2))
    assert result == Selection(selected=("latest", "2.0"), left_out=("1.0", "a"))


# --- helpers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("9.4", "9.4.0"),
        ("9", "9.0.0"),
        ("v1.2-rc1", "1.2.0-rc1"),
        ("1.2.3-rc.1+build.5", "1.2.3-rc.1+build.5"),
        ("010.2", "10.2.0"),
    ],
)
def test_parse_version_is_lenient(tag: str, expected: str) -> None:
    assert str(parse_version(tag)) == expected


@pytest.mark.parametrize(
    "tag", ["latest", "1.2.3.4", "v", "1.2.3-", "1.2.3-rc..1", "1.2.3-01", "x1"]
)
def test_parse_version_rejects(tag: str) -> None:
    assert parse_version(tag) is None


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        (">=1.6.0", "1.6.0", "1.5.9"),
        (">= 1.6.0", "2.0.0", "1.0.0"),
        (">=v1.6.0", "1.6.1", "1.5.0"),
        (">=1.6.0,<2", "1.9.9", "2.0.0"),
        ("==1.2.3", "1.2.3", "1.2.4"),
        ("^1.2 || ~3.1", "3.1.5", "3.2.0"),
        ("1.x", "1.99.0", "2.0.0"),
    ],
)
def test_parse_semver_range(spec: str, inside: str, outside: str) -> None:
    rng = parse_semver_range(spec)
    assert parse_version(inside) in rng
    assert parse_version(outside) not in rng


@pytest.mark.parametrize("spec", ["", " ", ">>1", "garbage", "1.2.3.4"])
def test_parse_semver_range_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_semver_range(spec)


def test_cosign_helpers() -> None:
    assert is_cosign_tag(SIG) and is_cosign_tag(ATT) and is_cosign_tag(SBOM)
    assert not is_cosign_tag("sha256-abc.sig")
    assert not is_cosign_tag(SIG + "x")
    assert not is_cosign_tag("latest")
    assert cosign_tags(DIGEST, ["latest", SBOM, SIG]) == (SIG, SBOM)
    assert cosign_tags("sha256:" + "cd" * 32, [SIG]) == ()


def test_stream_config_is_selection_params() -> None:
    config = parse_config(
        "version: 1\n"
        "defaults: {max_tags: 2}\n"
        "streams:\n"
        "  - from: quay.io/prometheus/node-exporter\n"
        "    include: ['^v1\\.']\n"
        "    semver: '>=1.6'\n",
        "t.yaml",
    )
    tags = ["v1.5.0", "v1.6.0", "v1.7.0", "v1.8.0", "v2.0.0", "latest"]
    result = select_tags(tags, config.streams[0])
    assert result == Selection(selected=("v1.8.0", "v1.7.0"), left_out=("v1.6.0",))

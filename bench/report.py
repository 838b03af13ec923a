"""From measured runs to the measures, their targets (issue 7) and the printed table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.measure import RunRecord, median

TOOLS = ("mirrord", "skopeo")
COLD_RATIO = 0.4
NOOP_RATIO = 0.15
RSS_LIMIT_MIB = 120.0
BLOB_DELTA_MIB = 16.0


@dataclass
class Measure:
    """One row of the table. ``passed``: True/False against the target, None if info only."""

    key: str
    label: str
    mirrord: float | None
    skopeo: float | None
    unit: str = ""
    target: str = "—"
    passed: bool | None = None
    ratio: float | None = None
    skipped: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _pick(runs: Sequence[RunRecord], tool: str, phase: str) -> list[RunRecord]:
    return [r for r in runs if r.tool == tool and r.phase == phase]


def _med(
    runs: Sequence[RunRecord], phase: str, get: Callable[[RunRecord], float]
) -> dict[str, float | None]:
    return {tool: median(get(r) for r in _pick(runs, tool, phase)) for tool in TOOLS}


def _ratio(values: dict[str, float | None]) -> float | None:
    m, s = values["mirrord"], values["skopeo"]
    return m / s if m is not None and s else None


def _paired_ratio(
    runs: Sequence[RunRecord], phase: str, get: Callable[[RunRecord], float]
) -> float | None:
    """The median over runs of mirrord / skopeo within each run (the two ran back to back,
    so load from elsewhere on the machine mostly cancels out)."""
    ours = {r.run: get(r) for r in _pick(runs, "mirrord", phase)}
    theirs = {r.run: get(r) for r in _pick(runs, "skopeo", phase)}
    return median(ours[i] / theirs[i] for i in ours if theirs.get(i))


def _wall(
    runs: Sequence[RunRecord], key: str, phase: str, label: str, limit: float | None
) -> Measure:
    values = _med(runs, phase, lambda r: r.wall_s)
    ratio = _paired_ratio(runs, phase, lambda r: r.wall_s)
    passed = None if limit is None or ratio is None else ratio <= limit
    target = f"≤ {limit:g}x skopeo" if limit is not None else "—"
    return Measure(key, label, values["mirrord"], values["skopeo"], "s", target, passed, ratio)


def _request_measures(runs: Sequence[RunRecord], repos: int) -> list[Measure]:
    noop = {tool: _pick(runs, tool, "noop") for tool in TOOLS}
    if not noop["mirrord"]:
        return []
    per_tag = _med(runs, "noop", lambda r: r.source.per_tag(r.tags))
    lists = _med(runs, "noop", lambda r: r.source.tag_list)
    gets = _med(runs, "noop", lambda r: r.source.manifest_get)
    pings = _med(runs, "noop", lambda r: r.source.ping)
    exact = all(
        r.source.total - r.source.tag_list - r.source.ping == r.tags for r in noop["mirrord"]
    )
    lists_ok = all(r.source.tag_list == repos for r in noop["mirrord"])
    gets_ok = all(r.source.manifest_get == 0 for r in noop["mirrord"])
    return [
        Measure("requests_per_unchanged_tag", "No-op: upstream requests per unchanged tag",
                per_tag["mirrord"], per_tag["skopeo"], "", "exactly 1",
                exact and lists_ok and gets_ok,
                note="tag listings and GET /v2/ counted apart (rows below)"),
        Measure("tag_lists_per_run", f"No-op: tag listings ({repos} repositories)",
                lists["mirrord"], lists["skopeo"], "", f"{repos} (1 per repository)", lists_ok),
        Measure("manifest_gets_noop", "No-op: manifest GETs", gets["mirrord"], gets["skopeo"],
                "", "0", gets_ok),
        Measure("version_checks_noop", "No-op: GET /v2/ version checks", pings["mirrord"],
                pings["skopeo"], "", "—", None),
    ]


def _rss_measures(runs: Sequence[RunRecord]) -> list[Measure]:
    cold = _med(runs, "cold", lambda r: r.maxrss_mib)
    noop = _med(runs, "noop", lambda r: r.maxrss_mib)
    m = cold["mirrord"]
    return [
        Measure("peak_rss_cold_mib", "Peak RSS, cold sync", m, cold["skopeo"], "MiB",
                f"≤ {RSS_LIMIT_MIB:g} MiB", None if m is None else m <= RSS_LIMIT_MIB),
        Measure("peak_rss_noop_mib", "Peak RSS, no-op re-sync", noop["mirrord"], noop["skopeo"],
                "MiB"),
    ]


def _blob_measure(runs: Sequence[RunRecord], blob_mib: int, skipped: str) -> Measure:
    label = f"{blob_mib} MiB blob: peak RSS over a tiny sync" if blob_mib else "Big blob"
    if skipped:
        return Measure("blob_rss_delta_mib", label, None, None, "MiB",
                       f"≤ +{BLOB_DELTA_MIB:g} MiB", skipped=skipped)
    big = _med(runs, "blob-big", lambda r: r.maxrss_mib)
    tiny = _med(runs, "blob-tiny", lambda r: r.maxrss_mib)
    delta: dict[str, float | None] = {}
    for t in TOOLS:
        b, s = big[t], tiny[t]
        delta[t] = b - s if b is not None and s is not None else None
    m = delta["mirrord"]
    passed = None if m is None else m <= BLOB_DELTA_MIB
    note = ", ".join(
        f"{t}: {tiny[t]:.1f} → {big[t]:.1f} MiB" for t in TOOLS
        if tiny[t] is not None and big[t] is not None
    )
    return Measure("blob_rss_delta_mib", label, m, delta["skopeo"], "MiB",
                   f"≤ +{BLOB_DELTA_MIB:g} MiB", passed, note=note)


def _cpu_measures(runs: Sequence[RunRecord]) -> list[Measure]:
    rows = []
    for phase, name in (("cold", "Cold sync"), ("noop", "No-op re-sync")):
        tool = _med(runs, phase, lambda r: r.cpu_s)
        registries = _med(runs, phase, lambda r: r.registry_cpu_s)
        rows += [
            Measure(f"cpu_{phase}_s", f"{name}: the tool's CPU time", tool["mirrord"],
                    tool["skopeo"], "s", ratio=_paired_ratio(runs, phase, lambda r: r.cpu_s)),
            Measure(f"registry_cpu_{phase}_s", f"{name}: both registries' CPU time",
                    registries["mirrord"], registries["skopeo"], "s",
                    ratio=_paired_ratio(runs, phase, lambda r: r.registry_cpu_s)),
        ]
    return rows


def _cold_requests(runs: Sequence[RunRecord]) -> list[Measure]:
    total = _med(runs, "cold", lambda r: r.source.total)
    gets = _med(runs, "cold", lambda r: r.source.manifest_get)
    return [
        Measure("requests_cold", "Cold sync: upstream requests", total["mirrord"],
                total["skopeo"], "", ratio=_ratio(total)),
        Measure("manifest_gets_cold", "Cold sync: manifest GETs", gets["mirrord"],
                gets["skopeo"], "", ratio=_ratio(gets)),
    ]


def _wan_measures(runs: Sequence[RunRecord], delay_ms: float, skipped: str) -> list[Measure]:
    rows = [
        ("wan_noop_wall_s", "wan-noop", f"WAN +{delay_ms:g} ms: no-op re-sync"),
        ("wan_cold_wall_s", "wan-cold", f"WAN +{delay_ms:g} ms: small cold sync"),
    ]
    if skipped:
        return [Measure(k, label, None, None, "s", skipped=skipped) for k, _, label in rows]
    return [_wall(runs, k, phase, label, None) for k, phase, label in rows]


def measures(
    runs: Sequence[RunRecord],
    *,
    repos: int,
    blob_mib: int,
    delay_ms: float,
    blob_skipped: str = "",
    wan_skipped: str = "",
) -> list[Measure]:
    """Every measure of the table, in order."""
    return [
        _wall(runs, "cold_wall_s", "cold", "Cold sync, wall time", COLD_RATIO),
        _wall(runs, "noop_wall_s", "noop", "No-op re-sync, wall time", NOOP_RATIO),
        *_request_measures(runs, repos),
        *_rss_measures(runs),
        _blob_measure(runs, blob_mib, blob_skipped),
        *_wan_measures(runs, delay_ms, wan_skipped),
        *_cold_requests(runs),
        *_cpu_measures(runs),
    ]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:.2f}" if value != int(value) else f"{int(value)}"


def table(rows: Sequence[Measure]) -> str:
    """A Markdown table (pastes into the README as it is)."""
    out = [
        "| Measure | mirrord | skopeo | mirrord / skopeo | Target | Result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        if row.skipped:
            result = f"skipped ({row.skipped})"
        else:
            result = {True: "PASS", False: "FAIL", None: "info"}[row.passed]
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        out.append(
            f"| {row.label} | {_fmt(row.mirrord, row.unit)} | {_fmt(row.skopeo, row.unit)} "
            f"| {ratio} | {row.target} | {result} |"
        )
    return "\n".join(out)

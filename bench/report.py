"""From measured runs to the measures, their targets (issues 7 and 17) and the table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.measure import RunRecord, median

TOOLS = ("mirrord", "skopeo")
COLD_RATIO = 0.4
NOOP_RATIO = 0.15
WAN_COLD_RATIO = 0.2
WAN_NOOP_RATIO = 0.05
RSS_LIMIT_MIB = 120.0
BLOB_DELTA_MIB = 16.0
STARTUP_S = 0.2  # issue 17's start-up lever


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
    mirror = _med(runs, "noop", lambda r: r.mirror.per_tag(r.tags))
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
        Measure("mirror_requests_per_tag_noop", "No-op: mirror requests per tag",
                mirror["mirrord"], mirror["skopeo"], "",
                note="at the mirror registry, tag listings and GET /v2/ left out"),
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
    parts: tuple[tuple[str, str, Callable[[RunRecord], float]], ...] = (
        ("cpu", "the tool's CPU time", lambda r: r.cpu_s),
        ("source_cpu", "the source registry's CPU time", lambda r: r.source_cpu_s),
        ("mirror_cpu", "the mirror registry's CPU time", lambda r: r.mirror_cpu_s),
    )
    for phase, name in (("cold", "Cold sync"), ("noop", "No-op re-sync")):
        for key, label, get in parts:
            values = _med(runs, phase, get)
            rows.append(Measure(f"{key}_{phase}_s", f"{name}: {label}", values["mirrord"],
                                values["skopeo"], "s", ratio=_paired_ratio(runs, phase, get)))
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
        ("wan_cold_wall_s", "wan-cold", f"WAN +{delay_ms:g} ms: cold sync", WAN_COLD_RATIO),
        ("wan_noop_wall_s", "wan-noop", f"WAN +{delay_ms:g} ms: no-op re-sync", WAN_NOOP_RATIO),
    ]
    if skipped:
        return [Measure(k, label, None, None, "s", f"≤ {limit:g}x skopeo", skipped=skipped)
                for k, _, label, limit in rows]
    return [_wall(runs, k, phase, label, limit) for k, phase, label, limit in rows]


def _startup_measures(runs: Sequence[RunRecord]) -> list[Measure]:
    if not _pick(runs, "mirrord", "startup"):
        return []
    first = {tool: median(r.startup_s for r in _pick(runs, tool, "startup")
                          if r.startup_s is not None) for tool in TOOLS}
    m = first["mirrord"]
    missing = [r for r in runs if r.phase == "startup" and r.startup_s is None]
    note = f"{len(missing)} run(s) made no connection to the source" if missing else ""
    return [
        Measure("startup_s", "Start-up: exec to the first connection at the source", m,
                first["skopeo"], "s", f"≤ {STARTUP_S:g} s", None if m is None or missing
                else m <= STARTUP_S, note=note or "a one-tag no-op; issue 17's lever target"),
        _wall(runs, "startup_noop_wall_s", "startup", "One-tag no-op, wall time", None),
    ]


def _blob_requests(runs: Sequence[RunRecord]) -> list[Measure]:
    """Cold sync: what each blob cost at the mirror and at the source."""
    mirror = _med(runs, "cold", lambda r: r.mirror.per_blob() or 0.0)
    gets = _med(runs, "cold", lambda r: r.source.blob_get / r.mirror.copied
                if r.mirror.copied else 0.0)
    uploaded = _med(runs, "cold", lambda r: r.mirror.copied)
    mounted = _med(runs, "cold", lambda r: r.mirror.mounted)
    return [
        Measure("mirror_requests_per_blob_cold", "Cold sync: mirror requests per blob",
                mirror["mirrord"], mirror["skopeo"], "", ratio=_ratio(mirror),
                note="blob HEAD + upload/mount POST + PATCH + PUT, over blobs uploaded or "
                "mounted"),
        Measure("source_blob_gets_per_blob_cold", "Cold sync: source blob GETs per blob "
                "uploaded", gets["mirrord"], gets["skopeo"], ""),
        Measure("blobs_uploaded_cold", "Cold sync: blobs uploaded to the mirror",
                uploaded["mirrord"], uploaded["skopeo"], ""),
        Measure("blobs_mounted_cold", "Cold sync: blobs mounted in the mirror",
                mounted["mirrord"], mounted["skopeo"], ""),
    ]


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
        *_wan_measures(runs, delay_ms, wan_skipped),
        *_request_measures(runs, repos),
        *_startup_measures(runs),
        *_rss_measures(runs),
        _blob_measure(runs, blob_mib, blob_skipped),
        *_blob_requests(runs),
        *_cold_requests(runs),
        *_cpu_measures(runs),
    ]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:.3f} s" if value < 1 else f"{value:.2f} s"
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

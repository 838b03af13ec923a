"""Tag selection: which upstream tags a stream mirrors. Pure: no I/O.

The rules, in order (DESIGN.md "Tag selection"):

1. An explicit ``tags`` list wins: its order is kept, and tags the source does
   not have are reported in :attr:`Selection.missing`. Nothing else applies.
2. Otherwise every source tag is a candidate, except attached-artifact tags: cosign's
   (``sha256-<hex>.sig|.att|.sbom``) and the OCI referrers tag schema's (``sha256-<hex>``),
   which travel with the image they are attached to.
3. ``include`` regexes: at least one must match (``re.search``); ``exclude``
   regexes: none may match.
4. ``semver``: an npm-style range (``>=1.6.0``, ``^1.2 || ~2.0``, ``1.x``;
   commas also mean AND). Tags are read leniently (optional ``v``, partial
   versions: ``9.4`` is 9.4.0); tags that are no version are dropped.
   Pre-releases match only when the range names one (npm rules).
5. ``newest``: the N highest versions; tags that are no version come after
   the versions, by name.
6. The ``oc import-image --all`` order (:func:`prioritize_tags`) and the bulk
   limit ``max_tags`` (-1 = unlimited): the tags past the limit are
   :attr:`Selection.left_out` ("not imported").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from mirrord.core.reference import is_tag

if TYPE_CHECKING:
    import semantic_version

COSIGN_SUFFIXES = ("sig", "att", "sbom")
_COSIGN_RE = re.compile(r"(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})\.(sig|att|sbom)")
_REFERRERS_TAG_RE = re.compile(r"sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128}")

_LENIENT_RE = re.compile(
    r"[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?"
)
_MINOR_RE = re.compile(r"\d+\.\d+", re.ASCII)
_MINOR_SUFFIX_RE = re.compile(r"(\d+\.\d+)(-\w+)", re.ASCII)


class SelectionParams(Protocol):
    """What :func:`select_tags` reads; :class:`mirrord.config.StreamConfig` fits."""

    @property
    def tags(self) -> Sequence[str] | None: ...
    @property
    def include(self) -> Sequence[re.Pattern[str]]: ...
    @property
    def exclude(self) -> Sequence[re.Pattern[str]]: ...
    @property
    def semver(self) -> str | None: ...
    @property
    def newest(self) -> int | None: ...
    @property
    def max_tags(self) -> int: ...


@dataclass(frozen=True)
class Criteria:
    """Stand-alone selection parameters (for ``import-image`` and tests)."""

    tags: tuple[str, ...] | None = None
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()
    semver: str | None = None
    newest: int | None = None
    max_tags: int = 50


@dataclass(frozen=True)
class Selection:
    """The outcome: ``selected`` in import order; ``left_out`` matched but fell
    past ``max_tags``; ``missing`` explicit tags the source does not have."""

    selected: tuple[str, ...]
    left_out: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


# --- cosign ---------------------------------------------------------------


def is_cosign_tag(tag: str) -> bool:
    """True for a cosign signature/attestation/SBOM tag (``sha256-<hex>.sig``)."""
    return _COSIGN_RE.fullmatch(tag) is not None


def is_attached_tag(tag: str) -> bool:
    """True for a tag that holds artifacts attached to an image rather than an image: a
    cosign tag, or a referrers tag schema index (``sha256-<hex>``, OCI 1.1 fallback)."""
    return is_cosign_tag(tag) or _REFERRERS_TAG_RE.fullmatch(tag) is not None


def cosign_tags(digest: str, all_tags: Iterable[str]) -> tuple[str, ...]:
    """The cosign tags of ``digest`` present in ``all_tags`` (.sig, .att, .sbom order)."""
    algorithm, _, hex_part = digest.partition(":")
    present = set(all_tags)
    names = (f"{algorithm}-{hex_part}.{suffix}" for suffix in COSIGN_SUFFIXES)
    return tuple(name for name in names if name in present)


# --- versions -------------------------------------------------------------


def _semver() -> ModuleType:
    """semantic_version, imported on first use: it reads its own package metadata when
    imported (importlib.metadata, email: ~20 ms), which a sync of explicit tags never
    needs before its first request."""
    import semantic_version

    return semantic_version


@functools.lru_cache(maxsize=8192)
def parse_version(tag: str) -> semantic_version.Version | None:
    """Read a tag as a version, leniently: ``v1.2.3``, ``9.4`` (9.4.0), ``8`` (8.0.0),
    ``1.2.3-rc.1``, ``1.2-rc1`` (1.2.0-rc1). None when the tag is no version."""
    match = _LENIENT_RE.fullmatch(tag)
    if match is None:
        return None
    major, minor, patch, pre, build = match.groups()
    try:
        return _semver().Version(
            major=int(major),
            minor=int(minor or 0),
            patch=int(patch or 0),
            prerelease=tuple(pre.split(".")) if pre else (),
            build=tuple(build.split(".")) if build else (),
        )
    except ValueError:  # an empty or zero-padded identifier: not a version
        return None


def precedence(version: semantic_version.Version) -> tuple[object, ...]:
    """A sort key with SemVer 2.0 precedence (build metadata ignored)."""
    core = (version.major, version.minor, version.patch)
    if not version.prerelease:
        return (*core, 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.prerelease)
    return (*core, 0, ids)


_OPERATOR_SPACE_RE = re.compile(r"(>=|<=|>|<|=|~|\^)\s+")
_V_PREFIX_RE = re.compile(r"(^|[\s=<>~^|])[vV](?=\d)")


@functools.lru_cache(maxsize=256)
def parse_semver_range(text: str) -> semantic_version.NpmSpec:
    """Parse an npm-style range; ``,`` also means AND, ``==`` means ``=``,
    ``>= 1.0`` and ``>=v1.0`` are accepted. Raises ValueError when invalid."""
    normal = text.replace(",", " ").replace("==", "=")
    normal = _OPERATOR_SPACE_RE.sub(r"\1", normal)
    normal = _V_PREFIX_RE.sub(r"\1", normal).strip()
    if not normal:
        raise ValueError("the range is empty")
    try:
        return _semver().NpmSpec(normal)
    except ValueError as exc:
        raise ValueError(f"not an npm-style version range ({exc})") from None


# --- ordering -------------------------------------------------------------


def _oc_version(tag: str) -> tuple[int, semantic_version.Version | None]:
    """``oc``'s priority class of a tag (0 latest, 1 minor, 2 full, 3 other)."""
    if tag == "latest":
        return 0, None
    short = tag[1:] if tag.startswith("v") else tag
    try:
        return 2, _semver().Version(short)
    except ValueError:
        pass
    candidate: str | None = None
    if _MINOR_RE.fullmatch(short):
        candidate = short + ".0"
    elif match := _MINOR_SUFFIX_RE.fullmatch(short):
        candidate = f"{match.group(1)}.0{match.group(2)}"
    if candidate is not None:
        try:
            return 1, _semver().Version(candidate)
        except ValueError:
            pass
    return 3, None


def prioritize_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Order tags the way ``oc import-image --all`` does (library-go PrioritizeTags):

    ``latest``; then minor versions (``5.1``, ``v5.1``, ``5.1-rc1``), newest first;
    then full versions (``5.1.3``, ``v5.1.3-other``), newest first (on equal
    versions the tag without ``v`` first); then every other tag by name.
    """
    groups: dict[int, list[tuple[str, semantic_version.Version | None]]] = {
        0: [],
        1: [],
        2: [],
        3: [],
    }
    for tag in dict.fromkeys(tags):
        priority, version = _oc_version(tag)
        groups[priority].append((tag, version))
    ordered = [tag for tag, _ in groups[0]]
    for priority in (1, 2):
        group = sorted(groups[priority], key=lambda item: (item[0].startswith("v"), item[0]))
        group.sort(key=lambda item: precedence(item[1]) if item[1] else (), reverse=True)
        ordered.extend(tag for tag, _ in group)
    ordered.extend(sorted(tag for tag, _ in groups[3]))
    return tuple(ordered)


def newest_tags(tags: Iterable[str], count: int) -> tuple[str, ...]:
    """The ``count`` highest versions (lenient parse), newest first; tags that are
    no version follow the versions, by name."""
    versions: list[tuple[str, semantic_version.Version]] = []
    others: list[str] = []
    for tag in dict.fromkeys(tags):
        version = parse_version(tag)
        if version is None:
            others.append(tag)
        else:
            versions.append((tag, version))
    versions.sort(key=lambda item: item[0])
    versions.sort(key=lambda item: precedence(item[1]), reverse=True)
    ranked = [tag for tag, _ in versions] + sorted(others)
    return tuple(ranked[: max(count, 0)])


# --- selection ------------------------------------------------------------


def _matches(tag: str, params: SelectionParams, spec: semantic_version.NpmSpec | None) -> bool:
    if params.include and not any(p.search(tag) for p in params.include):
        return False
    if any(p.search(tag) for p in params.exclude):
        return False
    if spec is not None:
        version = parse_version(tag)
        return version is not None and version in spec
    return True


def split_invalid(all_tags: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(valid, invalid)``: the upstream tags that follow the tag grammar
    (:data:`mirrord.core.reference.TAG_RE`), and the others, each once, in order."""
    valid: list[str] = []
    invalid: list[str] = []
    for tag in dict.fromkeys(all_tags):
        (valid if is_tag(tag) else invalid).append(tag)
    return valid, invalid


def wanted_invalid(invalid: Sequence[str], params: SelectionParams) -> tuple[str, ...]:
    """The invalid upstream tags a stream would have selected: it lists no explicit
    ``tags`` and its ``include``/``exclude`` regexes let them through (a stream's
    ``exclude:`` is how a user silences a name upstream will not fix)."""
    if params.tags is not None:
        return ()
    return tuple(t for t in invalid if _matches(t, params, None))


def select_tags(all_tags: Sequence[str], params: SelectionParams) -> Selection:
    """Apply a stream's selection rules to the source's tag list (see the module doc)."""
    available = tuple(dict.fromkeys(all_tags))
    if params.tags is not None:
        present = set(available)
        wanted = tuple(dict.fromkeys(params.tags))
        return Selection(
            selected=tuple(t for t in wanted if t in present),
            missing=tuple(t for t in wanted if t not in present),
        )
    spec = parse_semver_range(params.semver) if params.semver is not None else None
    candidates = [t for t in available if not is_attached_tag(t) and _matches(t, params, spec)]
    if params.newest is not None:
        candidates = list(newest_tags(candidates, params.newest))
    ordered = prioritize_tags(candidates)
    if params.max_tags < 0:
        return Selection(selected=ordered)
    return Selection(selected=ordered[: params.max_tags], left_out=ordered[params.max_tags :])

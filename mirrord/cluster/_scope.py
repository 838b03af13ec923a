"""Which ``source → mirrors`` entries describe a set of mirrored repositories. Pure.

Scope follows oc-mirror v2 (``internal/pkg/clusterresources``): when the mirror's
path ends with the source's path (``quay.io/org/app`` → ``m:5000/prefix/org/app``),
the entry covers the source's namespace (``quay.io/org`` → ``m:5000/prefix/org``),
otherwise the one repository; ``per_repository`` forces the latter. Two fixes over
oc-mirror, both for what clients do with the entries:

- the suffix must end at a ``/`` (oc-mirror's ``strings.HasSuffix`` also takes
  ``m/prefix/myorg/app`` for ``org/app``, whose namespace mapping is wrong);
- a namespace entry for *tags* is written only when every repository it covers in
  that mirror namespace keeps its tags current; one mirrored once (digest-only)
  would otherwise be served a stale tag, so the tag entries there are per
  repository. (Digest pulls are safe at any scope: a digest names its content.)

Clients use the entry with the longest matching source and only its mirrors
(containers-registries.conf(5); IDMS "most specific namespace"), so a mirror of a
less specific entry that also holds a more specific entry's repository is repeated
in the more specific one; and a source with an entry of one kind (digest or tag) gets
one of the other kind too when a wider entry of that kind covers it, so a consumer
that merges both kinds into one table per source (registries.conf, CRI-O's) does not
lose the wider mirrors. Entries are sorted by source; each entry's mirrors keep the
order of the records (the caller's priority), without duplicates; a mirror equal to
its source is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mirrord.cluster._model import Entry, MirrorRecord


@dataclass(frozen=True)
class _Pair:
    source: str
    mirror: str
    record: MirrorRecord


def _split(location: str) -> tuple[str, str]:
    host, _, path = location.partition("/")
    return host, path


def _parent(location: str) -> str:
    """``quay.io/org`` of ``quay.io/org/app``; ``host:5000`` of ``host:5000/app``."""
    return location.rsplit("/", 1)[0]


def namespace_scoped(record: MirrorRecord) -> bool:
    """The mirror's path ends with the source's path, at a ``/`` boundary."""
    source_path = _split(record.source)[1]
    mirror_path = _split(record.mirror)[1]
    return mirror_path == source_path or mirror_path.endswith("/" + source_path)


def _scoped(record: MirrorRecord, per_repository: bool) -> _Pair:
    if per_repository or not namespace_scoped(record):
        return _Pair(record.source, record.mirror, record)
    return _Pair(_parent(record.source), _parent(record.mirror), record)


def digest_entries(records: Sequence[MirrorRecord], per_repository: bool) -> tuple[Entry, ...]:
    """The ImageDigestMirrorSet / ICSP entries of the digest-mirrored records."""
    pairs = [_scoped(r, per_repository) for r in records if r.digest_mirror]
    return _entries(pairs)


def tag_entries(records: Sequence[MirrorRecord], per_repository: bool) -> tuple[Entry, ...]:
    """The ImageTagMirrorSet entries: records whose mirror keeps tags current."""
    once = [r for r in records if not r.tag_mirror]
    pairs = []
    for record in records:
        if not record.tag_mirror:
            continue
        pair = _scoped(record, per_repository)
        if pair.source != record.source and any(_reaches(pair, r) for r in once):
            pair = _Pair(record.source, record.mirror, record)  # a stale repo shares the ns
        pairs.append(pair)
    return _entries(pairs)


def _reaches(pair: _Pair, record: MirrorRecord) -> bool:
    """A pull of ``record.source`` through ``pair`` would go to ``record.mirror``."""
    if not _under(record.source, pair.source, equal=True):
        return False
    return pair.mirror + record.source[len(pair.source) :] == record.mirror


def _entries(pairs: Iterable[_Pair]) -> tuple[Entry, ...]:
    pairs = list(pairs)
    mirrors: dict[str, list[str]] = {}
    for pair in pairs:
        _add(mirrors.setdefault(pair.source, []), pair.mirror, pair.source)
    for pair in pairs:  # repeat a wider entry's mirror in the narrower entries it covers
        for source, listed in mirrors.items():
            if _under(source, pair.source) and _under(pair.record.source, source, equal=True):
                _add(listed, pair.mirror + source[len(pair.source) :], source)
    return tuple(Entry(s, tuple(m)) for s, m in sorted(mirrors.items()) if m)


def _add(mirrors: list[str], mirror: str, source: str) -> None:
    if mirror != source and mirror not in mirrors:
        mirrors.append(mirror)


def _under(location: str, ancestor: str, *, equal: bool = False) -> bool:
    """``location`` is inside ``ancestor`` (a strict descendant; or equal when asked)."""
    return (equal and location == ancestor) or location.startswith(ancestor + "/")


def complete(
    digest: tuple[Entry, ...], tag: tuple[Entry, ...]
) -> tuple[tuple[Entry, ...], tuple[Entry, ...]]:
    """Both kinds with an entry for every source either has, where a wider entry of the
    kind covers it (its mirrors, rewritten to the narrower source). Pulls are routed as
    before; only a per-source merge of the two kinds now sees every mirror."""
    return _derive(digest, tag), _derive(tag, digest)


def _derive(entries: tuple[Entry, ...], other: tuple[Entry, ...]) -> tuple[Entry, ...]:
    own = {e.source: e for e in entries}
    for source in [e.source for e in other if e.source not in own]:
        wider = [e for e in entries if _under(source, e.source)]
        if wider:
            nearest = max(wider, key=lambda e: len(e.source))
            tail = source[len(nearest.source) :]
            own[source] = Entry(source, tuple(m + tail for m in nearest.mirrors))
    return tuple(own[s] for s in sorted(own))

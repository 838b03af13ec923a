"""Scoping and merging of source → mirror entries (pure)."""

from __future__ import annotations

import pytest

from mirrord.cluster import Entry, MirrorRecord, generate
from mirrord.cluster._scope import digest_entries, namespace_scoped, tag_entries
from mirrord.errors import ClusterResourcesError

M = "mirror.lab:5000"


def rec(source: str, mirror: str, *, tags: bool = True, **kw: bool) -> MirrorRecord:
    return MirrorRecord(source, mirror, tag_mirror=tags, **kw)


def test_mirror_path_ending_with_the_source_path_maps_the_namespace() -> None:
    records = [
        rec("quay.io/org/a", f"{M}/prefix/org/a"),
        rec("quay.io/org/b", f"{M}/prefix/org/b"),
    ]
    expected = (Entry("quay.io/org", (f"{M}/prefix/org",)),)
    assert digest_entries(records, per_repository=False) == expected
    assert tag_entries(records, per_repository=False) == expected


def test_other_mirror_paths_map_one_repository() -> None:
    records = [rec("quay.io/org/a", f"{M}/flat-a"), rec("quay.io/org/b", f"{M}/x/b")]
    assert digest_entries(records, per_repository=False) == (
        Entry("quay.io/org/a", (f"{M}/flat-a",)),
        Entry("quay.io/org/b", (f"{M}/x/b",)),
    )


def test_the_suffix_must_end_at_a_path_boundary() -> None:
    # oc-mirror's strings.HasSuffix takes "prefix/myorg/app" for "org/app"; the namespace
    # mapping quay.io/org -> M/prefix/my would be wrong.
    record = rec("quay.io/org/app", f"{M}/prefix/myorg/app")
    assert not namespace_scoped(record)
    assert digest_entries([record], per_repository=False) == (
        Entry("quay.io/org/app", (f"{M}/prefix/myorg/app",)),
    )


def test_same_path_without_prefix_is_namespace_scoped() -> None:
    record = rec("quay.io/org/app", f"{M}/org/app")
    assert digest_entries([record], False) == (Entry("quay.io/org", (f"{M}/org",)),)


def test_a_one_component_path_maps_the_registry_host_as_oc_mirror_does() -> None:
    record = rec("127.0.0.1:5000/app", f"{M}/m/app")
    assert digest_entries([record], False) == (Entry("127.0.0.1:5000", (f"{M}/m",)),)


def test_per_repository_forces_repository_entries() -> None:
    records = [rec("quay.io/org/a", f"{M}/p/org/a"), rec("quay.io/org/b", f"{M}/p/org/b")]
    assert digest_entries(records, per_repository=True) == (
        Entry("quay.io/org/a", (f"{M}/p/org/a",)),
        Entry("quay.io/org/b", (f"{M}/p/org/b",)),
    )


def test_several_mirrors_of_one_source_merge_in_record_order() -> None:
    records = [
        rec("docker.io/library/nginx", "b.lab/x/library/nginx"),
        rec("docker.io/library/nginx", "a.lab/y/library/nginx"),
        rec("docker.io/library/nginx", "b.lab/x/library/nginx"),  # a duplicate
    ]
    entries = digest_entries(records, False)
    assert entries == (Entry("docker.io/library", ("b.lab/x/library", "a.lab/y/library")),)


def test_entries_are_sorted_by_source_whatever_the_record_order() -> None:
    records = [
        rec("quay.io/z/app", f"{M}/z/app", tags=False),
        rec("docker.io/library/nginx", f"{M}/library/nginx"),
        rec("gcr.io/a/b", f"{M}/flat"),
    ]
    forward = digest_entries(records, False)
    assert [e.source for e in forward] == ["docker.io/library", "gcr.io/a/b", "quay.io/z"]
    assert digest_entries(list(reversed(records)), False) == forward


def test_itms_only_lists_streams_that_keep_tags_current() -> None:
    records = [
        rec("quay.io/a/app", f"{M}/a/app", tags=True),
        rec("quay.io/b/app", f"{M}/b/app", tags=False),
    ]
    assert [e.source for e in digest_entries(records, False)] == ["quay.io/a", "quay.io/b"]
    assert tag_entries(records, False) == (Entry("quay.io/a", (f"{M}/a",)),)


def test_a_namespace_tag_entry_is_narrowed_when_a_stale_repo_shares_it() -> None:
    # quay.io/org/once was mirrored once: a namespace tag entry would send tag pulls of it
    # to the mirror's stale copy, so the tag entry of the live repo covers only that repo.
    records = [
        rec("quay.io/org/live", f"{M}/p/org/live", tags=True),
        rec("quay.io/org/once", f"{M}/p/org/once", tags=False),
    ]
    assert digest_entries(records, False) == (Entry("quay.io/org", (f"{M}/p/org",)),)
    assert tag_entries(records, False) == (Entry("quay.io/org/live", (f"{M}/p/org/live",)),)


def test_a_stale_repo_in_another_mirror_namespace_does_not_narrow() -> None:
    records = [
        rec("quay.io/org/live", f"{M}/p/org/live", tags=True),
        rec("quay.io/org/once", f"{M}/elsewhere/once", tags=False),
    ]
    assert tag_entries(records, False) == (Entry("quay.io/org", (f"{M}/p/org",)),)


def test_a_narrower_entry_repeats_the_wider_mirrors_holding_its_repository() -> None:
    # The same source mirrored twice: into the namespace layout, and flat. Clients use only
    # the longest matching source, so the repository entry lists both mirrors.
    records = [
        rec("quay.io/org/a", f"{M}/p/org/a"),
        rec("quay.io/org/b", f"{M}/p/org/b"),
        rec("quay.io/org/a", "other.lab/flat-a"),
    ]
    assert digest_entries(records, False) == (
        Entry("quay.io/org", (f"{M}/p/org",)),
        Entry("quay.io/org/a", ("other.lab/flat-a", f"{M}/p/org/a")),
    )


def test_a_mirror_equal_to_its_source_is_dropped() -> None:
    records = [rec("mirror.lab/org/a", "mirror.lab/org/a"), rec("quay.io/x/y", f"{M}/x/y")]
    assert digest_entries(records, False) == (Entry("quay.io/x", (f"{M}/x",)),)


@pytest.mark.parametrize(
    "source, mirror",
    [
        ("quay.io/org/app:1.0", f"{M}/org/app"),  # a tag
        ("quay.io/org/app", f"{M}/org/app@sha256:" + "0" * 64),  # a digest
        ("quay.io", f"{M}/org/app"),  # no repository
        ("[::1]:5000/org/app", f"{M}/org/app"),  # IPv6: the API's pattern has none
        ("quay.io/Org/app", f"{M}/org/app"),  # upper-case path
        ("quay.io/org/app", "https://mirror.lab/org/app"),  # a scheme
    ],
)
def test_records_refuse_what_the_api_cannot_name(source: str, mirror: str) -> None:
    with pytest.raises(ClusterResourcesError):
        MirrorRecord(source, mirror)


def test_same_records_give_the_same_bytes() -> None:
    records = [rec("quay.io/org/a", f"{M}/p/org/a"), rec("docker.io/library/x", f"{M}/x")]
    first = generate(records, name="mirrord-test", mirror_targets=[f"{M}/p"])
    again = generate(list(records), name="mirrord-test", mirror_targets=[f"{M}/p"])
    assert first.files == again.files
    assert list(first.files) == [
        "idms-mirrord.yaml", "itms-mirrord.yaml", "icsp-mirrord.yaml", "registries.conf"
    ]


def test_no_record_no_document() -> None:
    resources = generate([], name="mirrord-test")
    assert resources.files == {} and resources.objects == ()


def test_only_digest_mirrors_write_no_itms() -> None:
    resources = generate([rec("quay.io/a/b", f"{M}/a/b", tags=False)], name="mirrord-test")
    assert "itms-mirrord.yaml" not in resources.files
    assert {"idms-mirrord.yaml", "icsp-mirrord.yaml", "registries.conf"} <= set(resources.files)


def test_a_narrower_tag_source_gets_the_digest_mirrors_of_its_namespace() -> None:
    # registries.conf has one table per prefix, and a client uses only the longest one:
    # the live repo's tag table must also carry the namespace's digest mirror.
    records = [
        rec("quay.io/org/live", f"{M}/p/org/live", tags=True),
        rec("quay.io/org/once", f"{M}/p/org/once", tags=False),
    ]
    resources = generate(records, name="mirrord-test")
    assert resources.digest_mirrors == (
        Entry("quay.io/org", (f"{M}/p/org",)),
        Entry("quay.io/org/live", (f"{M}/p/org/live",)),
    )
    assert resources.tag_mirrors == (Entry("quay.io/org/live", (f"{M}/p/org/live",)),)


def test_a_narrower_digest_source_keeps_the_wider_tag_mirrors() -> None:
    records = [
        rec("quay.io/org/a", f"{M}/p/org/a", tags=True),
        rec("quay.io/org/a", "flat.lab/a", tags=False),  # its own digest-only entry
    ]
    resources = generate(records, name="mirrord-test")
    assert resources.tag_mirrors == (
        Entry("quay.io/org", (f"{M}/p/org",)),
        Entry("quay.io/org/a", (f"{M}/p/org/a",)),  # as the namespace entry routed it
    )

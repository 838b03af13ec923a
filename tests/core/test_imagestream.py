"""The `oc import-image` rules over tag history and conditions, and the OpenShift shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mirrord.core.imagestream import (
    IMPORT_SUCCESS,
    TAGGED,
    Condition,
    ImageStream,
    StreamSpec,
    TagEvent,
    TagStatus,
    docker_image_reference,
    normalize_import_mode,
    normalize_reference_policy,
    record_failure,
    record_import,
    record_removed,
    rfc3339,
    tag_origin,
)
from mirrord.core.openshift import to_openshift
from mirrord.errors import ConfigError

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
SRC = "registry.redhat.io/ubi9/ubi"
MIRROR = "mirror.example.internal:5000/mirror/ubi9/ubi"


def ref(digest: str) -> str:
    return f"{SRC}@{digest}"


def imported(*digests: str) -> TagStatus:
    """A tag that was imported with each digest in turn, an hour apart."""
    status: TagStatus | None = None
    for i, digest in enumerate(digests):
        status = record_import(
            status, digest, ref(digest), 1, T0 + timedelta(hours=i), tag="9.4"
        ).status
    assert status is not None
    return status


# -- record_import ---------------------------------------------------------------------


def test_first_import_creates_history() -> None:
    status, changed, previous = record_import(None, A, ref(A), 1, T0, tag="9.4")
    assert changed is True
    assert previous is None
    assert status.tag == "9.4"
    assert status.items == (TagEvent(T0, ref(A), A, 1),)
    assert status.current == status.items[0]


def test_first_import_without_status_needs_tag_name() -> None:
    with pytest.raises(ValueError, match="tag name"):
        record_import(None, A, ref(A), 1, T0)


def test_same_digest_adds_no_event() -> None:
    before = imported(A)
    after, changed, previous = record_import(before, A, ref(A), 2, T0 + timedelta(days=1))
    assert changed is False
    assert previous == A
    assert len(after.items) == 1 and after.items[0].created == T0  # the time does not move
    # ...but items[0] follows the stream's generation, as OpenShift's does
    assert after.items[0].generation == 2 and before.items[0].generation == 1


def test_moved_tag_prepends_event_newest_first() -> None:
    status, changed, previous = record_import(imported(A), B, ref(B), 2, T0 + timedelta(hours=5))
    assert changed is True
    assert previous == A
    assert [e.image for e in status.items] == [B, A]
    assert status.items[0] == TagEvent(T0 + timedelta(hours=5), ref(B), B, 2)


def test_moving_back_to_an_older_digest_is_a_new_event() -> None:
    status = imported(A, B, A)
    assert [e.image for e in status.items] == [A, B, A]
    assert status.items[0].created > status.items[2].created


def test_reference_change_with_same_digest_adds_event() -> None:
    before = imported(A)
    local = f"{MIRROR}@{A}"
    status, changed, previous = record_import(before, A, local, 2, T0 + timedelta(hours=1))
    assert changed is True
    assert previous == A
    assert [e.docker_image_reference for e in status.items] == [local, ref(A)]


def test_legacy_import_records_the_source_digest_it_was_taken_from() -> None:
    status, changed, _ = record_import(None, B, ref(B), 1, T0, tag="9.4", source_digest=A)
    assert changed is True
    assert status.items == (TagEvent(T0, ref(B), B, 1, source_digest=A),)
    later = T0 + timedelta(hours=1)
    # the source index moved (C) but the platform manifest is still B: no new event,
    # but items[0] remembers its new source so the next run can skip the copy
    again, changed, previous = record_import(status, B, ref(B), 2, later, source_digest=C)
    assert (changed, previous) == (False, B)
    assert again.items == (TagEvent(T0, ref(B), B, 2, source_digest=C),)
    unknown, _, _ = record_import(again, B, ref(B), 2, later)
    assert unknown.items == again.items  # an unknown ("") source never erases a known one
    moved, changed, _ = record_import(again, C, ref(C), 2, later, source_digest=C)
    assert changed is True
    assert [(e.image, e.source_digest) for e in moved.items] == [(C, C), (B, C)]
    assert [e.generation for e in moved.items] == [2, 2]


def test_source_digest_defaults_to_unknown() -> None:
    assert imported(A).items[0].source_digest == ""
    assert TagEvent(T0, ref(A), A, 1) != TagEvent(T0, ref(A), A, 1, source_digest=A)


def test_success_clears_import_condition_but_keeps_others() -> None:
    other = Condition("Other", "True", "R", "m", 1, T0)
    failing = record_failure(imported(A), "Unauthorized", "denied", 1, T0 + timedelta(hours=1))
    failing = TagStatus(failing.tag, failing.items, (*failing.conditions, other))
    status, changed, _ = record_import(failing, A, ref(A), 1, T0 + timedelta(hours=2))
    assert changed is False  # same digest: history untouched, condition still cleared
    assert status.condition(IMPORT_SUCCESS) is None
    assert status.conditions == (other,)
    assert status.items == failing.items


def test_success_clears_removal() -> None:
    removed = record_removed(imported(A), T0 + timedelta(hours=1), delete_removed_tags=True)
    status, changed, _ = record_import(removed, A, ref(A), 1, T0 + timedelta(hours=2))
    assert not status.removed
    assert changed is False


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        record_import(None, A, ref(A), 1, datetime(2024, 1, 1), tag="x")


def test_times_are_normalised_to_utc() -> None:
    plus2 = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    status = record_import(None, A, ref(A), 1, plus2, tag="x").status
    assert status.items[0].created == T0
    assert status.items[0].created.tzinfo == UTC


# -- record_failure --------------------------------------------------------------------


def test_failure_sets_condition_and_keeps_history() -> None:
    before = imported(A)
    status = record_failure(before, "NotFound", "manifest unknown", 3, T0 + timedelta(hours=1))
    assert status.items == before.items
    assert status.conditions == (
        Condition(
            IMPORT_SUCCESS, "False", "NotFound", "manifest unknown", 3, T0 + timedelta(hours=1)
        ),
    )


def test_failure_on_new_tag_has_condition_and_no_items() -> None:
    status = record_failure(None, "Unauthorized", "denied", 1, T0, tag="latest")
    assert status.tag == "latest"
    assert status.items == ()
    assert len(status.conditions) == 1


def test_same_failure_not_duplicated_and_keeps_transition_time() -> None:
    first = record_failure(imported(A), "RateLimited", "429", 1, T0 + timedelta(hours=1))
    again = record_failure(first, "RateLimited", "429", 2, T0 + timedelta(hours=2))
    assert len(again.conditions) == 1
    condition = again.conditions[0]
    assert condition.last_transition_time == T0 + timedelta(hours=1)
    assert condition.generation == 2


def test_changed_failure_replaces_condition_with_new_time() -> None:
    first = record_failure(imported(A), "RateLimited", "429", 1, T0 + timedelta(hours=1))
    other = record_failure(first, "Unauthorized", "denied", 1, T0 + timedelta(hours=2))
    assert len(other.conditions) == 1
    assert other.conditions[0].reason == "Unauthorized"
    assert other.conditions[0].last_transition_time == T0 + timedelta(hours=2)
    message = record_failure(other, "Unauthorized", "denied again", 1, T0 + timedelta(hours=3))
    assert message.conditions[0].last_transition_time == T0 + timedelta(hours=3)


def test_failure_after_success_gets_fresh_time() -> None:
    failed = record_failure(imported(A), "NotFound", "gone", 1, T0 + timedelta(hours=1))
    cleared = record_import(failed, A, ref(A), 1, T0 + timedelta(hours=2)).status
    again = record_failure(cleared, "NotFound", "gone", 1, T0 + timedelta(hours=3))
    assert again.conditions[0].last_transition_time == T0 + timedelta(hours=3)


# -- record_removed --------------------------------------------------------------------


def test_removed_upstream_changes_nothing_by_default() -> None:
    before = imported(A, B)
    assert record_removed(before, T0 + timedelta(days=1), delete_removed_tags=False) is before


def test_removed_upstream_with_delete_removed_tags_marks_and_keeps_history() -> None:
    before = imported(A, B)
    removed = record_removed(before, T0 + timedelta(days=1), delete_removed_tags=True)
    assert removed.removed
    assert removed.removed_at == T0 + timedelta(days=1)
    assert removed.items == before.items
    again = record_removed(removed, T0 + timedelta(days=2), delete_removed_tags=True)
    assert again.removed_at == T0 + timedelta(days=1)


# -- specs and references --------------------------------------------------------------


def test_normalisers_accept_any_case_and_refuse_unknown() -> None:
    assert normalize_import_mode("legacy") == "Legacy"
    assert normalize_import_mode("PRESERVEORIGINAL") == "PreserveOriginal"
    assert normalize_reference_policy("local") == "Local"
    with pytest.raises(ConfigError, match="reference_policy"):
        normalize_reference_policy("mirror")


def test_reference_policy_chooses_the_recorded_repository() -> None:
    assert docker_image_reference("source", SRC, MIRROR, A) == f"{SRC}@{A}"
    assert docker_image_reference("Local", SRC, MIRROR, A) == f"{MIRROR}@{A}"


def test_spec_equality_ignores_created_by() -> None:
    spec = StreamSpec("ubi9/ubi", SRC, MIRROR, reference_policy="source")
    assert spec.reference_policy == "Source"
    assert spec.same_spec(StreamSpec("ubi9/ubi", SRC, MIRROR, created_by="import-image"))
    assert not spec.same_spec(StreamSpec("ubi9/ubi", SRC, MIRROR, scheduled=False))
    with pytest.raises(ValueError, match="created_by"):
        StreamSpec("x", SRC, MIRROR, created_by="someone")


# -- to_openshift ----------------------------------------------------------------------


def make_stream() -> ImageStream:
    latest = record_failure(imported(A, B), "Unauthorized", "denied", 2, T0 + timedelta(hours=3))
    latest = TagStatus("latest", latest.items, latest.conditions)
    old = record_removed(imported(C), T0, delete_removed_tags=True)
    old = TagStatus("8.0", old.items, old.conditions, old.removed_at)
    nine = record_import(None, A, ref(A), 1, T0, tag="9.4", source_digest=A).status
    return ImageStream(
        name="ubi9/ubi",
        docker_image_repository=MIRROR,
        source=SRC,
        generation=2,
        tags=(latest, nine, old),
        scheduled=True,
        import_mode="PreserveOriginal",
        reference_policy="Source",
        created=T0 - timedelta(days=1),
    )


def test_to_openshift_shape() -> None:
    doc = to_openshift(make_stream())
    json.dumps(doc)  # plain JSON
    assert doc["apiVersion"] == "image.openshift.io/v1"
    assert doc["kind"] == "ImageStream"
    assert doc["metadata"] == {  # the names: tests/core/test_openshift.py
        "name": "ubi",
        "namespace": "ubi9",
        "annotations": {"mirrord.io/stream": "ubi9/ubi"},
        "generation": 2,
        "creationTimestamp": "2024-04-30T12:00:00Z",
    }
    assert doc["spec"]["lookupPolicy"] == {"local": False}
    assert doc["spec"]["tags"][0] == {
        "name": "9.4",
        "from": {"kind": "DockerImage", "name": f"{SRC}:9.4"},
        "importPolicy": {"scheduled": True, "importMode": "PreserveOriginal"},
        "referencePolicy": {"type": "Source"},
    }
    status = doc["status"]
    assert status["dockerImageRepository"] == MIRROR
    assert [t["tag"] for t in status["tags"]] == ["9.4", "latest"]  # sorted, removed left out
    nine = status["tags"][0]
    assert "conditions" not in nine  # omitempty
    assert nine["items"] == [  # no source digest: OpenShift has no such field
        {
            "created": "2024-05-01T12:00:00Z",
            "dockerImageReference": ref(A),
            "image": A,
            "generation": 1,
        }
    ]
    latest = status["tags"][1]
    assert [i["image"] for i in latest["items"]] == [B, A]
    assert latest["items"][0]["created"] == "2024-05-01T13:00:00Z"
    assert latest["conditions"] == [
        {
            "type": "ImportSuccess",
            "status": "False",
            "reason": "Unauthorized",
            "message": "denied",
            "generation": 2,
            "lastTransitionTime": "2024-05-01T15:00:00Z",
        }
    ]


def test_to_openshift_can_include_removed_tags() -> None:
    doc = to_openshift(make_stream(), include_removed=True)
    assert [t["tag"] for t in doc["status"]["tags"]] == ["8.0", "9.4", "latest"]
    assert [t["name"] for t in doc["spec"]["tags"]] == ["8.0", "9.4", "latest"]


def test_rfc3339_drops_microseconds_and_uses_z() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 1, 999_999, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(moment) == "2024-05-01T12:00:01Z"


def test_a_tagged_import_is_marked_until_the_source_is_imported_again() -> None:
    first = record_import(None, A, ref(A), 1, T0, tag="stable", tagged_from="DockerImage q/x:1")
    assert tag_origin(first.status) == "DockerImage q/x:1" and first.changed
    again = record_import(
        first.status, A, ref(A), 2, T0 + timedelta(hours=1), tagged_from="DockerImage q/x:1"
    )
    kept = again.status.condition(TAGGED)
    assert kept is not None and kept.last_transition_time == T0  # same target: same since
    assert not again.changed
    back = record_import(again.status, B, ref(B), 3, T0 + timedelta(hours=2))
    assert tag_origin(back.status) is None and back.changed

"""Stream names as Kubernetes object names (core/openshift.py): the namespace and the
name of every ImageStream document pass the apiserver's DNS-1123 rules and OpenShift's
image-stream name rule, checked here with their own regular expressions (from
k8s.io/apimachinery/pkg/util/validation and openshift/library-go), not the module's."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrord.core.imagestream import TAGGED, Condition, ImageStream, TagEvent, TagStatus
from mirrord.core.openshift import object_names, to_openshift
from mirrord.core.reference import REPOSITORY_RE

# k8s.io/apimachinery/pkg/util/validation: IsDNS1123Label / IsDNS1123Subdomain
K8S_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
K8S_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# OpenShift's ValidateImageStreamName: a repository name component
OPENSHIFT_IS_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*$")


def valid_namespace(text: str) -> bool:
    return len(text) <= 63 and K8S_LABEL.match(text) is not None


def valid_name(text: str) -> bool:
    return (
        len(text) <= 253
        and K8S_SUBDOMAIN.match(text) is not None
        and OPENSHIFT_IS_NAME.match(text) is not None
        and text not in (".", "..")
    )


@pytest.mark.parametrize(
    ("stream", "namespace", "name"),
    [
        ("ubi9/ubi", "ubi9", "ubi"),
        ("nginx", "default", "nginx"),
        ("openshift/release/ocp-v4.0", "openshift", "release.ocp-v4.0"),
        ("my_org/app__x/img", "my-org", "app--x.img"),
        ("quay.io-mirror/prometheus/node-exporter", "quay-io-mirror", "prometheus.node-exporter"),
    ],
)
def test_documented_mapping(stream: str, namespace: str, name: str) -> None:
    assert object_names(stream) == (namespace, name)
    assert valid_namespace(namespace) and valid_name(name)


def test_long_names_are_cut_with_a_hash_and_stay_distinct() -> None:
    first = "a" * 70 + "/" + "b" * 70 + "/" + ("c" * 60 + "/") * 4 + "x"
    second = first[:-1] + "y"
    ns1, name1 = object_names(first)
    _, name2 = object_names(second)
    assert valid_namespace(ns1) and valid_name(name1) and valid_name(name2)
    assert len(ns1) == 63 and name1 != name2


COMPONENT = st.from_regex(r"[a-z0-9]{1,70}(?:(?:[._]|__|-+)[a-z0-9]{1,8}){0,3}", fullmatch=True)
PATHS = st.lists(COMPONENT, min_size=1, max_size=6).map("/".join)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(PATHS.filter(lambda s: len(s) <= 255 and REPOSITORY_RE.fullmatch(s) is not None))
def test_every_repository_path_maps_to_valid_object_names(stream: str) -> None:
    namespace, name = object_names(stream)
    assert valid_namespace(namespace), (stream, namespace)
    assert valid_name(name), (stream, name)


def test_document_is_a_valid_imagestream() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    digest = "sha256:" + "a" * 64
    event = TagEvent(now, f"quay.io/other/img@{digest}", digest, 1)
    by_docker = Condition(TAGGED, "True", "Tagged", "DockerImage quay.io/other/img:2", 1, now)
    by_stream = Condition(TAGGED, "True", "Tagged", "ImageStreamTag team_a/tools/cli:1.0", 1, now)
    stream = ImageStream(
        name="team_a/tools/cli",
        docker_image_repository="mirror:5000/team_a/tools/cli",
        source="quay.io/team/cli",
        generation=1,
        tags=(
            TagStatus("1.0", (event,)),
            TagStatus("2.0", (event,), (by_docker,)),
            TagStatus("stable", (event,), (by_stream,)),
        ),
        scheduled=True,
        import_mode="PreserveOriginal",
        reference_policy="Source",
        created=now,
    )
    doc = to_openshift(stream)
    meta = doc["metadata"]
    assert (meta["namespace"], meta["name"]) == ("team-a", "tools.cli")
    assert valid_namespace(meta["namespace"]) and valid_name(meta["name"])
    assert meta["annotations"]["mirrord.io/stream"] == "team_a/tools/cli"
    tags = {t["name"]: t for t in doc["spec"]["tags"]}
    assert tags["1.0"]["from"] == {"kind": "DockerImage", "name": "quay.io/team/cli:1.0"}
    assert tags["1.0"]["importPolicy"]["scheduled"] is True
    # tags pointed elsewhere (`mirrord tag`) are tagged from there, and not scheduled
    assert tags["2.0"]["from"] == {"kind": "DockerImage", "name": "quay.io/other/img:2"}
    assert tags["2.0"]["importPolicy"]["scheduled"] is False
    assert tags["stable"]["from"] == {
        "kind": "ImageStreamTag",
        "namespace": "team-a",
        "name": "tools.cli:1.0",
    }
    # the Tagged record is spec, never an OpenShift status condition
    assert all("conditions" not in t for t in doc["status"]["tags"])

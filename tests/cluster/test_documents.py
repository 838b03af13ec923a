"""The documents: OpenShift API fields, registries.conf TOML, registries.d, names, escaping."""

from __future__ import annotations

import copy
import random
import re
import tomllib
from typing import Any

import pytest
import yaml

from mirrord.cluster import (
    ClusterResources,
    MirrorRecord,
    SignatureScope,
    check_mirror_set,
    generate,
    resource_name,
)
from mirrord.cluster._documents import toml_string
from mirrord.cluster._model import LOCATION_RE, OPENSHIFT_LOCATION_PATTERN
from mirrord.errors import ClusterResourcesError

M = "mirror.lab:5000"
# The Kubernetes rule for metadata.name of these cluster-scoped objects (DNS-1123 subdomain).
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
API = {
    "ImageDigestMirrorSet": ("config.openshift.io/v1", "imageDigestMirrors"),
    "ImageTagMirrorSet": ("config.openshift.io/v1", "imageTagMirrors"),
    "ImageContentSourcePolicy": ("operator.openshift.io/v1alpha1", "repositoryDigestMirrors"),
}
FILE_KIND = {
    "idms-mirrord.yaml": "ImageDigestMirrorSet",
    "itms-mirrord.yaml": "ImageTagMirrorSet",
    "icsp-mirrord.yaml": "ImageContentSourcePolicy",
}

RECORDS = [
    MirrorRecord("quay.io/prometheus/node-exporter", f"{M}/m/prometheus/node-exporter",
                 tag_mirror=True, insecure=True),
    MirrorRecord("quay.io/prometheus/prometheus", f"{M}/m/prometheus/prometheus",
                 tag_mirror=True, insecure=True),
    MirrorRecord("docker.io/library/nginx", f"{M}/m/library/nginx", insecure=True),
    MirrorRecord("registry.redhat.io/ubi9/ubi", f"{M}/m/rh/ubi", tag_mirror=True,
                 insecure=True),
    MirrorRecord("10.0.0.7:5000/team/app", f"{M}/m/team/app", source_insecure=True,
                 insecure=True),
]


def api_server_accepts(document: dict[str, Any]) -> None:
    """What the OpenShift API server checks, written from openshift/api (not mirrord's code):
    the kubebuilder patterns verbatim, the name rule, required and set-typed fields."""
    api_version, key = API[document["kind"]]
    assert document["apiVersion"] == api_version
    name = document["metadata"]["name"]
    assert DNS1123_SUBDOMAIN.fullmatch(name) and len(name) <= 253, name
    entries = document["spec"][key]
    sources = [e["source"] for e in entries]
    assert len(sources) == len(set(sources)), "a source is listed twice"
    for entry in entries:
        assert re.search(OPENSHIFT_LOCATION_PATTERN, entry["source"]), entry
        assert entry["mirrors"], f"no mirror for {entry['source']}"
        assert len(entry["mirrors"]) == len(set(entry["mirrors"])), "listType=set"
        for mirror in entry["mirrors"]:
            assert re.search(OPENSHIFT_LOCATION_PATTERN, mirror), mirror


@pytest.fixture
def resources() -> ClusterResources:
    return generate(
        RECORDS,
        name=resource_name([f"{M}/m"]),
        mirror_targets=[f"{M}/m"],
        signature_scopes=[SignatureScope(f"{M}/m")],
    )


def test_mirror_sets_pass_the_api_checks(resources: ClusterResources) -> None:
    for file, kind in FILE_KIND.items():
        document = yaml.safe_load(resources.files[file])
        assert document["kind"] == kind
        api_server_accepts(document)
        assert document == resources.objects[list(FILE_KIND).index(file)]


def test_idms_and_icsp_list_every_digest_mirror_itms_only_tag_mirrors(
    resources: ClusterResources,
) -> None:
    idms = yaml.safe_load(resources.files["idms-mirrord.yaml"])["spec"]["imageDigestMirrors"]
    icsp = yaml.safe_load(resources.files["icsp-mirrord.yaml"])["spec"]
    itms = yaml.safe_load(resources.files["itms-mirrord.yaml"])["spec"]["imageTagMirrors"]
    assert idms == icsp["repositoryDigestMirrors"]
    assert [e["source"] for e in idms] == [
        "10.0.0.7:5000/team", "docker.io/library", "quay.io/prometheus",
        "registry.redhat.io/ubi9/ubi",
    ]
    assert {e["source"]: e["mirrors"] for e in itms} == {
        "quay.io/prometheus": [f"{M}/m/prometheus"],
        "registry.redhat.io/ubi9/ubi": [f"{M}/m/rh/ubi"],
    }


def test_registries_conf_is_one_table_per_prefix(resources: ClusterResources) -> None:
    conf = tomllib.loads(resources.files["registries.conf"])
    assert set(conf) == {"registry"}  # never unqualified-search-registries & co
    tables = {t["prefix"]: t for t in conf["registry"]}
    assert len(tables) == len(conf["registry"])
    prometheus = tables["quay.io/prometheus"]
    assert prometheus["location"] == "quay.io/prometheus"
    assert "insecure" not in prometheus  # the source is reached over TLS
    assert prometheus["mirror"] == [
        {"location": f"{M}/m/prometheus", "pull-from-mirror": "digest-only", "insecure": True},
        {"location": f"{M}/m/prometheus", "pull-from-mirror": "tag-only", "insecure": True},
    ]
    nginx = tables["docker.io/library"]
    assert [m["pull-from-mirror"] for m in nginx["mirror"]] == ["digest-only"]
    # a plain-HTTP source keeps working when a client falls back to it
    assert tables["10.0.0.7:5000/team"]["insecure"] is True
    assert not any("mirror-by-digest-only" in t for t in conf["registry"])


def test_registries_d_names_the_mirror_scope(resources: ClusterResources) -> None:
    document = yaml.safe_load(resources.files["registries.d/mirrord.yaml"])
    assert document == {"docker": {f"{M}/m": {"use-sigstore-attachments": True}}}


def test_registries_d_writes_a_lookaside_when_one_is_given() -> None:
    scope = SignatureScope(f"{M}/m", lookaside="http://mirror.lab:9464/sigstore")
    text = generate(RECORDS, name="mirrord-x", signature_scopes=[scope]).files
    document = yaml.safe_load(text["registries.d/mirrord.yaml"])
    assert document["docker"][f"{M}/m"] == {
        "lookaside": "http://mirror.lab:9464/sigstore", "use-sigstore-attachments": True
    }


def test_no_signature_scope_no_registries_d() -> None:
    assert "registries.d/mirrord.yaml" not in generate(RECORDS, name="mirrord-x").files


def test_resource_name_is_stable_dns1123_and_tells_mirrors_apart() -> None:
    one = resource_name([f"{M}/m"])
    assert re.fullmatch(r"mirrord-[0-9a-f]{10}", one)
    assert resource_name([f"{M}/m/", f"{M}/m"]) == one  # the same target
    assert resource_name([f"{M}/other"]) != one
    assert resource_name(["b.lab/x", "a.lab/y"]) == resource_name(["a.lab/y", "b.lab/x"])
    with pytest.raises(ClusterResourcesError):
        resource_name([])


@pytest.mark.parametrize("name", ["Mirrord", "-mirrord", "mirrord_1", "a" * 64, ""])
def test_a_name_the_api_refuses_is_refused(name: str) -> None:
    with pytest.raises(ClusterResourcesError, match="DNS-1123"):
        generate(RECORDS, name=name)


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda d: d.update(apiVersion="config.openshift.io/v1alpha1"), "apiVersion"),
        (lambda d: d.update(kind="ImageMirrorSet"), "kind"),
        (lambda d: d["metadata"].update(name="Not_DNS"), "DNS-1123"),
        (lambda d: d["spec"]["imageDigestMirrors"][0].update(mirrors=[]), "empty"),
        (lambda d: d["spec"]["imageDigestMirrors"][0].update(source=""), "required"),
        (lambda d: d["spec"]["imageDigestMirrors"].append(
            dict(d["spec"]["imageDigestMirrors"][0])), "twice"),
        (lambda d: d["spec"]["imageDigestMirrors"][0]["mirrors"].append(
            d["spec"]["imageDigestMirrors"][0]["mirrors"][0]), "twice"),
        (lambda d: d["spec"]["imageDigestMirrors"][0].update(source="quay.io/a:latest"),
         "cannot be named"),
    ],
)
def test_the_validator_refuses_what_the_api_would(
    resources: ClusterResources, tamper: Any, message: str
) -> None:
    document = copy.deepcopy(dict(resources.objects[0]))
    check_mirror_set(document)
    tamper(document)
    with pytest.raises(ClusterResourcesError, match=message):
        check_mirror_set(document)


def test_location_pattern_equals_openshifts_and_does_not_backtrack() -> None:
    original = re.compile(OPENSHIFT_LOCATION_PATTERN)
    alphabet = "ab1-._/:A"
    rng = random.Random(14)
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
               for _ in range(20000)]
    samples += ["q.io/" + "".join(rng.choice("ab1-._/") for _ in range(rng.randint(1, 10)))
                for _ in range(20000)]  # paths: separators in every position
    samples += ["quay.io/a__b", "quay.io/a---b", "q/a_.b", "h:1/a.b-c__d", "h:/a", "h/a/"]
    for sample in samples:
        assert bool(LOCATION_RE.fullmatch(sample)) == bool(original.search(sample)), sample
    # 60 letters then a refused character: the original pattern backtracks exponentially
    # in Python's re; mirrord's answers at once.
    assert LOCATION_RE.fullmatch("quay.io/" + "a" * 60 + "!") is None


@pytest.mark.parametrize(
    "value, expected",
    [
        ("plain", '"plain"'),
        ('a"b', '"a\\"b"'),
        ("back\\slash", '"back\\\\slash"'),
        ("tab\tnew\nline\r", '"tab\\tnew\\nline\\r"'),
        ("\x00\x1f\x7f", '"\\u0000\\u001F\\u007F"'),
        ("ünïcode", '"ünïcode"'),
    ],
)
def test_toml_strings_are_escaped(value: str, expected: str) -> None:
    assert toml_string(value) == expected
    assert tomllib.loads(f"k = {toml_string(value)}")["k"] == value

"""The writer (atomic, only what changed) and the daemon endpoint's rendering."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from mirrord.cluster import (
    Change,
    MirrorRecord,
    SignatureScope,
    generate,
    plan_changes,
    render,
    write_files,
)
from mirrord.cluster._http import negotiate
from mirrord.errors import ClusterResourcesError

FILES = {"idms-mirrord.yaml": "a: 1\n", "registries.conf": "[[registry]]\n"}


def test_first_write_creates_every_file_readable_by_others(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "cluster-resources"
    changes = write_files({**FILES, "registries.d/mirrord.yaml": "docker: {}\n"}, directory)
    assert changes == [
        Change("idms-mirrord.yaml", "written"),
        Change("registries.conf", "written"),
        Change("registries.d/mirrord.yaml", "written"),
    ]
    assert (directory / "registries.conf").read_text() == "[[registry]]\n"
    assert (directory / "registries.d" / "mirrord.yaml").is_file()
    assert stat.S_IMODE((directory / "registries.conf").stat().st_mode) == 0o644
    assert not [p for p in directory.rglob(".*") if p.is_file()], "a temporary file was left"


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    write_files(FILES, tmp_path)
    before = {n: os.stat(tmp_path / n).st_ino for n in FILES}
    assert write_files(FILES, tmp_path) == []
    assert {n: os.stat(tmp_path / n).st_ino for n in FILES} == before

    changed = write_files({**FILES, "registries.conf": "[[registry]]\n# new\n"}, tmp_path)
    assert changed == [Change("registries.conf", "written")]
    assert os.stat(tmp_path / "registries.conf").st_ino != before["registries.conf"]  # renamed
    assert os.stat(tmp_path / "idms-mirrord.yaml").st_ino == before["idms-mirrord.yaml"]


def test_a_document_with_nothing_to_describe_is_removed_other_files_stay(
    tmp_path: Path,
) -> None:
    write_files({**FILES, "itms-mirrord.yaml": "b: 2\n"}, tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")  # the user's own
    assert plan_changes(FILES, tmp_path) == [Change("itms-mirrord.yaml", "removed")]
    assert (tmp_path / "itms-mirrord.yaml").exists()  # planning changes nothing
    assert write_files(FILES, tmp_path) == [Change("itms-mirrord.yaml", "removed")]
    assert not (tmp_path / "itms-mirrord.yaml").exists()
    assert (tmp_path / "kustomization.yaml").exists()


def test_an_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ClusterResourcesError, match=r"cannot (read|write) .*not-a-dir"):
        write_files(FILES, blocker)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_files(FILES, tmp_path)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ClusterResourcesError, match=r"cannot write .*registries\.conf: No space"):
        write_files({**FILES, "registries.conf": "changed\n"}, tmp_path)
    assert (tmp_path / "registries.conf").read_text() == FILES["registries.conf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


# --- the endpoint ------------------------------------------------------------------------

RESOURCES = generate(
    [MirrorRecord("quay.io/org/app", "m.lab:5000/p/org/app", tag_mirror=True)],
    name="mirrord-test",
    signature_scopes=[SignatureScope("m.lab:5000/p")],
)


@pytest.mark.parametrize(
    "accept, expected",
    [
        ("", "application/yaml"),
        ("application/json", "application/json"),
        ("application/yaml", "application/yaml"),
        ("*/*", "application/yaml"),
        ("application/json, */*;q=0.5", "application/json"),
        ("application/yaml;q=0.2, application/json;q=0.9", "application/json"),
        ("text/html, */*;q=0.1", "application/yaml"),
        ("text/html", None),
        ("application/json;q=0", None),
    ],
)
def test_accept_negotiation(accept: str, expected: str | None) -> None:
    assert negotiate(accept) == expected


def test_json_and_yaml_bodies_are_the_same_v1_list() -> None:
    as_json = render(RESOURCES, "application/json")
    as_yaml = render(RESOURCES, "application/yaml")
    assert (as_json.status, as_json.media_type) == (200, "application/json")
    assert as_yaml.media_type.startswith("application/yaml")
    document = json.loads(as_json.body)
    assert document == yaml.safe_load(as_yaml.body)
    assert document["kind"] == "List"
    kinds = [i["kind"] for i in document["items"]]
    assert kinds == ["ImageDigestMirrorSet", "ImageTagMirrorSet", "ImageContentSourcePolicy"]


def test_one_file_as_written_and_unknown_files() -> None:
    conf = render(RESOURCES, file="registries.conf")
    assert conf.status == 200 and conf.media_type.startswith("application/toml")
    assert conf.body.decode() == RESOURCES.files["registries.conf"]
    assert render(RESOURCES, file="registries.d/mirrord.yaml").status == 200
    missing = render(RESOURCES, file="../etc/passwd")
    assert missing.status == 404 and "registries.conf" in json.loads(missing.body)["files"]
    assert render(RESOURCES, "text/html").status == 406

"""`mirrord cluster-resources`: output directory rules, dry run, merges, clear errors."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import yaml
from click.testing import CliRunner, Result

from mirrord.cli import main
from mirrord.core.imagestream import StreamSpec
from mirrord.state import open_store


def write_config(directory: Path, mirror: str, streams: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "version": 1,
        "mirror": mirror,
        "state_dir": str(directory / "state"),
        "streams": [{"from": s} for s in streams],
    }
    path = directory / "mirrord.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def record(config: Path, name: str, source: str, mirror: str) -> None:
    """A stream that mirrored one image, as a sync records it."""

    async def write() -> None:
        with open_store(config.parent / "state") as store:
            await store.upsert_stream(StreamSpec(name, source, mirror))
            await store.record_tag_import(name, "1.0", "sha256:" + "b" * 64, f"{source}:1.0")

    anyio.run(write)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["cluster-resources", *args])


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    path = write_config(tmp_path / "lab", "docker://mirror.lab:5000/m", ["quay.io/org/app"])
    record(path, "org/app", "quay.io/org/app", "mirror.lab:5000/m/org/app")
    return path


def test_writes_the_state_directory_then_finds_nothing_changed(lab: Path) -> None:
    directory = lab.parent / "state" / "cluster-resources"
    first = run("--config", str(lab))
    assert first.exit_code == 0, first.output
    assert f"written {directory / 'idms-mirrord.yaml'}" in first.stdout
    assert (directory / "registries.d" / "mirrord.yaml").is_file()
    second = run("--config", str(lab))
    assert second.stdout == f"unchanged: 5 files in {directory}\n"


def test_dry_run_prints_the_files_and_writes_nothing(lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("--config", str(lab), "--output-dir", str(out), "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"# --- {out / 'registries.conf'} (would be written)" in result.stdout
    assert 'prefix = "quay.io/org"' in result.stdout
    assert "kind: ImageDigestMirrorSet" in result.stdout
    assert not out.exists()


def test_per_repository(lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run("--config", str(lab), "--output-dir", str(out), "--per-repository").exit_code == 0
    idms = yaml.safe_load((out / "idms-mirrord.yaml").read_text())
    assert idms["spec"]["imageDigestMirrors"] == [
        {"source": "quay.io/org/app", "mirrors": ["mirror.lab:5000/m/org/app"]}
    ]


def test_two_configurations_merge_into_one_entry(lab: Path, tmp_path: Path) -> None:
    backup = write_config(tmp_path / "dr", "docker://backup.lab/dr", ["quay.io/org/app"])
    record(backup, "org/app", "quay.io/org/app", "backup.lab/dr/org/app")
    refused = run("--config", str(lab), "--config", str(backup))
    assert refused.exit_code == 2
    assert "with several --config, name the directory with --output-dir" in refused.stderr

    out = tmp_path / "merged"
    merged = run("--config", str(lab), "--config", str(backup), "--output-dir", str(out))
    assert merged.exit_code == 0, merged.output
    idms = yaml.safe_load((out / "idms-mirrord.yaml").read_text())
    assert idms["spec"]["imageDigestMirrors"] == [
        {"source": "quay.io/org", "mirrors": ["mirror.lab:5000/m/org", "backup.lab/dr/org"]}
    ]


def test_stream_selection_needs_its_own_directory_and_a_known_name(
    lab: Path, tmp_path: Path
) -> None:
    refused = run("--config", str(lab), "--stream", "org/app")
    assert refused.exit_code == 2 and "with --stream, name the directory" in refused.stderr
    unknown = run("--config", str(lab), "--stream", "org/ap", "--output-dir", str(tmp_path))
    assert unknown.exit_code == 2
    assert "no stream named 'org/ap'; did you mean 'org/app'?" in unknown.stderr
    assert not (tmp_path / "idms-mirrord.yaml").exists()


def test_an_oci_layout_mirror_has_nothing_to_describe(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"oci:{tmp_path}/layout", ["quay.io/org/app"])
    result = run("--config", str(path))
    assert result.exit_code == 2
    assert "the mirror is an OCI layout" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "state").exists()


def test_an_oci_config_beside_a_registry_one_is_skipped_with_a_warning(
    lab: Path, tmp_path: Path
) -> None:
    oci = write_config(tmp_path / "oci", f"oci:{tmp_path}/layout", ["quay.io/org/app"])
    out = tmp_path / "out"
    result = run("--config", str(oci), "--config", str(lab), "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    assert "warning: skipped:" in result.stderr and "OCI layout" in result.stderr
    assert (out / "idms-mirrord.yaml").is_file()


def test_nothing_mirrored_yet_writes_nothing_and_creates_no_state(tmp_path: Path) -> None:
    path = write_config(tmp_path, "docker://mirror.lab:5000/m", ["quay.io/org/app"])
    result = run("--config", str(path))
    assert result.exit_code == 0, result.output
    assert "Nothing is mirrored yet" in result.stdout
    assert not (tmp_path / "state").exists()


def test_a_bad_configuration_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "mirrord.yaml"
    path.write_text("version: 1\nmirror: docker://m.lab\nstreams: [{form: quay.io/a/b}]\n")
    result = run("--config", str(path))
    assert result.exit_code == 2
    assert "mirrord.yaml:3" in result.stderr and "Traceback" not in result.output

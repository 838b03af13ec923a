"""Two `mirrord sync` processes on one OCI layout, and dry runs that must not touch it."""

from __future__ import annotations

import json
from pathlib import Path

from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.synctools import sync_setup

from mirrord.transports._ocilayout import REF_NAME


def ref_names(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_bytes())
    return sorted(e["annotations"][REF_NAME] for e in index["manifests"])


def test_two_syncs_with_their_own_state_share_one_layout(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    layout = tmp_path / "layout"
    tags = [f"v{i}" for i in range(8)]
    setups = []
    for side in ("a", "b"):
        repo = f"{repo_name}-{side}"
        for tag in tags:
            push_image(basic_client, repo, tag, seed=f"{repo}/{tag}", layer_sizes=(3000, 2000))
        (tmp_path / side).mkdir()
        setups.append(sync_setup(
            tmp_path / side,
            mirror=f"oci:{layout}",
            streams=[{"from": f"{basic_registry.host}/{repo}", "to": side, "max_tags": -1}],
            sources=[basic_registry],
        ))

    processes = [setup.sync_process() for setup in setups]
    outcomes = [process.communicate(timeout=300) for process in processes]

    for process, (out, err) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, out + err
    assert ref_names(layout) == sorted(f"{side}:{tag}" for side in "ab" for tag in tags)
    assert list((layout / "ingest").iterdir()) == []


def test_a_dry_run_does_not_create_the_layout(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    layout = tmp_path / "mirror" / "layout"
    setup = sync_setup(
        tmp_path,
        mirror=f"oci:{layout}",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": "app"}],
        sources=[basic_registry],
    )

    result = setup.sync("--dry-run")

    assert result.exit_code == 0, result.output
    assert "1 to copy" in result.output
    assert not (tmp_path / "mirror").exists()
    assert setup.sync().exit_code == 0
    assert ref_names(layout) == ["app:1.0"]

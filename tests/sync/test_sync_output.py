"""`mirrord sync`'s output: dry runs, -o json, and bad configurations (real registries)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from harness.images import (
    RegistryHTTP,
    push_image,
)
from harness.registry import RegistryProcess
from harness.synctools import sync_setup

from mirrord.core.units import human_bytes


def test_dry_run_changes_nothing(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "1.0", seed=repo_name, layer_sizes=(10_000,))
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/dry",
        streams=[{"from": f"{basic_registry.host}/{repo_name}"}],
        sources=[basic_registry],
    )
    mark = mirror_registry.mark()

    result = setup.sync("--dry-run")

    assert result.exit_code == 0, result.output
    assert "copy" in result.output and "1.0" in result.output and "KiB" in result.output
    writes = [(m, p) for m, p in mirror_registry.requests(since=mark) if m not in ("GET", "HEAD")]
    assert writes == []
    assert mirror_client.head_manifest(f"dry/{repo_name}", "1.0") is None
    assert not setup.state_dir.exists()  # no state created either
    assert result.output.splitlines()[-1].startswith(
        "dry run: images: 1 to copy, 0 unchanged, 0 failed; nothing was changed"
    )


def test_a_dry_run_counts_like_a_run_and_lists_tags_gone_upstream(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "keep", seed=repo_name)
    gone = push_image(basic_client, repo_name, "gone", seed=f"{repo_name}-gone")
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/dry-gone",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": "app",
                  "delete_removed_tags": True}],
        sources=[basic_registry],
    )
    assert setup.sync_json()[0] == 0
    basic_client.delete_manifest(repo_name, gone.digest)

    text = setup.sync("--dry-run")
    code, planned = setup.sync_json("--dry-run")

    assert text.exit_code == 0 and code == 0
    assert re.search(r"^  delete +gone +gone upstream \(delete_removed_tags\)$", text.output, re.M)
    assert "dry run: images: 0 to copy, 1 unchanged, 0 failed" in text.output
    assert planned["images"]["unchanged"] == 1
    assert planned["goneUpstream"] == {"app": {"tags": ["gone"], "delete": True}}
    assert mirror_client.head_manifest("dry-gone/app", "gone") == gone.digest  # still there


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries as many, but 10 ms apart (the backoff has its own tests)."""
    from mirrord.registry._retry import RetryPolicy

    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, error: 0.01)


def test_json_counts_a_failed_stream_and_its_retries_like_the_text(
    tmp_path: Path, mirror_registry: RegistryProcess, repo_name: str, fast_retries: None,
    refused_host: str,
) -> None:
    down = refused_host  # nothing listens: connection refused, retried
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/down",
        streams=[{"from": f"{down}/{repo_name}", "to": "app"}],
        sources=[],
        settings={down: {"insecure": True, "outage_budget": "1s"}},  # not the default 2m
    )
    text = setup.sync()
    code, summary = setup.sync_json()

    assert text.exit_code == 1 and code == 1
    assert "0 unchanged, 1 failed" in text.output
    assert summary["images"]["failed"] == 1 and len(summary["failures"]) == 1
    assert summary["retries"] >= 1  # the tag listing was retried before giving up


def test_an_unreachable_mirror_still_gets_a_json_document(
    tmp_path: Path, basic_registry: RegistryProcess, repo_name: str, fast_retries: None,
    refused_host: str,
) -> None:
    down = refused_host
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{down}/m",
        streams=[{"from": f"{basic_registry.host}/{repo_name}"}],
        sources=[basic_registry],
        settings={down: {"outage_budget": "1s"}},  # not the default 2m
    )
    result = setup.sync("-o", "json")

    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["error"]["message"].startswith(f"{down}")
    assert "error:" in result.stderr


def test_bad_configurations_exit_2_and_touch_nothing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mirrord.cli import main

    cases = {
        "version: 1\nstreams:\n  - from: quay.io/x\n    tagz: [a]\n": ("line 4", "tagz"),
        "version: 1\nstreams:\n  - from: 'Bad Ref!'\n": ("line 3", "streams[0].from"),
        "version: 1\nstreams:\n  - from: quay.io/x\n    semver: '>>1'\n": ("line 4", "semver"),
        "version: 1\nstate_dir: [oops]\nstreams: []\n": ("line 2", "state_dir"),
    }
    for n, (text, (line, key)) in enumerate(cases.items()):
        path = tmp_path / f"bad{n}.yaml"
        path.write_text(text + f"state_dir: {tmp_path / f'state{n}'}\n" * ("state_dir" not in text))
        result = CliRunner().invoke(main, ["sync", "--config", str(path)])
        assert result.exit_code == 2, (text, result.output)
        assert str(path) in result.output and key in result.output, result.output
        assert line.split()[1] in result.output.split(str(path))[1].split(":")[1], result.output
        assert not (tmp_path / f"state{n}").exists()
        validate = CliRunner().invoke(main, ["validate", "--config", str(path)])
        assert validate.exit_code == 2


def test_a_dry_run_counts_a_shared_blob_once_and_shows_where_each_image_lands(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    from harness.images import make_layer

    base = make_layer(300_000, seed=f"{repo_name}-base")
    images = [
        push_image(basic_client, repo_name, f"v{i}", seed=f"{repo_name}/{i}",
                   layers=(base,), layer_sizes=(5_000 + i,))
        for i in range(3)
    ]
    unique = {b.digest: b.size for image in images for b in image.blobs}
    per_image = sum(b.size for image in images for b in image.blobs)
    assert per_image - sum(unique.values()) == 2 * base.size  # the base is shared
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/shared",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": "app", "max_tags": -1}],
        sources=[basic_registry],
    )

    text = setup.sync("--dry-run")
    code, planned = setup.sync_json("--dry-run")

    assert text.exit_code == 0 and code == 0, text.output
    assert planned["bytesToCopy"] == sum(unique.values())
    assert f"would copy {human_bytes(sum(unique.values()))} in {len(unique)} blobs" in text.output
    for image in images:
        where = f"{mirror_registry.host}/shared/app:{image.tag}"
        assert re.search(rf"^  copy +{image.tag} +{image.digest} \(.*\) -> {where}$",
                         text.output, re.M), text.output
    # The run copies what the dry run said, byte for byte.
    code, done = setup.sync_json()
    assert code == 0 and done["bytes"] == planned["bytesToCopy"]


def test_a_dry_run_document_is_alone_on_stdout_and_leaves_out_what_the_mirror_holds(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    image = push_image(basic_client, repo_name, "1.0", seed=repo_name,
                       layer_sizes=(40_000, 20_000))
    held = image.layers[0]
    # The target repository has it, with a tag of its own (its blobs are HEADed: an
    # untagged repository's are not, unless the state records them there).
    push_image(mirror_client, f"held/{repo_name}", "other", seed="other", layers=(held,))
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/held",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": repo_name}],
        sources=[basic_registry],
    )

    result = setup.sync("--dry-run", "-o", "json")

    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)  # nothing but the document
    assert planned["bytesToCopy"] == sum(b.size for b in image.blobs) - held.size
    code, done = setup.sync_json()
    assert code == 0 and done["bytes"] == planned["bytesToCopy"]

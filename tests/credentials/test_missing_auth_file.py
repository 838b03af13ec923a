"""``mirrord sync`` with a configured ``auth_file`` that does not exist: an error that names
it, never a silent fallback to anonymous pulls."""

from __future__ import annotations

from pathlib import Path

from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.synctools import sync_setup


def test_sync_fails_the_registry_naming_the_missing_auth_file(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    repo_name: str,
) -> None:
    push_image(basic_client, repo_name, "v1", seed=repo_name)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/mirror",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "tags": ["v1"]}],
        sources=[basic_registry],
    )
    setup.auth_file.unlink()
    mark = basic_registry.mark()

    result = setup.sync()

    assert result.exit_code == 1, result.output
    expected = (
        f"auth_file {setup.auth_file} for {basic_registry.host} (from the configuration) "
        "does not exist"
    )
    assert expected in result.output
    assert "anonymous" not in result.output
    assert basic_registry.requests(since=mark) == []  # no anonymous attempt was made

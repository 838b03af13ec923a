"""A real client: skopeo pulls through the generated registries.conf drop-in, by the
source's name, with the source registry stopped."""

from __future__ import annotations

import shutil
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from harness.images import push_image
from harness.registry import RegistryProcess
from harness.skopeo import SkopeoClient
from synctools import make_config

from mirrord.cli import main

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")


def test_skopeo_pulls_from_the_mirror_by_digest_and_by_tag_with_the_source_down(
    tmp_path: Path,
    registry_factory: Any,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> None:
    source: RegistryProcess = registry_factory()
    with source.client() as client:
        live = push_image(client, f"{repo_name}/live", "1.0", seed=f"{repo_name}/live")
        once = push_image(client, f"{repo_name}/once", "1.0", seed=f"{repo_name}/once")
    prefix = f"cr-{uuid.uuid4().hex[:8]}"
    setup = make_config(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/{prefix}",
        streams=[{"from": f"{source.host}/{repo_name}/live", "to": f"{repo_name}/live"}],
        sources=[source],
    )
    # `live` is configured: mirrored continuously (digest and tag mirror). `once` is
    # imported once, not scheduled: a digest-only mirror.
    synced = setup.sync()
    assert synced.exit_code == 0, synced.output
    imported = CliRunner().invoke(main, [
        "import-image", f"{repo_name}/once:1.0", "--from", f"{source.host}/{repo_name}/once",
        "--confirm", "--config", str(setup.path),
    ])
    assert imported.exit_code == 0, imported.output

    # Each run refreshed <state_dir>/cluster-resources; the command finds nothing to change.
    directory = setup.state_dir / "cluster-resources"
    again = CliRunner().invoke(main, ["cluster-resources", "--config", str(setup.path)])
    assert again.exit_code == 0, again.output
    assert again.stdout == f"unchanged: 5 files in {directory}\n"
    mirror = f"{mirror_registry.host}/{prefix}/{repo_name}"
    conf = tomllib.loads((directory / "registries.conf").read_text())
    assert conf["registry"] == [
        {   # the namespace: both repositories, by digest
            "prefix": f"{source.host}/{repo_name}", "location": f"{source.host}/{repo_name}",
            "insecure": True,
            "mirror": [{"location": mirror, "pull-from-mirror": "digest-only", "insecure": True}],
        },
        {   # tags only for `live`: `once` shares the namespace and is never refreshed
            "prefix": f"{source.host}/{repo_name}/live",
            "location": f"{source.host}/{repo_name}/live",
            "insecure": True,
            "mirror": [  # the namespace's digest mirror repeated: this table shadows it
                {"location": f"{mirror}/live", "pull-from-mirror": "digest-only",
                 "insecure": True},
                {"location": f"{mirror}/live", "pull-from-mirror": "tag-only", "insecure": True},
            ],
        },
    ]
    itms = yaml.safe_load((directory / "itms-mirrord.yaml").read_text())
    assert itms["spec"]["imageTagMirrors"] == [
        {"source": f"{source.host}/{repo_name}/live", "mirrors": [f"{mirror}/live"]}
    ]

    source.stop()
    skopeo = SkopeoClient(tmp_path / "home")
    by_tag = f"{source.host}/{repo_name}/live:1.0"
    by_digest = f"{source.host}/{repo_name}/once@{once.digest}"

    # Without the drop-in the source's name leads to the stopped source.
    for reference in (by_tag, by_digest):
        refused = skopeo.pull(reference)
        assert not refused.ok, reference
        assert source.host in refused.stderr

    skopeo.install_drop_in(directory / "registries.conf")
    skopeo.install_registries_d(directory / "registries.d" / "mirrord.yaml")
    mark = mirror_registry.mark()
    pulled_tag = skopeo.pull(by_tag)
    assert pulled_tag.ok, pulled_tag.stderr
    assert pulled_tag.manifest_digest == live.digest
    assert pulled_tag.layers == len(live.blobs)
    pulled_digest = skopeo.pull(by_digest)
    assert pulled_digest.ok, pulled_digest.stderr
    assert pulled_digest.manifest_digest == once.digest
    assert skopeo.pull(f"{source.host}/{repo_name}/live@{live.digest}").ok
    routes = {(e.method, e.route) for e in mirror_registry.access_log(since=mark)}
    assert ("GET", f"/v2/{prefix}/{repo_name}/live/manifests/1.0") in routes
    assert ("GET", f"/v2/{prefix}/{repo_name}/once/manifests/{once.digest}") in routes

    # pull-from-mirror is honoured by skopeo 1.9: `once` is a digest-only mirror, so its
    # tag is not looked up in the mirror (the source is down: the pull fails).
    mark = mirror_registry.mark()
    stale = skopeo.pull(f"{source.host}/{repo_name}/once:1.0")
    assert not stale.ok
    assert not any("/once/" in e.route for e in mirror_registry.access_log(since=mark))

"""A real client: skopeo pulls through the generated registries.conf drop-in, by the
source's name, with the source registry stopped."""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from harness.images import Image, push_image
from harness.registry import RegistryProcess
from harness.skopeo import SkopeoClient
from harness.synctools import sync_setup

from mirrord.cli import main

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")


@dataclass
class Lab:
    """A source with two repositories mirrored by mirrord: `live` configured (mirrored
    continuously), `once` imported once, not scheduled (a digest-only mirror)."""

    source: RegistryProcess
    mirror: RegistryProcess
    prefix: str
    repo: str
    live: Image
    once: Image
    directory: Path  # <state_dir>/cluster-resources
    config: Path


@pytest.fixture
def lab(
    tmp_path: Path, registry_factory: Any, mirror_registry: RegistryProcess, repo_name: str
) -> Lab:
    source: RegistryProcess = registry_factory()
    with source.client() as client:
        live = push_image(client, f"{repo_name}/live", "1.0", seed=f"{repo_name}/live")
        once = push_image(client, f"{repo_name}/once", "1.0", seed=f"{repo_name}/once")
    prefix = f"cr-{uuid.uuid4().hex[:8]}"
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/{prefix}",
        streams=[{"from": f"{source.host}/{repo_name}/live", "to": f"{repo_name}/live"}],
        sources=[source],
    )
    synced = setup.sync()
    assert synced.exit_code == 0, synced.output
    imported = CliRunner().invoke(main, [
        "import-image", f"{repo_name}/once:1.0", "--from", f"{source.host}/{repo_name}/once",
        "--confirm", "--config", str(setup.path),
    ])
    assert imported.exit_code == 0, imported.output
    return Lab(source, mirror_registry, prefix, repo_name, live, once,
               setup.state_dir / "cluster-resources", setup.path)


def test_each_run_refreshed_the_files_for_the_lab(lab: Lab) -> None:
    again = CliRunner().invoke(main, ["cluster-resources", "--config", str(lab.config)])
    assert again.exit_code == 0, again.output
    assert again.stdout == f"unchanged: 5 files in {lab.directory}\n"
    source = f"{lab.source.host}/{lab.repo}"
    mirror = f"{lab.mirror.host}/{lab.prefix}/{lab.repo}"
    conf = tomllib.loads((lab.directory / "registries.conf").read_text())
    assert conf["registry"] == [
        {   # the namespace: both repositories, by digest
            "prefix": source, "location": source, "insecure": True,
            "mirror": [{"location": mirror, "pull-from-mirror": "digest-only", "insecure": True}],
        },
        {   # tags only for `live`: `once` shares the namespace and is never refreshed
            "prefix": f"{source}/live", "location": f"{source}/live", "insecure": True,
            "mirror": [  # the namespace's digest mirror repeated: this table shadows it
                {"location": f"{mirror}/live", "pull-from-mirror": "digest-only",
                 "insecure": True},
                {"location": f"{mirror}/live", "pull-from-mirror": "tag-only", "insecure": True},
            ],
        },
    ]
    itms = yaml.safe_load((lab.directory / "itms-mirrord.yaml").read_text())
    assert itms["spec"]["imageTagMirrors"] == [
        {"source": f"{source}/live", "mirrors": [f"{mirror}/live"]}
    ]


def test_skopeo_pulls_from_the_mirror_by_digest_and_by_tag_with_the_source_down(
    lab: Lab, tmp_path: Path
) -> None:
    lab.source.stop()
    skopeo = SkopeoClient(tmp_path / "home")
    named = f"{lab.source.host}/{lab.repo}"
    by_tag, by_digest = f"{named}/live:1.0", f"{named}/once@{lab.once.digest}"

    # Without the drop-in the source's name leads to the stopped source.
    for reference in (by_tag, by_digest):
        refused = skopeo.pull(reference)
        assert not refused.ok, reference
        assert lab.source.host in refused.stderr

    skopeo.install_drop_in(lab.directory / "registries.conf")
    skopeo.install_registries_d(lab.directory / "registries.d" / "mirrord.yaml")
    mark = lab.mirror.mark()
    pulled_tag = skopeo.pull(by_tag)
    assert pulled_tag.ok, pulled_tag.stderr
    assert (pulled_tag.manifest_digest, pulled_tag.layers) == (lab.live.digest,
                                                               len(lab.live.blobs))
    pulled_digest = skopeo.pull(by_digest)
    assert pulled_digest.ok, pulled_digest.stderr
    assert pulled_digest.manifest_digest == lab.once.digest
    assert skopeo.pull(f"{named}/live@{lab.live.digest}").ok
    routes = {(e.method, e.route) for e in lab.mirror.access_log(since=mark)}
    assert ("GET", f"/v2/{lab.prefix}/{lab.repo}/live/manifests/1.0") in routes
    assert ("GET", f"/v2/{lab.prefix}/{lab.repo}/once/manifests/{lab.once.digest}") in routes

    # pull-from-mirror is honoured by skopeo 1.9: `once` is a digest-only mirror, so its
    # tag is not looked up in the mirror (the source is down: the pull fails).
    mark = lab.mirror.mark()
    stale = skopeo.pull(f"{named}/once:1.0")
    assert not stale.ok
    assert not any("/once/" in e.route for e in lab.mirror.access_log(since=mark))


def test_a_change_of_the_files_is_a_notification(
    tmp_path: Path, registry_factory: Any, mirror_registry: RegistryProcess, repo_name: str
) -> None:
    source: RegistryProcess = registry_factory()
    with source.client() as client:
        push_image(client, f"{repo_name}/app", "1.0", seed=f"{repo_name}/app")
    events = tmp_path / "events.jsonl"
    receiver = "import sys; open(sys.argv[1], 'ab').write(sys.stdin.buffer.read() + b'\\n')"
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/cr-{uuid.uuid4().hex[:8]}",
        streams=[{"from": f"{source.host}/{repo_name}/app", "to": f"{repo_name}/app"}],
        sources=[source],
        extra={"notifications": [{"command": [sys.executable, "-c", receiver, str(events)]}]},
    )
    assert setup.sync().exit_code == 0
    actions = [json.loads(line)["events"][0] for line in events.read_text().splitlines()]
    changed = [e for e in actions if e["action"] == "cluster-resources.changed"]
    assert [e["action"] for e in actions].count("push") == 1
    assert len(changed) == 1
    assert changed[0]["target"]["directory"] == str(setup.state_dir / "cluster-resources")
    assert changed[0]["target"]["files"]["registries.conf"] == "written"
    assert setup.sync().exit_code == 0  # nothing moved, nothing changed: no new event
    assert len(events.read_text().splitlines()) == len(actions)

"""What is mirrored: the state store joined with the configuration, and the refresh."""

from __future__ import annotations

import dataclasses
import json
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mirrord.cluster import (
    MirrorRecord,
    SignatureScope,
    build,
    gather,
    refresh,
    serve,
    write_files,
)
from mirrord.config import Config, StreamConfig, parse_config
from mirrord.core.imagestream import StreamSpec
from mirrord.errors import ConfigError
from mirrord.state import Store, open_store

pytestmark = pytest.mark.anyio
MIRROR = "mirror.lab:5000/m"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config(tmp_path: Path, mirror: str = f"docker://{MIRROR}", extra: str = "") -> Config:
    text = f"""\
        version: 1
        mirror: {mirror}
        state_dir: {tmp_path / "state"}
        registries:
          mirror.lab:5000: {{insecure: true}}
          src.lab:5000: {{tls_verify: false}}
        streams:
          - from: quay.io/org/app
          - from: src.lab:5000/team/tool
            to: tools/tool
            signatures: false
          - from: quay.io/org/empty
        """
    return parse_config(textwrap.dedent(text) + extra, tmp_path / "mirrord.yaml")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    with open_store(tmp_path / "state") as opened:
        yield opened


async def mirrored(
    store: Store, name: str, source: str, mirror: str, *, imported: bool = False,
    scheduled: bool = True, tagged: bool = True,
) -> None:
    created_by = "import-image" if imported else "config"
    await store.upsert_stream(
        StreamSpec(name, source, mirror, scheduled=scheduled, created_by=created_by)
    )
    if tagged:
        await store.record_tag_import(name, "1.0", "sha256:" + "a" * 64, f"{source}:1.0")


async def test_records_join_the_state_with_the_configuration(
    tmp_path: Path, store: Store
) -> None:
    await mirrored(store, "org/app", "quay.io/org/app", f"{MIRROR}/org/app")
    await mirrored(store, "tools/tool", "src.lab:5000/team/tool", f"{MIRROR}/tools/tool")
    await mirrored(store, "org/empty", "quay.io/org/empty", f"{MIRROR}/org/empty", tagged=False)
    await mirrored(store, "once", "docker.io/library/busybox", f"{MIRROR}/once",
                   imported=True, scheduled=False)
    await mirrored(store, "kept", "index.docker.io/library/nginx", f"{MIRROR}/kept",
                   imported=True, scheduled=True)
    await mirrored(store, "dropped", "quay.io/org/dropped", f"{MIRROR}/dropped")
    await mirrored(store, "moved", "quay.io/org/moved", "old.lab/m/moved", imported=True)

    inputs = await gather(config(tmp_path), store)

    assert set(inputs.records) == {
        MirrorRecord("quay.io/org/app", f"{MIRROR}/org/app", tag_mirror=True, insecure=True),
        MirrorRecord("src.lab:5000/team/tool", f"{MIRROR}/tools/tool", tag_mirror=True,
                     insecure=True, source_insecure=True),  # tls_verify: false
        MirrorRecord("docker.io/library/busybox", f"{MIRROR}/once", tag_mirror=False,
                     insecure=True),  # import-image, not scheduled: digest-only
        MirrorRecord("docker.io/library/nginx", f"{MIRROR}/kept", tag_mirror=True,
                     insecure=True),  # the docker.io alias written as docker.io
    }
    notes = "\n".join(inputs.notes)
    assert "org/empty: has mirrored no image yet" in notes
    assert "dropped: no longer in the configuration" in notes
    assert "moved: recorded in old.lab/m/moved" in notes
    assert inputs.mirror_targets == (MIRROR,)
    assert inputs.signature_scopes == (SignatureScope(MIRROR),)
    assert {"org/app", "dropped", "once"} <= inputs.known


async def test_only_the_named_streams(tmp_path: Path, store: Store) -> None:
    await mirrored(store, "org/app", "quay.io/org/app", f"{MIRROR}/org/app")
    await mirrored(store, "tools/tool", "src.lab:5000/team/tool", f"{MIRROR}/tools/tool")
    inputs = await gather(config(tmp_path), store, names=["tools/tool"])
    assert [r.source for r in inputs.records] == ["src.lab:5000/team/tool"]
    # that stream copies no signatures: no registries.d scope
    assert inputs.signature_scopes == ()


async def test_no_state_yet_is_nothing_mirrored(tmp_path: Path) -> None:
    inputs = await gather(config(tmp_path), None)
    assert inputs.records == () and inputs.notes == ()


async def test_an_oci_layout_or_an_ipv6_mirror_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mirror: the mirror is an OCI layout"):
        await gather(config(tmp_path, mirror=f"oci:{tmp_path}/layout"), None)
    with pytest.raises(ConfigError, match=r"mirrord.yaml: mirror: .*cannot be named"):
        await gather(config(tmp_path, mirror="docker://[::1]:5000/m"), None)


async def test_two_configurations_merge_their_mirrors_first_one_first(
    tmp_path: Path,
) -> None:
    (tmp_path / "b").mkdir()
    first = config(tmp_path)
    second = config(tmp_path / "b", mirror="docker://backup.lab/dr")
    with open_store(first.state_dir) as one, open_store(second.state_dir) as two:
        await mirrored(one, "org/app", "quay.io/org/app", f"{MIRROR}/org/app")
        await mirrored(two, "org/app", "quay.io/org/app", "backup.lab/dr/org/app")
        resources, _ = await build([(first, one), (second, two)])
        swapped, _ = await build([(second, two), (first, one)])
    assert [(e.source, e.mirrors) for e in resources.digest_mirrors] == [
        ("quay.io/org", (f"{MIRROR}/org", "backup.lab/dr/org"))
    ]
    assert swapped.digest_mirrors[0].mirrors == ("backup.lab/dr/org", f"{MIRROR}/org")
    assert resources.name == swapped.name  # named after the set of mirrors


async def test_refresh_writes_the_state_directory_only_on_change(
    tmp_path: Path, store: Store
) -> None:
    cfg = config(tmp_path)
    directory = cfg.state_dir / "cluster-resources"
    assert await refresh(cfg, store) == []  # nothing mirrored: nothing to write
    assert not directory.exists()

    await mirrored(store, "org/app", "quay.io/org/app", f"{MIRROR}/org/app")
    first = await refresh(cfg, store)
    assert {c.name for c in first} == {
        "idms-mirrord.yaml", "itms-mirrord.yaml", "icsp-mirrord.yaml", "registries.conf",
        "registries.d/mirrord.yaml",
    }
    assert await refresh(cfg, store) == []

    await mirrored(store, "tools/tool", "src.lab:5000/team/tool", f"{MIRROR}/tools/tool")
    second = await refresh(cfg, store)
    assert {c.name for c in second} == {
        "idms-mirrord.yaml", "itms-mirrord.yaml", "icsp-mirrord.yaml", "registries.conf"
    }
    assert "src.lab:5000/team" in (directory / "registries.conf").read_text()


async def test_refresh_does_nothing_for_an_oci_layout_and_survives_a_bad_directory(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await mirrored(store, "org/app", "quay.io/org/app", f"{MIRROR}/org/app")
    assert await refresh(config(tmp_path, mirror=f"oci:{tmp_path}/layout"), store) == []
    assert not (tmp_path / "state" / "cluster-resources").exists()

    (tmp_path / "state" / "cluster-resources").write_text("a file, not a directory")
    assert await refresh(config(tmp_path), store) == []
    assert "cluster resources in" in caplog.text and "not refreshed" in caplog.text


async def test_an_imported_stream_in_the_run_configuration_stays_digest_only(
    tmp_path: Path, store: Store
) -> None:
    # import-image (and the daemon) run with the imported stream added to the
    # configuration's streams: what the stream is comes from the state, not from that.
    cfg = config(tmp_path)
    await mirrored(store, "once", "docker.io/library/busybox", f"{MIRROR}/once",
                   imported=True, scheduled=False)
    run_config = dataclasses.replace(
        cfg, streams=(*cfg.streams, StreamConfig("once", "docker.io/library/busybox", "once"))
    )
    (record,) = (await gather(run_config, store)).records
    assert record.tag_mirror is False


async def test_the_endpoint_serves_what_is_mirrored_now(tmp_path: Path, store: Store) -> None:
    await mirrored(store, "org/app", "quay.io/org/app", f"{MIRROR}/org/app")
    answer = await serve(config(tmp_path), store, "application/json")
    assert answer.status == 200
    items = json.loads(answer.body)["items"]
    assert items[0]["spec"]["imageDigestMirrors"] == [
        {"source": "quay.io/org", "mirrors": [f"{MIRROR}/org"]}
    ]
    conf = await serve(config(tmp_path), store, file="registries.conf")
    assert b'prefix = "quay.io/org"' in conf.body
    oci = await serve(config(tmp_path, mirror=f"oci:{tmp_path}/layout"), store)
    assert oci.status == 409 and b"OCI layout" in oci.body


async def test_a_refresh_that_gathered_earlier_never_writes_last(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon runs streams in parallel and each run refreshes. The first refresh is
    # slow to write; a second one starts meanwhile with more recorded. The files must end
    # up with the second one's view, not the first one's older one.
    from mirrord.cluster import _refresh

    cfg = config(tmp_path)
    calls: list[int] = []

    def slow_first_write(files: Any, directory: Path) -> Any:
        calls.append(len(calls))
        if len(calls) == 1:
            time.sleep(0.5)
        return write_files(files, directory)

    monkeypatch.setattr(_refresh, "write_files", slow_first_write)
    await mirrored(store, "org/app", "quay.io/org/app", f"{MIRROR}/org/app")

    async def second() -> None:
        await anyio.sleep(0.2)  # the first refresh is writing by now
        await mirrored(store, "tools/tool", "src.lab:5000/team/tool", f"{MIRROR}/tools/tool")
        await refresh(cfg, store)

    async with anyio.create_task_group() as group:
        group.start_soon(refresh, cfg, store)
        group.start_soon(second)
    assert len(calls) == 2
    conf = (cfg.state_dir / "cluster-resources" / "registries.conf").read_text()
    assert "src.lab:5000/team" in conf

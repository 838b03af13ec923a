"""The daemon serves mirrord's lookaside at /sigstore/: skopeo verifies through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.daemon_support import DaemonProcess
from harness.images import RegistryHTTP, push_image
from harness.referrers import push_referrer
from harness.registry import RegistryProcess
from harness.signing import GPGKey, signed_by, skopeo_pull, skopeo_sign
from harness.synctools import sync_setup


@pytest.fixture(scope="module")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GPGKey]:
    key = GPGKey.generate(tmp_path_factory.mktemp("gpg") / "home", "mirrord daemon signer")
    yield key
    key.close()


def test_skopeo_verifies_through_the_daemons_sigstore(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str, gpg_key: GPGKey,
) -> None:
    host = mirror_registry.host
    push_image(mirror_client, f"{repo_name}/src/app", "1.0", seed=repo_name)
    staging = tmp_path / "upstream-lookaside"
    skopeo_sign(f"{host}/{repo_name}/src/app:1.0", f"{host}/{repo_name}/up/app:1.0",
                tmp_path / "sign", gpg=gpg_key, staging=staging)
    key = gpg_key.write_public(tmp_path / "signer.asc")
    setup = sync_setup(
        tmp_path, mirror=f"docker://{host}/d", sources=[mirror_registry],
        streams=[{"from": f"{host}/{repo_name}/up/app", "to": f"{repo_name}/app",
                  "tags": ["1.0"], "signatures": False, "schedule": "1h"}],
        settings={host: {"lookaside": staging.as_uri()}},
        extra={"server": {"listen": "127.0.0.1:0"},
               "policy": {"default": signed_by(key)}},
    )
    with DaemonProcess(setup.path) as daemon:
        daemon.wait_for_runs(f"{repo_name}/app", 1)
        stream = f"{repo_name}/app"
        assert daemon.metric("mirrord_stream_signatures_total", stream=stream,
                             outcome="copied") == 1
        assert daemon.metric("mirrord_stream_signatures_total", stream=stream,
                             outcome="verified") == 1
        policy = {"default": [{"type": "reject"}], "transports": {"docker": {
            f"{host}/d": signed_by(key, signedIdentity={
                "type": "remapIdentity", "prefix": f"{host}/d/{repo_name}",
                "signedPrefix": f"{host}/{repo_name}/up"})}}}
        pulled = skopeo_pull(tmp_path, f"{host}/d/{repo_name}/app:1.0", policy,
                             f"{daemon.url}/sigstore", f"{host}/d")
        assert pulled.returncode == 0, pulled.stderr
        [sig] = staging.rglob("signature-1")
        served = daemon.get(f"/sigstore/d/{repo_name}/app@{sig.parent.name.split('@')[1]}"
                            "/signature-1")
        assert served.status_code == 200 and served.content == sig.read_bytes()
        # Only the layout is served: nothing else of the state directory or the disk.
        for path in ("/sigstore/../state.db", "/sigstore/%2e%2e/%2e%2e/etc/passwd",
                     f"/sigstore/d/{repo_name}/app@sha256=00/signature-1",
                     f"/sigstore/d/{repo_name}/app@{sig.parent.name.split('@')[1]}/signature-2"):
            assert daemon.get(path).status_code == 404, path


def test_the_daemon_counts_the_referrers_it_copies(
    tmp_path: Path, mirror_registry: RegistryProcess, mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    host = mirror_registry.host
    image = push_image(mirror_client, f"{repo_name}/src", "1.0", seed=repo_name)
    push_referrer(mirror_client, image, "application/spdx+json", b'{"spdx": 9}')
    push_referrer(mirror_client, image, "application/vnd.example.other", b"other")
    setup = sync_setup(
        tmp_path, mirror=f"docker://{host}/dr", sources=[mirror_registry],
        streams=[{"from": f"{host}/{repo_name}/src", "to": f"{repo_name}/app", "tags": ["1.0"],
                  "schedule": "1h", "referrers": ["application/spdx+json"]}],
        extra={"server": {"listen": "127.0.0.1:0"}},
    )
    with DaemonProcess(setup.path) as daemon:
        daemon.wait_for_runs(f"{repo_name}/app", 1)
        assert daemon.metric("mirrord_stream_referrers_total", stream=f"{repo_name}/app") == 1

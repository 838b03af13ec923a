"""The daemon's HTTP endpoints, served by a real `mirrord daemon` process."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.daemon_support import DaemonProcess
from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from harness.synctools import sync_setup

from mirrord.config import parse_config
from mirrord.daemon._server import bind, token_path
from mirrord.errors import MirrordError

TOKEN = "server-test-token-9f8e7d6c5b4a"
ANY_PORT = {"listen": "127.0.0.1:0"}


def test_trigger_needs_the_token_and_the_api_describes_streams_and_jobs(
    tmp_path: Path,
    registry_factory: Any,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = registry_factory()
    client = source.client()
    push_image(client, repo_name, "1.0", seed=f"{repo_name}/1")
    token_file = tmp_path / "api.token"
    token_file.write_text(f"{TOKEN}\n")
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/api",
        streams=[{"from": f"{source.host}/{repo_name}", "to": "app", "schedule": "1h"}],
        sources=[source],
        extra={
            "server": {**ANY_PORT, "token_file": str(token_file)},
            "notifications": [{"command": ["true"], "name": "noop"}],
        },
    )
    start = source.mark()
    with DaemonProcess(setup.path) as daemon:
        daemon.wait_for_runs("app", 1)  # the catch-up run

        path = "/api/v1/streams/app/sync"
        missing = daemon.post(path)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert daemon.post(path, "wrong-token-value").status_code == 401
        basic = daemon.http.post(daemon.url + path, headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
        assert daemon.post("/api/v1/streams/nope/sync", TOKEN).status_code == 404

        before_push = source.mark()
        new = push_image(client, repo_name, "2.0", seed=f"{repo_name}/2")
        after_push = source.mark()
        assert daemon.runs("app") == 1  # nothing ran on a refused request
        accepted = daemon.post(path, TOKEN)
        assert accepted.status_code == 202
        assert accepted.json() == {"stream": "app", "status": "queued"}
        daemon.wait_for_runs("app", 2)
        assert mirror_client.head_manifest("api/app", "2.0") == new.digest

        # every request the runs sent to the source was counted, and nothing else
        by_daemon = (
            len(source.access_log(start))
            - len(source.access_log(before_push))
            + len(source.access_log(after_push))
        )
        assert daemon.metric("mirrord_stream_upstream_requests_total", stream="app") == by_daemon

        streams = daemon.get("/api/v1/streams").json()
        assert streams["kind"] == "ImageStreamList"
        [item] = streams["items"]
        assert item["metadata"]["name"] == "app"
        assert item["metadata"]["annotations"]["mirrord.io/schedule"] == "1h"
        assert "mirrord.io/next-run" in item["metadata"]["annotations"]
        assert item["metadata"]["annotations"]["openshift.io/image.dockerRepositoryCheck"]
        tags = {t["tag"]: t["items"][0]["image"] for t in item["status"]["tags"]}
        assert tags["2.0"] == new.digest and set(tags) == {"1.0", "2.0"}
        assert daemon.get("/api/v1/streams/app").json() == item
        assert daemon.get("/api/v1/streams/nope").status_code == 404

        jobs = daemon.get("/api/v1/jobs?kind=sync").json()["items"]
        assert [(j["status"], j["stream"]) for j in jobs] == [("Succeeded", "app")] * 2
        assert jobs[0]["counts"]["images_copied"] == 1 and jobs[0]["finished"]
        assert daemon.get("/api/v1/jobs?limit=many").status_code == 400
        for bad in ("-1", "0"):
            refused = daemon.get(f"/api/v1/jobs?limit={bad}")
            assert refused.status_code == 400
            assert refused.json() == {"error": "limit must be a positive number"}
        assert len(daemon.get("/api/v1/jobs?limit=1").json()["items"]) == 1

        # one event per new tag (1.0 in the catch-up run, 2.0 in the triggered one), and
        # one when the catch-up run first wrote the cluster resources
        outbox = daemon.get("/api/v1/notifications").json()
        assert outbox["failures"] == []
        assert [(r["receiver"], r["target"], r["delivered"]) for r in outbox["receivers"]] == [
            ("command:noop", "true", 3)]
        assert daemon.metric("mirrord_notifications_total", result="delivered") == 3

        listed = daemon.get("/api/v1/cluster-resources")
        assert listed.status_code == 200 and listed.headers["content-type"].startswith(
            "application/yaml")
        documents = yaml.safe_load(listed.text)
        kinds = [item["kind"] for item in documents["items"]]
        assert kinds == ["ImageDigestMirrorSet", "ImageTagMirrorSet", "ImageContentSourcePolicy"]
        as_json = daemon.http.get(
            daemon.url + "/api/v1/cluster-resources", headers={"Accept": "application/json"})
        assert as_json.json() == documents
        conf = daemon.get("/api/v1/cluster-resources/registries.conf")
        assert conf.text == (setup.state_dir / "cluster-resources" / "registries.conf").read_text()
        assert daemon.get("/api/v1/cluster-resources/nope.yaml").status_code == 404

        assert daemon.get("/healthz").json() == {"status": "ok"}
        ready = daemon.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"config": "ok", "state": "ok", "mirror": "ok"}
        code, _ = daemon.terminate()
        log = daemon.log()
    client.close()
    assert code == 0
    assert "refused a sync request for app from 127.0.0.1: invalid token" in log
    assert TOKEN not in log and "wrong-token-value" not in log


def test_readyz_names_an_unreachable_mirror_and_triggers_are_off_without_a_token(
    tmp_path: Path,
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = tmp_path / "mirrord.yaml"
    config.write_text(
        "version: 1\n"
        f"mirror: docker://127.0.0.1:{port}/m\n"
        f"state_dir: {tmp_path / 'state'}\n"
        f"registries:\n  127.0.0.1:{port}:\n    insecure: true\n"
        "server:\n  listen: 127.0.0.1:0\n"
    )
    with DaemonProcess(config) as daemon:
        ready = daemon.get("/readyz")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["config"] == "ok" and checks["state"] == "ok"
        assert f"127.0.0.1:{port}" in checks["mirror"]
        assert daemon.get("/healthz").status_code == 200
        refused = daemon.post("/api/v1/streams/app/sync", TOKEN)
        assert refused.status_code == 403
        assert "token_file" in refused.json()["error"]


def test_the_token_defaults_to_the_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config("version: 1\n", tmp_path / "mirrord.yaml")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert token_path(config) is None
    (tmp_path / "api-token").write_text(TOKEN)
    assert token_path(config) == tmp_path / "api-token"
    explicit = parse_config("version: 1\nserver:\n  token_file: /etc/t\n", tmp_path / "m.yaml")
    assert token_path(explicit) == Path("/etc/t")


def test_a_listen_address_in_use_is_a_clear_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(MirrordError, match=rf"server.listen 127.0.0.1:{port}: cannot listen"):
            bind(f"127.0.0.1:{port}")

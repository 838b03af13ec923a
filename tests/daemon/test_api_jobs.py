"""The daemon's API with a real `mirrord daemon`: a trigger answers a job id that
/api/v1/jobs/ID follows (Queued, Running, Succeeded), for any stream (import-image ones
too), across a restart; errors in the CLI's shape; 405 with Allow; the prune log line,
prune metrics and the failing-tags gauge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from harness.daemon_support import DaemonProcess, SlowProxy, wait_until
from harness.images import OCI_LAYER, Blob, build_image, push, push_image
from harness.registry import RegistryProcess
from harness.synctools import sync_setup

from mirrord.state import LOCK_FILE, RunLock, open_store

TOKEN = "api-jobs-test-token-24680"
MiB = 1 << 20


def _token(tmp_path: Path) -> str:
    path = tmp_path / "api.token"
    path.write_text(TOKEN + "\n")
    return str(path)


def _status(daemon: DaemonProcess, job: int) -> str:
    response = daemon.get(f"/api/v1/jobs/{job}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def _trigger(daemon: DaemonProcess, stream: str) -> int:
    response = daemon.post(f"/api/v1/streams/{stream}/sync", TOKEN)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["stream"] == stream and body["status"] == "Queued"
    assert response.headers["location"] == f"/api/v1/jobs/{body['job']}"
    return int(body["job"])


def test_a_trigger_s_job_goes_queued_running_succeeded(
    tmp_path: Path, registry_factory: Any, mirror_registry: RegistryProcess, repo_name: str
) -> None:
    source = registry_factory()
    proxy = SlowProxy(source.host, rate=2 * MiB)  # a 6 MiB blob takes ~3 s
    client = source.client()
    push_image(client, repo_name, "latest", seed=f"{repo_name}/small")
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/jobs",
        streams=[{"from": f"{proxy.host}/{repo_name}", "to": "app", "tags": ["latest"],
                  "schedule": "1h"}],
        sources=[],
        settings={proxy.host: {"insecure": True}},
        extra={"server": {"listen": "127.0.0.1:0", "token_file": _token(tmp_path)}},
    )
    with DaemonProcess(setup.path) as daemon:
        daemon.wait_for_runs("app", 1)
        push(client, build_image(repo_name, "latest", layers=[Blob.of(os.urandom(6 * MiB),
                                                                       OCI_LAYER)],
                                 layer_sizes=()))
        first = _trigger(daemon, "app")
        wait_until(lambda: _status(daemon, first) == "Running", 10, "the run to take the job")
        second = _trigger(daemon, "app")  # while the stream runs: a new job waits
        assert second != first
        job = daemon.get(f"/api/v1/jobs/{second}").json()
        assert (job["status"], job["started"], job["finished"]) == ("Queued", None, None)
        assert _trigger(daemon, "app") == second  # triggers coalesce into the queued job
        wait_until(lambda: _status(daemon, first) == "Succeeded", 30, "the first run")
        wait_until(lambda: _status(daemon, second) == "Succeeded", 30, "the queued run")
        done = daemon.get(f"/api/v1/jobs/{first}").json()
        assert done["counts"]["imagesCopied"] == 1 and done["counts"]["bytesCopied"] > 6 * MiB
        assert all(k[0].islower() and "_" not in k for k in done["counts"])
        listed = daemon.get("/api/v1/jobs?kind=sync").json()["items"]
        assert [j["id"] for j in listed][:2] == [second, first]

        # errors: the CLI's shape, Kubernetes' reasons, 405 with Allow
        wrong = daemon.get("/api/v1/streams/app/sync")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        assert wrong.json()["error"]["reason"] == "MethodNotAllowed"
        posted = daemon.http.post(daemon.url + "/api/v1/jobs")
        assert posted.status_code == 405 and "GET" in posted.headers["allow"]
        assert posted.json()["error"]["reason"] == "MethodNotAllowed"
        for path, reason in (("/api/v1/jobs/987654", "NotFound"), ("/api/v1/nope", "NotFound"),
                             ("/api/v1/streams/nope", "NotFound"),
                             ("/api/v1/jobs?limit=x", "BadRequest"),
                             ("/api/v1/jobs?kind=backup", "BadRequest")):
            answer = daemon.get(path)
            assert answer.status_code == (404 if reason == "NotFound" else 400), path
            assert set(answer.json()) == {"error"}
            assert answer.json()["error"]["reason"] == reason and answer.json()["error"]["message"]
        unknown = daemon.post("/api/v1/streams/nope/sync", TOKEN)
        assert unknown.status_code == 404 and unknown.json()["error"]["reason"] == "NotFound"
        refused = daemon.post("/api/v1/streams/app/sync", "wrong-token")
        assert refused.json()["error"] == {"reason": "Unauthorized", "message": "invalid token"}
    client.close()
    proxy.close()


def _jobs(state_dir: Path) -> dict[int, str]:
    async def read() -> dict[int, str]:
        async with await anyio.to_thread.run_sync(open_store, state_dir) as store:
            return {j.id: j.status for j in await store.list_jobs(limit=50)}

    return anyio.run(read)


def test_import_image_streams_can_be_triggered_and_queued_jobs_survive_a_restart(
    tmp_path: Path, registry_factory: Any, mirror_registry: RegistryProcess, repo_name: str
) -> None:
    source = registry_factory()
    client = source.client()
    push_image(client, repo_name, "1.0", seed=f"{repo_name}/1")
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/restart",
        streams=[{"from": f"{source.host}/{repo_name}", "to": "app", "schedule": "1h"}],
        sources=[source],
        extra={"server": {"listen": "127.0.0.1:0", "token_file": _token(tmp_path)}},
    )
    state = tmp_path / "state"
    with DaemonProcess(setup.path) as daemon:
        daemon.wait_for_runs("app", 1)
        # a stream import-image made (not --scheduled), after the daemon looked at the state
        imported = subprocess.run(
            [sys.executable, "-m", "mirrord", "import-image", "extra:1.0", "--from",
             f"{source.host}/{repo_name}", "--confirm", "--insecure", "--config", str(setup.path)],
            capture_output=True, text=True, timeout=60,
        )
        assert imported.returncode == 0, imported.stderr
        job = _trigger(daemon, "extra")
        wait_until(lambda: _status(daemon, job) == "Succeeded", 20, "the import-image stream")
        assert daemon.runs("extra") == 1
        stream = daemon.get("/api/v1/streams/extra").json()
        assert "mirrord.io/schedule" not in stream["metadata"].get("annotations", {})

        with RunLock(state / LOCK_FILE):  # a one-shot sync holds the lock: the run waits
            waiting = _trigger(daemon, "app")
            daemon.wait_for_log("waits: .* holds the state lock")
            assert _status(daemon, waiting) == "Queued"
            code, _ = daemon.terminate()
        assert code == 0
    assert _jobs(state)[waiting] == "Queued"  # the accepted trigger outlives the daemon

    (setup.path.parent / "daemon.log").unlink()  # the next daemon's "listening on" line

    with DaemonProcess(setup.path) as daemon:
        wait_until(lambda: _status(daemon, waiting) == "Succeeded", 20, "the queued job")
        assert f"running job {waiting}, queued before the restart" in daemon.log()
    client.close()


def test_prune_log_line_prune_metrics_and_failing_tags(
    tmp_path: Path, registry_factory: Any, mirror_registry: RegistryProcess, repo_name: str
) -> None:
    source = registry_factory()
    client = source.client()
    push_image(client, repo_name, "1.0", seed=f"{repo_name}/1")
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/prune",
        streams=[{"from": f"{source.host}/{repo_name}", "to": "app", "schedule": "1h",
                  "tags": ["1.0", "missing"]}],
        sources=[source],
        extra={"server": {"listen": "127.0.0.1:0"}, "pruning": {"schedule": "1s"}},
    )
    with DaemonProcess(setup.path) as daemon:
        wait_until(lambda: daemon.runs("app", "failed") >= 1, 15, "the catch-up run")
        line = daemon.wait_for_log(r"prune finished: (.*)", 15)
        wait_until(lambda: daemon.metric("mirrord_prune_runs_total", result="succeeded") >= 1)
        metrics = daemon.metrics()
    client.close()
    assert line.group(1).strip() == (
        "0 tag revisions and 0 manifests deleted, 0 blobs (0 B) freed")

    def value(name: str, **labels: str) -> float:
        return metrics.get((name, frozenset(labels.items())), 0.0)

    assert value("mirrord_stream_failing_tags", stream="app") == 1  # missing: NotFound
    assert value("mirrord_prune_last_success_timestamp_seconds") > 0
    assert value("mirrord_prune_last_run_timestamp_seconds") >= value(
        "mirrord_prune_last_success_timestamp_seconds")
    assert value("mirrord_prune_tag_revisions_deleted_total") == 0
    assert ("mirrord_prune_freed_bytes_total", frozenset()) in metrics
    assert value("mirrord_prune_orphaned_images_deleted_total") == 0
    assert ("mirrord_prune_orphaned_images_deleted_total", frozenset()) in metrics
    assert value("mirrord_registry_requests_total", registry=source.host, method="HEAD",
                 code="404") >= 1  # the missing tag's HEAD
    assert not [name for name, _ in metrics if name.endswith("_created")]

"""`mirrord daemon` as a real process against real registries: schedules, metrics,
signals (SIGHUP reload, SIGTERM drain), the shared run lock, sd_notify and JSON logs."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from harness.daemon_support import DaemonProcess, NotifySocket, SlowProxy, wait_until
from harness.images import OCI_LAYER, Blob, RegistryHTTP, build_image, push, push_image
from harness.registry import RegistryProcess
from harness.synctools import Setup, sync_setup

from mirrord.config import parse_config
from mirrord.daemon._sdnotify import SystemdNotifier
from mirrord.state import LOCK_FILE, RunLock, open_store

MiB = 1 << 20
TOKEN = "daemon-test-token-0123456789"
LISTEN_ANY_PORT = {"listen": "127.0.0.1:0"}


def daemon_setup(tmp_path: Path, **kw: Any) -> Setup:
    """synctools.sync_setup, serving the daemon's endpoints on a free port."""
    extra = kw.pop("extra", {})
    return sync_setup(
        tmp_path, extra={**extra, "server": {**LISTEN_ANY_PORT, **extra.get("server", {})}}, **kw
    )


def test_streams_run_on_their_schedules_and_metrics_parse(
    tmp_path: Path,
    registry_factory: Any,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = registry_factory()
    client = source.client()
    push_image(client, f"{repo_name}/a", "1.0", seed=f"{repo_name}/a1")
    push_image(client, f"{repo_name}/b", "1.0", seed=f"{repo_name}/b1")
    setup = daemon_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/{repo_name}",
        streams=[
            {"from": f"{source.host}/{repo_name}/a", "to": "a", "schedule": "1s"},
            {"from": f"{source.host}/{repo_name}/b", "to": "b", "schedule": "1h"},
        ],
        sources=[source],
        settings={source.host: {"rate": 5}},  # 5 requests/s for both streams together
    )
    started = time.time()
    with DaemonProcess(setup.path) as daemon:
        daemon.wait_for_runs("a", 3)
        new = push_image(client, f"{repo_name}/a", "2.0", seed=f"{repo_name}/a2")
        wait_until(
            lambda: daemon.metric("mirrord_stream_images_total", stream="a", outcome="copied") >= 2
        )
        metrics = daemon.metrics()
    client.close()

    def value(name: str, **labels: str) -> float:
        return metrics.get((name, frozenset(labels.items())), 0.0)

    assert mirror_client.head_manifest(f"{repo_name}/a", "2.0") == new.digest
    # b was never synced: one catch-up run at start, the next one is an hour away
    assert value("mirrord_stream_runs_total", stream="b", result="succeeded") == 1
    assert value("mirrord_stream_next_run_timestamp_seconds", stream="b") > time.time() + 3000
    assert value("mirrord_stream_images_total", stream="b", outcome="copied") == 1
    runs_a = value("mirrord_stream_runs_total", stream="a", result="succeeded")
    assert runs_a >= 4
    assert value("mirrord_stream_runs_total", stream="a", result="failed") == 0
    assert value("mirrord_stream_run_duration_seconds_count", stream="a") == runs_a
    assert value("mirrord_stream_images_total", stream="a", outcome="copied") == 2
    assert value("mirrord_stream_images_total", stream="a", outcome="unchanged") >= 2
    assert value("mirrord_stream_blobs_total", stream="a", outcome="copied") == 4
    assert value("mirrord_stream_copied_bytes_total", stream="a") > 4096
    assert value("mirrord_stream_last_success_timestamp_seconds", stream="a") >= started
    assert value("mirrord_stream_upstream_requests_total", stream="a") >= runs_a
    assert value("mirrord_stream_rate_limit_wait_seconds_total", stream="a") == 0
    heads = value("mirrord_registry_requests_total", registry=source.host, method="HEAD",
                  code="200")
    assert heads >= runs_a  # each run HEADs 1.0 at the source, answered 200
    codes = {dict(labels)["code"] for name, labels in metrics
             if name == "mirrord_registry_requests_total"}
    assert "200" in codes and codes <= {"200", "201", "202", "307", "401", "404"}
    # the two catch-up runs together sent more than the burst of 5: the throttle held some
    assert value("mirrord_registry_rate_limit_wait_seconds_total", registry=source.host) > 0
    assert value("mirrord_stream_failing_tags", stream="a") == 0
    assert value("mirrord_prune_runs_total", result="failed") == 0
    assert value("mirrord_config_last_reload_successful") == 1
    assert not [name for name, _ in metrics if name.endswith("_created")]
    assert not [name for name, _ in metrics if "throttle" in name]


def test_a_restart_keeps_each_streams_last_success_from_the_store(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> None:
    """An alert on `time() - last_success` must not fire because the daemon restarted."""
    push_image(basic_client, repo_name, "1.0", seed=repo_name)
    setup = daemon_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/{repo_name}",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": "app", "schedule": "1h"}],
        sources=[basic_registry],
    )
    assert setup.sync().exit_code == 0
    with open_store(setup.state_dir) as store:
        stream = anyio.run(store.get_stream, "app")
    assert stream is not None and stream.last_synced is not None

    last_success = "mirrord_stream_last_success_timestamp_seconds"
    with DaemonProcess(setup.path) as daemon:
        seeded = wait_until(lambda: daemon.metric(last_success, stream="app"), what="the metric")
        runs = daemon.metric("mirrord_stream_runs_total", stream="app", result="succeeded")
    assert seeded == pytest.approx(stream.last_synced.timestamp(), abs=1e-3)
    assert runs == 0  # the value came from the store: the stream had synced, so no catch-up


def test_sighup_reloads_a_good_config_and_keeps_the_old_one_when_bad(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    a = push_image(basic_client, f"{repo_name}/a", "1", seed=f"{repo_name}/a")
    b = push_image(basic_client, f"{repo_name}/b", "1", seed=f"{repo_name}/b")
    stream_a = {"from": f"{basic_registry.host}/{repo_name}/a", "to": "a", "schedule": "1h"}
    stream_b = {"from": f"{basic_registry.host}/{repo_name}/b", "to": "b", "schedule": "1h"}
    mirror = f"docker://{mirror_registry.host}/{repo_name}"
    setup = daemon_setup(tmp_path, mirror=mirror, streams=[stream_a], sources=[basic_registry])
    with DaemonProcess(setup.path) as daemon:
        daemon.wait_for_runs("a", 1)
        assert mirror_client.head_manifest(f"{repo_name}/a", "1") == a.digest

        # a good file: stream b is added (and caught up), a runs every second now
        _rewrite(setup, streams=[{**stream_a, "schedule": "1s"}, stream_b])
        mark = len(daemon.log())
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log(r"configuration reloaded from .*: 2 streams scheduled", since=mark)
        daemon.wait_for_runs("b", 1)
        daemon.wait_for_runs("a", 3)
        assert mirror_client.head_manifest(f"{repo_name}/b", "1") == b.digest

        # a bad file: the log names file, line and key; both streams stay scheduled
        text = _rewrite(setup, streams=[stream_a, {**stream_b, "schedul": "5m"}])
        line = 1 + next(i for i, t in enumerate(text.splitlines()) if "schedul:" in t)
        mark = len(daemon.log())
        daemon.signal(signal.SIGHUP)
        where = re.escape(f"{setup.path}:{line}: streams[1].schedul: unknown key 'schedul'")
        daemon.wait_for_log(rf"ERROR .*reload failed.*{where}", since=mark)
        assert daemon.metric("mirrord_config_last_reload_successful") == 0
        runs = daemon.runs("a")
        daemon.wait_for_runs("a", runs + 2)  # still on the previous file's 1s schedule
        assert daemon.get("/readyz").status_code == 200
        assert daemon.metric("mirrord_stream_next_run_timestamp_seconds", stream="b") > 0
        code, _ = daemon.terminate()
    assert code == 0


def _rewrite(setup: Setup, **changes: object) -> str:
    document = yaml.safe_load(setup.path.read_text())
    document.update(changes)
    text = yaml.safe_dump(document, sort_keys=False)
    setup.path.write_text(text)
    return text


def _big_copy_setup(
    tmp_path: Path,
    registry_factory: Any,
    mirror_registry: RegistryProcess,
    repo_name: str,
    *,
    size: int,
    rate: float,
) -> tuple[Setup, RegistryHTTP, SlowProxy, str, Blob]:
    """A source behind a slow proxy with `repo_name:latest` (small) already pushed, a big
    blob to push as the next `latest`, and a config (hourly schedule, API token)."""
    source = registry_factory()
    proxy = SlowProxy(source.host, rate=rate)
    client = source.client()
    first = push_image(client, repo_name, "latest", seed=f"{repo_name}/small")
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN + "\n")
    setup = daemon_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/big",
        streams=[{"from": f"{proxy.host}/{repo_name}", "to": repo_name, "tags": ["latest"],
                  "schedule": "1h"}],
        sources=[],
        settings={proxy.host: {"insecure": True}},
        extra={"server": {"token_file": str(token_file)}},
    )
    big = Blob.of(os.urandom(size), OCI_LAYER)
    return setup, client, proxy, first.digest, big


def _start_big_copy(
    daemon: DaemonProcess, client: RegistryHTTP, proxy: SlowProxy, repo: str, big: Blob
) -> str:
    """Push an image with the big blob as `latest`, trigger a run, wait until it streams."""
    daemon.wait_for_runs(repo, 1)
    image = push(client, build_image(repo, "latest", layers=[big], layer_sizes=()))
    before = proxy.bytes_down
    assert daemon.post(f"/api/v1/streams/{repo}/sync", TOKEN).status_code == 202
    wait_until(lambda: proxy.bytes_down - before > 2 * MiB, 15, "the big blob to stream")
    return image.digest


def _jobs(state_dir: Path) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        store = open_store(state_dir)
        try:
            return [(j.status, j.message) for j in await store.list_jobs(limit=50)]
        finally:
            await store.aclose()

    return anyio.run(read)


def _current_digest(state_dir: Path, stream: str, tag: str) -> str | None:
    async def read() -> str | None:
        store = open_store(state_dir)
        try:
            status = await store.get_tag(stream, tag)
            return status.current.image if status and status.current else None
        finally:
            await store.aclose()

    return anyio.run(read)


def test_sigterm_mid_copy_abandons_it_after_the_bound_and_leaves_state_consistent(
    tmp_path: Path,
    registry_factory: Any,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    setup, client, proxy, first, big = _big_copy_setup(
        tmp_path, registry_factory, mirror_registry, repo_name, size=64 * MiB, rate=8 * MiB
    )
    bound = 2.0
    with DaemonProcess(setup.path, stop_timeout=bound) as daemon:
        _start_big_copy(daemon, client, proxy, repo_name, big)
        # a one-shot sync is refused while the daemon's run holds the lock
        one_shot = subprocess.run(
            [sys.executable, "-m", "mirrord", "sync", "--config", str(setup.path)],
            capture_output=True, text=True, timeout=30,
        )
        assert one_shot.returncode == 3, one_shot.stderr
        assert f"pid {daemon.pid}" in one_shot.stderr
        code, seconds = daemon.terminate()
        log = daemon.log()
    proxy.close()
    client.close()

    assert code == 0, log
    assert bound - 0.5 <= seconds < bound + 4, log  # waited for the bound, then gave up
    assert "abandoning 1 run(s) still in flight" in log
    assert proxy.bytes_down < 60 * MiB  # the copy really was cut short
    # the mirror's tag still names the complete first image; the big blob never landed
    assert mirror_client.head_manifest(f"big/{repo_name}", "latest") == first
    assert not mirror_client.blob_exists(f"big/{repo_name}", big.digest)
    with sqlite3.connect(setup.state_dir / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    jobs = _jobs(setup.state_dir)
    assert "Running" not in [status for status, _ in jobs]
    assert jobs[0][0] == "Failed" and "interrupted" in jobs[0][1]
    assert _current_digest(setup.state_dir, repo_name, "latest") == first


def test_sigterm_lets_a_copy_in_flight_finish_within_the_bound(
    tmp_path: Path,
    registry_factory: Any,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    setup, client, proxy, _, big = _big_copy_setup(
        tmp_path, registry_factory, mirror_registry, repo_name, size=12 * MiB, rate=8 * MiB
    )
    with DaemonProcess(setup.path, stop_timeout=30) as daemon:
        digest = _start_big_copy(daemon, client, proxy, repo_name, big)
        code, seconds = daemon.terminate()
        log = daemon.log()
    proxy.close()
    client.close()

    assert code == 0, log
    assert seconds < 10, log
    assert "abandoning" not in log
    assert mirror_client.head_manifest(f"big/{repo_name}", "latest") == digest
    assert _jobs(setup.state_dir)[0] == ("Succeeded", "")
    assert _current_digest(setup.state_dir, repo_name, "latest") == digest


def test_a_scheduled_run_waits_while_a_one_shot_sync_holds_the_lock(
    tmp_path: Path,
    basic_registry: RegistryProcess,
    basic_client: RegistryHTTP,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    image = push_image(basic_client, repo_name, "1", seed=repo_name)
    setup = daemon_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/locked",
        streams=[{"from": f"{basic_registry.host}/{repo_name}", "to": "app", "schedule": "1h"}],
        sources=[basic_registry],
    )
    setup.state_dir.mkdir(parents=True)
    lock = RunLock(setup.state_dir / LOCK_FILE)
    lock.acquire()  # what `mirrord sync` holds while it runs
    waiting = rf"catch-up run of app waits: pid {os.getpid()} holds the state lock"
    try:
        # stopped while it waits: the run never starts, and the stop does not wait 30 s for it
        with DaemonProcess(setup.path, stop_timeout=30) as daemon:
            daemon.wait_for_log(waiting)
            code, seconds = daemon.terminate()
            assert code == 0 and seconds < 5
            assert "catch-up run of app: not started, the daemon is stopping" in daemon.log()
        assert _jobs(setup.state_dir) == []
        setup.path.parent.joinpath("daemon.log").unlink()

        with DaemonProcess(setup.path) as daemon:
            daemon.wait_for_log(waiting)
            time.sleep(0.5)
            assert daemon.runs("app") == 0
            assert mirror_client.head_manifest("locked/app", "1") is None
            lock.release()
            daemon.wait_for_runs("app", 1)
            daemon.wait_for_log(r"catch-up run of app: the state lock is free; starting")
    finally:
        lock.release()
    assert mirror_client.head_manifest("locked/app", "1") == image.digest


def test_sd_notify_ready_status_watchdog_stopping_and_json_logs(tmp_path: Path) -> None:
    config = tmp_path / "mirrord.yaml"
    config.write_text(
        f"version: 1\nstate_dir: {tmp_path / 'state'}\nserver:\n  listen: 127.0.0.1:0\n"
    )
    notify = NotifySocket()
    try:
        env = {**notify.env, "WATCHDOG_USEC": "200000"}  # a ping every 0.1 s
        with DaemonProcess(config, log_format="json", env=env) as daemon:
            ready = notify.wait_for("READY=1")
            assert f"MAINPID={daemon.pid}" in ready.split("\n")
            assert any(line.startswith("STATUS=0 streams scheduled") for line in ready.split("\n"))
            time.sleep(0.5)
            assert sum(m == "WATCHDOG=1" for m in notify.receive()) >= 3
            daemon.signal(signal.SIGHUP)
            notify.wait_for("RELOADING=1")
            wait_until(lambda: sum("READY=1" in m.split("\n") for m in notify.receive()) >= 2)
            code, _ = daemon.terminate()
            notify.wait_for("STOPPING=1")
            log = daemon.log()
    finally:
        notify.close()
    assert code == 0
    entries = [json.loads(line) for line in log.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["message"].startswith("listening on http://127.0.0.1:") for e in entries)


def test_sd_notifier_is_silent_without_systemd_and_honours_watchdog_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    notifier.notify("READY=1")  # nothing to send to: no error
    monkeypatch.setenv("NOTIFY_SOCKET", "@abstract-name")
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # someone else's watchdog
    notifier = SystemdNotifier()
    assert notifier.address == "\0abstract-name"
    assert notifier.watchdog_interval is None
    assert "NOTIFY_SOCKET" not in os.environ  # children cannot speak for the daemon
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert SystemdNotifier().watchdog_interval == 1.5


# --- the container sidecar ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_pod_runs_mirrord_next_to_a_registry_with_a_valid_config() -> None:
    documents = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "config/pod.yaml").read_text())}
    containers = {c["name"]: c for c in documents["Pod"]["spec"]["containers"]}
    assert containers["registry"]["image"].startswith("docker.io/library/registry:2")
    mirrord = containers["mirrord"]
    assert mirrord["args"] == ["daemon"]
    assert "127.0.0.1:9464/healthz" in mirrord["livenessProbe"]["exec"]["command"][-1]
    assert mirrord["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = parse_config(documents["ConfigMap"]["data"]["mirrord.yaml"], "/etc/mirrord/m.yaml")
    assert config.mirror.registry == "127.0.0.1:5000"  # the registry, over the pod's network
    assert config.server.port == mirrord["readinessProbe"]["httpGet"]["port"] == 9464
    assert all("hostPort" not in p for p in mirrord.get("ports", []))
    assert config.server.token_file is not None
    assert any(m["mountPath"] == str(config.server.token_file) for m in mirrord["volumeMounts"])


def test_pruning_runs_on_its_own_schedule_until_suspended(
    tmp_path: Path, mirror_registry: RegistryProcess
) -> None:
    setup = daemon_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/pruned",
        streams=[],
        sources=[],
        extra={"pruning": {"schedule": "1s"}},
    )
    with DaemonProcess(setup.path) as daemon:

        def prune_jobs() -> list[dict[str, Any]]:
            return list(daemon.get("/api/v1/jobs?kind=prune").json()["items"])

        def succeeded() -> int:
            return sum(j["status"] == "Succeeded" for j in prune_jobs())

        wait_until(lambda: succeeded() >= 2, 10, "two scheduled prune runs")
        # A third run may be under way at this moment (the schedule is 1s); none failed.
        assert {j["status"] for j in prune_jobs()} <= {"Succeeded", "Running"}
        document = yaml.safe_load(setup.path.read_text())
        _rewrite(setup, pruning={**document["pruning"], "suspend": True})
        mark = len(daemon.log())
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("configuration reloaded", since=mark)
        time.sleep(0.3)  # a prune run in flight when the reload came may still finish
        finished = [j["id"] for j in prune_jobs()]
        time.sleep(1.5)
        assert [j["id"] for j in prune_jobs()] == finished
        code, _ = daemon.terminate()
    assert code == 0

    async def conditions() -> dict[str, tuple[str, str]]:
        store = open_store(setup.state_dir)
        try:
            found = await store.pruner_conditions("pruner")
            return {c.type: (c.status, c.reason) for c in found}
        finally:
            await store.aclose()

    assert anyio.run(conditions)["Scheduled"] == ("False", "Suspended")


def test_a_second_daemon_on_the_same_state_dir_refuses_to_start(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    config = tmp_path / "mirrord.yaml"
    config.write_text(f"version: 1\nstate_dir: {state_dir}\nserver:\n  listen: 127.0.0.1:0\n")
    notify = NotifySocket()
    try:
        with DaemonProcess(config) as first:
            second = subprocess.run(
                [sys.executable, "-m", "mirrord", "daemon", "--config", str(config)],
                capture_output=True, text=True, timeout=15, env={**os.environ, **notify.env},
            )
            assert second.returncode == 3, second.stderr
            assert (
                f"error: another mirrord daemon (pid {first.pid}) uses state_dir {state_dir}"
                in second.stderr
            )
            assert "listening on" not in second.stderr and "ready" not in second.stderr
            assert notify.receive() == []  # no READY=1 (nor anything else) from the second
            assert first.get("/healthz").json() == {"status": "ok"}
            # the daemon lock is not the run lock: a one-shot run may still take that one
            one_shot = RunLock(state_dir / LOCK_FILE)
            assert one_shot.try_acquire()
            one_shot.release()
            code, _ = first.terminate()
        assert code == 0
    finally:
        notify.close()


def test_a_stream_that_fails_as_a_whole_counts_as_a_failed_image(
    tmp_path: Path,
    registry_factory: Any,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> None:
    """The CLI's summary, the job and the metric agree: a stream whose listing fails is one
    failed image (else an alert on images_total{outcome="failed"} never fires for it)."""
    source = registry_factory()
    setup = daemon_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/{repo_name}",
        streams=[{"from": f"{source.host}/{repo_name}/absent", "to": "gone", "schedule": "1h"}],
        sources=[source],
    )
    code, summary = setup.sync_json()
    assert code == 1 and summary["images"]["failed"] == 1, summary
    with DaemonProcess(setup.path) as daemon:
        wait_until(lambda: daemon.runs("gone", "failed") >= 1, 15, "the failing run")
        failed = daemon.metric("mirrord_stream_images_total", stream="gone", outcome="failed")
        job = daemon.get("/api/v1/jobs").json()["items"][0]
    assert failed == 1
    assert job["stream"] == "gone" and job["counts"]["imagesFailed"] == 1, job

"""The pruner runs one at a time across a fleet (issue 16): two real `mirrord prune
--confirm` processes on one throwaway PostgreSQL database, pruning a real mirror. The
first holds the run lock while it reads the mirror (slowed by a proxy); the second is
refused at once, naming the lock and the run that holds it, and records no job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.daemon_support import wait_until
from harness.images import push_image
from harness.postgres import PostgresCluster
from harness.synctools import sync_setup

from mirrord.cli._exitcodes import EXIT_LOCKED

LATENCY = 1.5  # seconds the proxy adds to each mirror request: the first prune lasts


def _prune(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mirrord", "prune", "--confirm", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )


def test_a_second_prune_on_the_shared_database_is_refused_while_one_runs(
    tmp_path: Path,
    postgres: PostgresCluster,
    registry_factory: Any,
    fault_proxy_factory: Any,
    repo_name: str,
) -> None:
    source, mirror = registry_factory(), registry_factory()
    with source.client() as client:
        push_image(client, f"{repo_name}/app", "1.0", seed=repo_name)
    proxy = fault_proxy_factory(mirror)
    database = postgres.create_database()
    try:
        password_file = tmp_path / "db-password"
        password_file.write_text(database.password + "\n", encoding="utf-8")
        setup = sync_setup(
            tmp_path,
            mirror=f"docker://{proxy.host}/{repo_name}",
            streams=[{"from": f"{source.host}/{repo_name}/app", "to": "app"}],
            sources=[source],
            extra={"database": database.url, "database_password_file": str(password_file)},
        )
        synced = setup.sync_measured()
        assert synced.code == 0, synced.stderr[-2000:]
        proxy.latency = LATENCY
        before = len(proxy.log)
        first = _prune(setup.path)
        # it holds the run lock before it opens its clients: a mirror request means held
        wait_until(lambda: len(proxy.log) > before, timeout=30, what="the first prune's request")
        started = time.monotonic()
        second = _prune(setup.path)
        out, err = second.communicate(timeout=60)
        refused_after = time.monotonic() - started
        assert first.poll() is None, "the first prune ended before the second was refused"
        _, first_err = first.communicate(timeout=120)
        assert first.returncode == 0, first_err[-2000:]
        assert second.returncode == EXIT_LOCKED, err[-2000:]
        assert "another mirrord run is in progress" in err
        assert database.url.rsplit("/", 1)[1] in err  # names the database of the lock
        assert database.password not in err + out
        assert refused_after < 30  # refused, not queued behind the first
        with database.connect() as conn:
            jobs = conn.execute("SELECT status FROM job_runs WHERE kind = 'prune'").fetchall()
        assert [tuple(j) for j in jobs] == [("Succeeded",)]  # one prune ran, once
    finally:
        postgres.drop_database(database.name)

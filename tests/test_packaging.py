"""The Containerfile and config/pod.yaml, read statically (no container engine here):
a UBI base, OpenShift's arbitrary UID (group 0, group-writable state, USER 1001, never
root at run time), the HEALTHCHECK, and a pod that agrees with the image. And the
version is defined once."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

import mirrord

ROOT = Path(__file__).resolve().parents[1]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Containerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _args() -> dict[str, str]:
    return dict(a.split("=", 1) for i, a in _instructions() if i == "ARG" and "=" in a)


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last = max(n for n, (i, _) in enumerate(steps) if i == "FROM")
    return steps[last:]


def test_every_stage_builds_on_ubi() -> None:
    bases = [a.split()[0] for i, a in _instructions() if i == "FROM"]
    assert len(bases) == 2
    for base in bases:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: _args()[m.group(1)], base)
        assert resolved.startswith("registry.access.redhat.com/ubi9/python-311"), resolved


def test_runs_as_1001_in_group_0_never_root() -> None:
    final = _final_stage()
    users = [(n, a) for n, (i, a) in enumerate(final) if i == "USER"]
    assert [a for _, a in users] == ["0", "1001"]  # root only to install
    last_user = users[-1][0]
    # numeric, so runAsNonRoot can check it; nothing runs as root after it
    assert all(i != "RUN" for i, _ in final[last_user:])
    assert [i for i, _ in final].index("ENTRYPOINT") > last_user
    runs = " ".join(a for i, a in final if i == "RUN")
    assert re.search(r"chgrp -R 0 [^&]*/var/lib/mirrord", runs)
    assert re.search(r"chmod -R g=u [^&]*/var/lib/mirrord", runs)


def test_state_volume_healthcheck_and_entrypoint() -> None:
    final = dict(_final_stage())
    assert final["VOLUME"] == '["/var/lib/mirrord"]'
    assert "STATE_DIRECTORY=/var/lib/mirrord" in final["ENV"]
    assert "MIRRORD_LOG_FORMAT=json" in final["ENV"]
    assert final["HEALTHCHECK"].startswith("--interval=")
    assert "MIRRORD_HEALTH_URL" in final["HEALTHCHECK"]
    assert final["ENTRYPOINT"] == '["mirrord"]' and final["CMD"] == '["daemon"]'


def test_the_pod_agrees_with_the_image() -> None:
    documents = list(yaml.safe_load_all((ROOT / "config/pod.yaml").read_text()))
    [pod] = [d for d in documents if d and d["kind"] == "Pod"]
    [container] = [c for c in pod["spec"]["containers"] if c["name"] == "mirrord"]
    context = container["securityContext"]
    assert context.get("runAsUser", 1001) == 1001 and context.get("runAsGroup", 0) == 0
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "fsGroup" not in pod["spec"]["securityContext"] or (
        pod["spec"]["securityContext"]["fsGroup"] == 0)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["state"] == "/var/lib/mirrord"
    assert mounts["config"] == "/etc/mirrord/mirrord.yaml"
    assert context["readOnlyRootFilesystem"] is True and mounts["tmp"] == "/tmp"


def test_the_version_is_defined_once() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["dynamic"]["version"] == {"attr": "mirrord.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", mirrord.__version__)

"""Debian's skopeo as a containers client with its own per-user configuration.

    client = SkopeoClient(tmp_path / "home")
    client.install_drop_in(path)          # ~/.config/containers/registries.conf.d/50-mirrord.conf
    pulled = client.pull("host/repo:tag") # skopeo copy docker://… dir:…

Everything skopeo reads lives under the client's own $HOME: an empty
``registries.conf`` (so /etc/containers is not read), the drop-in directory, a
``registries.d`` and a ``policy.json`` accepting anything. No other environment
variable reaches it, so the machine's configuration cannot leak into a test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pulled", "SkopeoClient"]


@dataclass(frozen=True)
class Pulled:
    returncode: int
    stderr: str
    manifest_digest: str | None  # sha256 of the manifest skopeo stored (None on failure)
    layers: int  # blobs besides the manifest in the copied directory

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class SkopeoClient:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.containers = home / ".config" / "containers"
        self.drop_ins = self.containers / "registries.conf.d"
        self.registries_d = self.containers / "registries.d"
        self.drop_ins.mkdir(parents=True, exist_ok=True)
        # Present: the per-user file replaces /etc/containers/registries.conf (and its
        # registries.conf.d); containers/image then reads only the per-user drop-ins.
        (self.containers / "registries.conf").write_text("unqualified-search-registries = []\n")
        policy = {"default": [{"type": "insecureAcceptAnything"}]}
        (self.containers / "policy.json").write_text(json.dumps(policy))

    def install_drop_in(self, source: Path, name: str = "50-mirrord.conf") -> Path:
        target = self.drop_ins / name
        shutil.copyfile(source, target)
        return target

    def remove_drop_in(self, name: str = "50-mirrord.conf") -> None:
        (self.drop_ins / name).unlink(missing_ok=True)

    def install_registries_d(self, source: Path) -> Path:
        self.registries_d.mkdir(parents=True, exist_ok=True)
        target = self.registries_d / source.name
        shutil.copyfile(source, target)
        return target

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {"HOME": str(self.home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return subprocess.run(
            ["skopeo", *args], capture_output=True, text=True, env=env, timeout=timeout,
            check=False,
        )

    def pull(self, reference: str) -> Pulled:
        """``skopeo copy docker://REFERENCE dir:…``: manifest and every blob."""
        out = self.home / "pulls" / uuid.uuid4().hex
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = self.run("copy", "--retry-times", "0", f"docker://{reference}", f"dir:{out}")
        if proc.returncode != 0:
            return Pulled(proc.returncode, proc.stderr, None, 0)
        manifest = (out / "manifest.json").read_bytes()
        blobs = [p for p in out.iterdir() if p.name not in ("manifest.json", "version")]
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        return Pulled(0, proc.stderr, digest, len(blobs))

"""Start-up (issue 17): what `mirrord sync` does not need is not imported by the CLI or
the sync code path. A sys.modules check in a fresh interpreter, not a timed test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Heavy stacks a sync without a database, a daemon or cluster resources never uses; rich
# (the live display, only on a terminal; httpx's own CLI pulls it in unless told not to)
# and keyring (imported when a credential lookup reaches it).
NOT_AT_START = ("mirrord.cluster", "mirrord.daemon", "mirrord.signatures", "psycopg",
                "rich", "pygments", "keyring", "secretstorage", "cryptography",
                "semantic_version")


@pytest.mark.parametrize("modules", ["mirrord.cli", "mirrord.cli, mirrord.sync, mirrord.state"])
def test_the_cli_and_the_sync_path_do_not_import_the_heavy_stacks(modules: str) -> None:
    code = (
        f"import sys, json, {modules}\n"
        f"print(json.dumps([m for m in {list(NOT_AT_START)!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(out) == []


def test_httpx_works_without_its_command_line_tool() -> None:
    # mirrord marks httpx._main absent (it pulls in rich): httpx itself is unaffected.
    code = (
        "import sys, mirrord, httpx\n"
        "assert sys.modules['httpx._main'] is None and 'rich' not in sys.modules\n"
        "print(httpx.Client().get('http://127.0.0.1:1/').status_code)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "ConnectError" in run.stderr and "AssertionError" not in run.stderr


def test_the_state_still_offers_the_postgres_store_on_demand() -> None:
    from mirrord.state import PostgresStore

    assert PostgresStore.__name__ == "PostgresStore"


def test_signatures_import_cryptography_only_to_check_a_cosign_signature() -> None:
    # A run that copies images imports the signatures package for its gate; cryptography
    # (~30 ms) only when a policy's cosign key is parsed.
    code = (
        "import sys, mirrord.signatures\n"
        "print('cryptography' in sys.modules)\n"
        "from mirrord.signatures._cosign import load_public_key\n"
        "try:\n    load_public_key(b'junk')\nexcept ValueError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out[0] == "False" and out[1].startswith("not a PEM public key")


FAKE_TRIO = "import os\nopen(os.environ['TRIO_MARK'], 'a').write('imported\\n')\n"


def _with_fake_trio(tmp_path: Path, code: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run ``code`` with a ``trio`` package on the path that marks its import."""
    (tmp_path / "fake" / "trio").mkdir(parents=True)
    (tmp_path / "fake" / "trio" / "__init__.py").write_text(FAKE_TRIO)
    mark = tmp_path / "trio-imported"
    env = {**os.environ, "TRIO_MARK": str(mark),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), *sys.path])}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env, cwd=tmp_path)
    return run, mark


def test_a_command_does_not_import_trio_through_httpcore(tmp_path: Path) -> None:
    # httpcore imports trio whenever it is installed; the CLI runs on asyncio.
    config = tmp_path / "mirrord.yaml"
    config.write_text("version: 1\nmirror: docker://127.0.0.1:5000\nstreams: []\n")
    run, mark = _with_fake_trio(
        tmp_path, f"from mirrord.cli import main; main(['validate', '--config', '{config}'])")
    assert run.returncode == 0, run.stderr
    assert not mark.exists()


def test_httpcore_imported_before_the_cli_keeps_trio(tmp_path: Path) -> None:
    # A program that embeds mirrord (and may run it under trio) keeps httpcore's trio.
    code = ("import httpcore._synchronization as s\n"
            "from mirrord.cli._app import _import_http_stack_for_asyncio\n"
            "_import_http_stack_for_asyncio()\n"
            "assert s.trio is not None\n")
    run, mark = _with_fake_trio(tmp_path, code)
    assert run.returncode == 0, run.stderr
    assert mark.read_text() == "imported\n"

"""The package's import rules (docs/ARCHITECTURE.md), checked on the source.

Every ``import`` in ``mirrord/`` (at the top or inside a function) is read with ``ast``:

- a package imports only the packages its layer allows (``ALLOWED``);
- nothing imports another package's private modules or names (``mirrord.x._y``);
- the core imports no I/O library (no httpx, anyio, sqlite3, subprocess…).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mirrord"

# package -> the mirrord packages it may import (itself and `errors` always allowed)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "config": {"core"},
    "registry": {"core"},
    "credentials": {"core"},
    "state": {"core"},
    "transports": {"core", "config", "registry", "credentials"},
    "copy": {"core", "registry", "transports"},
    "notify": {"core", "config", "state"},
    "cluster": {"core", "config", "state"},
    "signatures": {"core"},
    "sync": {
        "core", "config", "registry", "transports", "copy", "state", "notify", "cluster",
        "signatures",
    },
    "prune": {"core", "config", "registry", "transports", "state"},
    "daemon": {
        "core", "config", "registry", "credentials", "transports", "copy", "state",
        "notify", "cluster", "signatures", "sync", "prune",
    },
    "cli": {
        "core", "config", "registry", "credentials", "transports", "copy", "state",
        "notify", "cluster", "signatures", "sync", "prune", "daemon",
    },
}
ROOT_MODULES = {"__init__", "__main__", "errors"}
CORE_FORBIDDEN = {
    "httpx", "anyio", "sqlite3", "subprocess", "socket", "threading", "asyncio", "yaml",
    "keyring", "uvicorn", "starlette", "prometheus_client", "psycopg", "shutil",
}


# Pure modules outside the core: the configuration's parsing (its I/O is in _locate.py).
PURE_MODULES = {"config/_parse.py", "config/_types.py", "config/_values.py", "config/_yaml.py"}
PURE_FORBIDDEN = CORE_FORBIDDEN - {"yaml"} | {"os"}


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) for every import statement in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
    return found


def _violations() -> list[str]:
    out = []
    for path in _modules():
        here = _package(path)
        where = path.relative_to(ROOT.parent)
        for line, module, names in _imports(path):
            top = module.split(".")[0]
            if here == "core" and top in CORE_FORBIDDEN:
                out.append(f"{where}:{line}: the core imports {module} (I/O)")
            pure = str(path.relative_to(ROOT)) in PURE_MODULES
            if pure and top in PURE_FORBIDDEN:
                out.append(f"{where}:{line}: a pure module imports {module} (I/O)")
            if top != "mirrord":
                continue
            parts = module.split(".")
            target = parts[1] if len(parts) > 1 else ""
            if target == "" and names:  # `from mirrord import x` (__version__: the root)
                targets = [(n, [n]) for n in names if not n.startswith("__")]
            else:
                targets = [(target, parts[2:] + names)]
            for package, rest in targets:
                if package in ROOT_MODULES or package == "" or package == here:
                    continue
                if here not in ROOT_MODULES and package not in ALLOWED.get(here, set()):
                    out.append(f"{where}:{line}: {here} may not import mirrord.{package}")
                if any(p.startswith("_") for p in rest):
                    out.append(f"{where}:{line}: private name of mirrord.{package}: {module}")
    return out


def test_packages_import_only_what_their_layer_allows() -> None:
    assert _violations() == []


def test_every_package_is_in_the_rules() -> None:
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)


def test_root_holds_only_the_entry_points_and_the_error_tree() -> None:
    assert {p.stem for p in ROOT.glob("*.py")} == ROOT_MODULES


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("from mirrord.daemon import Daemon\n", "core may not import mirrord.daemon"),
        ("from mirrord.state._sqlite import x\n", "private name of mirrord.state"),
        ("import httpx\n", "the core imports httpx"),
    ],
)
def test_the_check_catches_a_violation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, message: str
) -> None:
    fake = tmp_path / "mirrord"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "__init__.py").write_text("")
    (fake / "core" / "bad.py").write_text(source)
    monkeypatch.setitem(globals(), "ROOT", fake)
    assert any(message in v for v in _violations())

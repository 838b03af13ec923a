"""Shared fixtures: real registries (Debian docker-registry) and a token server on loopback.

Session-scoped, started lazily on first use (~50 ms each):
    mirror_registry   anonymous, deletes enabled (the mirror)
    basic_registry    htpasswd Basic auth; users harness.USERS (alice + "12345678|robot")
    token_server      the token server (function view: reset before and after each test)
    token_registry    token auth through token_server; same users
    tls_registry      anonymous over https with a self-signed cert (`ca_file` to trust it)
    postgres          a throwaway PostgreSQL cluster (harness.postgres; ~1.5 s to initdb)
Per test:
    registry_factory  make your own: registry_factory(delete_enabled=False), (users=...),
                      (token_server=registry_factory.token_server()); stopped after the test
    repo_name         a repository name unique to this test ("t/<test>-<hex>")
    mirror_client / basic_client / token_client   harness RegistryHTTP clients (alice)
    alice / robot     harness.Credentials
    hostile_registry  a fresh harness.hostile.HostileRegistry (lying upstream + catcher)
    fault_proxy_factory   fault_proxy_factory(registry, seed=0) -> a started FaultProxy
    refused_host      "127.0.0.1:PORT" where connections are refused (the port stays reserved)
    pg_database       a fresh database in `postgres` (dropped after the test)

Session registries are shared: use `repo_name` to keep tests apart and `reg.mark()` /
`reg.requests(since=...)` to count only your own requests.

Every server is stopped at teardown and again at session end; registry processes also die
with the pytest process (PR_SET_PDEATHSIG). `--harness-logs` prints where the logs are.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ALICE, ROBOT, USERS, Credentials
from harness.faultproxy import FaultProxy
from harness.hostile import HostileRegistry
from harness.images import RegistryHTTP
from harness.outage import refused_port
from harness.postgres import PostgresCluster, PostgresDatabase
from harness.postgres import _stop_all as _stop_all_clusters
from harness.registry import _LIVE, RegistryProcess, _stop_all
from harness.tokenserver import TokenServer

_LOG_DIRS: list[Path] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mirrord harness")
    group.addoption("--harness-logs", action="store_true", default=False,
                    help="print the harness registries' log files at the end of the session")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _stop_all()  # anything a test started by hand and forgot
    _stop_all_clusters()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if config.getoption("--harness-logs") and _LOG_DIRS:
        terminalreporter.write_sep("-", "harness logs")
        for d in _LOG_DIRS:
            terminalreporter.write_line(str(d))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        for reg in list(_LIVE):
            report.sections.append((f"registry {reg.url} log (tail)", reg._log_tail(2000)))
    return report


def _start(directory: Path, **kw: Any) -> RegistryProcess:
    reg = RegistryProcess(directory, **kw).start()
    _LOG_DIRS.append(reg.log_path)
    return reg


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Every async test runs on asyncio (mirrord's own backend in production)."""
    return "asyncio"


@pytest.fixture(scope="session")
def harness_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("harness")


@pytest.fixture(scope="session")
def _token_server(harness_dir: Path) -> Iterator[TokenServer]:
    server = TokenServer(harness_dir / "token-server", USERS).start()
    yield server
    server.stop()


@pytest.fixture
def token_server(_token_server: TokenServer) -> Iterator[TokenServer]:
    """The session token server, with recorded requests and runtime knobs reset around the
    test (ttl back to 300, anonymous_pull False, no policy, no queued failures)."""
    _token_server.reset()
    _token_server.ttl = 300
    yield _token_server
    _token_server.reset()
    _token_server.ttl = 300


@pytest.fixture(scope="session")
def mirror_registry(harness_dir: Path) -> Iterator[RegistryProcess]:
    reg = _start(harness_dir / "mirror")
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(harness_dir: Path) -> Iterator[RegistryProcess]:
    reg = _start(harness_dir / "basic", users=USERS)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(harness_dir: Path, _token_server: TokenServer) -> Iterator[RegistryProcess]:
    reg = _start(harness_dir / "token", token_server=_token_server)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def tls_registry(harness_dir: Path) -> Iterator[RegistryProcess]:
    reg = _start(harness_dir / "tls", tls=True)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    yield cluster
    cluster.remove()


@pytest.fixture
def pg_database(postgres: PostgresCluster) -> Iterator[PostgresDatabase]:
    database = postgres.create_database()
    yield database
    postgres.drop_database(database.name)


class RegistryFactory:
    """`factory(**RegistryProcess kwargs)` -> a started registry in the test's tmp dir;
    `factory.token_server(users=USERS, **kw)` -> a started private TokenServer."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self._registries: list[RegistryProcess] = []
        self._servers: list[TokenServer] = []

    def __call__(self, **kw: Any) -> RegistryProcess:
        reg = _start(self._tmp / f"registry-{len(self._registries)}", **kw)
        self._registries.append(reg)
        return reg

    def token_server(self, users: dict[str, str] | None = None, **kw: Any) -> TokenServer:
        server = TokenServer(self._tmp / f"token-server-{len(self._servers)}",
                             USERS if users is None else users, **kw).start()
        self._servers.append(server)
        return server

    def close(self) -> None:
        for reg in self._registries:
            reg.stop()
        for server in self._servers:
            server.stop()


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[RegistryFactory]:
    factory = RegistryFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """`t/<test name>-<6 hex>`: lowercase, valid as a repository path component."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"t/{name or 'test'}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def alice() -> Credentials:
    return ALICE


@pytest.fixture
def robot() -> Credentials:
    return ROBOT


@pytest.fixture
def mirror_client(mirror_registry: RegistryProcess) -> Iterator[RegistryHTTP]:
    with mirror_registry.client() as client:
        yield client


@pytest.fixture
def basic_client(basic_registry: RegistryProcess) -> Iterator[RegistryHTTP]:
    with basic_registry.client() as client:
        yield client


@pytest.fixture
def token_client(token_registry: RegistryProcess) -> Iterator[RegistryHTTP]:
    with token_registry.client() as client:
        yield client


@pytest.fixture
def hostile_registry() -> Iterator[HostileRegistry]:
    """A fresh hostile registry (and its catcher) per test; a crash inside the fake itself
    fails the test."""
    with HostileRegistry() as reg:
        yield reg
    assert not reg.errors, f"the hostile registry itself failed: {reg.errors!r}"


class FaultProxyFactory:
    """`factory(upstream, **FaultProxy kwargs)` -> a started FaultProxy; all stopped after
    the test."""

    def __init__(self) -> None:
        self.proxies: list[FaultProxy] = []

    def __call__(self, upstream: Any, **kw: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, **kw).start()
        self.proxies.append(proxy)
        return proxy

    def close(self) -> list[BaseException]:
        errors: list[BaseException] = []
        for proxy in self.proxies:
            proxy.stop()
            errors += proxy.errors
        return errors


@pytest.fixture
def fault_proxy_factory() -> Iterator[FaultProxyFactory]:
    factory = FaultProxyFactory()
    yield factory
    errors = factory.close()
    assert not errors, f"the fault proxy itself failed: {errors!r}"


@pytest.fixture
def refused_host() -> Iterator[str]:
    with refused_port() as port:
        yield f"127.0.0.1:{port}"

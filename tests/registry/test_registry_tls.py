"""TLS against the real https registry: verification on by default, CAs from ca_file/certs.d."""

from __future__ import annotations

import shutil
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from harness.images import push_image
from harness.registry import RegistryProcess
from harness.tls import ca_and_leaf

from mirrord.errors import RegistryError, TLSError
from mirrord.registry import RegistryClient, RegistryOptions, prepare_ssl_context
from mirrord.registry._tls import ssl_context

pytestmark = pytest.mark.anyio


@pytest.fixture
def pushed(tls_registry: RegistryProcess, repo_name: str) -> str:
    with tls_registry.client() as http:
        push_image(http, repo_name, "v1", seed=repo_name)
    return repo_name


async def read_back(client: RegistryClient, repo: str) -> None:
    assert await client.ping() == ""
    assert await client.list_tags(repo) == ["v1"]
    manifest = await client.get_manifest(repo, "v1")
    async with client.get_blob(repo, manifest.layers[0].digest) as chunks:
        assert sum([len(c) async for c in chunks]) == manifest.layers[0].size


async def test_unknown_ca_is_a_final_tls_error(tls_registry: RegistryProcess, pushed: str) -> None:
    options = RegistryOptions(certs_dirs=())
    async with RegistryClient(tls_registry.host, options=options) as client:
        with pytest.raises(TLSError) as caught:
            await client.ping()
        with pytest.raises(TLSError):
            await client.get_manifest(pushed, "v1")
    error = caught.value
    assert not error.temporary and error.reason == "TLSError"
    message = str(error)
    assert message.startswith(f"{tls_registry.host}: connecting: TLS verification failed")
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert f"/etc/containers/certs.d/{tls_registry.host}/ca.crt" in message


async def test_ca_file_trusts_the_registry(tls_registry: RegistryProcess, pushed: str) -> None:
    options = RegistryOptions(ca_file=tls_registry.ca_file, certs_dirs=())
    async with RegistryClient(tls_registry.host, options=options) as client:
        await read_back(client, pushed)


async def test_certs_d_directory_trusts_the_registry(
    tls_registry: RegistryProcess, pushed: str, tmp_path: Path
) -> None:
    assert tls_registry.ca_file is not None
    (tmp_path / tls_registry.host).mkdir()
    shutil.copy(tls_registry.ca_file, tmp_path / tls_registry.host / "ca.crt")
    options = RegistryOptions(certs_dirs=(tmp_path,))
    async with RegistryClient(tls_registry.host, options=options) as client:
        await read_back(client, pushed)
    # The directory of another host does not apply.
    (tmp_path / tls_registry.host).rename(tmp_path / "other.example:5000")
    async with RegistryClient(tls_registry.host, options=options) as client:
        with pytest.raises(TLSError):
            await client.ping()


async def test_tls_verify_false_skips_verification(
    tls_registry: RegistryProcess, pushed: str
) -> None:
    options = RegistryOptions(tls_verify=False, certs_dirs=())
    async with RegistryClient(tls_registry.host, options=options) as client:
        await read_back(client, pushed)


async def test_plain_http_to_a_tls_registry_is_refused(tls_registry: RegistryProcess) -> None:
    options = RegistryOptions(insecure=True)
    async with RegistryClient(tls_registry.host, options=options) as client:
        with pytest.raises(RegistryError) as caught:
            await client.ping()
    assert not caught.value.temporary
    assert str(caught.value).startswith(f"{tls_registry.host}: connecting: 400")


async def test_tls_to_a_plain_http_registry_says_set_insecure(
    basic_registry: RegistryProcess,
) -> None:
    assert basic_registry.ca_file is None  # the harness's basic registry speaks plain HTTP
    options = RegistryOptions(insecure=False, certs_dirs=())
    async with RegistryClient(basic_registry.host, options=options) as client:
        with pytest.raises(TLSError) as caught:
            await client.ping()
    error = caught.value
    assert not error.temporary
    message = str(error)
    assert message.startswith(f"{basic_registry.host}: connecting: TLS handshake failed, "
                              "the answer looks like plain HTTP")
    assert "set 'insecure: true'" in message
    assert "--insecure" in message
    assert "ca_file" not in message and "tls_verify" not in message


async def test_registries_with_the_same_ca_share_one_context_until_it_changes(
    tls_registry: RegistryProcess, pushed: str, tmp_path: Path
) -> None:
    # A context costs tens of milliseconds to build: the same, unchanged files give one.
    assert tls_registry.ca_file is not None
    ca = tmp_path / "ca.crt"
    shutil.copy(tls_registry.ca_file, ca)
    options = RegistryOptions(ca_file=ca, certs_dirs=())
    first = ssl_context(tls_registry.host, options)
    assert isinstance(first, ssl.SSLContext)
    assert ssl_context("mirror.example:5000", options) is first
    async with RegistryClient(tls_registry.host, options=options) as client:
        await read_back(client, pushed)
    # The CA file replaced by another CA's: a new context, which no longer trusts the registry.
    other = ca_and_leaf(tmp_path / "other")
    ca.write_bytes(other.ca_path.read_bytes())
    assert ssl_context(tls_registry.host, options) is not first
    async with RegistryClient(tls_registry.host, options=options) as client:
        with pytest.raises(TLSError):
            await client.ping()
    # A certs.d directory that applies to one host only: not shared with another host.
    (tmp_path / "d" / tls_registry.host).mkdir(parents=True)
    shutil.copy(tls_registry.ca_file, tmp_path / "d" / tls_registry.host / "ca.crt")
    scoped = RegistryOptions(certs_dirs=(tmp_path / "d",))
    assert ssl_context(tls_registry.host, scoped) is not ssl_context("other.example", scoped)


@pytest.mark.parametrize("http2", [True, False])
async def test_small_exchanges_go_over_http2_blobs_over_http11(
    tls_registry: RegistryProcess, pushed: str, http2: bool
) -> None:
    # docker-registry (Go) offers h2 by ALPN: tag lists and manifests take it; a blob
    # body keeps an HTTP/1.1 connection of its own, and HEADs go by the HEAD pool's
    # HTTP/1.1 connections. http2: false keeps HTTP/1.1.
    mark = tls_registry.mark()
    options = RegistryOptions(ca_file=tls_registry.ca_file, certs_dirs=(), http2=http2)
    async with RegistryClient(tls_registry.host, options=options) as client:
        await read_back(client, pushed)
        assert await client.head_manifest(pushed, "v1") is not None
    seen = {(e.method, e.path.split("/")[-2], e.protocol)
            for e in tls_registry.access_log(since=mark) if e.path.startswith(f"/v2/{pushed}")}
    small = "HTTP/2.0" if http2 else "HTTP/1.1"
    assert ("HEAD", "manifests", "HTTP/1.1") in seen and ("GET", "tags", small) in seen
    assert ("GET", "manifests", small) in seen
    assert {p for m, kind, p in seen if kind == "blobs"} == {"HTTP/1.1"}


def test_a_prepared_context_is_built_in_a_thread_and_handed_to_the_client(
    tls_registry: RegistryProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mirrord sync starts the build while it opens the state; the client waits for it.
    from mirrord.registry import _tls

    assert tls_registry.ca_file is not None
    ca = tmp_path / "ca.crt"  # a CA file of its own: a context no other test built
    ca.write_bytes(tls_registry.ca_file.read_bytes() + b"\n# prepared\n")
    built: list[tuple[str, ssl.SSLContext]] = []

    def recording(*args: Any) -> ssl.SSLContext:
        context = build(*args)
        built.append((threading.current_thread().name, context))
        return context

    build = _tls._build
    monkeypatch.setattr(_tls, "_build", recording)
    options = RegistryOptions(ca_file=ca, certs_dirs=())
    prepare_ssl_context(tls_registry.host, options)
    prepare_ssl_context("mirror.example:5000", options)  # the same inputs: one build
    context = ssl_context(tls_registry.host, options)
    assert built == [(f"mirrord-tls-{tls_registry.host}", context)]
    assert ssl_context("mirror.example:5000", options) is context


def test_a_prepared_build_that_fails_raises_where_the_context_is_asked_for(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    options = RegistryOptions(ca_file=bad, certs_dirs=())
    prepare_ssl_context("r.example", options)  # never raises: the failure is the client's
    with pytest.raises(TLSError, match=f"cannot load ca_file {bad}"):
        ssl_context("r.example", options)
    unreadable = RegistryOptions(ca_file=tmp_path, certs_dirs=())  # a directory
    prepare_ssl_context("r.example", unreadable)
    with pytest.raises(TLSError, match="is not a regular file"):
        ssl_context("r.example", unreadable)


def test_nothing_is_prepared_for_plain_http_or_an_unverified_registry() -> None:
    from mirrord.registry import _tls

    threads = {t.name for t in threading.enumerate()}
    for options in (RegistryOptions(insecure=True), RegistryOptions(tls_verify=False)):
        prepare_ssl_context("plain.example", options)
    assert not _tls._building
    assert {t.name for t in threading.enumerate()} - threads == set()


def _subjects(context: ssl.SSLContext) -> set[str]:
    return {repr(c["subject"]) for c in context.get_ca_certs()}


@pytest.mark.parametrize("system_store", [True, False])
def test_certifi_is_loaded_only_when_the_system_has_no_trust_store(
    tls_registry: RegistryProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    system_store: bool,
) -> None:
    # OpenSSL reads the default store from SSL_CERT_FILE / SSL_CERT_DIR when asked.
    import certifi

    from mirrord.registry import _tls

    assert tls_registry.ca_file is not None
    store = tmp_path / "system.pem"
    store.write_bytes(tls_registry.ca_file.read_bytes() if system_store else b"")
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    bundled = ssl.create_default_context(cafile=certifi.where())
    context = _tls._build("r.example", None, [])
    if system_store:  # the system's CA alone: certifi's bundle is not parsed again
        assert len(context.get_ca_certs()) == 1
        assert not _subjects(context) & _subjects(bundled)
    else:
        assert _subjects(context) == _subjects(bundled)

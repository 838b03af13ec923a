"""The mirror side of a no-op re-sync (issue 17): one tag listing per mirror repository
plus the state's records replace a HEAD per unchanged tag; an out-of-band delete is still
repaired on a normal run, an out-of-band overwrite is found by `mirrord sync --verify`.

The mirror is a real docker-registry behind the fault proxy (no faults: its request log
counts what mirrord asked the mirror); `mirrord sync` runs as a real child process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.faultproxy import FaultProxy
from harness.faults import Delay
from harness.images import RegistryHTTP, build_image, push
from harness.registry import RegistryProcess
from harness.synctools import Setup, sync_setup

from tests.sync.test_faults import push_tags, run_sync

TAGS = 20


def _setup(
    tmp_path: Path, registry_factory: Any, fault_proxy_factory: Any,
    mirror_registry: RegistryProcess, repo_name: str, *, tag_count: int = TAGS,
    front: Callable[[RegistryProcess], Any] = lambda source: source,
) -> tuple[Setup, FaultProxy, dict[str, str]]:
    """A first sync of ``tag_count`` tags, the mirror behind a fault proxy; the sync
    reads the source through ``front`` (the registry itself by default)."""
    source = registry_factory()
    with source.client() as client:
        tags = push_tags(client, repo_name, tag_count, repo_name)
    upstream = front(source)
    proxy: FaultProxy = fault_proxy_factory(mirror_registry, seed=3)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{proxy.host}/noop",
        streams=[{"from": f"{upstream.host}/{repo_name}", "max_tags": -1, "signatures": False}],
        sources=[],
        settings={upstream.host: {"insecure": True}, proxy.host: {"insecure": True}},
    )
    code, _, err = run_sync(setup)
    assert code == 0, err
    return setup, proxy, tags


def _mirror_requests(proxy: FaultProxy) -> tuple[int, int, int]:
    """(manifest HEADs, tag listings, manifest PUTs) the mirror received."""
    return (
        proxy.log.count("manifests", method="HEAD"),
        proxy.log.count("tags", method="GET"),
        proxy.log.count("manifests", method="PUT"),
    )


def test_a_no_op_re_sync_lists_the_mirror_once_instead_of_a_head_per_tag(
    tmp_path: Path, registry_factory: Any, fault_proxy_factory: Any,
    mirror_registry: RegistryProcess, repo_name: str,
) -> None:
    setup, proxy, _ = _setup(
        tmp_path, registry_factory, fault_proxy_factory, mirror_registry, repo_name
    )
    proxy.log.clear()
    code, _, err = run_sync(setup, "--verify")
    assert code == 0, err
    verify_heads, _, verify_puts = _mirror_requests(proxy)
    proxy.log.clear()
    code, _, err = run_sync(setup)
    assert code == 0, err
    heads, listings, puts = _mirror_requests(proxy)
    print(f"mirror requests per unchanged tag: --verify {verify_heads / TAGS:.2f} HEAD, "
          f"listing {heads / TAGS:.2f} HEAD + {listings} listing(s) for {TAGS} tags")
    assert (verify_heads, verify_puts) == (TAGS, 0)
    assert (heads, listings, puts) == (0, 1, 0)


def test_a_tag_deleted_in_the_mirror_out_of_band_is_repaired_by_a_normal_run(
    tmp_path: Path, registry_factory: Any, fault_proxy_factory: Any,
    mirror_registry: RegistryProcess, mirror_client: RegistryHTTP, repo_name: str,
) -> None:
    setup, proxy, tags = _setup(
        tmp_path, registry_factory, fault_proxy_factory, mirror_registry, repo_name
    )
    mirror_repo = f"noop/{repo_name}"
    # t0 and t12 share an image (push_tags cycles 12 images): deleting the manifest
    # removes both tags from the mirror.
    mirror_client.delete_manifest(mirror_repo, tags["t0"])
    assert mirror_client.head_manifest(mirror_repo, "t0") is None
    proxy.log.clear()
    code, _, err = run_sync(setup)
    assert code == 0, err
    heads, listings, puts = _mirror_requests(proxy)
    assert listings == 1 and heads == 2 and puts == 2, proxy.log.counts()
    for tag in ("t0", "t12"):
        assert mirror_client.head_manifest(mirror_repo, tag) == tags[tag]


def test_verify_finds_a_tag_overwritten_in_the_mirror_out_of_band(
    tmp_path: Path, registry_factory: Any, fault_proxy_factory: Any,
    mirror_registry: RegistryProcess, mirror_client: RegistryHTTP, repo_name: str,
) -> None:
    setup, proxy, tags = _setup(
        tmp_path, registry_factory, fault_proxy_factory, mirror_registry, repo_name
    )
    mirror_repo = f"noop/{repo_name}"
    intruder = push(mirror_client, build_image(mirror_repo, "t3", seed="intruder",
                                               layer_sizes=(300,)))
    assert mirror_client.head_manifest(mirror_repo, "t3") == intruder.digest != tags["t3"]
    code, _, err = run_sync(setup)  # the documented trade-off: the listing shows t3
    assert code == 0, err
    assert mirror_client.head_manifest(mirror_repo, "t3") == intruder.digest
    proxy.log.clear()
    code, _, err = run_sync(setup, "--verify")
    assert code == 0, err
    assert _mirror_requests(proxy)[0] >= TAGS
    assert mirror_client.head_manifest(mirror_repo, "t3") == tags["t3"]


def test_the_source_heads_do_not_wait_for_the_mirror_listing(
    tmp_path: Path, registry_factory: Any, fault_proxy_factory: Any,
    mirror_registry: RegistryProcess, repo_name: str,
) -> None:
    # The listing is slowed at the mirror; the source's HEADs must already be out.
    fronts: list[FaultProxy] = []

    def front(source: RegistryProcess) -> FaultProxy:
        fronts.append(fault_proxy_factory(source, seed=1, name="source"))
        return fronts[0]

    setup, mirror, _ = _setup(
        tmp_path, registry_factory, fault_proxy_factory, mirror_registry, repo_name,
        tag_count=3, front=front,
    )
    (upstream,) = fronts
    upstream.log.clear()
    mirror.log.clear()
    mirror.on("tags", Delay(2.0), methods="GET")
    code, _, err = run_sync(setup)
    assert code == 0, err
    (listing,) = [e for e in mirror.log.entries if "/tags/list" in e.target]
    heads = [e.time for e in upstream.log.entries if e.method == "HEAD"]
    assert len(heads) == 3 and max(heads) < listing.time + 1.0  # not after the 2 s delay
    assert _mirror_requests(mirror) == (0, 1, 0)  # the listing still stood in for HEADs

"""Fixtures for signature tests: real GnuPG keys, an image signed by Debian's skopeo.

    gpg_key / other_gpg_key   GPGKey (ed25519, no passphrase), gpg-agent stopped at the end
    signed_image              SignedImage: pushed to the mirror registry, copied by
                              `skopeo copy --sign-by` to `<repo>/signed/app:1.0`, its
                              signature staged under `staging` (a lookaside directory)
    write_policy(doc)         writes a policy JSON file in tmp_path, returns its path
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness.images import Image, push_image
from harness.registry import RegistryProcess
from harness.signing import GPGKey, skopeo_sign


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GPGKey]:
    key = GPGKey.generate(tmp_path_factory.mktemp("gpg") / "home", "mirrord signer")
    yield key
    key.close()


@pytest.fixture(scope="module")
def other_gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GPGKey]:
    key = GPGKey.generate(tmp_path_factory.mktemp("gpg-other") / "home", "someone else")
    yield key
    key.close()


@dataclass(frozen=True)
class SignedImage:
    registry: RegistryProcess
    image: Image          # the manifest as pushed (its bytes are what was signed)
    repository: str       # path of the signed copy, without host
    reference: str        # host/repository:1.0, the identity in the signature
    staging: Path         # the lookaside directory skopeo wrote the signature into


@pytest.fixture
def signed_image(mirror_registry: RegistryProcess, repo_name: str, gpg_key: GPGKey,
                 tmp_path: Path) -> SignedImage:
    with mirror_registry.client() as client:
        image = push_image(client, f"{repo_name}/src/app", "1.0", seed=repo_name)
    repository = f"{repo_name}/signed/app"
    reference = f"{mirror_registry.host}/{repository}:1.0"
    staging = tmp_path / "staging"
    skopeo_sign(f"{mirror_registry.host}/{repo_name}/src/app:1.0", reference,
                tmp_path / "skopeo-sign", gpg=gpg_key, staging=staging)
    return SignedImage(mirror_registry, image, repository, reference, staging)


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    count = [0]

    def write(doc: dict[str, Any]) -> Path:
        count[0] += 1
        path = tmp_path / f"policy-{count[0]}.json"
        path.write_text(json.dumps(doc, indent=2))
        return path

    return write

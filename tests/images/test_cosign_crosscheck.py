"""Cross-check with cosign, where it is installed (it is not in Debian; a CI job may install
it): cosign verifies what pysandbox signed and pushed, and pysandbox verifies on pull what
cosign signed in the registry. Both sides use a key pair, no transparency log, and the
registry on loopback. Skipped cleanly without cosign."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysbx.images.distribution import RegistryClient
from pysbx.images.image import Image, open_stored_image
from pysbx.images.loading import load_archive
from pysbx.images.localstore import LocalStore
from pysbx.images.pull import pull_image
from pysbx.images.push import push_image
from pysbx.images.registryname import parse_image_name
from pysbx.images.writer import write_oci_layout
from pysbx.policies.model import SigningPolicy
from pysbx.signing.keys import load_private_key
from pysbx.signing.sign import attach_signature_tag, sign_image
from pysbx.signing.verify import verify_image
from tests.imagekit import T, image_of
from tests.images.registry_server import Registry, start_registry
from tests.signing.conftest import write_key_pairs

COSIGN = shutil.which("cosign")
pytestmark = pytest.mark.skipif(COSIGN is None, reason="cosign is not installed (not in Debian)")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    started = start_registry(tmp_path_factory.mktemp("registry"))
    yield started
    started.stop()


def cosign(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COSIGN_PASSWORD": "", "HOME": str(cwd)}
    return subprocess.run([str(COSIGN), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def published(registry: Registry, tmp_path: Path, repository: str) -> tuple[LocalStore, Image, str]:
    store = LocalStore.create(tmp_path / "store" / "images")
    name = f"{registry.host}/{repository}:1"
    write_oci_layout(tmp_path / "layout", [(name, [image_of([T("f", data=repository.encode())])])])
    loaded = load_archive(store, tmp_path / "layout")[0]
    return store, open_stored_image(store.folder, loaded.digest, name), name


def test_cosign_verifies_what_we_signed_and_pushed(registry: Registry, tmp_path: Path) -> None:
    store, image, name = published(registry, tmp_path, "ours")
    keys = write_key_pairs(tmp_path, "team")
    with store.editing():
        signed = sign_image(image, load_private_key(keys["team"].with_suffix(".key")), "message", reference=name)
        attach_signature_tag(image, signed)
    found = store.find(name)
    assert found is not None
    with RegistryClient(registry.host) as client:
        push_image(store, found, parse_image_name(name), client)
    checked = cosign(
        "verify", "--key", str(keys["team"].with_suffix(".pub")), "--insecure-ignore-tlog=true",
        "--allow-insecure-registry", f"{name.split(':1')[0]}@{image.manifest_digest}", cwd=tmp_path,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_we_verify_on_pull_what_cosign_signed(registry: Registry, tmp_path: Path) -> None:
    store, image, name = published(registry, tmp_path, "theirs")
    found = store.find(name)
    assert found is not None
    with RegistryClient(registry.host) as client:
        push_image(store, found, parse_image_name(name), client)
    assert cosign("generate-key-pair", cwd=tmp_path).returncode == 0
    signed = cosign(
        "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry", "--yes",
        f"{name.split(':1')[0]}@{image.manifest_digest}", cwd=tmp_path,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    policy = SigningPolicy(required=True, keys=(str(tmp_path / "cosign.pub"),))

    def verify(pulled: Image) -> str | None:
        verdict = verify_image(pulled, policy)
        return None if verdict.verified else verdict.reason

    elsewhere = LocalStore.create(tmp_path / "elsewhere" / "images")
    with RegistryClient(registry.host) as client:
        pulled = pull_image(elsewhere, parse_image_name(name), client, verify=verify)
    assert pulled.attached >= 1

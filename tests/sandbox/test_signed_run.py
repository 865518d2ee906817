"""Step 1 of `pysandbox run`: under a policy that requires it, an image runs only if its
signature verifies; a tampered copy is refused and nothing of it is unpacked."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from pysbx.images.writer import write_docker_archive
from tests.imagekit import T, image_of
from tests.sandbox.harness import signed_image

PYSANDBOX = str(Path(sys.executable).parent / "pysandbox")


@pytest.fixture(scope="module")
def signed(world: Path) -> Path:
    """A signed copy of the busybox image, the key's policy (extends strict), and a tampered
    copy of a signed image whose top layer no run has cached: layers are content-addressed, so
    a flipped byte in a layer that is cached already changes nothing that runs (the cached,
    verified tree does); one that is not cached must be refused as it is read."""
    folder = signed_image(world / "signed", world / "busybox-app.tar")
    marker = f"tamper-target-{uuid.uuid4().hex}".encode()
    with_unique_layer = world / "signed" / "unique.tar"
    write_docker_archive(with_unique_layer, image_of([T("bin", "dir"), T("bin/marker", data=marker * 64)]), ["t:1"])
    tampered = signed_image(world / "signed-tamper", with_unique_layer)
    data = bytearray((tampered / "image.tar").read_bytes())
    data[data.index(marker) + 5] ^= 0x01  # inside the layer's file data: the tar still parses
    (folder / "tampered.tar").write_bytes(bytes(data))
    shutil.copy(tampered / "image.tar.sigstore.json", folder / "tampered.tar.sigstore.json")
    (folder / "policy-tamper.yaml").write_text(
        (tampered / "policy.yaml").read_text().replace("team.pub", "../signed-tamper/team.pub")
    )
    shutil.copy(folder / "image.tar", folder / "unsigned.tar")
    for item in folder.iterdir():
        item.chmod(0o600 if item.suffix == ".key" else 0o644)
    folder.chmod(0o755)
    return folder


def test_a_signed_image_runs_under_strict(sandbox, signed: Path) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("id -u", policy="signed/policy.yaml", image="signed/image.tar")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1000" and "pysandbox: verified sha256:" in result.stderr


@pytest.mark.parametrize(
    ("image", "policy", "words"),
    [
        ("signed/unsigned.tar", "signed/policy.yaml", "is not signed"),
        ("signed/tampered.tar", "signed/policy-tamper.yaml", "layer"),
    ],
)
def test_unsigned_and_tampered_images_are_refused(sandbox, signed: Path, image: str, policy: str, words: str) -> None:  # type: ignore[no-untyped-def]
    cache_before = _cached_images(sandbox)
    result = sandbox("echo SHOULD-NOT-RUN", policy=policy, image=image)
    assert result.returncode == 125 and "SHOULD-NOT-RUN" not in result.stdout
    assert words in result.stderr.lower(), result.stderr
    assert _cached_images(sandbox) == cache_before  # nothing of it was unpacked


def _cached_images(sandbox) -> set[str]:  # type: ignore[no-untyped-def]
    home = (
        Path("/var/lib/pysandbox")
        if sandbox.mode == "root"
        else Path(f"~{sandbox.user}").expanduser() / ".cache/pysandbox"
    )
    # What a layer unpacks to; not the lock files beside them (an uncompressed layer's digest is
    # known only at its end, after its lock was taken: the lock stays, the unpacked tree never lands).
    return {
        f"{kind}/{name}"
        for kind in ("layers", "images")
        if (home / kind).is_dir()
        for name in os.listdir(home / kind)
        if not name.endswith(".lock")
    }


def test_a_keyless_signed_image_from_a_private_root_runs(sandbox, world: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The whole keyless chain offline: a Fulcio-style certificate, an embedded SCT and a log
    entry with its inclusion proof, from the tests' own trust root, verified by sigstore."""
    from pysbx.images import open_image
    from pysbx.signing.sign import image_reference, write_bundle_file
    from tests.signing.privateroot import GITHUB_WORKFLOW, PrivateRoot

    folder = world / f"keyless-{sandbox.mode}"
    folder.mkdir(exist_ok=True)
    shutil.copy(world / "busybox-app.tar", folder / "image.tar")
    image = open_image(str(folder / "image.tar"))
    root = PrivateRoot()
    write_bundle_file(
        root.sign_keyless(str(image.manifest_digest), image_reference(image)), folder / "image.tar.sigstore.json"
    )
    root.write_trusted_root(folder / "trusted_root.json")
    identity = f"issuer: {GITHUB_WORKFLOW.issuer}, subject: {GITHUB_WORKFLOW.subject}"
    (folder / "policy.yaml").write_text(
        f"version: 1\nextends: strict\nsigning:\n  trusted_root: trusted_root.json\n  identities:\n    - {{{identity}}}\n"
    )
    (folder / "other.yaml").write_text(
        (folder / "policy.yaml").read_text().replace(GITHUB_WORKFLOW.subject, GITHUB_WORKFLOW.subject + "-other")
    )
    for item in [folder, *folder.iterdir()]:
        item.chmod(0o755 if item.is_dir() else 0o644)
    ran = sandbox("id -u", policy=f"{folder.name}/policy.yaml", image=f"{folder.name}/image.tar")
    assert ran.returncode == 0 and ran.stdout.strip() == "1000", ran.stderr
    assert f"signed by {GITHUB_WORKFLOW.subject}" in ran.stderr
    refused = sandbox("echo SHOULD-NOT-RUN", policy=f"{folder.name}/other.yaml", image=f"{folder.name}/image.tar")
    assert refused.returncode == 125 and "SHOULD-NOT-RUN" not in refused.stdout, refused.stderr

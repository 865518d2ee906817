"""`pysandbox run NAME` from the user's own store, as root and as an ordinary user: the name
runs the image it names now (a warm plan never runs the image a name used to name), a
signature attached in the store is what strict verifies, and a removed name is refused."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.conftest import PYSANDBOX
from tests.sandbox.harness import Sandbox, share, tool


@pytest.fixture
def name(sandbox: Sandbox) -> Iterator[str]:
    """A name no other test uses, removed from the store at the end."""
    chosen = f"localhost/pysbx-test-{secrets.token_hex(4)}:1"
    yield chosen
    for image in (chosen, "example/busybox-app.tar:1", "example/busybox-root.tar:1"):  # load_as loads these names
        tool(sandbox, "rmi", "-f", image)
    tool(sandbox, "image", "prune", "-f")


def run_named(
    sandbox: Sandbox, world: Path, image: str, script: str, policy: str = "strict-unsigned.yaml"
) -> tuple[int, str, str]:
    result = tool(sandbox, "run", "--rm", "--policy", str(world / policy), image, "sh", "-c", script)
    return result.returncode, result.stdout, result.stderr


def load_as(sandbox: Sandbox, archive: Path, name: str) -> None:
    loaded = tool(sandbox, "load", "-i", str(archive))
    assert loaded.returncode == 0, loaded.stderr
    source = loaded.stdout.split("Loaded image: ", 1)[1].split()[0]
    tagged = tool(sandbox, "tag", source, name)
    assert tagged.returncode == 0, tagged.stderr


def test_a_stored_name_runs_and_runs_warm_then_follows_the_name(sandbox: Sandbox, world: Path, name: str) -> None:
    load_as(sandbox, world / "busybox-app.tar", name)
    assert run_named(sandbox, world, name, "id -u")[:2] == (0, "1000\n")
    assert run_named(sandbox, world, name, "id -u")[:2] == (0, "1000\n")  # the warm path
    load_as(sandbox, world / "busybox-root.tar", name)  # the name moves to an image whose user is root
    assert run_named(sandbox, world, name, "id -u")[:2] == (0, "0\n")
    removed = tool(sandbox, "rmi", name)
    assert removed.returncode == 0, removed.stderr
    code, _, stderr = run_named(sandbox, world, name, "id -u")
    assert code == 125 and "no such image in the store" in stderr and "Traceback" not in stderr


def test_strict_runs_a_stored_image_only_with_its_signature_from_the_store(
    sandbox: Sandbox, world: Path, name: str
) -> None:
    keys = world / f"keys-{secrets.token_hex(4)}"  # a folder the test user reaches
    keys.mkdir()
    made = subprocess.run([PYSANDBOX, "keygen", "--no-password", "--output-key-prefix", str(keys / "team")])
    assert made.returncode == 0
    (keys / "policy.yaml").write_text("version: 1\nextends: strict\nsigning:\n  keys: [team.pub]\n")
    share(keys)
    load_as(sandbox, world / "busybox-app.tar", name)
    policy = str(keys / "policy.yaml")
    refused = tool(sandbox, "run", "--rm", "--policy", policy, name, "true")
    assert refused.returncode == 125 and "is not signed" in refused.stderr and name in refused.stderr
    (keys / "team.key").chmod(0o644)  # the test user signs with it too
    signed = tool(sandbox, "sign", name, "--key", str(keys / "team.key"))
    assert signed.returncode == 0 and "in the store" in signed.stdout, signed.stderr
    ran = tool(sandbox, "run", "--rm", "--policy", policy, name, "echo", "verified")
    assert (ran.returncode, ran.stdout) == (0, "verified\n"), ran.stderr


@pytest.fixture(scope="module")
def published(world: Path) -> Iterator[tuple[str, Path]]:
    """A registry on loopback holding busybox signed by a new key, pushed from a publisher's
    own storage; the key's policy (strict, trusting it) beside it. Yields (name, policy)."""
    from tests.images.registry_server import start_registry

    folder = world / f"registry-{secrets.token_hex(4)}"
    registry = start_registry(folder / "registry")
    storage = Path(tempfile.mkdtemp(prefix="pysbx-publisher-"))  # private, unlike `folder`, which is shared
    publisher = {**os.environ, "PYSANDBOX_STATE": str(storage)}
    name = f"{registry.host}/team/busybox:1"
    steps = [
        ["load", "-i", str(world / "busybox-app.tar")],
        ["tag", "example/busybox-app.tar:1", name],
        ["keygen", "--no-password", "--output-key-prefix", str(folder / "team")],
        ["sign", name, "--key", str(folder / "team.key")],
        ["push", name],
    ]
    for step in steps:
        done = subprocess.run([PYSANDBOX, *step], capture_output=True, text=True, env=publisher)
        assert done.returncode == 0, done.stderr
    (folder / "policy.yaml").write_text("version: 1\nextends: strict\nsigning:\n  keys: [team.pub]\n")
    share(folder)
    yield name, folder / "policy.yaml"
    registry.stop()
    shutil.rmtree(storage, ignore_errors=True)


def test_pull_then_run_strict_with_the_signature_from_the_registry(
    sandbox: Sandbox, published: tuple[str, Path]
) -> None:
    name, policy = published
    tool(sandbox, "rmi", "-f", name)
    pulled = tool(sandbox, "pull", "--policy", str(policy), name)
    assert pulled.returncode == 0 and pulled.stdout == f"{name}\n", pulled.stderr
    assert "Attached: 1 signature" in pulled.stderr
    try:
        ran = tool(sandbox, "run", "--rm", "--policy", str(policy), name, "echo", "verified")
        assert (ran.returncode, ran.stdout) == (0, "verified\n"), ran.stderr
    finally:
        tool(sandbox, "rmi", "-f", name)


def test_pull_under_a_policy_whose_key_did_not_sign_stores_nothing(
    sandbox: Sandbox, world: Path, published: tuple[str, Path]
) -> None:
    name, policy = published
    other = policy.with_name(f"other-{secrets.token_hex(4)}")
    other.mkdir()
    made = subprocess.run([PYSANDBOX, "keygen", "--no-password", "--output-key-prefix", str(other / "other")])
    assert made.returncode == 0
    (other / "policy.yaml").write_text("version: 1\nextends: strict\nsigning:\n  keys: [other.pub]\n")
    share(other)
    tool(sandbox, "rmi", "-f", name)
    refused = tool(sandbox, "pull", "--policy", str(other / "policy.yaml"), name)
    assert refused.returncode == 125 and "refused" in refused.stderr and "Traceback" not in refused.stderr
    assert name.split("/", 1)[1].split(":")[0] not in tool(sandbox, "images").stdout

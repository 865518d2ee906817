"""`pysandbox system reset` and `pysandbox unshare`: an ordinary user's layers belong in part
to their subordinate ids (test_image_owners), so `rm -rf` cannot delete the cache; reset does,
from a namespace like the containers', and refuses while a container runs. unshare runs a
command as the containers' root (podman unshare) and passes its exit status on."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.conftest import PYSANDBOX, as_user
from tests.sandbox.harness import (
    OWNERS,
    Sandbox,
    postgres_like,  # noqa: F401 - fixture
    subordinate_starts,
)

pytestmark = pytest.mark.usefixtures("postgres_like")


@pytest.fixture
def state(sandbox: Sandbox) -> Iterator[Path]:
    """A storage folder of the sandbox user's own, outside pytest's 0700 folders."""
    parent = Path(tempfile.mkdtemp(prefix="pysandbox-reset-"))
    parent.chmod(0o755)
    folder = parent / "state"
    folder.mkdir(mode=0o700)
    if sandbox.mode == "user" and os.geteuid() == 0:
        shutil.chown(folder, str(sandbox.user), str(sandbox.user))
    yield folder
    pysandbox_in(sandbox, folder, "system", "reset", "--force")
    shutil.rmtree(parent, ignore_errors=True)


def pysandbox_argv(sandbox: Sandbox, state: Path) -> list[str]:
    """`pysandbox` as the sandbox's user, with `state` as its storage."""
    env = ["env", f"PYSANDBOX_STATE={state}"]
    if sandbox.mode == "user":
        home = pwd.getpwnam(str(sandbox.user)).pw_dir
        return [*as_user(str(sandbox.user)), *env, f"HOME={home}", "XDG_RUNTIME_DIR=", PYSANDBOX]
    return [*env, PYSANDBOX]


def pysandbox_in(sandbox: Sandbox, state: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*pysandbox_argv(sandbox, state), *args], capture_output=True, text=True, cwd="/",
                          timeout=60, **kw)  # type: ignore[call-overload,no-any-return]  # fmt: skip


def run_owners_image(sandbox: Sandbox, world: Path, state: Path, image: Path) -> None:
    ran = pysandbox_in(sandbox, state, "run", "--rm", "--policy", str(world / "baseline-unsigned.yaml"), str(image),
                       "true")  # fmt: skip
    assert ran.returncode == 0, ran.stderr


@pytest.fixture
def owners_image(world: Path) -> Path:
    return world / OWNERS


def test_reset_removes_what_rm_cannot_and_asks_first(
    sandbox: Sandbox, world: Path, state: Path, owners_image: Path
) -> None:
    run_owners_image(sandbox, world, state, owners_image)
    layers = state / "layers"
    assert any(layers.iterdir())
    if sandbox.mode == "user":
        removed = subprocess.run(
            [*as_user(str(sandbox.user)), "rm", "-rf", str(layers)], capture_output=True, text=True
        )
        assert removed.returncode != 0 and "Permission denied" in removed.stderr  # why reset exists
    unanswered = pysandbox_in(sandbox, state, "system", "reset", stdin=subprocess.DEVNULL)
    assert unanswered.returncode == 1 and "nothing removed" in unanswered.stderr
    assert any(layers.iterdir())
    answered = pysandbox_in(sandbox, state, "system", "reset", input="y\n")
    assert answered.returncode == 0, answered.stderr
    assert not layers.exists() and not (state / "plans").exists()


def test_reset_refuses_while_a_container_runs(sandbox: Sandbox, world: Path, state: Path, owners_image: Path) -> None:
    running = subprocess.Popen([*pysandbox_argv(sandbox, state), "run", "--rm", "--policy", str(world / "baseline-unsigned.yaml"),
                                str(owners_image), "sh", "-c", "echo ready; sleep 30"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")  # fmt: skip
    try:
        assert running.stdout is not None and running.stdout.readline().strip() == "ready"
        refused = pysandbox_in(sandbox, state, "system", "reset", "--force")
        assert refused.returncode == 125 and "a container is running" in refused.stderr, refused.stderr
        assert any((state / "layers").iterdir())
    finally:
        running.kill()
        running.wait()


def test_unshare_runs_a_command_as_the_containers_root(
    sandbox: Sandbox, world: Path, state: Path, owners_image: Path
) -> None:
    if sandbox.mode == "root":
        refused = pysandbox_in(sandbox, state, "unshare", "true")
        assert refused.returncode == 125 and "for ordinary users" in refused.stderr
        return
    subordinate_starts(str(sandbox.user))
    run_owners_image(sandbox, world, state, owners_image)
    (home,) = state.glob("layers/*-ns-*/root/var/lib/postgresql")
    inside = pysandbox_in(sandbox, state, "unshare", "sh", "-c", f"stat -c %u:%g {home}/secret; id -u; exit 7")
    assert inside.returncode == 7 and inside.stdout.split() == ["100:102", "0"], inside.stderr
    missing = pysandbox_in(sandbox, state, "unshare", "/no/such/tool")
    assert missing.returncode == 127 and "/no/such/tool" in missing.stderr

"""The two engines the realworld tests run each workload on, as root and as an ordinary
user: pysandbox under a built-in policy (signatures not required: these images are built
here, unsigned), and podman 4 with runc beside it (PEERS.md's invocation: vfs storage,
cgroupfs, no network), with the flags that match the policy (strict: a read-only root, no
capabilities, no_new_privs)."""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.realworld.debian import image_reference
from tests.sandbox.conftest import PYSANDBOX, as_user

PODMAN = ["podman", "--storage-driver=vfs", "--cgroup-manager=cgroupfs", "--runtime=runc"]
# Root here lacks CAP_SYS_RESOURCE: runc cannot raise podman's default nofile/nproc limits.
PODMAN_ROOT_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
PODMAN_STRICT = ["--read-only", "--cap-drop=all", "--security-opt", "no-new-privileges"]


@dataclass(frozen=True)
class Engine:
    name: str  # "pysandbox" or "podman"
    mode: str  # "root" or "user"
    user: str | None
    policies: Path  # baseline.yaml and strict.yaml, unsigned, readable by the user

    def run(
        self, archive: Path, recipe: str, script: str, flags: tuple[str, ...] = (), policy: str = "baseline"
    ) -> subprocess.CompletedProcess[str]:
        """`bash -c SCRIPT` in the image, with Docker-style `flags`."""
        if self.name == "pysandbox":
            argv = [*self._prefix(), PYSANDBOX, "run", "--rm", "--policy", str(self.policies / f"{policy}.yaml"),
                    *flags, str(archive), "bash", "-c", script]  # fmt: skip
        else:
            self._load(archive, recipe)
            extra = (PODMAN_ROOT_LIMITS if self.mode == "root" else []) + (PODMAN_STRICT if policy == "strict" else [])
            argv = [*self._prefix(), *PODMAN, "run", "--rm", "--network=none", *extra, *flags,
                    image_reference(recipe), "bash", "-c", script]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=600, stdin=subprocess.DEVNULL)

    def _prefix(self) -> list[str]:
        if self.mode == "root":
            return []
        assert self.user is not None
        home = pwd.getpwnam(self.user).pw_dir
        return [*as_user(self.user), "env", "-u", "XDG_RUNTIME_DIR", f"HOME={home}"]

    def _load(self, archive: Path, recipe: str) -> None:
        exists = subprocess.run([*self._prefix(), *PODMAN, "image", "exists", image_reference(recipe)], cwd="/")
        if exists.returncode != 0:
            loaded = subprocess.run([*self._prefix(), *PODMAN, "load", "-q", "-i", str(archive)],
                                    capture_output=True, text=True, cwd="/", timeout=600)  # fmt: skip
            assert loaded.returncode == 0, loaded.stderr


@functools.cache
def podman_works(mode: str, user: str | None, archive: str, recipe: str) -> str | None:
    """None when podman runs `true` in the image this way here, else why not."""
    if shutil.which("podman") is None:
        return "podman is not installed"
    if mode == "root" and os.geteuid() != 0:
        return "root mode needs root"
    engine = Engine("podman", mode, user, Path("/"))
    try:
        probe = engine.run(Path(archive), recipe, "true")
    except AssertionError as error:
        return f"podman cannot load the image: {error}"
    return None if probe.returncode == 0 else f"podman cannot run here: {probe.stderr.strip()[-300:]}"


def podman_engine(mode: str, user: str | None, policies: Path, archive: Path, recipe: str) -> Engine:
    why = podman_works(mode, user, str(archive), recipe)
    if why is not None:
        pytest.skip(why)
    return Engine("podman", mode, user, policies)

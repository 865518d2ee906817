"""`pysandbox prune` judges staleness by the owner's pid and start time, and leaves alone
what a live run or a running unpack still uses."""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from pysbx.sandbox.procfs import start_time
from pysbx.sandbox.prune import prune
from pysbx.sandbox.state import OWNER_FILE, container_dir, state_bases


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "")  # as root, /run/pysandbox is looked at too: not here
    monkeypatch.setattr("pysbx.sandbox.prune.state_bases", lambda cache: [f"{cache}/containers"])
    for judge in ("stale_cgroups", "frozen_cgroups"):  # the host's are not ours to judge here
        monkeypatch.setattr(f"pysbx.sandbox.prune.{judge}", lambda live: iter(()))
    (tmp_path / "containers").mkdir()
    return tmp_path


def container(cache: Path, name: str, owner: str | None) -> Path:
    folder = cache / "containers" / f"{name}-{os.urandom(4).hex()}"  # as sandbox.state.container_dir names it
    (folder / "writable" / "work" / "work").mkdir(parents=True)
    (folder / "writable" / "work" / "work").chmod(0)  # as overlayfs leaves it
    if owner is not None:
        (folder / OWNER_FILE).write_text(owner)
    return folder


def test_a_state_folder_whose_owner_is_gone_is_removed_and_a_live_ones_kept(cache: Path) -> None:
    live = container(cache, "live", f"{os.getpid()} {start_time(os.getpid())}\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = container(cache, "gone", f"{dead.pid} 1\n")
    reused = container(cache, "reused", f"{os.getpid()} 1\n")  # our pid, another start time
    assert [item.path for item in prune(cache, dry_run=True)] == [gone, reused]
    assert gone.exists() and reused.exists()
    removed = prune(cache)
    assert [(item.path, item.error) for item in removed] == [(gone, None), (reused, None)]
    assert not gone.exists() and not reused.exists() and live.exists()


def test_a_new_state_folder_records_its_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYSANDBOX_STATE", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/not/used")  # never the current folder
    folder = Path(container_dir("app"))
    try:
        assert str(folder.parent) in state_bases(str(tmp_path)) and folder.name.startswith("app-")
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
        assert (folder / OWNER_FILE).read_text() == f"{os.getpid()} {start_time(os.getpid())}\n"
        assert folder not in [item.path for item in prune(tmp_path, dry_run=True)]
    finally:
        shutil.rmtree(folder)


def test_a_young_state_folder_without_an_owner_is_kept(cache: Path) -> None:
    young = container(cache, "young", None)
    assert prune(cache) == [] and young.exists()


def test_an_empty_state_folder_goes_after_seconds_not_minutes(cache: Path) -> None:
    """A run killed between the folder's mkdir and its owner file (found by the stress test)."""
    from pysbx.sandbox.prune import EMPTY_GRACE_SECONDS

    empty, fresh = cache / "containers" / "killed-0badf00d", cache / "containers" / "starting-0badf00d"
    empty.mkdir()
    fresh.mkdir()
    then = os.stat(empty).st_mtime - EMPTY_GRACE_SECONDS - 1
    os.utime(empty, (then, then))
    kept_with_content = container(cache, "busy", None)
    os.utime(kept_with_content, (then, then))
    assert [item.path for item in prune(cache)] == [empty]
    assert fresh.exists() and kept_with_content.exists()


def test_staging_folders_are_removed_unless_an_unpack_holds_a_lock(cache: Path) -> None:
    layers = cache / "layers"
    (layers / ".unpack-abc" / "root").mkdir(parents=True)
    lock = os.open(layers / "key.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert prune(cache) == [] and (layers / ".unpack-abc").exists()  # an unpack is running
    finally:
        os.close(lock)
    assert [item.kind for item in prune(cache)] == ["staging"]
    assert not (layers / ".unpack-abc").exists()


def test_prune_as_a_user_removes_files_of_the_containers_other_users(world: Path, test_user: str) -> None:
    """A run without --rm leaves its writable layer; files a container user other than root
    wrote there belong to a subordinate id, which the user can only delete from inside a
    user namespace: prune does that."""
    from tests.sandbox.conftest import command

    name = f"prune-{os.getpid()}"
    script = "mkdir -p /data/deep && echo x > /data/deep/f && chown -R 1000:1000 /data && chmod 700 /data/deep /data"
    args = ["--name", name, "--policy", str(world / "baseline-unsigned.yaml"), str(world / "busybox-root.tar")]
    ran = subprocess.run(
        command("user", [*args, "sh", "-c", script], test_user), capture_output=True, text=True, cwd="/"
    )
    assert ran.returncode == 0, ran.stderr
    home = Path(pwd.getpwnam(test_user).pw_dir)
    left = [p for p in (home / ".cache/pysandbox/containers").iterdir() if p.name.startswith(name)]
    assert len(left) == 1
    prune_argv = [*command("user", [], test_user)[:-1], "prune"]
    pruned = subprocess.run(prune_argv, capture_output=True, text=True, cwd="/")
    assert pruned.returncode == 0 and f"removed container {left[0]}" in pruned.stdout, pruned.stdout + pruned.stderr
    assert not left[0].exists()


def test_a_name_claimed_for_a_folder_that_is_gone_is_released(cache: Path) -> None:
    """A `run -d` killed between its name claim and its monitor's start (found by the stress test)."""
    names = cache / "names"
    names.mkdir()
    live = container(cache, "held", f"{os.getpid()} {start_time(os.getpid())}\n")
    (names / "held").write_text(str(live))
    (names / "orphan").write_text(str(cache / "containers" / "orphan-0badf00d"))
    assert [(item.kind, item.path) for item in prune(cache)] == [("name", names / "orphan")]
    assert (names / "held").exists() and not (names / "orphan").exists()


def test_staging_is_judged_in_a_cache_with_more_layers_than_descriptors(tmp_path: Path) -> None:
    """Every layer's lock is held while staging folders are judged: with more layers than the
    soft descriptor limit (1024), prune failed with EMFILE (found by CI, in a user's cache of
    about a thousand layers). It raises its limit towards the hard one."""
    import sys

    layers = tmp_path / "layers"
    layers.mkdir()
    for number in range(1100):
        (layers / f"{number:04d}.lock").touch()
    (layers / ".unpack-stale").mkdir()
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "from pathlib import Path\n"
        "from pysbx.sandbox.prune import stale_staging\n"
        "print([item.kind for item in stale_staging(Path(sys.argv[1]), False)])\n"
    )
    ran = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "['staging']" and not (layers / ".unpack-stale").exists()

"""Faults and load, as root and as an ordinary user: pysandbox killed during a run and
during an unpack, a disk that fills up during an unpack, a hundred runs in a row, and ten
runs of a new image at once. Each leaves the host and the cache as it found them (or
`pysandbox prune` removes what a killed run left, and says so)."""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysbx.images import open_image
from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive
from pysbx.sandbox.rootfs import LayerOwners, image_lowers
from tests.imagekit import T, make_tar, snapshot
from tests.sandbox.conftest import PYSANDBOX, command
from tests.sandbox.harness import (
    Sandbox,
    leftovers,
    monitor_pid,
    processes_with,
    share,
    signed_image,
    start_until_ready,
    tool,
    wait_until,
)

BIG_LAYER_MIB = 32


@pytest.fixture(scope="session")
def big_image(world: Path) -> Path:
    """busybox plus a layer of incompressible data, so that unpacking it takes a while and
    does not fit on a 20 MiB disk; beside it, busybox-base.tar: the same first layer alone."""
    base = NewLayer(tar_from_directory(world / "rootfs"), "gzip", "COPY rootfs /")
    noise = random.Random(7).randbytes(BIG_LAYER_MIB << 20)
    config: dict[str, object] = {"User": "1000:1000", "Env": ["PATH=/bin"]}
    write_docker_archive(world / "busybox-base.tar", NewImage([base], config), ["example/base:1"])
    layers = [base, NewLayer(make_tar([T("data", "dir"), T("data/noise", data=noise)]), "none", "COPY noise /data")]
    write_docker_archive(world / "busybox-big.tar", NewImage(layers, config), ["example/big:1"])
    share(world)
    return world / "busybox-big.tar"


@pytest.fixture
def fresh_state(sandbox: Sandbox) -> Iterator[Path]:
    """An empty PYSANDBOX_STATE owned by the mode's user: every image is new to it."""
    folder = Path(tempfile.mkdtemp(prefix="pysandbox-state-"))
    _own(folder, sandbox)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _own(folder: Path, sandbox: Sandbox) -> None:
    if sandbox.user is not None:
        entry = pwd.getpwnam(sandbox.user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    folder.chmod(0o755)


def run_argv(sandbox: Sandbox, args: list[str], state: Path | None = None) -> list[str]:
    """`pysandbox run ARGS` as the mode's user, with PYSANDBOX_STATE=`state` when given."""
    argv = command(sandbox.mode, args, sandbox.user)
    if state is not None:
        at = argv.index(PYSANDBOX)
        argv[at:at] = ["env", f"PYSANDBOX_STATE={state}"]
    return argv


def strict_run(sandbox: Sandbox, world: Path, image: Path, script: str, *flags: str) -> list[str]:
    policy = str(world / "strict-unsigned.yaml")
    return ["--rm", "--policy", policy, *flags, str(image), "sh", "-c", script]


def cache_entries(state: Path) -> dict[str, object]:
    """The layer and image caches, byte for byte; lock files aside (a run that fails may
    leave the empty lock file of the layer it tried)."""
    found: dict[str, object] = {}
    for part in ("layers", "images"):
        if (state / part).is_dir():
            found |= {f"{part}/{k}": v for k, v in snapshot(state / part).items() if not k.endswith(".lock")}
    return found


# ----- kill -9 -----------------------------------------------------------------------------


def test_after_kill_9_during_a_run_the_next_run_works_and_the_volume_kept_its_data(
    sandbox: Sandbox, world: Path
) -> None:
    volume = f"faults-{os.getpid()}-{sandbox.mode}"
    flags = ["-u", "0", "-v", f"{volume}:/data"]
    try:
        wrote = sandbox(*flags, "echo kept > /data/f", policy="volumes-allowed.yaml", image="busybox-root.tar")
        assert wrote.returncode == 0, wrote.stderr
        script = f"echo more >> /data/f; echo ready; sleep 60 # {volume}"
        process, monitor = start_until_ready(
            sandbox, world, script, flags=("--rm", *flags), policy="volumes-allowed.yaml", image="busybox-root.tar"
        )
        os.kill(monitor, signal.SIGKILL)
        process.communicate(timeout=20)
        assert wait_until(lambda: not processes_with(volume))
        read = sandbox(*flags, "cat /data/f", policy="volumes-allowed.yaml", image="busybox-root.tar")
        assert read.returncode == 0 and read.stdout.split() == ["kept", "more"], read.stdout + read.stderr
    finally:
        tool(sandbox, "volume", "rm", volume)
        tool(sandbox, "prune")


def test_after_kill_9_during_unpack_the_next_run_works_and_prune_removes_the_staging(
    sandbox: Sandbox, world: Path, big_image: Path, fresh_state: Path
) -> None:
    argv = run_argv(sandbox, strict_run(sandbox, world, big_image, "wc -c < /data/noise"), fresh_state)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")

    def staging() -> list[Path]:
        return [*fresh_state.glob("layers/.unpack-*"), *fresh_state.glob("images/.unpack-*")]

    assert wait_until(staging, seconds=20), "no unpack seen"
    monitor = monitor_pid(sandbox, process.pid)
    os.kill(monitor, signal.SIGKILL)
    process.communicate(timeout=20)
    pruned = subprocess.run(
        [*run_argv(sandbox, [], fresh_state)[:-1], "prune"], capture_output=True, text=True, cwd="/"
    )
    assert pruned.returncode == 0 and "removed staging" in pruned.stdout, pruned.stdout + pruned.stderr
    assert not staging()
    again = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=60)
    assert again.returncode == 0 and again.stdout.strip() == str(BIG_LAYER_MIB << 20), again.stderr


# ----- a full disk -------------------------------------------------------------------------


@pytest.fixture
def small_disk(sandbox: Sandbox) -> Iterator[Path]:
    """A 20 MiB tmpfs owned by the mode's user, as its PYSANDBOX_STATE."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    folder = Path(tempfile.mkdtemp(prefix="pysandbox-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(folder)], check=True)
    try:
        _own(folder, sandbox)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


def test_a_full_disk_during_unpack_is_a_clear_error_and_leaves_the_cache_unchanged(
    sandbox: Sandbox, world: Path, big_image: Path, small_disk: Path
) -> None:
    # the base layer is cached by a first run; the big image shares it and adds one that does not fit
    small = run_argv(sandbox, strict_run(sandbox, world, world / "busybox-base.tar", "echo small"), small_disk)
    assert subprocess.run(small, capture_output=True, text=True, cwd="/").stdout.strip() == "small"
    before = cache_entries(small_disk)
    big = run_argv(sandbox, strict_run(sandbox, world, big_image, "echo big"), small_disk)
    failed = subprocess.run(big, capture_output=True, text=True, cwd="/", timeout=60)
    assert failed.returncode == 125, failed.stdout + failed.stderr
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("pysandbox: error: ") and "No space left on device" in error, failed.stderr
    assert "Traceback" not in failed.stderr
    assert cache_entries(small_disk) == before
    assert subprocess.run(small, capture_output=True, text=True, cwd="/").stdout.strip() == "small"


# ----- load --------------------------------------------------------------------------------

RUNS = 100


def test_a_hundred_runs_in_a_row_leave_nothing_behind(sandbox: Sandbox, world: Path, fresh_state: Path) -> None:
    marker = f"seq-{os.getpid()}-{sandbox.mode}"
    image = world / "busybox-app.tar"
    first = run_argv(sandbox, strict_run(sandbox, world, image, "true", "--name", f"{marker}-warmup"), fresh_state)
    assert subprocess.run(first, capture_output=True, cwd="/").returncode == 0  # unpacked and planned: warm from now
    before = leftovers(sandbox, fresh_state, marker)
    for number in range(RUNS):
        args = strict_run(sandbox, world, image, f"echo {number} # {marker}", "--name", f"{marker}-{number}")
        done = subprocess.run(run_argv(sandbox, args, fresh_state), capture_output=True, text=True, cwd="/")
        assert done.returncode == 0 and done.stdout.strip() == str(number), done.stderr
    assert wait_until(lambda: leftovers(sandbox, fresh_state, marker) == before, seconds=3)
    assert leftovers(sandbox, fresh_state, marker) == before


def test_ten_runs_of_a_new_image_at_once_unpack_each_layer_once(
    sandbox: Sandbox, world: Path, fresh_state: Path
) -> None:
    image = world / "busybox-app.tar"
    argv = run_argv(sandbox, strict_run(sandbox, world, image, "cat /etc/kept"), fresh_state)
    runs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/") for _ in range(10)
    ]
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]
    assert all(code == 0 and out.strip() == "kept" for code, out, _ in results), results
    layers = fresh_state / "layers"
    unpacked = [entry for entry in layers.iterdir() if entry.is_dir() and not entry.name.startswith(".")]
    assert len(unpacked) == 3, sorted(entry.name for entry in layers.iterdir())  # the image has three layers
    assert all(sorted(os.listdir(entry)) == ["root", "tree.sha256"] for entry in unpacked)
    assert not list(layers.glob(".unpack-*")) and not (fresh_state / "images").exists()


def test_after_kill_9_during_verification_or_unpack_the_next_run_works_and_the_cache_verifies(
    sandbox: Sandbox, world: Path, fresh_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed at moments spread over a cold signed run (verifying, unpacking, starting): the
    next run works, and every cached layer is exactly what unpacking it afresh gives."""
    folder = signed_image(world / f"kill-signed-{sandbox.mode}", world / "busybox-app.tar")
    argv = run_argv(
        sandbox, ["--rm", "--policy", str(folder / "policy.yaml"), str(folder / "image.tar"), "true"], fresh_state
    )
    for delay in (0.05, 0.15, 0.25, 0.35, 0.5, 0.7):
        process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/", start_new_session=True
        )
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # pysandbox (under runuser in user mode) with it
        process.wait(timeout=20)
    again = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=60)
    assert again.returncode == 0, again.stderr
    # A kill that came while the container ran left its state folder and cgroup: prune them.
    prune = [*run_argv(sandbox, [], fresh_state)[:-1], "prune"]
    assert subprocess.run(prune, capture_output=True, cwd="/").returncode == 0
    left = subprocess.run([*prune, "--dry-run"], capture_output=True, text=True, cwd="/").stdout
    assert "would remove" not in left, left
    monkeypatch.setenv("PYSANDBOX_STATE", str(tmp_path / "reference"))
    image_lowers(open_image(str(folder / "image.tar")), LayerOwners())
    reference, cached = (layer_roots(state / "layers") for state in (tmp_path / "reference", fresh_state))
    assert cached.keys() == reference.keys()  # every layer, and nothing half-written
    for key, root in cached.items():
        assert snapshot(root) == snapshot(reference[key]), f"cached layer {key} differs from a fresh unpack"


def layer_roots(layers: Path) -> dict[str, Path]:
    """Each cached layer's tree by chain key (the id offset in the name aside)."""
    return {p.name.split("-")[0]: p / "root" for p in layers.iterdir() if p.is_dir() and not p.name.startswith(".")}

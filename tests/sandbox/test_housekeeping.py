"""`system prune` and `system df`, as root and as an ordinary user, each in storage of its own:
nothing a running container uses goes (its layers, its volume), whatever started it, and
what nothing uses goes, freeing what the report says."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.harness import Sandbox, tool_argv


@pytest.fixture
def state(sandbox: Sandbox) -> Iterator[Path]:
    """Storage of the test's own (PYSANDBOX_STATE), the sandbox user's."""
    folder = Path(tempfile.mkdtemp(prefix="pysbx-housekeeping-"))
    if sandbox.user is not None and os.geteuid() == 0:
        entry = pwd.getpwnam(sandbox.user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    yield folder
    subprocess.run([*with_state(tool_argv(sandbox), folder), "system", "reset", "-f"], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def with_state(argv: list[str], state: Path) -> list[str]:
    """`argv` (pysandbox, maybe under runuser and env) with PYSANDBOX_STATE set for it."""
    at = argv.index("--") + 1 if "--" in argv else 0
    return [*argv[:at], "env", f"PYSANDBOX_STATE={state}", *argv[at:]]


def pysandbox(sandbox: Sandbox, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*with_state(tool_argv(sandbox), state), *args], capture_output=True, text=True, cwd="/", timeout=120
    )


def layer_folders(state: Path) -> list[str]:
    return (
        sorted(entry.name for entry in (state / "layers").iterdir() if entry.is_dir())
        if (state / "layers").is_dir()
        else []
    )


def test_prune_spares_a_running_containers_layers_and_volume_and_frees_them_after(
    sandbox: Sandbox, world: Path, state: Path
) -> None:
    loaded = pysandbox(sandbox, state, "load", "-i", str(world / "busybox-app.tar"))
    assert loaded.returncode == 0, loaded.stderr
    script = "echo ready; read go; cat /etc/kept; test -d /data && echo volume"
    running = subprocess.Popen(
        [*with_state(tool_argv(sandbox), state), "run", "--rm", "-i", "--policy", str(world / "volumes-allowed.yaml"),
         "-v", "work:/data", "example/busybox-app.tar:1", "sh", "-c", script],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
    )  # fmt: skip
    try:
        assert running.stdout is not None and running.stdout.readline() == "ready\n"
        in_use = layer_folders(state)
        assert in_use
        pruned = pysandbox(sandbox, state, "system", "prune", "-a", "--volumes", "-f")
        assert pruned.returncode == 0, pruned.stderr
        assert "Deleted image" not in pruned.stdout  # a foreground run uses it: no record says so, its layer locks do
        assert layer_folders(state) == in_use and (state / "volumes" / "work").is_dir()
        out, err = running.communicate("go\n", timeout=60)
    finally:
        running.kill()
    assert (running.returncode, out) == (0, "kept\nvolume\n"), err
    usage = pysandbox(sandbox, state, "system", "df").stdout
    assert "Layer cache" in usage and "Local Volumes   1" in usage
    pruned = pysandbox(sandbox, state, "system", "prune", "-a", "--volumes", "-f")
    assert pruned.returncode == 0, pruned.stderr
    assert f"Deleted layer cache: {len(in_use)} layers" in pruned.stdout and "Deleted volume: work" in pruned.stdout
    assert "Deleted image: docker.io/example/busybox-app.tar:1" in pruned.stdout
    assert not pruned.stdout.endswith("Total reclaimed space: 0B\n")
    assert layer_folders(state) == [] and not (state / "volumes" / "work").exists()
    emptied = pysandbox(sandbox, state, "system", "df").stdout.splitlines()
    assert [line.split()[1:3] for line in emptied[1:]] == [["0", "0"], ["0", "0"], ["Volumes", "0"], ["cache", "0"]]


def test_prune_without_all_keeps_named_images_and_their_layers(sandbox: Sandbox, world: Path, state: Path) -> None:
    assert pysandbox(sandbox, state, "load", "-i", str(world / "busybox-app.tar")).returncode == 0
    ran = pysandbox(
        sandbox,
        state,
        "run",
        "--rm",
        "--policy",
        str(world / "strict-unsigned.yaml"),
        "example/busybox-app.tar:1",
        "true",
    )
    assert ran.returncode == 0, ran.stderr
    before = layer_folders(state)
    pruned = pysandbox(sandbox, state, "system", "prune", "-f")
    assert pruned.returncode == 0 and "Deleted image" not in pruned.stdout, pruned.stdout + pruned.stderr
    assert layer_folders(state) == before
    assert pysandbox(sandbox, state, "images", "-q").stdout.strip() != ""


def test_a_layer_that_cannot_be_held_refuses_the_run_in_one_line(sandbox: Sandbox, world: Path, state: Path) -> None:
    """What a prune that won the race leaves (or a damaged cache): the run, detached or not,
    stops at once with the layer named, instead of mounting half of it or hanging `run -d`."""
    policy = str(world / "strict-unsigned.yaml")
    first = pysandbox(sandbox, state, "run", "--rm", "--policy", policy, str(world / "busybox-app.tar"), "true")
    assert first.returncode == 0, first.stderr
    key = layer_folders(state)[0]
    use = state / "layers" / f"{key}.use"
    use.unlink(missing_ok=True)
    use.mkdir()  # a lock file that cannot be opened for writing
    for detached in ([], ["-d"]):
        refused = pysandbox(
            sandbox, state, "run", *detached, "--rm", "--policy", policy, str(world / "busybox-app.tar"), "true"
        )
        assert refused.returncode == 125 and f"{key}.use" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    use.rmdir()

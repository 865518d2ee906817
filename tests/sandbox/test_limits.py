"""Limits enforced for real: by a cgroup where this host lets the invoking user make one
(root on this v1 host), by rlimits otherwise; the plan says which, and the cgroup goes away
with the container."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pysbx.sandbox import cgroups
from tests.sandbox.conftest import as_user, command
from tests.sandbox.harness import attack_image  # noqa: F401 - fixture

MEMORY_HOG = "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo hog=$?"


def expected_mechanism(mode: str, user: str | None, limit: str) -> str:
    """What this host offers the user the mode runs as (asked in a process of that user)."""
    probe = f"from pysbx.sandbox import cgroups; print(cgroups.mechanisms({{{limit!r}}}).get({limit!r}, 'none'))"
    argv = [sys.executable, "-c", probe]
    if mode == "user":
        argv = [*as_user(str(user)), *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=True, cwd="/").stdout.strip()


def test_a_memory_hog_stops_at_the_memory_limit(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("--memory", "32m", MEMORY_HOG + "; dd if=/dev/zero of=/dev/null bs=4M count=1 && echo small-ok")
    assert result.returncode == 0, result.stderr
    hog = next(line for line in result.stdout.splitlines() if line.startswith("hog="))
    # OOM-killed by the cgroup (137), or refused its allocation under RLIMIT_DATA (1)
    assert hog in ("hog=137", "hog=1"), result.stdout
    assert "small-ok" in result.stdout  # and the container goes on


def test_the_plan_names_the_mechanism_of_each_limit(sandbox, world: Path) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("--dry-run", "--memory", "64m", "--cpus", "0.5", "true")
    assert result.returncode == 0, result.stderr
    memory = expected_mechanism(sandbox.mode, sandbox.user, "memory")
    cpus = expected_mechanism(sandbox.mode, sandbox.user, "cpus")
    lines = {line.split("=")[0].split()[-1]: line for line in result.stdout.splitlines() if line.startswith("limit:")}
    assert ("via RLIMIT_DATA" if memory == "none" else f"via {memory}") in lines["memory"], lines
    assert ("not enforced" if cpus == "none" else f"via {cpus}") in lines["cpus"], lines


def test_a_cgroup_carries_the_limits_and_goes_with_the_container(world: Path) -> None:
    parents = cgroups.v1_parents({"cpu", "memory", "pids"})
    if len(parents) < 3 and cgroups.v2_parent({"cpu", "memory", "pids"}) is None:
        pytest.skip("no writable cgroup hierarchy for this user here")
    before = {p: set(Path(p).iterdir()) for p in parents.values()}
    args = ["--rm", "--policy", str(world / "strict-unsigned.yaml"), "--memory", "64m", "--cpus", "0.5"]
    args += ["--pids-limit", "40", str(world / "busybox-app.tar"), "sh", "-c", "echo ready; sleep 30"]
    process = subprocess.Popen(command("root", args, None), stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        made = {name: set(Path(p).iterdir()) - before[p] for name, p in parents.items()}
        assert all(len(folders) == 1 for folders in made.values()), made
        (memory,), (cpu,), (pids,) = made["memory"], made["cpu"], made["pids"]
        assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (pids / "pids.max").read_text().strip() == "40"
        assert len((pids / "cgroup.procs").read_text().split()) >= 3  # setup, init, sh (and sleep)
    finally:
        process.terminate()  # forwarded to the container; the monitor then removes the cgroup
        process.wait(timeout=20)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(set(Path(p).iterdir()) != before[p] for p in parents.values()):
        time.sleep(0.05)
    assert all(set(Path(p).iterdir()) == before[p] for p in parents.values())


def test_a_disk_filler_stops_at_the_writable_layer_cap(sandbox, world: Path) -> None:  # type: ignore[no-untyped-def]
    policy = world / "writable-capped.yaml"
    policy.write_text(
        (world / "strict-unsigned.yaml")
        .read_text()
        .replace("    read_only_rootfs: true", "    read_only_rootfs: false")
        .replace("    writable_size: 256Mi", "    writable_size: 8Mi")
    )
    policy.chmod(0o644)
    fill = "dd if=/dev/zero of=/big bs=1M count=32 2>&1; echo rc=$?; du -k /big"
    result = sandbox(fill, policy=policy.name, image="busybox-root.tar")
    assert "No space left on device" in result.stdout and "rc=1" in result.stdout, result.stdout + result.stderr
    assert int(result.stdout.split()[-2]) <= 8 * 1024
    again = sandbox("echo small > /small && cat /small", policy=policy.name, image="busybox-root.tar")
    assert again.stdout.strip() == "small", again.stderr


def test_the_container_sees_its_own_cgroups_read_only_and_no_host_ones(sandbox) -> None:  # type: ignore[no-untyped-def]
    """Java, Node and Go size themselves from /sys/fs/cgroup: the container's own cgroups
    are there, read-only, and no hierarchy where it has none (its root would be the host's)."""
    result = sandbox(
        "--memory",
        "64m",
        "ls /sys/fs/cgroup | tr '\\n' ' '; echo; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null;"
        "touch /sys/fs/cgroup/x 2>/dev/null && echo WRITABLE; ls /sys/fs/cgroup/memory 2>/dev/null | grep -c slice; true",
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and "WRITABLE" not in result.stdout, result.stdout + result.stderr
    if expected_mechanism(sandbox.mode, sandbox.user, "memory").startswith("cgroup v1"):
        assert lines[0].split() == ["memory", "pids"] and lines[1] == str(64 << 20), result.stdout
        assert lines[2] == "0"  # the container's own cgroup has no host services below it
    else:
        assert "cpu" not in lines[0].split() and "systemd" not in lines[0].split(), result.stdout


@pytest.mark.usefixtures("attack_image")
def test_a_memory_limit_lets_a_runtime_reserve_address_space_it_does_not_use(sandbox) -> None:  # type: ignore[no-untyped-def]
    """Node reserves its code range and Java its heap as PROT_NONE address space at start:
    under a 64 MiB limit, a 1 GiB reservation works (RLIMIT_AS refused it; RLIMIT_DATA and a
    memory cgroup count only memory in use), and a user-mode run says which rlimit enforces
    the limit."""
    result = sandbox("--memory", "64m", "/attack reserve 1024", image="busybox-attack.tar")
    assert result.returncode == 0 and "reserve=ok" in result.stdout, result.stdout + result.stderr
    if expected_mechanism(sandbox.mode, sandbox.user, "memory") == "none":
        assert "memory limit 67108864 enforced by RLIMIT_DATA" in result.stderr, result.stderr


def test_a_container_killed_for_memory_exits_137_and_says_so(sandbox) -> None:  # type: ignore[no-untyped-def]
    """The container's own process over the limit: 137 as Docker, and one line saying why."""
    if expected_mechanism(sandbox.mode, sandbox.user, "memory") == "none":
        pytest.skip("no memory cgroup for this user here: RLIMIT_DATA refuses the allocation instead")
    result = sandbox("--memory", "32m", "exec dd if=/dev/zero of=/dev/null bs=64M count=1")
    assert result.returncode == 137, result.stderr
    assert "pysandbox: the container was killed: it went over its memory limit (32Mi)" in result.stderr
    quiet = sandbox("--memory", "32m", "kill -9 $$")  # killed, but not for memory: no such line
    assert quiet.returncode == 137 and "memory limit" not in quiet.stderr

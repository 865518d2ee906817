"""`pysandbox run` for real: real namespaces, a real seccomp filter, the busybox image,
as root AND as an ordinary user (created here, run through runuser)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.sandbox.conftest import command
from tests.sandbox.harness import cmdline, root_container_base, start_until_ready, tool, wait_until


def status(text: str) -> dict[str, str]:
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines()) if value}


def test_strict_confines_the_process(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("cat /proc/self/status; cat /proc/self/uid_map")
    assert result.returncode == 0, result.stderr
    fields = status(result.stdout)
    assert (fields["CapEff"], fields["CapBnd"], fields["NoNewPrivs"], fields["Seccomp"]) == (
        "0000000000000000",
        "0000000000000000",
        "1",
        "2",
    )
    first_map = next(line.split() for line in result.stdout.splitlines() if line.split()[:1] == ["0"])
    assert first_map[1] != "0"  # container root is not host root
    expected_host = str(root_container_base()) if sandbox.mode == "root" else str(pwd.getpwnam(sandbox.user).pw_uid)
    assert first_map[1] == expected_host


def test_only_the_containers_processes_are_visible(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("ps -o pid,comm | tail -n +2")
    pids = [int(line.split()[0]) for line in result.stdout.splitlines()]
    assert pids[0] == 1 and len(pids) <= 4, result.stdout


@pytest.mark.parametrize(
    "attack",
    [
        "mount -t tmpfs none /mnt",
        "unshare -U true",
        "unshare -m true",
        "chroot / true",
    ],
)
def test_privileged_operations_fail(sandbox, attack: str) -> None:  # type: ignore[no-untyped-def]
    result = sandbox(f"{attack} 2>/dev/null && echo ESCAPED || echo refused")
    assert result.stdout.strip() == "refused"


def test_ptrace_and_keyctl_are_refused_by_the_filter(sandbox, world: Path) -> None:  # type: ignore[no-untyped-def]
    # busybox has no ptrace or keyctl applet: exercise the syscalls from a tiny static probe
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler for the probe")
    probe_src = world / "probe.c"
    probe_src.write_text(
        "#include <stdio.h>\n#include <errno.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n"
        "int main(void){long r1=syscall(SYS_ptrace,16,1,0,0);int e1=errno;long r2=syscall(SYS_keyctl,0,0,0,0,0);int e2=errno;"
        'printf("ptrace=%ld/%d keyctl=%ld/%d\\n",r1,e1,r2,e2);return 0;}\n'
    )
    probe = world / "probe"
    if not probe.exists():
        subprocess.run(["cc", "-static", "-O2", "-o", str(probe), str(probe_src)], check=True)
        probe.chmod(0o755)
    # strict plus one read-only bind of the probe's folder (strict itself allows none)
    run = sandbox("-v", f"{world}:/probe:ro", "/probe/probe", policy="strict-with-probe.yaml")
    assert "ptrace=-1/1 " in run.stdout and "keyctl=-1/1" in run.stdout, run.stdout + run.stderr


def test_only_loopback_exists_and_masked_paths_read_empty(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox(
        "ls /sys/class/net; cat /sys/class/net/lo/flags; wc -c < /proc/keys;"
        "echo x > /proc/sys/kernel/hostname 2>/dev/null || echo ro"
    )
    lines = result.stdout.split()
    # network none, as Docker's: nothing but lo, and lo is up (IFF_UP | IFF_LOOPBACK)
    assert lines == ["lo", "0x9", "0", "ro"], result.stdout


def test_root_is_read_only_and_tmp_is_writable(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("touch /x 2>/dev/null && echo root-writable; touch /tmp/y && echo tmp-writable")
    assert result.stdout.strip() == "tmp-writable"


def test_whiteouts_of_later_layers_apply(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("cat /etc/kept; test -e /etc/removed-later && echo present || echo absent")
    assert result.stdout.split() == ["kept", "absent"]


def test_a_write_in_one_rm_run_is_gone_in_the_next(sandbox) -> None:  # type: ignore[no-untyped-def]
    first = sandbox("echo data > /tmp/file && cat /tmp/file", policy="baseline-unsigned.yaml")
    assert first.stdout.strip() == "data", first.stderr
    second = sandbox("cat /tmp/file 2>&1 || true", policy="baseline-unsigned.yaml")
    assert "No such file" in second.stdout


def test_a_named_volume_survives_runs(sandbox) -> None:  # type: ignore[no-untyped-def]
    name = f"vol-{os.getpid()}-{sandbox.mode}"
    write = sandbox(
        "-v", f"{name}:/data", "echo kept > /data/f", policy="volumes-allowed.yaml", image="busybox-root.tar"
    )
    assert write.returncode == 0, write.stderr
    read = sandbox("-v", f"{name}:/data", "cat /data/f", policy="volumes-allowed.yaml", image="busybox-root.tar")
    assert read.stdout.strip() == "kept"
    prefix = command(sandbox.mode, [], sandbox.user)[:-1]  # the same user, `pysandbox` without `run`
    removed = subprocess.run([*prefix, "volume", "rm", name], capture_output=True, text=True, cwd="/")
    assert removed.returncode == 0, removed.stderr


def test_a_fork_bomb_stops_at_the_pids_limit(sandbox) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = sandbox("--pids-limit", "32", "while true; do sleep 30 & done", timeout=60)
    assert "Resource temporarily unavailable" in result.stderr and result.returncode != 0
    assert time.monotonic() - started < 20  # stopped by the limit, and the sleeps died with PID 1
    assert sandbox("echo next").stdout.strip() == "next"  # and the next container is unaffected


def test_zombies_are_reaped(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("(sh -c 'sleep 0.1 &' &); sleep 0.5; ps -o stat,comm | grep -c '^Z' || true")
    assert result.stdout.strip().splitlines()[-1] == "0"


def test_exit_codes_propagate(sandbox) -> None:  # type: ignore[no-untyped-def]
    assert sandbox("exit 3").returncode == 3
    assert sandbox("kill -9 $$").returncode == 137
    assert sandbox("/no/such/program").returncode == 127


def test_sigterm_reaches_the_process(sandbox, world: Path) -> None:  # type: ignore[no-untyped-def]
    process, target = start_until_ready(
        sandbox, world, "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done"
    )
    os.kill(target, signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert "got-term" in out and process.returncode == 42


def test_baseline_grants_dockers_default_capabilities(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("grep CapEff /proc/self/status", policy="baseline-unsigned.yaml", image="busybox-root.tar")
    assert status(result.stdout)["CapEff"] == "00000000a80425fb", result.stderr


def test_loosening_flags_are_refused_with_the_policy_line(sandbox, world: Path) -> None:  # type: ignore[no-untyped-def]
    for flags, words in (
        (["--privileged"], "--privileged is refused"),
        (["--pid", "host"], "--pid host is refused"),
        (["--network", "host"], "--network host is refused"),
        (["--cap-add", "SYS_ADMIN"], "--cap-add SYS_ADMIN is refused"),
        (["-v", "/:/host"], "-v /:/host is refused"),
        (["--security-opt", "seccomp=unconfined"], "--security-opt seccomp=unconfined is refused"),
    ):
        result = sandbox(*flags, "true")
        assert result.returncode == 125, flags
        assert words in result.stderr and "strict-unsigned.yaml:" in result.stderr, result.stderr


def test_the_host_is_unchanged_afterwards(sandbox, world: Path) -> None:  # type: ignore[no-untyped-def]
    def ours() -> tuple[int, list[str]]:
        mounts = Path("/proc/self/mountinfo").read_text().count("pysandbox")
        processes = [p for p in os.listdir("/proc") if p.isdigit() and str(world) in cmdline(p)]
        return mounts, processes

    before = ours()
    result = sandbox("sleep 30 & sleep 30 & echo started")
    assert result.stdout.strip() == "started"
    time.sleep(0.2)
    assert ours() == before  # no mount left on the host, and the sleeps died with the container


def test_killing_pysandbox_kills_the_whole_container(sandbox, world: Path) -> None:  # type: ignore[no-untyped-def]
    """Regression: setresuid in the setup process cleared its parent-death signal, so a
    container outlived a monitor killed with SIGKILL."""
    marker = f"marker-{os.getpid()}-{sandbox.mode}"
    process, target = start_until_ready(sandbox, world, f"echo ready; while true; do sleep 0.1; done # {marker}")
    os.kill(target, signal.SIGKILL)
    process.wait(timeout=20)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(marker in cmdline(p) for p in os.listdir("/proc") if p.isdigit()):
        time.sleep(0.1)
    assert not any(marker in cmdline(p) for p in os.listdir("/proc") if p.isdigit())
    assert tool(sandbox, "prune").returncode == 0  # the state folder and cgroup a SIGKILL leaves


def test_rm_removes_files_the_containers_other_users_wrote(sandbox, world: Path) -> None:  # type: ignore[no-untyped-def]
    """As an ordinary user, files of container uid 1000 belong to a subordinate id the user
    cannot delete; --rm must still leave no state behind."""
    name = f"rm-{os.getpid()}-{sandbox.mode}"
    script = "mkdir -p /data/deep && echo x > /data/deep/f && chown -R 1000:1000 /data && chmod 700 /data/deep /data"
    result = sandbox(
        "--name", name, script + " && ls -nd /data", policy="baseline-unsigned.yaml", image="busybox-root.tar"
    )
    assert " 1000 " in result.stdout, result.stdout + result.stderr
    home = Path(pwd.getpwnam(sandbox.user).pw_dir) if sandbox.mode == "user" else None
    places = [Path("/run/pysandbox")] if home is None else [home / ".cache/pysandbox/containers"]
    assert not [p for place in places if place.is_dir() for p in place.iterdir() if p.name.startswith(name)]


def test_a_setup_failure_names_the_path_it_concerns(sandbox) -> None:  # type: ignore[no-untyped-def]
    """strict's root is read-only: a missing -w folder cannot be made, and the error says where."""
    result = sandbox("-w", "/nonexistent/deep", "true")
    assert result.returncode == 125
    assert "pysandbox: error: /nonexistent: Read-only file system" in result.stderr, result.stderr


def test_the_command_starts_with_default_signal_dispositions_and_no_blocked_signal(sandbox) -> None:  # type: ignore[no-untyped-def]
    """Python ignores SIGPIPE and SIGXFSZ: without a reset, a pipeline's writer would spin on
    EPIPE forever instead of dying when its reader leaves (runc resets them too)."""
    result = sandbox(
        "grep -E 'SigIgn|SigBlk' /proc/self/status; sh -c 'while :; do echo x; done' | head -1", timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "SigIgn:\t0000000000000000" in result.stdout and "SigBlk:\t0000000000000000" in result.stdout, result.stdout
    assert result.stdout.rstrip().endswith("x")


def test_without_no_new_privs_in_the_policy_setuid_still_works_under_the_filter(sandbox) -> None:  # type: ignore[no-untyped-def]
    """baseline says no_new_privileges: false (Docker's default): the filter is loaded while
    the process may still do so without no_new_privs, so setuid programs keep working."""
    result = sandbox("grep -E 'NoNewPrivs|Seccomp:' /proc/self/status", policy="baseline-unsigned.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["NoNewPrivs:", "0", "Seccomp:", "2"], result.stdout


def test_a_relative_working_directory_is_refused_as_docker_does(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("-w", "relative/dir", "pwd")
    assert result.returncode == 125 and "needs to be an absolute path" in result.stderr, result.stderr


def test_a_name_in_use_by_a_running_container_is_refused(sandbox, world: Path) -> None:  # type: ignore[no-untyped-def]
    name = f"taken-{os.getpid()}-{sandbox.mode}"
    process, monitor = start_until_ready(sandbox, world, "echo ready; sleep 30", flags=("--rm", "--name", name))
    try:
        second = sandbox("--name", name, "true")
        assert second.returncode == 125 and f"the container name {name!r} is in use" in second.stderr, second.stderr
    finally:
        os.kill(monitor, signal.SIGTERM)  # forwarded: the container ends, pysandbox with it
        process.communicate(timeout=20)
    assert wait_until(lambda: sandbox("--name", name, "true").returncode == 0, seconds=20)  # free once it is gone


def test_a_new_named_volume_takes_the_images_content_and_keeps_its_own_after(sandbox) -> None:  # type: ignore[no-untyped-def]
    """Docker's and podman's behaviour: nginx finds its nginx.conf in a new volume over
    /etc/nginx. Owners and modes come along; `nocopy` leaves a new volume empty."""
    name, empty = f"fill-{os.getpid()}-{sandbox.mode}", f"nocopy-{os.getpid()}-{sandbox.mode}"
    try:
        first = sandbox("-v", f"{name}:/etc", "cat /etc/kept; stat -c '%u:%g %a' /etc/passwd; echo mine > /etc/added",
                        policy="volumes-allowed.yaml", image="busybox-root.tar")  # fmt: skip
        assert first.returncode == 0 and first.stdout.split() == ["kept", "0:0", "644"], first.stdout + first.stderr
        again = sandbox("-v", f"{name}:/etc", "cat /etc/added", policy="volumes-allowed.yaml", image="busybox-root.tar")
        assert again.stdout.strip() == "mine", again.stdout + again.stderr  # its own content, not the image's again
        bare = sandbox("-v", f"{empty}:/etc:nocopy", "ls -A /etc | wc -l", policy="volumes-allowed.yaml")
        assert bare.returncode == 0 and bare.stdout.strip() == "0", bare.stdout + bare.stderr
    finally:
        tool(sandbox, "volume", "rm", name, empty)

"""`pysandbox exec` into a detached container, as root and as an ordinary user: the new
process is confined exactly as the container's command (proved from inside: ids, CapEff,
NoNewPrivs, Seccomp, uid_map, cgroup, hostname), reaches no descriptor of the host, and the
classic exec escapes fail: a process in the container watching every new pid can neither
read the joining process's /proc/PID/exe (the host's interpreter: runc CVE-2019-5736) nor
ptrace it before its execve (CVE-2016-9962)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.harness import (
    Sandbox,
    attack_image,  # noqa: F401 - fixture
    strict_variant,
    tool,
    tool_argv,
)
from tests.sandbox.test_tty import run_on_terminal

pytestmark = pytest.mark.usefixtures("attack_image")
ATTACK = "busybox-attack.tar"  # made by the attack_image fixture
CONFINEMENT = (
    "id; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp)' /proc/self/status; cat /proc/self/uid_map; "
    "cat /proc/self/cgroup | sort; hostname; pwd"
)


@pytest.fixture
def running(sandbox: Sandbox, world: Path) -> Iterator[str]:
    """A detached container under strict whose command prints its confinement, then waits."""
    name = f"exec-{sandbox.mode}"
    tool(sandbox, "rm", "-f", name)
    started = tool(sandbox, "run", "-d", "--name", name, "-w", "/tmp", "--policy", str(world / "strict-unsigned.yaml"),
                   str(world / ATTACK), "sh", "-c", f"{CONFINEMENT}; echo ready; exec sleep 600")  # fmt: skip
    assert started.returncode == 0, started.stderr
    yield name
    tool(sandbox, "rm", "-f", name)


def logged_confinement(sandbox: Sandbox, name: str) -> str:
    for _ in range(50):
        shown = tool(sandbox, "logs", name).stdout
        if "ready" in shown:
            return shown.split("ready")[0]
        subprocess.run(["sleep", "0.1"])
    raise AssertionError(f"{name} never got ready")


def test_exec_runs_under_the_containers_own_confinement(sandbox: Sandbox, running: str) -> None:
    theirs = logged_confinement(sandbox, running)
    ours = tool(sandbox, "exec", running, "sh", "-c", CONFINEMENT)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs
    assert "NoNewPrivs:\t1" in ours.stdout and "CapEff:\t0000000000000000" in ours.stdout
    assert "Seccomp:\t2" in ours.stdout and ours.stdout.rstrip().endswith("/tmp")


def test_exec_passes_its_environment_workdir_and_exit_status(sandbox: Sandbox, running: str) -> None:
    shown = tool(sandbox, "exec", "-e", "GREETING=hi", "-w", "/etc", running, "sh", "-c", "echo $GREETING; pwd; exit 7")
    assert shown.returncode == 7 and shown.stdout == "hi\n/etc\n", shown.stderr
    missing = tool(sandbox, "exec", running, "/no/such/tool")
    assert missing.returncode == 127 and "/no/such/tool" in missing.stderr


def test_no_descriptor_of_the_host_reaches_an_exec(sandbox: Sandbox, running: str) -> None:
    """runc CVE-2024-21626: fds 0-2 only, and the working folder is the container's."""
    seen = tool(sandbox, "exec", running, "/attack", "fds")
    fds = [line.split()[1] for line in seen.stdout.splitlines() if line.startswith("fd ")]
    assert fds == ["0", "1", "2"], seen.stdout
    assert "cwd /tmp /tmp" in seen.stdout


def test_exec_into_a_stopped_or_unknown_container_is_refused(sandbox: Sandbox, running: str) -> None:
    assert tool(sandbox, "stop", "-t", "1", running).returncode == 0
    stopped = tool(sandbox, "exec", running, "true")
    assert stopped.returncode == 125 and "is not running" in stopped.stderr
    unknown = tool(sandbox, "exec", "no-such-container", "true")
    assert unknown.returncode != 0 and "no such container" in unknown.stderr


def test_the_container_cannot_reach_an_exec_before_it_has_dropped_privileges(sandbox: Sandbox, world: Path) -> None:
    """The watcher is the container's root under baseline: for an ordinary user's container
    that is the user's own uid on the host, which the joining process also has until it
    switches, so only its not being dumpable keeps the watcher out."""
    running = f"exec-watched-{sandbox.mode}"
    tool(sandbox, "rm", "-f", running)
    started = tool(sandbox, "run", "-d", "--name", running, "-u", "0", "--policy", str(world / "baseline-unsigned.yaml"),
                   str(world / ATTACK), "sleep", "600")  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        watch_execs(sandbox, running)
    finally:
        tool(sandbox, "rm", "-f", running)


def watch_execs(sandbox: Sandbox, running: str) -> None:
    watcher = subprocess.Popen(
        [*tool_argv(sandbox), "exec", running, "/attack", "watch", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
    )  # fmt: skip
    subprocess.run(["sleep", "0.5"])
    for _ in range(30):
        assert tool(sandbox, "exec", running, "true").returncode == 0
    out, err = watcher.communicate(timeout=60)
    assert "watched" in out, err
    assert int(out.split("watched")[1].split()[0]) >= 5  # it saw the execs come (each lives a few ms)
    assert "caught" not in out and "attached" not in out, out


def test_exec_t_gets_a_terminal_of_the_containers_own_and_it_takes_input(sandbox: Sandbox, running: str) -> None:
    if sandbox.mode != "root" or os.geteuid() != 0:
        pytest.skip("the terminal tests run as root (test_tty)")
    code, out = run_on_terminal(["-t", running, "sh", "-c", "tty; stty size; echo $TERM"], command="exec")
    assert code == 0 and out.split()[1:] == ["40", "100", "xterm"] and out.split()[0].startswith("/dev/pts/"), out
    code, out = run_on_terminal(["-it", running, "sh"], typed=b"echo typed-$((6*7))\nexit 4\n", command="exec")
    assert code == 4 and "typed-42" in out, out


def test_a_container_root_that_lies_about_the_kernels_capabilities_does_not_widen_an_exec(
    sandbox: Sandbox, world: Path
) -> None:
    """A container with CAP_SYS_ADMIN mounts "3" over /proc/sys/kernel/cap_last_cap: an exec
    that read it inside would leave capabilities 4 and up in its bounding set."""
    policy = world / "sysadmin.yaml"
    policy.write_text("version: 1\nextends: permissive\nsigning:\n  required: false\n"
                      "sandbox:\n  capabilities:\n    add: [SYS_ADMIN]\n")  # fmt: skip
    policy.chmod(0o644)
    name = f"liar-{sandbox.mode}"
    tool(sandbox, "rm", "-f", name)
    script = ("echo 3 > /tmp/three && mount --bind /tmp/three /proc/sys/kernel/cap_last_cap && "
              "grep CapBnd /proc/self/status && echo ready && exec sleep 600")  # fmt: skip
    started = tool(sandbox, "run", "-d", "--name", name, "-u", "0", "--policy", str(policy), str(world / ATTACK),
                   "sh", "-c", script)  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        theirs = logged_confinement(sandbox, name)
        assert theirs.startswith("CapBnd:"), theirs
        assert tool(sandbox, "exec", name, "cat", "/proc/sys/kernel/cap_last_cap").stdout == "3\n"  # the lie is there
        ours = tool(sandbox, "exec", name, "grep", "CapBnd", "/proc/self/status")
        assert ours.stdout == theirs, ours.stderr
    finally:
        tool(sandbox, "rm", "-f", name)


def test_exec_without_t_gives_the_command_pipes_and_nothing_it_can_keep(
    sandbox: Sandbox, running: str, world: Path
) -> None:
    """Found by review: the invoker's own stdio went into the container, and a process there
    that took over the exec'd command (ptrace, as container root may) kept the terminal after
    exec returned. Now the command has pipes, and what it leaves running writes nowhere."""
    sink = world / f"exec-sink-{sandbox.mode}"
    script = "for fd in 0 1 2; do readlink /proc/$$/fd/$fd; done; (sleep 1; echo late) & echo early"
    with open(sink, "w") as out:
        done = subprocess.run([*tool_argv(sandbox), "exec", running, "sh", "-c", script], stdout=out,
                              stderr=subprocess.PIPE, text=True, cwd="/", timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    subprocess.run(["sleep", "2"])
    lines = sink.read_text().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["pipe"] * 3 and lines[3:] == ["early"], lines
    typed = subprocess.run([*tool_argv(sandbox), "exec", "-i", running, "sh", "-c", "cat; echo $?"], input="hi\n",
                           capture_output=True, text=True, cwd="/", timeout=60)  # fmt: skip
    assert typed.stdout == "hi\n0\n", typed.stderr


def test_exec_joins_only_while_pid_1_is_the_recorded_process(sandbox: Sandbox, running: str) -> None:
    """Found by review: between PID 1's death and the monitor's last word the status still
    says running, and the pid may be reused; exec checks PID 1's start time as recorded."""
    (inspected,) = json.loads(tool(sandbox, "inspect", running).stdout)
    status_file = Path(inspected["folder"]) / "status.json"
    status = json.loads(status_file.read_text())
    status["init"][1] = "1"  # the pid as recorded, but another process's start time
    with open(status_file, "w") as rewritten:  # in place: the file stays the owner's
        json.dump(status, rewritten)
    refused = tool(sandbox, "exec", running, "true")
    assert refused.returncode == 125 and "is not running" in refused.stderr, refused.stderr


def test_exec_refuses_when_pid_1_left_the_cgroup_its_limits_live_in(sandbox: Sandbox, world: Path) -> None:
    """Where PID 1 could move itself into a sub-group (a delegated hierarchy), joining its
    cgroup by name would leave exec outside the limits: it fails closed instead. Root moves
    PID 1 out here, the one way to stage it on this host."""
    if sandbox.mode != "root" or not Path("/sys/fs/cgroup/memory/tasks").exists():
        pytest.skip("needs root and the v1 memory controller to move PID 1 out of its cgroup")
    name = "limited-root"
    tool(sandbox, "rm", "-f", name)
    started = tool(sandbox, "run", "-d", "--name", name, "--memory", "256m", "--policy",
                   str(world / "baseline-unsigned.yaml"), str(world / ATTACK), "sleep", "600")  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        assert tool(sandbox, "exec", name, "true").returncode == 0
        (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
        Path("/sys/fs/cgroup/memory/tasks").write_text(str(inspected["status"]["init"][0]))
        refused = tool(sandbox, "exec", name, "true")
        assert refused.returncode == 125 and "not in its own cgroup for memory" in refused.stderr, refused.stderr
    finally:
        tool(sandbox, "rm", "-f", name)


def test_exec_u_follows_the_policy_and_the_images_users(sandbox: Sandbox, world: Path, running: str) -> None:
    """strict: no exec as another user; where a policy allows it, -u resolves in the image's
    own passwd and group, and the rest of the confinement stays the container's."""
    refused = tool(sandbox, "exec", "-u", "0", running, "id")
    assert refused.returncode == 125 and "exec -u 0 is refused" in refused.stderr, refused.stderr
    line = refused.stderr.rpartition(":")[2].rstrip(")\n")
    assert (world / "strict-unsigned.yaml").read_text().splitlines()[int(line) - 1].strip() == "exec_user: false"
    name = f"exec-u-{sandbox.mode}"
    tool(sandbox, "rm", "-f", name)
    policy = strict_variant(world, "exec-user.yaml", ("    exec_user: false", "    exec_user: true"))
    try:
        started = tool(sandbox, "run", "-d", "--name", name, "--policy", str(policy), str(world / ATTACK),
                       "sh", "-c", "exec sleep 600")  # fmt: skip
        assert started.returncode == 0, started.stderr
        own = tool(sandbox, "exec", name, "sh", "-c", CONFINEMENT)
        as_root = tool(sandbox, "exec", "-u", "root", name, "sh", "-c", f"{CONFINEMENT}; echo $HOME")
        assert as_root.returncode == 0, as_root.stderr
        assert as_root.stdout.startswith("uid=0(root) gid=0(root)") and as_root.stdout.endswith("/root\n")
        assert own.stdout.startswith("uid=1000(app)")
        for line in ("CapBnd", "NoNewPrivs", "Seccomp", "0 "):  # the same bounding set, filter, map
            assert _lines(own.stdout, line) == _lines(as_root.stdout, line), line
        nobody = tool(sandbox, "exec", "-u", "nobody:nogroup", name, "id")
        assert nobody.stdout.startswith("uid=65534(nobody) gid=65534(nogroup)"), nobody.stdout
        unknown = tool(sandbox, "exec", "-u", "mallory", name, "id")
        assert unknown.returncode == 125 and "'mallory' is not in the image's /etc/passwd" in unknown.stderr
        assert tool(sandbox, "restart", "-t", "1", name).returncode == 0  # found by review: start emptied them
        again = tool(sandbox, "exec", "-u", "nobody:nogroup", name, "id")
        assert again.stdout.startswith("uid=65534(nobody) gid=65534(nogroup)"), again.stderr
    finally:
        tool(sandbox, "rm", "-f", name)


def test_exec_u_cannot_leave_a_user_the_policy_pins(sandbox: Sandbox, world: Path) -> None:
    name = f"exec-pinned-{sandbox.mode}"
    tool(sandbox, "rm", "-f", name)
    policy = strict_variant(world, "exec-pinned.yaml", ("    exec_user: false", "    exec_user: true"),
                            ("    size: 65536\n", "    size: 65536\n    user: '1000'\n"))  # fmt: skip
    try:
        started = tool(sandbox, "run", "-d", "--name", name, "--policy", str(policy), str(world / ATTACK),
                       "sh", "-c", "exec sleep 600")  # fmt: skip
        assert started.returncode == 0, started.stderr
        refused = tool(sandbox, "exec", "-u", "0", name, "id")
        assert refused.returncode == 125 and "the policy runs containers as 1000" in refused.stderr, refused.stderr
        assert tool(sandbox, "exec", "-u", "1000", name, "id").stdout.startswith("uid=1000")
    finally:
        tool(sandbox, "rm", "-f", name)


def _lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_an_image_with_a_large_passwd_still_execs(sandbox: Sandbox, world: Path) -> None:
    """Found by review: the image's passwd and group went into spec.json, escaped, and a
    2 MB passwd (or 300 KB of control bytes) made it too large to read back: exec, health
    checks and start all failed."""
    from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive
    from tests.imagekit import T, make_tar
    from tests.sandbox.harness import share

    filler = "".join(f"user{index}:x:{10000 + index}:100:\x01\x02:/home/u{index}:/bin/sh\n" for index in range(40000))
    passwd = (world / "rootfs/etc/passwd").read_text() + filler
    image = world / f"busybox-bigpasswd-{sandbox.mode}.tar"
    layers = [NewLayer(tar_from_directory(world / "rootfs"), "gzip", "COPY rootfs /"),
              NewLayer(make_tar([T("etc", "dir"), T("etc/passwd", data=passwd.encode())]), "gzip", "RUN useradd")]  # fmt: skip
    write_docker_archive(image, NewImage(layers, {"User": "1000:1000", "Env": ["PATH=/bin"]}), ["example/big:1"])
    share(world)
    policy = strict_variant(world, "exec-user-big.yaml", ("    exec_user: false", "    exec_user: true"))
    name = f"bigpasswd-{sandbox.mode}"
    tool(sandbox, "rm", "-f", name)
    try:
        started = tool(sandbox, "run", "-d", "--name", name, "--policy", str(policy), str(image), "sleep", "600")
        assert started.returncode == 0, started.stderr
        assert tool(sandbox, "exec", name, "true").returncode == 0
        assert tool(sandbox, "exec", "-u", "user39999", name, "id", "-u").stdout == "49999\n"
    finally:
        tool(sandbox, "rm", "-f", name)


def test_exec_imports_no_pathlib_json_re_or_enum(sandbox: Sandbox, running: str) -> None:
    """exec is what scripts and health checks run most: it reads its records with
    sandbox.jsonread and plain str paths, and so imports none of these (together about
    10 ms of a 29 ms exec; bench/lifecycle.py measures it against runc exec)."""
    argv = tool_argv(sandbox)
    profiled = [*argv[:-1], "env", "PYTHONPROFILEIMPORTTIME=1", argv[-1], "exec", running, "/bin/true"]
    done = subprocess.run(profiled, capture_output=True, text=True, cwd="/", timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "pysbx.sandbox.enter" in imported  # the profile is exec's own
    assert imported.isdisjoint({"pathlib", "json", "re", "enum", "typing"}), sorted(imported)

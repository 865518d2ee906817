"""Attacks from inside a container under strict, each one performed for real, as root and
as an ordinary user: the escapes that hit runc and others (CVE-2019-5736, CVE-2024-21626),
terminal injection, mount tricks, kernel interfaces, exhaustion, and reaching host
processes. busybox does what it can; tests/sandbox/attack.c does the rest."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import select
import shutil
import signal
import struct
import subprocess
import sysconfig
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.conftest import as_user, command
from tests.sandbox.harness import (
    Sandbox,
    attack_image,  # noqa: F401 - fixture
    default_cache,
    leftovers,
    processes_with,
    root_container_base,
    start_until_ready,
    state_entries,
    strict_variant,
    tool,
    wait_until,
)

ATTACK = "busybox-attack.tar"  # made by the attack_image fixture
pytestmark = pytest.mark.usefixtures("attack_image")


def refusals(output: str) -> dict[str, str]:
    """attack.c's `NAME=ok` / `NAME=-1/ERRNO` lines."""
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line and " " not in line)


# ----- runc CVE-2019-5736: the runtime's own binary through /proc/<pid>/exe ------------------


@pytest.fixture
def own_interpreter(sandbox: Sandbox) -> Iterator[tuple[Path, Path]]:
    """A venv made with --copies in a home of the mode's user (so its interpreter is a file
    that user owns, and so could write, as container root maps to it), able to import the
    project; yields (home, interpreter)."""
    home = Path(tempfile.mkdtemp(prefix="pysandbox-home-"))
    owner = pwd.getpwnam(sandbox.user) if sandbox.user else None
    if owner is not None:
        os.chown(home, owner.pw_uid, owner.pw_gid)
    home.chmod(0o755)
    as_owner = as_user(sandbox.user) if sandbox.user else []
    venv = home / "venv"
    subprocess.run([*as_owner, "/usr/bin/python3", "-m", "venv", "--copies", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(venv)})["purelib"])
    project = Path(sysconfig.get_paths()["purelib"])  # where this venv has the project and its dependencies
    (site / "project.pth").write_text(f"import site; site.addsitedir({str(project)!r})\n")
    interpreter = venv / "bin" / "python3"
    assert interpreter.is_file() and not interpreter.is_symlink()
    assert interpreter.stat().st_uid == (owner.pw_uid if owner else 0)
    yield home, interpreter
    shutil.rmtree(home, ignore_errors=True)


def run_with(sandbox: Sandbox, home: Path, interpreter: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """`pysandbox run ARGS` with `interpreter`, as the mode's user, with `home` as HOME."""
    main = [str(interpreter), "-c", "from pysbx.cli.entry import main; main()", "run", *args]
    prefix = as_user(sandbox.user) if sandbox.user else []
    env = ["env", f"HOME={home}", "XDG_RUNTIME_DIR="]
    return subprocess.run([*prefix, *env, *main], capture_output=True, text=True, timeout=60, cwd="/")


def test_the_runtime_interpreter_cannot_be_opened_or_read_through_proc(
    sandbox: Sandbox, world: Path, own_interpreter: tuple[Path, Path]
) -> None:
    home, interpreter = own_interpreter
    before = hashlib.sha256(interpreter.read_bytes()).hexdigest()
    script = (
        "readlink /proc/1/exe; /attack exe 1; echo x > /proc/1/exe && echo WROTE-EXE;"
        "cat /proc/1/exe > /dev/null && echo READ-EXE; cat /proc/1/environ && echo READ-ENVIRON;"
        "ls /proc/1/fd/ && echo LISTED-FD; ls /proc/1/cwd/ /proc/1/root/ && echo LISTED-ROOT;"
        "dd if=/proc/1/mem bs=1 count=1 2>/dev/null && echo READ-MEM; echo done"
    )
    # as container root, which is the host uid of PID 1 (our init): the closest an attacker gets
    args = ["--rm", "-u", "0", "--policy", str(world / "strict-unsigned.yaml"), str(world / ATTACK), "sh", "-c", script]
    result = run_with(sandbox, home, interpreter, args)
    assert result.stdout.strip().endswith("done"), result.stdout + result.stderr
    attempts = refusals(result.stdout)
    assert {"exe-write", "exe-read", "exe-path", "environ-open", "mem-open", "fd-open"} <= attempts.keys()
    assert all(outcome.startswith("-1/") for outcome in attempts.values()), attempts
    for success in ("WROTE-EXE", "READ-EXE", "READ-ENVIRON", "LISTED-FD", "LISTED-ROOT", "READ-MEM"):
        assert success not in result.stdout, result.stdout
    assert hashlib.sha256(interpreter.read_bytes()).hexdigest() == before


# ----- runc CVE-2024-21626: leaked descriptors and a working directory outside the root ------


@pytest.mark.parametrize("workdir", [None, "/home/app"])
def test_the_first_process_holds_only_stdio_and_starts_inside_the_root(sandbox: Sandbox, workdir: str | None) -> None:
    leaked = os.open("/", os.O_RDONLY | os.O_DIRECTORY)  # a host directory the caller happens to hold
    try:
        flags = ["-w", workdir] if workdir else []
        result = sandbox(*flags, "exec /attack fds", image=ATTACK, pass_fds=(leaked,))
    finally:
        os.close(leaked)
    assert result.returncode == 0, result.stderr
    fds = [line.split(maxsplit=3)[1:] for line in result.stdout.splitlines() if line.startswith("fd ")]
    assert [fd for fd, _, _ in fds] == ["0", "1", "2"], result.stdout
    assert all(kind != "dir" for _, kind, _ in fds), result.stdout
    cwd = next(line.split()[1:] for line in result.stdout.splitlines() if line.startswith("cwd "))
    assert cwd == [workdir or "/", workdir or "/"], result.stdout  # getcwd and /proc/self/cwd agree


# ----- terminal injection: TIOCSTI and TIOCLINUX -------------------------------------------


def run_on_controlling_terminal(argv: list[str]) -> tuple[bytes, bytes]:
    """Run `argv` in a new session whose controlling terminal is a fresh pty, as a shell
    would run it; return what it printed and what is left in the terminal's input queue,
    that is, what the shell would read and run next."""
    master, slave = os.openpty()

    def take_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=subprocess.DEVNULL, preexec_fn=take_terminal)
    printed = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (process.poll() is None or select.select([master], [], [], 0.1)[0]):
        if select.select([master], [], [], 0.1)[0]:
            printed += os.read(master, 65536)
    process.wait(timeout=5)
    pending = struct.unpack("i", fcntl.ioctl(slave, termios.FIONREAD, b"\0" * 4))[0]
    attributes = termios.tcgetattr(slave)
    attributes[3] &= ~termios.ICANON
    attributes[6][termios.VMIN] = attributes[6][termios.VTIME] = 0
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    queued = os.read(slave, 65536) if pending else b""
    os.close(slave)
    os.close(master)
    return printed, queued


@pytest.mark.parametrize("tty", [False, True], ids=["no-tty", "tty"])
def test_the_container_cannot_type_into_the_host_terminal(sandbox: Sandbox, world: Path, tty: bool) -> None:
    args = ["--rm", *(["-t"] if tty else []), "--policy", str(world / "strict-unsigned.yaml"), str(world / ATTACK)]
    printed, queued = run_on_controlling_terminal(
        command(sandbox.mode, [*args, "/attack", "inject", "touch /tmp/INJECTED\n"], sandbox.user)
    )
    attempts = refusals(printed.decode(errors="replace").replace("\r", ""))
    assert "tiocsti" in attempts and "tioclinux" in attempts, printed
    assert queued == b"", f"the container typed {queued!r} into the host's terminal"
    assert attempts["tioclinux"].startswith("-1/")  # a pty is no virtual console


# ----- mount tricks and kernel interfaces --------------------------------------------------


@pytest.mark.parametrize(("link", "lands_on"), [("to-proc", "/proc"), ("to-etc", "/etc"), ("up", "/"), ("deep", "/")])
def test_a_volume_over_a_symlink_in_the_image_lands_inside_the_root(sandbox: Sandbox, link: str, lands_on: str) -> None:
    volume = f"attack-{os.getpid()}-{sandbox.mode}-{link}"
    script = f"echo planted > /{link}/planted; test -f {lands_on.rstrip('/')}/planted && echo landed"
    before = Path("/proc/self/mountinfo").read_text().count("\n")
    try:
        # nocopy: the volume holds only what the container plants (a new one takes the image's files)
        result = sandbox(
            "-u", "0", "-v", f"{volume}:/{link}:nocopy", script, policy="volumes-allowed.yaml", image=ATTACK
        )
        planted = tool(sandbox, "volume", "ls")
    finally:
        tool(sandbox, "volume", "rm", volume)
    if lands_on == "/":  # a mount over the whole root is refused, naming the flag
        assert result.returncode == 125 and "resolves to / inside the image" in result.stderr, result.stderr
    else:
        assert result.stdout.strip() == "landed" and f"{volume}\t8" in planted.stdout, result.stdout + result.stderr
    assert not Path("/etc/planted").exists() and not Path("/planted").exists()
    assert Path("/proc/self/mountinfo").read_text().count("\n") == before


def test_kernel_interfaces_are_read_only_or_unreachable(sandbox: Sandbox) -> None:
    script = (
        "echo 1 > /proc/sys/kernel/domainname && echo WROTE-PROC-SYS;"
        "echo h > /proc/sysrq-trigger && echo WROTE-SYSRQ;"
        "echo x > /sys/kernel/uevent_helper && echo WROTE-SYS; touch /sys/x && echo WROTE-SYS;"
        "grep -q ' /sys .* ro,' /proc/self/mountinfo && echo sys-read-only;"
        "echo kernel-memory=$(cat /proc/kcore /proc/keys /proc/timer_list 2>/dev/null | wc -c); /attack keys"
    )
    result = sandbox(script, image=ATTACK)
    assert "WROTE" not in result.stdout, result.stdout
    assert "sys-read-only" in result.stdout and "kernel-memory=0" in result.stdout, result.stdout
    attempts = refusals(result.stdout)
    assert attempts["keyctl"].startswith("-1/") and attempts["add_key"].startswith("-1/"), attempts


# ----- resource exhaustion -----------------------------------------------------------------


def test_a_memory_hog_cannot_touch_more_than_the_limit(sandbox: Sandbox) -> None:
    result = sandbox("--memory", "48m", "/attack hog", image=ATTACK)
    reached = [int(line.split()[-2]) for line in result.stdout.splitlines() if line.startswith("hog ")]
    # refused an allocation (RLIMIT_DATA) or killed by the cgroup's OOM killer (137)
    assert reached and reached[-1] < 48 and result.returncode in (0, 137), result.stdout[-200:]
    assert sandbox("echo next").stdout.strip() == "next"


def test_a_descriptor_flood_stops_at_the_open_files_limit(sandbox: Sandbox, world: Path) -> None:
    strict_variant(world, "strict-64-files.yaml", ("    open_files: 1024", "    open_files: 64"))
    result = sandbox("/attack flood", policy="strict-64-files.yaml", image=ATTACK)
    assert result.stdout.strip() == "flood stopped after 61 with errno 24", result.stdout  # EMFILE past 0, 1, 2
    assert sandbox("echo next").stdout.strip() == "next"


def test_a_disk_filler_stops_at_the_tmpfs_size(sandbox: Sandbox) -> None:
    result = sandbox(
        "--tmpfs", "/scratch:size=4m", "dd if=/dev/zero of=/scratch/fill bs=1M count=64; wc -c < /scratch/fill"
    )
    assert "No space left on device" in result.stderr, result.stderr
    assert int(result.stdout.split()[-1]) <= 4 << 20
    assert sandbox("echo next").stdout.strip() == "next"


# ----- host processes ----------------------------------------------------------------------


@pytest.fixture
def host_sleeper(sandbox: Sandbox) -> Iterator[int]:
    """A host process running as the host uid that container root maps to: the one a
    container could signal if it could reach it at all."""
    uid = pwd.getpwnam(sandbox.user).pw_uid if sandbox.user else root_container_base()
    as_uid = [] if uid == os.geteuid() else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    sleeper = subprocess.Popen([*as_uid, "sleep", "60"], cwd="/")
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


def test_host_processes_cannot_be_seen_signalled_or_traced(sandbox: Sandbox, host_sleeper: int) -> None:
    script = (
        f"ls -d /proc/{host_sleeper} 2>/dev/null && echo SEEN; kill -9 {host_sleeper} 2>/dev/null && echo KILLED;"
        f"kill -9 -1 2>/dev/null; /attack ptrace {host_sleeper}; ps -o pid | tail -n +2 | wc -l"
    )
    result = sandbox(script, image=ATTACK)
    assert "SEEN" not in result.stdout and "KILLED" not in result.stdout, result.stdout
    assert refusals(result.stdout)["ptrace"].startswith("-1/")
    time.sleep(0.2)
    assert Path(f"/proc/{host_sleeper}").exists() and "sleep" in Path(f"/proc/{host_sleeper}/cmdline").read_text()


def test_a_killed_pysandbox_takes_its_container_and_prune_removes_what_it_left(sandbox: Sandbox, world: Path) -> None:
    marker = f"killed-{os.getpid()}-{sandbox.mode}"
    findmnt = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout
    before = leftovers(sandbox, default_cache(sandbox), marker)
    process, monitor = start_until_ready(
        sandbox, world, f"echo ready; sleep 60 # {marker}", flags=("--rm", "--name", marker)
    )
    os.kill(monitor, signal.SIGKILL)
    process.communicate(timeout=20)
    assert wait_until(lambda: not processes_with(marker)), processes_with(marker)
    assert subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout == findmnt
    after = leftovers(sandbox, default_cache(sandbox), marker)
    assert {k: v for k, v in after.items() if k != "state"} == {k: v for k, v in before.items() if k != "state"}
    left = set(state_entries(sandbox.mode, default_cache(sandbox), marker)) - set(before["state"])  # type: ignore[call-overload]
    pruned = tool(sandbox, "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert all(f"removed container {path} " in pruned.stdout for path in left), pruned.stdout
    assert state_entries(sandbox.mode, default_cache(sandbox), marker) == before["state"]

"""`run -dit`, `attach`, `start -a` and the detach keys, as root and as an ordinary user, on
real terminals (a pty as the client's stdin and stdout): what is typed reaches the
container's shell, the keys detach and leave it running, attach returns its exit code, and
start -a misses nothing of a command that ends at once. The hub never waits for a client:
one that does not read does not hold the container up; no other user can attach."""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.sandbox.conftest import as_user
from tests.sandbox.harness import Sandbox, tool, tool_argv, wait_until

POLICY = "strict-unsigned.yaml"


class Terminal:
    """A pysandbox command as the sandbox's user, on a pty of its own."""

    def __init__(self, sandbox: Sandbox, *args: str, rows: int = 24, columns: int = 80) -> None:
        self.master, slave = os.openpty()
        self.resize(rows, columns)
        self.process = subprocess.Popen([*tool_argv(sandbox), *args], stdin=slave, stdout=slave,
                                        stderr=subprocess.PIPE, cwd="/", start_new_session=True,
                                        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # fmt: skip
        os.close(slave)
        self.seen = b""

    def resize(self, rows: int, columns: int) -> None:
        """As a terminal window does: the size changes, its foreground programs get SIGWINCH."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("4H", rows, columns, 0, 0))

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def until(self, wanted: bytes, seconds: float = 10) -> bool:
        deadline = time.monotonic() + seconds
        while wanted not in self.seen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    break
        return wanted in self.seen

    def wait(self, seconds: float = 15) -> int:
        code = self.process.wait(timeout=seconds)
        os.close(self.master)
        return code


def start(sandbox: Sandbox, world: Path, name: str, *flags_and_command: str) -> None:
    *flags, command = flags_and_command
    started = tool(sandbox, "run", "-d", "--name", name, *flags, "--policy", str(world / POLICY),
                   str(world / "busybox-app.tar"), "sh", "-c", command)  # fmt: skip
    assert started.returncode == 0, started.stderr


def test_attach_to_a_dit_shell_types_detaches_and_returns_its_exit_code(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"attach-{sandbox.mode}")
    start(sandbox, world, name, "-it", "exec sh")
    first = Terminal(sandbox, "attach", name)
    time.sleep(0.5)
    first.type(b"echo typed-$((6*7)); tty\r")
    assert first.until(b"typed-42") and first.until(b"/dev/pts/0"), first.seen
    first.type(b"\x10\x11")  # ctrl-p, ctrl-q
    assert first.wait() == 0
    assert "Up " in tool(sandbox, "ps", "--filter", f"name={name}").stdout  # detached, not stopped
    assert "typed-42" in tool(sandbox, "logs", name).stdout  # the pty's output is logged too
    second = Terminal(sandbox, "attach", name)
    time.sleep(0.5)
    second.type(b"exit 3\r")
    assert second.wait() == 3
    assert tool(sandbox, "wait", name).stdout == "3\n"


def test_an_attached_terminal_gives_the_pty_its_size(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"sized-{sandbox.mode}")
    start(sandbox, world, name, "-it", "exec sh")
    session = Terminal(sandbox, "attach", name, rows=31, columns=101)
    time.sleep(0.5)
    session.type(b"stty size\r")
    assert session.until(b"31 101"), session.seen
    session.resize(42, 123)
    time.sleep(0.3)
    session.type(b"stty size\r")
    assert session.until(b"42 123"), session.seen
    session.type(b"\x10\x11")
    assert session.wait() == 0


def test_detach_keys_of_the_run_or_the_attach(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"keys-{sandbox.mode}")
    start(sandbox, world, name, "-it", "--detach-keys", "ctrl-a,x", "exec sh")
    session = Terminal(sandbox, "attach", name)
    time.sleep(0.5)
    session.type(b"\x10\x11echo still-here\r")  # Docker's keys mean nothing to this container
    assert session.until(b"still-here")
    session.type(b"\x01x")
    assert session.wait() == 0
    other = Terminal(sandbox, "attach", "--detach-keys", "ctrl-e", name)
    time.sleep(0.5)
    other.type(b"\x05")
    assert other.wait() == 0 and "Up " in tool(sandbox, "ps", "--filter", f"name={name}").stdout
    bad = tool(sandbox, "run", "-d", "--detach-keys", "ctrl-ü", "--policy", str(world / POLICY),
               str(world / "busybox-app.tar"), "true")  # fmt: skip
    assert bad.returncode == 125 and "--detach-keys ctrl-ü: expected" in bad.stderr


def test_di_without_a_terminal_takes_piped_input(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"piped-{sandbox.mode}")
    start(sandbox, world, name, "-i", "while read line; do echo got $line; done")
    fed = subprocess.run([*tool_argv(sandbox), "attach", "--detach-keys", "ctrl-x", name], input=b"a\nb\n\x18",
                         capture_output=True, cwd="/", timeout=30)  # fmt: skip
    assert fed.returncode == 0, fed.stderr
    assert wait_until(lambda: tool(sandbox, "logs", name).stdout == "got a\ngot b\n", seconds=10)


def test_start_a_shows_everything_of_a_command_that_ends_at_once(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"start-a-{sandbox.mode}")
    start(sandbox, world, name, "echo one; echo two >&2; exit 4")
    assert tool(sandbox, "wait", name).stdout == "4\n"
    for _ in range(3):  # the replay comes from the new monitor: each start's own output, once
        again = tool(sandbox, "start", "-a", name)
        assert (again.returncode, again.stdout, again.stderr) == (4, "one\n", "two\n")


def test_a_client_that_does_not_read_does_not_hold_the_container_up(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"flood-{sandbox.mode}")
    start(
        sandbox, world, name, "-i", "--log-opt", "max-size=1m", "read go; yes flood | head -c 50000000; echo; echo done"
    )
    folder = Path(json.loads(tool(sandbox, "inspect", name).stdout)[0]["folder"])
    script = (f"import socket, struct, time; s = socket.socket(socket.AF_UNIX); s.connect({str(folder / 'attach.sock')!r}); "
              "s.sendall(struct.pack('>cI', b'i', 3) + b'go\\n'); time.sleep(60)")  # fmt: skip
    prefix = [] if sandbox.mode == "root" else as_user(str(sandbox.user))
    stuck = subprocess.Popen([*prefix, "python3", "-c", script], cwd="/")
    try:
        started = time.monotonic()
        assert tool(sandbox, "wait", name).stdout == "0\n"  # the stuck client was dropped, not waited for
        assert time.monotonic() - started < 30
        assert tool(sandbox, "logs", "--tail", "1", name).stdout == "done\n"
    finally:
        stuck.kill()
        stuck.wait()


def test_no_other_user_can_attach(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    """The socket's folder is private; were it not, the hub answers only its own user."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    named.append(name := f"private-{sandbox.mode}")
    start(sandbox, world, name, "-i", "exec cat")
    folder = Path(json.loads(tool(sandbox, "inspect", name).stdout)[0]["folder"])
    other = "nobody"
    script = (f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(folder / 'attach.sock')!r}); "
              "s.sendall(b'i\\0\\0\\0\\6stolen'); s.settimeout(3); print('connected', s.recv(10))")  # fmt: skip
    tried = subprocess.run(["runuser", "-u", other, "--", "python3", "-c", script], capture_output=True, text=True,
                           cwd="/", timeout=30)  # fmt: skip
    assert "connected" not in tried.stdout and "Permission denied" in tried.stderr, (tried.stdout, tried.stderr)
    time.sleep(0.3)
    assert "stolen" not in tool(sandbox, "logs", name).stdout
    if sandbox.mode != "root":
        return
    # and the hub's own check, past the folders: a socket everyone can reach still refuses others
    closed = [path for path in (folder, *folder.parents) if not path.stat().st_mode & 0o001]
    modes = {path: path.stat().st_mode for path in (*closed, folder / "attach.sock")}
    try:
        for path in modes:
            path.chmod(0o777 if path.is_socket() else 0o755)
        peer = subprocess.run(["runuser", "-u", other, "--", "python3", "-c", script], capture_output=True, text=True,
                              cwd="/", timeout=30)  # fmt: skip
        refused = "connected b''" in peer.stdout or any(
            why in peer.stderr for why in ("Connection reset", "Broken pipe")
        )
        assert refused, (peer.stdout, peer.stderr)
        time.sleep(0.3)
        assert "stolen" not in tool(sandbox, "logs", name).stdout
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_clients_that_vanish_or_lie_leave_the_hub_and_the_container_as_they_were(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    """Found by review: a client killed while the container wrote raised in the hub, which
    took the log writer down, and the container with it (SIGPIPE); a frame announcing 4 GiB
    grew in the hub without bound."""
    named.append(name := f"vanishing-{sandbox.mode}")
    start(sandbox, world, name, "while :; do echo hello; done")
    for _ in range(3):
        attached = subprocess.Popen([*tool_argv(sandbox), "attach", name], stdout=subprocess.DEVNULL, cwd="/")
        time.sleep(0.5)
        attached.kill()
        attached.wait()
    folder = Path(json.loads(tool(sandbox, "inspect", name).stdout)[0]["folder"])
    script = (f"import socket, struct; s = socket.socket(socket.AF_UNIX); s.connect({str(folder / 'attach.sock')!r}); "
              "s.sendall(struct.pack('>cI', b'i', 0xFFFFFFFF) + b'x' * 200000)")  # fmt: skip
    prefix = [] if sandbox.mode == "root" else as_user(str(sandbox.user))
    subprocess.run([*prefix, "python3", "-c", script], cwd="/", timeout=30, capture_output=True)
    time.sleep(0.5)
    assert "Up " in tool(sandbox, "ps", "--filter", f"name={name}").stdout
    size = log_size(folder)
    seen = subprocess.Popen([*tool_argv(sandbox), "attach", name], stdout=subprocess.PIPE, cwd="/")
    assert seen.stdout is not None and seen.stdout.read(6) == b"hello\n"  # the hub still answers
    seen.kill()
    seen.wait()
    time.sleep(0.3)
    assert log_size(folder) != size  # the log writer still writes


def log_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("ctr.log*"))

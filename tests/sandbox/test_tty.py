"""`-t`: the container's own pseudo-terminal, its window size, and input typed into it."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

PYSANDBOX = str(Path(sys.executable).parent / "pysandbox")


def run_on_terminal(
    args: list[str], typed: bytes = b"", rows: int = 40, columns: int = 100, raw: bool = False, command: str = "run"
) -> tuple[int, str]:
    """Run `pysandbox COMMAND` with a real terminal of the given size as its stdin and stdout."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen([PYSANDBOX, command, *args], stdin=slave, stdout=slave, stderr=subprocess.PIPE, cwd="/")
    os.close(slave)
    if typed:
        time.sleep(1.0)
        os.write(master, typed)
    output = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(master)
    text = output.decode(errors="replace")
    return process.returncode, text if raw else text.replace("\r", "")


def test_the_container_gets_its_own_terminal_with_our_size(world: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs as root here")
    code, out = run_on_terminal(
        [
            "--rm",
            "-t",
            "--policy",
            str(world / "strict-unsigned.yaml"),
            str(world / "busybox-app.tar"),
            "sh",
            "-c",
            "tty; stty size",
        ]
    )
    assert code == 0, out
    assert "/dev/pts/0" in out and "40 100" in out


def test_typed_input_reaches_the_container_through_its_pty(world: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs as root here")
    code, out = run_on_terminal(
        [
            "--rm",
            "-t",
            "-i",
            "--policy",
            str(world / "strict-unsigned.yaml"),
            str(world / "busybox-app.tar"),
            "sh",
            "-c",
            "read line; echo got:$line",
        ],
        typed=b"hello\n",
    )
    assert code == 0 and "got:hello" in out, out


def test_lines_from_the_container_end_once_in_carriage_return_line_feed(world: Path) -> None:
    """The container's pty turns \\n into \\r\\n; our own terminal must not do it again."""
    if os.geteuid() != 0:
        pytest.skip("runs as root here")
    code, out = run_on_terminal(
        ["--rm", "-t", "--policy", str(world / "strict-unsigned.yaml"), str(world / "busybox-app.tar"), "echo", "one"],
        raw=True,
    )
    assert code == 0 and "one\r\n" in out and "\r\r\n" not in out, repr(out)


def test_a_tty_has_term_xterm_unless_the_image_or_a_flag_says_otherwise(world: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs as root here")
    policy, image = str(world / "strict-unsigned.yaml"), str(world / "busybox-app.tar")
    code, out = run_on_terminal(["--rm", "-t", "--policy", policy, image, "sh", "-c", "echo term=$TERM"])
    assert code == 0 and "term=xterm" in out, out
    code, out = run_on_terminal(
        ["--rm", "-t", "-e", "TERM=vt100", "--policy", policy, image, "sh", "-c", "echo term=$TERM"]
    )
    assert "term=vt100" in out, out
    plain = subprocess.run([PYSANDBOX, "run", "--rm", "--policy", policy, image, "sh", "-c", "echo term=$TERM"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/")  # fmt: skip
    assert plain.stdout == "term=\n", plain.stdout  # no terminal, no TERM


def test_t_without_i_takes_no_input_and_it_without_a_terminal_is_refused(world: Path) -> None:
    """Docker's rules: -t alone attaches no stdin (nothing piped is echoed back or read), and
    -it with a pipe on stdin is an error, not a hang."""
    if os.geteuid() != 0:
        pytest.skip("runs as root here")
    policy, image = str(world / "strict-unsigned.yaml"), str(world / "busybox-app.tar")
    command = [PYSANDBOX, "run", "--rm", "-t", "--policy", policy, image, "sh", "-c", "echo out"]
    piped = subprocess.run(command, input=b"secret typed\n", capture_output=True, timeout=60, cwd="/")
    assert piped.returncode == 0 and piped.stdout == b"out\r\n", piped.stdout
    refused = subprocess.run([*command[:3], "-i", *command[3:]], input=b"x\n", capture_output=True, timeout=60, cwd="/")
    assert refused.returncode == 125 and b"the input device is not a TTY" in refused.stderr
    assert refused.stderr.count(b"\n") == 1

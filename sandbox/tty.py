"""`-t`: the container gets a pseudo-terminal of its own, never the host's. The command
process opens it from the container's own devpts instance (so /dev/pts/0 names it inside)
and hands the master to the monitor over a socket (SCM_RIGHTS), as runc's console socket
does. The monitor relays bytes between its terminal and the master and passes window size
changes on; whatever the container injects into its terminal (TIOCSTI) lands in its own
pty, never in the shell that started it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import sys
import termios
from collections.abc import Iterator

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import threading
    from typing import Any

# Imported only with -t: sandbox.runner imports this module and socket before the container's
# side forks, so the imports below still find them after pivot_root.


def open_in_container(channel: socket.socket) -> None:
    """In the command process, after pivot_root: open a pty from the container's devpts,
    send the master to the monitor, and make the slave our controlling terminal."""
    import socket

    master, slave = os.openpty()
    socket.send_fds(channel, [b"pty"], [master])
    os.close(master)
    channel.close()
    attach(slave)


def receive_master(channel: socket.socket) -> int | None:
    """In the monitor: the pty master, or None when setup failed before sending it."""
    import socket

    _, fds, _, _ = socket.recv_fds(channel, 16, 1)
    channel.close()
    if not fds:
        return None
    if not copy_window_size(fds[0]):  # run -dt: no terminal here; a size programs can work with
        fcntl.ioctl(fds[0], termios.TIOCSWINSZ, struct.pack("4H", 24, 80, 0, 0))
    return fds[0]


def copy_window_size(master: int) -> bool:
    """Give the pty the size of our terminal; False when stdin is not one."""
    try:
        size = fcntl.ioctl(sys.stdin.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        return False
    return True


def attach(slave: int) -> None:
    """In the command process: a new session whose controlling terminal is the pty."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


@contextlib.contextmanager
def relaying(master: int, forward_stdin: bool) -> Iterator[None]:
    """Relay pty -> stdout while the container runs, and with -i stdin -> pty (Docker: -t
    alone attaches no input). A terminal on stdout stops translating newlines (the
    container's pty already turned \n into \r\n); a terminal on stdin, while forwarded, is
    in raw mode (the container's pty does the line editing). Both are restored after."""
    stdin = sys.stdin.fileno()
    previous = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(master))
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=_pump, args=(master, stdin if forward_stdin else None, stop), daemon=True)
    with terminal_modes(True, forward_stdin):
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=1)
            signal.signal(signal.SIGWINCH, previous)
            os.close(master)


@contextlib.contextmanager
def terminal_modes(output: bool, forward_stdin: bool) -> Iterator[None]:
    """While bytes of a container's pty are relayed here: with `output`, a terminal on stdout
    stops translating newlines (the pty already did); with `forward_stdin`, a terminal on
    stdin is raw (the container's pty does the line editing). Both restored after."""
    stdin = sys.stdin.fileno()
    saved: list[tuple[int, list[Any]]] = []
    if output and os.isatty(1):
        saved.append((1, termios.tcgetattr(1)))
        modes = termios.tcgetattr(1)
        modes[1] &= ~termios.OPOST
        termios.tcsetattr(1, termios.TCSANOW, modes)
    if forward_stdin and os.isatty(stdin):
        saved.append((stdin, termios.tcgetattr(stdin)))
        raw = termios.tcgetattr(stdin)
        raw[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        raw[0] &= ~(termios.IXON | termios.ICRNL)
        termios.tcsetattr(stdin, termios.TCSANOW, raw)
    try:
        yield
    finally:
        for fd, attributes in reversed(saved):  # the same terminal on both: back to the first state
            termios.tcsetattr(fd, termios.TCSADRAIN, attributes)


def _pump(master: int, stdin: int | None, stop: threading.Event) -> None:
    sources = [master] if stdin is None else [master, stdin]
    while not stop.is_set() or select.select([master], [], [], 0)[0]:
        ready, _, _ = select.select(sources, [], [], 0.05)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                sources.remove(fd)
                if fd == master:
                    return
                continue
            os.write(1 if fd == master else master, data)

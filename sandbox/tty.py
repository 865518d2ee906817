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
    copy_window_size(fds[0])
    return fds[0]


def copy_window_size(master: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(sys.stdin.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


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
    saved: list[tuple[int, list[Any]]] = []
    if os.isatty(1):
        saved.append((1, termios.tcgetattr(1)))
        output = termios.tcgetattr(1)
        output[1] &= ~termios.OPOST
        termios.tcsetattr(1, termios.TCSANOW, output)
    if forward_stdin and os.isatty(stdin):
        saved.append((stdin, termios.tcgetattr(stdin)))
        raw = termios.tcgetattr(stdin)
        raw[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        raw[0] &= ~(termios.IXON | termios.ICRNL)
        termios.tcsetattr(stdin, termios.TCSANOW, raw)
    previous = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(master))
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=_pump, args=(master, stdin if forward_stdin else None, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1)
        signal.signal(signal.SIGWINCH, previous)
        for fd, attributes in reversed(saved):  # the same terminal on both: back to the first state
            termios.tcsetattr(fd, termios.TCSADRAIN, attributes)
        os.close(master)


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

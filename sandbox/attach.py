"""`attach` and `run -dit`: the container's stdio held by its monitor, reachable again later.

The monitor's log writer is the hub: besides writing ctr.log it listens on `attach.sock` in
the container's private folder, sends what the container writes to every attached client,
and (for a container started with -i) passes what clients type to the container's stdin,
a pipe whose other end it holds. Frames both ways are a kind byte, a 4-byte length and the
bytes: o (stdout), e (stderr) to the client; i (input) and w (a terminal's rows and columns,
for a -t container's pty, whose master the monitor hands the hub at each start) from it. `start -a` connects before
the container starts (the monitor waits for it), so it misses nothing.

Nothing a client does may hold the container up: the hub never blocks on a client (one that
does not read falls behind by at most CLIENT_LIMIT and is then disconnected) nor on the
container's stdin (input past STDIN_LIMIT that the container does not read is dropped). The
socket's folder is private to the invoker, and the hub answers only its own user (or root)
by SO_PEERCRED; the container never sees the socket.

The client (`attach_to`) detaches on the detach keys (Docker's ctrl-p,ctrl-q by default),
and otherwise returns the container's exit code once its output has ended."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pysbx.sandbox.errors import SandboxError

SOCKET = "attach.sock"
HEADER = struct.Struct(">cI")
CLIENT_LIMIT = 1 << 20
FRAME_LIMIT = 1 << 16
MAX_CLIENTS = 64
STDIN_LIMIT = 1 << 20
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def frame(kind: bytes, data: bytes) -> bytes:
    return HEADER.pack(kind, len(data)) + data


def frames(buffer: bytearray) -> list[tuple[bytes, bytes]]:
    """Take the whole frames `buffer` holds from its front."""
    taken = []
    while len(buffer) >= HEADER.size:
        kind, size = HEADER.unpack_from(buffer)
        if len(buffer) < HEADER.size + size:
            break
        taken.append((kind, bytes(buffer[HEADER.size : HEADER.size + size])))
        del buffer[: HEADER.size + size]
    return taken


# ----- the hub, in the monitor's log writer ---------------------------------------------------


class Hub:
    """The listening socket, the clients with what waits to be sent to each, and the
    container's stdin (with what waits to go in)."""

    def __init__(
        self, folder: Path, stdin: int | None, attached: int | None = None, consoles: socket.socket | None = None
    ) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.listener: socket.socket | None = listener
        self.folder = folder
        os.chdir(folder)  # bind by a relative name: a long state path would not fit sun_path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET)  # the last monitor's (start): ours now
        listener.bind(SOCKET)
        os.chdir("/")
        self.attached = attached  # told once the first client is in (start -a waits for it)
        listener.listen(8)
        listener.setblocking(False)
        self.stdin, self.to_stdin = stdin, bytearray()
        if stdin is not None:
            os.set_blocking(stdin, False)
        self.clients: dict[int, tuple[socket.socket, bytearray, bytearray]] = {}  # fd: (socket, to send, received)
        self.poller: Any = None
        self.stdin_watched = False  # registered for POLLOUT: input waits for the container
        self.consoles, self.master = consoles, -1  # run -dt: the monitor sends each run's pty master

    def register(self, poller: Any) -> None:
        self.poller = poller
        assert self.listener is not None
        poller.register(self.listener.fileno(), select.POLLIN)
        if self.consoles is not None:
            poller.register(self.consoles.fileno(), select.POLLIN)

    def handle(self, fd: int, events: int) -> None:
        """One poll event of ours. Nothing the hub meets may stop the log writer: whatever
        goes wrong in it turns the hub off (found by review: a client dropped while its
        event waited in the same poll batch raised KeyError and killed the writer)."""
        try:
            self._handle(fd, events)
        except Exception:  # the log goes on without attaching
            self.shut()

    def broadcast(self, stream: str, data: bytes) -> None:
        """What the container wrote, to every client."""
        kind = b"e" if stream == "stderr" else b"o"
        try:
            for fd in list(self.clients):
                if fd in self.clients:
                    self._send(fd, frame(kind, data))
        except Exception:  # as handle
            self.shut()

    def _handle(self, fd: int, events: int) -> None:
        if self.listener is not None and fd == self.listener.fileno():
            self._accept()
        elif self.consoles is not None and fd == self.consoles.fileno():
            self._new_console()
        elif fd == self.stdin and self.stdin_watched:
            self._flush_stdin()
        elif fd in self.clients:
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._receive(fd)
            if fd in self.clients and events & select.POLLOUT:
                self._flush(fd)
        # else: an event of a descriptor dropped earlier in the same poll batch

    def shut(self) -> None:
        """Stop attaching: every client goes, the socket closes; the container's stdin pipe
        stays open (closing it would end what reads it)."""
        for fd in list(self.clients):
            with contextlib.suppress(Exception):
                self._drop(fd)
        if self.listener is not None:
            with contextlib.suppress(Exception):
                self.poller.unregister(self.listener.fileno())
            self.listener.close()
            self.listener = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.folder / SOCKET)

    def close(self) -> None:
        for fd in list(self.clients):
            with contextlib.suppress(Exception):
                self._flush(fd)
        self.shut()
        if self.master >= 0:
            os.close(self.master)
        if self.stdin is not None:
            os.close(self.stdin)

    def _new_console(self) -> None:
        """The pty master of the container's (re)start, for window sizes; end of the monitor."""
        assert self.consoles is not None
        try:
            _, fds, _, _ = socket.recv_fds(self.consoles, 16, 1)
        except OSError:
            fds = []
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        if fds:
            self.master = fds[0]
        else:
            self.poller.unregister(self.consoles.fileno())
            self.consoles.close()
            self.consoles = None

    def _resize(self, size: bytes) -> None:
        """A client's terminal size (rows, columns) to the pty: its programs get SIGWINCH."""
        import fcntl
        import termios

        if self.master >= 0 and len(size) == 4:
            rows, columns = struct.unpack(">HH", size)
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("4H", rows, columns, 0, 0))

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            client, _ = self.listener.accept()
        except OSError:  # none waiting, or out of descriptors: the next poll tries again
            return
        uid = struct.unpack("3i", client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid not in (os.geteuid(), 0) or len(self.clients) >= MAX_CLIENTS:
            client.close()
            return
        client.setblocking(False)
        self.clients[client.fileno()] = (client, bytearray(), bytearray())
        self.poller.register(client.fileno(), select.POLLIN)
        if self.attached is not None:
            os.close(self.attached)
            self.attached = None

    def _receive(self, fd: int) -> None:
        client, _, received = self.clients[fd]
        try:
            data = client.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        received += data
        taken = frames(received)
        if len(received) >= HEADER.size and HEADER.unpack_from(received)[1] > FRAME_LIMIT:
            self._drop(fd)  # no frame of ours is that long: it would only grow here
            return
        for kind, payload in taken:
            if kind == b"i" and self.stdin is not None and len(self.to_stdin) < STDIN_LIMIT:
                self.to_stdin += payload[: STDIN_LIMIT - len(self.to_stdin)]
                self._flush_stdin()
            elif kind == b"w":
                self._resize(payload)

    def _send(self, fd: int, data: bytes) -> None:
        _, pending, _ = self.clients[fd]
        pending += data
        if len(pending) > CLIENT_LIMIT:  # it does not read: it goes, the container does not wait
            self._drop(fd)
            return
        self._flush(fd)

    def _flush(self, fd: int) -> None:
        client, pending, _ = self.clients[fd]
        try:
            while pending:
                del pending[: client.send(pending)]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(fd)
            return
        self.poller.modify(fd, select.POLLIN | (select.POLLOUT if pending else 0))

    def _flush_stdin(self) -> None:
        assert self.stdin is not None
        try:
            while self.to_stdin:
                del self.to_stdin[: os.write(self.stdin, self.to_stdin)]
        except BlockingIOError:
            pass
        except OSError:  # the container closed its stdin: what is typed goes nowhere
            self.to_stdin.clear()
        waiting = bool(self.to_stdin)
        if waiting != self.stdin_watched:
            if waiting:
                self.poller.register(self.stdin, select.POLLOUT)
            else:
                self.poller.unregister(self.stdin)
            self.stdin_watched = waiting

    def _drop(self, fd: int) -> None:
        client, _, _ = self.clients.pop(fd)
        self.poller.unregister(fd)
        client.close()


# ----- the client: `pysandbox attach`, `start -a` ---------------------------------------------


def parse_detach_keys(text: str) -> bytes:
    """Docker's --detach-keys: a comma-separated sequence of ctrl-<a-z @ [ \\ ] ^ _> or single
    characters; "" turns detaching off."""
    keys = bytearray()
    for item in filter(None, text.split(",")):
        if (
            item.startswith("ctrl-")
            and len(item) == 6
            and ((item[5].isascii() and item[5].isalpha()) or item[5] in "@[\\]^_")
        ):
            keys.append(ord(item[5].upper()) & 0x1F)
        elif len(item) == 1:
            keys.append(ord(item))
        else:
            raise SandboxError(f"--detach-keys {text}: expected keys such as ctrl-p,ctrl-q or ctrl-a,x")
    return bytes(keys)


class DetachFilter:
    """Watches what is typed for the detach keys: bytes that may begin them wait until it is
    known whether they do."""

    def __init__(self, keys: bytes) -> None:
        self.keys, self.held = keys, b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """What to send on, and whether the keys were typed (then nothing after them)."""
        out = bytearray()
        for byte in data:
            candidate = self.held + bytes([byte])
            if self.keys and self.keys.startswith(candidate):
                if candidate == self.keys:
                    return bytes(out), True
                self.held = candidate
            else:
                out += candidate
                self.held = b""
        return bytes(out), False


def attach_to(
    container: Any, detach_keys: bytes, stdin: bool, sig_proxy: bool, client: socket.socket | None = None
) -> int:
    """Relay the container's output here (and with `stdin`, what is typed there), until it
    ends (its exit code) or the detach keys are typed (0). With `sig_proxy` and no pty, the
    signals this process gets go to the container's command (with a pty, ^C is a byte the
    container's terminal turns into SIGINT itself). `client`: a connection made already."""
    from pysbx.sandbox import tty as terminal
    from pysbx.sandbox.lifecycle import wait_for_exit

    tty = container.record.get("tty") is True
    client = client or connect(container.folder)
    forward = stdin and container.record.get("interactive") is True
    with (
        terminal.terminal_modes(tty, forward),
        _proxied_signals(container, sig_proxy and not tty),
        _window_sizes(client, tty) as resized,
    ):
        detached = _relay(client, DetachFilter(detach_keys), forward, resized)
    client.close()
    if detached:
        return 0
    return wait_for_exit(container)


@contextlib.contextmanager
def _window_sizes(client: socket.socket, tty: bool) -> Iterator[int | None]:
    """With a pty and a terminal here: its size now, and a descriptor that turns readable at
    each change (SIGWINCH), for _relay to send the new size. The handler only writes a byte:
    sending from it could cut in two a frame the loop was sending (found by review)."""
    if not tty or not os.isatty(1):
        yield None
        return
    send_window_size(client)
    changed, poke = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous = signal.signal(signal.SIGWINCH, lambda *_: _poke(poke))
    try:
        yield changed
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(changed)
        os.close(poke)


def _poke(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):  # one pending wake-up is enough
        os.write(fd, b"w")


def send_window_size(client: socket.socket) -> None:
    """This terminal's size to the hub, for the container's pty."""
    import fcntl
    import termios

    try:
        rows, columns = struct.unpack("4H", fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8))[:2]
        client.sendall(frame(b"w", struct.pack(">HH", rows, columns)))
    except OSError:
        pass


@contextlib.contextmanager
def _proxied_signals(container: Any, proxy: bool) -> Iterator[None]:
    from pysbx.sandbox.lifecycle import signal_container

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(SandboxError):
            signal_container(container, signal.Signals(signum).name)

    from pysbx.sandbox.signals import FORWARDED

    wanted = [signum for signum in FORWARDED if signum != signal.SIGWINCH]  # a terminal's own, not the container's
    previous = {signum: signal.signal(signum, forward) for signum in wanted} if proxy else {}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def connect(folder: Path, wait: float = 0) -> socket.socket:
    """A connection to the container's hub, through the folder's descriptor (no path limit);
    trying for `wait` seconds while the socket is not there yet (a monitor starting)."""
    import time

    deadline = time.monotonic() + wait
    directory = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while True:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                client.connect(f"/proc/self/fd/{directory}/{SOCKET}")
                return client
            except OSError as error:
                client.close()
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"cannot attach: its monitor does not answer ({error.strerror or error})"
                    ) from None
            time.sleep(0.01)
    finally:
        os.close(directory)


def _relay(client: socket.socket, keys: DetachFilter, forward: bool, resized: int | None = None) -> bool:
    """Copy until the hub closes (False) or the keys are typed (True); after each change of
    the terminal's size (`resized` readable), send the new one."""
    received = bytearray()
    sources = [client.fileno(), 0] if forward else [client.fileno()]
    if resized is not None:
        sources.append(resized)
    while True:
        ready, _, _ = select.select(sources, [], [])
        if resized in ready:
            os.read(resized, 64)
            send_window_size(client)
        if 0 in ready:
            data = os.read(0, 65536)
            if not data:
                sources.remove(0)  # end of input: output goes on
            else:
                passed, detached = keys.feed(data)
                if passed:
                    client.sendall(frame(b"i", passed))
                if detached:
                    return True
        if client.fileno() in ready:
            data = client.recv(65536)
            if not data:
                return False
            received += data
            for kind, payload in frames(received):
                _write_all(2 if kind == b"e" else 1, payload)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]

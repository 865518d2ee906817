"""`exec` without -t: the command's stdin, stdout and stderr are pipes this process relays,
never the invoker's own descriptors. A process in the container can take over an exec'd
command (it is an ordinary container process once it runs): with the invoker's terminal or
files it would keep them after exec returns, reading what is typed later and writing where
it likes; with pipes it holds only pipes, which this process stops reading when the command
ends (Docker and podman relay exec's stdio the same way)."""

from __future__ import annotations

import os
import select

from pysbx.sandbox.errors import exit_status

DRAIN_LIMIT = 1 << 20  # after the command ends: what is already in the pipes, up to this


class Pipes:
    """The command's ends (`theirs`: stdin, stdout, stderr) and ours."""

    def __init__(self, interactive: bool) -> None:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.theirs = (in_r, out_w, err_w)
        self.stdin: int | None = in_w
        self.outputs = {out_r: 1, err_r: 2}
        self.interactive = interactive
        if not interactive:  # no -i: the command reads end-of-file at once, as under Docker
            os.close(in_w)
            self.stdin = None

    def give(self) -> None:
        """In the child, before it joins the container: the pipes become its stdio."""
        for target, fd in enumerate(self.theirs):
            os.dup2(fd, target)
        for fd in (*self.theirs, *self.outputs, *([self.stdin] if self.stdin is not None else [])):
            os.close(fd)

    def relay_until(self, child: int) -> int:
        """Copy output to our stdout and stderr (and with -i our stdin to the command) until
        `child` exits; then what is already in the pipes, bounded; its exit status."""
        for fd in self.theirs:
            os.close(fd)
        watched = dict(self.outputs) | ({0: -1} if self.stdin is not None else {})
        while True:
            done, status = os.waitpid(child, os.WNOHANG)
            if done:
                self._drain()
                return exit_status(status)
            ready, _, _ = select.select(list(watched), [], [], 0.05)
            for fd in ready:
                if not self._move(fd, watched):
                    del watched[fd]

    def _move(self, fd: int, watched: dict[int, int]) -> bool:
        """One read from `fd` to where it goes; False at its end."""
        data = os.read(fd, 65536)
        if fd == 0:
            if not data and self.stdin is not None:
                os.close(self.stdin)
                self.stdin = None
            elif self.stdin is not None:
                _write_all(self.stdin, data)
            return bool(data)
        if data:
            _write_all(watched[fd], data)
        return bool(data)

    def _drain(self) -> None:
        for fd, target in self.outputs.items():
            os.set_blocking(fd, False)
            moved = 0
            while moved < DRAIN_LIMIT:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not data:
                    break
                _write_all(target, data)
                moved += len(data)
            os.close(fd)
        if self.stdin is not None:
            os.close(self.stdin)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except BrokenPipeError:
        pass


def detach_stdio(out: int | None = None, err: int | None = None, stdin: int | None = None) -> None:
    """stdin from `stdin` (or /dev/null); stdout and stderr to `out` and `err` (or /dev/null),
    so nothing keeps the terminal or pipe `run -d` was started with (the monitor, its log
    writer, its health checker)."""
    null = os.open(os.devnull, os.O_RDWR)
    sources = (null if stdin is None else stdin, null if out is None else out, null if err is None else err)
    for target, fd in enumerate(sources):
        os.dup2(fd, target)
    for fd in set(sources):
        os.close(fd)

"""`run -d`: the monitor, a process of its own per container (conmon's role), started by
`pysandbox run -d` and outliving it. It is the container's parent as in a foreground run
(sandbox.runner: it maps the user namespace, forwards signals, reaps, enforces the wall
time), holds the container's stdout and stderr and writes them to ctr.log, and records the
status as it changes. `run -d` returns once the command has been exec'd, or fails with the
setup error as a foreground run would.

    pysandbox run -d ──fork──► (setsid) ──fork──► monitor ──► setup ─► init ─► command
                                                     └─fork─► log writer (reads the pipes)

The log writer is a process, not a thread: the monitor forks the container's setup process,
and a fork from a threaded process may take another thread's lock along."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pysbx.sandbox.attach import Hub
from pysbx.sandbox.containers import (
    EXPLAIN,
    EXPLAIN_LIMIT,
    LOG,
    PAUSED,
    STATUS,
    STOP_REQUESTED,
    load,
    process_record,
    release_name,
    write_json,
)
from pysbx.sandbox.errors import EXIT_SETUP_FAILED, SandboxError
from pysbx.sandbox.procfs import start_time
from pysbx.sandbox.restart import Backoff, RestartPolicy
from pysbx.sandbox.runner import RunSpec, hide_host_command_line, run_container
from pysbx.sandbox.signals import FORWARDED
from pysbx.sandbox.state import OWNER_FILE, remove_state
from pysbx.sandbox.stdio import detach_stdio
from pysbx.sandbox.times import now
from pysbx.sandbox.volumes import remove_anonymous

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pysbx.sandbox.notify import Heard

ATTACH_WAIT = 10
WRITER_GRACE = 5  # seconds the log writer may take to write out what is left after the end
LEFT_OVER_SECONDS = 1  # what the pipes hold at the end is read for at most this long


class LogBounds:
    """json-file's rotation: at `max_size` bytes the log becomes ctr.log.1 (and so on up to
    `max_file` files in all); the oldest goes."""

    def __init__(self, max_size: int, max_file: int) -> None:
        self.max_size, self.max_file = max_size, max_file


def start_detached(
    spec: RunSpec, folder: Path, options: DetachOptions, before_start: Callable[[], None] | None = None
) -> None:
    """Start the monitor and return once the container's command runs; SandboxError with
    the setup error (and its exit code) when it does not. `before_start` runs once the
    monitor is there and before the container starts (start -a connects then: the monitor,
    told options.attach_first, waits for it)."""
    started_r, started_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the monitor's side, which _exits
        os.close(started_r)
        code = EXIT_SETUP_FAILED
        try:
            os.setsid()  # no controlling terminal: closing the one `run -d` ran in sends nothing
            hide_host_command_line(f"pysandbox-monitor {options.name}".encode())  # not `run`'s -e values
            code = Monitor(spec, folder, options, started_w).run() if os.fork() == 0 else 0
        finally:
            os._exit(code)
    os.close(started_w)
    os.waitpid(child, 0)
    unattached: SandboxError | None = None
    if before_start is not None:
        try:
            before_start()
        except SandboxError as failure:  # the monitor starts the container all the same, a little later
            unattached = failure
    with os.fdopen(started_r, "rb") as started:
        answer = started.read().decode(errors="replace")  # to the end: the monitor closes it after its word
    if not answer.startswith("ok"):
        error = SandboxError(answer.partition(" ")[2] or "the monitor ended before the container started")
        error.exit_code = int(answer.split()[0]) if answer[:3].isdigit() else EXIT_SETUP_FAILED  # type: ignore[attr-defined]
        raise error
    if unattached is not None:
        raise SandboxError(f"the container started, but not attached: {unattached}")


class DetachOptions:
    """What `run -d` asks of the monitor beyond the container itself. `rules` is saved with
    the spec for exec and the health checker (what the policy said of exec and exec -u,
    with their lines; the user it pins; the image's passwd and group; the health check)."""

    def __init__(
        self, bounds: LogBounds, restart: RestartPolicy, auto_remove: bool, name: str, rules: dict[str, Any]
    ) -> None:
        self.bounds, self.restart, self.auto_remove, self.name = bounds, restart, auto_remove, name
        self.rules = rules
        self.attach_first = False  # start -a: the container starts once a client is attached
        self.pidfile: str | None = None  # --monitor-pidfile: systemd's PIDFile of a generated unit


class Monitor:
    """One container's monitor: the state it guards is the pipe `run -d` waits on (until
    the first start), how many restarts there were, and whether a stop was asked for."""

    def __init__(self, spec: RunSpec, folder: Path, options: DetachOptions, started_w: int) -> None:
        self.spec, self.folder, self.options, self.started_w = spec, folder, options, started_w
        self.restarts = 0
        self.own_fds: tuple[int, ...] = ()  # descriptors of the monitor's that the container's side closes
        self.asked: list[int] = []  # SIGTERMs that came while no container ran
        self.heard_before: Heard | None = None  # --explain: what the runs before this one heard
        self.heard_written = 0.0  # when the listener last had explain.json written
        self.heard_timer: threading.Timer | None = None  # a write the listener left for later
        self.heard_lock = threading.Lock()  # the listener's writes and a run's end
        self.runs_heard = 0  # runs whose record is in heard_before

    def run(self) -> int:
        from pysbx.sandbox.specfile import save_spec

        os.chdir("/")  # holds no folder of the invoker's busy
        _record_owner(self.folder)
        if self.options.pidfile:
            try:
                _write_pidfile(self.options.pidfile)
            except OSError as error:
                self.started(0, f"--monitor-pidfile {self.options.pidfile}: {error.strerror or error}", 0)
                self.write_status("exited", exit_code=EXIT_SETUP_FAILED, finished=now())
                return 0
        save_spec(self.folder, self.spec, self.options.rules)
        self.write_status("created")
        writer = self.start_log_writer()
        checker = self.start_health_checker()
        self.spec.started = self.started
        self.spec.monitor_fds = (self.started_w, *self.own_fds)
        self.spec.freezable = True
        self.spec.keeps_layer = True
        self.spec.on_signal = self.thaw_if_paused
        self.spec.on_heard = self.keep_heard
        self.heard_before = self.heard_so_far()
        self.between_runs()
        status = self.run_until_done()
        if checker:
            os.kill(checker, signal.SIGKILL)
            os.waitpid(checker, 0)
        self.end_log_writer(writer)
        self.write_status("exited", exit_code=status, finished=now(), restarts=self.restarts, **_kept(self.folder))
        if self.options.pidfile:
            _remove_pidfile(self.options.pidfile)
        if self.options.auto_remove:
            anonymous = _anonymous_volumes(self.folder)
            remove_state(str(self.folder))
            release_name(self.options.name, self.folder)
            remove_anonymous(anonymous)
        return 0

    def start_log_writer(self) -> int:
        """Fork the log writer, which is also the attach hub (sandbox.attach): it reads the
        container's stdout and stderr pipes and (with -i) holds its stdin pipe's other end."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if self.spec.interactive else (None, None)
        consoles, console_in = socket.socketpair() if self.spec.tty else (None, None)
        ready_r, ready_w = os.pipe()
        ended_r, self.ended_w = os.pipe()  # closed by the monitor once the container has ended for good
        attached_r, attached_w = os.pipe() if self.options.attach_first else (None, None)
        writer = os.fork()
        if writer == 0:  # pragma: no cover - the log writer, which _exits
            code = 1
            try:
                for fd in (
                    out_w,
                    err_w,
                    ready_r,
                    self.started_w,
                    self.ended_w,
                    *(fd for fd in (in_r, attached_r) if fd is not None),
                ):
                    os.close(fd)
                if consoles is not None:
                    consoles.close()
                detach_stdio()  # `id=$(pysandbox run -d ...)` must not wait for the log writer
                hub = Hub(self.folder, in_w, attached_w, console_in)
                os.close(ready_w)  # listening: `attach` right after `run -d` finds the socket
                write_log(self.folder, {out_r: "stdout", err_r: "stderr"}, self.options.bounds, hub, ended_r)
                code = 0
            finally:
                os._exit(code)
        for fd in (out_r, err_r, ready_w, ended_r, *(fd for fd in (in_w, attached_w) if fd is not None)):
            os.close(fd)
        self.own_fds = (self.ended_w,)  # never the container's: closed at once on its side
        if consoles is not None and console_in is not None:
            console_in.close()
            self.spec.console_sink = lambda master: _send_console(consoles, master)
            self.own_fds += (consoles.fileno(),)
        os.read(ready_r, 1)  # returns at the writer's close (or its end)
        os.close(ready_r)
        if attached_r is not None:  # start -a: its client first (for at most ATTACH_WAIT seconds)
            select.select([attached_r], [], [], ATTACH_WAIT)
            os.close(attached_r)
        detach_stdio(out_w, err_w, in_r)
        return writer

    def end_log_writer(self, writer: int) -> None:
        """The container has ended: the log writer takes what its pipes hold now and ends,
        even if a process outside the container still holds one open (found by review: one
        it was handed through a shared volume kept `stop` waiting); past WRITER_GRACE, it is
        killed."""
        import time

        for target in (1, 2):
            os.dup2(0, target)
        os.close(self.ended_w)
        deadline = time.monotonic() + WRITER_GRACE
        while not os.waitpid(writer, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.kill(writer, signal.SIGKILL)
                os.waitpid(writer, 0)
                return
            time.sleep(0.005)

    def thaw_if_paused(self, signum: int) -> None:
        """A paused container takes a signal only once thawed: a stop that reaches the monitor
        directly (systemd's TERM to the unit's main process) must not leave it frozen. Other
        signals wait, pending, until `unpause` (found by review: HUP unpaused it)."""
        if signum in (signal.SIGTERM, signal.SIGINT) and (self.folder / PAUSED).exists():
            from pysbx.sandbox.pause import thaw_paused

            thaw_paused(self.folder)

    def start_health_checker(self) -> int:
        """The health checker's pid, when the container has a check (0 when not)."""
        from pysbx.sandbox.health import HealthCheck, start_checker

        check = self.options.rules.get("health")
        return start_checker(self.folder, HealthCheck(**check)) if isinstance(check, dict) else 0

    def run_until_done(self) -> int:
        """Run the command, and again while the restart policy says so."""
        import time

        backoff = Backoff()
        while True:
            began = time.monotonic()
            status = run_container(self.spec)
            if self.spec.heard is not None:  # --explain: this run's record, final counts
                self.run_heard(self.spec.heard)
            stopped = (self.folder / STOP_REQUESTED).exists()
            if self.started_w >= 0 or not self.options.restart.wants(status, self.restarts, stopped):
                return status  # a first start that failed is run -d's error, not a restart
            self.restarts += 1
            self.write_status("restarting", exit_code=status, restarts=self.restarts, finished=now())
            if not self.wait_unless_stopped(backoff.next(time.monotonic() - began)):
                return status

    def between_runs(self) -> None:
        """What the signals `stop` and `kill` send do while no container runs (the runner
        forwards them while one does): TERM asks for a stop, the others are ignored, so a
        stop signal that meets a restart's back-off cannot end the monitor unrecorded
        (found by review: QUIT, HUP or USR1 then killed it)."""
        for signum in FORWARDED:
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda signum, _frame: self.asked.append(signum))

    def wait_unless_stopped(self, seconds: float) -> bool:
        """Sleep before a restart; False when a stop came meanwhile (SIGTERM, or its note)."""
        import time

        deadline = time.monotonic() + seconds
        while not self.asked and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return not self.asked and not (self.folder / STOP_REQUESTED).exists()

    def started(self, init: int, error: str, status: int) -> None:
        """The runner's word once the command was exec'd (or failed to be): the status records
        PID 1, and (the first time) `run -d` learns the outcome, with the exit status a
        foreground run gives."""
        if not error:
            (self.folder / PAUSED).unlink(missing_ok=True)  # a new cgroup: nothing of it is frozen
            self.write_status("running", init=process_record(init), started=now(), restarts=self.restarts)
        if self.started_w >= 0:
            with contextlib.suppress(OSError):  # `run -d` was killed: the container runs on (found by review)
                os.write(self.started_w, f"{status or EXIT_SETUP_FAILED} {error}".encode() if error else b"ok")
            os.close(self.started_w)
            self.started_w = -1
            self.spec.monitor_fds = self.own_fds

    def heard_so_far(self) -> Heard | None:
        """What earlier starts of this container heard (`start` makes a new monitor)."""
        from pysbx.sandbox.containers import read_json
        from pysbx.sandbox.notify import heard_from_json

        if self.spec.explain != "explain" or not (self.folder / EXPLAIN).exists():
            return None
        try:
            return heard_from_json(read_json(self.folder, EXPLAIN, EXPLAIN_LIMIT))
        except (OSError, ValueError, KeyError, TypeError, SandboxError):
            return None  # damaged: this start's record replaces it

    def keep_heard(self, heard: Heard) -> None:
        """--explain, from the listener at each new kind of denial: what all runs heard so
        far, in explain.json (`pysandbox explain NAME`), written at most once a second (a
        later new kind within it is written by a timer), so that a container making up kinds
        does not make its own calls wait on the disk."""
        import time

        if time.monotonic() - self.heard_written >= 1.0:
            self._write_heard(heard, self.runs_heard)
        elif self.heard_timer is None or not self.heard_timer.is_alive():
            self.heard_timer = threading.Timer(1.0, self._write_heard, (heard, self.runs_heard))
            self.heard_timer.daemon = True
            self.heard_timer.start()

    def run_heard(self, heard: Heard) -> None:
        """A run ended: its record, final, joins the earlier runs' (a timer of its own
        writes nothing after this)."""
        from pysbx.sandbox.notify import merged

        with self.heard_lock:
            self.runs_heard += 1
            self.heard_before = merged(self.heard_before, heard)
            self._store_heard(self.heard_before)

    def _write_heard(self, heard: Heard, run: int) -> None:
        import time

        from pysbx.sandbox.notify import merged

        with self.heard_lock:
            if run != self.runs_heard:  # that run has ended and was written whole
                return
            self.heard_written = time.monotonic()
            self._store_heard(merged(self.heard_before, heard))

    def _store_heard(self, heard: Heard) -> None:
        from pysbx.sandbox.notify import heard_as_json

        with contextlib.suppress(OSError, RuntimeError):  # a full disk: the container runs on, unexplained
            write_json(self.folder, EXPLAIN, heard_as_json(heard))

    def write_status(self, status: str, **fields: object) -> None:
        write_json(self.folder, STATUS, {"status": status, "monitor": process_record(os.getpid()), **fields})


def _kept(folder: Path) -> dict[str, object]:
    """What the running status said that stays true after exit (when it started)."""
    try:
        with open(folder / STATUS) as current:
            started = json.load(current).get("started")
    except (OSError, ValueError):
        started = None
    return {"started": started} if started else {}


def _anonymous_volumes(folder: Path) -> list[str]:
    """The anonymous volumes (-v /path) container.json names: --rm removes them too."""
    container = load(folder)
    return container.listed("anonymous_volumes") if container is not None else []


def _send_console(channel: socket.socket, master: int) -> None:
    """The new pty master to the attach hub (a copy: the runner keeps and closes its own)."""
    with contextlib.suppress(OSError):  # the hub is gone: nothing attaches any more
        socket.send_fds(channel, [b"m"], [master])


def _write_pidfile(path: str) -> None:
    """The monitor's pid, for systemd (Type=forking, PIDFile=): a new file renamed into place,
    over nothing but a regular file of our own, so a pidfile in a shared folder cannot be
    turned onto another file (a symbolic link, or a hard link to one: O_TRUNC through it
    would empty that file)."""
    import stat

    from pysbx.sandbox.state import StorageError, check_symlinks_on_the_way

    folder, name = os.path.split(os.path.abspath(path))
    try:  # a symlink another user owns on the way could point a root's pidfile anywhere (found by review)
        check_symlinks_on_the_way(folder, os.geteuid())
    except StorageError as error:
        raise OSError(str(error)) from None
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            existing = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and (not stat.S_ISREG(existing.st_mode) or existing.st_uid != os.geteuid()
                                     or existing.st_nlink != 1):  # fmt: skip
            raise OSError(f"{path} exists and is not a file of ours")
        temporary = f".{name}.{os.urandom(6).hex()}"  # not a name another user can guess and take first
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(temporary, flags, 0o644, dir_fd=directory), "w") as out:
            out.write(f"{os.getpid()}\n")
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    finally:
        os.close(directory)


def _remove_pidfile(path: str) -> None:
    """Remove the pidfile if it still names this monitor (a newer one may have replaced it)."""
    try:
        with open(path) as current:
            if current.read().strip() == str(os.getpid()):
                os.unlink(path)
    except OSError:
        pass


def _record_owner(folder: Path) -> None:
    """The monitor owns the state folder now (prune asks whether its owner lives)."""
    temporary = folder / f".{OWNER_FILE}.{os.getpid()}"
    with open(temporary, "w") as owner:
        owner.write(f"{os.getpid()} {start_time(os.getpid())}\n")
    os.replace(temporary, folder / OWNER_FILE)


def write_log(folder: Path, streams: dict[int, str], bounds: LogBounds, hub: Hub, ended: int) -> None:
    """Copy the container's output into ctr.log as json-file lines ({"log", "stream",
    "time"}), one entry per line, rotating at the bounds. A line is cut into entries of at
    most `piece` bytes (Docker cuts at 16 KiB; the last piece of a line ends in "\n", the
    others do not), so no entry, even of bytes JSON writes six times over, passes max-size,
    and nothing a container writes without a newline grows in memory (found by review: one
    30 MB line went into a 1 MiB log whole). Reads until every stream is closed, or `ended`
    is (the monitor: the container has ended), then what the streams hold at that moment."""

    piece = max(256, min(16 << 10, bounds.max_size // 8))
    log = LogFile(folder, bounds)
    pending = {fd: bytearray() for fd in streams}
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    poller.register(ended, select.POLLIN)
    hub.register(poller)

    def take(fd: int) -> bool:
        """One read of stream `fd` into the log (and to attached clients); False at its end."""
        chunk = os.read(fd, 65536)
        if chunk:
            hub.broadcast(streams[fd], chunk)
        pending[fd] += chunk
        log.append(_cut(pending[fd], piece, last=not chunk), streams[fd])
        return bool(chunk)

    while pending:
        for fd, events in poller.poll():
            if fd == ended:
                _take_what_is_left(list(pending), take)
                for stream, buffer in pending.items():  # a last line without its newline
                    log.append(_cut(buffer, piece, last=True), streams[stream])
                pending.clear()
                break
            if fd not in pending:
                hub.handle(fd, events)
            elif not take(fd):
                poller.unregister(fd)
                del pending[fd]
    hub.close()


def _take_what_is_left(fds: list[int], take: Callable[[int], bool]) -> None:
    """After the end: read each stream while it has data now, for LEFT_OVER_SECONDS at most
    (whoever still holds one open may write on)."""
    import time

    deadline = time.monotonic() + LEFT_OVER_SECONDS
    for fd in fds:
        os.set_blocking(fd, False)
        try:
            while time.monotonic() < deadline and take(fd):
                pass
        except BlockingIOError:  # nothing more in it now
            pass


def _cut(buffer: bytearray, piece: int, last: bool) -> list[bytes]:
    """Take the entries `buffer` holds from its front: whole lines (with their newline) and
    pieces of `piece` bytes; at the end of the stream, what is left too. (One cut of the
    buffer at the end: cutting it per line moved the rest of a 64 KiB read once per line.)"""
    entries: list[bytes] = []
    start, size = 0, len(buffer)
    while start < size:
        end = buffer.find(b"\n", start, start + piece)
        if end >= 0:
            cut = end + 1
        elif size - start >= piece or last:
            cut = min(start + piece, size)
        else:
            break
        entries.append(bytes(buffer[start:cut]))
        start = cut
    del buffer[:start]
    return entries


def _open_log(folder: Path) -> int:
    return os.open(folder / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


class LogFile:
    """ctr.log as the log writer appends to it: its descriptor and size (kept here, not
    asked of the kernel per entry), rotated before an entry would pass max-size."""

    def __init__(self, folder: Path, bounds: LogBounds) -> None:
        self.folder, self.bounds = folder, bounds
        self.fd = _open_log(folder)
        self.size = os.fstat(self.fd).st_size

    def append(self, entries: list[bytes], stream: str) -> None:
        """Docker's json-file lines for `entries`, written together (one time for all: they
        came in one read)."""
        from json.encoder import encode_basestring_ascii

        tail = f',"stream":"{stream}","time":"{now()}"}}\n'
        out = bytearray()
        for entry in entries:
            line = ('{"log":' + encode_basestring_ascii(entry.decode(errors="replace")) + tail).encode()
            if self.size + len(out) + len(line) > self.bounds.max_size and self.size + len(out):
                self._write(out)
                out.clear()
                self._rotate()
            out += line
        self._write(out)

    def _write(self, data: bytearray) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(data)

    def _rotate(self) -> None:
        os.close(self.fd)
        _rotate(self.folder, self.bounds.max_file)
        self.fd = _open_log(self.folder)
        self.size = os.fstat(self.fd).st_size


def _rotate(folder: Path, max_file: int) -> None:
    """ctr.log -> ctr.log.1 -> ... -> ctr.log.N-1; with one file, the log starts again."""
    if max_file <= 1:
        os.truncate(folder / LOG, 0)
        return
    for index in range(max_file - 1, 0, -1):
        older = folder / f"{LOG}.{index - 1}" if index > 1 else folder / LOG
        if older.exists():
            os.replace(older, folder / f"{LOG}.{index}")

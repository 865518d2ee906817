"""Outbound access and published ports for a container's own network namespace, through
pasta (Debian's `passt`), the engine podman 5 chose for rootless containers: pysandbox
starts it and nothing of ours moves packets.

The monitor starts pasta once the setup process has made the container's namespaces and
PID 1 exists, and PID 1 waits at a gate (a pipe) before it starts the command, so that the
command never runs without the network it was promised. pasta joins the container's user
and network namespaces through descriptors the monitor opened (`--userns/--netns
/proc/self/fd/N`), configures the tap interface (`--config-net`: the host's address and
routes, as podman does), and is told every forwarding it may do and no other: no automatic
forwarding either way (`-t/-u/-T/-U none`, which default to `auto`), no mapping of the
gateway address to the host's loopback (`--no-map-gw`), DNS forwarded from one address
only. A published port is one `-t ADDR/HOST:CONTAINER` each (a range can bind in part
without a word: found by research for #16). pasta runs in the foreground as a child of the
monitor with the parent-death signal set, so a killed monitor leaves no pasta and no bound
port; the monitor stops it when the container ends. Run by root, pasta must stay root to
enter a user namespace that root owns (`--runas 0`; it drops to nobody otherwise and cannot):
it then isolates itself (its own namespaces, no capabilities, a seccomp filter)."""

from __future__ import annotations

import fcntl
import os
import select
import time

from pysbx.sandbox import linux
from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

ENGINES = ("pasta",)  # network modes an engine of ours provides (the others: none, loopback, host)
PASTA_DNS = "169.254.1.1"  # the container's nameserver: pasta forwards it to the host's first one
READY_SECONDS = 10.0  # pasta configures the namespace and binds its ports in 5-40 ms here
_LOG = "pasta.log"
_READY = "/proc/self/fd/5"  # pasta's --pid file: a pipe, which it writes once it is ready


class Published(Record):
    """One published port: HOST_IP:HOST_PORT on the host to CONTAINER_PORT inside."""

    __slots__ = ("container_port", "host_ip", "host_port", "protocol")

    def __init__(self, host_ip: str, host_port: int, container_port: int, protocol: str) -> None:
        self.host_ip, self.host_port, self.container_port, self.protocol = host_ip, host_port, container_port, protocol

    def __str__(self) -> str:
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{self.container_port}/{self.protocol} -> {host}:{self.host_port}"


def nameserver(mode: str) -> str | None:
    """The address the container's /etc/resolv.conf names under `mode` (None: the host's)."""
    return PASTA_DNS if mode == "pasta" else None


def pasta_arguments(ports: list[Published], as_root: bool) -> list[str]:
    """pasta's command line: only the forwardings asked for (its defaults are `auto`)."""
    argv = ["pasta", "--foreground", "--quiet", "--config-net", "--no-map-gw", "--dns-forward", PASTA_DNS]
    argv += ["-T", "none", "-U", "none"]  # nothing of the host's loopback forwarded into the container
    for flag, protocol in (("-t", "tcp"), ("-u", "udp")):
        chosen = [port for port in ports if port.protocol == protocol]
        argv += [flag, "none"] if not chosen else [word for port in chosen for word in (flag, _spec(port))]
    argv += ["--pid", _READY]  # written once the namespace is configured and every port bound
    if as_root:
        argv += ["--runas", "0"]
    return [*argv, "--userns", "/proc/self/fd/3", "--netns", "/proc/self/fd/4"]


def _spec(port: Published) -> str:
    return f"{port.host_ip}/{port.host_port}:{port.container_port}"


class Engine:
    """A running pasta for one container run."""

    def __init__(self, pid: int, folder: str) -> None:
        self.pid, self.folder = pid, folder

    def stop(self) -> None:
        """End it and reap it: its ports are free once this returns."""
        _signal(self.pid, signal.SIGTERM)
        if not _reap(self.pid, 2.0):
            _kill(self.pid)


def start(mode: str, namespaces: list[int], ports: list[Published], folder: str) -> Engine:
    """Start the engine for the container's user and network `namespaces` (descriptors) and
    wait until it is ready; SandboxError with the engine's own words when it cannot (a port
    taken meanwhile, /dev/net/tun out of reach)."""
    if mode != "pasta":
        raise SandboxError(f"network {mode!r} has no engine")
    program = _find("pasta")
    if program is None:
        raise SandboxError("--network pasta needs pasta (Debian's package passt): install it")
    argv = pasta_arguments(ports, os.geteuid() == 0)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    log = os.open(os.path.join(folder, _LOG), flags, 0o600)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = _spawn(program, argv, [*namespaces, ready_w, log])
    finally:
        for fd in (ready_w, log):
            os.close(fd)
    engine = Engine(pid, folder)
    try:
        _wait_until_ready(engine, ready_r)
    finally:
        os.close(ready_r)
    return engine


def _spawn(program: str, argv: list[str], fds: list[int]) -> int:
    """pasta as a child with fds 3 and 4 the namespaces, 5 the readiness pipe, stderr its
    log, nothing else of ours open, default signal dispositions, the parent-death signal set."""
    parent = os.getpid()
    pid = os.fork()
    if pid != 0:
        return pid
    try:  # pragma: no cover - the child execs or _exits
        null = os.open(os.devnull, os.O_RDWR)
        # above every target first, so that no dup2 below overwrites a source not yet copied
        userns, netns, ready, log, null = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (*fds, null))
        for source, target in ((null, 0), (null, 1), (log, 2), (userns, 3), (netns, 4), (ready, 5)):
            os.dup2(source, target)  # dup2's copy is inheritable
        os.closerange(6, os.sysconf("SC_OPEN_MAX"))
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the monitor died before the line above
            os._exit(1)
        for signum in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.execv(program, argv)
    finally:
        os._exit(127)


def _wait_until_ready(engine: Engine, ready_r: int) -> None:
    """pasta writes its pid to the readiness pipe once the namespace is configured and its
    ports are bound; it exits with a message (the pipe ends empty) when it cannot."""
    if not select.select([ready_r], [], [], READY_SECONDS)[0]:
        _kill(engine.pid)
        raise SandboxError(f"pasta did not set up the network within {READY_SECONDS:.0f} s")
    if not os.read(ready_r, 64).strip():
        _, status = os.waitpid(engine.pid, 0)
        raise SandboxError(f"pasta could not set up the network: {_said(engine.folder, status)}")


def _said(folder: str, status: int) -> str:
    """pasta's last words from its log (without its complaints about a missing syslog)."""
    try:
        fd = os.open(os.path.join(folder, _LOG), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, errors="replace") as log:
            lines = [line.strip() for line in log.read(1 << 16).splitlines()]
    except OSError:
        lines = []
    said = [line for line in lines if line and not line.startswith("Failed to send")]
    message = said[-1] if said else f"it exited with status {os.waitstatus_to_exitcode(status)}"
    if "tun" in message.lower() and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        message += " (/dev/net/tun must be readable and writable by you: Debian makes it mode 0666)"
    return message


def _reap(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        time.sleep(0.005)
    return False


def _kill(pid: int) -> None:
    _signal(pid, signal.SIGKILL)
    _reap(pid, 5.0)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:  # reaped already
        return


def _find(name: str) -> str | None:
    """`name` in PATH's absolute folders (never one relative to wherever run was started)."""
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/sbin"]:
        candidate = os.path.join(folder, name)
        if os.path.isabs(folder) and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None

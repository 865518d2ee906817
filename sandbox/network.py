"""Outbound access and published ports for a container's own network namespace, through
the engines the container world trusts, from Debian's packages: pasta (package `passt`,
podman 5's choice for rootless containers) and slirp4netns (podman 4's). pysandbox starts
them; nothing of ours moves packets.

The monitor starts the engine once PID 1 exists and has handed it the container's user and
network namespaces (sandbox.runner's gate), and PID 1 waits at that gate before it starts the
command, so the command never runs without the network it was promised. The engine joins the
namespaces through those descriptors (`/proc/self/fd/3` and `4`), configures the interface,
and says it is ready on a pipe (pasta's `--pid` file, slirp4netns's `--ready-fd`). It is told
every forwarding it may do and no other:

- pasta: `--config-net` (the host's address and routes, as podman does), no automatic port
  forwarding either way (`-t/-u/-T/-U` default to `auto`: `-T/-U none`), no mapping of the
  gateway to the host's loopback (`--no-map-gw`), DNS forwarded from one address; a
  published port is one `-t ADDR/HOST:CONTAINER` each (a range can bind in part without a
  word: found by research for #16). Run by root, pasta must stay root to enter a user
  namespace root owns (`--runas 0`); it then confines itself (its own namespaces, no
  capabilities, a seccomp filter).
- slirp4netns: `--configure` (10.0.2.100/24, DNS at 10.0.2.3), `--disable-host-loopback`
  (10.0.2.2 does not reach the host's 127.0.0.1), `--enable-seccomp`, and as root
  `--enable-sandbox` (a mount namespace of its own, no capability but NET_BIND_SERVICE); published
  ports through its API socket (`add_hostfwd`), one request per port, before PID 1 hears
  "ready".

The engine runs in the foreground as a child of the monitor with the parent-death signal
set (and slirp4netns also ends when its `--exit-fd` closes), so a killed monitor leaves no
engine and no bound port; the monitor stops it when the container ends."""

from __future__ import annotations

import fcntl
import os
import select
import stat

from pysbx.policies.record import Record
from pysbx.sandbox import linux
from pysbx.sandbox.errors import SandboxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

ENGINES = ("pasta", "slirp4netns")  # network modes an engine provides (the others: none, loopback, host)
PASTA_DNS = "169.254.1.1"  # the container's nameserver: pasta forwards it to the host's first one
SLIRP_DNS = "10.0.2.3"  # slirp4netns's own resolver address, forwarded to the host's
READY_SECONDS = 10.0  # pasta configures the namespace and binds its ports in 5-40 ms here
_PACKAGES = {"pasta": "passt", "slirp4netns": "slirp4netns"}
_API = "slirp4netns.sock"  # relative to the container's folder: a socket path has 107 bytes at most
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
    return {"pasta": PASTA_DNS, "slirp4netns": SLIRP_DNS}.get(mode)


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


def slirp4netns_arguments(as_root: bool) -> list[str]:
    """slirp4netns's command line (fd 5: ready, fd 6: its end when it closes). Run by root, it
    confines itself (--enable-sandbox: a mount namespace of its own, every capability but
    NET_BIND_SERVICE dropped); an ordinary user's cannot with namespaces given as paths
    (setegid(0) fails: "parent failed"), and holds no more than the user anyway."""
    return ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
            *(["--enable-sandbox"] if as_root else []), "--enable-seccomp", "--userns-path=/proc/self/fd/3",
            "--netns-type=path", "--ready-fd=5", "--exit-fd=6", "--api-socket", _API, "/proc/self/fd/4",
            "tap0"]  # fmt: skip


class Engine:
    """A running engine for one container run."""

    def __init__(self, mode: str, pid: int, folder: str, exit_w: int = -1) -> None:
        self.mode, self.pid, self.folder, self.exit_w = mode, pid, folder, exit_w

    def stop(self) -> None:
        """End it and reap it: its ports are free once this returns. SIGKILL at once: the
        container is gone, the engine has nothing to save, and on TERM both took 15-45 ms."""
        if self.exit_w >= 0:
            os.close(self.exit_w)
            self.exit_w = -1
        _kill(self.pid)


def start(mode: str, namespaces: list[int], ports: list[Published], folder: str) -> Engine:
    """Start the engine for the container's user and network `namespaces` (descriptors) and
    wait until it is ready, its ports published; SandboxError with the engine's own words
    when it cannot (a port taken meanwhile, /dev/net/tun out of reach)."""
    if mode not in ENGINES:
        raise SandboxError(f"network {mode!r} has no engine")
    program = find_program(mode)
    if program is None:
        raise SandboxError(f"--network {mode} needs {mode} (Debian's package {_PACKAGES[mode]}): install it")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    log = os.open(os.path.join(folder, f"{mode}.log"), flags, 0o600)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC) if mode == "slirp4netns" else (-1, -1)
    as_root = os.geteuid() == 0
    argv = pasta_arguments(ports, as_root) if mode == "pasta" else slirp4netns_arguments(as_root)
    try:
        pid = spawn(program, argv, [*namespaces, ready_w, *([exit_r] if exit_r >= 0 else [])], log, folder)
    finally:
        for fd in (ready_w, log, exit_r):
            if fd >= 0:
                os.close(fd)
    engine = Engine(mode, pid, folder, exit_w)
    try:
        _wait_until_ready(engine, ready_r)
        if mode == "slirp4netns":
            _forward_ports(engine, ports)
    except BaseException:
        engine.stop()
        raise
    finally:
        os.close(ready_r)
    return engine


def _forward_ports(engine: Engine, ports: list[Published]) -> None:
    """slirp4netns publishes through its API socket: one add_hostfwd per port."""
    import json
    import socket

    from pysbx.sandbox.jsonread import loads

    folder = os.open(engine.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for port in ports:
            request = {"execute": "add_hostfwd", "arguments": {"proto": port.protocol, "host_addr": port.host_ip,
                       "host_port": port.host_port, "guest_port": port.container_port}}  # fmt: skip
            with socket.socket(socket.AF_UNIX) as api:
                api.settimeout(READY_SECONDS)
                api.connect(f"/proc/self/fd/{folder}/{_API}")  # the folder's path may be too long for a socket
                api.sendall(json.dumps(request).encode())
                api.shutdown(socket.SHUT_WR)
                answer = loads(api.recv(1 << 16) or b"{}")
            if not isinstance(answer, dict) or "return" not in answer:
                said = answer.get("error", {}).get("desc") if isinstance(answer, dict) else None
                raise SandboxError(f"slirp4netns could not publish {port}: {said or answer}")
    finally:
        os.close(folder)


def spawn(
    program: str, argv: list[str], fds: list[int], log: int, folder: str, stdin: int = -1, userns: int = -1
) -> int:
    """The engine as a child: `fds` become 3, 4, 5..., stdin `stdin` (else /dev/null),
    stdout and stderr its log, its working folder the container's, nothing else of ours
    open, default signal dispositions, and the parent-death signal set; in the user
    namespace `userns` first when one is given."""
    parent = os.getpid()
    pid = os.fork()
    if pid != 0:
        return pid
    try:  # pragma: no cover - the child execs or _exits
        if userns >= 0:  # before the parent-death signal below: a change of credentials clears it
            linux.setns(userns, linux.CLONE_NEWUSER, "network keeper's user")
        null = os.open(os.devnull, os.O_RDWR)
        # above every target first, so that no dup2 below overwrites a source not yet copied
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10 + len(fds)) for fd in (null, log, *fds)]
        given = fcntl.fcntl(stdin, fcntl.F_DUPFD_CLOEXEC, 10 + len(fds)) if stdin >= 0 else moved[0]
        for target, source in enumerate([given, moved[1], *moved[1:]]):
            os.dup2(source, target)  # dup2's copy is inheritable
        os.closerange(len(fds) + 3, os.sysconf("SC_OPEN_MAX"))
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the monitor died before the line above
            os._exit(1)
        for signum in range(1, signal.NSIG):  # an ignored signal stays ignored across exec
            if signum not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(signum, signal.SIG_DFL)
                except (OSError, ValueError):  # the real-time ones Python does not know
                    continue
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.chdir(folder)
        os.execv(program, argv)
    finally:
        os._exit(127)


def _wait_until_ready(engine: Engine, ready_r: int) -> None:
    """The engine writes to the readiness pipe once the namespace is configured (pasta: its
    pid, once its ports are bound too; slirp4netns: "1"); it exits with a message (the pipe
    ends empty) when it cannot."""
    if not select.select([ready_r], [], [], READY_SECONDS)[0]:
        raise SandboxError(f"{engine.mode} did not set up the network within {READY_SECONDS:.0f} s")
    if not os.read(ready_r, 64).strip():
        _, status = os.waitpid(engine.pid, 0)
        raise SandboxError(f"{engine.mode} could not set up the network: {said(engine, status)}")


def said(engine: Engine, status: int) -> str:
    """The engine's last words from its log (without pasta's complaints about a missing syslog)."""
    try:
        fd = os.open(
            os.path.join(engine.folder, f"{engine.mode}.log"),
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
        )
        with os.fdopen(fd, errors="replace") as log:
            lines = [line.strip() for line in log.read(1 << 16).splitlines()]
    except OSError:
        lines = []
    said = [line for line in lines if line and not line.startswith("Failed to send")]
    message = said[-1] if said else f"it exited with status {os.waitstatus_to_exitcode(status)}"
    if "tun" in message.lower() and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        message += " (/dev/net/tun must be readable and writable by you: Debian makes it mode 0666)"
    return message


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # SIGKILL cannot be caught: the wait is the kernel's teardown
    except (ProcessLookupError, ChildProcessError):  # reaped already
        return


def find_program(name: str) -> str | None:
    """The engine's program: Debian's first, then PATH's absolute folders (never one relative
    to wherever run was started). For root, only a program that root owns and no one else
    may write: root's pasta runs as root until it has confined itself."""
    for folder in ["/usr/bin", "/usr/sbin", *os.environ.get("PATH", "").split(os.pathsep)]:
        candidate = os.path.join(folder, name)
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        if not os.path.isabs(folder) or not stat.S_ISREG(info.st_mode) or not os.access(candidate, os.X_OK):
            continue
        if os.geteuid() != 0 or (info.st_uid == 0 and not info.st_mode & 0o022):
            return candidate
    return None

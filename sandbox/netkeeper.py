"""The user's network keeper: one user namespace and one network namespace per user (per
storage root) that hold the bridges of the bridge networks (sandbox.networks), podman's
"rootless netns" design; for root the same, owned by root. The host's network namespace
gets no bridge, no veth and no firewall rule of ours.

Processes, all the user's own:
- the supervisor, in the host's namespaces: it maps the keeper's user namespace (newuidmap
  and newgidmap for a user: their uid as 0, their subordinate ids above; for root, the range
  reserved for root's containers: root's keeper is never root), gives the keeper its outbound
  access through pasta (or slirp4netns), the engine sandbox.network starts for a container,
  here for the keeper's namespace, and relays the monitors' connections to it, checking
  their credentials where they are what they are;
- the keeper, PID 1 of a pid namespace of its own inside the keeper's user, network and mount
  namespaces: it serves the containers' monitors on a socket in the private storage folder,
  allocates their addresses, and runs netavark (Debian's package; podman's network stack) to
  attach each container and detach it again. netavark starts aardvark-dns, which answers the
  names of a network's containers on its gateway, and dies with the keeper's pid namespace.

A container on a bridge network has its user namespace made inside the keeper's (mapped by a
helper there to the same host ids it would otherwise get: sandbox.idmap's plan, translated),
so that netavark, root of the keeper's user namespace, may configure the container's network
namespace. The container's monitor holds a connection to the keeper while the container
runs; the keeper detaches the container when it ends or when that connection drops (the
monitor killed), and ends, with everything it holds, once no container is left. Everything
dies with the supervisor (the parent-death signal down the chain).

aardvark-dns answers the containers, so it runs with no capability (util-linux's setpriv), in
a mount namespace that hides the host's homes, /tmp and pysandbox's storage behind empty
tmpfs mounts, with a read-only root, a /dev of four devices and a /proc of its own."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import socket
import subprocess
import sys

from pysbx.sandbox import linux, network
from pysbx.sandbox.idmap import IdMaps, IdRange
from pysbx.sandbox.networks import Network, NetworkError, container_addresses
from pysbx.sandbox.userns import become_namespace_root, make_user_namespace, map_child

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from pysbx.sandbox.rootlessport import Forwarder

SOCKET, LOCK, LOG = "keeper.sock", "keeper.lock", "keeper.log"
PROTOCOL = 4  # the requests a keeper answers: a keeper of another pysandbox is refused, not misread
START_SECONDS = 10.0  # the keeper's namespaces and its engine take 40-80 ms here
IDLE_SECONDS = 0.5  # how long a keeper with no container waits for the next before it ends
NETAVARK, AARDVARK = "/usr/lib/podman/netavark", "/usr/lib/podman/aardvark-dns"
CONFINED_AARDVARK = "/run/aardvark-dns"  # what netavark starts: aardvark-dns with no capability (_confine_aardvark)
_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # netavark runs iptables and ip by name
HIDDEN = ("/home", "/root", "/tmp", "/var/tmp", "/var/lib/pysandbox", "/srv", "/mnt", "/media")
_MESSAGE = 1 << 16


class Keeper:
    """A container's hold on the keeper: one connection, kept while the container runs."""

    def __init__(self, sock: socket.socket, userns: int, hello: dict[str, Any]) -> None:
        self.sock, self.userns = sock, userns
        self.forwarder: Forwarder | None = None  # the container's published ports (sandbox.rootlessport)
        os.set_inheritable(userns, False)  # recv_fds gives descriptors without close-on-exec
        self.dns: str | None = hello.get("dns")
        self.uids = tuple(IdRange(*extent) for extent in hello["uids"])
        self.gids = tuple(IdRange(*extent) for extent in hello["gids"])

    def ask(self, message: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        """One request, one answer; NetworkError with the keeper's words when it refuses."""
        try:
            socket.send_fds(self.sock, [json.dumps(message).encode()], fds or [])
            answer = json.loads(self.sock.recv(_MESSAGE) or b'{"error": "the network keeper ended"}')
        except (OSError, ValueError) as error:
            raise NetworkError(f"the network keeper did not answer: {error}") from None
        if "error" in answer:
            raise NetworkError(str(answer["error"]))
        return dict(answer)

    def reserve(self, name: str, joined: list[Network], aliases: list[str]) -> dict[str, str]:
        """An address on each network (network name -> address)."""
        definitions = {network.name: network.definition() for network in joined}
        answer = self.ask({"op": "reserve", "name": name, "networks": definitions, "aliases": aliases})
        return dict(answer["addresses"])

    def change(self, operation: str, container: str, joined: Network, aliases: list[str]) -> None:
        """network connect (or disconnect) of a running container to (from) `joined`."""
        self.ask({"op": operation, "container": container, "network": joined.name,
                  "definition": joined.definition(), "aliases": aliases})  # fmt: skip

    def attach(self, netns: int) -> None:
        """netavark setup for the container whose network namespace `netns` is."""
        self.ask({"op": "setup"}, [netns])

    def stop(self) -> None:
        """Detach the container and let go of the keeper (sandbox.runner calls every
        network's engine's stop once the container has ended)."""
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        with contextlib.suppress(NetworkError):  # the keeper is gone: it took the attachment with it
            self.ask({"op": "teardown"})
        self.close()

    def close(self) -> None:
        if self.userns >= 0:
            os.close(self.userns)
            self.userns = -1
        self.sock.close()

    def maps_inside(self, maps: IdMaps) -> tuple[str, str]:
        """The container's uid_map and gid_map written from inside the keeper's user
        namespace: the host ids of sandbox.idmap's plan, as the keeper's ids (one line per
        extent of the keeper's map, which the kernel requires)."""
        return _translate(maps.uids, self.uids, "uid"), _translate(maps.gids, self.gids, "gid")


def _translate(wanted: tuple[IdRange, ...], keeper: tuple[IdRange, ...], kind: str) -> str:
    lines = []
    for mapped in wanted:
        start, end = mapped.host, mapped.host + mapped.size
        covered = 0
        for extent in keeper:
            low, high = max(start, extent.host), min(end, extent.host + extent.size)
            if low < high:
                container = mapped.container + low - start
                lines.append(f"{container} {extent.container + low - extent.host} {high - low}\n")
                covered += high - low
        if covered != mapped.size:
            raise NetworkError(f"host {kind}s {start}-{end - 1} are not mapped in the network keeper's namespace")
    return "".join(lines)


def write_maps_inside(pid: int, keeper: Keeper, maps: IdMaps) -> None:
    """Map process `pid`'s new user namespace (a child of the keeper's) from a helper that
    joins the keeper's user namespace: only a process there may write them. OSError with
    the helper's words when it cannot."""
    uid_map, gid_map = keeper.maps_inside(maps)
    deny_setgroups = not maps.setgroups_allowed  # asked here: inside, root's euid is no longer 0
    errors_r, errors_w = os.pipe2(os.O_CLOEXEC)
    helper = os.fork()
    if helper == 0:  # pragma: no cover - the helper _exits
        try:
            os.close(errors_r)
            linux.setns(keeper.userns, linux.CLONE_NEWUSER, "network keeper's user")
            if deny_setgroups:
                _write(f"/proc/{pid}/setgroups", "deny")
            _write(f"/proc/{pid}/uid_map", uid_map)
            _write(f"/proc/{pid}/gid_map", gid_map)
            os._exit(0)
        except BaseException as error:
            os.write(errors_w, str(error).encode(errors="replace")[:4000])
            os._exit(1)
    os.close(errors_w)
    with os.fdopen(errors_r, "rb") as errors:
        said = errors.read().decode(errors="replace")
    _, status = os.waitpid(helper, 0)
    if status != 0:
        raise OSError(f"mapping the container's ids inside the network keeper failed: {said or status}")


def join_new_user_namespace(keeper_userns: int) -> None:
    """Join a user namespace made inside the keeper's (a container's on a bridge). A helper
    makes it: only an id mapped in the keeper's may, and root is not mapped there (the
    keeper's 0 is the first id of root's reserved range: keeper_maps); this process joins
    it (the caller is the keeper's creator: it has every capability there) and stays the
    invoking user until its namespace is mapped, so that it still reaches the storage."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    helper = os.fork()
    if helper == 0:  # pragma: no cover - the helper _exits
        try:
            ours.close()
            linux.setns(keeper_userns, linux.CLONE_NEWUSER, "network keeper's user")
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            linux.unshare(linux.CLONE_NEWUSER)
            made = os.open("/proc/self/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            socket.send_fds(theirs, [b"u"], [made])
            os._exit(0)
        except BaseException as error:
            with contextlib.suppress(OSError):
                theirs.send(str(error).encode(errors="replace")[:4000])
            os._exit(1)
    theirs.close()
    try:
        said, fds, _, _ = socket.recv_fds(ours, 4096, 1)
    finally:
        ours.close()
        os.waitpid(helper, 0)
    if not fds:
        raise OSError(f"making the container's user namespace inside the network keeper's failed: {said.decode()}")
    try:
        linux.setns(fds[0], linux.CLONE_NEWUSER, "user (made inside the network keeper's)")
    finally:
        os.close(fds[0])


def _write(path: str, text: str) -> None:
    with open(path, "w") as target:
        target.write(text)


# ----- joining: connect, or start the keeper first ----------------------------------------


def join(folder: str) -> Keeper:
    """The keeper of the storage's `folder` (sandbox.networks.folder()), started when none
    runs. One start at a time: the lock file, which the keeper also takes before it ends, so
    that it never ends under a container that is joining."""
    with _locked(folder) as directory:
        sock = _connect(directory)
        if sock is None:
            _start(directory)
            sock = _connect(directory)
        if sock is None:
            raise NetworkError(f"the network keeper did not start (its log: {os.path.join(folder, LOG)})")
        return _hello(sock)


def running(folder: str) -> Keeper | None:
    """The keeper, if one runs; never starts one (network rm asks who uses a network).
    Under the lock as well: a keeper that is ending has then ended."""
    if not os.path.isdir(folder):
        return None
    with _locked(folder) as directory:
        sock = _connect(directory)
        return None if sock is None else _hello(sock)


@contextlib.contextmanager
def _locked(folder: str) -> Iterator[int]:
    """The folder (a descriptor), with its lock file held: no keeper starts or ends meanwhile."""
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        lock = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=directory)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield directory
        finally:
            os.close(lock)
    finally:
        os.close(directory)


def _connect(directory: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{directory}/{SOCKET}")  # the folder's path may be too long for a socket
    except OSError:
        sock.close()
        return None
    return sock


def _hello(sock: socket.socket) -> Keeper:
    sock.settimeout(START_SECONDS * 3)  # a keeper busy attaching other containers answers in turn
    try:
        data, fds, _, _ = socket.recv_fds(sock, _MESSAGE, 1)
        hello = json.loads(data)
    except (OSError, ValueError) as error:
        sock.close()
        raise NetworkError(f"the network keeper did not answer: {error}") from None
    if len(fds) != 1 or hello.get("protocol") != PROTOCOL:
        sock.close()
        for fd in fds:
            os.close(fd)
        if fds:
            raise NetworkError(
                "the network keeper that runs was started by another version of pysandbox: stop the containers on "
                "bridge networks (pysandbox ps), and it ends with the last of them"
            )
        raise NetworkError(str(hello.get("error", "the network keeper refused the connection")))
    return Keeper(sock, fds[0], hello)


def _start(directory: int) -> None:
    """Bind the socket, start the supervisor (detached: a session of its own, not our child)
    and wait for its word that the keeper runs with its engine."""
    with contextlib.suppress(FileNotFoundError):  # a keeper killed with SIGKILL left it
        os.unlink(SOCKET, dir_fd=directory)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    listener.bind(f"/proc/self/fd/{directory}/{SOCKET}")
    listener.listen(64)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    middle = os.fork()
    if middle == 0:  # pragma: no cover - becomes the supervisor or _exits
        try:
            os.close(ready_r)
            os.setsid()
            if os.fork() == 0:
                _supervise(listener.fileno(), directory, ready_w)
        finally:
            os._exit(0)
    listener.close()
    os.close(ready_w)
    os.waitpid(middle, 0)
    with os.fdopen(ready_r, "rb") as ready:
        if not select.select([ready], [], [], START_SECONDS)[0]:
            raise NetworkError(f"the network keeper did not start within {START_SECONDS:.0f} s")
        word = ready.read().decode(errors="replace")
    if word != "ready":
        raise NetworkError(f"the network keeper could not start: {word or 'it ended'}")


# ----- the supervisor: host side ----------------------------------------------------------


def _supervise(listener: int, directory: int, ready_w: int) -> None:  # pragma: no cover - a detached process
    status = 1
    try:
        _detach_from_caller(listener, directory, ready_w)
        from pysbx.sandbox.runner import hide_host_command_line

        hide_host_command_line(b"pysandbox-network-keeper")
        status = _keep(listener, directory, ready_w)
    except BaseException as error:
        _say(ready_w, f"{type(error).__name__}: {error}")
    finally:
        os._exit(status)


def _detach_from_caller(listener: int, directory: int, ready_w: int) -> None:
    """Nothing of the run that started us stays open here; stderr is the keeper's log."""
    log = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=directory)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for target, source in ((0, null), (1, null), (2, log)):
        os.dup2(source, target)
    keep = {0, 1, 2, listener, directory, ready_w}
    for fd in _open_descriptors():
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    for fd in (listener, directory, ready_w):
        os.set_inheritable(fd, False)
    import signal

    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _open_descriptors() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc/self/fd") if entry.isdigit()]


def _keep(listener: int, directory: int, ready_w: int) -> int:
    """Start the keeper's namespaces, map them, give them the engine, say ready, and wait:
    when the keeper ends, stop the engine."""
    import signal

    maps = keeper_maps()
    mapped_r, mapped_w = os.pipe2(os.O_CLOEXEC)
    unshared_r, unshared_w = os.pipe2(os.O_CLOEXEC)
    gate, gate_inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    # the keeper's own description of the lock file (one that no one else shares), which it
    # takes before it ends; opened here: the keeper's ids may not be the storage's owner
    lock = os.open(LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    keeper = os.fork()
    if keeper == 0:  # pragma: no cover
        try:
            gate.close()
            for fd in (ready_w, listener, directory):
                os.close(fd)
            _enter_namespaces(unshared_w, mapped_r, lock, gate_inside)
        except BaseException as error:
            print(f"keeper: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        finally:
            os._exit(1)
    os.close(lock)
    gate_inside.close()
    os.close(unshared_w)
    os.close(mapped_r)
    with os.fdopen(unshared_r, "rb", buffering=0), os.fdopen(mapped_w, "wb", buffering=0):
        if not map_child(keeper, unshared_r, mapped_w, maps):
            raise NetworkError("the keeper's user namespace was not made")
    _, namespaces, _, _ = socket.recv_fds(gate, 16, 2)
    if len(namespaces) != 2:
        raise NetworkError("the keeper did not hand over its namespaces (see keeper.log)")
    mode = "pasta" if network.find_program("pasta") else "slirp4netns"
    folder = f"/proc/self/fd/{directory}"
    engine = network.start(mode, namespaces, [], os.readlink(folder))
    for fd in namespaces:
        os.close(fd)
    gate.sendall(json.dumps({"dns": network.nameserver(mode)}).encode())
    _say(ready_w, "ready")
    signal.signal(signal.SIGTERM, lambda *_: os.kill(keeper, signal.SIGKILL))
    _relay(socket.socket(fileno=listener), gate, directory)
    os.waitpid(keeper, 0)
    engine.stop()
    return 0


def _relay(listener: socket.socket, gate: socket.socket, directory: int) -> None:
    """Accept the monitors' connections in the host's namespaces, where their credentials
    are what they are, and hand the keeper those of its own user only (SO_PEERCRED): inside,
    root's keeper would see root as nobody. Until the keeper ends: it asks first ("end"),
    holding the lock, and the socket is removed before it lets go."""
    while True:
        ready = select.select([listener, gate], [], [])[0]
        if gate in ready:
            if gate.recv(16) == b"end":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(SOCKET, dir_fd=directory)
                listener.close()
                gate.sendall(b"ok")
            else:  # killed: the socket stays until the next start replaces it
                listener.close()
            return
        connection, _ = listener.accept()
        with connection:
            uid = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[4:8]
            if int.from_bytes(uid, sys.byteorder) == os.geteuid():
                socket.send_fds(gate, [b"c"], [connection.fileno()])


def keeper_maps() -> IdMaps:
    """Every id this user's containers may have: their uid and subordinate ranges
    (sandbox.idmap's plan with no policy's narrowing). For root, the range reserved for
    root's containers, never root itself: the keeper's processes (aardvark-dns among them)
    are then the containers' unprivileged ids on the host, owners of none of root's files."""
    if os.geteuid() == 0:
        from pysbx.sandbox.idmap import GROUP, PASSWD, SUBGID, SUBUID, reserved_range

        uids, gids = reserved_range(SUBUID, PASSWD), reserved_range(SUBGID, GROUP)
        return IdMaps((uids,), (gids,), via_helpers=False)
    from pysbx.policies.model import IdMapping
    from pysbx.sandbox.idmap import plan_id_maps

    return plan_id_maps(IdMapping())


def _say(fd: int, word: str) -> None:
    try:
        os.write(fd, word.encode(errors="replace"))
        os.close(fd)
    except OSError:
        pass


# ----- the keeper: inside its namespaces --------------------------------------------------


def _enter_namespaces(
    unshared_w: int, mapped_r: int, lock: int, gate: socket.socket
) -> None:  # pragma: no cover - runs in the keeper's process
    import signal

    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    make_user_namespace(unshared_w)
    become_namespace_root(mapped_r)
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    linux.unshare(linux.CLONE_NEWNET | linux.CLONE_NEWNS | linux.CLONE_NEWPID)
    _private_mounts()
    first = os.fork()
    if first != 0:
        os.close(lock)  # the first process's copy: the lock is the keeper's alone
        _, _status = os.waitpid(first, 0)
        os._exit(1)
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    # a /proc of the keeper's pid namespace: the host's processes out of sight
    linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as ports:  # this namespace's only
        ports.write("0")
    linux.set_loopback_up()
    own = [os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name in ("user", "net")]
    socket.send_fds(gate, [b"namespaces"], own)
    for fd in own:
        os.close(fd)
    hello = json.loads(gate.recv(_MESSAGE) or b"{}")
    with open("/run/resolv.conf", "w") as resolv:  # aardvark-dns's upstream: the engine's forwarder
        resolv.write(f"nameserver {hello.get('dns') or '127.0.0.1'}\n")
    _Server(gate, lock, hello.get("dns")).serve()
    os._exit(0)


def _private_mounts() -> None:
    """A /run of our own (netavark's config, aardvark-dns's state, the xtables lock), the
    resolver aardvark-dns forwards to, the host's private places hidden, the root read-only."""
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount("tmpfs", "/run", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0755,size=4m")
    os.makedirs("/run/netavark", mode=0o700)
    open("/run/resolv.conf", "w").close()
    resolv = os.path.realpath("/etc/resolv.conf")
    if resolv.startswith("/run/"):  # a link into the /run we just covered (systemd-resolved's)
        os.makedirs(os.path.dirname(resolv), exist_ok=True)
        open(resolv, "a").close()
    linux.mount("/run/resolv.conf", resolv, None, linux.MS_BIND)
    for path in HIDDEN:
        if os.path.isdir(path) and not os.path.islink(path):
            linux.mount(
                "tmpfs", path, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "size=16k,mode=0755"
            )
    _minimal_dev()
    _confine_aardvark()
    linux.mount("none", "/", None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)


def _confine_aardvark() -> None:
    """aardvark-dns answers every container: started through util-linux's setpriv, it holds
    no capability (none to undo the mounts above, none over the containers' namespaces) and
    can gain none; port 53 it may bind all the same (ip_unprivileged_port_start is 0 in the
    keeper's network namespace, set by the keeper)."""
    with open(CONFINED_AARDVARK, "w") as wrapper:
        wrapper.write(
            "#!/bin/sh\n"
            "exec /usr/bin/setpriv --no-new-privs --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- "
            f'{AARDVARK} "$@"\n'
        )
    os.chmod(CONFINED_AARDVARK, 0o555)


def _minimal_dev() -> None:
    """/dev with the four character devices the programs read, no terminal and no disk."""
    os.mkdir("/run/dev")
    linux.mount("tmpfs", "/run/dev", "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "size=16k,mode=0755")
    for name in ("null", "zero", "random", "urandom"):
        open(f"/run/dev/{name}", "w").close()
        linux.mount(f"/dev/{name}", f"/run/dev/{name}", None, linux.MS_BIND)
    linux.mount("/run/dev", "/dev", None, linux.MS_MOVE)


class _Client:
    """One container's connection, what it reserved and what netavark set up for it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.options: dict[str, Any] = {}
        self.addresses: dict[str, str] = {}
        self.netns = -1


class _Server:
    def __init__(self, gate: socket.socket, lock: int, dns: str | None) -> None:
        self.gate, self.lock, self.dns = gate, lock, dns  # gate: the supervisor's relay
        self.clients: dict[int, _Client] = {}
        self.guarded: set[str] = set()  # bridges whose INPUT chain already drops other gateways
        with open("/proc/self/uid_map") as uids, open("/proc/self/gid_map") as gids:
            self.maps = {"uids": _extents(uids.read()), "gids": _extents(gids.read())}

    def serve(self) -> None:
        import signal

        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        while True:
            watched: list[Any] = [self.gate, *self.clients]
            ready = select.select(watched, [], [], None if self.clients else IDLE_SECONDS)[0]
            if not ready and not self.clients and self._may_end():
                return
            for fd in ready:
                if fd is self.gate:
                    self._accept()
                else:
                    self._handle(self.clients[fd])
            _reap()

    def _may_end(self) -> bool:
        """End only while holding the lock (no container is joining), with nobody waiting;
        the supervisor removes the socket before the lock is let go (when this ends)."""
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        if select.select([self.gate], [], [], 0)[0]:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            return False
        self.gate.sendall(b"end")
        self.gate.recv(16)  # "ok": the socket is gone
        return True

    def _accept(self) -> None:
        """A connection the supervisor accepted and checked (its user's: _relay)."""
        _, fds, _, _ = socket.recv_fds(self.gate, 16, 1)
        if not fds:  # the supervisor is gone: so is everything this keeper was for
            os._exit(0)
        os.set_inheritable(fds[0], False)
        sock = socket.socket(fileno=fds[0])
        userns = os.open("/proc/self/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            hello = {"protocol": PROTOCOL, "dns": self.dns, **self.maps}
            socket.send_fds(sock, [json.dumps(hello).encode()], [userns])
        except OSError:
            sock.close()
            return
        finally:
            os.close(userns)
        self.clients[sock.fileno()] = _Client(sock)

    def _handle(self, client: _Client) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(client.sock, _MESSAGE, 1)
        except OSError:
            data, fds = b"", []
        if not data:
            self._drop(client)
            return
        try:
            answer = self._answer(client, json.loads(data), fds)
        except (NetworkError, OSError, ValueError, KeyError, TypeError) as error:
            answer = {"error": str(error)}
        finally:
            for fd in fds:
                if fd != client.netns:
                    os.close(fd)
        try:
            client.sock.send(json.dumps(answer).encode())
        except OSError:
            self._drop(client)

    def _answer(self, client: _Client, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        operation = request.get("op")
        if operation == "reserve" and not client.options:
            return {"addresses": self._reserve(client, request)}
        if operation == "setup" and client.options and client.netns < 0 and len(fds) == 1:
            client.netns = fds[0]
            try:
                self._netavark("setup", client.options, client.netns)
            except NetworkError:
                client.netns = -1  # closed below, with the request's descriptors
                raise
            self._guard_gateways(client.options)
            return {"ok": True}
        if operation in ("connect", "disconnect"):
            return self._change(operation, request)
        if operation == "teardown":
            self._teardown(client)
            return {"ok": True}
        if operation == "users":  # network -> container -> its address there
            users: dict[str, dict[str, str]] = {}
            for other in self.clients.values():
                for network_name, address in other.addresses.items():
                    users.setdefault(network_name, {})[other.options["container_name"]] = address
            return {"networks": users}
        raise NetworkError(f"the network keeper does not know the request {operation!r} here")

    def _reserve(self, client: _Client, request: dict[str, Any]) -> dict[str, str]:
        definitions: dict[str, Any] = request["networks"]
        addresses = {name: self._free_address(name, definition) for name, definition in definitions.items()}
        aliases = [str(alias) for alias in request.get("aliases", [])]
        client.addresses = addresses
        client.options = {
            "container_id": os.urandom(32).hex(),
            "container_name": str(request["name"]),
            "networks": {
                name: {"interface_name": f"eth{number}", "static_ips": [addresses[name]], "aliases": aliases}
                for number, name in enumerate(definitions)
            },
            "network_info": definitions,
        }
        return addresses

    def _free_address(self, name: str, definition: dict[str, Any]) -> str:
        """The lowest address of network `name` that no container of this keeper has."""
        taken = {address for other in self.clients.values() for n, address in other.addresses.items() if n == name}
        free = next((a for a in container_addresses(definition) if a not in taken), None)
        if free is None:
            raise NetworkError(f"network {name!r} has no free address left ({definition['subnets'][0]['subnet']})")
        return free

    def _change(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """network connect/disconnect of a running container: netavark set up (or torn down)
        for that one network in its network namespace, which this keeper holds."""
        name, network_name = str(request["container"]), str(request["network"])
        client = next((c for c in self.clients.values() if c.netns >= 0 and c.options["container_name"] == name), None)
        if client is None:
            raise NetworkError(f"container {name} is not running on a bridge network")
        networks = client.options["networks"]
        if operation == "connect":
            if network_name in networks:
                raise NetworkError(f"container {name} is already on network {network_name!r}")
            definition = request["definition"]
            used = {entry["interface_name"] for entry in networks.values()}
            interface = next(f"eth{n}" for n in range(len(used) + 1) if f"eth{n}" not in used)
            address = self._free_address(network_name, definition)
            entry = {
                "interface_name": interface,
                "static_ips": [address],
                "aliases": [str(a) for a in request["aliases"]],
            }
            one = {**client.options, "networks": {network_name: entry}, "network_info": {network_name: definition}}
            self._netavark("setup", one, client.netns)
            networks[network_name], client.options["network_info"][network_name] = entry, definition
            client.addresses[network_name] = address
            self._guard_gateways(one)
            return {"address": address}
        if network_name not in networks:
            raise NetworkError(f"container {name} is not on network {network_name!r}")
        one = {**client.options, "networks": {network_name: networks[network_name]},
               "network_info": {network_name: client.options["network_info"][network_name]}}  # fmt: skip
        self._netavark("teardown", one, client.netns)
        del networks[network_name], client.options["network_info"][network_name], client.addresses[network_name]
        return {"ok": True}

    def _netavark(self, command: str, options: dict[str, Any], netns: int) -> None:
        if not options["networks"]:  # disconnected from every network
            return
        argv = [NETAVARK, "--config", "/run/netavark", "--aardvark-binary", CONFINED_AARDVARK,
                "--rootless", "false" if os.getuid() == 0 and _host_root() else "true",
                command, f"/proc/self/fd/{netns}"]  # fmt: skip
        done = subprocess.run(argv, input=json.dumps(options).encode(), capture_output=True,
                              env={"PATH": _PATH}, pass_fds=(netns,), timeout=30, check=False)  # fmt: skip
        if done.returncode != 0:
            said = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            raise NetworkError(f"netavark {command} failed: {said[-1] if said else done.returncode}")

    def _guard_gateways(self, options: dict[str, Any]) -> None:
        """A container reaches the keeper only on its own network's gateway (aardvark-dns):
        not another network's (whose aardvark-dns would name that network's containers)."""
        for definition in options["network_info"].values():
            bridge, gateway = definition["network_interface"], definition["subnets"][0]["gateway"]
            if bridge in self.guarded:
                continue
            rule = ["INPUT", "-i", bridge, "!", "-d", gateway, "-j", "DROP"]
            subprocess.run(["iptables", "-w", "-I", *rule], env={"PATH": _PATH}, capture_output=True, check=True)
            self.guarded.add(bridge)

    def _teardown(self, client: _Client) -> None:
        if client.netns >= 0:
            try:
                self._netavark("teardown", client.options, client.netns)
            except NetworkError as error:
                print(f"keeper: {error}", file=sys.stderr, flush=True)
            os.close(client.netns)
            client.netns = -1
        client.addresses, client.options = {}, {}

    def _drop(self, client: _Client) -> None:
        """The connection ended (the container ended, or its monitor was killed)."""
        self._teardown(client)
        del self.clients[client.sock.fileno()]
        client.sock.close()


def _host_root() -> bool:
    """Whether this keeper is root's: its user namespace maps the host's uid 0."""
    with open("/proc/self/uid_map") as uids:
        return any(extent.host == 0 for extent in _ranges(uids.read()))


def _extents(text: str) -> list[list[int]]:
    return [[int(field) for field in line.split()] for line in text.splitlines() if line.strip()]


def _ranges(text: str) -> list[IdRange]:
    return [IdRange(*extent) for extent in _extents(text)]


def _reap() -> None:
    """PID 1 of the keeper's pid namespace: aardvark-dns daemonizes, and its first process
    ends here."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass

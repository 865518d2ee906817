"""Running a container: one readable init sequence, in the order the runtime spec implies.

    monitor (pysandbox)          stays on the host: writes id maps, forwards signals,
      └─ setup process             unshares the user namespace, becomes its root, then the
           │                       other namespaces, and waits for its child
           └─ init (PID 1)         mounts the root and pivots into it; stays as PID 1
                └─ the command     drops privileges, loads seccomp last, execs

Every step that fails reports one sentence through a pipe to the monitor, which exits 125
(126/127 when the command cannot be executed or found), as Docker does.

Where each policy field takes effect (sandbox.planrecord carries them from sandbox.plan):

    policy field                      plan field                  step (function)
    signing.*                         confinement.signing_req.    before all this: cli.run_cmd._verify
    sandbox.ids.*                     id_maps                     monitor: write_id_maps (newuidmap or direct)
    sandbox.namespaces, network       confinement.namespaces      setup process: make_user_namespace, unshare
    limits.memory/pids/cpus           limits (cgroup)             monitor: _make_cgroup; setup joins it first
    (storage, sandbox.state)          lowers, state               setup: reach_host_folders_by_descriptor
    limits.writable_size              limits                      setup: mounts.mount_bounded_layer (a
                                                                    tmpfs; run -d: layercopy keeps it)
    mounts.read_only_rootfs           confinement.read_only_...   init: mounts.remount_root_read_only, last
    mounts.masked/readonly_paths      confinement.masked_paths    init: mounts.mask_paths, read_only_paths
    mounts.tmpfs, binds, volumes      tmpfs (+ -v flags: binds)   init: mounts.tmpfs, mounts.bind
    sandbox.network (none, loopback)  confinement.network         init: linux.set_loopback_up
    sandbox.network (pasta, slirp4..) network, ports (-p)         monitor: _start_network (sandbox.network),
      and publish                                                   PID 1 waits at the gate
    sandbox.egress                    egress                      monitor: sandbox.egress.restrict (nft)
    limits.open_files/cpu_time/...    limits (rlimit)             command: apply_rlimits
    sandbox.ids.user (or -u, USER)    confinement.user            command: _switch_user
    sandbox.capabilities              confinement.capabilities    command: drop_bounding_capabilities,
                                                                    set_process_capabilities
    sandbox.no_new_privileges         confinement.no_new_priv.    command: PR_SET_NO_NEW_PRIVS
    sandbox.seccomp.*                 bpf (compiled filter)       command: load_bpf, right before execve
                                                                  (before the ids change without NNP)
    limits.wall_time                  confinement.wall_time       monitor: _wait kills at the deadline
    (run --explain, learn)            explain, explain_bpf        monitor: _prepare_listening (sandbox.notify);
                                                                  command: _load_filter hands the listener over"""

from __future__ import annotations

import errno
import os
import time

from pysbx.policies.record import Record
from pysbx.sandbox import capabilities, inuse, layercopy, linux, mounts, network
from pysbx.sandbox.errors import EXIT_SETUP_FAILED, SandboxError, exit_status
from pysbx.sandbox.idmap import IdMaps
from pysbx.sandbox.limits import Enforcement, apply_rlimits, cgroup_values
from pysbx.sandbox.network import Published
from pysbx.sandbox.process import User

# Imported here, not where used: after pivot_root the host's files, Python's included, are
# out of reach, so nothing may be imported lazily on the container's side.
from pysbx.sandbox.seccomp import load_bpf
from pysbx.sandbox.signals import FORWARDED
from pysbx.sandbox.state import remove_tree
from pysbx.sandbox.userns import become_namespace_root, make_user_namespace, map_child

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    import socket
    from collections.abc import Callable
    from typing import Any

    from pysbx.sandbox import cgroups, netkeeper, notify
else:
    # The C half of `signal`: the same functions, with plain ints instead of the enums whose
    # import (enum, functools, collections...) costs a warm start 2-3 ms.
    import _signal as signal

EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


class RunSpec(Record):
    """Everything the sequence needs, resolved beforehand (plain data, built by
    sandbox.warm.spec_from_plan from a plan: cached, or just made by sandbox.plan)."""

    __slots__ = (
        "address",
        "argv",
        "binds",
        "capabilities",
        "console_sink",
        "egress",
        "env",
        "explain",
        "explain_bpf",
        "explain_log",
        "freezable",
        "heard",
        "hostname",
        "id_maps",
        "interactive",
        "keeps_layer",
        "limits",
        "listener_end",
        "lowers",
        "masked_paths",
        "monitor_fds",
        "namespaces",
        "network",
        "no_new_privileges",
        "on_heard",
        "on_signal",
        "ports",
        "read_only_rootfs",
        "readonly_paths",
        "remove_state",
        "resolver",
        "seccomp_bpf",
        "started",
        "state",
        "tmpfs",
        "tty",
        "user",
        "wall_time",
        "workdir",
    )

    def __init__(
        self,
        *,
        lowers: tuple[str, ...],  # the overlay's lower folders, top first (rootfs.image_lowers)
        state: str,
        argv: list[str],
        env: dict[str, str],
        workdir: str,
        user: User,
        hostname: str,
        namespaces: tuple[str, ...],
        network: str,
        id_maps: IdMaps,
        capabilities: int,
        no_new_privileges: bool,
        seccomp_bpf: bytes | None,
        read_only_rootfs: bool,
        masked_paths: tuple[str, ...],
        readonly_paths: tuple[str, ...],
        tmpfs: list[mounts.TmpfsMount],
        binds: list[mounts.BindMount],
        limits: list[Enforcement],
        wall_time: float | None = None,
        tty: bool = False,
        remove_state: bool = False,  # --rm
        interactive: bool = False,  # -i: with -t, what is typed reaches the container's pty
        ports: list[Published] | None = None,  # -p: published through the network's engine
        egress: list[str] | None = None,  # sandbox.egress: the only destinations out (None: any)
    ) -> None:
        self.lowers, self.state = lowers, state
        self.argv, self.env, self.workdir, self.user = argv, env, workdir, user
        self.hostname, self.namespaces, self.network, self.id_maps = hostname, namespaces, network, id_maps
        self.capabilities, self.no_new_privileges, self.seccomp_bpf = capabilities, no_new_privileges, seccomp_bpf
        self.read_only_rootfs, self.masked_paths, self.readonly_paths = read_only_rootfs, masked_paths, readonly_paths
        self.tmpfs, self.binds, self.limits = tmpfs, binds, limits
        self.wall_time, self.tty, self.remove_state = wall_time, tty, remove_state
        self.interactive, self.ports, self.egress = interactive, ports or [], egress
        # run -d (sandbox.monitor): told (init's pid, "", 0) once the command was exec'd,
        # or (init's pid, the setup error, the exit status) when it could not be.
        self.started: Callable[[int, str, int], None] | None = None
        self.monitor_fds: tuple[int, ...] = ()  # the monitor's own: closed at once in the container's side
        self.freezable = False  # run -d: a cgroup the freezer can pause, where the host gives one
        self.keeps_layer = False  # run -d: a bounded (tmpfs) writable layer outlives a run (layercopy)
        self.console_sink: Callable[[int], None] | None = None  # run -dt: told the pty master
        self.on_signal: Callable[[int], None] | None = None  # run -d: before a signal is forwarded
        self.address: str | None = None  # on a bridge: the container's address there (sandbox.netkeeper)
        self.resolver: str | None = None  # on a bridge: the nameserver of /etc/resolv.conf
        # "explain" (run --explain): the monitor hears each denied call (sandbox.notify);
        # "observe" (learn): it hears every call, and lets each go on
        self.explain = ""
        self.explain_bpf: bytes | None = None  # the filter that notifies (bpfeval.notify_variant)
        self.explain_log = False  # no listener: the plain filter logs its denials (sandbox.auditlog)
        self.listener_end: socket.socket | None = None  # the container's side: the listener goes through it
        self.heard: notify.Heard | None = None  # --explain: what the monitor heard, once the run is over
        self.on_heard: Callable[[notify.Heard], object] | None = None  # run -d: told of each new kind heard


def run_container(spec: RunSpec) -> int:
    """Run and wait; return the exit status as Docker reports it."""
    folder = os.path.basename(spec.state)
    name = folder if folder.startswith("pysandbox-") else f"pysandbox-{folder}"
    try:
        cgroup = _make_cgroup(name, cgroup_values(spec.limits), spec.freezable)
    except OSError as error:  # the plan promised these limits: no run without them
        _print_error(f"cannot make the container's cgroup {name}: {error.strerror or error}")
        return EXIT_SETUP_FAILED
    try:  # system prune leaves the layers and volumes of a running container alone
        layers = inuse.hold(spec.lowers, _volume_folders(spec))
    except OSError as error:
        message = f"{error.filename}: {error.strerror or error}"
        if spec.started is not None:  # run -d waits for its monitor's word
            spec.started(0, message, EXIT_SETUP_FAILED)
        _print_error(message)
        if cgroup is not None:
            cgroup.remove()
        return EXIT_SETUP_FAILED
    spec.monitor_fds = (*spec.monitor_fds, *layers)  # the monitor may change its own meanwhile (run -d)
    try:
        status = _run(spec, cgroup)
        if status == 128 + signal.SIGKILL and cgroup is not None and cgroup.oom_kills():
            _say_out_of_memory(spec)
        if spec.heard is not None and cgroup is not None:  # --explain: the limits it met too
            spec.heard.limits.update(cgroup.limits_reached())
        return status
    finally:
        spec.monitor_fds = tuple(fd for fd in spec.monitor_fds if fd not in layers)
        inuse.release(layers)
        if cgroup is not None:
            cgroup.remove()


def _volume_folders(spec: RunSpec) -> list[str]:
    from pysbx.sandbox.state import cache_root

    volumes = os.path.join(cache_root(), "volumes")
    return [folder for bind in spec.binds if (folder := inuse.volume_of(bind.source, volumes)) is not None]


def _say_out_of_memory(spec: RunSpec) -> None:
    """Docker leaves an OOM kill to `inspect`; here the one line says why the status is 137."""
    from pysbx.policies.values import format_size

    limit = next((item.value for item in spec.limits if item.name == "memory"), None)
    shown = f" ({format_size(int(limit))})" if isinstance(limit, int | float) else ""
    os.write(2, f"pysandbox: the container was killed: it went over its memory limit{shown}\n".encode())


def _make_cgroup(name: str, values: dict[str, float], freezable: bool) -> cgroups.Cgroup | None:
    if not values and not freezable:  # an ordinary user's foreground run, mostly: rlimits only, no import
        return None
    from pysbx.sandbox import cgroups

    return cgroups.create(name, values, freezable)


def _run(spec: RunSpec, cgroup: cgroups.Cgroup | None) -> int:
    try:
        keeper = _join_bridge(spec) if on_bridge(spec.network) else None
    except (SandboxError, OSError) as error:  # no such network, no netavark, the keeper failed
        message = str(error) if isinstance(error, SandboxError) else f"cannot join {spec.network}: {error}"
        if spec.started is not None:
            spec.started(0, message, EXIT_SETUP_FAILED)
        _print_error(message)
        return EXIT_SETUP_FAILED
    try:
        return _run_joined(spec, cgroup, keeper)
    finally:
        if keeper is not None:
            keeper.close()  # stopped already when the container ran (_start_network's engine)


def on_bridge(mode: str) -> bool:
    """Whether a --network value names bridge networks (the default one or a user's; several,
    comma-separated, after network connect)."""
    return mode not in (*network.ENGINES, "none", "loopback", "host")


def _join_bridge(spec: RunSpec) -> netkeeper.Keeper:
    """The user's network keeper, joined for this run, with the container's address on its
    network reserved; /etc/resolv.conf names the network's aardvark-dns (its gateway), or on
    the default bridge (no DNS by name, as Docker's) the keeper's engine's forwarder."""
    from pysbx.sandbox import netkeeper, networks
    from pysbx.sandbox.state import container_name_of

    joined = [networks.load(name) for name in spec.network.split(",")]
    for program in (netkeeper.NETAVARK, netkeeper.AARDVARK):
        if not os.path.exists(program):
            raise networks.NetworkError(
                f"--network {spec.network} needs {program} (Debian's packages netavark and aardvark-dns): install them"
            )
    keeper = netkeeper.join(networks.folder())
    try:
        name = container_name_of(os.path.basename(spec.state)) or spec.hostname
        spec.address = keeper.reserve(name, joined, [name])[joined[0].name]
    except BaseException:
        keeper.close()
        raise
    # aardvark-dns names the containers of every network its asker is on: one resolver
    spec.resolver = next((each.gateway for each in joined if each.dns), keeper.dns)
    return keeper


def _run_joined(spec: RunSpec, cgroup: cgroups.Cgroup | None, keeper: netkeeper.Keeper | None) -> int:
    ready_r, ready_w = os.pipe()
    maps_r, maps_w = os.pipe()
    errors_r, errors_w = os.pipe2(os.O_CLOEXEC)
    engine_wanted = spec.network in network.ENGINES or keeper is not None
    if spec.tty or engine_wanted or spec.explain:  # imported here, before the container's side forks
        import socket

        from pysbx.sandbox import tty

    monitor_end, container_end = socket.socketpair() if spec.tty else (None, None)
    gate, gate_inside = socket.socketpair() if engine_wanted else (None, None)  # sandbox.network's
    listening = _prepare_listening(spec) if spec.explain else None
    if listening is not None:
        listening.on_new_kind = spec.on_heard
    # Signals wait (blocked) until someone can forward them: the monitor once it knows init's
    # pid, init once its handlers are in, the command just before exec. None is lost.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    capabilities.last_capability()  # read once, on the host: the command inherits it, no file read in the container
    pid = os.fork()
    if pid == 0:
        for fd in (ready_r, maps_w, errors_r, *spec.monitor_fds):
            os.close(fd)
        for end in (monitor_end, gate, keeper.sock if keeper is not None else None):
            if end is not None:
                end.close()
        if listening is not None:
            listening.receiver.close()
            if listening.kernel_log is not None:  # the host's log: nothing of the container's to hold
                listening.kernel_log.close()
        userns = keeper.userns if keeper is not None else -1
        _guarded(
            errors_w,
            lambda: _setup_process(spec, cgroup, ready_w, maps_r, errors_w, container_end, gate_inside, userns),
        )
    os.close(ready_w)
    os.close(maps_r)
    os.close(errors_w)
    for end in (container_end, gate_inside, spec.listener_end):
        if end is not None:
            end.close()
    spec.listener_end = None
    if listening is not None:
        listening.start()
    init_pid = _monitor_setup(pid, spec, ready_r, maps_w, keeper)
    if listening is not None:
        listening.init_pid = init_pid  # whose pid namespace audit records are checked against
        if spec.explain_log:  # the audit session the setup started (auditlog.new_session)
            from pysbx.sandbox.auditlog import session_of

            listening.session = session_of(pid)
    forward = _forward_signals(init_pid, spec.tty, spec.on_signal)
    signal.pthread_sigmask(signal.SIG_SETMASK, held)
    # after the handlers: a TERM while PID 1 is still mounting reaches it (found by review)
    engine = _start_network(spec, gate, keeper) if gate is not None else None
    master = tty.receive_master(monitor_end) if monitor_end is not None else None
    if master is not None and spec.console_sink is not None:
        spec.console_sink(master)  # run -dt: the attach hub sets its size from attached terminals
    try:
        if master is not None:
            with tty.relaying(master, spec.interactive):
                message, status = _collect(errors_r, pid, init_pid, spec)
        else:
            message, status = _collect(errors_r, pid, init_pid, spec)
    finally:
        for signum, previous in forward.items():  # the caller's own again (run -d's monitor ignores them)
            signal.signal(signum, previous)
        if engine is not None:
            engine.stop()
        if listening is not None:
            spec.heard = listening.finish()
    if message:
        _print_error(message)
    return status


def _prepare_listening(spec: RunSpec) -> notify.Listening | None:
    """--explain or learn: the monitor's listening for this run, and the container's end of
    the socket its listener will come through (spec.listener_end); None when the policy
    filters nothing to explain (spec.heard says why nothing was heard)."""
    import socket

    from pysbx.sandbox import auditlog, bpfeval, capcheck, destinations, fdroom, notify, pathwrites

    plain = spec.seccomp_bpf
    observe = spec.explain == "observe"
    if plain is None and not observe:
        spec.heard = notify.Heard()
        spec.heard.unavailable = "the policy filters no system call (seccomp: unconfined)"
        return None
    receiver, spec.listener_end = socket.socketpair()
    ceiling = _observation_ceiling(spec.capabilities) if observe else None
    listening = notify.Listening(plain, receiver, notify.path_arguments(_number_of), observe, ceiling)
    listening.watch_root = writable_size(spec) is not None
    if observe or plain is None:
        spec.explain_bpf = notify.observing_program()
        # learn hears every call: each table whole, by this machine's numbers
        listening.checks = bpfeval.by_number(capcheck.LEARN_CHECKS, _number_of)
        listening.writes = bpfeval.by_number(pathwrites.WRITES, _number_of)
        listening.sends = bpfeval.by_number(destinations.SENDS, _number_of)
        listening.fd_calls = fdroom.notified_fd_calls(_number_of, lambda number: True)[0]
        return listening
    if os.geteuid() == 0 and auditlog.readable():  # should no listener come: the kernel's log
        listening.kernel_log, spec.explain_log = auditlog.KernelLog(), True
    blocker = notify.listener_blocker(plain)
    if blocker:  # the command would wait on itself: it runs as without --explain, and says why
        listening.heard.unavailable = blocker
        spec.listener_end.sendall(blocker.encode())
        spec.explain_bpf = None
    else:
        held = capabilities.capabilities_after_setuid(spec.capabilities, spec.user.uid)
        arch, tests = notify.capability_tests(held, plain)
        listening.capability_calls = frozenset(test[0] for test in tests)
        allows = notify.always_allows(plain)
        listening.writes, write_tests = pathwrites.notified_writes(_number_of, allows)
        listening.checks, check_tests = capcheck.notified_checks(_number_of, allows, held)
        listening.fd_calls, fd_tests = fdroom.notified_fd_calls(_number_of, allows)
        prologue = [*tests, *write_tests, *check_tests, *fd_tests]
        heard = bpfeval.with_notified_calls(bpfeval.notify_variant(plain), arch, prologue)
        spec.explain_bpf = notify.with_foreign_listeners_refused(heard, plain)
    return listening


def _observation_ceiling(held: int) -> bytes:
    """learn's limit: the built-in default profile (Docker's) for the capabilities the base
    grants (the mask `held`): without CAP_SYS_ADMIN it refuses namespaces and mounts, and
    it refuses io_uring, kexec... always; what it refuses, a workload cannot be learned to
    need (it is answered as the profile says)."""
    from pysbx.policies.seccomp import compile_bpf, load_profile

    return compile_bpf(load_profile("default"), capabilities.names(held)).bpf


def _number_of(name: str) -> int | None:
    from pysbx.policies.seccomp import syscall_number

    return syscall_number(name)


def _start_network(
    spec: RunSpec, gate: socket.socket, keeper: netkeeper.Keeper | None
) -> network.Engine | netkeeper.Keeper | None:
    """The network's engine for the container's namespaces, which the setup process sends
    through the gate (sandbox.runner._send_namespaces); PID 1 waits there for the word:
    "ready", or why not (it fails the run with that sentence, exit 125). No namespaces: the
    setup failed before, and its own error says why."""
    import socket

    with gate:
        try:
            _, namespaces, _, _ = socket.recv_fds(gate, 16, 2)
        except OSError:
            namespaces = []
        engine: network.Engine | netkeeper.Keeper | None = None
        word = b"ready"
        try:
            if len(namespaces) == 2:
                if keeper is not None:  # netavark attaches it to its bridge in the keeper
                    engine = keeper
                    keeper.attach(namespaces[1])
                    if spec.ports and spec.address is not None:
                        from pysbx.sandbox import rootlessport

                        inside = keeper.userns if os.geteuid() != 0 else -1  # see sandbox.rootlessport
                        keeper.forwarder = rootlessport.start(
                            spec.ports, namespaces[1], spec.address, inside, spec.state
                        )
                else:
                    engine = network.start(spec.network, namespaces, spec.ports, spec.state)
                if spec.egress is not None:  # before the command: sandbox.egress
                    from pysbx.sandbox import egress

                    egress.restrict(namespaces, spec.egress, spec.resolver or network.nameserver(spec.network))
        except (OSError, SandboxError) as error:
            word = str(error).encode(errors="backslashreplace")
        finally:
            for fd in namespaces:
                os.close(fd)
        try:
            gate.sendall(word)
        except OSError:  # PID 1 is gone already
            pass
    return engine


def _collect(errors_r: int, pid: int, init_pid: int, spec: RunSpec) -> tuple[str, int]:
    """The setup error (if any) and the container's exit status. The errors pipe closes on
    the command's execve: from then on the container runs (spec.started hears it then)."""
    message = _read_all(errors_r)
    if spec.started is not None and not message:
        spec.started(init_pid, "", 0)
    status = _wait(pid, spec.wall_time, init_pid)
    if spec.started is not None and message:
        spec.started(init_pid, message, status)
    return message, status


def _monitor_setup(pid: int, spec: RunSpec, ready_r: int, maps_w: int, keeper: netkeeper.Keeper | None) -> int:
    """Map the new user namespace once the setup process has made it (inside the network
    keeper's, for a container on a bridge: sandbox.netkeeper), and learn init's pid."""
    with os.fdopen(ready_r, "rb", buffering=0) as ready, os.fdopen(maps_w, "wb", buffering=0):
        if keeper is not None:
            from pysbx.sandbox.netkeeper import write_maps_inside

            mapped = map_child(
                pid, ready_r, maps_w, spec.id_maps, lambda child, maps: write_maps_inside(child, keeper, maps)
            )
        else:
            mapped = map_child(pid, ready_r, maps_w, spec.id_maps)
        if not mapped:
            return 0
        line = ready.readline()
    return int(line) if line.strip().isdigit() else 0


def _forward_signals(init_pid: int, has_tty: bool, before: Callable[[int], None] | None) -> dict[int, Any]:
    def forward(signum: int, _frame: object) -> None:
        if before is not None:
            before(signum)
        if init_pid:
            _signal_quietly(init_pid, signum)

    # With a pty, window changes go to the pty (tty.relaying), which signals the container.
    forwarded: list[int] = [s for s in FORWARDED if not (has_tty and s == signal.SIGWINCH)]
    return {signum: signal.signal(signum, forward) for signum in forwarded}


def _signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:  # it has just exited
        pass


def _wait(pid: int, wall_time: float | None, init: int = 0) -> int:
    """Wait for the setup process `pid`; at the wall time, kill `init` (PID 1: the container
    ends, and the setup process still saves its layer; found by review), else `pid`."""
    deadline = time.monotonic() + wall_time if wall_time else None
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG if deadline else 0)
        except ChildProcessError:
            return EXIT_SETUP_FAILED
        if done:
            return exit_status(status)
        if deadline and time.monotonic() > deadline:
            _signal_quietly(init or pid, signal.SIGKILL)
            deadline = None
        time.sleep(0.01)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace").strip()


def _print_error(message: str) -> None:
    os.write(2, f"pysandbox: error: {message}\n".encode())


def _guarded(errors_w: int, step: object) -> None:
    """Run a child's part; any failure becomes one line to the monitor and exit 125."""
    code = EXIT_SETUP_FAILED
    try:
        step()  # type: ignore[operator]
    except _ExecFailure as failure:
        os.write(errors_w, str(failure).encode(errors="backslashreplace"))
        code = failure.code
    except BaseException as error:
        text = _describe_failure(error)
        os.write(errors_w, text.encode(errors="backslashreplace"))
    finally:
        os._exit(code)


# ----- the setup process: user namespace, then the rest ------------------------------------


def _setup_process(
    spec: RunSpec,
    cgroup: cgroups.Cgroup | None,
    ready_w: int,
    maps_r: int,
    errors_w: int,
    console: socket.socket | None,
    gate: socket.socket | None = None,
    keeper_userns: int = -1,
) -> None:
    monitor = os.getppid()
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    if spec.explain_log:  # an audit session of the container's own: its records are told apart by it
        from pysbx.sandbox.auditlog import new_session

        new_session()
    if cgroup is not None:  # still with the monitor's credentials; before any namespace
        cgroup.join()
    own_cgroups = mounts.own_cgroup_hierarchies() if "cgroup" in spec.namespaces else ()
    state = os.open(spec.state, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # reachable after pivot_root
    if keeper_userns >= 0:  # on a bridge: our user namespace is made inside the keeper's
        from pysbx.sandbox.netkeeper import join_new_user_namespace

        join_new_user_namespace(keeper_userns)
        os.close(keeper_userns)
        # its mapper, in the keeper's namespace, opens our uid_map: the files of a process
        # that is not dumpable are host root's (not dumpable again once mapped, below)
        linux.prctl(linux.PR_SET_DUMPABLE, 1)
        os.write(ready_w, b"u")
    else:
        make_user_namespace(ready_w)
    # The other namespaces while the monitor maps this one (newuidmap and newgidmap take a
    # few milliseconds): its creator holds every capability in it before any id is mapped.
    linux.unshare(sum(linux.NAMESPACE_FLAGS[name] for name in spec.namespaces if name != "user"))
    held = reach_host_folders_by_descriptor(spec)
    become_namespace_root(maps_r)
    # Changing credentials (setresuid above) clears the parent-death signal and the dumpable
    # flag: arm them again, and leave at once if the monitor died in between.
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    if os.getppid() != monitor:
        os._exit(EXIT_SETUP_FAILED)
    if gate is not None:  # the engine starts now, while PID 1 mounts the root (bench/network.py)
        _send_namespaces(gate)
    layer = _bounded_layer(spec)
    init = os.fork()
    if init == 0:
        os.close(ready_w)
        # PID 1 holds no folder of the host: neither those held for its mounts nor ours
        # (found by review: `state` stayed open in it, reachable through /proc/1/fd).
        theirs = [*held, state, *(layer or ())]
        _guarded(errors_w, lambda: _init(spec, errors_w, console, theirs, own_cgroups, gate))
    for end in (gate, console, spec.listener_end):
        if end is not None:
            end.close()
    _close_all(held)
    os.write(ready_w, f"{init}\n".encode())
    os.close(ready_w)
    os.close(errors_w)
    if layer is not None and spec.keeps_layer and not spec.remove_state:
        # init stays a zombie while the layer is saved: its pid, which the monitor still
        # signals, is not reused meanwhile (found by review)
        os.waitid(os.P_PID, init, os.WEXITED | os.WNOWAIT)
        _save_layer(state, *layer)
    _, status = os.waitpid(init, 0)
    if spec.remove_state and writable_size(spec) is None:
        _empty_writable_layer(state)
    os._exit(exit_status(status))


def _bounded_layer(spec: RunSpec) -> tuple[int, int] | None:
    """Under limits.writable_size: the tmpfs of the writable layer, mounted by this process
    (it outlives the container's), with what the container's last run wrote copied back into
    it (run -d: sandbox.layercopy). Returns (the folder beneath, the tmpfs), or None."""
    size = writable_size(spec)
    if size is None:
        return None
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)  # nothing of it reaches the host
    state = os.open(spec.state, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # as this mount namespace sees it
    try:
        beneath, tmpfs = mounts.mount_bounded_layer(state, size)
    finally:
        os.close(state)
    if spec.keeps_layer:
        try:
            note = layercopy.restore(beneath, tmpfs)
            if note:
                os.write(2, f"pysandbox: {note}\n".encode())
        except OSError as error:
            why = _describe_failure(error)
            raise OSError(
                f"the writable layer saved by the last run cannot be put back: {why} (to start from the image, "
                "delete writable/upper in its folder, which `inspect` names; or rm it)"
            ) from None
    return beneath, tmpfs


def _save_layer(state: int, beneath: int, tmpfs: int) -> None:
    """After the container's last process: its tmpfs layer, made read-only first, to the
    state folder for the next run; not when `rm -f` is removing the container. A failure is
    said in the log (this process's stderr is the monitor's log pipe)."""
    try:
        os.stat(layercopy.SKIP_SAVE, dir_fd=state)
        return
    except FileNotFoundError:
        pass
    try:
        busy = "a process outside the container still holds a file of it open for writing"
        linux.remount_read_only(tmpfs, "the writable layer", busy)
        layercopy.save(tmpfs, beneath)
    except OSError as error:
        why = _describe_failure(error)
        message = f"pysandbox: the writable layer could not be kept ({why}): the next run starts from the last one kept"
        os.write(2, f"{message}\n".encode(errors="backslashreplace"))


def _empty_writable_layer(state: int) -> None:
    """--rm: delete what the container wrote, from inside its user namespace. The files belong
    to its ids, which for an ordinary user are subordinate ids the user cannot delete as
    themself; container root can. The monitor removes the (then empty) state folder. (A
    writable layer on a tmpfs goes with the mount namespace: nothing to do.)"""
    remove_tree(state, "writable")
    remove_tree(state, "copy")  # the flattened root, where overlay could not be mounted


def writable_size(spec: RunSpec) -> int | None:
    """The size of the tmpfs that holds the writable layer, or None: on the state folder."""
    sizes = [item.value for item in spec.limits if item.name == "writable_size"]
    return sizes[0] if sizes and isinstance(sizes[0], int) else None


def reach_host_folders_by_descriptor(spec: RunSpec) -> list[int]:
    """Open the state folder, the cached layers and the bind sources while this process is
    still the invoking user (in the new mount namespace, whose mounts they must belong to),
    and point the spec at them through /proc/self/fd: the storage folders above them are
    private to that user (sandbox.state), which the container's root is not, and a bind
    source swapped for a symlink since the policy checked it is refused."""
    held: list[int] = []

    def hold(path: str, flags: int = os.O_DIRECTORY) -> str:
        held.append(os.open(path, os.O_PATH | os.O_CLOEXEC | flags))
        return f"/proc/self/fd/{held[-1]}"

    spec.state = hold(spec.state)
    spec.lowers = tuple(hold(folder) for folder in spec.lowers)
    for bind in spec.binds:
        reached = hold(bind.source, 0)
        if os.readlink(reached) != bind.source:
            raise OSError(f"-v {bind.source}: the path changed after the policy checked it")
        bind.source = reached
    return held


def _close_all(descriptors: list[int]) -> None:
    for fd in descriptors:
        os.close(fd)


# ----- init: PID 1 of the container --------------------------------------------------------


def _init(
    spec: RunSpec,
    errors_w: int,
    console: socket.socket | None,
    held: list[int],
    own_cgroups: tuple[str, ...],
    gate: socket.socket | None = None,
) -> None:
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    hide_host_command_line()
    prepare_root(spec, own_cgroups)
    _close_all(held)  # nothing of the host stays open in the container's PID 1
    if gate is not None:  # the network's engine set up meanwhile (sandbox.network)
        _wait_for_network(gate)
    command = os.fork()
    if command == 0:
        _guarded(errors_w, lambda: _exec_command(spec, errors_w, console))
    os.close(errors_w)
    for end in (console, spec.listener_end):
        if end is not None:
            end.close()
    _reap_until(command)


def _send_namespaces(gate: socket.socket) -> None:
    """The setup process hands the monitor the container's user and network namespaces (its
    own, made above) for the network's engine: no other process of an ordinary user may open
    them, the setup process not being dumpable."""
    import socket  # imported before the fork (sandbox.runner._run): a lookup, not a load

    namespaces = [os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name in ("user", "net")]
    try:
        socket.send_fds(gate, [b"namespaces"], namespaces)
    finally:
        for fd in namespaces:
            os.close(fd)


def _wait_for_network(gate: socket.socket) -> None:
    """The command starts only with the network it was promised: PID 1 waits for the
    monitor's word ("ready", or why not) once the root is mounted."""
    word = b""
    while chunk := gate.recv(4096):
        word += chunk
    gate.close()
    if word != b"ready":
        raise SandboxError(word.decode(errors="replace") or "the network was not set up (the monitor is gone)")


_INIT_NAME = b"pysandbox-init"


def hide_host_command_line(title: bytes = _INIT_NAME) -> None:
    """PID 1 is a fork of pysandbox: its /proc/1/cmdline and /proc/1/environ would show the
    container the host's interpreter, venv, policy path and environment; a detached
    container's monitor (and the log writer, health checker and setup processes it forks)
    would show every user of the host its `run` command line, -e values included (found by
    review). Overwrite both areas of our own memory in place with `title` (through
    /proc/self/mem, which a process may always write for itself). Non-dumpable, our /proc
    files belong to host root: dumpable for these few lines (PID 1: before the container has
    any process of its own), then as before."""
    before = linux.prctl(linux.PR_GET_DUMPABLE)
    linux.prctl(linux.PR_SET_DUMPABLE, 1)
    try:
        _overwrite_arguments_and_environment(title)
    finally:
        linux.prctl(linux.PR_SET_DUMPABLE, before)


def _overwrite_arguments_and_environment(title: bytes) -> None:
    """Through descriptors (os.open, pread, pwrite), not file objects: PID 1 does this on
    every start, and io's buffered files cost it a fraction of a millisecond more."""
    stat = os.open("/proc/self/stat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fields = os.read(stat, 4096).rpartition(b")")[2].split()
    finally:
        os.close(stat)
    # fields 48-51 of proc(5): arg_start, arg_end, env_start, env_end (the list starts at 3)
    arg_start, arg_end, env_start, env_end = (int(fields[number - 3]) for number in (48, 49, 50, 51))
    memory = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
    try:
        length = arg_end - arg_start
        os.pwrite(memory, (title + bytes(length))[: length - 1] + b"\0", arg_start)
        os.pwrite(memory, bytes(env_end - env_start), env_start)
    finally:
        os.close(memory)


def prepare_root(spec: RunSpec, own_cgroups: tuple[str, ...] = ()) -> None:
    """Mounts, in an order that matters: propagation first (nothing leaks to the host),
    the root, then what lives inside it, /proc while the old root is still reachable, pivot,
    and the read-only remount last (earlier steps create mount points)."""
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    root = f"{spec.state}/root"
    mounts.mount_overlay(spec.lowers, spec.state, root)
    for bind in spec.binds:  # from the image's own content: before /proc, /dev, /sys are mounted
        if bind.fill:
            mounts.fill_volume(root, bind)
    mounts.mount_proc(root)
    mounts.mount_dev(root)
    mounts.mount_sys(root, "network" in spec.namespaces)
    if own_cgroups and "network" in spec.namespaces:  # a sysfs of our own to mount on
        mounts.mount_cgroups(root, own_cgroups)
    if "uts" in spec.namespaces:
        linux.sethostname(spec.hostname)
    mounts.etc_files(root, spec.state, spec.hostname, spec.resolver or network.nameserver(spec.network), spec.address)
    for tmpfs in spec.tmpfs:
        mounts.tmpfs(root, tmpfs)
    for bind in spec.binds:
        mounts.bind(root, bind)
    mounts.mask_paths(root, spec.masked_paths)
    mounts.read_only_paths(root, spec.readonly_paths)
    if "network" in spec.namespaces:  # none and loopback alike: only lo, and up (Docker's none)
        linux.set_loopback_up()
    mounts.pivot(root)
    if spec.read_only_rootfs:
        mounts.remount_root_read_only()


def _reap_until(command: int) -> None:
    """PID 1: reap every zombie, forward signals to the command, exit as it exits."""

    def forward(signum: int, _frame: object) -> None:
        _signal_quietly(command, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(EXIT_SETUP_FAILED)
        except InterruptedError:
            continue
        if pid == command:
            os._exit(exit_status(status))


# ----- the command --------------------------------------------------------------------------


def _describe_failure(error: BaseException) -> str:
    """One line for the monitor: an OSError with the path it concerns (`mkdir /x: No such
    file or directory`, not the bare strerror), anything else with its type."""
    if isinstance(error, SandboxError):  # already a sentence for the user
        return str(error)
    if not isinstance(error, OSError):
        return f"{type(error).__name__}: {error}"
    if error.strerror and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error.strerror or error)


class _ExecFailure(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _exec_command(spec: RunSpec, errors_w: int, console: socket.socket | None) -> None:
    """Privileges go in this order: rlimits, working directory (it may need root's access),
    bounding set (needs CAP_SETPCAP), ids, remaining capabilities, no_new_privs, other
    descriptors, and seccomp last, right before execve. Without no_new_privs (the policy
    lets setuid programs work, as Docker does) the filter can only be loaded while this
    process still holds CAP_SYS_ADMIN in its namespace: then it goes in before the ids
    change, as runc does, and the profile must allow what follows (Docker's does)."""
    reset_signals()
    if console is not None:
        from pysbx.sandbox import tty  # imported before the fork (see _run): no file is read here

        tty.open_in_container(console)
    else:
        _leave_host_terminal()
    apply_rlimits(spec.limits)
    _change_directory(spec.workdir)
    capabilities.drop_bounding_capabilities(spec.capabilities)
    bpf = spec.seccomp_bpf if spec.explain != "observe" else spec.explain_bpf  # learn: the observing filter alone
    if bpf is not None and not spec.no_new_privileges:
        _load_filter(spec, bpf, has_cap_sys_admin=True)
        bpf = None  # loaded
    _switch_user(spec.user, spec.id_maps.setgroups_allowed)
    capabilities.set_process_capabilities(spec.capabilities, spec.user.uid)
    check_credentials(spec)
    if spec.no_new_privileges:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    _close_descriptors_but(errors_w, spec.listener_end.fileno() if spec.listener_end is not None else errors_w)
    program = _find_program(spec.argv[0], spec.env.get("PATH", ""))
    if bpf is not None:
        _load_filter(spec, bpf)
    try:
        os.execve(program, spec.argv, spec.env)
    except OSError as error:
        code = EXIT_NOT_FOUND if error.errno == errno.ENOENT else EXIT_CANNOT_EXECUTE
        raise _ExecFailure(f"exec {spec.argv[0]}: {error.strerror}", code) from None


def _close_descriptors_but(*kept: int) -> None:
    """Close every descriptor from 3 on except `kept`."""
    low = 3
    for fd in sorted(set(kept)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)


def _load_filter(spec: RunSpec, bpf: bytes, has_cap_sys_admin: bool = False) -> None:
    """The seccomp filter; under --explain, the one that notifies, with its listener handed
    to the monitor at once (a denied call from here on waits for its answer) and closed
    here: nothing the container runs ever holds it. A kernel that gives no listener: the
    plain filter, and the monitor is told why."""
    end, notifying = spec.listener_end, spec.explain_bpf
    if end is None:
        load_bpf(bpf, has_cap_sys_admin=has_cap_sys_admin)
        return
    import socket  # imported before the fork (sandbox.runner._run_joined): a lookup, not a load

    spec.listener_end = None
    logged = ("SECCOMP_FILTER_FLAG_LOG",) if spec.explain_log else ()  # heard from the kernel's log instead
    try:
        if notifying is None:  # the monitor has the reason already
            load_bpf(bpf, has_cap_sys_admin=has_cap_sys_admin, flags=logged)
            return
        try:
            listener = load_bpf(notifying, has_cap_sys_admin=has_cap_sys_admin, listener=True)
        except OSError as error:
            if spec.explain == "observe":  # learning without hearing: nothing to learn from
                raise
            end.sendall(f"the kernel gave no seccomp notification listener ({error})".encode())
            load_bpf(bpf, has_cap_sys_admin=has_cap_sys_admin, flags=logged)
            return
        try:
            socket.send_fds(end, [b"listener"], [listener])
        finally:
            os.close(listener)
    finally:
        end.close()


def reset_signals() -> None:
    """Every signal's disposition to its default and an empty signal mask, as runc leaves
    them: execve keeps what is ignored and what is blocked, and Python ignores SIGPIPE and
    SIGXFSZ at start-up, so without this `seq 1 1000000 | head -1` fails with a broken pipe
    in the container. (An alternate signal stack does not survive execve.)"""
    for signum in range(1, signal.NSIG):
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):  # the C library's own (32, 33) cannot be set
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _leave_host_terminal() -> None:
    """Without -t: a session of its own, so the terminal that started pysandbox (if any) is
    no longer the container's controlling terminal. TIOCSTI on a terminal other than one's
    own needs CAP_SYS_ADMIN on the host, so the container cannot type commands into the
    shell that started it (bubblewrap's --new-session, CVE-2017-5226). Its stdio still reads
    and writes that terminal as before."""
    os.setsid()


def _change_directory(workdir: str) -> None:
    try:
        os.chdir(workdir or "/")
    except FileNotFoundError:
        os.makedirs(workdir, exist_ok=True)  # Docker creates a missing WORKDIR
        os.chdir(workdir)


def _switch_user(user: User, setgroups_allowed: bool) -> None:
    if setgroups_allowed:
        os.setgroups(list(user.groups))
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)


def check_credentials(spec: RunSpec) -> None:
    """What the ids and capabilities are now, read back from the kernel, not assumed from the
    calls that set them: a seccomp filter loaded before them (policies without
    no_new_privs) could have answered them with a faked success (errno 0)."""
    user = spec.user
    wanted_caps = capabilities.capabilities_after_setuid(spec.capabilities, user.uid)
    effective, permitted, inheritable = linux.capget()  # no ambient one without inheritable ones
    uids, gids = os.getresuid(), os.getresgid()
    if (
        uids != (user.uid,) * 3
        or gids != (user.gid,) * 3
        or (effective, permitted, inheritable) != (wanted_caps, wanted_caps, 0)
        or (spec.id_maps.setgroups_allowed and sorted(os.getgroups()) != sorted(user.groups))
    ):
        raise OSError(
            f"the command's credentials are not the ones set (uids {uids}, gids {gids}, capabilities "
            f"{effective:#x}): the seccomp profile must let setresuid, setresgid, setgroups and capset run"
        )


def _find_program(name: str, path: str) -> str:
    if "/" in name:
        return name
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise _ExecFailure(f"exec {name}: executable file not found in $PATH", EXIT_NOT_FOUND)


def hostname_for(name: str) -> str:
    return name[:63] or os.uname().nodename

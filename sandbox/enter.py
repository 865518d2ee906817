"""`pysandbox exec`: a new process in a running detached container, under the same
confinement as the container's command. The monitor saves what that confinement is when it
starts the container (sandbox.specfile: user, environment, working folder, capabilities,
no_new_privs, the compiled seccomp filter, rlimits, the id maps), and exec joins PID 1's
cgroups and the namespaces of the container's command (one setns through its pidfd), forks
into the pid
namespace, and ends with the runner's own last steps (runner._exec_command: rlimits, the
working folder, bounding set, ids, capabilities, no_new_privs, every other descriptor closed,
seccomp, execve). The classic exec escapes are closed on the way:

- CVE-2016-9962 and CVE-2019-5736: the joining process is not dumpable from before the first
  setns until its execve, so nothing in the container can ptrace it or open its
  /proc/PID/exe (the host's interpreter) while it still holds privileges;
- CVE-2024-21626: no descriptor of the host reaches the command (closerange before execve),
  and the working folder is resolved inside the container's root after joining its mount
  namespace;
- the process joined is pinned by a pidfd and checked to be PID 1's child while PID 1 is the
  recorded one (pid and start time), so a reused pid is never joined."""

from __future__ import annotations

import os

from pysbx.sandbox import linux, process, procfs
from pysbx.sandbox.containers import Container
from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.runner import RunSpec
from pysbx.sandbox.specfile import load_etc, load_spec
from pysbx.sandbox.stdio import Pipes

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs exec 2 ms at run time; the annotations need it only for mypy
    from typing import Any


def exec_spec(
    container: Container,
    argv: list[str],
    env: list[str],
    workdir: str | None,
    tty: bool = False,
    user: str | None = None,
    health_check: bool = False,
) -> RunSpec:
    """The container's command's confinement for `argv`, with -e, -w and -u applied (and
    with -t, TERM=xterm unless -e says otherwise, as run and Docker do); refused when the
    policy the container started under does not allow exec (but for the monitor's
    `health_check`, which that policy allowed when the container started), or -u."""
    spec, extra = load_spec(container.path)
    if not health_check:
        _check_rule(container, extra, "exec", "exec")
    saved_env = [f"{key}={value}" for key, value in spec.env.items()]
    if user is not None:
        _check_rule(container, extra, "exec_user", f"exec -u {user}")
        chosen = _exec_user(container, extra, user)
        if spec.env.get("HOME") == spec.user.home:  # the default HOME, not the image's ENV: the new user's
            saved_env = [item for item in saved_env if not item.startswith("HOME=")]
        spec.user = chosen
    spec.env = process.environment(saved_env, env, spec.user, dict(os.environ), tty)
    spec.argv, spec.workdir = argv, workdir or spec.workdir
    return spec


def _check_rule(container: Container, extra: dict[str, Any], name: str, what: str) -> None:
    rule = extra.get(name)
    if not isinstance(rule, dict) or rule.get("allowed") is not True:
        where = rule.get("where") if isinstance(rule, dict) else "no rule saved"
        raise SandboxError(
            f"{what} is refused: the policy container {container.name} runs under does not allow it ({where})"
        )


def _exec_user(container: Container, extra: dict[str, Any], user: str) -> process.User:
    """-u USER[:GROUP] as run's -u reads it, in the image's /etc/passwd and /etc/group as the
    container started with them; a policy that pins the containers' user pins exec's too."""
    pin = extra.get("user_pin") or {}
    if pin.get("user") and user != pin["user"]:
        raise SandboxError(
            f"exec -u {user} is refused: the policy runs containers as {pin['user']} ({pin.get('where')})"
        )
    passwd, group = load_etc(container.path)
    return process.resolve_user(user, passwd, group)


def exec_in(
    container: Container, spec: RunSpec, tty: bool = False, interactive: bool = False, hear: bool = True
) -> int:
    """Run spec.argv in the container; its exit status (125/126/127 as run gives them).
    `hear`: in a container run with --explain, the process is heard (_hearing; not for the
    monitor's health checks, whose process is threaded and must not fork a server)."""
    state = container.state()
    if state != "running":
        raise SandboxError(
            f"container {container.name} is {'paused: unpause it first' if state == 'paused' else 'not running'}"
        )
    init = container.status.get("init")
    assert isinstance(init, list)
    pidfd = _pin_command(container, int(init[0]))
    server = _hearing(container, spec) if hear else None
    try:
        return _run_entered(spec, int(init[0]), pidfd, tty, interactive)
    finally:
        os.close(pidfd)
        if server is not None:
            _wait_a_little(server)


def _hearing(container: Container, spec: RunSpec) -> int | None:
    """A container run with --explain: the exec'd process is heard as the monitor hears the
    container's command (runner._prepare_listening), by a server process of its own, which
    answers until every process under that filter is gone (the listener hangs up) and then
    adds what it heard to the container's record. Not a thread of this command: a process
    the command leaves running in the background would outlive its listener, and a filter
    whose listener is gone fails every call it notifies (ENOSYS). The server's pid."""
    if spec.explain != "explain" or spec.seccomp_bpf is None:
        return None
    from pysbx.sandbox import runner

    listening = runner._prepare_listening(spec)
    if listening is None:
        return None
    if listening.kernel_log is not None:  # no listener, no log: a server reading it would never end
        listening.kernel_log.close()
        listening.kernel_log, spec.explain_log = None, False
    server = os.fork()
    if server == 0:  # pragma: no cover - serves, keeps the record, _exits
        try:
            _become_server(listening.descriptors())
            _keep_heard(container, listening.run_to_end())
        finally:
            os._exit(0)
    listening.receiver.close()
    return server


def _become_server(kept: tuple[int, ...]) -> None:
    """Out of the terminal's session and deaf to its signals (^C on exec is for the command),
    in /, holding none of the command's standard streams (a reader of its output waits for
    every writer to close) nor any other descriptor but the listening's own."""
    import signal

    os.setsid()
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    low = 3
    for fd in sorted(kept):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _wait_a_little(server: int, seconds: float = 2.0) -> None:
    """The server usually ends with the command: wait for it (so that `explain NAME` right
    after sees the record), but not for a process the command left running."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.waitpid(server, os.WNOHANG)[0] == server:
            return
        time.sleep(0.01)


def _keep_heard(container: Container, heard: Any) -> None:
    """What an exec'd process's listener heard, added to the container's explain-exec.json
    (the monitor's explain.json is the monitor's alone: two writers would lose each other's
    kinds), under a lock on the container's folder: execs may end together."""
    import fcntl

    from pysbx.sandbox.containers import EXPLAIN_EXEC, EXPLAIN_LIMIT, read_json, write_json
    from pysbx.sandbox.notify import heard_as_json, heard_from_json, merged

    if not heard.denials and not heard.limits:
        return
    try:
        folder = os.open(container.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return  # removed meanwhile (rm -f): nothing to keep it in
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        earlier = None
        if os.path.exists(os.path.join(container.path, EXPLAIN_EXEC)):
            try:
                earlier = heard_from_json(read_json(container.path, EXPLAIN_EXEC, EXPLAIN_LIMIT))
            except (OSError, ValueError, KeyError, TypeError, SandboxError):
                earlier = None  # damaged: this exec's record replaces it
        write_json(container.path, EXPLAIN_EXEC, heard_as_json(merged(earlier, heard)))
    finally:
        os.close(folder)


def _pin_command(container: Container, init: int) -> int:
    """A pidfd on the container's command (PID 1's child), checked after it was opened to
    still be PID 1's child while PID 1 is still the recorded one. Its namespaces are the ones
    joined: PID 1 itself is never dumpable and was not exec'd in the container, so an
    ordinary user may not join through it (setns asks for ptrace access to it)."""
    children = procfs.children(init)
    if not children:
        raise SandboxError(f"container {container.name} is not running (no command)")
    pidfd = linux.pidfd_open(children[0])
    if procfs.parent(children[0]) != init or not container.init_alive() or container.state() != "running":
        os.close(pidfd)
        raise SandboxError(f"container {container.name} is not running")
    return pidfd


def _run_entered(spec: RunSpec, init: int, pidfd: int, tty: bool, interactive: bool) -> int:
    from pysbx.sandbox import runner

    errors_r, errors_w = os.pipe2(os.O_CLOEXEC)
    if tty:
        import socket

        from pysbx.sandbox import tty as terminal
    ours, theirs = socket.socketpair() if tty else (None, None)
    pipes = None if tty else Pipes(interactive)  # never the invoker's own stdio (sandbox.stdio)
    child = os.fork()
    if child == 0:  # pragma: no cover - joins the container and execs, or _exits
        os.close(errors_r)
        if ours is not None:
            ours.close()
        if pipes is not None:
            pipes.give()
        runner._guarded(errors_w, lambda: _join_and_exec(spec, init, pidfd, errors_w, theirs))
    os.close(errors_w)
    if theirs is not None:
        theirs.close()
    if spec.listener_end is not None:  # the command's end (run --explain): it sends its listener through it
        spec.listener_end.close()
        spec.listener_end = None
    master = terminal.receive_master(ours) if ours is not None else None
    if master is not None:
        with terminal.relaying(master, interactive):
            message, status = _collect(errors_r, child)
    elif pipes is not None:
        message = runner._read_all(errors_r)  # until the command's execve (or its failure)
        status = pipes.relay_until(child)
    else:
        message, status = _collect(errors_r, child)
    if message:
        os.write(2, f"pysandbox: error: {message}\n".encode())
    return status


def _collect(errors_r: int, child: int) -> tuple[str, int]:
    from pysbx.sandbox import runner

    return runner._read_all(errors_r), runner._wait(child, None)


def _join_and_exec(spec: RunSpec, init: int, pidfd: int, errors_w: int, console: object) -> None:
    """In the child: not dumpable first, then PID 1's cgroups and the command's namespaces
    (all at once, through its pidfd), then a fork into the pid namespace that ends in the
    command."""
    from pysbx.sandbox import capabilities, cgroups, runner

    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    capabilities.last_capability()  # read here: the container's /proc/sys may lie
    # PID 1 outside a container cgroup of ours (a sub-group it made, where a delegated
    # hierarchy lets it) would leave exec outside its limits: refused (join_cgroups_of)
    cgroups.join_cgroups_of(init, {item.name for item in spec.limits if item.mechanism.startswith("cgroup")})
    linux.setns(pidfd, sum(linux.NAMESPACE_FLAGS[name] for name in spec.namespaces), ", ".join(spec.namespaces))
    linux.prctl(linux.PR_SET_DUMPABLE, 0)  # joining the user namespace changed credentials
    os.close(pidfd)
    command = os.fork()
    if command == 0:
        runner._guarded(errors_w, lambda: runner._exec_command(spec, errors_w, console))  # type: ignore[arg-type]
    os.close(errors_w)
    os._exit(runner._wait(command, None))

"""`pysandbox ps|logs|attach|exec|stop|kill|pause|unpause|start|restart|rm|wait|inspect|
container prune|generate systemd`: detached containers (run -d), by Docker's names, flags and exit codes.
The work is in sandbox.containers, sandbox.lifecycle, sandbox.logs, sandbox.pause,
sandbox.attach and sandbox.enter."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from pysbx.cli.kit import ExitWith, fail
from pysbx.sandbox.errors import EXIT_SETUP_FAILED, SandboxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from pysbx.sandbox.containers import Container

CONTAINER = typer.Argument(help="Container name or id (a unique prefix of the id).", metavar="CONTAINER")


def _find(reference: str) -> Container:
    from pysbx.sandbox.containers import find

    try:
        return find(reference)
    except (SandboxError, OSError) as error:
        fail("pysandbox", str(error), 1)


def ps(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Show exited containers too.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the ids.")] = False,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-f",
            help="status=running|paused|restarting|exited|created, name=NAME, id=PREFIX, "
            "health=healthy|unhealthy|starting|none.",
        ),
    ] = None,
    output: Annotated[
        str,
        typer.Option("--format", help="table, json, or a Go template ({{.Names}}\\t{{.Status}}).", metavar="FORMAT"),
    ] = "table",
) -> None:
    """List detached containers (running ones unless -a)."""
    from pysbx.cli import lifecycle_cmd

    raise ExitWith(lifecycle_cmd.ps(all_, quiet, filters or [], output))


def logs(
    container: Annotated[str, CONTAINER],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the container exits.")] = False,
    tail: Annotated[str, typer.Option("--tail", "-n", help="Lines from the end (or all).", metavar="N")] = "all",
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Prefix each line with its time.")] = False,
    since: Annotated[str | None, typer.Option("--since", help="From a time (RFC 3339) or duration ago (10m).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Before this time or duration ago.")] = None,
) -> None:
    """The container's output, stdout to stdout and stderr to stderr, as it was written."""
    from pysbx.sandbox.logs import log_time, print_logs

    if tail != "all" and not tail.isdigit():
        fail("pysandbox", f"--tail {tail}: expected a number or all", EXIT_SETUP_FAILED)
    try:
        window = (log_time(since) if since else "", log_time(until) if until else "~")
    except SandboxError as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    print_logs(_find(container), None if tail == "all" else int(tail), timestamps, follow, window)


def stop(
    containers: Annotated[list[str], CONTAINER],
    time: Annotated[
        int | None, typer.Option("--time", "-t", help="Seconds to wait before SIGKILL (its --stop-timeout, 10).", min=0)
    ] = None,
) -> None:
    """The stop signal (the image's STOPSIGNAL or --stop-signal, else SIGTERM) to each
    container's command, then SIGKILL after --time seconds."""
    from pysbx.cli import lifecycle_cmd

    raise ExitWith(lifecycle_cmd.stop(containers, time))


def kill(
    containers: Annotated[list[str], CONTAINER],
    signal_name: Annotated[str, typer.Option("--signal", "-s", help="Signal name or number.")] = "KILL",
) -> None:
    """Send a signal to each running container's command (SIGKILL by default)."""
    from pysbx.sandbox.lifecycle import signal_container

    _each(containers, lambda container: signal_container(container, signal_name))


def rm(
    containers: Annotated[list[str], CONTAINER],
    force: Annotated[bool, typer.Option("--force", "-f", help="Kill a running container first.")] = False,
    volumes: Annotated[bool, typer.Option("--volumes", "-v", help="Remove its anonymous volumes (-v /path).")] = False,
) -> None:
    """Remove containers: their writable layer, log and name (with -v, anonymous volumes)."""
    from pysbx.sandbox.lifecycle import remove_container

    failed = False
    for reference in containers:
        try:
            remove_container(_find(reference), force, volumes)
            typer.echo(reference)
        except (SandboxError, OSError) as error:
            typer.echo(f"pysandbox: error: {error}", err=True)
            failed = True
    if failed:
        raise ExitWith(1)


def pause(containers: Annotated[list[str], CONTAINER]) -> None:
    """Freeze every process of each container (the cgroup freezer; the monitor goes on)."""
    from pysbx.sandbox.pause import pause_container

    _each(containers, pause_container)


def unpause(containers: Annotated[list[str], CONTAINER]) -> None:
    """Let each paused container run again."""
    from pysbx.sandbox.pause import unpause_container

    _each(containers, unpause_container)


def _each(references: list[str], action: Callable[[Container], None]) -> None:
    """`action` on each container, its reference echoed; exit 1 after the first failure."""
    for reference in references:
        try:
            action(_find(reference))
        except (SandboxError, OSError) as error:
            fail("pysandbox", str(error), 1)
        typer.echo(reference)


def wait(containers: Annotated[list[str], CONTAINER]) -> None:
    """Wait until each container exits; print its exit code."""
    from pysbx.sandbox.lifecycle import wait_for_exit

    for reference in containers:
        typer.echo(str(wait_for_exit(_find(reference))))


def port(
    container: Annotated[str, CONTAINER],
    private: Annotated[
        str | None, typer.Argument(help="Only this container port (PORT or PORT/PROTO).", metavar="[PORT[/PROTO]]")
    ] = None,
) -> None:
    """The container's published ports, as `CONTAINER_PORT/PROTO -> HOST_IP:HOST_PORT`."""
    from pysbx.sandbox.network import Published

    recorded = _find(container).record.get("ports")
    ports = [Published(**item) for item in recorded if isinstance(item, dict)] if isinstance(recorded, list) else []
    if private is not None:
        number, _, protocol = private.partition("/")
        ports = [item for item in ports if str(item.container_port) == number and item.protocol == (protocol or "tcp")]
        if not ports:
            fail("pysandbox", f"no public port '{private}' published for {container}", 1)
    for item in ports:
        typer.echo(str(item))


def inspect(containers: Annotated[list[str], CONTAINER]) -> None:
    """Each container's record and state, as JSON."""
    from pysbx.sandbox.lifecycle import describe

    json.dump([describe(_find(reference)) for reference in containers], sys.stdout, indent=2)
    sys.stdout.write("\n")


def exec_(
    container: Annotated[str, CONTAINER],
    command: Annotated[list[str], typer.Argument(help="The command and its arguments.", metavar="COMMAND...")],
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="With -t: typed input reaches it.")] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="A pseudo-terminal of the container's own.")] = False,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="Set K=V (or pass K on).")] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", "-w", help="Working folder inside.")] = None,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="USER[:GROUP] of the image's (when the policy allows exec -u).")
    ] = None,
) -> None:
    """Run COMMAND in a running container, confined as its own command is: the same user,
    capabilities, no_new_privs, seccomp filter, namespaces, cgroup and masked view."""
    from pysbx.cli import lifecycle_cmd

    raise ExitWith(lifecycle_cmd.exec_command(container, command, env or [], workdir, tty, interactive, user))


DETACH_KEYS = typer.Option("--detach-keys", help="Keys that detach (the container's, else ctrl-p,ctrl-q).")


def start(
    containers: Annotated[list[str], CONTAINER],
    attach: Annotated[bool, typer.Option("--attach", "-a", help="Attach to its output; its exit code.")] = False,
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="With -a, attach stdin too.")] = False,
    detach_keys: Annotated[str | None, DETACH_KEYS] = None,
) -> None:
    """Start exited containers again, with their writable layer and the verdict they had."""
    from pysbx.sandbox.lifecycle import start_container

    if attach:
        if len(containers) > 1:
            fail("pysandbox", "start -a attaches to one container", EXIT_SETUP_FAILED)
        raise ExitWith(_start_attached(_find(containers[0]), detach_keys, interactive))
    for reference in containers:
        try:
            start_container(_find(reference))
        except SandboxError as error:
            fail("pysandbox", str(error), int(getattr(error, "exit_code", EXIT_SETUP_FAILED)))
        typer.echo(reference)


def _start_attached(found: Container, detach_keys: str | None, interactive: bool) -> int:
    """start -a: attached before the container starts, so nothing it writes is missed."""
    from pysbx.sandbox.attach import connect
    from pysbx.sandbox.lifecycle import start_container

    clients: list[socket.socket] = []
    try:
        start_container(found, lambda: clients.append(connect(found.folder, wait=10)))
    except SandboxError as error:
        fail("pysandbox", str(error), int(getattr(error, "exit_code", EXIT_SETUP_FAILED)))
    return _attach(found, detach_keys, interactive, sig_proxy=True, client=clients[0])


def attach(
    container: Annotated[str, CONTAINER],
    detach_keys: Annotated[str | None, DETACH_KEYS] = None,
    no_stdin: Annotated[bool, typer.Option("--no-stdin", help="Do not attach stdin.")] = False,
    sig_proxy: Annotated[bool, typer.Option("--sig-proxy/--no-sig-proxy", help="Pass signals on (no -t).")] = True,
) -> None:
    """Attach here to a running container's output, and (started with -i) its input; the
    detach keys leave it running. The container's exit code when it ends."""
    raise ExitWith(_attach(_find(container), detach_keys, not no_stdin, sig_proxy))


def _attach(
    found: Container, keys: str | None, stdin: bool, sig_proxy: bool, client: socket.socket | None = None
) -> int:
    from pysbx.sandbox.attach import attach_to, parse_detach_keys

    if client is None and found.state() != "running":
        fail("pysandbox", f"container {found.name} is {found.state()}: attach needs a running one", 1)
    try:
        sequence = parse_detach_keys(keys if keys is not None else str(found.record.get("detach_keys", "")))
        return attach_to(found, sequence, stdin, sig_proxy, client)
    except (SandboxError, OSError) as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)


def restart(
    containers: Annotated[list[str], CONTAINER],
    time: Annotated[
        int | None, typer.Option("--time", "-t", help="Seconds to wait before SIGKILL (its --stop-timeout, 10).", min=0)
    ] = None,
) -> None:
    """Stop (the stop signal, then SIGKILL after --time) and start each container again."""
    from pysbx.sandbox.lifecycle import start_container, stop_container

    for reference in containers:
        try:
            stop_container(_find(reference), time)
            start_container(_find(reference))
        except SandboxError as error:
            fail("pysandbox", str(error), int(getattr(error, "exit_code", EXIT_SETUP_FAILED)))
        typer.echo(reference)


prune_app = typer.Typer(help="Containers as a group.", no_args_is_help=True, rich_markup_mode=None)


@prune_app.command("prune")
def container_prune(
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove every exited container (its writable layer, log and name)."""
    from pysbx.sandbox.lifecycle import prune_containers

    if not force and not typer.confirm("Remove all exited containers?", err=True, default=False):
        fail("pysandbox", "nothing removed (confirm, or pass --force)", 1)
    for container in prune_containers():
        typer.echo(container.id)


generate_app = typer.Typer(help="Files that run containers elsewhere.", no_args_is_help=True, rich_markup_mode=None)


@generate_app.command("systemd")
def generate_systemd(
    container: Annotated[str, CONTAINER],
    files: Annotated[bool, typer.Option("--files", "-f", help="Write container-NAME.service here.")] = False,
    restart_policy: Annotated[str, typer.Option("--restart-policy", help="systemd's Restart=.")] = "on-failure",
    time: Annotated[int | None, typer.Option("--time", "-t", help="Stop timeout (its --stop-timeout).", min=0)] = None,
) -> None:
    """A systemd unit that runs the container as a service across reboots: each start
    runs it anew (verified again) with the command line it was first run with."""
    import os

    from pysbx.cli.runargs import takes_value
    from pysbx.sandbox.systemd import unit, write_unit

    found = _find(container)
    try:
        text = unit(found, restart_policy, time, takes_value)
    except SandboxError as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    if not files:
        typer.echo(text, nl=False)
        return
    path = os.path.abspath(f"container-{found.name}.service")
    try:
        write_unit(path, text)
    except OSError as error:
        fail("pysandbox", f"{path}: {error.strerror or error}", EXIT_SETUP_FAILED)
    typer.echo(path)

"""What `ps`, `stop`, `kill`, `rm`, `wait`, `inspect`, `start` and `container prune` do with
detached containers (sandbox.containers holds the records, sandbox.monitor writes them;
sandbox.logs reads their logs, sandbox.pause freezes them)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

from pysbx.sandbox import times
from pysbx.sandbox.containers import LIVE, Container, all_containers, release_name, reloaded
from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.layercopy import SKIP_SAVE
from pysbx.sandbox.listing import Field, TemplateError, columns, fill_template
from pysbx.sandbox.logs import log_files
from pysbx.sandbox.pause import thaw, thaw_paused
from pysbx.sandbox.signals import FORWARDED

WAIT_POLL_SECONDS = 0.02  # wait and stop: a monitor that died unrecorded is seen within 20 ms
RECORD_POLL_SECONDS = 0.001  # first look for the monitor's record once PID 1 is gone; doubles


class FilterError(SandboxError):
    """A `ps --filter` that is not KEY=VALUE with a known key."""


def listing(include_exited: bool, filters: list[str]) -> list[dict[str, str]]:
    """One row per container, as `ps --format json` prints them."""
    wanted = _parse_filters(filters)
    rows = []
    for container in all_containers():
        state = container.state()
        if not include_exited and state not in LIVE and "status" not in wanted:
            continue
        if not all(_matches(container, state, key, values) for key, values in wanted.items()):
            continue
        rows.append({
            "id": container.id, "name": container.name, "image": str(container.record.get("image", "")),
            "command": " ".join(map(str, container.record.get("command") or [])),  # type: ignore[call-overload]
            "created": str(container.record.get("created", "")), "state": state,
            "status": status_text(container, state),
        })  # fmt: skip
    return rows


def _parse_filters(filters: list[str]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for item in filters:
        key, equals, value = item.partition("=")
        if not equals or key not in ("status", "name", "id", "health"):
            raise FilterError(f"--filter {item}: expected status=..., name=..., id=... or health=...")
        wanted.setdefault(key, []).append(value)
    return wanted


def _matches(container: Container, state: str, key: str, values: list[str]) -> bool:
    if key == "status":
        return state in values
    if key == "name":
        return any(value in container.name for value in values)  # Docker: a substring
    if key == "health":
        return (health_status(container, state) or "none") in values
    return any(container.id.startswith(value) for value in values)


def status_text(container: Container, state: str | None = None) -> str:
    """Docker's STATUS column: Up 3 minutes, Exited (0) 2 seconds ago, Created. (`state`:
    container.state() when the caller has it: each call reads /proc, ps's cost per row.)"""
    state = state or container.state()
    if state == "paused":
        return f"Up {ago(container.status.get('started'))} (Paused)"
    if state == "running":
        health = health_status(container, state)
        shown = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}
        return f"Up {ago(container.status.get('started'))}{shown.get(health, '')}"
    if state == "restarting":
        return f"Restarting ({container.exit_code()}) {ago(container.status.get('finished'))} ago"
    if state == "exited":
        code = container.exit_code()
        finished = container.status.get("finished")
        return f"Exited ({'?' if code is None else code}) {ago(finished)} ago" if finished else "Exited (monitor gone)"
    return "Created"


def ago(stamp: object) -> str:
    since = times.seconds_since(stamp)
    if since is None:
        return "?"
    seconds = int(since)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "Less than a second" if seconds < 1 else f"{seconds} second{'s' if seconds > 1 else ''}"


def table(rows: list[dict[str, str]]) -> str:
    headers = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")
    return columns(headers, [(row["id"][:12], row["image"], _short(row["command"]), ago(row["created"]) + " ago",
                              row["status"], row["name"]) for row in rows])  # fmt: skip


_TEMPLATE_FIELDS: dict[str, Field] = {
    "ID": ("CONTAINER ID", lambda row: row["id"][:12]),
    "Image": ("IMAGE", lambda row: row["image"]),
    "Command": ("COMMAND", lambda row: _short(row["command"])),
    "CreatedAt": ("CREATED AT", lambda row: row["created"]),
    "RunningFor": ("CREATED", lambda row: ago(row["created"]) + " ago"),
    "Status": ("STATUS", lambda row: row["status"]),
    "State": ("STATE", lambda row: row["state"]),
    "Names": ("NAMES", lambda row: row["name"]),
}


def templated(rows: list[dict[str, str]], template: str) -> str:
    """`ps --format` with a Go template: {{.ID}}, {{.Names}}, {{.Image}}, {{.Command}},
    {{.CreatedAt}}, {{.RunningFor}}, {{.Status}}, {{.State}}."""
    try:
        return fill_template(rows, template, _TEMPLATE_FIELDS)
    except TemplateError as error:
        raise FilterError(str(error)) from None


def _short(command: str) -> str:
    return json.dumps(command if len(command) <= 20 else command[:19] + "…", ensure_ascii=False)


# ----- stop, kill, wait, rm --------------------------------------------------------------------


def wait_for_exit(container: Container, timeout: float | None = None) -> int:
    """The exit code once the container has exited (-1 when its monitor died unrecorded)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    # The status as it is now: a caller's may be a run ago (`start -a` holds the container
    # as it was before the start, exited, with the last run's code).
    current, pause = reloaded(container), RECORD_POLL_SECONDS
    while current.state() in (*LIVE, "created"):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        if current.wait_for_init(WAIT_POLL_SECONDS):  # woken the moment PID 1 exits
            time.sleep(pause)  # then the monitor records it within milliseconds (a fixed 20 ms
            pause = min(2 * pause, WAIT_POLL_SECONDS)  # poll was a fifth of `stop`: bench/)
        current = reloaded(current)
    # "exited" can come from a monitor found dead after its status was read: what it wrote
    # before it died (its exit code) is in the status as it is now, unless a start since
    # has begun another run.
    final = reloaded(current)
    code = final.exit_code() if final.state() not in (*LIVE, "created") else current.exit_code()
    return -1 if code is None else code


def stop_container(container: Container, timeout: int | None = None) -> None:
    """The container's stop signal (its image's STOPSIGNAL or --stop-signal; TERM) through
    the monitor (to PID 1, then the command), SIGKILL after `timeout` (its --stop-timeout,
    10 s); no restart policy starts it again."""
    if container.state() not in LIVE:
        return
    seconds = timeout if timeout is not None else container.stop_timeout()
    signum = _signal_number(str(container.record.get("stop_signal") or "TERM"), "stop signal")
    container.ask_to_stop()
    if container.state() == "restarting":  # a monitor waiting to restart ends at TERM, whatever the stop signal
        container.signal_monitor(signal.SIGTERM)
    elif signum == signal.SIGKILL:
        container.kill_init()
    else:
        container.signal_monitor(signum)
    thaw(container)  # a paused command can take its signal only once it runs again
    try:
        wait_for_exit(container, seconds)
    except TimeoutError:
        container.kill_init()
        wait_after_kill(container)


SAVE_WAIT = 300  # seconds a monitor may take to save a bounded writable layer after its run


def wait_after_kill(container: Container) -> None:
    """After SIGKILL to PID 1: 10 s for the monitor to record the exit, and longer while PID 1
    is gone but the monitor lives on, saving a bounded writable layer (sandbox.layercopy:
    bounded by the layer's size and inodes). Found by review: a large layer outlasted 10 s."""
    try:
        wait_for_exit(container, 10)
    except TimeoutError:
        if reloaded(container).init_alive():
            raise SandboxError(f"container {container.name} did not exit within 10 s of SIGKILL") from None
        try:
            wait_for_exit(container, SAVE_WAIT)
        except TimeoutError:
            raise SandboxError(
                f"container {container.name}: its monitor is still saving its writable layer after {SAVE_WAIT} s"
            ) from None


def signal_container(container: Container, name: str) -> None:
    signum = _signal_number(name)
    if container.state() not in ("running", "paused"):
        raise SandboxError(f"container {container.name} is not running")
    if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):  # Docker: a kill is not restarted
        container.ask_to_stop()
    delivered = container.kill_init() if signum == signal.SIGKILL else container.signal_monitor(signum)
    if not delivered:
        raise SandboxError(f"container {container.name} is not running")
    if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        thaw(container)


DELIVERED = ("KILL", *(signal.Signals(signum).name.removeprefix("SIG") for signum in FORWARDED))


def _signal_number(name: str, flag: str = "--signal") -> int:
    """A signal the monitor forwards to the command (or KILL, which goes to PID 1): any other
    would reach the monitor itself (found by review: ALRM killed it, STOP froze it)."""
    text = name.upper().removeprefix("SIG")
    numbers = {int(getattr(signal, f"SIG{known}")): known for known in DELIVERED}
    number = int(text) if text.isdigit() else int(getattr(signal, f"SIG{text}", 0))
    if number not in numbers:
        raise SandboxError(f"{flag} {name}: pysandbox delivers {', '.join(DELIVERED)} (as names or numbers)")
    return number


def signal_name(name: str, flag: str) -> str:
    """`name` (QUIT, SIGQUIT, 3) as the name of a signal the monitor delivers: SIGQUIT."""
    return signal.Signals(_signal_number(name, flag)).name


def remove_container(container: Container, force: bool, volumes: bool = False) -> None:
    """Delete the container's folder (its writable layer and log) and release its name; with
    `volumes` (rm -v), its anonymous volumes too."""
    from pysbx.sandbox.prune import remove_tree
    from pysbx.sandbox.volumes import remove_anonymous

    if container.state() in LIVE:
        if not force:
            raise SandboxError(f"container {container.name} is running: stop it first, or rm -f")
        container.ask_to_stop()
        (container.folder / SKIP_SAVE).touch()  # its writable layer is not saved: it goes now
        container.signal_monitor(signal.SIGTERM)  # a monitor waiting to restart ends there
        container.kill_init()
        thaw(container)
        wait_after_kill(container)
    thaw_paused(container.folder)  # its monitor died while it was paused: its processes go now
    remove_tree(container.folder)
    release_name(container.name, container.folder)
    if volumes:
        remove_anonymous(container.listed("anonymous_volumes"))


def describe(container: Container) -> dict[str, object]:
    """`inspect`: the record (image, digest, verdict, policy, stop signal), the status as
    written, the state as reconciled, health, and the confinement it runs under (user,
    capabilities, seccomp, namespaces, mounts, limits) as its saved spec says."""
    from pysbx.sandbox.health import read_health

    return {**container.record, "folder": str(container.folder), "state": container.state(),
            "status": container.status, "health": read_health(container.folder) if _has_health(container) else None,
            "confinement": _confinement(container),
            "log_files": [str(path) for path in log_files(container)]}  # fmt: skip


def _confinement(container: Container) -> dict[str, object] | None:
    from pysbx.sandbox.specfile import load_spec

    try:
        spec, _ = load_spec(container.folder)
    except (OSError, ValueError, KeyError, TypeError, SandboxError):
        return None
    return {
        "user": {"uid": spec.user.uid, "gid": spec.user.gid, "groups": list(spec.user.groups)},
        "capabilities": f"{spec.capabilities:#018x}",
        "no_new_privileges": spec.no_new_privileges,
        "seccomp": None if spec.seccomp_bpf is None else f"{len(spec.seccomp_bpf) // 8} BPF instructions",
        "namespaces": list(spec.namespaces),
        "network": spec.network,
        "id_maps": spec.id_maps.describe(),
        "read_only_rootfs": spec.read_only_rootfs,
        "mounts": [{"type": "bind", "source": item.source, "destination": item.destination,
                    "read_only": item.read_only} for item in spec.binds]
        + [{"type": "tmpfs", "destination": item.destination, "size": item.size} for item in spec.tmpfs],
        "limits": [{"name": item.name, "value": item.value, "mechanism": item.mechanism} for item in spec.limits],
        "masked_paths": list(spec.masked_paths),
        "readonly_paths": list(spec.readonly_paths),
    }  # fmt: skip


def _has_health(container: Container) -> bool:
    return container.record.get("healthcheck") is True


def health_status(container: Container, state: str | None = None) -> str:
    """starting, healthy or unhealthy while it runs with a check; "" otherwise."""
    if not _has_health(container) or (state or container.state()) != "running":
        return ""
    from pysbx.sandbox.health import read_health

    health = read_health(container.folder) or {}
    return str(health.get("status", "starting"))


def start_container(container: Container, before_start: Callable[[], None] | None = None) -> None:
    """Start an exited container again: its saved spec, its writable layer, the verdict it
    started with (nothing is verified again, as Docker's start); a new monitor, which waits
    for `before_start` (start -a attaching) to be done before the container starts."""
    from pysbx.sandbox.containers import STOP_REQUESTED
    from pysbx.sandbox.detach import options_from_record
    from pysbx.sandbox.monitor import start_detached
    from pysbx.sandbox.specfile import load_spec

    if container.state() != "exited":
        raise SandboxError(f"container {container.name} is {container.state()}: only an exited one starts again")
    try:
        spec, extra = load_spec(container.folder)
    except (OSError, SandboxError, KeyError, TypeError, ValueError) as error:  # e.g. a monitor that never started it
        raise SandboxError(f"container {container.name} cannot start again: its saved spec is unreadable "
                           f"({error}): rm it and run the image again") from None  # fmt: skip
    missing = [folder for folder in spec.lowers if not os.path.isdir(folder)]
    if missing:
        raise SandboxError(f"container {container.name}: its image layers are gone from the cache ({missing[0]}): "
                           "run the image again")  # fmt: skip
    options = options_from_record(container, extra)
    options.attach_first = before_start is not None
    for note in (STOP_REQUESTED, SKIP_SAVE):  # what an earlier stop or a failed rm -f left
        (container.folder / note).unlink(missing_ok=True)
    start_detached(spec, container.folder, options, before_start)


def prune_containers() -> list[Container]:
    """`container prune`: remove every exited container; return them."""
    removed = []
    for container in all_containers():
        if container.state() == "exited":
            remove_container(container, force=False)
            removed.append(container)
    return removed

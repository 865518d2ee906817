"""What `ps`, `logs`, `stop`, `kill`, `rm`, `wait` and `inspect` do with detached containers
(sandbox.containers holds the records, sandbox.monitor writes them)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pysbx.sandbox.containers import LOG, Container, all_containers, release_name
from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.layercopy import SKIP_SAVE
from pysbx.sandbox.signals import FORWARDED

LIVE = ("running", "paused", "restarting")  # states with a monitor at work
POLL_SECONDS = 0.1  # logs -f
WAIT_POLL_SECONDS = 0.02  # wait and stop: an exit is seen within 20 ms


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
            "created": str(container.record.get("created", "")), "state": state, "status": status_text(container),
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
        return (health_status(container) or "none") in values
    return any(container.id.startswith(value) for value in values)


def status_text(container: Container) -> str:
    """Docker's STATUS column: Up 3 minutes, Exited (0) 2 seconds ago, Created."""
    state = container.state()
    if state == "paused":
        return f"Up {_ago(container.status.get('started'))} (Paused)"
    if state == "running":
        health = health_status(container)
        shown = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}
        return f"Up {_ago(container.status.get('started'))}{shown.get(health, '')}"
    if state == "restarting":
        return f"Restarting ({container.exit_code()}) {_ago(container.status.get('finished'))} ago"
    if state == "exited":
        code = container.exit_code()
        finished = container.status.get("finished")
        return f"Exited ({'?' if code is None else code}) {_ago(finished)} ago" if finished else "Exited (monitor gone)"
    return "Created"


def _ago(stamp: object) -> str:
    try:
        then = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "Less than a second" if seconds < 1 else f"{seconds} second{'s' if seconds > 1 else ''}"


def table(rows: list[dict[str, str]]) -> str:
    headers = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")
    cells = [(row["id"][:12], row["image"], _short(row["command"]), _ago(row["created"]) + " ago", row["status"],
              row["name"]) for row in rows]  # fmt: skip
    widths = [max(len(str(line[index])) for line in [headers, *cells]) for index in range(len(headers))]
    return "\n".join("   ".join(str(value).ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
                     for line in [headers, *cells])  # fmt: skip


_TEMPLATE_FIELDS: dict[str, tuple[str, Callable[[dict[str, str]], str]]] = {
    "ID": ("CONTAINER ID", lambda row: row["id"][:12]),
    "Image": ("IMAGE", lambda row: row["image"]),
    "Command": ("COMMAND", lambda row: _short(row["command"])),
    "CreatedAt": ("CREATED AT", lambda row: row["created"]),
    "RunningFor": ("CREATED", lambda row: _ago(row["created"]) + " ago"),
    "Status": ("STATUS", lambda row: row["status"]),
    "State": ("STATE", lambda row: row["state"]),
    "Names": ("NAMES", lambda row: row["name"]),
}
_PLACEHOLDER = r"{{\s*\.(\w+)\s*}}"


def templated(rows: list[dict[str, str]], template: str) -> str:
    """`ps --format` with a Go template as Docker's CLI takes one: {{.ID}}, {{.Names}},
    {{.Image}}, {{.Command}}, {{.CreatedAt}}, {{.RunningFor}}, {{.Status}}, {{.State}};
    \\t is a tab, and a leading `table ` adds the header row."""
    header, text = template.startswith("table "), template.removeprefix("table ").replace("\\t", "\t")
    placeholder = re.compile(_PLACEHOLDER)  # compiled here: ps without a template never pays for it
    unknown = [name for name in placeholder.findall(text) if name not in _TEMPLATE_FIELDS]
    if unknown or "{{" in placeholder.sub("", text):
        raise FilterError(f"--format {template}: expected table, json or a template of {{{{.Field}}}} with "
                          f"{', '.join(_TEMPLATE_FIELDS)}")  # fmt: skip
    lines = [placeholder.sub(lambda match: _TEMPLATE_FIELDS[match.group(1)][0], text)] if header else []
    return "\n".join(lines + [_fill(placeholder, text, row) for row in rows])


def _fill(placeholder: re.Pattern[str], text: str, row: dict[str, str]) -> str:
    return placeholder.sub(lambda match: _TEMPLATE_FIELDS[match.group(1)][1](row), text)


def _short(command: str) -> str:
    return json.dumps(command if len(command) <= 20 else command[:19] + "…", ensure_ascii=False)


# ----- logs ----------------------------------------------------------------------------------


def log_files(container: Container) -> list[Path]:
    """ctr.log and its rotated predecessors, oldest first."""
    rotated = [path for path in container.folder.glob(f"{LOG}.*") if path.suffix[1:].isdigit()]
    return [*sorted(rotated, key=lambda path: int(path.suffix[1:]), reverse=True), container.folder / LOG]


def print_logs(
    container: Container, tail: int | None, timestamps: bool, follow: bool, window: tuple[str, str] = ("", "~")
) -> None:
    """The log, or its last `tail` entries, written between `window` (times as the log
    writes them, log_time makes them); with `follow`, then what comes until the container
    exits (or passes the window's end)."""
    since, until = window
    entries = [e for path in log_files(container) for e in _entries(path) if since <= e.get("time", "") < until]
    for entry in entries[len(entries) - tail :] if tail is not None else entries:
        _show(entry, timestamps)
    if follow:
        _follow(container, timestamps, window)


def log_time(text: str, now: datetime.datetime | None = None) -> str:
    """--since/--until as Docker reads them: an RFC 3339 time (2026-12-05T10:00:00Z, or a
    date) or a duration back from now (90s, 10m, 2h), as the log writes its times."""
    moment = now or datetime.datetime.now(datetime.UTC)
    units = {"s": 1, "m": 60, "h": 3600}
    if text[:-1].isdigit() and text[-1:] in units:
        moment -= datetime.timedelta(seconds=int(text[:-1]) * units[text[-1]])
    else:
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise SandboxError(f"{text}: expected a time (2026-12-05T10:00:00Z) or a duration (10m)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _entries(path: Path, offset: int = 0) -> Iterator[dict[str, str]]:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            for line in log:
                if line.endswith(b"\n"):
                    yield json.loads(line)
    except (OSError, ValueError):
        return


def _show(entry: dict[str, str], timestamps: bool) -> None:
    out = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
    out.write((f"{entry.get('time', '')} " if timestamps else "") + str(entry.get("log", "")))
    out.flush()


def _follow(container: Container, timestamps: bool, window: tuple[str, str]) -> None:
    """Print what is appended until the container has exited and its log is complete (the
    monitor records the exit after the log writer has finished), or an entry passes the
    window's end. The file stays open between reads: when the writer rotates it (ctr.log
    becomes ctr.log.1), what was added to it before the rotation is read to its end first,
    then the new ctr.log from its start, so no line is lost between two reads."""
    path = container.folder / LOG
    log = _open_at_end(path)
    try:
        while True:
            done = _reloaded(container).state() not in LIVE
            if not _print_new(log, timestamps, window):
                return
            current = _identity(path)
            if log is None or (current is not None and current != os.fstat(log.fileno()).st_ino):
                log = _next_file(container, log, timestamps, window)
                if log is not None:
                    continue  # read the new file at once
            if log is not None and log.tell() > os.fstat(log.fileno()).st_size:  # truncated (max-file=1)
                log.seek(0)
            if done:
                return
            time.sleep(POLL_SECONDS)
    finally:
        if log is not None:
            log.close()


def _next_file(container: Container, log: Any, timestamps: bool, window: tuple[str, str]) -> Any:
    """After a rotation: the rest of the file we had (the writer closed it before renaming
    it), every file rotated after it (several rotations may come between two reads), and the
    new ctr.log, open at its start."""
    files = log_files(container)
    if log is not None:
        _print_new(log, timestamps, window)
        ours = os.fstat(log.fileno()).st_ino
        log.close()
        inodes = [_identity(path) for path in files]
        files = files[inodes.index(ours) + 1 :] if ours in inodes else files[-1:]
    for path in files[:-1]:
        with open(path, "rb") as rotated:
            _print_new(rotated, timestamps, window)
    try:
        return open(files[-1], "rb")
    except OSError:
        return None


def _open_at_end(path: Path) -> Any:
    try:
        log = open(path, "rb")  # noqa: SIM115 - kept open across reads
    except OSError:
        return None
    log.seek(0, os.SEEK_END)
    return log


def _identity(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _print_new(log: Any, timestamps: bool, window: tuple[str, str]) -> bool:
    """Print the whole lines added since the last read; False once one passes the window."""
    if log is None:
        return True
    while True:
        start = log.tell()
        line = log.readline()
        if not line.endswith(b"\n"):
            log.seek(start)  # half written: read again next time
            return True
        entry = json.loads(line)
        if entry.get("time", "") >= window[1]:
            return False
        if entry.get("time", "") >= window[0]:
            _show(entry, timestamps)


def _reloaded(container: Container) -> Container:
    from pysbx.sandbox.containers import STATUS, read_json

    try:
        return Container(container.folder, container.record, read_json(container.folder, STATUS))
    except (OSError, ValueError, SandboxError):
        return container


# ----- stop, kill, wait, rm --------------------------------------------------------------------


def wait_for_exit(container: Container, timeout: float | None = None) -> int:
    """The exit code once the container has exited (-1 when its monitor died unrecorded)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    current = container
    while current.state() in (*LIVE, "created"):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(WAIT_POLL_SECONDS)
        current = _reloaded(current)
    code = current.exit_code()
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
    _thaw(container)  # a paused command can take its signal only once it runs again
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
        if _reloaded(container).init_alive():
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
        _thaw(container)


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
        _thaw(container)
        wait_after_kill(container)
    thaw_paused(container.folder)  # its monitor died while it was paused: its processes go now
    remove_tree(container.folder)
    release_name(container.name, container.folder)
    anonymous = container.record.get("anonymous_volumes")
    if volumes and isinstance(anonymous, list):
        remove_anonymous([str(name) for name in anonymous])


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


def health_status(container: Container) -> str:
    """starting, healthy or unhealthy while it runs with a check; "" otherwise."""
    if not _has_health(container) or container.state() != "running":
        return ""
    from pysbx.sandbox.health import read_health

    health = read_health(container.folder) or {}
    return str(health.get("status", "starting"))


def start_container(container: Container, before_start: Callable[[], None] | None = None) -> None:
    """Start an exited container again: its saved spec, its writable layer, the verdict it
    started with (nothing is verified again, as Docker's start); a new monitor, which waits
    for `before_start` (start -a attaching) to be done before the container starts."""
    from pysbx.sandbox.containers import STOP_REQUESTED
    from pysbx.sandbox.monitor import DetachOptions, LogBounds, start_detached
    from pysbx.sandbox.restart import parse_restart
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
    record: dict[str, Any] = container.record
    log = record.get("log") or {}
    bounds = LogBounds(int(log.get("max_size", 10 << 20)), int(log.get("max_file", 1)))
    options = DetachOptions(bounds, parse_restart(str(record.get("restart", "no"))), False, container.name, extra)
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


# ----- pause, unpause ----------------------------------------------------------------------------


def pause_container(container: Container) -> None:
    """Freeze every process of the container (Docker's pause: the cgroup freezer, where the
    host gives pysandbox one); the monitor and its log writer go on. The marker names the
    cgroup, so whatever becomes of the monitor, rm and unpause can thaw it."""
    from pysbx.sandbox import cgroups
    from pysbx.sandbox.containers import PAUSED, now, write_json

    state = container.state()
    if state != "running":
        raise SandboxError(f"container {container.name} is {state}: only a running one pauses")
    folder, version = _freezer(container)
    write_json(container.folder, PAUSED, {"at": now(), "cgroup": folder})
    try:
        cgroups.set_frozen(folder, version, True)
    except OSError:
        thaw_paused(container.folder)
        raise


def unpause_container(container: Container) -> None:
    from pysbx.sandbox.containers import PAUSED

    if not (container.folder / PAUSED).exists():
        raise SandboxError(f"container {container.name} is not paused")
    thaw_paused(container.folder)


def _thaw(container: Container) -> None:
    """Let a paused container run again (stop, kill and rm do, after their signal)."""
    thaw_paused(container.folder)


def thaw_paused(folder: Path) -> None:
    """Thaw the cgroup the pause marker in `folder` names, whatever the container's state (a
    monitor that died while it was paused left its processes frozen: found by review), and
    remove the marker. The cgroup is thawed only if it is a container cgroup of ours."""
    from pysbx.sandbox import cgroups
    from pysbx.sandbox.containers import PAUSED, read_json

    try:
        recorded = read_json(folder, PAUSED).get("cgroup")
    except (OSError, ValueError, SandboxError):
        recorded = None
    found = cgroups.container_freezer(recorded) if isinstance(recorded, str) else None
    if found is not None:
        with contextlib.suppress(OSError):  # emptied meanwhile: nothing is frozen
            cgroups.set_frozen(*found, False)
    (folder / PAUSED).unlink(missing_ok=True)


def _freezer(container: Container) -> tuple[str, int]:
    """The container's freezer cgroup, found from its recorded PID 1 (while that is still
    the recorded process), or the one line that says this host gives none."""
    from pysbx.sandbox import cgroups

    init = container.status.get("init")
    found = cgroups.freezer_of(int(init[0])) if isinstance(init, list) and container.init_alive() else None
    if found is None or not container.init_alive():
        raise SandboxError(f"container {container.name}: pause needs the cgroup freezer, which this host does not "
                           "give pysandbox here (cgroup v1 freezer not writable, no delegated cgroup v2)")  # fmt: skip
    return found

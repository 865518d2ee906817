"""Detached containers as records on disk: what `ps`, `logs`, `stop`, `rm`, `wait` and
`inspect` read. A detached container's state folder (sandbox.state.container_dir) also holds

    container.json   what it is: id, name, image, policy, command, created, log bounds
    status.json      what it does: created/running/exited, the monitor's and PID 1's pids
                     with their start times, exit code, times (written whole, renamed in)
    ctr.log          its output as Docker's json-file lines, rotated by size

and its name is claimed in the cache's `names/` folder with O_EXCL, so two runs with one name
cannot both start. Every status is reconciled with the processes it names (pid and start
time): a monitor killed with SIGKILL leaves a container that `ps` shows as exited, never as
running."""

from __future__ import annotations

import os
import select

from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.jsonread import loads
from pysbx.sandbox.procfs import start_time
from pysbx.sandbox.state import (
    NAMES,
    check_private_file,
    claim_holder,
    claimed_by,
    private_folder,
    private_root,
    state_bases,
)

RECORD, STATUS, LOG = "container.json", "status.json", "ctr.log"
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Iterator
    from pathlib import Path

    Folder = str | os.PathLike[str]
else:  # the C half of `signal`: `signal` itself imports enum (sandbox.runner says more)
    import _signal as signal

STOP_REQUESTED = "stop-requested"  # written by stop/kill/rm -f before they signal: no restart after
PAUSED = "paused"  # written by pause once the freezer holds the container, removed by unpause
EXPLAIN = "explain.json"  # run -d --explain: what the monitor heard (sandbox.notify), for `explain NAME`
EXPLAIN_EXEC = "explain-exec.json"  # and what exec'd processes' listeners heard (sandbox.enter)
EXPLAIN_LIMIT = 8 << 20  # explain.json: 256 kinds with their path arguments fit well within
RECORD_LIMIT = 1 << 20
STOP_TIMEOUT = 10  # Docker's seconds between the stop signal and SIGKILL
LIVE = ("running", "paused", "restarting")  # states with a monitor at work


class NoSuchContainer(SandboxError):
    """No container of this user has that name or id."""


def new_id() -> str:
    return os.urandom(32).hex()


class Container:
    """One detached container: its folder, its record, and its status as last written. (A
    plain class: dataclasses imports inspect, a sixth of `exec`'s imports.)"""

    def __init__(self, folder: Folder, record: dict[str, object], status: dict[str, object]) -> None:
        self.path, self.record, self.status = os.fspath(folder), record, status

    @property
    def folder(self) -> Path:
        """Its state folder as a Path (`path` is the same as a str: exec, ps and stop import
        no pathlib, 3 ms of theirs)."""
        from pathlib import Path

        return Path(self.path)

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def name(self) -> str:
        return str(self.record["name"])

    def state(self) -> str:
        """created, running, paused, restarting or exited, after checking the processes the
        status names."""
        recorded = str(self.status.get("status", "created"))
        if recorded in ("created", "running", "restarting") and not _alive(self.status.get("monitor")):
            return "exited"  # the monitor died without writing (SIGKILL): nothing runs on
        if recorded in ("running", "restarting") and os.path.exists(os.path.join(self.path, PAUSED)):
            return "paused"
        return recorded

    def init_alive(self) -> bool:
        """Whether the recorded PID 1 (pid and start time) still runs: between its death and
        the monitor's last word, status.json still says running, and the pid may be reused."""
        return _alive(self.status.get("init"))

    def wait_for_init(self, seconds: float) -> bool:
        """Wait up to `seconds` for the recorded PID 1 to exit, on its pidfd (no polling):
        whether it is gone (at once when it was gone already)."""
        pidfd = _pidfd(self.status.get("init"))
        if pidfd is None:
            return True
        try:
            return bool(select.select([pidfd], [], [], seconds)[0])
        finally:
            os.close(pidfd)

    def exit_code(self) -> int | None:
        code = self.status.get("exit_code")
        return code if isinstance(code, int) else None

    def signal_monitor(self, signum: int) -> bool:
        """Send `signum` to the monitor, which forwards it to PID 1 (and it to the command)."""
        return _signal_recorded(self.status.get("monitor"), signum)

    def kill_init(self) -> bool:
        """SIGKILL to the container's PID 1: every process of its pid namespace goes with it."""
        return _signal_recorded(self.status.get("init"), signal.SIGKILL)

    def listed(self, key: str) -> list[str]:
        """The names its record lists under `key` (volumes, anonymous_volumes); [] for none."""
        names = self.record.get(key)
        return [str(name) for name in names] if isinstance(names, list) else []

    def stop_timeout(self) -> int:
        """Seconds between the stop signal and SIGKILL: its --stop-timeout (0 too), else 10."""
        recorded = self.record.get("stop_timeout")
        return recorded if isinstance(recorded, int) else STOP_TIMEOUT

    def ask_to_stop(self) -> None:
        """Tell the monitor that what ends the command now is a stop: no restart follows."""
        from pysbx.sandbox.times import now  # datetime: only what writes a time pays for it

        write_json(self.path, STOP_REQUESTED, {"at": now()})


def process_record(pid: int) -> list[object]:
    return [pid, start_time(pid)]


def _process(recorded: object) -> tuple[int, object] | None:
    """A [pid, start time] record as (pid, start time), or None when it is not one."""
    if not isinstance(recorded, list) or len(recorded) != 2 or not isinstance(recorded[0], int):
        return None
    return recorded[0], recorded[1]


def _alive(recorded: object) -> bool:
    process = _process(recorded)
    return process is not None and start_time(process[0]) == process[1]


def _pidfd(recorded: object) -> int | None:
    """A pidfd on the process a [pid, start time] record names, None when that process is
    gone: opened before the start time is checked, so a pid reused after the check is never
    the process it holds."""
    process = _process(recorded)
    if process is None:
        return None
    try:
        pidfd = os.pidfd_open(process[0])
    except OSError:
        return None
    if start_time(process[0]) != process[1]:
        os.close(pidfd)
        return None
    return pidfd


def _signal_recorded(recorded: object, signum: int) -> bool:
    """Signal the process a [pid, start time] record names, if it is still that process."""
    pidfd = _pidfd(recorded)
    if pidfd is None:
        return False
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)
    return True


def write_json(folder: Folder, name: str, document: dict[str, object]) -> None:
    """Write `name` whole: a reader sees the old document or the new one, never half."""
    import json  # reading needs none of it (sandbox.jsonread)

    write_private(folder, name, json.dumps(document).encode())


def read_json(folder: Folder, name: str, limit: int = RECORD_LIMIT) -> dict[str, object]:
    """A document of ours, read as a private regular file (never through a link, bounded)."""
    path = os.path.join(folder, name)
    document = loads(read_private(path, limit))
    if not isinstance(document, dict):
        raise SandboxError(f"{path}: expected a JSON object")
    return document


def read_private(path: Folder, limit: int) -> bytes:
    """A file of ours, read as a private regular file: never through a link, at most `limit`."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as source:
        check_private_file(source.fileno(), str(path))
        data = source.read(limit + 1)
    if len(data) > limit:
        raise SandboxError(f"{path}: larger than {limit} bytes")
    return data


def write_private(folder: Folder, name: str, data: bytes) -> None:
    """Write `name` whole, as write_json does."""
    temporary = os.path.join(folder, f".{name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(temporary, os.path.join(folder, name))


def all_containers() -> Iterator[Container]:
    """Every detached container of this user, oldest first."""
    found = []
    for base in state_bases(private_root()):
        try:
            folders = os.listdir(base)
        except OSError:
            continue
        for folder in folders:
            loaded = load(os.path.join(base, folder))
            if loaded is not None:
                found.append(loaded)
    yield from sorted(found, key=lambda item: str(item.record.get("created", "")))


def load(folder: Folder) -> Container | None:
    """The container whose folder this is, or None when it holds no readable record."""
    if os.path.islink(folder) or not os.path.isfile(os.path.join(folder, RECORD)):  # never raise on a stat
        return None
    try:
        record = read_json(folder, RECORD)
        status = read_json(folder, STATUS) if os.path.exists(os.path.join(folder, STATUS)) else {}
    except (OSError, ValueError, SandboxError):
        return None
    return Container(folder, record, status)


def reloaded(container: Container) -> Container:
    """`container` with its status as last written (itself when that cannot be read)."""
    try:
        return Container(container.path, container.record, read_json(container.path, STATUS))
    except (OSError, ValueError, SandboxError):
        return container


def find(reference: str) -> Container:
    """The container with this name, or whose id starts with `reference` (Docker's rule: a
    unique prefix of at least one character)."""
    named = _holder_of(reference)
    if named is not None:  # the common case, through the name's claim: one record read, not all
        return named
    everyone = list(all_containers())  # read once: names first, then id prefixes
    matches = [item for item in everyone if item.name == reference]
    if not matches:
        matches = [item for item in everyone if item.id.startswith(reference)]
    if len(matches) > 1:
        raise SandboxError(f"{reference!r} matches {len(matches)} containers: give more of the id")
    if not matches:
        raise NoSuchContainer(f"no such container: {reference}")
    return matches[0]


def _holder_of(name: str) -> Container | None:
    """The container whose claim holds `name`, if that claim names a container folder of
    ours that still calls itself so."""
    if not name or "/" in name or name in (".", ".."):
        return None
    held = claimed_by(name)
    if held is None or os.path.dirname(held) not in state_bases(private_root()):
        return None
    found = load(held)
    return found if found is not None and found.name == name else None


# ----- names: one container per name, claimed atomically ------------------------------------


def _names() -> str:
    return private_folder(os.path.join(private_root(), NAMES))


def claim_name(name: str, folder: Folder) -> None:
    """Claim `name` for the container in `folder`, or raise SandboxError naming the holder.
    The claim is written whole to a new file first and linked in under the name (link fails
    when the name exists: O_EXCL's rule), so no claim is ever empty (found by the stress
    test: a run -d killed between creating the file and writing it left an empty claim that
    held the name for good). A claim whose container is gone is taken over."""
    names = _names()
    path = os.path.join(names, name)
    draft = os.path.join(names, f".{name}.{os.urandom(6).hex()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(os.fspath(folder))
    try:
        for _ in range(3):
            try:
                os.link(draft, path, follow_symlinks=False)
                return
            except FileExistsError:
                holder = claim_holder(path)
                if holder and os.path.isdir(holder):  # False, not an error, when unreachable
                    raise SandboxError(
                        f"the container name {name!r} is in use by {os.path.basename(holder)}: remove it first"
                    ) from None
                _unlink(path)
        raise SandboxError(f"could not claim the container name {name!r}")
    finally:
        _unlink(draft)


def release_name(name: str, folder: Folder) -> None:
    path = os.path.join(_names(), name)
    held = claim_holder(path)
    if held and os.path.normpath(held) == os.path.normpath(folder):
        _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return

"""Id mapping: container root is never host root. An ordinary user maps container root to
their own uid, plus their /etc/subuid and /etc/subgid ranges through newuidmap/newgidmap
when present; root maps container ids to an unprivileged range."""

from __future__ import annotations

import os
import pwd

from sandbox.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # the warm path of `run` must not import the policy model
    from policies.model import IdMapping


class IdRange(Record):
    __slots__ = ("container", "host", "size")

    def __init__(self, container: int, host: int, size: int) -> None:
        self.container = container
        self.host = host
        self.size = size


class IdMaps(Record):
    __slots__ = ("gids", "uids", "via_helpers")

    def __init__(self, uids: tuple[IdRange, ...], gids: tuple[IdRange, ...], via_helpers: bool) -> None:
        self.uids = uids
        self.gids = gids
        self.via_helpers = via_helpers  # newuidmap/newgidmap write them (else we write them ourselves)

    @property
    def root_host_uid(self) -> int:
        return self.uids[0].host

    @property
    def setgroups_allowed(self) -> bool:
        """The kernel requires setgroups to be denied before an unprivileged process writes
        gid_map itself; root and the setuid helpers may leave it allowed."""
        return os.geteuid() == 0 or self.via_helpers

    def describe(self) -> str:
        return ", ".join(f"{r.container}->{r.host} ({r.size})" for r in self.uids)


def _subordinate(path: str, user: str, uid: int) -> IdRange | None:
    try:
        with open(path) as table:
            lines = table.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in (user, str(uid)) and fields[1].isdigit() and fields[2].isdigit():
            return IdRange(1, int(fields[1]), min(int(fields[2]), 65535))
    return None


def plan_id_maps(policy: IdMapping) -> IdMaps:
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        host = 0 if policy.map_root_to_host_root else policy.host_base
        whole = (IdRange(0, host, policy.size),)
        return IdMaps(whole, whole, via_helpers=False)
    import shutil

    own_uid, own_gid = (IdRange(0, uid, 1),), (IdRange(0, gid, 1),)
    if not policy.subordinate_ids or not (shutil.which("newuidmap") and shutil.which("newgidmap")):
        return IdMaps(own_uid, own_gid, via_helpers=False)
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        return IdMaps(own_uid, own_gid, via_helpers=False)
    sub_uid, sub_gid = _subordinate("/etc/subuid", user, uid), _subordinate("/etc/subgid", user, uid)
    if sub_uid is None or sub_gid is None:
        return IdMaps(own_uid, own_gid, via_helpers=False)
    return IdMaps((*own_uid, sub_uid), (*own_gid, sub_gid), via_helpers=True)


def write_id_maps(pid: int, maps: IdMaps) -> None:
    """Map the user namespace that process `pid` has just created."""
    if maps.via_helpers:
        _run_helpers(pid, maps)
        return
    if not maps.setgroups_allowed:
        _write(f"/proc/{pid}/setgroups", "deny")
    _write(f"/proc/{pid}/uid_map", "".join(f"{r.container} {r.host} {r.size}\n" for r in maps.uids))
    _write(f"/proc/{pid}/gid_map", "".join(f"{r.container} {r.host} {r.size}\n" for r in maps.gids))


def _write(path: str, text: str) -> None:
    with open(path, "w") as target:
        target.write(text)


def _run_helpers(pid: int, maps: IdMaps) -> None:
    """newuidmap and newgidmap, started together (each is a setuid exec of a few ms), their
    error output collected; one OSError naming every helper that failed."""
    started = []
    for tool, ranges in (("newuidmap", maps.uids), ("newgidmap", maps.gids)):
        args = [str(n) for r in ranges for n in (r.container, r.host, r.size)]
        read, write = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, write, 2), (os.POSIX_SPAWN_CLOSE, read)]
        child = os.posix_spawnp(tool, [tool, str(pid), *args], os.environ, file_actions=actions)
        os.close(write)
        started.append((f"{tool} {pid} {' '.join(args)}", child, read))
    failures = []
    for command, child, read in started:
        with os.fdopen(read, "rb") as errors:
            message = errors.read().decode(errors="replace").strip()
        if os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) != 0:
            failures.append(f"{command}: {message or 'failed'}")
    if failures:
        raise OSError("; ".join(failures))

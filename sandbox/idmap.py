"""Id mapping: container root is never host root. An ordinary user maps container root to
their own uid, plus their /etc/subuid and /etc/subgid ranges through newuidmap/newgidmap
when present. Root maps container ids to the range reserved for the `pysandbox` system user
in /etc/subuid and /etc/subgid (`pysandbox system setup-ids` makes it), and only while that
range overlaps no other user's entry and no account's uid or gid: no container of root's
runs as an id that an ordinary user can also become, so none can signal, ptrace or rewrite
what another's container owns."""

from __future__ import annotations

import os
import pwd

from pysbx.policies.record import Record
from pysbx.sandbox.errors import SandboxError

TYPE_CHECKING = False
if TYPE_CHECKING:  # the warm path of `run` must not import the policy model
    from pysbx.policies.model import IdMapping


class IdRange(Record):
    __slots__ = ("container", "host", "size")

    def __init__(self, container: int, host: int, size: int) -> None:
        self.container = container
        self.host = host
        self.size = size


def _to_host(ranges: tuple[IdRange, ...], wanted: int) -> int | None:
    for mapped in ranges:
        if mapped.container <= wanted < mapped.container + mapped.size:
            return mapped.host + wanted - mapped.container
    return None


class IdMaps(Record):
    __slots__ = ("gids", "uids", "via_helpers")

    def __init__(self, uids: tuple[IdRange, ...], gids: tuple[IdRange, ...], via_helpers: bool) -> None:
        self.uids = uids
        self.gids = gids
        self.via_helpers = via_helpers  # newuidmap/newgidmap write them (else we write them ourselves)

    @property
    def root_host_uid(self) -> int:
        return self.uids[0].host

    def host_ids(self, uid: int, gid: int) -> tuple[int, int] | None:
        """The host ids that container ids uid:gid stand for; None when either is unmapped."""
        host_uid, host_gid = _to_host(self.uids, uid), _to_host(self.gids, gid)
        return None if host_uid is None or host_gid is None else (host_uid, host_gid)

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


RESERVED_USER = "pysandbox"
SUBUID, SUBGID, PASSWD, GROUP = "/etc/subuid", "/etc/subgid", "/etc/passwd", "/etc/group"
SETUP_HINT = "run `pysandbox system setup-ids` as root once to reserve one"


class IdMapError(SandboxError):
    """No id range that root's containers may safely use."""


class NoReservedRange(IdMapError):
    """The id files reserve no range for pysandbox yet (`system setup-ids` makes one)."""


def _entries(path: str) -> list[tuple[str, int, int]]:
    """(name, first id, count) of each line of a subordinate id file. A line in any other
    form than NAME:DECIMAL:DECIMAL is an IdMapError, not skipped: newuidmap reads more forms
    (hex, octal, a trailing field, spaces) than we would, so a line we skipped could still
    give its user root's ids."""
    try:
        with open(path) as table:
            lines = table.read().splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        fields = line.split(":")
        if len(fields) != 3 or not fields[0] or not all(_canonical_decimal(field) for field in fields[1:]):
            raise IdMapError(f"{path}:{number}: expected NAME:FIRST:COUNT in decimal, found {line[:80]!r}")
        rows.append((fields[0], int(fields[1]), int(fields[2])))
    return rows


def _canonical_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))


def _account_ids(path: str) -> list[tuple[str, int]]:
    """(name, id) of each account in /etc/passwd or group in /etc/group."""
    try:
        with open(path) as table:
            rows = [line.split(":") for line in table.read().splitlines()]
    except FileNotFoundError:
        return []
    return [(row[0], int(row[2])) for row in rows if len(row) > 2 and row[2].isdigit()]


def reserved_range(path: str, accounts: str) -> IdRange:
    """The range `path` reserves for pysandbox, checked against every other entry of `path`
    and every id in `accounts` (/etc/passwd or /etc/group). Raises IdMapError."""
    rows = _entries(path)
    ours = [row for row in rows if row[0] == RESERVED_USER]
    if not ours:
        raise NoReservedRange(f"no id range is reserved for {RESERVED_USER} in {path}: {SETUP_HINT}")
    _, first, count = ours[0]
    end = first + count
    for name, start, size in rows:
        if name != RESERVED_USER and start < end and first < start + size:
            raise IdMapError(
                f"{path}: the range reserved for {RESERVED_USER} ({first}-{end - 1}) overlaps {name}'s "
                f"({start}-{start + size - 1}): that user could become root's container ids"
            )
    for name, number in _account_ids(accounts):
        if first <= number < end:
            raise IdMapError(
                f"{path}: the range reserved for {RESERVED_USER} ({first}-{end - 1}) holds {name}'s id {number}"
            )
    return IdRange(0, first, count)


def _root_range(reserved: IdRange, policy: IdMapping) -> IdRange:
    """The policy's range (its host_base, or the reservation's start) if it lies inside the
    reservation."""
    base = reserved.host if policy.host_base is None else policy.host_base
    if not (reserved.host <= base and base + policy.size <= reserved.host + reserved.size):
        raise IdMapError(
            f"the policy's ids (host_base {base}, size {policy.size}) leave the range reserved for "
            f"{RESERVED_USER} ({reserved.host}-{reserved.host + reserved.size - 1})"
        )
    return IdRange(0, base, policy.size)


def plan_id_maps(policy: IdMapping) -> IdMaps:
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        if policy.map_root_to_host_root:
            whole = (IdRange(0, 0, policy.size),)
            return IdMaps(whole, whole, via_helpers=False)
        uids = _root_range(reserved_range(SUBUID, PASSWD), policy)
        gids = _root_range(reserved_range(SUBGID, GROUP), policy)
        if uids.host != gids.host:  # layers are unpacked with one offset for both
            raise IdMapError(f"the ranges reserved for {RESERVED_USER} in {SUBUID} and {SUBGID} must start alike")
        return IdMaps((uids,), (gids,), via_helpers=False)
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


def free_range(count: int, first: int = 100000) -> int:
    """The lowest start, from `first` up, of `count` ids that no subordinate id entry and
    no account or group id uses (useradd picks new users' ranges the same way, around it)."""
    taken = sorted(
        [(start, start + size) for path in (SUBUID, SUBGID) for _, start, size in _entries(path)]
        + [(number, number + 1) for path in (PASSWD, GROUP) for _, number in _account_ids(path)]
    )
    start = first
    for low, high in taken:
        if high <= start:
            continue
        if low >= start + count:
            break
        start = high
    return start

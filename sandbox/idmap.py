"""Id mapping: container root is never host root. An ordinary user maps container root to
their own uid, plus their /etc/subuid and /etc/subgid ranges through newuidmap/newgidmap
when present; root maps container ids to an unprivileged range."""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the warm path of `run` must not import the policy model
    from policies.model import IdMapping


@dataclass(frozen=True)
class IdRange:
    container: int
    host: int
    size: int


@dataclass(frozen=True)
class IdMaps:
    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]
    via_helpers: bool  # newuidmap/newgidmap write them (else we write them ourselves)

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
        lines = Path(path).read_text().splitlines()
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
        import subprocess

        for tool, ranges in (("newuidmap", maps.uids), ("newgidmap", maps.gids)):
            args = [str(n) for r in ranges for n in (r.container, r.host, r.size)]
            done = subprocess.run([tool, str(pid), *args], capture_output=True, text=True)
            if done.returncode != 0:
                raise OSError(f"{tool} {pid} {' '.join(args)}: {done.stderr.strip() or 'failed'}")
        return
    if not maps.setgroups_allowed:
        Path(f"/proc/{pid}/setgroups").write_text("deny")
    Path(f"/proc/{pid}/uid_map").write_text("".join(f"{r.container} {r.host} {r.size}\n" for r in maps.uids))
    Path(f"/proc/{pid}/gid_map").write_text("".join(f"{r.container} {r.host} {r.size}\n" for r in maps.gids))

"""The credentials of a process making a call, as the kernel will check them and as the
monitor can read them: its ids and effective capabilities (/proc/PID/status, ids as the
monitor's user namespace sees them) and the maps from the container's ids to those
(/proc/PID/uid_map, gid_map). sandbox.capcheck and sandbox.pathwrites ask it."""

from __future__ import annotations

import os

from pysbx.sandbox.capabilities import CAPABILITY_NUMBERS


class Caller:
    """The ids and effective capabilities the kernel checks, as /proc/PID/status shows them
    to the monitor, and the maps from the container's ids to those."""

    def __init__(self, pid: int) -> None:
        fields: dict[bytes, list[bytes]] = {}
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                name, _, value = line.partition(b":")
                fields[name] = value.split()
        self.uids = [int(value) for value in fields[b"Uid"]]  # real, effective, saved, filesystem
        self.gids = [int(value) for value in fields[b"Gid"]]
        self.groups = {int(value) for value in fields.get(b"Groups", [])}
        self.capabilities = int(fields[b"CapEff"][0], 16)
        self.uid_map = _id_map(f"/proc/{pid}/uid_map")
        self.gid_map = _id_map(f"/proc/{pid}/gid_map")

    def holds(self, capability: str) -> bool:
        return bool(self.capabilities >> CAPABILITY_NUMBERS[capability] & 1)

    def outside(self, container_id: int, gids: bool) -> int | None:
        """A container id as the monitor sees it; None when the container's map lacks it."""
        for inside, outside, count in self.gid_map if gids else self.uid_map:
            if inside <= container_id < inside + count:
                return outside + container_id - inside
        return None

    def maps_owner(self, info: os.stat_result) -> bool:
        """Whether the container's maps hold a file's owner and group: a capability of the
        container's reaches only such files (capable_wrt_inode_uidgid)."""
        return self._mapped(info.st_uid, self.uid_map) and self._mapped(info.st_gid, self.gid_map)

    @staticmethod
    def _mapped(host_id: int, id_map: list[tuple[int, int, int]]) -> bool:
        return any(outside <= host_id < outside + count for _, outside, count in id_map)

    def is_root(self) -> bool:
        """Whether it runs as the container's root (its effective uid is what 0 maps to)."""
        return self.outside(0, False) == self.uids[1]

    def may_access(self, info: os.stat_result, read: bool, write: bool, overriding: bool = True) -> bool:
        """Whether it passes the permission check to read and/or write a file of this owner
        and mode: the owner, group and other bits against its filesystem ids and groups, or
        (`overriding`) CAP_DAC_OVERRIDE (ACLs aside)."""
        if overriding and self.holds("CAP_DAC_OVERRIDE"):
            return True
        if self.uids[3] == info.st_uid:
            shift = 6
        elif info.st_gid == self.gids[3] or info.st_gid in self.groups:
            shift = 3
        else:
            shift = 0
        wanted = (4 if read else 0) | (2 if write else 0)
        return info.st_mode >> shift & wanted == wanted


def _id_map(path: str) -> list[tuple[int, int, int]]:
    with open(path) as lines:
        return [(int(a), int(b), int(c)) for a, b, c in (line.split() for line in lines if line.strip())]

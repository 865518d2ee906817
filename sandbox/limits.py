"""Resource limits. cgroups are not delegated to us on this kind of host (v1 with a v2 tree
beside it), so rlimits cover what they can, and each limit says how it is enforced, or
that it is not; a policy that marks an unenforceable limit as required is refused."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the warm path of `run` must not import the policy model
    from policies.model import Limits


@dataclass(frozen=True)
class Enforcement:
    name: str
    value: object
    mechanism: str  # e.g. "RLIMIT_NOFILE", "monitor timer", "not enforced: ..."

    @property
    def enforced(self) -> bool:
        return not self.mechanism.startswith("not enforced")


def plan_limits(limits: Limits) -> list[Enforcement]:
    plan = []
    if limits.open_files is not None:
        plan.append(Enforcement("open_files", limits.open_files, "RLIMIT_NOFILE"))
    if limits.pids is not None:
        plan.append(Enforcement("pids", limits.pids, "RLIMIT_NPROC (counts every process of the container's host uid)"))
    if limits.memory is not None:
        plan.append(Enforcement("memory", limits.memory, "RLIMIT_AS (address space, stricter than resident memory)"))
    if limits.cpu_time is not None:
        plan.append(Enforcement("cpu_time", limits.cpu_time, "RLIMIT_CPU"))
    if limits.wall_time is not None:
        plan.append(Enforcement("wall_time", limits.wall_time, "monitor timer (SIGKILL)"))
    if limits.cpus is not None:
        plan.append(Enforcement("cpus", limits.cpus, "not enforced: needs a delegated cgroup v2 cpu controller"))
    return plan


def apply_rlimits(plan: list[Enforcement]) -> None:
    """In the container process, before exec."""
    names = {
        "open_files": resource.RLIMIT_NOFILE,
        "pids": resource.RLIMIT_NPROC,
        "memory": resource.RLIMIT_AS,
        "cpu_time": resource.RLIMIT_CPU,
    }
    for item in plan:
        if item.name in names:
            value = int(item.value)  # type: ignore[call-overload]
            resource.setrlimit(names[item.name], (value, value))

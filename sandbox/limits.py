"""Resource limits, and which mechanism enforces each: a cgroup where the host lets us make
one (sandbox/cgroups.py: memory, pids, cpus), rlimits otherwise (memory as private writable memory,
pids as the uid's process count), a monitor timer for wall time. Each limit says how it is
enforced, or that it is not; a policy that marks an unenforceable limit as required is
refused before anything starts."""

from __future__ import annotations

import resource

from pysbx.policies.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # the warm path of `run` must not import the policy model
    from pysbx.policies.model import Limits


class Enforcement(Record):
    __slots__ = ("mechanism", "name", "value")

    def __init__(self, name: str, value: object, mechanism: str) -> None:
        self.name = name
        self.value = value
        self.mechanism = mechanism  # e.g. "RLIMIT_NOFILE", "monitor timer", "not enforced: ..."

    @property
    def enforced(self) -> bool:
        return not self.mechanism.startswith("not enforced")


def plan_limits(limits: Limits) -> list[Enforcement]:
    from pysbx.sandbox import cgroups

    wanted = {"memory": limits.memory, "pids": limits.pids, "cpus": limits.cpus}
    by_cgroup = cgroups.mechanisms({name for name, value in wanted.items() if value is not None})
    fallback = {
        # RLIMIT_DATA counts private writable memory, not address space a runtime only
        # reserves (PROT_NONE): RLIMIT_AS refused Node's code range and Java's heap reservation.
        "memory": "RLIMIT_DATA (private writable memory, not resident memory or tmpfs)",
        "pids": "RLIMIT_NPROC (per user of the container, counted in its own user namespace)",
        "cpus": "not enforced: needs a writable cgroup cpu controller",
    }
    plan = []
    if limits.open_files is not None:
        plan.append(Enforcement("open_files", limits.open_files, "RLIMIT_NOFILE"))
    for name in ("pids", "memory"):
        if wanted[name] is not None:
            plan.append(Enforcement(name, wanted[name], by_cgroup.get(name, fallback[name])))
    if limits.cpu_time is not None:
        plan.append(Enforcement("cpu_time", limits.cpu_time, "RLIMIT_CPU"))
    if limits.wall_time is not None:
        plan.append(Enforcement("wall_time", limits.wall_time, "monitor timer (SIGKILL)"))
    if limits.cpus is not None:
        plan.append(Enforcement("cpus", limits.cpus, by_cgroup.get("cpus", fallback["cpus"])))
    if limits.writable_size is not None:
        plan.append(Enforcement("writable_size", limits.writable_size, "tmpfs size of the writable layer"))
    return plan


def cgroup_values(plan: list[Enforcement]) -> dict[str, float]:
    """The limits a cgroup enforces, for cgroups.create."""
    return {item.name: float(item.value) for item in plan if item.mechanism.startswith("cgroup")}  # type: ignore[arg-type]


def apply_rlimits(plan: list[Enforcement]) -> None:
    """In the container process, before exec."""
    names = {
        "open_files": resource.RLIMIT_NOFILE,
        "pids": resource.RLIMIT_NPROC,
        "memory": resource.RLIMIT_DATA,
        "cpu_time": resource.RLIMIT_CPU,
    }
    for item in plan:
        if item.name in names and item.mechanism.startswith("RLIMIT"):
            value = int(item.value)  # type: ignore[call-overload]
            resource.setrlimit(names[item.name], (value, value))

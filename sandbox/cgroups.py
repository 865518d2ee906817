"""cgroup limits for one container: memory, pids and cpus, where the host lets us set them.

Which hierarchy: cgroup v2 when our own cgroup is writable and delegates the controller (a
systemd `Delegate=yes` unit, or root on a v2 host); the v1 controller hierarchies when they
are writable (root on a v1 host); else none, and limits.py falls back to rlimits and says so.
The container's cgroup is made under our own, so whatever bounds us bounds it too. The
setup process moves itself into it before the container's namespaces (cgroup included) are
made, so every process of the container is born inside and the cgroup namespace's root is
the container's own cgroup."""

from __future__ import annotations

import os
import time

# Per limit: the controller it needs and the file that enforces it (_v1/_v2_settings write).
_V1 = {"memory": ("memory", "memory.limit_in_bytes"), "pids": ("pids", "pids.max"), "cpus": ("cpu", "cpu.cfs_quota_us")}
_V2 = {"memory": ("memory", "memory.max"), "pids": ("pids", "pids.max"), "cpus": ("cpu", "cpu.max")}
_CPU_PERIOD = 100_000  # microseconds, Docker's


# What _mounts and _own_cgroups read, once per process (neither changes under a run).
_mount_table: list[tuple[str, str, str, set[str]]] | None = None
_own_paths: dict[str, str] | None = None


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root inside the hierarchy, fs type, options) of every cgroup mount."""
    global _mount_table
    if _mount_table is None:
        _mount_table = _read_mounts()
    return _mount_table


def _read_mounts() -> list[tuple[str, str, str, set[str]]]:
    found = []
    with open("/proc/self/mountinfo") as lines:
        for line in lines:
            fields = line.split()
            dash = fields.index("-")
            fstype = fields[dash + 1]
            if fstype in ("cgroup", "cgroup2"):
                found.append((fields[4], fields[3], fstype, set(fields[dash + 3].split(","))))
    return found


def _own_cgroups() -> dict[str, str]:
    """Our cgroup path per v1 controller, and under "" the v2 one."""
    global _own_paths
    if _own_paths is None:
        _own_paths = _read_own_cgroups()
    return _own_paths


def _read_own_cgroups() -> dict[str, str]:
    return _read_cgroups("self")


def _read_cgroups(pid: str) -> dict[str, str]:
    """Process `pid`'s cgroup path per v1 controller (and named hierarchy), "" for v2."""
    paths: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as lines:
        for line in lines:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _inside(mount_point: str, mount_root: str, path: str) -> str | None:
    """Our cgroup's folder under a mount (None when the mount does not show it)."""
    if mount_root != "/" and not (path + "/").startswith(mount_root.rstrip("/") + "/"):
        return None
    relative = path[len(mount_root) :] if mount_root != "/" else path
    folder = mount_point + relative.rstrip("/")
    return folder if os.path.isdir(folder) else None


def _writable(folder: str) -> bool:
    return os.access(folder, os.W_OK) and os.access(os.path.join(folder, "cgroup.procs"), os.W_OK)


def v2_parent(wanted: set[str]) -> str | None:
    """Our v2 cgroup, when it is ours to write and delegates every controller `wanted`."""
    own = _own_cgroups().get("")
    for mount_point, root, fstype, _ in _mounts():
        if fstype != "cgroup2" or own is None:
            continue
        folder = _inside(mount_point, root, own)
        if folder is None or not _writable(folder):
            continue
        try:
            with open(os.path.join(folder, "cgroup.subtree_control")) as control:
                delegated = set(control.read().split())
        except OSError:
            continue
        if wanted <= delegated:
            return folder
    return None


def v1_parents(wanted: set[str]) -> dict[str, str]:
    """Our cgroup folder in each writable v1 hierarchy of a controller in `wanted`."""
    own = _own_cgroups()
    parents: dict[str, str] = {}
    for mount_point, root, fstype, options in _mounts():
        if fstype != "cgroup":
            continue
        for controller in wanted & options:
            if controller in parents or controller not in own:
                continue
            folder = _inside(mount_point, root, own[controller])
            if folder is not None and _writable(folder):
                parents[controller] = folder
    return parents


def mechanisms(limits: set[str]) -> dict[str, str]:
    """How each of `limits` (memory, pids, cpus) can be enforced by a cgroup here, by name;
    those missing from the answer cannot."""
    wanted = {_V2[name][0] for name in limits if name in _V2}
    if wanted and v2_parent(wanted) is not None:
        return {name: f"cgroup v2 {_V2[name][1]}" for name in limits if name in _V2}
    parents = v1_parents({_V1[name][0] for name in limits if name in _V1})
    return {name: f"cgroup v1 {_V1[name][1]}" for name in limits if name in _V1 and _V1[name][0] in parents}


def join_cgroups_of(pid: int, limits: set[str], prefix: str = "pysandbox-") -> list[str]:
    """Move the calling (single-threaded) process into the container cgroups that process
    `pid` is in (those named `prefix`...: a container without limits has none of its own);
    return the folders joined. exec's way into a running container's limits. An OSError,
    before joining any, when a controller that enforces one of `limits` (memory, pids,
    cpus) has no such cgroup of `pid`'s: it left the one its limits live in."""
    paths = _read_cgroups(str(pid))
    ours = {
        controller
        for mount_point, root, fstype, options in _mounts()
        for controller in (["v2"] if fstype == "cgroup2" else options)
        if _own_folder(mount_point, root, paths.get("" if fstype == "cgroup2" else controller), prefix)
    }
    needed = {_V1[limit][0] for limit in limits}
    if limits and "v2" not in ours and not needed <= ours:
        raise OSError(f"the container's PID 1 is not in its own cgroup for {', '.join(sorted(needed - ours))}")
    joined: list[str] = []
    for mount_point, root, fstype, options in _mounts():
        key: str | None = "" if fstype == "cgroup2" else next((c for c in options if c in paths and c), None)
        found = paths.get(key) if key is not None else None
        folder = None if found is None else _inside(mount_point, root, found)
        if folder is None or not os.path.basename(folder).startswith(prefix) or folder in joined:
            continue
        with open(os.path.join(folder, "cgroup.procs" if fstype == "cgroup2" else "tasks"), "w") as members:
            members.write("0")
        joined.append(folder)
    return joined


def _own_folder(mount_point: str, root: str, path: str | None, prefix: str) -> bool:
    folder = None if path is None else _inside(mount_point, root, path)
    return folder is not None and os.path.basename(folder).startswith(prefix)


class Cgroup:
    """The container's cgroup folders (one for v2, one per controller for v1)."""

    def __init__(self, folders: list[str], version: int) -> None:
        self.folders = folders
        self.version = version

    def join(self) -> None:
        """Move the calling process in; it must have a single thread (a fresh fork does).

        On v1 it writes "0" to `tasks`: a thread moving itself is the one migration for which
        the kernel skips its global threadgroup lock, whose first taking waits for an RCU
        grace period (10-15 ms here, most of a warm start). v2 moves whole processes only."""
        file = "tasks" if self.version == 1 else "cgroup.procs"
        for folder in self.folders:
            with open(os.path.join(folder, file), "w") as members:
                members.write("0")

    def oom_kills(self) -> int:
        """How many processes the kernel killed for the memory limit (v2's memory.events, v1's
        memory.oom_control, kernel 4.13+); 0 when neither is there to say."""
        return self._counter(("memory.events", "memory.oom_control"), "oom_kill")

    def limits_reached(self) -> dict[str, int]:
        """How often each cgroup-enforced limit refused or killed (--explain): memory (OOM
        kills) and pids (forks refused, v2's pids.events), where the files say."""
        reached = {"memory": self.oom_kills(), "pids": self._counter(("pids.events",), "max")}
        return {name: count for name, count in reached.items() if count}

    def _counter(self, files: tuple[str, ...], wanted: str) -> int:
        for folder in self.folders:
            for file in files:
                try:
                    with open(os.path.join(folder, file)) as counters:
                        for line in counters:
                            key, _, value = line.partition(" ")
                            if key == wanted and value.strip().isdigit():
                                return int(value)
                except OSError:
                    continue
        return 0

    def remove(self) -> None:
        """rmdir each folder; the container's last processes may need a moment to go."""
        deadline = time.monotonic() + 2
        for folder in self.folders:
            while True:
                try:
                    os.rmdir(folder)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)


def create(name: str, values: dict[str, float], freezer: bool = False) -> Cgroup | None:
    """Make the container's cgroup with `values` (memory bytes, pids, cpus) written, by the
    same choice `mechanisms` made; with `freezer` (a detached container, for pause), one
    that can be frozen too where we may: v2 (cgroup.freeze is in every v2 cgroup), or v1's
    freezer hierarchy. None when nothing asks for one, or nothing can give it."""
    if not values and not freezer:
        return None
    wanted_v2 = {_V2[limit][0] for limit in values}
    v1_freezer = v1_parents({"freezer"}) if freezer else {}
    parent = v2_parent(wanted_v2) if values or not v1_freezer else None
    if parent is not None:
        folder = os.path.join(parent, name)
        os.mkdir(folder)
        cgroup = Cgroup([folder], 2)
        _write_all(cgroup, folder, _v2_settings(values))
        return cgroup
    parents = v1_parents({_V1[limit][0] for limit in values}) | v1_freezer
    folders: dict[str, str] = {}
    cgroup = Cgroup([], 1)
    if "freezer" in parents:
        folders["freezer"] = os.path.join(parents["freezer"], name)
        os.mkdir(folders["freezer"])
        cgroup.folders.append(folders["freezer"])
    for limit, value in values.items():
        controller = _V1[limit][0]
        if controller not in parents:
            continue
        if controller not in folders:
            folders[controller] = os.path.join(parents[controller], name)
            os.mkdir(folders[controller])
            cgroup.folders.append(folders[controller])
        _write_all(cgroup, folders[controller], _v1_settings(limit, value))
    return cgroup if cgroup.folders else None


def _freezer_control(fstype: str, options: set[str]) -> tuple[str, str, int] | None:
    """How a cgroup mount freezes: (the key of /proc/PID/cgroup it answers to, the control
    file, the version), or None when it cannot (a v1 hierarchy without the freezer)."""
    if fstype == "cgroup2":
        return "", "cgroup.freeze", 2
    return ("freezer", "freezer.state", 1) if "freezer" in options else None


def freezer_of(pid: int, prefix: str = "pysandbox-") -> tuple[str, int] | None:
    """The container cgroup of ours (named `prefix`...) that can freeze process `pid`: its
    v1 freezer folder, or its v2 folder; with the version. None when it has none."""
    paths = _read_cgroups(str(pid))
    found: list[tuple[str, int]] = []
    for mount_point, root, fstype, options in _mounts():
        freezes = _freezer_control(fstype, options)
        path = None if freezes is None else paths.get(freezes[0])
        folder = None if freezes is None or path is None else _inside(mount_point, root, path)
        if freezes and folder and os.path.basename(folder).startswith(prefix) and _has(folder, freezes[1]):
            found.append((folder, freezes[2]))
    return min(found, key=lambda item: item[1], default=None)


def container_freezer(folder: str, prefix: str = "pysandbox-") -> tuple[str, int] | None:
    """`folder` with its version when it is a container cgroup of ours that can be frozen:
    named `prefix`..., right below a cgroup mount's folder of ours, through no link."""
    if os.path.realpath(folder) != folder or not os.path.basename(folder).startswith(prefix):
        return None
    for mount_point, _, fstype, options in _mounts():
        freezes = _freezer_control(fstype, options)
        if freezes and folder.startswith(mount_point.rstrip("/") + "/") and _has(folder, freezes[1]):
            return folder, freezes[2]
    return None


def _has(folder: str, control: str) -> bool:
    return os.path.exists(os.path.join(folder, control))


def set_frozen(folder: str, version: int, frozen: bool, seconds: float = 5) -> None:
    """Freeze or thaw the cgroup, and wait until the kernel says it is done (v1 passes
    through FREEZING; v2's cgroup.events says frozen 1). OSError when it does not settle."""
    if version == 1:
        control, value, done = "freezer.state", "FROZEN" if frozen else "THAWED", "FROZEN" if frozen else "THAWED"
    else:
        control, value, done = "cgroup.freeze", "1" if frozen else "0", f"frozen {int(frozen)}"
    with open(os.path.join(folder, control), "w") as out:
        out.write(value)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(os.path.join(folder, control if version == 1 else "cgroup.events")) as state:
            if done in state.read().split("\n"):
                return
        time.sleep(0.005)
    raise OSError(f"{folder}: the freezer did not settle within {seconds:g} s")


def _write_all(cgroup: Cgroup, folder: str, settings: list[tuple[str, str, bool]]) -> None:
    try:
        for file, value, required in settings:
            try:
                with open(os.path.join(folder, file), "w") as control:
                    control.write(value)
            except OSError:
                if required:
                    raise
    except BaseException:
        cgroup.remove()
        raise


def _v1_settings(limit: str, value: float) -> list[tuple[str, str, bool]]:
    """(file, value, required): swap accounting is often off, so memsw is best effort."""
    if limit == "memory":
        limit_bytes = str(int(value))
        return [("memory.limit_in_bytes", limit_bytes, True), ("memory.memsw.limit_in_bytes", limit_bytes, False)]
    if limit == "pids":
        return [("pids.max", str(int(value)), True)]
    return [("cpu.cfs_period_us", str(_CPU_PERIOD), True), ("cpu.cfs_quota_us", str(int(value * _CPU_PERIOD)), True)]


def _v2_settings(values: dict[str, float]) -> list[tuple[str, str, bool]]:
    settings: list[tuple[str, str, bool]] = []
    if "memory" in values:
        settings += [("memory.max", str(int(values["memory"])), True), ("memory.swap.max", "0", False)]
    if "pids" in values:
        settings.append(("pids.max", str(int(values["pids"])), True))
    if "cpus" in values:
        settings.append(("cpu.max", f"{int(values['cpus'] * _CPU_PERIOD)} {_CPU_PERIOD}", True))
    return settings


def leftover_folders(prefix: str = "pysandbox-") -> list[str]:
    """Container cgroups whose container is gone (empty `cgroup.procs`), e.g. after the
    monitor was killed with SIGKILL: for `pysandbox prune`."""
    found = []
    own = _own_cgroups()
    for mount_point, root, fstype, options in _mounts():
        controllers = {""} if fstype == "cgroup2" else options & set(own)
        for controller in controllers:
            parent = _inside(mount_point, root, own.get(controller, "/"))
            if parent is None:
                continue
            try:
                for entry in os.scandir(parent):
                    if entry.name.startswith(prefix) and entry.is_dir() and _empty(entry.path):
                        found.append(entry.path)
            except OSError:
                pass
    return sorted(set(found))


def frozen_folders(prefix: str = "pysandbox-") -> list[tuple[str, int]]:
    """Container cgroups of ours that are frozen (or freezing), with their version: what a
    pause left when its container's monitor died."""
    found = []
    own = _own_cgroups()
    for mount_point, root, fstype, options in _mounts():
        freezes = _freezer_control(fstype, options)
        parent = None if freezes is None else _inside(mount_point, root, own.get(freezes[0], "/"))
        if freezes is None or parent is None:
            continue
        _, control, version = freezes
        try:  # (no contextlib: a warm run imports this module, and nothing heavy)
            entries = list(os.scandir(parent))
        except OSError:
            continue
        found += [(entry.path, version) for entry in entries
                  if entry.name.startswith(prefix) and entry.is_dir() and _frozen(entry.path, control)]  # fmt: skip
    return found


def _frozen(folder: str, control: str) -> bool:
    try:
        with open(os.path.join(folder, control)) as state:
            return state.read().strip() in ("1", "FROZEN", "FREEZING")
    except OSError:
        return False


def _empty(folder: str) -> bool:
    try:
        with open(os.path.join(folder, "cgroup.procs")) as procs:
            return not procs.read().strip()
    except OSError:
        return False

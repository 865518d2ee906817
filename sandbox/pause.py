"""`pause` and `unpause`: the cgroup freezer where the host gives pysandbox one. A marker in
the container's folder names the frozen cgroup, so whatever becomes of the monitor, rm,
stop, unpause and prune can thaw it (sandbox.cgroups holds the freezer's files)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from pysbx.sandbox.containers import Container
from pysbx.sandbox.errors import SandboxError


def pause_container(container: Container) -> None:
    """Freeze every process of the container (Docker's pause: the cgroup freezer, where the
    host gives pysandbox one); the monitor and its log writer go on. The marker names the
    cgroup, so whatever becomes of the monitor, rm and unpause can thaw it."""
    from pysbx.sandbox import cgroups
    from pysbx.sandbox.containers import PAUSED, write_json
    from pysbx.sandbox.times import now

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


def thaw(container: Container) -> None:
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
    if found is None or not container.init_alive():  # again: PID 1 may have gone while it was looked up
        raise SandboxError(f"container {container.name}: pause needs the cgroup freezer, which this host does not "
                           "give pysandbox here (cgroup v1 freezer not writable, no delegated cgroup v2)")  # fmt: skip
    return found

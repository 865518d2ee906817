"""`pysandbox prune`: remove what runs that did not finish left behind. A pysandbox killed with
SIGKILL takes its container with it (parent-death signals), but nothing is left to delete the
container's state folder (overlay upper and work dirs, /etc files), its cgroup, or a layer
half unpacked; this finds them and removes them, and says what it removed.

A state folder is stale when the pysandbox process that made it is gone: it records its pid
and start time (sandbox.state.container_dir), so a reused pid does not keep a dead container's
folder alive. A `.unpack-*` staging folder is stale when no unpack holds a lock in its
folder (every unpack stages under its layer's lock)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pysbx.sandbox.containers import RECORD
from pysbx.sandbox.names import is_valid_name
from pysbx.sandbox.state import (
    NAMES,
    StorageError,
    check_trusted_path,
    claim_holder,
    container_name_of,
    owner_record,
    recorded_process_alive,
    remove_state,
    state_bases,
)

# A state folder without an owner record is either being set up right now (the cold path
# unpacks and plans between making it and running) or from an older pysandbox: give it time.
UNOWNED_GRACE_SECONDS = 600
EMPTY_GRACE_SECONDS = 5  # an empty one: sandbox.state.container_dir writes the owner right after mkdir


@dataclass(frozen=True)
class Leftover:
    kind: str  # "container" (a state folder), "staging" (half unpacked), "cgroup", "frozen" (a cgroup), "name"
    path: Path
    why: str
    error: str | None = None  # why it could not be removed


def owner_gone(state: Path) -> str | None:
    """Why `state` is stale, or None while its owner lives (or it is too young to judge)."""
    try:
        fields = owner_record(str(state))
    except FileNotFoundError:
        age = time.time() - state.stat().st_mtime
        if age > EMPTY_GRACE_SECONDS and not any(state.iterdir()):  # the owner is written right after mkdir
            return f"empty, no owner recorded, {int(age)} s old (its run was killed as it began)"
        return f"no owner recorded, {int(age)} s old" if age > UNOWNED_GRACE_SECONDS else None
    except (OSError, ValueError):
        return "unreadable owner record"
    if len(fields) != 2:
        return "unreadable owner record"
    if not recorded_process_alive(fields):
        return f"pysandbox process {fields[0]} is gone"
    return None


def checked_bases(cache: Path) -> tuple[list[Path], list[Leftover]]:
    """The state folders that exist and pass the storage check (sandbox.state), and a
    refusal for each that does not: prune deletes only inside folders that are ours alone
    (another user's symlink as $XDG_RUNTIME_DIR/pysandbox must not lead it into ours)."""
    bases, refused = [], []
    for base in map(Path, state_bases(str(cache))):
        if not os.path.lexists(base):
            continue
        try:
            check_trusted_path(str(base))
        except StorageError as error:
            refused.append(Leftover("storage", base, "not checked", str(error)))
            continue
        bases.append(base)
    return bases, refused


def is_state_folder(folder: Path) -> bool:
    """NAME-XXXXXXXX, as sandbox.state.container_dir names them."""
    name = container_name_of(folder.name)
    return name is not None and is_valid_name(name)


def stale_containers(bases: list[Path]) -> Iterator[Leftover]:
    for base in bases:
        with contextlib.suppress(FileNotFoundError):
            for folder in sorted(base.iterdir()):
                if not is_state_folder(folder) or folder.is_symlink() or not folder.is_dir():
                    continue
                if (folder / RECORD).exists():  # run -d's: kept until `rm`, whatever its state
                    continue
                why = owner_gone(folder)
                if why is not None:
                    yield Leftover("container", folder, why)


def _raise_descriptor_limit(wanted: int) -> None:
    """The soft limit on open descriptors raised towards `wanted`, as far as the hard one
    lets it: every lock is held at once."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard)
        )


@contextlib.contextmanager
def all_locks_free(folder: Path) -> Iterator[bool]:
    """Hold every `*.lock` in `folder` without waiting; yields whether all were free, so no
    unpack can start (or be running) while staging folders are judged and removed."""
    held: list[int] = []
    free = True
    try:
        for lock in sorted(folder.glob("*.lock")):
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
            except OSError:  # too many to hold (the hard limit): judge nothing here this time
                free = False
                break
            held.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                free = False
                break
        yield free
    finally:
        for fd in held:
            os.close(fd)


def stale_staging(cache: Path, dry_run: bool) -> Iterator[Leftover]:
    """Half-unpacked `.unpack-*` folders; removed here, under the locks, unless `dry_run`.
    No lock is taken where there is none (the common case: a cache of a thousand layers
    held a thousand descriptors, past the usual limit of 1024; found by CI)."""
    for folder in (cache / "layers", cache / "images"):
        if not folder.is_dir() or not any(folder.glob(".unpack-*")):
            continue
        _raise_descriptor_limit(sum(1 for _ in folder.glob("*.lock")) + 64)
        with all_locks_free(folder) as free:
            if not free:
                continue  # an unpack is running here: its staging folder is not ours to judge
            for staging in sorted(folder.glob(".unpack-*")):
                leftover = Leftover("staging", staging, "unpacking did not finish")
                yield leftover if dry_run else _removed(leftover)


def stale_cgroups(live_states: set[str]) -> Iterator[Leftover]:
    """Empty container cgroups of ours whose container has no live state folder."""
    from pysbx.sandbox import cgroups

    for folder in _orphaned(cgroups.leftover_folders(), live_states):
        yield Leftover("cgroup", Path(folder), "its container is gone")


def frozen_cgroups(live_states: set[str]) -> Iterator[Leftover]:
    """Frozen container cgroups of ours whose container has no live state folder and whose
    processes have lost their monitor: a pause whose monitor died (they wait, frozen, for
    the SIGKILL they were sent). One whose monitor lives is paused on purpose, whichever
    storage its state folder is in (found by review: another PYSANDBOX_STATE's container was
    thawed)."""
    from pysbx.sandbox import cgroups

    for folder in _orphaned([folder for folder, _ in cgroups.frozen_folders()], live_states):
        if not _has_live_monitor(folder):
            yield Leftover("frozen", Path(folder), "frozen, its container is gone")


def _has_live_monitor(folder: str) -> bool:
    """Whether a process of the cgroup has a parent outside it that is a pysandbox monitor
    (the setup process's parent; once the monitor dies, a reaper takes its place)."""
    from pysbx.sandbox import procfs

    try:
        with open(os.path.join(folder, "cgroup.procs")) as listed:
            members = {int(pid) for pid in listed.read().split()}
    except (OSError, ValueError):
        return False
    parents = {procfs.parent(pid) for pid in members} - members - {None, 0, 1}
    return any(b"pysandbox" in _command_line(parent) for parent in parents if parent is not None)


def _command_line(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as line:
            return line.read(4096)
    except OSError:
        return b""


def _orphaned(folders: list[str], live_states: set[str]) -> Iterator[str]:
    """The container cgroups among `folders` that are ours and whose container has no live
    state folder (another user's are theirs to judge)."""
    for folder in folders:
        name = os.path.basename(folder)
        with contextlib.suppress(OSError):
            if os.stat(folder).st_uid != os.geteuid():
                continue
        if name not in live_states and name.removeprefix("pysandbox-") not in live_states:
            yield folder


def prune(cache: Path, dry_run: bool = False) -> list[Leftover]:
    """Find (and unless `dry_run`, remove) what dead runs left under `cache` and the
    runtime folders; return each, with the error when it could not be removed."""
    bases, refused = checked_bases(cache)
    found = list(stale_containers(bases))
    stale = {item.path for item in found}
    live = {folder.name for base in bases if base.is_dir() for folder in base.iterdir()}
    found += stale_cgroups(live - {path.name for path in stale})
    found += frozen_cgroups(live - {path.name for path in stale})
    if not dry_run:
        found = [_removed(item) for item in found]
    claims = [item if dry_run else _removed(item) for item in stale_name_claims(cache, stale)]
    return refused + found + claims + list(stale_staging(cache, dry_run))


def stale_name_claims(cache: Path, going: set[Path]) -> Iterator[Leftover]:
    """Container names still claimed for a folder that is gone (or `going`): a `run -d`
    killed between its claim and its monitor's start (found by the stress test). A later
    run takes such a name over anyway; prune leaves nothing behind."""
    try:
        claims = sorted((cache / NAMES).iterdir())
    except OSError:
        return
    for claim in claims:
        held = claim_holder(str(claim))
        if held is None:  # unreadable: not ours to judge
            continue
        # empty: made by a run -d killed before it wrote it (before claims were linked in whole);
        # a folder the user cannot even look at (os.path.isdir says False) is no container of theirs
        if not held or Path(held) in going or not os.path.isdir(held):
            yield Leftover("name", claim, "its container is gone")


def _removed(item: Leftover) -> Leftover:
    try:
        if item.kind == "frozen":
            _thaw_and_remove(str(item.path))
        elif item.kind == "name":
            item.path.unlink()
        elif item.kind == "cgroup":
            os.rmdir(item.path)  # a cgroup folder goes with rmdir, its control files with it
        else:
            remove_tree(item.path)
    except OSError as error:
        return Leftover(item.kind, item.path, item.why, f"{error.strerror or error}: {error.filename or item.path}")
    return item


def _thaw_and_remove(folder: str) -> None:
    """Thaw an orphaned frozen cgroup: its processes take the SIGKILL they were sent when
    their monitor died; once it is empty, remove it."""
    from pysbx.sandbox import cgroups

    found = cgroups.container_freezer(folder)
    if found is None:
        raise OSError(f"{folder}: not a container cgroup of ours")
    cgroups.set_frozen(*found, False)
    deadline = time.monotonic() + 5
    while True:
        try:
            os.rmdir(folder)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def remove_tree(path: Path) -> None:
    """Delete `path` and everything below it (sandbox.state.remove_state: folders made
    unreadable, such as overlayfs's mode-000 work folder, are opened up). For an ordinary
    user, files that belong to the user's subordinate ids (a container's other users wrote
    them) go from inside a user namespace mapped as the containers' are, where the user is
    root over them."""
    remove_state(str(path))
    if path.exists() and os.geteuid() != 0:
        _remove_as_container_root(path)
    if path.exists():
        raise PermissionError(errno.EACCES, "some entries could not be removed", str(path))


def _remove_as_container_root(path: Path) -> None:
    from pysbx.sandbox.userns import as_container_root, subordinate_maps

    maps = subordinate_maps()
    if maps is not None:
        as_container_root(maps, lambda: remove_state(str(path)))

"""Where pysandbox keeps things: the user's cache (layers, plans, compiled filters, volumes)
and the per-container state folders (overlay upper and work dirs, /etc files), each of which
records the pysandbox process that owns it, so that `pysandbox prune` can tell a live
container's folder from one a killed run left behind (a reused pid does not fool it: the
record holds the process's start time too).

Standard library only, and no pathlib: the warm start of `pysandbox run` imports this."""

from __future__ import annotations

import os

OWNER_FILE = "owner"


def cache_root() -> str:
    """/var/lib/pysandbox for root, the XDG cache folder for a user; PYSANDBOX_STATE wins."""
    if "PYSANDBOX_STATE" in os.environ:
        return os.environ["PYSANDBOX_STATE"]
    if os.geteuid() == 0:
        return "/var/lib/pysandbox"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pysandbox")


def state_bases(cache: str) -> list[str]:
    """Every folder container_dir may put state in, for this user: the runtime folder (when
    it is usable), else the cache."""
    runtime = "/run" if os.geteuid() == 0 else os.environ.get("XDG_RUNTIME_DIR", "")
    bases = [os.path.join(runtime, "pysandbox")] if os.path.isabs(runtime) else []
    return [*bases, os.path.join(cache, "containers")]


def container_dir(name: str) -> str:
    """A new state folder for container `name` (0700, a unique suffix), with its owner
    recorded. Never in the current folder: a relative or empty XDG_RUNTIME_DIR is ignored."""
    bases = state_bases(cache_root())
    base = next((folder for folder in bases[:-1] if _writable_folder(os.path.dirname(folder))), bases[-1])
    os.makedirs(base, mode=0o711, exist_ok=True)
    while True:
        folder = os.path.join(base, f"{name}-{os.urandom(4).hex()}")
        try:
            os.mkdir(folder, 0o700)
            break
        except FileExistsError:
            continue
    pid = os.getpid()
    with open(os.path.join(folder, OWNER_FILE), "w") as owner:
        owner.write(f"{pid} {process_start_time(pid)}\n")
    return folder


def _writable_folder(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), read after the command name,
    which may itself hold spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except OSError:
        return None


def remove_state(folder: str) -> None:
    """Delete a state folder and everything below it, best effort (what cannot be removed
    stays, for `pysandbox prune` to report)."""
    parent = os.open(os.path.dirname(folder) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_tree(parent, os.path.basename(folder))
    finally:
        os.close(parent)


def remove_tree(parent: int, name: str) -> None:
    """Delete `name` under the folder open as `parent`, never following a symlink, and
    opening up folders their owner made unreadable (overlayfs leaves its work folder mode
    000). Relative to descriptors, so it works after pivot_root from a descriptor opened
    before it. Errors are swallowed: removal is best effort."""
    try:
        folder = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except PermissionError:
        _chmod_quietly(name, parent)
        try:
            folder = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError:
            return
    except FileNotFoundError:
        return
    except OSError:  # not a folder (ENOTDIR, or ELOOP for a symlink)
        _unlink_quietly(name, parent)
        return
    try:
        with os.scandir(folder) as entries:
            children = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        for child, is_folder in children:
            if is_folder:
                remove_tree(folder, child)
            else:
                _unlink_quietly(child, folder)
    except OSError:
        pass
    finally:
        os.close(folder)
    try:
        os.rmdir(name, dir_fd=parent)
    except OSError:
        pass


def _chmod_quietly(name: str, parent: int) -> None:
    try:
        os.chmod(name, 0o700, dir_fd=parent)
    except OSError:
        pass


def _unlink_quietly(name: str, parent: int) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except OSError:
        pass

"""Where pysandbox keeps things: the user's cache (layers, plans, compiled filters, volumes)
and the per-container state folders (overlay upper and work dirs, /etc files), each of which
records the pysandbox process that owns it, so that `pysandbox prune` can tell a live
container's folder from one a killed run left behind (a reused pid does not fool it: the
record holds the process's start time too).

Host-side storage is a trust boundary: a cached layer runs as the image, a plan says how to
confine, a volume holds a container's files. Every folder is private to its owner (0700),
and is used only after each component of its path has been checked to belong to the
invoking user or root and to be writable by no one else (ssh's StrictModes; a root-owned
sticky folder such as /tmp may stand above it, since others cannot replace what we own
there). Anything else is a StorageError, which `run` reports as exit 125.

Standard library only, and no pathlib: the warm start of `pysandbox run` imports this."""

from __future__ import annotations

import os

from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.procfs import start_time

OWNER_FILE = "owner"
_SUFFIX_BYTES = 4  # a state folder is NAME-XXXXXXXX (container_dir, container_name_of)
PRIVATE = 0o700


class StorageError(SandboxError):
    """A storage folder that another user could change: nothing in it can be trusted."""


def cache_root() -> str:
    """/var/lib/pysandbox for root, the XDG cache folder for a user; PYSANDBOX_STATE wins.
    Only where it would be: use private_root() to make and check it."""
    if "PYSANDBOX_STATE" in os.environ:
        chosen = os.environ["PYSANDBOX_STATE"]
        if not os.path.isabs(chosen):  # "" or a relative path would be the current folder
            raise StorageError(f"PYSANDBOX_STATE must be an absolute path, not {chosen!r}")
        return os.path.normpath(chosen)
    if os.geteuid() == 0:
        return "/var/lib/pysandbox"
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG rule: a relative value is ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pysandbox")


_checked: set[str] = set()


def private_folder(path: str) -> str:
    """`path`, made (0700) where missing and checked: every component up to it belongs to
    this user or root and is writable by no one else, and `path` itself is this user's and
    private. Raises StorageError naming the folder that fails."""
    if path in _checked:
        return path
    try:
        os.makedirs(path, mode=PRIVATE, exist_ok=True)
    except OSError as error:
        raise StorageError(f"cannot make the storage folder {path}: {error.strerror or error}") from None
    check_trusted_path(path)
    info = os.lstat(path)
    if info.st_mode & 0o077:
        os.chmod(path, PRIVATE)  # ours (just checked): an older pysandbox made it 0711/0755
    _checked.add(path)
    return path


def private_root() -> str:
    """The cache root, made private and checked (private_folder)."""
    return private_folder(cache_root())


IMAGE_STORE = "store"  # images/ holds flattened rootfs folders (sandbox.rootfs.image_rootfs)


def image_store_folder(create: bool) -> str | None:
    """The local image store's OCI layout folder (images.localstore), made private and
    checked; with `create` False, None while there is none (a lookup must not make storage)."""
    folder = os.path.join(cache_root(), IMAGE_STORE)
    if not create and not os.path.isdir(folder):
        return None
    private_root()
    return private_folder(folder)


def check_trusted_path(path: str) -> None:
    """Raise StorageError unless no one but this user (or root) can change what `path`
    names: each component, symlinks resolved, is owned by us or root and not writable by
    group or others, except a root-owned sticky folder above the last; the last is ours."""
    me = os.geteuid()
    check_symlinks_on_the_way(path, me)
    real = os.path.realpath(path)
    parts = real.split("/")[1:]
    current = "/"
    for index in range(len(parts) + 1):
        if index:
            current = os.path.join(current, parts[index - 1])
        try:
            info = os.lstat(current)
        except OSError as error:
            raise StorageError(f"cannot check the storage folder {current}: {error.strerror}") from None
        last = index == len(parts)
        if last and info.st_uid != me:
            raise StorageError(f"refusing storage folder {current}: owned by uid {info.st_uid}, not by uid {me}")
        if info.st_uid not in (me, 0):
            raise StorageError(f"refusing storage folder {path}: {current} is owned by uid {info.st_uid}")
        shared_sticky = info.st_uid == 0 and info.st_mode & 0o1000 and not last
        if info.st_mode & 0o022 and not shared_sticky:
            raise StorageError(f"refusing storage folder {path}: {current} is writable by other users")


def check_symlinks_on_the_way(path: str, me: int) -> None:
    """A symlink among the components as written could be retargeted by its owner after the
    check: only ours or root's are followed."""
    current = ""
    for part in os.path.abspath(path).split("/")[1:]:
        current = f"{current}/{part}"
        try:
            info = os.lstat(current)
        except OSError:
            return  # checked again, resolved, by the caller
        if (info.st_mode & 0o170000) == 0o120000 and info.st_uid not in (me, 0):
            raise StorageError(f"refusing storage folder {path}: {current} is a symlink of uid {info.st_uid}")


def read_private_file(path: str) -> bytes:
    """The whole of a file we keep in storage (a plan, a compiled filter), checked as
    check_private_file says; OSError when it cannot be opened, StorageError when it is not
    ours alone. Opened without following a link or waiting on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        check_private_file(fd, path)
        with open(fd, "rb", closefd=False) as stored:
            return stored.read()
    finally:
        os.close(fd)


def check_private_file(fd: int, path: str) -> None:
    """A file read from storage (a plan, a compiled filter) must be ours and not writable by
    others: raise StorageError otherwise."""
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022 or (info.st_mode & 0o170000) != 0o100000:
        raise StorageError(f"refusing {path}: not a private regular file of uid {os.geteuid()}")


def state_bases(cache: str) -> list[str]:
    """Every folder container_dir may put state in, for this user: the user's runtime folder
    (when it is usable), else the cache. Root's state lives in the cache on disk, not in
    /run, a small tmpfs that the whole system needs."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "") if os.geteuid() != 0 else ""
    bases = [os.path.join(runtime, "pysandbox")] if os.path.isabs(runtime) else []
    return [*bases, os.path.join(cache, "containers")]


def container_dir(name: str) -> str:
    """A new state folder for container `name` (0700, a unique suffix), with its owner
    recorded. Never in the current folder: a relative or empty XDG_RUNTIME_DIR is ignored."""
    bases = state_bases(private_root())
    base = next((folder for folder in bases[:-1] if _writable_folder(os.path.dirname(folder))), bases[-1])
    private_folder(base)
    for other in bases:
        running = _running_container_named(other, name)
        if running is not None:
            raise SandboxError(f"the container name {name!r} is in use by a running container ({running})")
    claimed = claimed_by(name)
    if claimed is not None:
        raise SandboxError(f"the container name {name!r} is in use by {claimed}: remove it first (pysandbox rm)")
    while True:
        folder = os.path.join(base, f"{name}-{os.urandom(_SUFFIX_BYTES).hex()}")
        try:
            os.mkdir(folder, 0o700)
            break
        except FileExistsError:
            continue
    pid = os.getpid()
    with open(os.path.join(folder, OWNER_FILE), "w") as owner:
        owner.write(f"{pid} {start_time(pid)}\n")
    return folder


NAMES = "names"  # under the private root: one file per claimed container name (sandbox.containers)


def claim_holder(path: str) -> str | None:
    """The folder a name's claim file names (read to 4 KiB at most), or None."""
    try:
        with open(path) as claim:
            return claim.read(4096).strip()
    except OSError:
        return None


def claimed_by(name: str) -> str | None:
    """The folder of the detached container that holds `name` (sandbox.containers), if any."""
    folder = claim_holder(os.path.join(private_root(), NAMES, name))
    return folder if folder and os.path.isdir(folder) else None


def _running_container_named(base: str, name: str) -> str | None:
    """The state folder of a container called `name` whose pysandbox still runs, if any.
    (Two runs started at the same instant can both pass: names become a real registry with
    containers that have a lifecycle.)"""
    try:
        entries = os.listdir(base)
    except OSError:
        return None
    for entry in entries:
        if container_name_of(entry) == name and owner_alive(os.path.join(base, entry)):
            return os.path.join(base, entry)
    return None


def container_name_of(entry: str) -> str | None:
    """The container name of a state folder named as container_dir names them, or None."""
    name, _, suffix = entry.rpartition("-")
    is_suffix = len(suffix) == 2 * _SUFFIX_BYTES and all(char in "0123456789abcdef" for char in suffix)
    return name if is_suffix and name else None


def owner_record(folder: str) -> list[str]:
    """The [pid, start time] `folder`'s owner file records, read without following a link
    or waiting on a FIFO planted in its place. OSError when there is none to read."""
    fd = os.open(os.path.join(folder, OWNER_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if (os.fstat(fd).st_mode & 0o170000) != 0o100000:
            raise OSError(21, "not a regular file", os.path.join(folder, OWNER_FILE))
        return os.read(fd, 256).decode(errors="replace").split()
    finally:
        os.close(fd)


def owner_alive(folder: str) -> bool:
    """Whether the pysandbox process recorded in `folder` still runs (its pid, with the
    same start time: a reused pid does not count)."""
    try:
        return recorded_process_alive(owner_record(folder))
    except OSError:
        return False


def recorded_process_alive(fields: list[str]) -> bool:
    """Whether an owner record's [pid, start time] is a process that still runs."""
    return len(fields) == 2 and fields[0].isdigit() and start_time(int(fields[0])) == fields[1]


def _writable_folder(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)


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
    """Open up a folder of ours for removal: the folder itself, never what a symlink swapped
    in its place points to (chmod through the descriptor of the folder, not its name)."""
    try:
        fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError:
        return
    try:
        os.chmod(f"/proc/self/fd/{fd}", 0o700)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(name: str, parent: int) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except OSError:
        pass

"""The container's filesystem, mounted inside its own mount namespace before pivot_root:
a fresh /proc, a minimal /dev, /sys read-only, masked and read-only kernel paths, the
/etc files a container expects, tmpfs, bind mounts and volumes. Destinations are resolved
inside the root, so a symlink in the image cannot redirect a mount onto the host.

Paths are strings (no pathlib) and mounts are plain records: `pysandbox run`'s warm start
imports this module."""

from __future__ import annotations

import os

from pysbx.policies.record import Record
from pysbx.sandbox import linux

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


class BindMount(Record):
    __slots__ = ("destination", "fill", "read_only", "source")

    def __init__(self, source: str, destination: str, read_only: bool, fill: bool = False) -> None:
        self.source = source
        self.destination = destination
        self.read_only = read_only
        self.fill = fill  # a new, empty named volume: it takes the image's content at `destination`


class TmpfsMount(Record):
    __slots__ = ("destination", "mode", "size")

    def __init__(self, destination: str, size: int | None, mode: str) -> None:
        self.destination = destination
        self.size = size
        self.mode = mode


def inside(root: str, destination: str) -> str:
    """`destination` resolved inside `root`: symlinks are followed as if root were /, and
    `..` stops at root (the walk openat2(RESOLVE_IN_ROOT) would do)."""
    parts = [p for p in destination.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(f"{destination}: too many symbolic links inside the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _ensure(path: str, directory: bool) -> None:
    if directory:
        os.makedirs(path, exist_ok=True)
    elif not os.path.lexists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def mount_proc(root: str) -> None:
    target = inside(root, "/proc")
    _ensure(target, True)
    linux.mount("proc", target, "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


def mount_dev(root: str) -> None:
    dev = inside(root, "/dev")
    _ensure(dev, True)
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME, "mode=755,size=65536k")
    for name in DEVICES:
        node = f"{dev}/{name}"
        _ensure(node, False)
        linux.mount(f"/dev/{name}", node, None, linux.MS_BIND)
    os.mkdir(f"{dev}/pts")
    linux.mount(
        "devpts", f"{dev}/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"
    )
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    os.mkdir(f"{dev}/shm")
    linux.mount(
        "shm", f"{dev}/shm", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "mode=1777,size=65536k"
    )
    os.mkdir(f"{dev}/mqueue")
    try:  # needs an ipc namespace of our own
        linux.mount("mqueue", f"{dev}/mqueue", "mqueue", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    except OSError:
        pass
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{link}")


def mount_sys(root: str, own_network: bool) -> None:
    """sysfs belongs to the network namespace's owner: mount it when the network namespace
    is ours, else bind the host's read-only."""
    target = inside(root, "/sys")
    _ensure(target, True)
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_RDONLY
    if own_network:
        linux.mount("sysfs", target, "sysfs", flags)
    else:
        linux.mount("/sys", target, None, linux.MS_BIND | linux.MS_REC)
        linux.mount("none", target, None, linux.MS_REMOUNT | linux.MS_BIND | flags)


_CGROUP_FLAGS = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_RDONLY
CONTAINER_CGROUP_PREFIX = "pysandbox-"  # sandbox.cgroups names each container's cgroup so


def _cgroup_table() -> list[list[str]]:
    """/proc/self/cgroup as [hierarchy id, controllers, path] rows."""
    with open("/proc/self/cgroup") as own:
        return [line.split(":", 2) for line in own.read().splitlines() if line.count(":") >= 2]


def own_cgroup_hierarchies() -> tuple[str, ...]:
    """The hierarchies (by id) in which this process sits in a cgroup made for its container:
    only those are shown to it. In the others its cgroup namespace's root would be a cgroup
    of the host (the root of the cpu hierarchy, say), with every host service below it."""
    return tuple(
        number for number, _, path in _cgroup_table() if path.rpartition("/")[2].startswith(CONTAINER_CGROUP_PREFIX)
    )


def mount_cgroups(root: str, own: tuple[str, ...]) -> None:
    """The container's own cgroups, read-only, at /sys/fs/cgroup, as Docker and podman give
    them: runtimes size themselves from there (Java's heap, Node's, Go's GOMAXPROCS), and
    an empty folder makes them size themselves to the host. Called inside the container's
    cgroup namespace, so each hierarchy's root is the container's cgroup; only the
    hierarchies in `own` (own_cgroup_hierarchies, read before the namespace) are mounted.
    cgroup v2 alone: one cgroup2 mount; v1 or hybrid: a read-only tmpfs with one mount per
    hierarchy, named as the host names them (`unified` for the v2 one). A hierarchy the
    kernel will not mount here is left out: the container runs without it."""
    target = inside(root, "/sys/fs/cgroup")
    table = _cgroup_table()
    if not os.path.isdir(target):
        return
    if all(number == "0" for number, _, _ in table):
        if "0" in own:
            _mount_quietly("cgroup2", target, "cgroup2", "")
        return
    linux.mount("tmpfs", target, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "mode=755,size=64k")
    for number, controllers, _ in table:
        if number not in own:
            continue
        if number == "0":
            name, kind, options = "unified", "cgroup2", ""
        else:
            name = controllers.removeprefix("name=")
            kind, options = "cgroup", controllers if not controllers.startswith("name=") else f"none,{controllers}"
        if not name or "/" in name:
            continue
        folder = f"{target}/{name}"
        os.mkdir(folder, 0o755)
        _mount_quietly(kind, folder, kind, options)
    linux.mount("none", target, None, linux.MS_REMOUNT | _CGROUP_FLAGS, "mode=755,size=64k")


def _mount_quietly(source: str, target: str, kind: str, options: str) -> None:
    try:
        linux.mount(source, target, kind, _CGROUP_FLAGS, options or None)
    except OSError:
        pass


def mask_paths(root: str, paths: tuple[str, ...]) -> None:
    for path in paths:
        target = inside(root, path)
        if os.path.isdir(target) and not os.path.islink(target):
            linux.mount("tmpfs", target, "tmpfs", linux.MS_RDONLY, "size=0")
        elif os.path.exists(target):
            linux.mount("/dev/null", target, None, linux.MS_BIND)


def read_only_paths(root: str, paths: tuple[str, ...]) -> None:
    for path in paths:
        target = inside(root, path)
        if not os.path.exists(target):
            continue
        linux.mount(target, target, None, linux.MS_BIND | linux.MS_REC)
        flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
        linux.mount("none", target, None, flags)


def etc_files(root: str, state: str, hostname: str, nameserver: str | None = None, address: str | None = None) -> None:
    """/etc/hostname, /etc/hosts, /etc/resolv.conf from per-container files, written on a
    small tmpfs of the container's own mount namespace: a bind from the state folder would
    show the host's storage path (and the user's home) in the container's mountinfo. On a
    bridge network the hostname names the container's `address` there, as Docker's does."""
    folder = f"{state}/etc"
    os.makedirs(folder, exist_ok=True)
    linux.mount("tmpfs", folder, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "size=64k,mode=0755")
    contents = {
        "hostname": f"{hostname}\n",
        "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{address or '127.0.1.1'}\t{hostname}\n",
        "resolv.conf": _resolv_conf(nameserver),
    }
    for name, text in contents.items():
        source = f"{folder}/{name}"
        with open(source, "w") as etc:
            etc.write(text)
        target = inside(root, f"/etc/{name}")
        try:
            _ensure(target, False)
        except OSError:
            continue  # a read-only image without the file: nothing to mount over
        linux.mount(source, target, None, linux.MS_BIND)


def _resolv_conf(nameserver: str | None) -> str:
    """The host's resolver settings; under a network engine, its forwarding address is the
    one nameserver (the host's own may be loopback addresses, out of the container's reach)."""
    try:
        with open("/etc/resolv.conf") as host:
            lines = host.read().splitlines()
    except OSError:
        lines = []
    if nameserver is not None:
        return "".join(line + "\n" for line in lines if not line.strip().startswith("nameserver")) + (
            f"nameserver {nameserver}\n"
        )
    return "".join(line + "\n" for line in lines if not line.strip().startswith("nameserver 127."))


def tmpfs(root: str, mount: TmpfsMount) -> None:
    target = inside(root, mount.destination)
    _ensure(target, True)
    options = f"mode={mount.mode}" + (f",size={mount.size}" if mount.size else "")
    linux.mount("tmpfs", target, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, options)


def fill_volume(root: str, mount: BindMount) -> None:
    """A new named volume takes what the image has at its destination, owners and modes
    kept, the volume's own folder included (it takes the owner and mode of the image's folder),
    as Docker's and podman's do (nginx's /etc/nginx, postgres's data folder). Run as
    the container's root inside its namespaces: the files it writes belong to the
    container's ids. Nothing is followed: symlinks are copied as symlinks, devices, FIFOs
    and sockets left out; an image with nothing there leaves the volume empty."""
    source = inside(root, mount.destination)
    if os.path.normpath(source) == os.path.normpath(root):  # the whole image: bind refuses it
        return
    if not os.path.isdir(source) or os.path.islink(source) or os.listdir(mount.source):
        return
    copy_tree(source, mount.source)
    top = os.lstat(source)
    os.chown(mount.source, top.st_uid, top.st_gid)
    os.chmod(mount.source, top.st_mode & 0o7777)


def copy_tree(source: str, target: str) -> None:
    """Copy the contents of folder `source` into the existing, empty folder `target`."""
    pending = [(source, target)]
    while pending:
        here, there = pending.pop()
        with os.scandir(here) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                destination = os.path.join(there, entry.name)
                if entry.is_symlink():
                    os.symlink(os.readlink(entry.path), destination)
                elif entry.is_dir(follow_symlinks=False):
                    os.mkdir(destination, 0o700)
                    pending.append((entry.path, destination))
                elif entry.is_file(follow_symlinks=False):
                    _copy_file(entry.path, destination)
                else:
                    continue
                os.lchown(destination, info.st_uid, info.st_gid)
                if not entry.is_symlink():
                    os.chmod(destination, info.st_mode & 0o7777)
        times = os.stat(here)
        os.utime(there, ns=(times.st_atime_ns, times.st_mtime_ns))


def _copy_file(source: str, destination: str) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    reader = os.open(source, flags)
    try:
        writer = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while chunk := os.read(reader, 1 << 20):
                os.write(writer, chunk)
        finally:
            os.close(writer)
    finally:
        os.close(reader)


def bind(root: str, mount: BindMount) -> None:
    target = inside(root, mount.destination)
    if os.path.normpath(target) == os.path.normpath(root):
        raise OSError(f"-v {mount.source}:{mount.destination}: the destination resolves to / inside the image")
    _ensure(target, os.path.isdir(mount.source))
    linux.mount(mount.source, target, None, linux.MS_BIND | linux.MS_REC)
    if mount.read_only:
        linux.mount("none", target, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)


def pivot(root: str) -> None:
    """pivot_root into `root` and detach the old root: nothing of the host stays reachable."""
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount(".", linux.MNT_DETACH)
    os.chdir("/")


def remount_root_read_only() -> None:
    linux.mount("none", "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)


def mount_bounded_layer(state: int, size: int) -> tuple[int, int]:
    """A tmpfs of `size` over the state folder's `writable` (a writable layer that caps what
    the container can write), in our mount namespace: the setup process mounts it, so that
    it outlives the container's processes (sandbox.layercopy saves it after them). Returns
    descriptors of the folder beneath (where a saved layer lives) and of the tmpfs. Its
    inodes are bounded too, one per 4 KiB: an empty folder takes no tmpfs space but a block
    of the disk a saved layer goes to."""
    try:
        os.mkdir("writable", 0o755, dir_fd=state)
    except FileExistsError:
        pass
    beneath = os.open("writable", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=state)
    options = f"size={size},nr_inodes={max(size // 4096, 1024)},mode=0755"
    linux.mount("tmpfs", f"/proc/self/fd/{beneath}", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, options)
    above = os.open("writable", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=state)
    if os.fstat(above).st_dev == os.fstat(beneath).st_dev:
        raise OSError(f"the tmpfs for the writable layer is not where it was mounted ({size} bytes)")
    return beneath, above


def mount_overlay(lowers: tuple[str, ...], state: str, target: str) -> str:
    """Mount the container root at `target` (inside our user and mount namespaces): an
    overlay of the cached layer folders (top first) under an upper directory that takes
    every write, so writes never reach the cache; where overlay cannot be mounted, a private
    flattened copy. (Under limits.writable_size the setup process has mounted a tmpfs on
    the state folder's `writable` first: mount_bounded_layer.) Returns which."""
    writable = f"{state}/writable"
    os.makedirs(writable, exist_ok=True)
    upper, work = f"{writable}/upper", f"{writable}/work"
    for folder in (upper, work, target):
        os.makedirs(folder, exist_ok=True)
    _copy_root_metadata(lowers[0], upper)
    lowerdir, cwd = _lowerdir_option(lowers)
    options = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    previous = os.getcwd() if cwd else None
    try:
        if cwd:
            os.chdir(cwd)
        for extra in (",userxattr", ""):
            try:
                linux.mount("overlay", target, "overlay", 0, options + extra)
                return "overlay"
            except OSError:
                pass
    finally:
        if previous:
            os.chdir(previous)
    from pathlib import Path  # the rare path: the warm start does not pay for it

    from pysbx.images.overlay import flatten

    copy = f"{state}/copy"
    os.mkdir(copy)
    flatten(tuple(map(Path, lowers)), Path(copy))
    linux.mount(copy, target, None, linux.MS_BIND | linux.MS_REC)
    return "copy"


def _copy_root_metadata(source: str, target: str) -> None:
    """The merged root takes the upper directory's mode and times: the image's, not ours."""
    info = os.stat(source)
    os.chmod(target, info.st_mode & 0o7777)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


_MOUNT_DATA_LIMIT = 4000  # the kernel copies one page of mount options


def _lowerdir_option(lowers: tuple[str, ...]) -> tuple[str, str | None]:
    """`lowerdir=` as absolute paths, or, for images with many layers, relative to the
    layer cache (returned as the folder to mount from) so that the options fit in a page.
    A lower folder is CACHE/KEY/root."""
    absolute = ":".join(lowers)
    caches = {os.path.dirname(os.path.dirname(folder)) for folder in lowers}
    if len(absolute) < _MOUNT_DATA_LIMIT - 512 or len(caches) != 1:
        return absolute, None
    cache = caches.pop()
    return ":".join(os.path.relpath(folder, cache) for folder in lowers), cache

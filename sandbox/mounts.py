"""The container's filesystem, mounted inside its own mount namespace before pivot_root:
a fresh /proc, a minimal /dev, /sys read-only, masked and read-only kernel paths, the
/etc files a container expects, tmpfs, bind mounts and volumes. Destinations are resolved
inside the root, so a symlink in the image cannot redirect a mount onto the host."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sandbox import linux

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


@dataclass(frozen=True)
class BindMount:
    source: str
    destination: str
    read_only: bool


@dataclass(frozen=True)
class TmpfsMount:
    destination: str
    size: int | None
    mode: str


def inside(root: Path, destination: str) -> Path:
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
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise OSError(f"{destination}: too many symbolic links inside the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _ensure(path: Path, directory: bool) -> None:
    if directory:
        path.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def mount_proc(root: Path) -> None:
    target = inside(root, "/proc")
    _ensure(target, True)
    linux.mount("proc", str(target), "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


def mount_dev(root: Path) -> None:
    dev = inside(root, "/dev")
    _ensure(dev, True)
    linux.mount("tmpfs", str(dev), "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME, "mode=755,size=65536k")
    for name in DEVICES:
        node = dev / name
        node.touch()
        linux.mount(f"/dev/{name}", str(node), None, linux.MS_BIND)
    (dev / "pts").mkdir()
    linux.mount(
        "devpts", str(dev / "pts"), "devpts", linux.MS_NOSUID | linux.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"
    )
    os.symlink("pts/ptmx", dev / "ptmx")
    (dev / "shm").mkdir()
    linux.mount(
        "shm", str(dev / "shm"), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "mode=1777,size=65536k"
    )
    (dev / "mqueue").mkdir()
    with contextlib.suppress(OSError):  # needs an ipc namespace of our own
        linux.mount("mqueue", str(dev / "mqueue"), "mqueue", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, dev / link)


def mount_sys(root: Path, own_network: bool) -> None:
    """sysfs belongs to the network namespace's owner: mount it when the network namespace
    is ours, else bind the host's read-only."""
    target = inside(root, "/sys")
    _ensure(target, True)
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_RDONLY
    if own_network:
        linux.mount("sysfs", str(target), "sysfs", flags)
    else:
        linux.mount("/sys", str(target), None, linux.MS_BIND | linux.MS_REC)
        linux.mount("none", str(target), None, linux.MS_REMOUNT | linux.MS_BIND | flags)


def mask_paths(root: Path, paths: tuple[str, ...]) -> None:
    for path in paths:
        target = inside(root, path)
        if target.is_dir() and not target.is_symlink():
            linux.mount("tmpfs", str(target), "tmpfs", linux.MS_RDONLY, "size=0")
        elif target.exists():
            linux.mount("/dev/null", str(target), None, linux.MS_BIND)


def read_only_paths(root: Path, paths: tuple[str, ...]) -> None:
    for path in paths:
        target = inside(root, path)
        if not target.exists():
            continue
        linux.mount(str(target), str(target), None, linux.MS_BIND | linux.MS_REC)
        flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
        linux.mount("none", str(target), None, flags)


def etc_files(root: Path, state: Path, hostname: str) -> None:
    """/etc/hostname, /etc/hosts, /etc/resolv.conf from per-container files."""
    contents = {
        "hostname": f"{hostname}\n",
        "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n",
        "resolv.conf": _resolv_conf(),
    }
    for name, text in contents.items():
        source = state / name
        source.write_text(text)
        target = inside(root, f"/etc/{name}")
        try:
            _ensure(target, False)
        except OSError:
            continue  # a read-only image without the file: nothing to mount over
        linux.mount(str(source), str(target), None, linux.MS_BIND)


def _resolv_conf() -> str:
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return ""
    return "".join(line + "\n" for line in lines if not line.strip().startswith("nameserver 127."))


def tmpfs(root: Path, mount: TmpfsMount) -> None:
    target = inside(root, mount.destination)
    _ensure(target, True)
    options = f"mode={mount.mode}" + (f",size={mount.size}" if mount.size else "")
    linux.mount("tmpfs", str(target), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, options)


def bind(root: Path, mount: BindMount) -> None:
    target = inside(root, mount.destination)
    if target == root:
        raise OSError(f"-v {mount.source}:{mount.destination}: the destination resolves to / inside the image")
    _ensure(target, os.path.isdir(mount.source))
    linux.mount(mount.source, str(target), None, linux.MS_BIND | linux.MS_REC)
    if mount.read_only:
        linux.mount("none", str(target), None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)


def pivot(root: Path) -> None:
    """pivot_root into `root` and detach the old root: nothing of the host stays reachable."""
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount(".", linux.MNT_DETACH)
    os.chdir("/")


def remount_root_read_only() -> None:
    linux.mount("none", "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)


def mount_overlay(lowers: tuple[Path, ...], state: Path, target: Path, size: int | None = None) -> str:
    """Mount the container root at `target` (inside our user and mount namespaces): an
    overlay of the cached layer folders (top first) under an upper directory that takes
    every write, so writes never reach the cache; where overlay cannot be mounted, a private
    flattened copy. With `size`, the upper directory lives on a tmpfs of that size, which
    caps what the container can write. Returns which."""
    writable = state / "writable"
    writable.mkdir(exist_ok=True)
    if size is not None:
        linux.mount("tmpfs", str(writable), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, f"size={size},mode=0755")
    upper, work = writable / "upper", writable / "work"
    for folder in (upper, work, target):
        folder.mkdir(exist_ok=True)
    shutil.copystat(lowers[0], upper)
    lowerdir, cwd = _lowerdir_option(lowers)
    options = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    previous = os.getcwd() if cwd else None
    try:
        if cwd:
            os.chdir(cwd)
        for extra in (",userxattr", ""):
            with contextlib.suppress(OSError):
                linux.mount("overlay", str(target), "overlay", 0, options + extra)
                return "overlay"
    finally:
        if previous:
            os.chdir(previous)
    from images.overlay import flatten  # the rare path: the warm start does not pay for it

    copy = state / "copy"
    copy.mkdir()
    flatten(lowers, copy)
    linux.mount(str(copy), str(target), None, linux.MS_BIND | linux.MS_REC)
    return "copy"


def release_overlay_work(state: Path) -> None:
    """After the container is gone: overlayfs made its workdir's `work` folder with mode 000,
    owned by the container's root, which for an ordinary user is the user: give it back read
    and search permission, so that removing the state folder (--rm) does not stop there."""
    for work in [*state.glob("work/work"), *state.glob("*/work/work")]:
        with contextlib.suppress(OSError):
            os.chmod(work, 0o700)


_MOUNT_DATA_LIMIT = 4000  # the kernel copies one page of mount options


def _lowerdir_option(lowers: tuple[Path, ...]) -> tuple[str, str | None]:
    """`lowerdir=` as absolute paths, or, for images with many layers, relative to the
    layer cache (returned as the folder to mount from) so that the options fit in a page."""
    absolute = ":".join(str(folder) for folder in lowers)
    cache = lowers[0].parent.parent
    if len(absolute) < _MOUNT_DATA_LIMIT - 512 or any(folder.parent.parent != cache for folder in lowers):
        return absolute, None
    return ":".join(f"{folder.parent.name}/{folder.name}" for folder in lowers), str(cache)

"""Writing an output file whole: reports, bundles, compiled filters (typer-free: pyaudit's
lean path writes --output too)."""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

# Folders of the kernel's own files: a temporary file and a rename there would replace a
# device or a descriptor's name (/dev/stdout) with a regular file.
_KERNEL_FOLDERS = ("/dev", "/proc", "/sys")


def write_atomically(path: Path, data: bytes) -> None:
    """Whoever reads `path` sees the old content or the new, never half, and a failed write
    loses nothing. The temporary file is made with O_EXCL under a random name, so a link
    another user planted in a shared folder is never written through; it gets the mode a
    plain create would (0666 less the umask). A device, a FIFO or a socket (`--output
    /dev/null`, a pipe), and anything in /dev, /proc or /sys, is written in place instead:
    renaming over it replaced /dev/null with a file for everyone on the host. Raises
    OSError naming `path`."""
    if _written_in_place(path):
        _write_in_place(path, data)
        return
    import tempfile  # only where a file is written: a start-up that writes none skips it

    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(stream.fileno(), 0o666 & ~umask)
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _written_in_place(path: Path) -> bool:
    """Whether `path` is a stream of the kernel's, not a file to replace: a name in /dev,
    /proc or /sys (which may be a link: /dev/stdout), or a device, FIFO or socket node
    itself. A link elsewhere is never followed to decide: a user's link in /tmp to a disk
    would otherwise have root write a report onto the disk."""
    folder = os.path.realpath(path.parent or ".")
    if any(folder == kernel or folder.startswith(kernel + "/") for kernel in _KERNEL_FOLDERS):
        return True
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode):
        return False  # replaced as before (a folder: the rename says what is wrong)
    if info.st_uid not in (0, os.geteuid()):
        # Another user's FIFO in /tmp would read the report, or hold the writer forever.
        raise OSError(errno.EPERM, f"{path} is a {_kind(info.st_mode)} of uid {info.st_uid}: not written into")
    return True


def _kind(mode: int) -> str:
    return "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"


def _write_in_place(path: Path, data: bytes) -> None:
    """Open what is there (never create: a name in /dev that is not there is a mistake),
    without waiting for a FIFO's reader (ENXIO when there is none), then write blocking."""
    descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        os.set_blocking(descriptor, True)
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)

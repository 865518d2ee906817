"""What a run is using, so that housekeeping never removes it under a running container,
whatever started it (run, run -d, a restart). A run holds, for as long as it runs, a shared
lock on a `KEY.use` file beside each cached layer its overlay stacks and on the folder of
each named volume it mounts. `system prune`
removes a layer or a volume only when it gets that lock exclusively without waiting, and
renames it away before deleting it, so a run that waited on the lock finds it gone and
stops, instead of mounting half of it.

Standard library only: the warm start of `pysandbox run` takes these locks."""

from __future__ import annotations

import fcntl
import os


def layer_lock_of(lower: str) -> str:
    """`.../layers/KEY/root` -> `.../layers/KEY.use` (and `.../images/KEY/rootfs`, a
    flattened image, -> `.../images/KEY.use`): the lock of the runs that use the layer,
    beside the layer's folder and its unpacking lock (`KEY.lock`), which stays the
    unpackers' alone: `pysandbox prune` reads a held `.lock` as an unpack in progress."""
    return os.path.dirname(os.path.normpath(lower)) + ".use"


def unpack_lock_of(lower: str) -> str:
    return os.path.dirname(os.path.normpath(lower)) + ".lock"


def volume_of(source: str, volumes_root: str) -> str | None:
    """The volume folder a bind source (`VOLUMES/NAME/data`) belongs to; None for a bind of
    a host path."""
    folder = os.path.dirname(os.path.normpath(source))
    return folder if os.path.dirname(folder) == os.path.normpath(volumes_root) else None


def hold(lowers: tuple[str, ...], volume_folders: list[str]) -> tuple[int, ...]:
    """Shared locks on the layers and volumes, held by the returned descriptors until they
    are closed (the container's side closes them at once: they are the monitor's). Raises
    OSError when a layer or volume went away (a prune removed it while this run waited)."""
    held: list[int] = []
    try:
        for path, flags in [*((layer_lock_of(lower), os.O_RDWR | os.O_CREAT) for lower in lowers),
                            *((folder, os.O_RDONLY | os.O_DIRECTORY) for folder in volume_folders)]:  # fmt: skip
            held.append(os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
            fcntl.flock(held[-1], fcntl.LOCK_SH)
        for lower in lowers:
            if not os.path.isdir(lower):
                raise FileNotFoundError(2, "removed by a prune while this run waited for it; run again", lower)
    except BaseException:
        release(tuple(held))
        raise
    return tuple(held)


def release(held: tuple[int, ...]) -> None:
    for fd in held:
        os.close(fd)


def claim_unused(path: str, directory: bool = False, create: bool = False) -> int | None:
    """`path` (a layer's lock file, or a volume's folder) locked exclusively when no run
    holds it; None when one does. The caller renames the layer or volume away, removes it,
    then closes the descriptor."""
    flags = (os.O_RDONLY | os.O_DIRECTORY if directory else os.O_RDWR) | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd

"""`pysandbox system reset`: remove all of the invoker's storage, as podman's `system reset`
does. An ordinary user's layers belong in part to their subordinate ids (unpacked in a user
namespace), so `rm -rf` cannot delete them; this removes them from a namespace made alike
(sandbox.prune.remove_tree). It refuses while a container of theirs runs or an unpack holds
a lock: what a running container stands on is not pulled away."""

from __future__ import annotations

import contextlib
from pathlib import Path

from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.prune import all_locks_free, checked_bases, is_state_folder, owner_gone, remove_tree


class StorageInUse(SandboxError):
    """A container runs, or an unpack is under way: nothing was removed."""


def reset_storage(cache: Path) -> int:
    """Remove everything below `cache` and every container state folder; return how many
    top-level entries went. Raises StorageInUse before removing anything when one is busy,
    and OSError naming what could not be removed."""
    bases, refused = checked_bases(cache)
    if refused:
        raise SandboxError(str(refused[0].error))
    states = [folder for base in bases for folder in sorted(base.iterdir()) if is_state_folder(folder)]
    running = [folder for folder in states if owner_gone(folder) is None]
    if running:
        raise StorageInUse(f"a container is running or starting ({running[0].name}): stop it first")
    with contextlib.ExitStack() as held:
        for folder in (cache / "layers", cache / "images"):
            if folder.is_dir() and not held.enter_context(all_locks_free(folder)):
                raise StorageInUse(f"an unpack is under way in {folder}: try again when it is done")
        entries = [*states, *(entry for entry in sorted(cache.iterdir()) if entry not in bases)]
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                remove_tree(entry)
            else:
                entry.unlink()
    return len(entries)

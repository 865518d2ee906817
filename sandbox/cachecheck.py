"""`pysandbox system check [--repair]`: re-verify every cached layer (and flattened image)
against the tree digest recorded when it was unpacked (sandbox.treedigest). A folder that
changed, or has no digest (an older pysandbox's), is reported; with repair it is removed,
and the next run that needs it unpacks it again from the verified image."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pysbx.sandbox.rootfs import in_namespace, locked, unpacked_in_namespace
from pysbx.sandbox.treedigest import recorded_digest, tree_digest

_TREES = (("layers", "root"), ("images", "rootfs"))


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    problem: str | None  # None: it matches its digest
    removed: bool = False


def cache_folders(cache: Path) -> Iterator[tuple[Path, str]]:
    """Each published cache folder with the name of the tree inside it."""
    for kind, tree in _TREES:
        base = cache / kind
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if not folder.name.startswith(".") and folder.is_dir() and not folder.is_symlink():
                yield folder, tree


def check_folder(folder: Path, tree: str) -> str | None:
    """Why `folder` cannot be trusted as recorded, or None."""
    recorded = recorded_digest(str(folder))
    if recorded is None:
        return "no tree digest recorded"
    try:
        actual = tree_digest(str(folder / tree))
    except OSError as error:
        return f"cannot read it: {error.strerror or error}"
    return None if actual == recorded else f"changed since it was unpacked (recorded {recorded}, now {actual})"


def check_folders(folders: list[tuple[Path, str]]) -> dict[Path, str | None]:
    """check_folder for each; those unpacked in a user namespace are checked in one made
    alike, where their owners read as the containers see them (as they did when the digest
    was recorded)."""
    from pysbx.sandbox.userns import subordinate_maps

    nested = [(folder, tree) for folder, tree in folders if unpacked_in_namespace(folder.name)]
    found = {folder: check_folder(folder, tree) for folder, tree in folders if (folder, tree) not in nested}
    if nested:
        maps = subordinate_maps()
        if maps is None:
            found |= {folder: "unpacked in a user namespace that cannot be made now" for folder, _ in nested}
        else:
            found |= in_namespace(maps, lambda: {folder: check_folder(folder, tree) for folder, tree in nested})
    return found


def check_cache(cache: Path, repair: bool) -> list[CacheEntry]:
    from pysbx.sandbox.prune import remove_tree

    folders = list(cache_folders(cache))
    problems = check_folders(folders)
    results = []
    for folder, _ in folders:
        problem = problems[folder]
        removed = False
        if problem is not None and repair:
            with locked(folder.parent / f"{folder.name}.lock"):  # no unpack of it meanwhile
                remove_tree(folder)
            removed = True
        results.append(CacheEntry(folder, problem, removed))
    return results

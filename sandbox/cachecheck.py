"""`pysandbox system check [--repair]`: re-verify every cached layer (and flattened image)
against the tree digest recorded when it was unpacked (sandbox.treedigest). A folder that
changed, or has no digest (an older pysandbox's), is reported; with repair it is removed,
and the next run that needs it unpacks it again from the verified image."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pysbx.sandbox.rootfs import locked
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


def check_cache(cache: Path, repair: bool) -> list[CacheEntry]:
    from pysbx.sandbox.prune import remove_tree

    results = []
    for folder, tree in cache_folders(cache):
        problem = check_folder(folder, tree)
        removed = False
        if problem is not None and repair:
            with locked(folder.parent / f"{folder.name}.lock"):  # no unpack of it meanwhile
                remove_tree(folder)
            removed = True
        results.append(CacheEntry(folder, problem, removed))
    return results

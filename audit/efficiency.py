"""How much of an image is waste.

Two measures. `wasted_bytes` is ours, by definition: bytes of file versions stored in a
layer but not visible in the final filesystem (overwritten, deleted by a whiteout, hidden
by an opaque directory or by a later non-directory at an ancestor). `dive_efficiency`
reproduces dive's score with dive's own rules (leaf nodes per layer; a whiteout of a
directory counts what it hides; opaque markers ignored; a file over a directory keeps the
directory's children), so teams moving from `dive --ci` keep their thresholds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pysbx.images.layers import Entry


@dataclass(slots=True)
class Version:
    layer: int
    entry: Entry


class _Node:
    """A path of the tree: its version (None for a folder only implied) and its children.
    A plain class: one is made per entry of every layer, and a dataclass with a factory is
    twice as slow to make."""

    __slots__ = ("children", "version")

    def __init__(self) -> None:
        self.version: Version | None = None
        self.children: dict[str, _Node] = {}


class FinalTree:
    """The flattened filesystem, with OCI whiteout semantics, built layer by layer."""

    def __init__(self) -> None:
        self.root = _Node()
        self._listing: list[tuple[str, Version]] | None = None
        # The folder of the last path looked up and its node: a layer lists a folder's entries
        # together, so most entries find their parent here without a walk from the root. It
        # stays in the tree: what an entry replaces or removes is below the folder it looked up.
        self._last_folder: tuple[str, _Node] | None = None

    def _parent(self, path: str, create: bool) -> tuple[_Node | None, str]:
        folder, _, name = path.rpartition("/")
        last = self._last_folder
        if last is not None and last[0] == folder:
            return last[1], name
        node = self.root
        for part in folder.split("/") if folder else ():
            child = node.children.get(part)
            if child is None:
                if not create:
                    return None, name
                child = node.children[part] = _Node()
            node = child
        self._last_folder = (folder, node)
        return node, name

    def apply_layer(self, layer: int, entries: Iterable[Entry]) -> None:
        self._listing = None
        own: set[str] = set()
        for entry in entries:
            if entry.whiteout is not None:
                self._whiteout(entry, layer, own)
                continue
            own.add(entry.path)
            parent, name = self._parent(entry.path, True)
            assert parent is not None
            node = parent.children.get(name)
            if node is None or entry.kind != "dir":
                parent.children[name] = node = _Node()  # a non-directory replaces a whole tree
            node.version = Version(layer, entry)

    def _whiteout(self, entry: Entry, layer: int, own: set[str]) -> None:
        parent, name = self._parent(entry.path, False)
        if parent is None:
            return
        if entry.whiteout == "file":
            if entry.path not in own:
                parent.children.pop(name, None)
            return
        node = parent.children.get(name) if entry.path else self.root
        if node is None:
            return
        prefix = f"{entry.path}/" if entry.path else ""
        for child in [c for c in node.children if f"{prefix}{c}" not in own]:
            del node.children[child]

    def files(self) -> list[tuple[str, Version]]:
        """Every path of the final filesystem with its version, walked once and kept (the
        rules each read it)."""
        if self._listing is None:
            self._listing = []
            stack: list[tuple[str, _Node]] = [("", self.root)]
            while stack:
                prefix, node = stack.pop()
                for name, child in node.children.items():
                    path = f"{prefix}{name}"
                    if child.version is not None:
                        self._listing.append((path, child.version))
                    stack.append((path + "/", child))
        return self._listing


@dataclass
class WastedFile:
    path: str
    layer: int
    size: int


def wasted_files(layers: list[list[Entry]], final: FinalTree) -> list[WastedFile]:
    visible = {(path, version.layer) for path, version in final.files() if version.entry.kind == "file"}
    wasted = []
    for layer, entries in enumerate(layers):
        latest: dict[str, int] = {}
        for index, entry in enumerate(entries):
            if entry.kind == "file" and entry.whiteout is None:
                latest[entry.path] = index
        for index, entry in enumerate(entries):
            if entry.kind != "file" or entry.whiteout is not None or entry.size == 0:
                continue
            if (entry.path, layer) not in visible or latest[entry.path] != index:
                wasted.append(WastedFile(entry.path, layer, entry.size))
    return wasted


@dataclass
class DiveResult:
    efficiency: float
    wasted_bytes: int
    inefficient: list[tuple[str, int, int]]  # path, versions, cumulative bytes (dive's list)
    # dive's userWastedPercent (its CI rule highestUserWastedPercent): the wasted bytes over the
    # bytes of every layer above the first, which dive takes for the base image.
    user_wasted_ratio: float = 0.0


def dive_efficiency(layers: list[list[Entry]]) -> DiveResult:
    """dive's efficiency score and wasted bytes, computed the way dive computes them."""
    cumulative: dict[str, int] = {}
    minimum: dict[str, int] = {}
    versions: dict[str, int] = {}
    stacked = _Stacked()
    for entries in layers:
        tree = _dive_layer_tree(entries)
        parents = {path.rsplit("/", 1)[0] for path in tree if "/" in path}
        for path, (size, whiteout) in tree.items():
            if path in parents:
                continue  # dive visits leaves only
            if whiteout:
                size = stacked.hidden(path)
            key = "/" + path
            cumulative[key] = cumulative.get(key, 0) + size
            minimum[key] = size if key not in minimum else min(minimum[key], size)
            versions[key] = versions.get(key, 0) + 1
        stacked.add(tree)
    discovered = sum(cumulative.values())
    score = 1.0 if discovered == 0 else sum(minimum.values()) / discovered
    inefficient = sorted(((p, versions[p], cumulative[p]) for p in versions if versions[p] > 1), key=lambda row: row[2])
    wasted = sum(row[2] for row in inefficient)
    user_bytes = sum(entry.size for entries in layers[1:] for entry in entries if entry.kind == "file")
    return DiveResult(score, wasted, inefficient, wasted / user_bytes if user_bytes else 0.0)


def _dive_layer_tree(entries: list[Entry]) -> dict[str, tuple[int, bool]]:
    """One layer as dive sees it: every node with its size; implicit parents included (each
    before its children); `.wh..wh..opq` markers dropped (dive never adds them)."""
    tree: dict[str, tuple[int, bool]] = {}
    for entry in entries:
        if entry.whiteout == "opaque":
            continue
        missing, parent = [], entry.path
        while (cut := parent.rfind("/")) > 0 and (parent := parent[:cut]) not in tree:
            missing.append(parent)  # the tree holds every parent of what it holds: stop at one
        for parent in reversed(missing):
            tree[parent] = (0, False)
        tree[entry.path] = (entry.size if entry.kind == "file" else 0, entry.whiteout == "file")
    return tree


class _Stacked:
    """dive's stacked tree: each path with its size (directories included), and each path's
    children, so that a whiteout reaches what it hides without a scan of every path. A path
    is not always held where its children are (a layer can white out a folder and add to
    it), so the children are indexed by parent path, held or not."""

    def __init__(self) -> None:
        self.size: dict[str, int] = {}
        self.children: dict[str, set[str]] = {}

    def add(self, tree: dict[str, tuple[int, bool]]) -> None:
        for path, (size, whiteout) in tree.items():
            if whiteout:
                self.remove(path)
            else:
                if path not in self.size:
                    self.children.setdefault(path.rpartition("/")[0], set()).add(path)
                self.size[path] = size  # a file over a directory keeps the directory's children

    def hidden(self, path: str) -> int:
        """A whiteout over a directory counts everything below it; over a file, nothing."""
        if path not in self.size or not self.children.get(path):
            return 0
        return self.size[path] + sum(self.size[below] for below in self._below(path))

    def remove(self, path: str) -> None:
        """The path and everything below it."""
        for below in list(self._below(path)):
            del self.size[below]
            self.children.pop(below, None)
        self.children.pop(path, None)
        if self.size.pop(path, None) is not None:
            self.children[path.rpartition("/")[0]].discard(path)

    def _below(self, path: str) -> Iterator[str]:
        stack = list(self.children.get(path, ()))
        while stack:
            below = stack.pop()
            yield below
            stack.extend(self.children.get(below, ()))

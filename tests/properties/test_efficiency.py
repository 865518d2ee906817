"""Property: dive's efficiency, as audit.efficiency computes it with a tree of children,
equals the computation it replaced, which scanned every stacked path at each whiteout (the
reading of dive's code that tests/audit/test_corpus.py checks against dive's own output on
a real image). Layers are drawn from a few nested names, every kind of entry, whiteouts of
files and directories, opaque markers, paths repeated in one layer."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysbx.audit.efficiency import FinalTree, dive_efficiency
from pysbx.images.layers import Entry
from tests.properties.strategies import examples

_PATHS = ("a", "a/b", "a/b/c", "a/b/d", "a/e", "f", "f/g", "h/i/j")


def _entry(path: str, kind: str, size: int, whiteout: str | None) -> Entry:
    return Entry(path, kind, 0o644, 0, 0, size if kind == "file" else 0, "", 0.0, whiteout)


entries = st.builds(
    _entry,
    st.sampled_from(_PATHS),
    st.sampled_from(("file", "dir", "symlink")),
    st.sampled_from((0, 1, 10, 1000)),
    st.sampled_from((None, None, None, "file", "opaque")),
)


def scanned(layers: list[list[Entry]]) -> tuple[float, int, list[tuple[str, int, int]]]:
    """The computation before the tree: a flat map of stacked paths, scanned per whiteout."""
    cumulative: dict[str, int] = {}
    minimum: dict[str, int] = {}
    versions: dict[str, int] = {}
    stacked: dict[str, int] = {}
    for layer in layers:
        tree: dict[str, tuple[int, bool]] = {}
        for entry in layer:
            if entry.whiteout == "opaque":
                continue
            parts = entry.path.split("/")
            for depth in range(1, len(parts)):
                tree.setdefault("/".join(parts[:depth]), (0, False))
            tree[entry.path] = (entry.size if entry.kind == "file" else 0, entry.whiteout == "file")
        parents = {path.rsplit("/", 1)[0] for path in tree if "/" in path}
        for path, (size, whiteout) in tree.items():
            if path in parents:
                continue
            if whiteout:
                below = [key for key in stacked if key.startswith(path + "/")]
                size = stacked[path] + sum(stacked[key] for key in below) if path in stacked and below else 0
            key = "/" + path
            cumulative[key] = cumulative.get(key, 0) + size
            minimum[key] = size if key not in minimum else min(minimum[key], size)
            versions[key] = versions.get(key, 0) + 1
        for path, (size, whiteout) in tree.items():
            if whiteout:
                for key in [k for k in stacked if k == path or k.startswith(path + "/")]:
                    del stacked[key]
            else:
                stacked[path] = size
    discovered = sum(cumulative.values())
    score = 1.0 if discovered == 0 else sum(minimum.values()) / discovered
    inefficient = sorted(((p, versions[p], cumulative[p]) for p in versions if versions[p] > 1), key=lambda r: r[2])
    return score, sum(row[2] for row in inefficient), inefficient


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(entries, max_size=8), min_size=1, max_size=5))
def test_the_tree_of_children_computes_what_the_scan_computed(layers: list[list[Entry]]) -> None:
    result = dive_efficiency(layers)
    assert (result.efficiency, result.wasted_bytes, result.inefficient) == scanned(layers)


def flattened(layers: list[list[Entry]]) -> dict[str, tuple[int, Entry]]:
    """The final filesystem as FinalTree defines it, kept as a flat map of paths (no tree, no
    remembered folder): a non-directory replaces what was there and all below it, a
    directory keeps what is below it, a file whiteout removes what the layers below hold
    there, an opaque marker what they hold below its folder."""
    paths: dict[str, tuple[int, Entry] | None] = {}  # None: a folder only implied by a path below it

    def remove(path: str, keep: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        for key in [k for k in paths if (k == path or k.startswith(path + "/")) and k not in keep]:
            del paths[key]

    for index, layer in enumerate(layers):
        own: set[str] = set()
        for entry in layer:
            if entry.whiteout == "file":
                if entry.path not in own:
                    remove(entry.path)
            elif entry.whiteout == "opaque":
                if entry.path == "" or entry.path in paths:
                    prefix = f"{entry.path}/" if entry.path else ""
                    children = {k for k in paths if k.startswith(prefix) and "/" not in k[len(prefix) :]}
                    for child in children - own:
                        remove(child)
            else:
                own.add(entry.path)
                parts = entry.path.split("/")
                for depth in range(1, len(parts)):
                    paths.setdefault("/".join(parts[:depth]), None)
                if entry.path in paths and entry.kind != "dir":
                    remove(entry.path)
                paths[entry.path] = (index, entry)
    return {path: version for path, version in paths.items() if version is not None}


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(entries, max_size=8), min_size=1, max_size=5))
def test_the_final_tree_holds_what_the_flat_map_holds(layers: list[list[Entry]]) -> None:
    """FinalTree remembers the folder of the last entry (a layer lists a folder's entries
    together); a non-directory over a folder, or a whiteout, must make it forget."""
    tree = FinalTree()
    for index, layer in enumerate(layers):
        tree.apply_layer(index, layer)
    assert {path: (version.layer, version.entry) for path, version in tree.files()} == flattened(layers)

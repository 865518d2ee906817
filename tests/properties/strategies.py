"""Hypothesis strategies for hostile input: YAML written as flow text (so that plain scalars
keep the tags a file would give them: `010`, `1:30`, `2027-13-45`, `!!int x`), JSON-like
values biased towards the keys a reader looks for, and tar entries whose names and link
targets climb, jump to absolute paths, go through symlinks and hide behind whiteouts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from tests.imagekit import T

# PYSANDBOX_PROPERTY_SCALE=50 multiplies every property's examples: a long run by hand, beside
# the coverage-guided fuzzers of tests/fuzz; the suite itself stays within seconds.
SCALE = int(os.environ.get("PYSANDBOX_PROPERTY_SCALE", "1"))


def examples(count: int) -> int:
    """`count` examples, times the scale asked for in the environment."""
    return count * SCALE


# Plain YAML scalars that resolve to every tag PyYAML knows, and some that only look like one.
YAML_SCALARS = (
    "0", "1", "-1", "010", "0x1F", "0o17", "0b101", "1_000", "1:30", "190:20:30", "1.5", "-.inf", ".nan", "1e400",
    "9" * 40, "9" * 400 + "Mi", "1.5Gi", "512Mi", "30s", "500ms", "true", "false", "yes", "no", "on", "null", "~",
    "2027-01-31", "2027-13-45", "2001-12-14t21:59:43.10-05:00", "!!int x", "!!float x", "!!bool x", "!!timestamp x",
    "!!binary '*'", "!!str 12", "!!null x", "!!set {a}", "!!omap [a: 1]", "!!python/object:os.system x", "!foo x",
    '"a\\0b"', "'it''s'", "host", "root", "ALL", "SYS_ADMIN", "unconfined", "/", "/var/run/docker.sock",
    "../../../etc", "''", "&anchor x", "*anchor", "[]", "{}",
)  # fmt: skip


def scalars(extra: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """A raw YAML scalar: from the table, from the reader's own vocabulary, or any text."""
    table = st.sampled_from(YAML_SCALARS + tuple(extra))
    return st.one_of(
        table,
        table,
        table,
        st.text(alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters="-_./ "), max_size=12),
    )


def yaml_trees(keys: Sequence[str], extra_scalars: Sequence[str] = ()) -> st.SearchStrategy[object]:
    """Nested mappings (keys mostly from `keys`) and lists, with raw scalars as leaves."""
    key = st.one_of(st.sampled_from(tuple(keys)), scalars())
    return st.recursive(
        scalars(tuple(keys) + tuple(extra_scalars)),
        lambda children: st.one_of(
            st.dictionaries(key, children, max_size=6),
            st.lists(children, max_size=4),
        ),
        max_leaves=40,
    )


def flow_yaml(tree: object) -> str:
    """`tree` as one line of YAML flow style, scalars unquoted as drawn."""
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{flow_yaml(k)}: {flow_yaml(v)}" for k, v in tree.items()) + "}"
    if isinstance(tree, list):
        return "[" + ", ".join(flow_yaml(item) for item in tree) + "]"
    return str(tree)


def block_yaml(tree: object, indent: int = 0) -> str:
    """The top mapping in block style (as people write files), nested values in flow style."""
    if not isinstance(tree, dict):
        return flow_yaml(tree) + "\n"
    pad = " " * indent
    return "".join(f"{pad}{flow_yaml(k)}: {flow_yaml(v)}\n" for k, v in tree.items())


Shape = Callable[[st.SearchStrategy[object]], st.SearchStrategy[dict[object, object]]]


def yaml_texts(
    keys: Sequence[str], extra_scalars: Sequence[str] = (), shape: Shape | None = None
) -> st.SearchStrategy[str]:
    """Whole YAML files: one or more documents whose top mapping is drawn by `shape` (the
    skeleton a reader expects, with drawn trees where it looks) or from the reader's keys,
    sometimes followed by stray text (broken indentation, tabs, quotes), or any text."""
    tree = yaml_trees(keys, extra_scalars)
    top = st.dictionaries(st.sampled_from(tuple(keys)), tree, min_size=1, max_size=6)
    if shape is not None:
        top = st.one_of(shape(tree), top)
    documents = st.lists(top.map(block_yaml), min_size=1, max_size=3).map("---\n".join)
    return st.one_of(
        documents, documents, st.tuples(documents, st.text(max_size=30)).map("".join), st.text(max_size=80)
    )


def json_values(keys: Sequence[str], scalars_: Sequence[object] = ()) -> st.SearchStrategy[object]:
    """JSON values whose objects mostly use `keys`: what a hostile or sloppy document holds."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False),
        st.text(max_size=10),
        st.sampled_from(tuple(keys) + tuple(scalars_)) if keys or scalars_ else st.nothing(),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.one_of(st.sampled_from(tuple(keys)), st.text(max_size=6)), children, max_size=6),
        ),
        max_leaves=30,
    )


def json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


# -- tar entries -------------------------------------------------------------------------------
# Path components chosen to collide (so that later entries go through earlier ones), climb,
# and spell whiteouts; "@V" is replaced by the victim folder's absolute path.
COMPONENTS = ("a", "b", "c", "..", ".", "", "victim", "secret", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh...", "@V")
KINDS = ("file", "file", "dir", "dir", "symlink", "symlink", "hardlink", "fifo", "char")


def entry_names() -> st.SearchStrategy[str]:
    parts = st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=4).map("/".join)
    return st.one_of(parts, parts.map(lambda p: "/" + p))


def entries(victim: str) -> st.SearchStrategy[T]:
    """One tar entry that may reach for `victim` (an absolute host path)."""

    def make(kind: str, name: str, link: str, mode: int | None, data: bytes) -> T:
        name, link = name.replace("@V", victim), link.replace("@V", victim)
        return T(name, kind, data=data if kind == "file" else b"", link=link, mode=mode)

    modes = st.one_of(st.none(), st.sampled_from((0, 0o700, 0o755, 0o4755, 0o000, 0o1777)))
    return st.builds(make, st.sampled_from(KINDS), entry_names(), entry_names(), modes, st.binary(max_size=8))


def layers(victim: str) -> st.SearchStrategy[list[list[T]]]:
    return st.lists(st.lists(entries(victim), min_size=1, max_size=8), min_size=1, max_size=3)

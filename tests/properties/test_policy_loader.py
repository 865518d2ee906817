"""Property: any policy file loads (with what it extends) or raises PolicyError with at
least one problem located in a file, never another exception. Drawn files follow the
model's own shape (every dataclass field, nested settings, lists of identities, binds,
ignores) with hostile scalars at the leaves: YAML 1.1 octal and sexagesimal numbers,
impossible dates, explicit tags the text cannot hold, NUL bytes in paths, huge sizes."""

from __future__ import annotations

import dataclasses
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysbx.policies import model
from pysbx.policies.errors import PolicyError
from pysbx.policies.loader import LoadedPolicy, load_policy
from tests.properties.strategies import block_yaml, examples, scalars, yaml_texts

_LEAF_WORDS = ("strict", "baseline", "permissive", "default", "unconfined", "user", "network", "none", "host",
               "loopback", "ptrace", "read", "nosuchcall", "CAP_SYS_ADMIN", "high", "PA1001", "1777", "^x$", "(")  # fmt: skip


def model_trees(hint: Any) -> st.SearchStrategy[object]:
    """A YAML tree shaped like `hint` (a model type), with hostile scalars anywhere."""
    leaf = scalars(_LEAF_WORDS)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(model_trees(arg) for arg in args if arg is not type(None)), st.just("null"))
    if dataclasses.is_dataclass(hint):
        settings_ = fields_of(hint)  # type: ignore[arg-type]
        return st.one_of(settings_, settings_, settings_, leaf)
    if origin is tuple:
        return st.one_of(st.lists(model_trees(args[0]), max_size=3), leaf)
    if origin is dict:
        names = st.sampled_from(("PA1001", "PA2001", "x"))
        return st.one_of(st.dictionaries(names, model_trees(args[1]), max_size=2), leaf)
    return leaf


def fields_of(cls: type, **fixed: st.SearchStrategy[object]) -> st.SearchStrategy[dict[str, object]]:
    """A mapping of some of the dataclass's fields, each drawn for its type."""
    hints = typing.get_type_hints(cls)
    optional = {f.name: _deferred_tree(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries(fixed, optional={k: v for k, v in optional.items() if k not in fixed})


def _deferred_tree(hint: Any) -> st.SearchStrategy[object]:
    """model_trees(hint), built when first drawn (the model's types nest)."""
    return st.deferred(lambda: model_trees(hint))


VERSIONS = st.sampled_from(("1", "1", "1", "2", "'1'", "!!int 1"))
policy_texts = st.one_of(
    fields_of(model.Policy, version=VERSIONS).map(block_yaml),
    fields_of(model.Policy, version=VERSIONS, extends=st.sampled_from(("strict", "baseline", "permissive"))).map(
        block_yaml
    ),
    yaml_texts([f.name for f in dataclasses.fields(model.Policy)]),
)


def setting_paths(hint: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every setting below `hint`; "[]" marks a list item, "*" a map value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return setting_paths(next(arg for arg in args if arg is not type(None)), prefix)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        fields = dataclasses.fields(hint)
        return [path for f in fields for path in setting_paths(hints[f.name], (*prefix, f.name))] + [prefix]
    if origin is tuple and dataclasses.is_dataclass(args[0]):
        return setting_paths(args[0], (*prefix, "[]"))
    if origin is dict:
        return setting_paths(args[1], (*prefix, "*"))
    return [prefix]


def one_setting(path: tuple[str, ...], value: str) -> str:
    """A policy that sets only `path` (in flow style, so any scalar stays as written)."""
    tree: object = value
    for key in reversed(path):
        tree = [tree] if key == "[]" else {"PA1001" if key == "*" else key: tree}
    return "version: 1\n" + block_yaml(tree) if path else "version: 1\n"


single_settings = st.builds(one_setting, st.sampled_from(setting_paths(model.Policy)), scalars(_LEAF_WORDS))


def load_text(text: str) -> LoadedPolicy | PolicyError:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "policy.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            return load_policy(path)
        except PolicyError as error:
            assert error.problems, "a PolicyError without a located problem"
            return error


@settings(max_examples=examples(300), deadline=None)
@given(policy_texts)
def test_any_policy_file_loads_or_raises_policy_error(text: str) -> None:
    load_text(text)


@settings(max_examples=examples(300), deadline=None)
@given(single_settings)
def test_any_value_of_any_one_setting_loads_or_raises_policy_error(text: str) -> None:
    """Every setting of the model meets every kind of hostile scalar, one at a time."""
    load_text(text)


# Regressions: each of these once raised something other than PolicyError (ValueError,
# OverflowError, RecursionError), or (`!!bool x`, `!!timestamp x`) was silently misread.
ERROR_CASES = {
    "tagged-int": "version: !!int x\n",
    "tagged-bool": "version: 1\nsandbox: {privileged: !!bool x}\n",
    "tagged-timestamp": "version: 1\naudit: {ignore: [{rule: PA1001, reason: r, expires: !!timestamp x}]}\n",
    "impossible-date": "version: 1\naudit: {ignore: [{rule: PA1001, reason: r, expires: 2027-13-45}]}\n",
    "huge-float": "version: 1\nsandbox: {limits: {cpus: " + "9" * 400 + "}}\n",
    "nul-in-extends": 'version: 1\nextends: "a\\0b"\n',
    "nul-in-path": 'version: 1\nsigning: {keys: ["a\\0b"]}\n',
    "deep-nesting": "version: 1\nsandbox: " + "[" * 3000 + "]" * 3000 + "\n",
}


@pytest.mark.parametrize("text", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_a_value_the_model_cannot_hold_is_a_located_problem(text: str) -> None:
    outcome = load_text(text)
    assert isinstance(outcome, PolicyError), outcome


# YAML 1.1 numbers mean what PyYAML reads them as everywhere else.
VALUE_CASES = {
    "octal": ("version: 1\nsandbox: {limits: {pids: 010}}\n", 8),
    "sexagesimal": ("version: 1\nsandbox: {limits: {pids: 1:30}}\n", 90),
    "hex": ("version: 1\nsandbox: {limits: {pids: 0x1F}}\n", 31),
    "size-of-400-digits": ("version: 1\nsandbox: {limits: {pids: 1, memory: " + "9" * 400 + "Mi}}\n", 1),
}


@pytest.mark.parametrize(("text", "pids"), VALUE_CASES.values(), ids=VALUE_CASES.keys())
def test_yaml_numbers_load_as_yaml_reads_them(text: str, pids: int) -> None:
    outcome = load_text(text)
    assert isinstance(outcome, LoadedPolicy), outcome
    assert outcome.policy.sandbox.limits.pids == pids


def test_a_version_written_in_hex_is_version_one() -> None:
    outcome = load_text("version: 0x1\n")
    assert isinstance(outcome, LoadedPolicy) and outcome.policy.version == 1, outcome

"""The rule catalogue and the rules agree: every finding a rule module makes names a
catalogue entry, and every catalogue entry is made somewhere (its name stands as a string in
a module that makes findings: a rule that was deleted, or never written, fails here)."""

from __future__ import annotations

import ast
from pathlib import Path

from pysbx.audit.catalog import BY_NAME
from tests.conftest import ROOT


def _finding_modules() -> dict[Path, ast.Module]:
    """The modules of audit/ that call finding(...), parsed."""
    trees = {path: ast.parse(path.read_text()) for path in (ROOT / "audit").rglob("*.py")}
    return {
        path: tree
        for path, tree in trees.items()
        if any(isinstance(node, ast.Call) and getattr(node.func, "id", None) == "finding" for node in ast.walk(tree))
    }


def test_every_finding_names_a_catalogue_entry() -> None:
    named = {
        (str(path.relative_to(ROOT)), node.lineno, node.args[0].value)
        for path, tree in _finding_modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "finding" and node.args
        if isinstance(node.args[0], ast.Constant)
    }
    assert named, "no finding(...) calls found: the test no longer sees the rules"
    assert [entry for entry in named if entry[2] not in BY_NAME] == []


def test_every_catalogue_entry_is_made_by_a_rule() -> None:
    literals = {
        node.value
        for tree in _finding_modules().values()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert sorted(set(BY_NAME) - literals) == []

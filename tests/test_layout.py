"""The layering DESIGN.md draws, held: the library packages import no command-line code
(the front ends live in `cli/` alone), and the auditor imports nothing of the runtime.
Imports inside `if TYPE_CHECKING:` are for the type checker only and do not count."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIBRARIES = ("images", "policies", "signing", "sandbox", "audit")
FORBIDDEN = {package: {"cli"} for package in LIBRARIES} | {"audit": {"cli", "sandbox"}}


def runtime_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import that runs, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


@pytest.mark.parametrize("package", LIBRARIES)
def test_a_library_package_imports_no_code_above_it(package: str) -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in runtime_imports(path)
        if module.split(".")[0] in FORBIDDEN[package]
    ]
    assert offending == []


def test_the_front_ends_are_all_in_cli() -> None:
    """One module per command group in cli/, none left in the libraries (the names that
    were there before the split)."""
    leftovers = [
        name
        for package in LIBRARIES
        for name in ("cli.py", "clikit.py", "runcli.py", "entry.py", "runargs.py")
        if (ROOT / package / name).exists()
    ] + [str(path.relative_to(ROOT)) for package in LIBRARIES for path in (ROOT / package).glob("*_cmd.py")]
    assert leftovers == []

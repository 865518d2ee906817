"""The layering DESIGN.md draws, held: the library packages import no command-line code
(the front ends live in `cli/` alone), and the auditor imports nothing of the runtime.
Imports inside `if TYPE_CHECKING:` are for the type checker only and do not count.
Every import of our packages goes through the `pysbx` namespace, the only name installed."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIBRARIES = ("images", "policies", "signing", "sandbox", "audit")
PACKAGES = (*LIBRARIES, "cli")
NAMESPACE = "pysbx"
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


def package_of(module: str) -> str:
    """Which of our packages `pysbx.<package>.…` belongs to ("" for anything else)."""
    parts = module.split(".")
    return parts[1] if parts[0] == NAMESPACE and len(parts) > 1 else ""


@pytest.mark.parametrize("package", LIBRARIES)
def test_a_library_package_imports_no_code_above_it(package: str) -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in runtime_imports(path)
        if package_of(module) in FORBIDDEN[package]
    ]
    assert offending == []


def python_files() -> Iterator[Path]:
    """Our Python: not what benchmarks leave in bench/work (git ignores it; podman's storage
    there holds whole images)."""
    for folder in (*PACKAGES, "tests", "bench"):
        yield from sorted(
            path for path in (ROOT / folder).rglob("*.py") if (ROOT / "bench" / "work") not in path.parents
        )
    yield ROOT / "bin" / "pysandbox"


def test_our_packages_are_imported_through_the_namespace_only() -> None:
    """`import sandbox` works in a source checkout (its root is on sys.path) and nowhere else:
    an installed wheel has pysbx alone."""
    bare = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in python_files()
        for line, module in runtime_imports(path)
        if module.split(".")[0] in PACKAGES
    ]
    assert bare == []


def test_the_tools_work_beside_other_modules_named_like_our_folders(tmp_path: Path) -> None:
    """Debian's python3-audit puts an `audit` module on the interpreter's path, PyPI's old
    pysandbox a `sandbox` package: first on the path, they change nothing for our tools."""
    for name in PACKAGES:
        (tmp_path / f"{name}.py").write_text("raise ImportError('the wrong package was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:12\n")
    bin_dir = Path(sys.executable).parent
    for command in ([bin_dir / "pyaudit", "--format", "json", str(dockerfile)], [bin_dir / "pysandbox", "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert result.returncode in (0, 1) and "wrong package" not in result.stderr, result.stderr


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

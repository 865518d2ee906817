"""The version, typer-free and without importlib.metadata (12 ms at every start of a report
that names its tool). pyproject.toml holds the same string; a test keeps the two equal."""

from __future__ import annotations

DISTRIBUTION = "pysandbox-pyaudit"  # pyproject.toml's name ("pysandbox" on the index is another project)
VERSION = "0.1.0"


def package_version() -> str:
    return VERSION

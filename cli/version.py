"""The installed distribution's version, typer-free: read (importlib.metadata, 10 ms) only
by what prints it."""

from __future__ import annotations

DISTRIBUTION = "pysandbox-pyaudit"  # pyproject.toml's name ("pysandbox" on the index is another project)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"

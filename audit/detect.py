"""What an input is, by content (names only narrow a directory walk): an image archive or
layout, a Dockerfile, or YAML/JSON holding Compose, Kubernetes, docker inspect or an OCI
runtime config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

_SKIP_DIRS = {".git", "node_modules", ".venv", "__pycache__", ".tox", "vendor"}
_YAML_SUFFIXES = (".yaml", ".yml", ".json")


class AuditInputError(Exception):
    """An input that is missing, unreadable or not something pyaudit reads (exit 2)."""


def is_image_path(path: Path) -> bool:
    if path.is_dir():
        return (path / "index.json").is_file() or (path / "oci-layout").is_file()
    try:
        with open(path, "rb") as stream:
            header = stream.read(512)
    except OSError:
        return False
    return len(header) == 512 and header[257:262] == b"ustar"


def is_dockerfile_name(name: str) -> bool:
    lower = name.lower()
    return (
        lower in ("dockerfile", "containerfile")
        or lower.startswith(("dockerfile.", "containerfile."))
        or lower.endswith(".dockerfile")
    )


def expand_targets(targets: list[str]) -> Iterator[tuple[str, bool]]:
    """(path, explicit) for each input; a directory yields the files in it that pyaudit
    may read (Dockerfiles, YAML and JSON, image archives and layouts)."""
    for target in targets:
        path = Path(target)
        if not path.exists():
            raise AuditInputError(f"{target}: no such file or directory")
        if path.is_dir() and not is_image_path(path):
            yield from _walk(path)
        else:
            yield target, True


def _walk(root: Path) -> Iterator[tuple[str, bool]]:
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not is_image_path(Path(directory) / d))
        for d in list(os.listdir(directory)):
            if d in _SKIP_DIRS:
                continue
            full = Path(directory) / d
            if full.is_dir() and is_image_path(full):
                yield str(full), False
        for name in sorted(files):
            if is_dockerfile_name(name) or name.endswith(_YAML_SUFFIXES) or name.endswith((".tar", ".oci")):
                yield str(Path(directory) / name), False

"""Parsing of run flags shared by the cold and the warm path, with no heavy imports."""

from __future__ import annotations

from pysbx.sandbox import mounts
from pysbx.sandbox.errors import SandboxError

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_docker_size(text: str) -> int | None:
    """Docker's sizes for --tmpfs: 64m, 1g, 4096 (binary units)."""
    number, unit = text.rstrip("bBkKmMgG"), text[len(text.rstrip("bBkKmMgG")) :].lower().rstrip("b")
    return int(float(number) * _UNITS[unit]) if number.replace(".", "", 1).isdigit() and unit in _UNITS else None


def tmpfs_flag(text: str) -> mounts.TmpfsMount:
    destination, _, options = text.partition(":")
    size = None
    mode = "1777"
    for option in options.split(","):
        key, _, value = option.partition("=")
        if key == "size":
            size = parse_docker_size(value)
            if size is None or size <= 0:
                raise SandboxError(f"--tmpfs {text}: expected a size such as 64m")
        elif key == "mode":
            if not (value and len(value) <= 4 and all(char in "01234567" for char in value)):
                raise SandboxError(f"--tmpfs {text}: expected an octal mode such as 1777")
            mode = value
    if not destination.startswith("/"):
        raise SandboxError(f"--tmpfs {text}: expected an absolute path inside the container")
    return mounts.TmpfsMount(destination, size, mode)

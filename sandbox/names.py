"""Names users give (container names, volume names) become folder names on the host: one
rule for all of them, Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters, so no
name can hold a `/`, start with `.` or `-`, or be empty. Standard library only (no re): the
warm start of `pysandbox run` checks --name."""

from __future__ import annotations

from pysbx.sandbox.errors import SandboxError

_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_REST = _FIRST | frozenset("_.-")
MAX_LENGTH = 128


class InvalidName(SandboxError):
    """A name that cannot be used as given."""


def is_valid_name(name: str) -> bool:
    return 0 < len(name) <= MAX_LENGTH and name[0] in _FIRST and all(char in _REST for char in name)


def check_name(kind: str, name: str) -> str:
    """`name`, or a ValueError saying what a `kind` name may hold."""
    if not is_valid_name(name):
        raise InvalidName(
            f"{kind} name {name!r}: expected [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most {MAX_LENGTH} characters)"
        )
    return name

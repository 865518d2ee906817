"""The severities of findings, most severe first: the audit reads them on its lean start-up
(a process per Dockerfile), which the policy model's import (17 dataclasses, 15 ms) would
double; policies.model takes them from here."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without typing's import (2 ms of pyaudit's start)
if TYPE_CHECKING:
    from typing import Literal

    Severity = Literal["critical", "high", "medium", "low", "info"]

SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
DEFAULT_FAIL_ON: Severity = "medium"  # audit.fail_on where no policy says otherwise


def __getattr__(name: str) -> object:
    """`Severity` at run time, made on first use: the policy model's type hints (which the
    loader reads) need it, pyaudit's start for one Dockerfile does not."""
    if name == "Severity":
        from typing import Literal

        return Literal[SEVERITIES]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

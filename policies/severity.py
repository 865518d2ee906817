"""The severities of findings, most severe first: the audit reads them on its lean start-up
(a process per Dockerfile), which the policy model's import (17 dataclasses, 15 ms) would
double; policies.model takes them from here."""

from __future__ import annotations

from typing import Literal

Severity = Literal["critical", "high", "medium", "low", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
DEFAULT_FAIL_ON: Severity = "medium"  # audit.fail_on where no policy says otherwise

"""The runtime's one error type. Every refusal or failure that `pysandbox run` and the other
runtime commands report is a SandboxError (or one of its kinds below, for callers that
tell them apart), whose message is one sentence a person can act on; the command prints it
as one line and exits 125, Docker's code for "the sandbox could not do it". Standard library
only: the warm start imports it."""

from __future__ import annotations

import os

EXIT_SETUP_FAILED = 125  # Docker's convention: the sandbox itself could not do it (defined once)


def exit_status(wait_status: int) -> int:
    """A waitpid status as Docker reports it: the exit code, or 128+N when killed by signal N."""
    return os.waitstatus_to_exitcode(wait_status) if os.WIFEXITED(wait_status) else 128 + os.WTERMSIG(wait_status)


class SandboxError(Exception):
    """A refusal or failure of the runtime, with a message ready to show."""


class Refused(SandboxError):
    """A flag the policy forbids, or a setting that cannot be honoured (exit 125)."""

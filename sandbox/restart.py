"""`--restart`: when the monitor starts a detached container's command again, as Docker's
restart policies say: `no`, `on-failure[:N]` (a non-zero exit, at most N restarts),
`always`, `unless-stopped`. A `stop` (or `kill`, `rm -f`) is never undone by a restart.
Between restarts the monitor waits Docker's back-off: 100 ms, doubled at each restart up to
a minute, back to 100 ms once a run has lasted 10 seconds. The container keeps its writable
layer and the verdict it started with."""

from __future__ import annotations

from pysbx.policies.record import Record
from pysbx.sandbox.errors import SandboxError

FIRST_DELAY, MAX_DELAY, STEADY_SECONDS = 0.1, 60.0, 10.0
POLICIES = ("no", "on-failure", "always", "unless-stopped")


class RestartPolicy(Record):
    __slots__ = ("max_retries", "name")

    def __init__(self, name: str, max_retries: int | None = None) -> None:
        self.name = name
        self.max_retries = max_retries  # on-failure:N; None is no bound

    def wants(self, status: int, restarts: int, stopped: bool) -> bool:
        """Whether a run that ended with `status`, after `restarts` restarts, goes again."""
        if stopped or self.name == "no":
            return False
        if self.name == "on-failure":
            return status != 0 and (self.max_retries is None or restarts < self.max_retries)
        return True


def parse_restart(text: str) -> RestartPolicy:
    name, colon, count = text.partition(":")
    if name not in POLICIES or (colon and (name != "on-failure" or not count.isdigit())):
        raise SandboxError(f"--restart {text}: expected no, on-failure[:N], always or unless-stopped")
    return RestartPolicy(name, int(count) if count else None)


class Backoff:
    """Docker's delays between restarts."""

    def __init__(self) -> None:
        self.delay = FIRST_DELAY

    def next(self, ran_seconds: float) -> float:
        """The wait before the next start, after a run that lasted `ran_seconds`."""
        if ran_seconds >= STEADY_SECONDS:
            self.delay = FIRST_DELAY
        delay = self.delay
        self.delay = min(self.delay * 2, MAX_DELAY)
        return delay

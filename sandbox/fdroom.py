"""Descriptors refused by the open-files limit (RLIMIT_NOFILE: EMFILE), heard by `run
--explain`: an rlimit leaves no count of its refusals, so the calls that make a descriptor
are notified (where the filter allows them whatever their arguments) and the monitor, before
answering "continue" as the filter would, tells whether the caller has a free descriptor
below its limit. Cheap until near it: /proc/PID/status's FDSize (the size of the caller's
descriptor table) below the limit means a free one; only at the limit are the open
descriptors counted (/proc/PID/fd)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# The calls that take the lowest free descriptor before anything else can fail them (dup
# checks its descriptor first, socket its family, pidfd_open its pid...: left out, a
# prediction of EMFILE could be wrong for them)
FD_CALLS = (
    "open", "openat", "openat2", "creat", "accept", "accept4", "pipe", "pipe2", "epoll_create",
    "epoll_create1", "eventfd", "eventfd2", "inotify_init", "inotify_init1", "timerfd_create",
)  # fmt: skip
MOST_COUNTED = 1 << 16  # a limit above this: the table is not counted at each call (said nothing)


def notified_fd_calls(
    number_of: Callable[[str], int | None], allows_always: Callable[[int], bool]
) -> tuple[frozenset[int], list[tuple[int, int, int, int]]]:
    """The calls to hear by this machine's numbers, and their prologue tests (every call)."""
    numbers = frozenset(
        number for name in FD_CALLS if (number := number_of(name)) is not None and allows_always(number)
    )
    return numbers, [(number, 0, 0, 0) for number in sorted(numbers)]


def out_of_descriptors(pid: int) -> bool:
    """Whether process `pid` has no free descriptor below its RLIMIT_NOFILE soft limit."""
    limit = _soft_limit(pid)
    if limit is None or limit > MOST_COUNTED:
        return False
    with open(f"/proc/{pid}/status", "rb") as status:
        size = next((int(line.split()[1]) for line in status if line.startswith(b"FDSize:")), 0)
    if size < limit:
        return False  # the table can still grow: there is room
    below = 0
    with os.scandir(f"/proc/{pid}/fd") as entries:  # streamed: no list of them all
        for entry in entries:
            if entry.name.isdigit() and int(entry.name) < limit:
                below += 1
                if below >= limit:
                    return True
    return False


def _soft_limit(pid: int) -> int | None:
    with open(f"/proc/{pid}/limits", "rb") as limits:
        for line in limits:
            if line.startswith(b"Max open files"):
                soft = line.split()[3]
                return int(soft) if soft.isdigit() else None
    return None

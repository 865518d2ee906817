"""What /proc says of a process, read one way for all: its stat fields (after the command
name, which may hold spaces and parentheses), its parent, session and start time, and the
processes below it. Plain os calls only: a warm `run` and `exec` import it."""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 (the state) on; [] when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return []


def parent(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if len(fields) > 1 else None


def session(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[3]) if len(fields) > 3 else None


def start_time(pid: int) -> str | None:
    """Field 22 (clock ticks since boot); None when the process is gone, or has exited and
    waits to be reaped (a zombie: found by review, a killed monitor its parent had not
    reaped yet counted as running, and `wait` waited for it)."""
    fields = stat_fields(pid)
    return None if len(fields) < 20 or fields[0] in ("Z", "X") else fields[19]


def children(pid: int, task: int | None = None) -> list[int]:
    """The children of thread `task` of `pid` (its main thread by default)."""
    try:
        with open(f"/proc/{pid}/task/{task or pid}/children") as listed:
            return [int(item) for item in listed.read().split()]
    except (OSError, ValueError):
        return []


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children of children, of every thread)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            below = children(current, int(task))
            found += below
            pending += below
    return found


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]

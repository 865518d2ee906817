"""Interleaved A/B timing of two commands, for judging a change worth a millisecond or two
on this noisy machine: hyperfine times one command's runs in a block, so drift between the
blocks (CPU frequency, neighbours) reads as a difference; here runs alternate A B B A ...,
and the paired difference is reported.

    .venv/bin/python bench/ab.py N COMMAND_A... -- COMMAND_B...

Each command is executed directly (no shell), stderr discarded, stdout kept. Prints the
medians and quartiles of each, and of B minus A over the pairs."""

from __future__ import annotations

import os
import statistics
import sys
import time


def once(argv: list[str], devnull: int) -> float:
    """Milliseconds from spawn to exit."""
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 2)])
    os.waitpid(pid, 0)
    return (time.perf_counter() - started) * 1000


def quartiles(values: list[float]) -> str:
    ordered = sorted(values)
    low, high = ordered[len(ordered) // 4], ordered[3 * len(ordered) // 4]
    return f"median {statistics.median(ordered):+.2f}  p25 {low:+.2f}  p75 {high:+.2f}"


def main(args: list[str]) -> int:
    if len(args) < 4 or "--" not in args or not args[0].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    pairs, rest = int(args[0]), args[1:]
    split = rest.index("--")
    commands = (rest[:split], rest[split + 1 :])
    devnull = os.open(os.devnull, os.O_WRONLY)
    for command in commands:  # warm caches
        once(command, devnull)
        once(command, devnull)
    times: tuple[list[float], list[float]] = ([], [])
    for pair in range(pairs):
        for which in (0, 1) if pair % 2 == 0 else (1, 0):
            times[which].append(once(commands[which], devnull))
    for name, values in zip("AB", times, strict=True):
        print(f"{name}: {quartiles(values)} ms")
    print(f"B-A paired: {quartiles([b - a for a, b in zip(*times, strict=True)])} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

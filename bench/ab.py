"""Interleaved A/B timing of two commands, for judging a change worth a millisecond or two
on this noisy machine: hyperfine times one command's runs in a block, so drift between the
blocks (CPU frequency, neighbours) reads as a difference; here runs alternate A B B A ...,
and the paired difference is reported.

    .venv/bin/python bench/ab.py N COMMAND_A... -- COMMAND_B... [-- COMMAND_C... ...]

Each command is executed directly (no shell), stderr discarded, stdout kept. Prints the
medians and quartiles of each, and of B minus A over the pairs. More than two commands
(a peer such as runc beside A and B) run in rounds, each round in an order that turns
(A B C, C B A, B C A, ...), and each is paired with A. Beside the wall time, the CPU time
of the command's whole process tree (user + system, from wait4): neighbours on a busy
machine stretch the wall time of a run but add little to its CPU time."""

from __future__ import annotations

import os
import statistics
import sys
import time


def once(argv: list[str], devnull: int) -> tuple[float, float]:
    """Milliseconds from spawn to exit, and the CPU milliseconds the tree used."""
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 2)])
    _, _, usage = os.wait4(pid, 0)
    return (time.perf_counter() - started) * 1000, (usage.ru_utime + usage.ru_stime) * 1000


def quartiles(values: list[float]) -> str:
    ordered = sorted(values)
    low, high = ordered[len(ordered) // 4], ordered[3 * len(ordered) // 4]
    return f"median {statistics.median(ordered):+.2f}  p25 {low:+.2f}  p75 {high:+.2f}"


def orders(count: int, rounds: int) -> list[list[int]]:
    """The order of each round: A B B A ... for two, turning and reversing for more."""
    if count == 2:
        return [[0, 1] if number % 2 == 0 else [1, 0] for number in range(rounds)]
    turned = [[(start + k) % count for k in range(count)] for start in range(count)]
    return [turned[number % count][:: 1 if number // count % 2 == 0 else -1] for number in range(rounds)]


def main(args: list[str]) -> int:
    if len(args) < 4 or "--" not in args or not args[0].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    pairs, rest = int(args[0]), args[1:]
    commands: list[list[str]] = [[]]
    for word in rest:
        if word == "--":
            commands.append([])
        else:
            commands[-1].append(word)
    devnull = os.open(os.devnull, os.O_WRONLY)
    for command in commands:  # warm caches
        once(command, devnull)
        once(command, devnull)
    wall: list[list[float]] = [[] for _ in commands]
    cpu: list[list[float]] = [[] for _ in commands]
    for order in orders(len(commands), pairs):
        for which in order:
            spent, used = once(commands[which], devnull)
            wall[which].append(spent)
            cpu[which].append(used)
    names = "ABCDEFGH"
    for name, values, used in zip(names, wall, cpu, strict=False):
        print(f"{name}: {quartiles(values)} ms   cpu {quartiles(used)} ms")
    for number in range(1, len(commands)):
        name = names[number]
        print(f"{name}-A paired: {quartiles([b - a for a, b in zip(wall[0], wall[number], strict=True)])} ms", end="")
        print(f"   cpu {quartiles([b - a for a, b in zip(cpu[0], cpu[number], strict=True)])} ms")
        ratios = [b / a for a, b in zip(wall[0], wall[number], strict=True)]
        print(f"{name}/A paired ratio: median {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

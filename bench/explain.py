"""Benchmark: what `run --explain` costs a program, against the same run without it, in one
run on this machine, interleaved (A B B A ...) as bench/ab.py does.

    .venv/bin/python bench/explain.py [--pairs N] [--calls N] [--no-append]

Programs (tests/sandbox/denials.c, static, in a busybox image), under strict:
  allowed   N getpid calls, which the filter allows: the notifying filter takes the same path,
            so the cost should be nothing
  denied    N/10 mount calls, which strict denies: each waits for the monitor's answer
  none      no call: what --explain costs any run (the listener's handover, the report)
  written   N/10 opens for writing of a file on the container's tmpfs, which the filter allows:
            each waits while the monitor tells whether a read-only mount refuses it
            (sandbox.pathwrites); none does
Each row: median wall time of the whole `pysandbox run` without and with --explain, and the
difference per call beyond that fixed cost. Needs cc and busybox-static. Everything lives in bench/work/explain/."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work" / "explain"
PYSANDBOX = str(Path(sys.executable).parent / "pysandbox")
sys.path.insert(0, str(ROOT))

from bench.benchlib import append_results, machine_lock, table  # noqa: E402


def build(work: Path) -> tuple[Path, Path]:
    """The image (busybox plus /denials) and a strict policy that needs no signature."""
    from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rootfs = work / "rootfs"
    subprocess.run([str(ROOT / "examples/busybox/make-rootfs.sh"), str(rootfs)], check=True, capture_output=True)
    source = ROOT / "tests/sandbox/denials.c"
    subprocess.run(["cc", "-static", "-O2", "-pthread", "-o", str(rootfs / "denials"), str(source)], check=True)
    image = work / "denials.tar"
    layers = [NewLayer(tar_from_directory(rootfs), "gzip", "COPY rootfs /")]
    write_docker_archive(image, NewImage(layers, {"User": "1000:1000", "Env": ["PATH=/bin"]}), ["bench/denials:1"])
    policy = work / "strict-unsigned.yaml"
    policy.write_text((ROOT / "policies/strict.yaml").read_text().replace("  required: true", "  required: false"))
    return image, policy


def once(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def compare(plain: list[str], explained: list[str], pairs: int) -> tuple[float, float]:
    """Median seconds of each, alternating which goes first."""
    for argv in (plain, explained):  # warm the plan and the layer cache
        once(argv)
    times: tuple[list[float], list[float]] = ([], [])
    for pair in range(pairs):
        for which in (0, 1) if pair % 2 == 0 else (1, 0):
            times[which].append(once((plain, explained)[which]))
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--no-append", action="store_true", help="print only; leave bench/RESULTS.md alone")
    options = parser.parse_args()
    if shutil.which("cc") is None:
        print("bench/explain.py needs cc", file=sys.stderr)
        return 2
    from pysbx.policies.seccomp import syscall_number

    image, policy = build(WORK)
    base = [PYSANDBOX, "run", "--rm", "--policy", str(policy)]
    rows, argv_lines = [], []
    fixed = 0.0  # what --explain costs a run that makes no call: the listener, the report
    with machine_lock():
        for label, name, calls in (
            ("none", "getpid", 0),
            ("allowed", "getpid", options.calls),
            ("denied", "mount", options.calls // 10),
            ("written", "open", options.calls // 10),
        ):
            if name == "open":
                program = [str(image), "/denials", "writes", "/tmp/written", str(calls)]
            else:
                program = [str(image), "/denials", "storm", str(syscall_number(name)), str(calls), "1"]
            plain, explained = [*base, *program], [*base, "--explain", *program]
            argv_lines += [shlex.join(plain), shlex.join(explained)]
            without, with_it = compare(plain, explained, options.pairs)
            if not calls:
                fixed = with_it - without
                per_call = "(fixed cost)"
            else:
                per_call = f"{(with_it - without - fixed) / calls * 1e6:+.2f} us"
            rows.append(
                [f"{label} ({calls:,} {name})", f"{without * 1000:.0f} ms", f"{with_it * 1000:.0f} ms", per_call]
            )
    who = "root" if os.geteuid() == 0 else "an ordinary user"
    body = "\n".join(
        [
            f"`--pairs {options.pairs} --calls {options.calls}` as {who}, load {os.getloadavg()[0]:.2f}:",
            "the whole warm `pysandbox run --rm --policy strict`, medians of interleaved pairs.",
            "",
            table(["program", "without --explain", "with --explain", "per call"], rows),
        ]
    )
    print(body)
    if not options.no_append:
        append_results("run --explain overhead", body, argv_lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

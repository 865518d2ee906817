"""Run fuzz targets one after another, each for a fixed time, niced, with one log per run.

    nohup .venv/bin/python tests/fuzz/run.py --seconds 600 dockerfile compose ... &

Every run takes an exclusive lock on bench/work/fuzz/run.lock first, so queued runs (from
this script or another invocation of it) never overlap: the machine is shared. Logs go to
bench/work/fuzz/logs/<target>-<time>.log, new inputs to corpus/<target>/, crashes to
crashes/<target>/."""

from __future__ import annotations

import argparse
import datetime
import fcntl
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / "bench" / "work" / "fuzz"
TARGETS = ("image_archive", "extract", "dockerfile", "compose", "kubernetes", "policy", "seccomp")


def command(target: str, seconds: int) -> list[str]:
    """The exact libFuzzer command line for one run (recorded in the log and RESULTS.md)."""
    argv = [
        "nice", "-n", "10", str(REPO / ".venv/bin/python"), f"tests/fuzz/fuzz_{target}.py",
        f"bench/work/fuzz/corpus/{target}", f"bench/work/fuzz/seeds/{target}",
        f"-max_total_time={seconds}", "-print_final_stats=1", "-timeout=30", "-rss_limit_mb=3072",
        "-max_len=65536", f"-artifact_prefix=bench/work/fuzz/crashes/{target}/",
    ]  # fmt: skip
    dictionary = WORK / "dicts" / f"{target}.dict"
    return [*argv, f"-dict={dictionary.relative_to(REPO)}"] if dictionary.exists() else argv


def run_one(target: str, seconds: int) -> int:
    for folder in ("corpus", "crashes", "logs"):
        (WORK / folder / (target if folder != "logs" else "")).mkdir(parents=True, exist_ok=True)
    argv = command(target, seconds)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log = WORK / "logs" / f"{target}-{stamp}.log"
    with open(log, "w") as out:
        out.write(f"# {shlex.join(argv)}\n# started {datetime.datetime.now().isoformat(timespec='seconds')}\n")
        out.flush()
        start = time.monotonic()
        status = subprocess.run(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
        out.write(f"\n# exit {status} after {time.monotonic() - start:.0f} s\n")
    print(f"{target}: exit {status}, log {log}", flush=True)
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--seconds", type=int, default=600)
    args = parser.parse_args()
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    WORK.mkdir(parents=True, exist_ok=True)
    failed = 0
    for target in args.targets or TARGETS:
        with open(WORK / "run.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            failed += run_one(target, args.seconds) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())

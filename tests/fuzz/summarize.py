"""Summarise fuzz runs from their logs (bench/work/fuzz/logs/) as the markdown table that
tests/fuzz/RESULTS.md records: per run the target, start, time, executions, executions
per second, final coverage (cov = covered edges, ft = features), corpus (units/bytes) and
how the run ended, including the crash file libFuzzer wrote.

    .venv/bin/python tests/fuzz/summarize.py [LOG...]
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

LOGS = Path(__file__).resolve().parents[2] / "bench" / "work" / "fuzz" / "logs"
_PROGRESS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)")


@dataclass
class Run:
    target: str
    started: str = "?"
    seconds: str = "?"
    executions: str = "?"
    per_second: str = "?"
    coverage: str = "?"
    corpus: str = "?"
    ending: str = "still running"
    crash: str = ""


def read_run(log: Path) -> Run:
    run = Run(log.name.rsplit("-", 2)[0])
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("# started "):
            run.started = line.removeprefix("# started ").replace("T", " ")
        elif progress := _PROGRESS.match(line):
            run.executions = progress[1]
            run.coverage = f"{progress[2]} / {progress[3]}"
            run.corpus = f"{progress[4]} / {progress[5]}"
        elif line.startswith("stat::number_of_executed_units:"):
            run.executions = line.split()[-1]
        elif line.startswith("stat::average_exec_per_sec:"):
            run.per_second = line.split()[-1]
        elif match := re.match(r"# exit (-?\d+) after (\d+) s", line):
            run.seconds = match[2]
            run.ending = "no crash" if match[1] == "0" else f"exit {match[1]}"
        elif "Test unit written to" in line:
            run.crash = Path(line.split()[-1]).name
    if run.crash:
        run.ending += f", {run.crash}"
    return run


def table(runs: list[Run]) -> str:
    rows = ["| target | started (UTC) | seconds | executions | exec/s | cov / ft | corpus (units / bytes) | ending |",
            "| --- | --- | ---: | ---: | ---: | --- | --- | --- |"]  # fmt: skip
    rows += [
        f"| {r.target} | {r.started} | {r.seconds} | {r.executions} | {r.per_second} | {r.coverage} | {r.corpus} "
        f"| {r.ending} |"
        for r in runs
    ]
    return "\n".join(rows)


def main() -> None:
    logs = [Path(arg) for arg in sys.argv[1:]] or sorted(LOGS.glob("*.log"), key=lambda p: p.stat().st_mtime)
    print(table([read_run(log) for log in logs]))


if __name__ == "__main__":
    main()

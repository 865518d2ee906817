"""cli.pyaudit_entry: the common `pyaudit TARGET...` is read without typer and audited by
cli.audit_run, and gives exactly what the typer command gives (output, errors, exit code);
any other form goes to typer. Its start-up imports no CLI framework, no YAML library, no
policy model and no package metadata: -X importtime holds that, and a budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pysbx.cli.pyaudit_entry import lean_request

PYAUDIT = str(Path(sys.executable).parent / "pyaudit")
TYPER = [sys.executable, "-c", "import sys; from pysbx.cli.pyaudit_app import main; sys.argv[0] = 'pyaudit'; main()"]
HEAVY = ("typer", "click", "pydantic", "yaml", "importlib.metadata", "pysbx.policies.model", "dataclasses_json")
DOCKERFILE = "FROM debian:12\nRUN apt-get update && apt-get install -y curl\nUSER root\n"
COMPOSE = "services:\n  web:\n    image: nginx\n    privileged: true\n"


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "notes.txt").write_text("nothing to audit\n")
    return tmp_path


def both(argv: list[str], folder: Path) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    lean = subprocess.run([PYAUDIT, *argv], capture_output=True, text=True, cwd=folder, timeout=60)
    typer = subprocess.run([*TYPER, *argv], capture_output=True, text=True, cwd=folder, timeout=60)
    return lean, typer


@pytest.mark.parametrize(
    "argv",
    [
        ["Dockerfile"],
        ["--format", "json", "Dockerfile", "compose.yaml"],
        ["--format=sarif", "--fail-on=LOW", "Dockerfile"],
        ["--fail-on", "never", "-v", "."],
        ["--only", "PA1021,root-user", "--skip", "secrets", "Dockerfile"],
        ["--policy", "strict", "--format", "junit", "compose.yaml"],
        ["--skip-non-inputs", "notes.txt", "Dockerfile"],
        ["notes.txt"],
        ["missing-file"],
        ["--only", "no-such-rule", "Dockerfile"],
        ["--policy", "no-such-policy", "Dockerfile"],
        ["--write-baseline", "base.json", "Dockerfile"],
    ],
)
def test_the_lean_path_answers_as_the_typer_command(argv: list[str], inputs: Path) -> None:
    assert lean_request(argv) is not None  # these are the lean path's to read
    lean, typer = both(argv, inputs)
    assert (lean.returncode, lean.stdout, lean.stderr) == (typer.returncode, typer.stdout, typer.stderr)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["--version"],
        ["rules"],
        ["rules", "root-user"],
        ["--format", "yaml", "Dockerfile"],
        ["--fail-on", "bogus", "Dockerfile"],
        ["--unknown", "Dockerfile"],
        ["--", "Dockerfile"],
        ["--format"],
    ],
)
def test_any_other_form_goes_to_typer(argv: list[str], inputs: Path) -> None:
    assert lean_request(argv) is None
    lean, typer = both(argv, inputs)
    assert (lean.returncode, lean.stdout, lean.stderr) == (typer.returncode, typer.stdout, typer.stderr)


def test_the_output_file_and_the_report_are_the_same_either_way(inputs: Path) -> None:
    lean, typer = both(["--format", "json", "--output", "lean.json", "Dockerfile"], inputs)
    assert lean.returncode == typer.returncode == 1 and lean.stdout == ""
    report = json.loads((inputs / "lean.json").read_text())
    assert report["tool"]["name"] == "pyaudit" and report["tool"]["version"] not in ("", "unknown")


def test_one_dockerfile_starts_without_a_framework_within_its_budget(inputs: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", PYAUDIT, "Dockerfile"], capture_output=True, text=True, cwd=inputs
    )
    assert done.returncode == 1, done.stderr  # the findings fail the gate, as they should
    imported = {}
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[1].strip().isdigit():
            imported[fields[2].strip()] = int(fields[1])
    assert imported, done.stderr
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY or name in HEAVY)
    assert not heavy, heavy
    top_level = sum(value for line, value in _top_level(done.stderr))
    assert top_level < 80_000, f"{top_level / 1000:.1f} ms of imports (typer alone took 90)"


def _top_level(stderr: str) -> list[tuple[str, int]]:
    rows = []
    for line in stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[1].strip().isdigit():
            name = fields[2].removeprefix(" ")
            if not name.startswith(" "):
                rows.append((name, int(fields[1])))
    return rows

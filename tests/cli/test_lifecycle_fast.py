"""cli.lifecycle_cmd: the plain forms of `ps`, `stop` and `exec` skip typer (a tenth of the
time), and give what the typer commands give; any other form is declined, for typer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pysbx.cli.lifecycle_cmd import fast

PYSANDBOX = str(Path(sys.executable).parent / "pysandbox")
TYPER = [
    sys.executable,
    "-c",
    "import sys; from pysbx.cli.pysandbox_app import main; sys.argv[0] = 'pysandbox'; main()",
]


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("ps", ["--format=json"]),
        ("ps", ["-f", "-x"]),
        ("ps", ["--format"]),
        ("ps", ["--help"]),
        ("stop", []),
        ("stop", ["-t"]),
        ("stop", ["--help"]),
        ("stop", ["-t", "x", "web"]),
        ("exec", ["web"]),
        ("exec", ["-u", "0", "web", "id"]),
        ("exec", ["--env=A=1", "web", "id"]),
        ("exec", ["-e", "-x", "web", "id"]),
        ("exec", ["--help"]),
        ("logs", ["web"]),
    ],
)
def test_forms_it_does_not_know_for_sure_are_left_to_typer(command: str, argv: list[str]) -> None:
    assert fast(command, argv) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["ps"],
        ["ps", "-a"],
        ["ps", "-aq"],
        ["ps", "-a", "--format", "json"],
        ["ps", "--format", "{{.Names}}", "-f", "status=exited", "--filter", "name=x"],
        ["ps", "--format", "{{.Nope}}"],
        ["ps", "-f", "colour=red"],
        ["stop", "no-such-container"],
        ["exec", "-i", "no-such", "true"],
    ],
)
def test_a_form_it_knows_gives_what_the_typer_command_gives(argv: list[str]) -> None:
    ours = subprocess.run([PYSANDBOX, *argv], capture_output=True, text=True, cwd="/")
    theirs = subprocess.run([*TYPER, *argv], capture_output=True, text=True, cwd="/")
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`pysandbox ps | head -1`: the pipe closes before pysandbox writes (found by review)."""
    reader_gone = subprocess.run(
        ["sh", "-c", f"exec 3>&1; ( sleep 0.3; {PYSANDBOX} ps -a; echo $? >&3 ) | true"],
        capture_output=True, text=True, cwd="/", timeout=30,
    )  # fmt: skip
    assert "Traceback" not in reader_gone.stderr and reader_gone.stdout.strip() in ("0", "141"), reader_gone

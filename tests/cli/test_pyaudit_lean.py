"""cli.pyaudit_entry: the common `pyaudit TARGET...` is read without typer and audited by
cli.audit_run, and gives exactly what the typer command gives (output, errors, exit code);
any other form goes to typer. Its start-up imports no CLI framework, no YAML library, no
policy model and no package metadata: -X importtime holds that, and a budget."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pysbx.cli.pyaudit_entry import lean_request

PYAUDIT = str(Path(sys.executable).parent / "pyaudit")
TYPER = [sys.executable, "-c", "import sys; from pysbx.cli.pyaudit_app import main; sys.argv[0] = 'pyaudit'; main()"]
HEAVY = ("typer", "click", "pydantic", "yaml", "importlib.metadata", "pysbx.policies.model", "dataclasses_json")
# Standard modules each worth 1-6 ms of a 20 ms start, which one Dockerfile needs none of:
# dataclasses (with inspect, ast, dis, tokenize), typing, pathlib (with urllib.parse), datetime.
UNNEEDED = ("dataclasses", "inspect", "typing", "pathlib", "datetime", "ipaddress", "urllib")
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
    unneeded = sorted(name for name in imported if name.split(".")[0] in UNNEEDED)
    assert not unneeded, unneeded
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


def _dockerfile(tmp_path: Path) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text("FROM alpine:3.20\nUSER app\n")
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="only root makes device nodes")
def test_a_device_given_as_the_output_stays_a_device(tmp_path: Path) -> None:
    """Regression: `--output /dev/null` as root wrote a temporary file in /dev and renamed
    it over /dev/null, which became a regular file for everyone on the host. A device of
    our own here, so that the test cannot break the host's."""
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    done = subprocess.run([PYAUDIT, str(_dockerfile(tmp_path)), "--format", "json", "--output", str(null)], check=False)
    assert done.returncode in (0, 1) and stat.S_ISCHR(os.lstat(null).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["Dockerfile", "null"]  # no temporary file left beside it


def test_a_fifo_given_as_the_output_gets_the_report_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    done = subprocess.run([PYAUDIT, str(_dockerfile(tmp_path)), "--format", "json", "--output", str(fifo)], check=False)
    reader.join(10)
    if reader.is_alive():  # nothing wrote to the FIFO: let the reader go before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert done.returncode in (0, 1) and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(received[0])["tool"]["name"] == "pyaudit"


def test_dev_stdout_as_the_output_writes_to_standard_output_and_stays_a_link(tmp_path: Path) -> None:
    """`--output /dev/stdout` with standard output sent to a file: the report lands in the
    file; /dev/stdout (a link into /proc, on the host's /dev) is never renamed over."""
    before = os.readlink("/dev/stdout")
    with open(tmp_path / "out.json", "wb") as out:
        command = [PYAUDIT, str(_dockerfile(tmp_path)), "--format", "json", "--output", "/dev/stdout"]
        done = subprocess.run(command, stdout=out, check=False)
    try:
        assert (
            done.returncode in (0, 1) and json.loads((tmp_path / "out.json").read_bytes())["tool"]["name"] == "pyaudit"
        )
    finally:
        if not os.path.islink("/dev/stdout") and os.geteuid() == 0:  # put the host right before failing
            os.unlink("/dev/stdout")
            os.symlink(before, "/dev/stdout")
    assert os.readlink("/dev/stdout") == before


def _audit_into(tmp_path: Path, output: Path) -> subprocess.CompletedProcess[str]:
    command = [PYAUDIT, str(_dockerfile(tmp_path)), "--format", "json", "--output", str(output)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_a_link_to_a_fifo_is_replaced_never_followed(tmp_path: Path) -> None:
    """Only a node that is itself a device, FIFO or socket is written in place: a link is
    never followed to decide (a user's link in /tmp to a disk would have root write a
    report onto the disk); it is replaced by the report as any file would be."""
    fifo, link = tmp_path / "fifo", tmp_path / "report.json"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    done = _audit_into(tmp_path, link)
    assert done.returncode in (0, 1), done.stderr
    assert not link.is_symlink() and json.loads(link.read_bytes())["tool"]["name"] == "pyaudit"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_fifo_nobody_reads_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    done = _audit_into(tmp_path, fifo)
    assert done.returncode == 2 and "cannot write" in done.stderr and stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a FIFO to another user")
def test_another_users_fifo_is_not_written_into(tmp_path: Path) -> None:
    """A FIFO another user left where root writes a report (/tmp/report.json) would read
    the report, or hold pyaudit forever: refused, exit 2, the FIFO left as it was."""
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    os.chown(fifo, 65534, 65534)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader waits: it would get the report
    try:
        done = _audit_into(tmp_path, fifo)
        assert done.returncode == 2 and "uid 65534: not written into" in done.stderr, done.stderr
        assert os.read(reader, 1) == b""  # nothing came through (no writer ever: end of file)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

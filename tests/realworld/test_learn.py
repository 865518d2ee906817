"""`pysandbox learn` on a Python program in Debian's python3 image, as root and as an
ordinary user: the learned policy lints, replays with the same output, and is narrower than
baseline by a measured number of system calls (printed by learn, asserted here)."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import tempfile
from pathlib import Path

from tests.realworld.debian import debian_image
from tests.realworld.engines import Engine
from tests.sandbox.conftest import PYSANDBOX

PROGRAM = """
import json, sqlite3, threading, hashlib, subprocess
found = {}
worker = threading.Thread(target=lambda: found.update(thread=True))
worker.start(); worker.join()
found["sqlite"] = sqlite3.connect(":memory:").execute("select 6*7").fetchone()[0]
found["sha"] = hashlib.sha256(b"learn").hexdigest()[:8]
found["child"] = subprocess.run(["echo", "hi"], capture_output=True, text=True).stdout.strip()
print(json.dumps(found, sort_keys=True))
"""


def test_a_python_program_is_learned_linted_and_replayed(ours: Engine, policies: Path) -> None:
    image = debian_image("python")
    folder = Path(tempfile.mkdtemp(prefix="pysandbox-learn-"))
    try:
        if ours.user is not None:
            entry = pwd.getpwnam(ours.user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        output = folder / "python.yaml"
        argv = [*ours._prefix(), PYSANDBOX, "learn", "--base", str(policies / "baseline.yaml"), "-o", str(output),
                "--compare-output", str(image), "python3", "-c", PROGRAM]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=600, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-2000:]
        expected = '{"child": "hi", "sha": "6a8da52e", "sqlite": 42, "thread": true}'
        assert done.stdout.splitlines() == [expected, expected]  # observed, then replayed
        narrower = re.search(r"allows (\d+) system calls here, this policy (\d+) \(narrower by (\d+)\)", done.stderr)
        assert narrower is not None and int(narrower[3]) > 200, done.stderr
        lint = subprocess.run(
            [*ours._prefix(), PYSANDBOX, "policy", "lint", str(output)], capture_output=True, text=True, cwd="/"
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)

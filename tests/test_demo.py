"""The README's first command, the main job on the built-in example, run as the README says:
`sh examples/demo.sh` builds, inspects, unpacks, lints, signs, audits, verifies and runs the
busybox image, then watches a tampered copy be refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_the_demo_runs_confined_and_refuses_the_tampered_copy() -> None:
    if shutil.which("busybox") is None and not Path("/bin/busybox").exists():
        pytest.skip("busybox-static is not installed (the README's first command installs it)")
    result = subprocess.run(["sh", "examples/demo.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for expected in ("NoNewPrivs:\t1", "Seccomp:\t2", "the root is read-only", "pysandbox-init"):
        assert expected in out, expected
    tampered = out.split("demo/tampered.tar true; echo exit code $?", 1)[1]
    assert "exit code 125" in tampered and "the unpacked busybox runs" in out
    assert "uid=1000" in out  # the image's USER, not root

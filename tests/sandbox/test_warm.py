"""The warm path of `pysandbox run`: a second run of the same image under the same policy
starts from the cached plan and imports no CLI framework, YAML, image reader, policy loader,
sigstore or libseccomp bindings (DESIGN.md, "Start-up cost shapes the runtime")."""

from __future__ import annotations

import importlib.util
import marshal
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HEAVY = ("typer", "yaml", "sigstore", "pyseccomp", "images", "policies", "zstandard", "cryptography")
# Modules of those packages that are plain data, imported by nothing else (the capability names,
# which the runtime and the policy model share; Record, the value objects' base class, which the
# auditor shares too): well under a millisecond.
PLAIN_DATA = ("policies", "policies.capnames", "policies.record")
# The standard library's slow starters (dataclasses pulls in inspect and ast): 20+ ms together;
# re, enum, argparse, json, contextlib and ctypes are 1-4 ms each (functools and collections behind
# several of them).
SLOW_STDLIB = (
    "dataclasses", "inspect", "pathlib", "typing", "shutil", "tempfile", "socket", "subprocess", "hashlib", "re",
    "enum", "argparse", "json", "contextlib", "functools", "collections", "signal", "ctypes",
)  # fmt: skip


@pytest.fixture
def state() -> Iterator[str]:
    """A fresh cache the container's mapped ids can traverse (pytest's folders are 0700)."""
    folder = tempfile.mkdtemp(prefix="pysandbox-state-")
    os.chmod(folder, 0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def documented_warm_modules() -> tuple[set[str], set[str]]:
    """The warm path's modules as the sandbox package's docstring names them: those every
    warm start imports, and those only some do (named with a condition in parentheses)."""
    import re

    from pysbx import sandbox

    listing = (sandbox.__doc__ or "").split("slow\n")[1].split("\n\n")[1]
    entries = [entry.strip() for entry in re.split(r",(?![^(]*\))", " ".join(listing.split()))]
    always = {entry for entry in entries if entry and "(" not in entry}
    sometimes = {entry.split(" (")[0] for entry in entries if "(" in entry}
    return always, sometimes


def imported_modules(stderr: str) -> set[str]:
    """The modules `-X importtime` reports, ours named without the `pysbx.` namespace."""
    names = {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    return {name.removeprefix("pysbx.") for name in names}


def test_a_warm_run_imports_nothing_heavy(world: Path, state: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs as root here; the user mode is covered by test_run")
    env = {**os.environ, "PYSANDBOX_STATE": state}
    command = [sys.executable, "-X", "importtime", str(Path(sys.executable).parent / "pysandbox"), "run", "--rm",
               "--policy", str(world / "strict-unsigned.yaml"), str(world / "busybox-app.tar"), "/bin/true"]  # fmt: skip
    cold = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/")
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert {"yaml", "images"} <= {name.split(".")[0] for name in imported_modules(cold.stderr)}
    started = time.monotonic()
    warm = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/")
    elapsed = time.monotonic() - started
    assert warm.returncode == 0, warm.stderr[-2000:]
    slow = SLOW_STDLIB if importlib.util.find_spec("pysbx.sandbox._syscall") else tuple(set(SLOW_STDLIB) - {"ctypes"})
    heavy = sorted(
        name for name in imported_modules(warm.stderr) if name.split(".")[0] in HEAVY + slow and name not in PLAIN_DATA
    )
    assert heavy == []
    ours = {name for name in imported_modules(warm.stderr) if name.split(".")[0] in ("cli", "sandbox")}
    always, sometimes = documented_warm_modules()
    assert always <= ours and ours <= always | sometimes, sorted(ours ^ always)
    assert elapsed < 2.0


def test_a_changed_policy_file_is_a_cache_miss(world: Path, state: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs as root here")
    env = {**os.environ, "PYSANDBOX_STATE": state}
    policy = Path(env["PYSANDBOX_STATE"]) / "policy.yaml"
    policy.write_text((world / "strict-unsigned.yaml").read_text())
    policy.chmod(0o644)
    base = [
        str(Path(sys.executable).parent / "pysandbox"),
        "run",
        "--rm",
        "--policy",
        str(policy),
        str(world / "busybox-root.tar"),
        "sh",
        "-c",
    ]
    first = subprocess.run([*base, "grep CapEff /proc/self/status"], capture_output=True, text=True, env=env, cwd="/")
    assert "0000000000000000" in first.stdout, first.stderr
    policy.write_text(
        policy.read_text().replace("drop: [ALL]", "drop: [ALL]\n    add: [CHOWN]").replace("    add: []\n", "", 1)
    )
    second = subprocess.run([*base, "grep CapEff /proc/self/status"], capture_output=True, text=True, env=env, cwd="/")
    assert "0000000000000001" in second.stdout, second.stdout + second.stderr


def test_a_damaged_plan_is_a_cache_miss(world: Path, state: str) -> None:
    """A plan cut short or overwritten (a full disk, a crash, a stray editor) is read as no
    plan: the run goes the cold way and leaves a good plan again."""
    if os.geteuid() != 0:
        pytest.skip("runs as root here")
    env = {**os.environ, "PYSANDBOX_STATE": state}
    command = [str(Path(sys.executable).parent / "pysandbox"), "run", "--rm", "--policy",
               str(world / "strict-unsigned.yaml"), str(world / "busybox-app.tar"), "echo", "ran"]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/")
    assert first.stdout == "ran\n", first.stderr
    (plan,) = (Path(state) / "plans").glob("*.plan")
    good = plan.read_bytes()
    for damaged in (good[: len(good) // 2], b"\xff" * 64, b"", good.replace(b"busybox", b"xusybox")):
        plan.write_bytes(damaged)
        again = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/")
        assert (again.returncode, again.stdout) == (0, "ran\n"), again.stderr
        # the same plan again (compared decoded: marshal's back-references depend on which
        # equal strings happen to be one object, so the bytes may differ)
        assert marshal.loads(plan.read_bytes()) == marshal.loads(good)

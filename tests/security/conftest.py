"""The hostile-tenant suite's principals: root and two ordinary users, each in turn the owner
of pysandbox's storage while another ordinary user attacks it. Created by the suite when it
runs as root (as CI does); their homes are made 0755, as on many hosts, so that only
pysandbox's own folder modes stand between the tenants."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.sandbox.conftest import PYSANDBOX, TEST_USER, test_user, world  # noqa: F401 - fixtures

SECOND_USER = "sbxtest2"
OWNERS = ["root", TEST_USER, SECOND_USER]


@pytest.fixture(scope="session")
def second_user(test_user: str) -> str:  # noqa: F811 - the imported fixture
    if os.geteuid() != 0:
        pytest.skip("the hostile-tenant suite creates its users: it runs as root")
    try:
        pwd.getpwnam(SECOND_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", SECOND_USER], check=True)
    for user in (test_user, SECOND_USER):
        os.chmod(pwd.getpwnam(user).pw_dir, 0o755)
    return SECOND_USER


def attacker_of(owner: str) -> str:
    """An ordinary user other than `owner`."""
    return SECOND_USER if owner != SECOND_USER else TEST_USER


def as_principal(who: str, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """`argv` run as `who` (root: as is), with that user's HOME and no runtime folder."""
    extra = [f"{key}={value}" for key, value in (env or {}).items()]
    if who == "root":
        return ["env", *extra, *argv]
    home = pwd.getpwnam(who).pw_dir
    return ["runuser", "-u", who, "--", "env", f"HOME={home}", "XDG_RUNTIME_DIR=", *extra, *argv]


def run_as(who: str, argv: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(as_principal(who, argv, env), capture_output=True, text=True, timeout=timeout, cwd="/")


def cache_of(who: str) -> Path:
    return Path("/var/lib/pysandbox") if who == "root" else Path(pwd.getpwnam(who).pw_dir) / ".cache/pysandbox"


@pytest.fixture(params=OWNERS)
def owner(request: pytest.FixtureRequest, second_user: str) -> str:
    if os.geteuid() != 0:
        pytest.skip("the hostile-tenant suite creates its users: it runs as root")
    return str(request.param)


@pytest.fixture
def pysandbox(owner: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`pysandbox ARGS...` as the owner."""

    def run(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return run_as(owner, [PYSANDBOX, *args], timeout=timeout, **env)

    return run


INTERPRETER = sys.executable

"""Fixtures of the realworld suite: the built-in policies (signatures not required) in a
folder the test user can read, and each engine as root and as the ordinary test user."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.realworld.engines import Engine
from tests.sandbox.conftest import test_user  # noqa: F401 - fixture

MODES = ["root", "user"]


@pytest.fixture(scope="session")
def policies() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="pysandbox-realworld-"))
    folder.chmod(0o755)
    for name in ("baseline", "strict"):
        text = (ROOT / f"policies/{name}.yaml").read_text().replace("  required: true", "  required: false")
        (folder / f"{name}.yaml").write_text(text)
        (folder / f"{name}.yaml").chmod(0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "root" and os.geteuid() != 0:
        pytest.skip("root mode needs root")
    return str(request.param)


@pytest.fixture
def user(mode: str, request: pytest.FixtureRequest) -> str | None:
    return None if mode == "root" else str(request.getfixturevalue("test_user"))


@pytest.fixture
def ours(mode: str, user: str | None, policies: Path) -> Engine:
    return Engine("pysandbox", mode, user, policies)

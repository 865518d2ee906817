"""mounts.inside: a mount destination resolved as if the image's root were /, never leaving it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pysbx.sandbox.mounts import inside


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "abs").symlink_to("/etc")  # absolute: inside the root, not the host's /etc
    (tmp_path / "up").symlink_to("../../../../data")  # climbs: stops at the root
    (tmp_path / "loop").symlink_to("loop")
    return tmp_path


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("/etc/hosts", "etc/hosts"),
        ("/abs/hosts", "etc/hosts"),
        ("/up/file", "data/file"),
        ("/../../etc", "etc"),
        ("//./etc/./x", "etc/x"),
        ("/missing/deeper", "missing/deeper"),
    ],
)
def test_a_destination_never_leaves_the_root(root: Path, destination: str, expected: str) -> None:
    assert inside(str(root), destination) == os.path.join(str(root), expected)


def test_a_symlink_loop_is_an_error_not_a_hang(root: Path) -> None:
    with pytest.raises(OSError, match="too many symbolic links"):
        inside(str(root), "/loop/x")

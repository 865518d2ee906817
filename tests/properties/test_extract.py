"""Property: whatever entries a layer holds (names that climb, absolute names, symlinks out
of the root then written through, hard links to outside, whiteouts of anything), unpacking
ends in a report or an ImageError, and nothing outside the target is created or changed.
The arena of the hand-written hostile corpus (tests/images/test_hostile.py) checks each
example: the target's parent, a victim folder beside it and the image itself, by lstat
identity and content, and an emptied target after an error."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysbx.images import ImageError
from pysbx.images.extract import UnpackOptions, UnpackReport
from tests.imagekit import T, image_of
from tests.images.test_hostile import Arena
from tests.properties.strategies import examples, layers

# The victim's absolute path must be known before the entries are drawn: one arena base for
# the whole run, a fresh arena (target, victim, images) inside it for each example.
_BASE = Path(tempfile.mkdtemp(prefix="pysandbox-properties-"))
atexit.register(shutil.rmtree, _BASE, ignore_errors=True)
_VICTIM = str(_BASE / "arena" / "victim")


# Flattened (as `image unpack` does), each layer kept as an overlay lower folder (whiteouts as
# 0/0 devices, as the runtime's layer cache does), ownership not kept, ids shifted.
OPTIONS = (
    UnpackOptions(),
    UnpackOptions(lowers=()),
    UnpackOptions(keep_ownership=False),
    UnpackOptions(id_offset=100_000),
)


@contextmanager
def fresh_arena() -> Iterator[Arena]:
    """An empty arena at the fixed place the drawn entries point into."""
    arena = Arena(_BASE).setup()
    try:
        yield arena
    finally:
        for child in _BASE.iterdir():
            _make_removable(child)
            shutil.rmtree(child)


def _make_removable(path: Path) -> None:
    """An image may leave folders of mode 000 in the target: give them back to the owner."""
    for folder in [path, *(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())]:
        folder.chmod(0o700)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(_VICTIM), st.sampled_from(("gzip", "none")), st.sampled_from(OPTIONS))
def test_unpacking_any_layers_never_writes_outside_the_target(
    drawn: list[list[T]], compression: str, options: UnpackOptions
) -> None:
    with fresh_arena() as arena:
        outcome = arena.unpack(image_of(*drawn, compression=compression), options)
        assert isinstance(outcome, UnpackReport) or str(outcome)


@pytest.mark.parametrize("folder", ["", "d/"], ids=["at-the-root", "in-a-folder"])
def test_a_whiteout_of_a_name_too_long_for_the_system_is_no_crash(folder: str) -> None:
    """Nothing can have such a name, so the whiteout hides nothing (or the layer is refused
    with an ImageError); either way no other exception, and nothing outside changes."""
    with fresh_arena() as arena:
        outcome = arena.unpack(image_of([T("d", "dir"), T(f"{folder}.wh." + "a" * 256)]))
        assert isinstance(outcome, UnpackReport | ImageError)

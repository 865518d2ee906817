"""images.heap: the walk's freed chunks are reused, not faulted in again for every chunk.
Each side runs in its own process (the thresholds are the process's, and stay raised)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.imagekit import T, image_of, write_image

WALK = """
import resource, sys
import pysbx.images.heap as heap
if sys.argv[2] == "off":
    heap.keep_chunks_in_heap = lambda: False
    import pysbx.images.layers as layers
    layers.keep_chunks_in_heap = heap.keep_chunks_in_heap
from pysbx.images import open_image
from pysbx.images.layers import walk_layer
image = open_image(sys.argv[1])
list(walk_layer(image, image.layers[0], light_reader=True))  # the first walk sets up the heap either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    list(walk_layer(image, image.layers[0], light_reader=True))
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(archive: str, heap: str) -> int:
    done = subprocess.run([sys.executable, "-c", WALK, archive, heap], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_the_walks_chunks_are_reused_not_faulted_in_again(tmp_path: Path) -> None:
    from pysbx.images.heap import keep_chunks_in_heap

    if not keep_chunks_in_heap():
        pytest.skip("not glibc: mallopt is not there, or does nothing")
    files = [T("data", "dir")] + [T(f"data/{n}", data=bytes([n]) * (1 << 20)) for n in range(48)]
    archive = write_image(image_of(files, compression="none"), tmp_path, "docker")
    kept, returned = _faults(archive, "on"), _faults(archive, "off")
    # Three walks of 48 MiB, as an audit walks (the walk reads, the worker hashes): about 1,000
    # faults kept, 3,000 to 9,000 returned here (how many chunks glibc happens to reuse varies).
    assert kept * 2 < returned, (kept, returned)

"""`image build` spools layers to files as they are made (a layer is never held in memory
whole); what it writes is byte for byte what the in-memory writer makes, for every
compression, so a spooled build and one in memory have one digest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pysbx.images.digest import digest_bytes
from pysbx.images.writer import Spooled, compress, compress_data, spool_layer_tar, tar_from_directory


def tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(os.urandom(3 << 20))  # more than one 1 MiB chunk
    (root / "etc").mkdir()
    (root / "etc" / "conf").write_text("a = 1\n" * 1000)
    os.link(root / "etc" / "conf", root / "etc" / "conf-again")
    (root / "bin" / "alias").symlink_to("tool")
    return root


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_a_spooled_layer_is_byte_for_byte_the_in_memory_one(tmp_path: Path, compression: str) -> None:
    root = tree(tmp_path / "root")
    in_memory = tar_from_directory(root, (0, 0), 1_700_000_000)
    spooled = spool_layer_tar(root, tmp_path / "layer.tar", (0, 0), 1_700_000_000)
    assert (spooled.digest, spooled.size) == (digest_bytes(in_memory), len(in_memory))
    assert spooled.path.read_bytes() == in_memory
    compressed = compress_data(spooled, compression)
    assert isinstance(compressed, Spooled)
    expected = compress(in_memory, compression)
    assert compressed.path.read_bytes() == expected and compressed.digest == digest_bytes(expected)

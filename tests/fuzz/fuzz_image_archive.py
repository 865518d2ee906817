"""Fuzz the image reader on archive files (docker save, legacy and Docker 25+, and OCI
archives): the input is the archive's bytes. Opening it and walking every layer (digests
and diff_ids verified, as `pyaudit image.tar` and `pysandbox image inspect` do) ends in a
result or an ImageError; nothing else may escape.

Byte mutations of a tar rarely get past its header checksums, and a changed manifest never
gets past its digest. So three times in four the custom mutator unpacks the archive,
mutates one member's bytes with libFuzzer's own mutator, recomputes every digest that names
a changed blob up to index.json (tests/imagekit.py: rehash) and packs the archive again;
the rest of the time it mutates the raw bytes, so that broken archives are read too.

    nice -n 10 .venv/bin/python tests/fuzz/fuzz_image_archive.py CORPUS SEEDS -max_total_time=600
"""

from __future__ import annotations

import io
import random
import tarfile

import atheris
import fuzzlib

with atheris.instrument_imports():
    from pysbx.images import ImageError, open_image
    from pysbx.images.layers import layer_stats
# The mutator's helper is not under test: imported after the block, so not instrumented.
from tests.imagekit import rehash

ARCHIVE = fuzzlib.scratch("image-archive") / "image.tar"


def test_one(data: bytes) -> None:
    ARCHIVE.write_bytes(data)
    try:
        image = open_image(str(ARCHIVE))
        for layer in image.layers:
            layer_stats(image, layer)
    except ImageError as error:
        assert str(error), "an ImageError must say what is wrong"


def members(data: bytes) -> dict[str, bytes] | None:
    """The regular files of a tar archive, in order, or None when it is not one."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            found = {}
            for info in archive:
                stream = archive.extractfile(info) if info.isfile() else None
                if stream is not None:
                    found[info.name] = stream.read()
            return found
    except Exception:  # whatever tarfile makes of mutated bytes: they are mutated as bytes instead
        return None


def pack(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    chooser = random.Random(seed)
    files = members(data) if chooser.random() < 0.75 else None
    if not files:
        return bytes(atheris.Mutate(data, max_size))
    name = chooser.choice(list(files))
    files[name] = bytes(atheris.Mutate(files[name], len(files[name]) + 256))
    try:
        if chooser.random() < 0.8:
            rehash(files)
        packed = pack(files)
    except Exception:  # names or documents the helpers cannot handle: mutate the bytes instead
        return bytes(atheris.Mutate(data, max_size))
    return packed if len(packed) <= max_size else bytes(atheris.Mutate(data, max_size))


if __name__ == "__main__":
    fuzzlib.run(test_one, mutate)

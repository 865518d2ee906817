"""Fuzz extraction with hostile layers: the input is a small script of tar entries, turned
into an image (so that tar checksums and digests never stop the fuzzer before the
extractor), unpacked by `unpack_image` into a target folder that has a victim folder beside
it. The arena of tests/images/test_hostile.py checks every run: the unpack ends in a report
or an ImageError (the target emptied again), and nothing outside the target changed.

Script, one entry per line (`---` starts a layer, optionally `--- gzip|zstd|none`; lines
`!layered` (overlay lower folder mode: whiteouts kept as 0/0 devices), `!no-owner` and
`!offset` (ids shifted by 100000) choose UnpackOptions):
    f NAME [DATA]     regular file          d[:MODE] NAME     directory (octal mode)
    l NAME TARGET     symbolic link         h NAME TARGET     hard link
    c NAME, b NAME    character/block dev   p NAME            fifo
In NAME and TARGET, `@V` stands for the victim folder's absolute path and `@T` for the
target's. Whiteouts are names: `.wh.NAME`, `.wh..wh..opq`.

    nice -n 10 .venv/bin/python tests/fuzz/fuzz_extract.py CORPUS SEEDS -max_total_time=600
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import atheris
import fuzzlib

with atheris.instrument_imports():
    from pysbx.images import open_image  # noqa: F401 - the arena calls it
    from pysbx.images.extract import UnpackOptions, UnpackReport, unpack_image  # noqa: F401 - the arena calls unpack_image
# Building the image and checking the arena are not under test: left uninstrumented, so that
# their branches do not count as coverage.
from tests.imagekit import T, image_of
from tests.images.test_hostile import Arena

KINDS = {"f": "file", "d": "dir", "l": "symlink", "h": "hardlink", "c": "char", "b": "block", "p": "fifo"}
COMPRESSIONS = ("gzip", "zstd", "none")
SCRATCH = fuzzlib.scratch("extract")


OPTIONS = {"!layered": {"lowers": ()}, "!no-owner": {"keep_ownership": False}, "!offset": {"id_offset": 100_000}}


@dataclass
class Script:
    layers: list[list[T]] = field(default_factory=lambda: [[]])
    compression: str = "gzip"
    options: UnpackOptions = field(default_factory=UnpackOptions)


def parse_script(text: str, arena: Arena) -> Script:
    """The image and the unpack options a script describes; lines that mean nothing are
    skipped, so that every mutation still describes some image."""
    script = Script()
    for line in text.splitlines():
        if line.startswith("---"):
            word = line[3:].strip()
            script.compression = word if word in COMPRESSIONS and len(script.layers) == 1 else script.compression
            if script.layers[-1]:
                script.layers.append([])
        elif line.strip() in OPTIONS:
            script.options = dataclasses.replace(script.options, **OPTIONS[line.strip()])  # type: ignore[arg-type]
        elif entry := _entry(line.replace("@V", str(arena.victim)).replace("@T", str(arena.target))):
            script.layers[-1].append(entry)
    script.layers = [layer for layer in script.layers if layer] or [[]]
    return script


def _entry(line: str) -> T | None:
    head, _, rest = line.partition(" ")
    kind, _, mode = head.partition(":")
    if kind not in KINDS or not rest:
        return None
    name, _, argument = rest.partition(" ")
    try:
        parsed_mode = int(mode, 8) & 0o7777 if mode else None
    except ValueError:
        parsed_mode = None
    if KINDS[kind] == "file":
        return T(name, data=argument.encode("utf-8", "surrogateescape"), mode=parsed_mode)
    return T(name, KINDS[kind], link=argument, mode=parsed_mode)


def test_one(data: bytes) -> None:
    base = Path(tempfile.mkdtemp(dir=SCRATCH))
    try:
        arena = Arena(base).setup()
        script = parse_script(fuzzlib.text_of(data), arena)
        try:
            image = image_of(*script.layers, compression=script.compression)
        except ValueError:
            return  # a name tarfile cannot write (the writer's limit, not the reader's)
        outcome = arena.unpack(image, script.options)
        assert isinstance(outcome, UnpackReport) or str(outcome)
    finally:
        fuzzlib.empty_folder(base)
        shutil.rmtree(base)


if __name__ == "__main__":
    fuzzlib.run(test_one)

"""Helpers the tests use to build layer tars entry by entry (with tarfile, as hostile or
as ordinary as a test needs) and whole images in every layout."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from images.writer import NewImage, NewLayer, write_docker_archive, write_oci_archive, write_oci_layout


@dataclass
class T:
    """One tar entry. kind: file, dir, symlink, hardlink, char, block, fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def make_tar(entries: list[T], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TYPES[entry.kind]
            info.mode = entry.mode if entry.mode is not None else (0o755 if entry.kind == "dir" else 0o644)
            info.uid, info.gid, info.mtime = entry.uid, entry.gid, entry.mtime
            info.linkname = entry.link
            if entry.kind in ("char", "block"):
                info.devmajor, info.devminor = 1, 3
            if entry.kind == "file":
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def image_of(*layers: list[T], compression: str = "gzip", config: dict[str, object] | None = None) -> NewImage:
    return NewImage(
        [NewLayer(make_tar(entries), compression, f"layer {i}") for i, entries in enumerate(layers)],
        dict(config or {}),
    )


LAYOUTS = ("oci-layout", "oci-archive", "docker-legacy", "docker-25")


def write_image(image: NewImage, directory: Path, layout: str, tag: str = "example/app:1") -> str:
    """Write `image` in `layout` under `directory`; return the IMAGE argument that opens it."""
    if layout == "oci-layout":
        write_oci_layout(directory / "layout", [(tag.rsplit(":", 1)[-1], [image])])
        return str(directory / "layout")
    if layout == "oci-archive":
        write_oci_archive(directory / "image.oci.tar", [(tag.rsplit(":", 1)[-1], [image])])
        return str(directory / "image.oci.tar")
    path = directory / "image.tar"
    write_docker_archive(path, image, [tag], oci_inside=layout == "docker-25")
    return str(path)


def static_busybox() -> Path | None:
    """Debian's busybox-static, when installed (it is what the runnable test image holds)."""
    found = shutil.which("busybox")
    if found is None:
        return None
    check = subprocess.run(["ldd", found], capture_output=True, text=True)
    return Path(found) if "not a dynamic" in check.stdout + check.stderr else None


def snapshot(path: Path) -> dict[str, tuple[int, int, bytes | str | None]]:
    """Every entry under `path` with mode, size and content (or link target), to prove that
    a directory is byte-for-byte unchanged."""
    state: dict[str, tuple[int, int, bytes | str | None]] = {}
    for item in sorted(path.rglob("*")):
        info = item.lstat()
        if item.is_symlink():
            content: bytes | str | None = str(item.readlink())
        elif item.is_file():
            content = item.read_bytes()
        else:
            content = None
        state[str(item.relative_to(path))] = (info.st_mode, info.st_size, content)
    return state

"""Helpers the tests use to build layer tars entry by entry (with tarfile, as hostile or
as ordinary as a test needs) and whole images in every layout."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pysbx.images.writer import NewImage, NewLayer, write_docker_archive, write_oci_archive, write_oci_layout


@dataclass
class T:
    """One tar entry. kind: file, dir, symlink, hardlink, char, block, fifo. `pax` records
    are written as given, in place of what tarfile would derive from the fields (hostile
    sizes, owners, times, paths)."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    pax: dict[str, str] = field(default_factory=dict)


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
            info.pax_headers = dict(entry.pax)
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
    # Legacy layers compressed as given: the reader copes with what skopeo and podman also read.
    write_docker_archive(path, image, [tag], oci_inside=layout == "docker-25", compress_legacy=True)
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


# -- images as maps of files, changed and made consistent again ------------------------------
_HEX = re.compile(r"[0-9a-f]{64}")


def json_documents(files: dict[str, bytes]) -> list[str]:
    """The files that hold JSON objects or lists (manifests, indexes, configs)."""
    found = []
    for name, data in sorted(files.items()):
        try:
            if isinstance(json.loads(data), dict | list):
                found.append(name)
        except (ValueError, RecursionError):  # not JSON, or JSON Python cannot take
            continue
    return found


def json_slots(document: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) place in a JSON document, the document's own children first."""
    slots: list[tuple[Any, Any]] = []
    pending = [document]
    while pending:
        container = pending.pop(0)
        keys = list(container) if isinstance(container, dict) else range(len(container))
        for key in keys:
            slots.append((container, key))
            if isinstance(container[key], dict | list):
                pending.append(container[key])
    return slots


def rehash(files: dict[str, bytes]) -> None:
    """Rename every blob whose content no longer matches the hex in its name, and point
    every JSON document at the new name (digest, size, `Config`/`Layers` paths), until
    nothing changes: a damaged document then passes its digest check."""
    for _ in range(6):
        renamed = {}
        for name in sorted(files):
            match = _HEX.search(name)
            actual = hashlib.sha256(files[name]).hexdigest()
            if match and match.group() != actual and name.endswith((match.group(), ".json")):
                renamed[match.group()] = (actual, len(files[name]))
                files[name.replace(match.group(), actual)] = files.pop(name)
        if not renamed:
            return
        for name in json_documents(files):
            files[name] = _repoint(json.loads(files[name]), renamed)


def _repoint(document: Any, renamed: dict[str, tuple[str, int]]) -> bytes:
    text = json.dumps(document)
    for old, (new, _) in renamed.items():
        text = text.replace(old, new)
    document = json.loads(text)
    sizes = {f"sha256:{new}": size for new, size in renamed.values()}
    for container, key in json_slots(document):
        value = container[key]
        if isinstance(value, dict) and isinstance(value.get("digest"), str) and value["digest"] in sizes:
            value["size"] = sizes[value["digest"]]
    return json.dumps(document).encode()

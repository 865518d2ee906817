"""The container's root filesystem: the image flattened once into a cache keyed by its
manifest digest (read-only from then on), and per container an overlay whose upper
directory takes every write, so writes never reach the cache. Where overlay cannot be
mounted, a private copy serves instead."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from images import Image
from images.extract import UnpackOptions, unpack_image
from sandbox import linux


def cache_root() -> Path:
    if os.geteuid() == 0:
        return Path(os.environ.get("PYSANDBOX_STATE", "/var/lib/pysandbox"))
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("PYSANDBOX_STATE", f"{base}/pysandbox"))


def image_rootfs(image: Image, id_offset: int) -> Path:
    """The flattened, cached rootfs of `image`, unpacked on first use. A half-written entry
    is never visible: unpacking happens in a temporary folder renamed into place."""
    images = cache_root() / "images"
    target = images / f"{image.manifest_digest.hex}-{id_offset}" / "rootfs"
    if target.is_dir():
        return target
    # 0711: the container's mapped ids must traverse to the lower directory, not list it.
    images.mkdir(parents=True, exist_ok=True, mode=0o711)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=images))
    try:
        unpack_image(image, staging / "rootfs", UnpackOptions(id_offset=id_offset))
        if os.geteuid() == 0:
            os.chown(staging / "rootfs", id_offset, id_offset)
        os.chmod(staging, 0o755)
        try:
            os.rename(staging, target.parent)
        except OSError:
            if not target.is_dir():  # not a lost race with another run of the same image
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def container_dir(name: str) -> Path:
    """Per-container state (overlay upper and work dirs, /etc files) under the runtime dir."""
    run = Path(os.environ.get("XDG_RUNTIME_DIR", "")) if os.geteuid() != 0 else Path("/run")
    base = run / "pysandbox" if run.is_dir() and os.access(run, os.W_OK) else cache_root() / "containers"
    base.mkdir(parents=True, exist_ok=True, mode=0o711)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))


def mount_overlay(lower: Path, state: Path, target: Path) -> str:
    """Mount the container root at `target` (inside our user and mount namespaces).
    Returns how: 'overlay' or 'copy'."""
    upper, work = state / "upper", state / "work"
    for folder in (upper, work, target):
        folder.mkdir(exist_ok=True)
    shutil.copystat(lower, upper)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    try:
        linux.mount("overlay", str(target), "overlay", 0, options + ",userxattr")
        return "overlay"
    except OSError:
        pass
    try:
        linux.mount("overlay", str(target), "overlay", 0, options)
        return "overlay"
    except OSError:
        shutil.copytree(lower, upper / "copy", symlinks=True)
        linux.mount(str(upper / "copy"), str(target), None, linux.MS_BIND | linux.MS_REC)
        return "copy"

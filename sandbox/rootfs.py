"""The container's root filesystem on disk: the image flattened once into a cache keyed by
its manifest digest (read-only from then on; mounts.mount_overlay puts a per-container
writable layer over it), and the per-container state folders."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the warm path of `run` imports this module, not the image reader
    from images import Image


def cache_root() -> Path:
    if os.geteuid() == 0:
        return Path(os.environ.get("PYSANDBOX_STATE", "/var/lib/pysandbox"))
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("PYSANDBOX_STATE", f"{base}/pysandbox"))


def image_rootfs(image: Image, id_offset: int) -> Path:
    """The flattened, cached rootfs of `image`, unpacked on first use. A half-written entry
    is never visible: unpacking happens in a temporary folder renamed into place."""
    from images.extract import UnpackOptions, unpack_image

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
    runtime = "/run" if os.geteuid() == 0 else os.environ.get("XDG_RUNTIME_DIR", "")
    run = Path(runtime) if os.path.isabs(runtime) else None  # unset or empty: not the current folder
    base = run / "pysandbox" if run and run.is_dir() and os.access(run, os.W_OK) else cache_root() / "containers"
    base.mkdir(parents=True, exist_ok=True, mode=0o711)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))

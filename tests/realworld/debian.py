"""Small Debian images made from Debian's own packages during the run: `mmdebstrap
--variant=minbase` with the apt sources this machine has, its root-filesystem tarball taken
as the image's one layer (owners, modes and links exactly as dpkg left them), written as a
docker-archive that pysandbox and podman both load. Built once and cached outside the work
tree (root: /var/cache/pysandbox-tests, a user: ~/.cache/pysandbox-tests), keyed on the
recipe; skipped cleanly where mmdebstrap is missing or the archive cannot be reached."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pysbx.images.digest import Digest
from pysbx.images.writer import NewImage, NewLayer, Spooled, write_docker_archive

SUITE = "bookworm"
RECIPES = {
    "python": ["python3"],
    "nginx": ["nginx-light"],
    "postgres": ["postgresql-15"],
    "node": ["nodejs"],
}
TRIMMED = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*"]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOURCES = ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")
UNREACHABLE = ("Failed to fetch", "Temporary failure resolving", "Could not connect", "Unable to connect")


def cache_folder() -> Path:
    """Shared with the test users when root builds (they load the same archives)."""
    if os.geteuid() == 0:
        folder = Path("/var/cache/pysandbox-tests/realworld")
        folder.mkdir(parents=True, exist_ok=True)
        for level in (folder.parent, folder):
            level.chmod(0o755)
        return folder
    folder = Path.home() / ".cache" / "pysandbox-tests" / "realworld"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def recipe_key(name: str) -> str:
    recipe = {"suite": SUITE, "packages": RECIPES[name], "trimmed": TRIMMED, "format": 1, "sources": _sources_text()}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _sources_text() -> str:
    source = _sources_file()
    return "" if source is None else Path(source).read_text()


def _sources_file() -> str | None:
    return next((path for path in SOURCES if os.path.isfile(path)), None)


def image_reference(name: str) -> str:
    return f"realworld/{name}:{recipe_key(name)}"


def debian_image(name: str) -> Path:
    """The archive for recipe `name`, built on first use (under a lock: one build at a time)."""
    if shutil.which("mmdebstrap") is None:
        pytest.skip("needs mmdebstrap (Debian package mmdebstrap)")
    folder = cache_folder()
    archive = folder / f"{name}-{recipe_key(name)}.tar"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not archive.exists():
            _build(name, archive)
    return archive


def _build(name: str, archive: Path) -> None:
    rootfs = archive.with_suffix(".rootfs.tar")
    command = ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(RECIPES[name])}"]
    command += [f"--dpkgopt=path-exclude={pattern}" for pattern in TRIMMED]
    if os.geteuid() != 0:
        if not _has_subordinate_ids():
            pytest.skip("mmdebstrap as an ordinary user needs subordinate ids (--mode=unshare)")
        command.append("--mode=unshare")
    source = _sources_file()
    command += [SUITE, str(rootfs)] + ([source] if source else [])
    built = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
    try:
        if built.returncode != 0:
            why = built.stderr.strip()[-600:]
            if any(marker in built.stderr for marker in UNREACHABLE):
                pytest.skip(f"the Debian archive is unreachable: {why}")
            pytest.fail(f"mmdebstrap failed for {name}: {why}")
        _write_archive(name, rootfs, archive)
    finally:
        rootfs.unlink(missing_ok=True)


def _has_subordinate_ids() -> bool:
    from pysbx.sandbox.userns import subordinate_maps

    return subordinate_maps() is not None


def _write_archive(name: str, rootfs: Path, archive: Path) -> None:
    with open(rootfs, "rb") as tar:
        digest = hashlib.file_digest(tar, "sha256").hexdigest()
    layer = NewLayer(Spooled(rootfs, Digest("sha256", digest), rootfs.stat().st_size), "none", "mmdebstrap")
    config = {"Env": [f"PATH={PATH}"], "Cmd": ["bash"]}
    partial = archive.with_suffix(".partial")
    write_docker_archive(partial, NewImage([layer], config), [image_reference(name)])
    partial.chmod(0o644)
    partial.rename(archive)

"""Layers kept one folder each, as overlayfs lower folders: the merged view (the kernel's
own overlay, mounted in a user namespace, and the flattened copy made where overlay is not
available) must show exactly the tree that flattening the image shows."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pysbx.images import open_image
from pysbx.images.extract import LayerNeedsParents, UnpackOptions, unpack_image, unpack_layer_folder
from pysbx.images.overlay import flatten, visible
from pysbx.sandbox.rootfs import LayerOwners, image_lowers
from tests.imagekit import T, image_of, write_image

BASE = [
    T("etc", "dir"),
    T("etc/kept", data=b"kept"),
    T("etc/removed", data=b"gone"),
    T("etc/readded", data=b"old"),
    T("usr", "dir"),
    T("usr/lib", "dir"),
    T("usr/lib/libc.so", data=b"libc"),
    T("lib", "symlink", link="usr/lib"),
    T("opt", "dir"),
    T("opt/app", "dir", mode=0o750),
    T("opt/app/old", data=b"old app"),
    T("srv", "dir"),
    T("srv/inner", data=b"inner"),
    T("was-file", data=b"file"),
    T("var", "dir"),
    T("var/cache", "dir", mode=0o700),
    T("var/cache/a", data=b"a"),
]
SECOND = [
    T("etc/.wh.removed"),
    T("opt/app/.wh..wh..opq"),
    T("opt/app/new", data=b"new app"),
    T("srv", data=b"srv is a file now"),
    T("was-file", "dir", mode=0o711),
    T("was-file/child", data=b"child"),
    T("var/cache/b", data=b"b"),  # var/cache not listed: it keeps the base layer's 0700
    T("deep/new/dirs/file", data=b"implicit parents"),
    T("nowhere/.wh.nothing"),  # a whiteout for a path no layer has
]
THIRD = [
    T("etc/.wh.readded"),
    T("etc/readded", data=b"new"),  # re-added in the whiteout's own layer: it stays
    T("usr/lib/.wh.libc.so"),
    T("usr/lib/libc.so.6", data=b"libc6"),
]


def describe(root: Path) -> dict[str, list[object]]:
    """Kind, permission bits and content (or link target) of everything under `root`."""
    tree: dict[str, list[object]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content: object = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = None
        tree[str(path.relative_to(root))] = [stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), content]
    return tree


def layer_folders(image_path: str, cache: Path) -> tuple[Path, ...]:
    """Each layer of the image unpacked on its own over the ones below; top first."""
    image = open_image(image_path)
    cache.mkdir()
    lowers: list[Path] = []
    for layer in image.layers:
        folder = cache / f"layer{layer.index}"
        unpack_layer_folder(image, layer, folder, UnpackOptions(lowers=tuple(lowers)))
        lowers.insert(0, folder)
    return tuple(lowers)


def flattened(image_path: str, target: Path) -> dict[str, list[object]]:
    unpack_image(open_image(image_path), target)
    return describe(target)


def mounted_overlay(lowers: tuple[Path, ...], work: Path) -> dict[str, list[object]]:
    """The tree the kernel's overlayfs shows, mounted with userxattr in a new user and
    mount namespace, as the runtime mounts it."""
    script = f"""
import ctypes, json, os, sys
sys.path[:0] = {[str(Path(__file__).resolve().parents[2])]!r}
from tests.images.test_overlay_layers import describe
from pathlib import Path
libc = ctypes.CDLL(None, use_errno=True)
options = "lowerdir={":".join(map(str, lowers))},upperdir={work}/upper,workdir={work}/work,userxattr"
if libc.mount(b"overlay", b"{work}/merged", b"overlay", 0, options.encode()) != 0:
    raise OSError(ctypes.get_errno(), "mount overlay")
print(json.dumps(describe(Path("{work}/merged"))))
"""
    for name in ("upper", "work", "merged"):
        (work / name).mkdir()
    result = subprocess.run(["unshare", "-Urm", sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    tree: dict[str, list[object]] = json.loads(result.stdout)
    return tree


@pytest.fixture
def three_layers(tmp_path: Path) -> str:
    return write_image(image_of(BASE, SECOND, THIRD), tmp_path, "oci-layout")


def test_layer_folders_hold_whiteouts_in_the_kernels_format(three_layers: str, tmp_path: Path) -> None:
    top, second, _base = layer_folders(three_layers, tmp_path / "layers")
    removed = (second / "etc/removed").lstat()
    assert stat.S_ISCHR(removed.st_mode) and removed.st_rdev == 0
    assert os.getxattr(second / "opt/app", "user.overlay.opaque") == b"y"
    assert (top / "etc/readded").read_bytes() == b"new"
    assert stat.S_IMODE((second / "var/cache").stat().st_mode) == 0o700  # taken from the layer below


def test_the_kernels_overlay_shows_the_flattened_tree(three_layers: str, tmp_path: Path) -> None:
    expected = flattened(three_layers, tmp_path / "flat")
    lowers = layer_folders(three_layers, tmp_path / "layers")
    assert mounted_overlay(lowers, tmp_path) == expected
    assert "etc/removed" not in expected and "opt/app/old" not in expected
    assert expected["usr/lib/libc.so.6"][2] == hashlib.sha256(b"libc6").hexdigest()


def test_the_copy_made_without_overlay_shows_the_flattened_tree(three_layers: str, tmp_path: Path) -> None:
    expected = flattened(three_layers, tmp_path / "flat")
    (tmp_path / "copy").mkdir()
    flatten(layer_folders(three_layers, tmp_path / "layers"), tmp_path / "copy")
    assert describe(tmp_path / "copy") == expected


def test_visible_answers_as_the_merged_view(three_layers: str, tmp_path: Path) -> None:
    lowers = layer_folders(three_layers, tmp_path / "layers")
    assert visible(lowers, "etc/removed") is None
    assert visible(lowers, "opt/app/old") is None
    found = visible(lowers, "etc/kept")
    assert found is not None and found[0] == lowers[2] / "etc/kept"
    assert visible(lowers, "srv/inner") is None  # its parent became a file


@pytest.mark.parametrize(
    "upper",
    [
        [T("lib/extra.so", data=b"through the base's symlink")],
        [T("usr/lib/copy", "hardlink", link="usr/lib/libc.so")],
    ],
    ids=["write-through-lower-symlink", "hardlink-into-lower-layer"],
)
def test_a_layer_that_cannot_stand_alone_is_flattened(upper: list[T], tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    image_path = write_image(image_of(BASE, upper), tmp_path, "oci-layout")
    image = open_image(image_path)
    base = tmp_path / "base"
    unpack_layer_folder(image, image.layers[0], base, UnpackOptions(lowers=()))
    with pytest.raises(LayerNeedsParents):
        unpack_layer_folder(image, image.layers[1], tmp_path / "upper", UnpackOptions(lowers=(base,)))
    assert not (tmp_path / "upper").exists()
    monkeypatch.setenv("PYSANDBOX_STATE", str(tmp_path / "state"))
    (lowers,) = [image_lowers(image, LayerOwners())]
    assert len(lowers) == 1 and lowers[0].parent.parent.name == "images"
    assert describe(lowers[0]) == flattened(image_path, tmp_path / "flat")


def test_images_on_one_base_share_its_unpacked_layer(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYSANDBOX_STATE", str(tmp_path / "state"))
    first = open_image(write_image(image_of(BASE, [T("app1", data=b"1")]), tmp_path / "one", "oci-layout"))
    second = open_image(write_image(image_of(BASE, [T("app2", data=b"2")]), tmp_path / "two", "oci-layout"))
    lowers_one, lowers_two = image_lowers(first, LayerOwners()), image_lowers(second, LayerOwners())
    assert lowers_one[1] == lowers_two[1] and lowers_one[0] != lowers_two[0]
    folders = [p for p in (tmp_path / "state/layers").iterdir() if p.is_dir()]
    assert len(folders) == 3
    assert all(os.access(folder / "root", os.R_OK) for folder in folders)
    again = image_lowers(first, LayerOwners())
    assert again == lowers_one


def test_a_failed_unpack_leaves_no_layer_folder(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYSANDBOX_STATE", str(tmp_path / "state"))
    image_path = write_image(image_of(BASE, [T("big", data=b"x" * 4096)], compression="none"), tmp_path, "oci-layout")
    blobs = Path(image_path) / "blobs" / "sha256"
    image = open_image(image_path)
    layer_blob = blobs / image.layers[1].digest.hex
    data = bytearray(layer_blob.read_bytes())
    data[1024] ^= 1
    layer_blob.write_bytes(bytes(data))
    with pytest.raises(Exception, match="digest"):
        image_lowers(open_image(image_path), LayerOwners())
    entries = sorted(p.name for p in (tmp_path / "state/layers").iterdir() if p.is_dir())
    assert len(entries) == 1 and not entries[0].startswith(".unpack-")  # the base only
    shutil.rmtree(tmp_path / "state")

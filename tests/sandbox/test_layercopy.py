"""sandbox.layercopy on real files: what a container wrote comes across whole (data, holes,
hard links, symlinks as links, fifos, modes, times, user xattrs), nothing is followed, a
tree it cannot copy is refused in one sentence, and a save replaces the saved copy only
once the new one is complete."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from pysbx.sandbox import layercopy


def folder_fd(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def copy(source: Path, target: Path) -> None:
    parent, into = folder_fd(source.parent), folder_fd(target.parent)
    try:
        layercopy.copy_tree(parent, source.name, into, target.name)
    finally:
        os.close(parent)
        os.close(into)


def test_a_tree_comes_across_whole_and_links_are_not_followed(tmp_path: Path) -> None:
    source, outside = tmp_path / "upper", tmp_path / "outside"
    (source / "sub").mkdir(parents=True)
    outside.write_text("secret")
    (source / "a").write_text("data")
    os.link(source / "a", source / "sub" / "b")
    (source / "sub" / "link").symlink_to(outside)
    (source / "escape").symlink_to("../outside")
    os.mkfifo(source / "fifo")
    with open(source / "sparse", "wb") as sparse:
        sparse.seek(1 << 40)
        sparse.write(b"x")
    (source / "a").chmod(0o4710)
    os.utime(source / "sub", ns=(10**18, 10**18))
    try:
        os.setxattr(source / "a", "user.overlay.opaque", b"y")
        has_xattrs = True
    except OSError:
        has_xattrs = False
    copy(source, tmp_path / "copy")
    target = tmp_path / "copy"
    assert (target / "a").read_text() == "data" and stat.S_IMODE((target / "a").stat().st_mode) == 0o4710
    assert (target / "a").stat().st_ino == (target / "sub" / "b").stat().st_ino  # one file, two names
    assert os.readlink(target / "sub" / "link") == str(outside) and os.readlink(target / "escape") == "../outside"
    assert stat.S_ISFIFO((target / "fifo").lstat().st_mode)
    assert (target / "sparse").stat().st_size == (1 << 40) + 1 and (target / "sparse").stat().st_blocks < 1024
    assert (target / "sub").stat().st_mtime_ns == 10**18
    if has_xattrs:
        assert os.getxattr(target / "a", "user.overlay.opaque") == b"y"
    assert outside.read_text() == "secret"


def test_a_tree_nested_too_deep_is_refused_in_one_sentence(tmp_path: Path) -> None:
    deep = tmp_path / "upper"
    deep.mkdir()
    os.chdir(deep)
    try:
        for _ in range(layercopy.MAX_DEPTH + 2):  # relative steps: the path outgrows PATH_MAX
            os.mkdir("d")
            os.chdir("d")
    finally:
        os.chdir(tmp_path)
    with pytest.raises(layercopy.LayerCopyError) as raised:
        copy(deep, tmp_path / "copy")
    assert raised.value.errno == errno.ELOOP and f"deeper than {layercopy.MAX_DEPTH} levels" in str(raised.value)


def test_a_save_replaces_the_saved_copy_only_when_complete(tmp_path: Path) -> None:
    tmpfs, disk = tmp_path / "tmpfs", tmp_path / "disk"
    (tmpfs / "upper").mkdir(parents=True)
    disk.mkdir()
    (tmpfs / "upper" / "first").write_text("1")
    fds = folder_fd(tmpfs), folder_fd(disk)
    try:
        layercopy.save(*fds)
        assert sorted(os.listdir(disk)) == ["upper"] and (disk / "upper" / "first").exists()
        (tmpfs / "upper" / "first").unlink()
        (tmpfs / "upper" / "second").write_text("2")
        layercopy.save(*fds)
        assert sorted(os.listdir(disk)) == ["upper"] and os.listdir(disk / "upper") == ["second"]
        os.rename(disk / "upper", disk / "upper.old")  # a save interrupted between its renames
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        into = folder_fd(fresh)
        try:
            assert layercopy.restore(fds[1], into) == "" and os.listdir(fresh / "upper") == ["second"]
        finally:
            os.close(into)
        (tmpfs / "upper").joinpath(*["d"] * (layercopy.MAX_DEPTH + 2)).mkdir(parents=True)
        with pytest.raises(layercopy.LayerCopyError):
            layercopy.save(*fds)
        assert os.listdir(disk / "upper") == ["second"]  # the copy kept before stays (found by review)
        again = tmp_path / "again"
        again.mkdir()
        into = folder_fd(again)
        try:
            note = layercopy.restore(fds[1], into)
        finally:
            os.close(into)
        assert "not saved whole" in note and os.listdir(again / "upper") == ["second"]
    finally:
        for fd in fds:
            os.close(fd)


def test_hard_links_deeper_than_path_max_take_little_memory(tmp_path: Path) -> None:
    """Found by review: the link table held every linked file's full path (65 KB each at
    250 levels of 255-character names: 8x the layer's size in memory), and a link deeper
    than PATH_MAX failed the whole save."""
    import tracemalloc

    source = tmp_path / "upper"
    deep = folder_fd(tmp_path)
    os.mkdir("upper", dir_fd=deep)
    steps = ["upper", *["n" * 255] * 200]
    for step in steps[1:]:
        os.mkdir(step, dir_fd=(parent := os.open(steps[0], os.O_RDONLY | os.O_DIRECTORY, dir_fd=deep)))
        os.close(deep)
        deep, steps = parent, steps[1:]
    flat = source / "flat"
    flat.mkdir()
    for number in range(2000):
        os.close(os.open(f"f{number}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=deep))
        os.link(f"f{number}", flat / f"f{number}", src_dir_fd=deep)
    os.close(deep)
    tracemalloc.start()
    try:
        copy(source, tmp_path / "copy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, peak
    assert os.stat(tmp_path / "copy" / "flat" / "f7").st_nlink == 2


def test_sockets_become_whiteouts_and_file_capabilities_stay(tmp_path: Path) -> None:
    """Found by review: a socket in an image file's place was dropped, and the image's file
    came back; chown after the xattrs cleared security.capability."""
    import socket
    import struct

    source = tmp_path / "upper"
    source.mkdir()
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(source / "sock"))
    (source / "tool").write_bytes(b"x")
    capability = struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0)  # v2, effective: cap_net_bind_service
    try:
        os.setxattr(source / "tool", "security.capability", capability)
    except PermissionError:
        capability = b""  # an ordinary user sets no file capability
    copy(source, tmp_path / "copy")
    kept = (tmp_path / "copy" / "sock").lstat()
    assert stat.S_ISCHR(kept.st_mode) and kept.st_rdev == 0
    if capability:
        assert os.getxattr(tmp_path / "copy" / "tool", "security.capability") == capability

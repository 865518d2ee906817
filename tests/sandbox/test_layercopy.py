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
            assert layercopy.restore(fds[1], into) and os.listdir(fresh / "upper") == ["second"]
        finally:
            os.close(into)
        (tmpfs / "upper").joinpath(*["d"] * (layercopy.MAX_DEPTH + 2)).mkdir(parents=True)
        with pytest.raises(layercopy.LayerCopyError):
            layercopy.save(*fds)
        assert os.listdir(disk) == []  # nothing older than the run it follows stays saved
    finally:
        for fd in fds:
            os.close(fd)

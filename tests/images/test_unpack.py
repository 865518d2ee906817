"""What unpacking costs, and what its shortcuts must not change.

Costs are counted from the audit events Python raises for its system calls (`open`,
`os.chown`, `os.chmod`, `os.utime`), hooked in a child process so that the hook does not
outlive the test: a chain of folders costs directory opens in proportion to its depth (it
cost N²/2 once), and a new file that already has its owner and mode from being created
costs no chown and no chmod. The shortcuts behind that must leave every owner, mode and
time as the entries say, whatever the umask, a set-group-ID target or a default ACL on it."""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pysbx.images import open_image
from pysbx.images.extract import _RootResolver, unpack_image
from tests.imagekit import T, image_of, write_image

REPO = Path(__file__).resolve().parents[2]

_COUNT = """
import collections, json, os, resource, sys
from pathlib import Path
from pysbx.images import open_image
from pysbx.images.extract import unpack_image

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
os.umask(0o022)
image = open_image(sys.argv[1])
counts = collections.Counter()
counting = False

def hook(event, args):
    if not counting:
        return
    if event == "open" and isinstance(args[2], int) and args[2] & os.O_PATH:
        counts["directory opens"] += 1
    elif event in ("os.chown", "os.chmod", "os.utime"):
        counts[event] += 1

sys.addaudithook(hook)
counting = True
unpack_image(image, Path(sys.argv[2]))
counting = False
print(json.dumps(counts))
"""


def unpack_counting(image: str, target: Path) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _COUNT, image, str(target)], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr
    counts: dict[str, int] = json.loads(done.stdout)
    return counts


def chain(depth: int) -> list[T]:
    """`depth` nested folders, each with its own entry, and a file at the bottom."""
    folders = ["/".join(["d"] * level) for level in range(1, depth + 1)]
    return [T(folder, "dir") for folder in folders] + [T(folders[-1] + "/leaf", data=b"x")]


def test_a_deep_chain_costs_directory_opens_in_proportion_to_its_depth(tmp_path: Path) -> None:
    """1,500 levels: about 1,500 directory opens (one per level; finishing the folders
    deepest first reuses the chain above them), where resolving every parent from the root
    took ~2.2 million and 5 s. 375 levels cost a quarter of that, not a sixteenth."""
    opens = {}
    for depth in (375, 1500):
        reference = write_image(image_of(chain(depth), compression="none"), tmp_path / f"image{depth}", "oci-layout")
        opens[depth] = unpack_counting(reference, tmp_path / f"root{depth}")["directory opens"]
        subprocess.run(["rm", "-rf", "--", str(tmp_path / f"root{depth}")], check=True)
    assert opens[1500] <= 2 * 1500, opens
    assert opens[1500] < 8 * opens[375], opens


def test_a_new_file_with_our_owner_and_a_plain_mode_is_neither_chowned_nor_chmodded(tmp_path: Path) -> None:
    """Created with its mode (umask 022 takes nothing from 644 or 755) and owned by us
    already: only its time is set. A set-uid file is still chmodded, one of another owner
    chowned and chmodded."""
    uid, gid = os.geteuid(), os.getegid()
    plain = [T(f"plain/{i}", data=b"p", mode=0o644 if i % 2 else 0o755, uid=uid, gid=gid) for i in range(20)]
    special = [
        T("special/setuid", data=b"s", mode=0o4755, uid=uid, gid=gid),
        T("special/foreign", data=b"f", uid=uid + 1),
    ]
    counts = unpack_counting(write_image(image_of(plain), tmp_path / "plain", "oci-layout"), tmp_path / "plain-root")
    assert (counts.get("os.chown", 0), counts.get("os.chmod", 0), counts.get("os.utime", 0)) == (0, 0, 20), counts
    counts = unpack_counting(write_image(image_of(special), tmp_path / "special", "oci-layout"), tmp_path / "sp-root")
    assert (counts.get("os.chown", 0), counts.get("os.chmod", 0)) == (1, 2), counts


# -- the shortcuts change nothing ------------------------------------------------------------
MODES = (0o644, 0o755, 0o600, 0o000, 0o444, 0o664, 0o666, 0o777, 0o4755, 0o2755, 0o1755, 0o640)


def owners() -> list[tuple[int, int]]:
    ours = (os.geteuid(), os.getegid())
    return [ours, (1000, 1000), (0, 1000), (1000, 0)] if ours == (0, 0) else [ours]


def every_mode_and_owner() -> list[T]:
    uid, gid = os.geteuid(), os.getegid()  # folders anyone can be given (an ordinary user cannot chown to 0)
    entries = [T(name, "dir", mode=0o755, uid=uid, gid=gid) for name in ("f", "p", "l")]
    for i, mode in enumerate(MODES):
        for j, (uid, gid) in enumerate(owners()):
            entries.append(T(f"f/{i}-{j}", data=b"x", mode=mode, uid=uid, gid=gid, mtime=1_600_000_000 + i))
            entries.append(T(f"p/{i}-{j}", "fifo", mode=mode & 0o777, uid=uid, gid=gid, mtime=1_600_000_000 + j))
            entries.append(T(f"l/{i}-{j}", "symlink", link="target", uid=uid, gid=gid, mtime=1_600_000_000 + i))
    return entries


def assert_as_the_entries_say(root: Path, entries: list[T]) -> None:
    for entry in entries:
        info = (root / entry.name).lstat()
        got = (info.st_uid, info.st_gid, info.st_mtime_ns // 10**9)
        assert got == (entry.uid, entry.gid, entry.mtime), (entry.name, got)
        if entry.kind != "symlink":
            assert stat.S_IMODE(info.st_mode) == entry.mode, (entry.name, oct(info.st_mode))


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o000, 0o002, 0o277], ids=lambda mask: f"umask-{mask:03o}")
def test_owners_modes_and_times_are_the_entries_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    entries = every_mode_and_owner()
    image = open_image(write_image(image_of(entries), tmp_path, "oci-layout"))  # written under the usual umask
    with umask(mask):
        unpack_image(image, tmp_path / "root")
    assert_as_the_entries_say(tmp_path / "root", entries)


@pytest.mark.skipif(os.geteuid() != 0, reason="gives the target a group we are not in")
def test_a_set_group_id_target_lends_its_group_to_nothing(tmp_path: Path) -> None:
    """What is created in a set-group-ID folder takes the folder's group, not ours: a file
    the entries give our group must still be chowned to it."""
    entries = every_mode_and_owner()
    target = tmp_path / "root"
    target.mkdir()
    os.chown(target, -1, 50)
    target.chmod(0o2775)
    unpack_image(open_image(write_image(image_of(entries), tmp_path, "oci-layout")), target)
    assert_as_the_entries_say(target, entries)


def test_a_default_acl_on_the_target_does_not_change_modes(tmp_path: Path) -> None:
    """A default ACL replaces the umask for what is created below it (here: nothing for
    others): a file cannot be created with its mode and left at that."""
    target = tmp_path / "root"
    target.mkdir()
    acl = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, 0xFFFFFFFF) for tag, perm in [(1, 7), (4, 5), (0x20, 0)]
    )
    try:
        os.setxattr(target, "system.posix_acl_default", acl)
    except OSError as error:
        pytest.skip(f"no POSIX ACLs here: {error.strerror}")
    entries = every_mode_and_owner()
    unpack_image(open_image(write_image(image_of(entries), tmp_path, "oci-layout")), target)
    assert_as_the_entries_say(target, entries)


# -- the resolver's open directories ---------------------------------------------------------
def test_a_directory_replaced_under_the_resolver_is_not_used_once_it_is_told(tmp_path: Path) -> None:
    """invalidate() drops every directory held open: `a/b` replaced by a symlink to `/x`,
    `a/b/c` is then made as `/x/c` inside the root, not looked up in the removed folder.
    A descriptor handed out before stays usable until release() (the entry being made may
    still be using it as its parent)."""
    root = tmp_path / "root"
    (root / "a/b/c").mkdir(parents=True)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    resolver = _RootResolver(root_fd)
    try:
        held = resolver.directory("a/b/c", False, "test")
        assert held is not None
        subprocess.run(["rm", "-r", "--", str(root / "a/b")], check=True)
        os.symlink("/x", root / "a/b")
        resolver.invalidate()
        os.fstat(held)  # still open
        resolver.release()
        found = resolver.directory("a/b/c", True, "test")
        assert found is not None
        assert os.path.samestat(os.fstat(found), (root / "x/c").stat())
    finally:
        resolver.close()
        os.close(root_fd)


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_a_sparse_file_unpacks_with_its_data_and_its_holes(tmp_path: Path, fmt: str) -> None:
    """Data written by descriptor, a sparse member's runs at their offsets: the content is
    the file GNU tar read, and the holes are not written out as zeros."""
    import shutil

    from pysbx.images.writer import NewImage, NewLayer

    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    source = tmp_path / "src"
    source.mkdir()
    with open(source / "s", "wb") as sparse:
        for offset, word in ((1 << 20, b"hello"), (8 << 20, b"world")):
            sparse.seek(offset)
            sparse.write(word)
        sparse.truncate(16 << 20)
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", "layer.tar", "s"], cwd=source, check=True)
    layer = (source / "layer.tar").read_bytes()
    image = open_image(write_image(NewImage([NewLayer(layer, "none")]), tmp_path, "oci-layout"))
    unpack_image(image, tmp_path / "root")
    unpacked = tmp_path / "root" / "s"
    assert unpacked.read_bytes() == (source / "s").read_bytes()
    assert unpacked.stat().st_blocks * 512 < 1 << 20  # 16 MiB long, a few blocks stored

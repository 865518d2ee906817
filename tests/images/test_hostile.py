"""A hostile-archive corpus, built by the tests: whatever a layer holds, `unpack_image`
creates or changes nothing outside its target.

Every case ends in one of two ways, and its docstring says which:
  * ERROR: a clear `ImageError` whose message names the layer and the entry (never an
    OSError, RecursionError, MemoryError...), and the target is left empty;
  * SAFE: a documented outcome inside the target.
In both, everything around the target (the target's parent, a `victim/` folder beside the
target, the image itself) is unchanged: names, bytes, modes, owners, inodes, link counts,
modification and change times (`Arena.outside`)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pwd
import resource
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from pysbx.images import ImageError, open_image
from pysbx.images.extract import UnpackOptions, UnpackReport, unpack_image
from pysbx.images.writer import NewImage, NewLayer
from tests.imagekit import T, image_of, make_tar, snapshot, write_image

REPO = Path(__file__).resolve().parents[2]
SECRET = b"do not touch"
Outcome = UnpackReport | ImageError


# -- the arena: a target with a victim beside it ---------------------------------------------
@dataclass
class Arena:
    """tmp/arena/{victim/, root/} plus tmp/images/: `root` is the target, everything else
    must survive every attack untouched."""

    base: Path
    count: int = 0

    @property
    def parent(self) -> Path:
        return self.base / "arena"

    @property
    def target(self) -> Path:
        return self.parent / "root"

    @property
    def victim(self) -> Path:
        return self.parent / "victim"

    def setup(self) -> Arena:
        (self.victim / "dir").mkdir(parents=True)
        (self.victim / "secret").write_bytes(SECRET)
        (self.victim / "dir/inner").write_bytes(b"inner")
        os.symlink("secret", self.victim / "alias")
        (self.base / "images").mkdir()
        return self

    def image(self, image: NewImage) -> str:
        """Write `image` as an OCI layout beside the arena; return its IMAGE argument."""
        self.count += 1
        directory = self.base / "images" / str(self.count)
        directory.mkdir()
        return write_image(image, directory, "oci-layout")

    def outside(self) -> dict[str, tuple[object, ...]]:
        """Everything under the temporary folder except the target's contents, walked
        without recursion (the target may be deep): full lstat identity and content."""
        state: dict[str, tuple[object, ...]] = {}
        pending = [self.base]
        while pending:
            path = pending.pop()
            info = path.lstat()
            content: bytes | str | None = None
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = path.read_bytes()
            key = str(path.relative_to(self.base))
            state[key] = (info.st_mode, info.st_size, info.st_ino, info.st_nlink, info.st_uid, info.st_gid,
                          info.st_mtime_ns, info.st_ctime_ns, content)  # fmt: skip
            if stat.S_ISDIR(info.st_mode) and path != self.target:
                pending.extend(path.iterdir())
        state.pop(str(self.target.relative_to(self.base)), None)
        return state

    def unpack(
        self, reference: str | NewImage, options: UnpackOptions | None = None, precreate: bool = True
    ) -> Outcome:
        """Unpack, and prove that nothing outside the target changed. With `precreate` the
        target exists (empty) beforehand, so even the parent's mtime must stay the same."""
        if isinstance(reference, NewImage):
            reference = self.image(reference)
        if precreate:
            self.target.mkdir(exist_ok=True)
        before = self.outside()
        victim_before = snapshot(self.victim)
        try:
            outcome: Outcome = unpack_image(open_image(reference), self.target, options)
        except ImageError as error:
            outcome = error
        after = self.outside()
        if not precreate:  # creating and removing the target touches its parent's times
            for state in (before, after):
                state["arena"] = state["arena"][:6]
        assert snapshot(self.victim) == victim_before, "the victim changed"
        assert after == before, "something outside the target changed"
        if isinstance(outcome, ImageError):
            emptied = not any(self.target.iterdir()) if precreate else not self.target.exists()
            assert emptied, "the target was not emptied (or removed) after an error"
        return outcome


@pytest.fixture
def arena(tmp_path: Path) -> Arena:
    return Arena(tmp_path).setup()


def ok(outcome: Outcome) -> UnpackReport:
    assert isinstance(outcome, UnpackReport), f"expected a safe outcome, got: {outcome!r}"
    return outcome


def refused(outcome: Outcome, *needles: str) -> str:
    """The outcome is an ImageError naming the layer and every needle (entry, reason)."""
    assert isinstance(outcome, ImageError), f"expected an ImageError, got {outcome!r}"
    message = str(outcome)
    assert "layer 1" in message or "layer 2" in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def up_to(arena: Arena, start: str) -> str:
    """The relative link from `start` (a folder inside the target) to the real victim: what
    a naive extractor would follow out of the target."""
    return os.path.relpath(arena.victim, arena.target / start)


def dotted_absolute(arena: Arena) -> str:
    """`/../../..<host path of the victim>`: absolute, climbing, and hitting the victim."""
    return "/" + "../" * 6 + str(arena.victim).lstrip("/")


def inside(arena: Arena, host_path: Path) -> Path:
    """Where a host-absolute path lands when resolved with the target as `/`."""
    return arena.target / str(host_path).lstrip("/")


# -- 1. `..` names -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["../victim/x", "a/../../x", "../victim/secret", "./../x", "a/b/../../../victim/x", "/../victim/x"]
)
def test_dot_dot_names_are_refused(arena: Arena, name: str) -> None:
    """ERROR: "climbs out of the root", naming the entry; nothing written, even the
    entries before it are removed again."""
    outcome = arena.unpack(image_of([T("before", data=b"x"), T(name, data=b"evil")]))
    refused(outcome, "climbs out of the root", repr(name))


# -- 2. absolute names ---------------------------------------------------------------------
def test_absolute_names_land_inside_the_target(arena: Arena) -> None:
    """SAFE: a leading `/` means the image's root (as Docker reads it): `/etc/passwd` is
    written to TARGET/etc/passwd, the host path of the victim to TARGET/<that path>."""
    host_secret = arena.victim / "secret"
    layer = [T("/victim/x", data=b"v"), T("/etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
             T(str(host_secret), data=b"inside"), T("//victim///y/./", data=b"y")]  # fmt: skip
    ok(arena.unpack(image_of(layer)))
    assert (arena.target / "victim/x").read_bytes() == b"v"
    assert (arena.target / "victim/y").read_bytes() == b"y"
    assert (arena.target / "etc/passwd").read_bytes().startswith(b"root:x:0:0")
    assert inside(arena, host_secret).read_bytes() == b"inside"


# -- 3. symlinks that point out, written through --------------------------------------------
def _outward_links(arena: Arena) -> dict[str, tuple[str, str, Path]]:
    """name -> (folder of the link, link target, where a write through it must land)."""
    return {
        "host-absolute": ("", str(arena.victim), inside(arena, arena.victim)),
        "dotted-absolute": ("", dotted_absolute(arena), inside(arena, arena.victim)),
        "relative": ("sub", up_to(arena, "sub"), arena.target / "victim"),
        "root": ("", "/", arena.target),
    }


@pytest.mark.parametrize("kind", ["host-absolute", "dotted-absolute", "relative", "root"])
@pytest.mark.parametrize("later_layer", [False, True], ids=["same-layer", "later-layer"])
def test_writing_through_an_outward_symlink_stays_inside(arena: Arena, kind: str, later_layer: bool) -> None:
    """SAFE: the link is kept as it is (it is data), but `link/secret` and `link/new` are
    resolved as if the target were `/`: an absolute link restarts at the target, `..`
    stops there. The victim's `secret` is not overwritten, no `new` appears beside it."""
    folder, link_target, lands = _outward_links(arena)[kind]
    link = f"{folder}/link" if folder else "link"
    links = [T(folder, "dir")] if folder else []
    links.append(T(link, "symlink", link=link_target))
    writes = [T(f"{link}/secret", data=b"written through"), T(f"{link}/dir/inner", data=b"deep"),
              T(f"{link}/new", data=b"new")]  # fmt: skip
    image = image_of(links, writes) if later_layer else image_of(links + writes)
    ok(arena.unpack(image))
    assert os.readlink(arena.target / link) == link_target
    assert (lands / "secret").read_bytes() == b"written through"
    assert (lands / "dir/inner").read_bytes() == b"deep"
    assert (lands / "new").read_bytes() == b"new"


@pytest.mark.parametrize("later_layer", [False, True], ids=["same-layer", "later-layer"])
def test_a_file_named_like_an_outward_symlink_replaces_the_link(arena: Arena, later_layer: bool) -> None:
    """SAFE: a regular-file entry with a symlink's name replaces the link; it is never
    written through it to the file the link points at."""
    secret = arena.victim / "secret"
    links = [T("s", "symlink", link=str(secret)), T("r", "symlink", link=up_to(arena, "") + "/secret")]
    files = [T("s", data=b"plain file"), T("r", data=b"plain too")]
    ok(arena.unpack(image_of(links, files) if later_layer else image_of(links + files)))
    for name, data in (("s", b"plain file"), ("r", b"plain too")):
        assert not (arena.target / name).is_symlink()
        assert (arena.target / name).read_bytes() == data


def test_a_hard_link_named_through_an_outward_symlink_stays_inside(arena: Arena) -> None:
    """SAFE: the hard link's *name* (`out/h`) is resolved inside the target like any other
    name, and so is its link target (`out/secret`): both inside, the victim's link count
    unchanged (Arena.outside compares st_nlink and st_ctime)."""
    layer = [T("out", "symlink", link=str(arena.victim)), T("out/secret", data=b"inner copy"),
             T("out/h", "hardlink", link="out/secret"), T("h2", "hardlink", link="out/secret"),
             T("rel", "symlink", link=up_to(arena, "")), T("rel/h3", "hardlink", link="rel/../out/secret")]  # fmt: skip
    ok(arena.unpack(image_of(layer)))
    lands = inside(arena, arena.victim)
    assert (lands / "h").read_bytes() == (arena.target / "h2").read_bytes() == b"inner copy"
    assert (arena.target / "victim/h3").read_bytes() == b"inner copy"
    assert (lands / "secret").stat().st_nlink == 4


# -- 4. hard links to outside or to nothing ----------------------------------------------------
@pytest.mark.parametrize(
    ("link", "needle"),
    [
        ("../../victim/secret", "climbs out of the root"),
        ("../victim/secret", "climbs out of the root"),
        ("/victim/secret", "the target is not in the image"),
        ("HOST-ABSOLUTE", "the target is not in the image"),
        ("missing/file", "the target is not in the image"),
        ("missing", "the target is not in the image"),
        ("out/secret", "the target is not in the image"),  # through a symlink to the host victim
        ("outrel/secret", "the target is not in the image"),  # through ../../victim
    ],
)
def test_hard_links_to_outside_or_to_missing_targets_are_refused(arena: Arena, link: str, needle: str) -> None:
    """ERROR: a hard link may only point at something the image itself put in the target
    (absolute link names are read from the target's root), and the victim's link count
    stays the same."""
    link = str(arena.victim / "secret") if link == "HOST-ABSOLUTE" else link
    layer = [T("out", "symlink", link=str(arena.victim)), T("outrel", "symlink", link=up_to(arena, "")),
             T("h", "hardlink", link=link)]  # fmt: skip
    message = refused(arena.unpack(image_of(layer)), needle, "hard link")
    assert "hard link 'h' ->" in message or "hard link /h ->" in message, message
    assert (arena.victim / "secret").stat().st_nlink == 1


def test_an_absolute_hard_link_to_a_file_of_the_image_links_inside(arena: Arena) -> None:
    """SAFE: `/victim/secret` as a link name means the image's own /victim/secret."""
    layer = [T("victim/secret", data=b"image's own"), T("h", "hardlink", link="/victim/secret")]
    ok(arena.unpack(image_of(layer)))
    assert (arena.target / "h").read_bytes() == b"image's own"
    assert os.path.samefile(arena.target / "h", arena.target / "victim/secret")


@pytest.mark.parametrize("replaced", [False, True], ids=["kept", "replaced-later"])
def test_a_hard_link_to_an_outward_symlink_links_the_symlink(arena: Arena, replaced: bool) -> None:
    """SAFE: a hard link to a symlink links the symlink itself (link(2) does not follow),
    never the file it points at; a later file entry with that name replaces it."""
    layer = [T("s", "symlink", link=str(arena.victim / "secret")), T("h", "hardlink", link="s")]
    ok(arena.unpack(image_of(layer, [T("h", data=b"replaced")]) if replaced else image_of(layer)))
    assert os.readlink(arena.target / "s") == str(arena.victim / "secret")
    if replaced:
        assert (arena.target / "h").read_bytes() == b"replaced"
    else:
        assert os.path.samestat((arena.target / "h").lstat(), (arena.target / "s").lstat())


def test_a_hard_link_to_a_directory_is_refused(arena: Arena) -> None:
    """ERROR: directories cannot be hard-linked; the message says so."""
    refused(arena.unpack(image_of([T("d", "dir"), T("h", "hardlink", link="d")])), "/h", "cannot be linked")


# -- 5. device nodes -----------------------------------------------------------------------
def test_device_nodes_are_skipped_with_a_note_and_fifos_made(arena: Arena) -> None:
    """SAFE: char and block devices are never created (not even as root), but listed in
    `skipped_devices` and the report's notes; FIFOs are created inside. A device behind an
    outward symlink is skipped too."""
    layer = [T("dev", "dir"), T("dev/sda", "block"), T("dev/mem", "char"), T("pipe", "fifo", mode=0o640),
             T("link", "symlink", link=str(arena.victim)), T("link/null", "char"), T("link/fifo", "fifo")]  # fmt: skip
    report = ok(arena.unpack(image_of(layer)))
    assert report.skipped_devices == ["dev/sda", "dev/mem", "link/null"]
    assert any("skipped 3 device nodes" in note for note in report.notes())
    assert os.listdir(arena.target / "dev") == []
    assert stat.S_ISFIFO((arena.target / "pipe").lstat().st_mode)
    assert stat.S_IMODE((arena.target / "pipe").lstat().st_mode) == 0o640
    assert stat.S_ISFIFO(inside(arena, arena.victim / "fifo").lstat().st_mode)
    assert report.fifos == 2


# -- 6. duplicate entries ------------------------------------------------------------------
def test_the_same_file_twice_the_later_wins(arena: Arena) -> None:
    """SAFE: the second entry replaces the first (a new inode: a hard link to the first
    keeps the old content, as with tar)."""
    layer = [T("a", data=b"one"), T("h", "hardlink", link="a"), T("a", data=b"two", mode=0o600)]
    ok(arena.unpack(image_of(layer)))
    assert (arena.target / "a").read_bytes() == b"two"
    assert stat.S_IMODE((arena.target / "a").stat().st_mode) == 0o600
    assert (arena.target / "h").read_bytes() == b"one"


def test_a_file_then_a_directory(arena: Arena) -> None:
    """SAFE: the directory replaces the file."""
    ok(arena.unpack(image_of([T("b", data=b"file"), T("b", "dir"), T("b/c", data=b"c")])))
    assert (arena.target / "b/c").read_bytes() == b"c"


@pytest.mark.parametrize("later_layer", [False, True], ids=["same-layer", "later-layer"])
def test_a_directory_then_a_file(arena: Arena, later_layer: bool) -> None:
    """SAFE: the file replaces the directory and all below it, subdirectories included
    (whose recorded metadata must not be applied once they are gone)."""
    tree = [T("d", "dir"), T("d/sub", "dir", mode=0o700), T("d/sub/deeper", "dir"), T("d/e", data=b"e")]
    file = [T("d", data=b"now a file")]
    ok(arena.unpack(image_of(tree, file) if later_layer else image_of(tree + file)))
    assert (arena.target / "d").read_bytes() == b"now a file"


def test_a_directory_then_an_outward_symlink_then_a_file_through_it(arena: Arena) -> None:
    """SAFE: the symlink replaces the directory; what is then written under its name lands
    inside the target, and the old subdirectories' metadata is applied to nothing."""
    layer = [T("d", "dir"), T("d/dir", "dir", mode=0o500), T("d", "symlink", link=str(arena.victim)),
             T("d/secret", data=b"inside"), T("d/dir/inner", data=b"inner")]  # fmt: skip
    ok(arena.unpack(image_of(layer)))
    assert inside(arena, arena.victim / "secret").read_bytes() == b"inside"
    assert stat.S_IMODE(inside(arena, arena.victim / "dir").stat().st_mode) != 0o500


def test_a_symlink_then_a_file(arena: Arena) -> None:
    """SAFE: the file replaces the symlink (to the victim), it is not written through."""
    ok(arena.unpack(image_of([T("s", "symlink", link=str(arena.victim / "secret")), T("s", data=b"mine")])))
    assert not (arena.target / "s").is_symlink() and (arena.target / "s").read_bytes() == b"mine"


@pytest.mark.parametrize("kind", ["host-absolute", "dotted-absolute", "relative", "root"])
@pytest.mark.parametrize("later_layer", [False, True], ids=["same-layer", "later-layer"])
def test_folders_held_open_then_replaced_by_an_outward_symlink(arena: Arena, kind: str, later_layer: bool) -> None:
    """SAFE: after `a/b/c/d/` was written into (the unpacker holds a, a/b, a/b/c and
    a/b/c/d open), `a/b` becomes a symlink out of the target: what is then written below
    `a/b/` follows the link as if the target were `/`, never into the removed folders and
    never outside."""
    link_target, lands = {
        "host-absolute": (str(arena.victim), inside(arena, arena.victim)),
        "dotted-absolute": (dotted_absolute(arena), inside(arena, arena.victim)),
        "relative": (up_to(arena, "a"), arena.target / "victim"),
        "root": ("/", arena.target),
    }[kind]
    before = [T("a/b/c/d/one", data=b"1"), T("a/b/c/two", data=b"2")]
    swap = [T("a/b", "symlink", link=link_target), T("a/b/c/d/three", data=b"3"), T("a/b/secret", data=b"inside"),
            T("a/b/c/four", data=b"4")]  # fmt: skip
    ok(arena.unpack(image_of(before, swap) if later_layer else image_of(before + swap)))
    assert os.readlink(arena.target / "a/b") == link_target
    assert (lands / "c/d/three").read_bytes() == b"3"
    assert (lands / "secret").read_bytes() == b"inside"
    assert (lands / "c/four").read_bytes() == b"4"


def test_a_symlink_written_through_then_replaced_by_a_folder(arena: Arena) -> None:
    """SAFE: `l` -> `real` was written through (`l/x/` resolved to `real/x/`); once `l` is a
    folder of its own, `l/x/two` lands in it, not in `real/x/`."""
    layer = [T("real", "dir"), T("l", "symlink", link="real"), T("l/x/one", data=b"1"), T("l", "dir"),
             T("l/x/two", data=b"2")]  # fmt: skip
    ok(arena.unpack(image_of(layer)))
    assert (arena.target / "real/x/one").read_bytes() == b"1"
    assert (arena.target / "l/x/two").read_bytes() == b"2"
    assert not (arena.target / "real/x/two").exists()


@pytest.mark.parametrize("replaced", ["symlink", "folder"])
def test_a_hard_link_replacing_a_symlink_or_a_folder(arena: Arena, replaced: str) -> None:
    """SAFE: `d/x` (an outward symlink, or a folder) is replaced by a hard link to `s/f`:
    removing it drops the folders held open, but not `d/`'s descriptor while the link is
    made in it (looking up `s/` closed it: EBADF). The victim's link count is unchanged."""
    there = T("d/x", "symlink", link=str(arena.victim / "secret")) if replaced == "symlink" else T("d/x/in", data=b"i")
    ok(arena.unpack(image_of([T("d", "dir"), T("s/f", data=b"file"), there, T("d/x", "hardlink", link="s/f")])))
    assert os.path.samefile(arena.target / "d/x", arena.target / "s/f")


def test_dot_dots_met_below_folders_held_open_stop_at_the_root(arena: Arena) -> None:
    """SAFE: with a/b/c/d/ held open, `a/b/c/d/up` -> six `..` then `victim` is the
    target's own /victim: the walk up from a held folder stops at the target."""
    layer = [T("a/b/c/d/one", data=b"1"), T("a/b/c/d/up", "symlink", link="../" * 6 + "victim"),
             T("a/b/c/d/up/secret", data=b"inside")]  # fmt: skip
    ok(arena.unpack(image_of(layer)))
    assert (arena.target / "victim/secret").read_bytes() == b"inside"


# -- 7. long and non-UTF-8 names -------------------------------------------------------------
def _open_deep(root: Path, parts: list[str]) -> bytes:
    """Read a file whose path is too long for one system call, a component at a time."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        with open(leaf, "rb") as file:
            return file.read()
    finally:
        os.close(fd)


def test_a_255_byte_component_is_fine(arena: Arena) -> None:
    """SAFE: NAME_MAX is 255 bytes: such a name (file and folder) is created as it is."""
    name = "n" * 255
    ok(arena.unpack(image_of([T(name, data=b"ok"), T(f"d/{name}", data=b"in dir")])))
    assert (arena.target / name).read_bytes() == b"ok"
    assert (arena.target / "d" / name).read_bytes() == b"in dir"


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_300_byte_component_is_a_clear_error(arena: Arena, where: str) -> None:
    """ERROR: a component longer than NAME_MAX cannot exist; the message names the entry
    (an ImageError, not a bare OSError)."""
    name = "m" * 300 if where == "file" else "m" * 300 + "/x"
    refused(arena.unpack(image_of([T(name, data=b"no")])), "m" * 300, "File name too long")


def test_a_5000_byte_path_is_created_component_by_component(arena: Arena) -> None:
    """SAFE: paths are resolved a component at a time, so a path longer than PATH_MAX
    (4096) works; the file is there, readable the same way."""
    parts = [f"{i:02d}" + "p" * 97 for i in range(50)] + ["leaf"]
    path = "/".join(parts)
    assert len(path.encode()) > 5000
    ok(arena.unpack(image_of([T(path, data=b"far down")])))
    assert _open_deep(arena.target, parts) == b"far down"


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_non_utf8_names_round_trip_as_bytes(arena: Arena, fmt: int) -> None:
    """SAFE: names are bytes on disk: b'\\xff\\xfe' in a file name, a folder name and a
    symlink target arrive byte for byte (read back with bytes paths)."""

    def raw(name: bytes) -> str:
        return name.decode("utf-8", "surrogateescape")

    entries = [T(raw(b"caf\xff\xfe"), data=b"bytes"), T(raw(b"dir\xfe/f\xff"), data=b"in"),
               T("link", "symlink", link=raw(b"caf\xff\xfe"))]  # fmt: skip
    layer = make_tar(entries, fmt)
    ok(arena.unpack(NewImage([NewLayer(layer, "gzip")])))
    names = set(os.listdir(bytes(arena.target)))
    assert names == {b"caf\xff\xfe", b"dir\xfe", b"link"}
    assert os.listdir(os.path.join(bytes(arena.target), b"dir\xfe")) == [b"f\xff"]
    assert os.readlink(os.path.join(bytes(arena.target), b"link")) == b"caf\xff\xfe"
    with open(os.path.join(bytes(arena.target), b"caf\xff\xfe"), "rb") as file:
        assert file.read() == b"bytes"


# -- 8. deep nesting -------------------------------------------------------------------------
def test_300_levels_with_every_folder_listed(arena: Arena) -> None:
    """SAFE: 300 nested folders, each with its own entry (and mode), then a file: all made."""
    folders = ["/".join(["d"] * i) for i in range(1, 301)]
    layer = [T(folder, "dir", mode=0o750) for folder in folders] + [T(folders[-1] + "/leaf", data=b"x")]
    report = ok(arena.unpack(image_of(layer)))
    assert report.directories == 300
    assert (arena.target / folders[-1] / "leaf").read_bytes() == b"x"
    assert stat.S_IMODE((arena.target / folders[-1]).stat().st_mode) == 0o750


@contextlib.contextmanager
def _descriptors(needed: int) -> Iterator[None]:
    """Resolution holds one descriptor per level: raise the soft limit if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def deep_arena(arena: Arena) -> Iterator[Arena]:
    """If a deep tree is left behind after all (a regression), remove it with rm, which
    does not recurse: pytest's own clean-up of old temporary folders would hit the
    recursion limit on it in a later run."""
    with _descriptors(2000):
        yield arena
    subprocess.run(["rm", "-rf", "--", str(arena.target)], check=False)


def test_deeper_than_the_recursion_limit_then_an_error(deep_arena: Arena) -> None:
    """ERROR (the `..` entry after it); the 1500-level tree that was already written is
    removed again without a RecursionError, leaving the target empty."""
    deep = "/".join(["d"] * 1500) + "/leaf"
    outcome = deep_arena.unpack(image_of([T(deep, data=b"x"), T("../x", data=b"evil")]))
    refused(outcome, "climbs out of the root")


def test_deeper_than_the_recursion_limit_then_replaced(deep_arena: Arena) -> None:
    """SAFE: a 1500-level tree replaced by a file in the next layer is removed without a
    RecursionError."""
    deep = "/".join(["d"] * 1500) + "/leaf"
    ok(deep_arena.unpack(image_of([T(deep, data=b"x")], [T("d", data=b"flat")])))
    assert (deep_arena.target / "d").read_bytes() == b"flat"


# -- 9. decompression bombs ------------------------------------------------------------------
def _read_blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / digest.replace(":", "/")).read_bytes()


def _put_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest.split(":")[1]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def rewrite_layout(layout: Path, layer_blob: bytes | None = None, diff_id: str | None = None) -> None:
    """Edit the only image of an OCI layout (its first layer's blob, its first diff_id),
    re-describing config, manifest and index so that only the edit is wrong (or nothing)."""
    index = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads(_read_blob(layout, index["manifests"][0]["digest"]))
    config = json.loads(_read_blob(layout, manifest["config"]["digest"]))
    if layer_blob is not None:
        manifest["layers"][0].update(_put_blob(layout, layer_blob))
    if diff_id is not None:
        config["rootfs"]["diff_ids"][0] = diff_id
    manifest["config"].update(_put_blob(layout, json.dumps(config).encode()))
    index["manifests"][0].update(_put_blob(layout, json.dumps(manifest).encode()))
    (layout / "index.json").write_text(json.dumps(index))


def bomb(compression: str, size: int) -> tuple[bytes, str]:
    """A layer of one file of `size` zero bytes, compressed as it streams (never held
    whole): the blob and the diff_id of its tar."""
    info = tarfile.TarInfo("zeros")
    info.size = size
    compressor = (
        zlib.compressobj(9, zlib.DEFLATED, 31)
        if compression == "gzip"
        else zstandard.ZstdCompressor(level=3).compressobj()
    )
    diff = hashlib.sha256()
    out = []
    chunk = bytes(1 << 20)

    def feed(data: bytes) -> None:
        diff.update(data)
        out.append(compressor.compress(data))

    feed(info.tobuf(tarfile.PAX_FORMAT))
    for _ in range(size // len(chunk)):
        feed(chunk)
    feed(bytes(size % len(chunk) + (-size % 512) + 1024))
    out.append(compressor.flush())
    return b"".join(out), "sha256:" + diff.hexdigest()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_decompression_bomb_stops_at_the_ceiling(arena: Arena, compression: str) -> None:
    """ERROR: 200 MiB of zeros (a few hundred KiB compressed, digests all correct) against a
    50 MiB ceiling: the error names the ceiling, and the target (created by the unpack) is
    removed again, with the ~50 MiB already written."""
    blob, diff_id = bomb(compression, 200 * 2**20)
    assert len(blob) < 300 * 1024
    reference = arena.image(image_of([T("placeholder")], compression=compression))
    rewrite_layout(Path(reference), blob, diff_id)
    outcome = arena.unpack(reference, UnpackOptions(max_bytes=50 * 2**20), precreate=False)
    refused(outcome, f"more than {50 * 2**20} uncompressed bytes")


# -- 10. tampering -------------------------------------------------------------------------
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("precreate", [True, False], ids=["target-existed", "target-created"])
def test_a_flipped_byte_in_a_layer_blob(arena: Arena, compression: str, precreate: bool) -> None:
    """ERROR naming the layer's digest (a digest mismatch, or corrupt compressed data
    before that); the entries already written are removed: the target is left empty, or
    removed when the unpack created it."""
    data = bytes(range(256)) * 64
    reference = arena.image(image_of([T("a", data=data), T("b", data=data)], compression=compression))
    layer = open_image(reference).layers[0]
    blob = Path(reference) / layer.location
    tampered = bytearray(blob.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    blob.write_bytes(bytes(tampered))
    refused(arena.unpack(reference, precreate=precreate), layer.digest.short())


def test_a_missing_layer_blob(arena: Arena) -> None:
    """ERROR before anything is written: the layer's blob is missing."""
    reference = arena.image(image_of([T("a", data=b"a")]))
    layer = open_image(reference).layers[0]
    (Path(reference) / layer.location).unlink()
    refused(arena.unpack(reference), "blob is missing", layer.location)


def test_a_config_with_a_wrong_diff_id(arena: Arena) -> None:
    """ERROR naming the expected diff_id once the layer's tar has been read whole; what was
    written is removed."""
    reference = arena.image(image_of([T("a", data=b"a"), T("b", "dir")]))
    wrong = "sha256:" + "0" * 64
    rewrite_layout(Path(reference), diff_id=wrong)
    refused(arena.unpack(reference, precreate=False), wrong, "(diff_id)")


# -- 11. symlink loops -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "links",
    [
        [("a", "b"), ("b", "a")],
        [("s", "s")],
        [("a", "/b"), ("b", "../a")],
        [(f"l{i}", f"l{i + 1}") for i in range(50)] + [("l50", "real")],
    ],
    ids=["a-b-a", "self", "absolute-relative", "chain-of-50"],
)
def test_symlink_loops_and_long_chains_are_refused(arena: Arena, links: list[tuple[str, str]]) -> None:
    """ERROR: "too many levels of symbolic links" (more than 40, as Linux counts), naming
    the layer and the link met on the way (`/a` for the entry `a/x`)."""
    first = links[0][0]
    layer = [T("real", "dir")] + [T(name, "symlink", link=to) for name, to in links] + [T(f"{first}/x", data=b"x")]
    refused(arena.unpack(image_of(layer)), "too many levels of symbolic links", f"/{first}: ")


def test_a_chain_of_30_symlinks_is_followed(arena: Arena) -> None:
    """SAFE: within the limit, a chain is followed to its (inside) end."""
    layer = [T("real", "dir")] + [T(f"l{i}", "symlink", link=f"l{i + 1}") for i in range(30)]
    ok(arena.unpack(image_of([*layer, T("l30", "symlink", link="real"), T("l0/x", data=b"x")])))
    assert (arena.target / "real/x").read_bytes() == b"x"


# -- 12. whiteouts -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "needle"),
    [(".wh...", "names nothing"), (".wh..", "names nothing"), (".wh.", "names nothing"),
     ("../.wh.victim", "climbs out of the root"), ("a/../../.wh.victim", "climbs out of the root")],
)  # fmt: skip
def test_escaping_whiteouts_are_refused(arena: Arena, name: str, needle: str) -> None:
    """ERROR: a whiteout that names `..`, `.` or nothing, or climbs out."""
    refused(arena.unpack(image_of([T("victim", "dir"), T("victim/secret", data=b"s")], [T(name)])), needle)


@pytest.mark.parametrize("kind", ["host-absolute", "dotted-absolute", "relative", "root"])
def test_whiteouts_through_an_outward_symlink_stay_inside(arena: Arena, kind: str) -> None:
    """SAFE: `link/.wh.secret` and `link/.wh.dir` are resolved inside the target: they
    remove what the lower layer put at the link's inside destination (and nothing else
    there), never the real victim's `secret` and `dir`."""
    folder, link_target, lands = _outward_links(arena)[kind]
    link = f"{folder}/link" if folder else "link"
    lower = ([T(folder, "dir")] if folder else []) + [
        T(link, "symlink", link=link_target), T(f"{link}/secret", data=b"lower"), T(f"{link}/dir/inner", data=b"i"),
        T(f"{link}/keep", data=b"k"),
    ]  # fmt: skip
    report = ok(arena.unpack(image_of(lower, [T(f"{link}/.wh.secret"), T(f"{link}/.wh.dir")])))
    assert not (lands / "secret").exists() and not (lands / "dir").exists()
    assert (lands / "keep").read_bytes() == b"k"
    assert report.whiteouts == 2


@pytest.mark.parametrize("kind", ["host-absolute", "dotted-absolute", "relative"])
def test_opaque_markers_through_an_outward_symlink_stay_inside(arena: Arena, kind: str) -> None:
    """SAFE: `link/.wh..wh..opq` empties the link's inside destination of what the lower
    layer put there, and `.wh.victim` at the top removes the image's own /victim if any:
    the real victim keeps every file."""
    folder, link_target, lands = _outward_links(arena)[kind]
    link = f"{folder}/link" if folder else "link"
    lower = ([T(folder, "dir")] if folder else []) + [T(link, "symlink", link=link_target), T(f"{link}/a", data=b"a")]
    ok(arena.unpack(image_of(lower, [T(f"{link}/.wh..wh..opq"), T(".wh.victim")])))
    assert not (lands / "a").exists()


# -- 13. oversized and malformed metadata headers ----------------------------------------------
def raw_header(name: bytes, typeflag: bytes, size: int) -> bytes:
    """A 512-byte ustar header written by hand, its size in base-256 when it does not fit
    the octal field (which tarfile will not write for a PAX header)."""
    size_field = b"%011o\0" % size if size < 8**11 else b"\x80" + size.to_bytes(11, "big")
    header = bytearray(512)
    header[0 : len(name)] = name
    header[100:108] = b"0000644\0"
    header[108:116] = header[116:124] = b"0000000\0"
    header[124:136] = size_field
    header[136:148] = b"%011o\0" % 1_700_000_000
    header[148:156] = b" " * 8
    header[156:157] = typeflag
    header[257:265] = b"ustar\x0000"
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _with_pax(records: bytes, typeflag: bytes = b"x") -> bytes:
    padded = records + bytes(-len(records) % 512)
    return raw_header(b"PaxHeader/f", typeflag, len(records)) + padded + raw_header(b"f", b"0", 0) + bytes(1024)


def _pax_record(key: str, value: bytes) -> bytes:
    body = f" {key}=".encode() + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


@pytest.mark.parametrize(
    "layer",
    [
        _with_pax(_pax_record("comment", b"x" * (2 * 2**20))),
        _with_pax(_pax_record("comment", b"x" * (2 * 2**20)), b"g"),
        make_tar([T("x" * (2 * 2**20), data=b"long")], tarfile.GNU_FORMAT),
        raw_header(b"PaxHeader/f", b"x", 2**40) + bytes(512),
        raw_header(b"././@LongLink", b"L", 2**40) + bytes(512),
    ],
    ids=["pax-2MiB", "global-pax-2MiB", "gnu-longname-2MiB", "pax-declares-1TiB", "gnu-longname-declares-1TiB"],
)
def test_oversized_metadata_headers_are_refused(arena: Arena, layer: bytes) -> None:
    """ERROR: a PAX (local or global) or GNU long-name header over 1 MiB is refused before
    it is read into memory, even when it only declares a terabyte (no MemoryError)."""
    refused(arena.unpack(NewImage([NewLayer(layer, "gzip")])), "metadata header of")


@pytest.mark.parametrize(
    "records",
    [
        b"1" * 200_000,
        b"9" * 200_000 + b" ",
        b"30 hdrcharset=" + b"x" * 200_000,
        b"3 a=\n",
        b"99999999999999999999999 path=x\n",
    ],
    ids=["digits", "digits-space", "unterminated", "short-length", "huge-length"],
)
def test_malformed_pax_records_are_refused_quickly(arena: Arena, records: bytes) -> None:
    """ERROR: "not a valid tar stream"; pathological records (long digit runs) parse in
    linear time (CVE-2024-6232 is fixed in this interpreter)."""
    refused(arena.unpack(NewImage([NewLayer(_with_pax(records), "gzip")])), "not a valid tar stream")


def _pax_entry(name: str, kind: str = "file", **records: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.pax_headers = dict(records)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "target"
        archive.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


def _signed_octal_entry(start: int, field: bytes) -> bytes:
    """A plain ustar member whose numeric field at `start` is written with a sign, which
    tarfile's reading of octal takes ("-001750" is -1000), its checksum made right."""
    header = bytearray(tarfile.TarInfo("f").tobuf(format=tarfile.USTAR_FORMAT))
    header[start : start + len(field)] = field
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + b"\0" * 1024


@pytest.mark.parametrize(
    ("layer", "needle"),
    [
        (_signed_octal_entry(108, b"-001750\0"), "owner"),
        (_signed_octal_entry(124, b"-0000000005\0"), "negative size"),
        (_pax_entry("f", path="a\0b"), "NUL byte"),
        (_pax_entry("l", "symlink", linkpath="/etc\0passwd"), "NUL byte"),
        (_pax_entry("f", mtime="inf"), "modification time"),
        (_pax_entry("f", mtime="nan"), "modification time"),
        (_pax_entry("f", mtime="1e30"), "modification time"),
        (_pax_entry("f", uid="-5"), "owner"),
        (_pax_entry("f", gid="99999999999999999999"), "owner"),
        (_pax_entry("f", uid=str(2**32 - 1)), "owner"),
        (_pax_entry("f", size="-5"), "negative size"),
    ],
    ids=["octal-uid-signed", "octal-size-signed", "nul-in-path", "nul-in-linkpath", "mtime-inf", "mtime-nan", "mtime-1e30", "uid-negative", "gid-huge",
         "uid-minus-one", "size-negative"],
)  # fmt: skip
def test_impossible_header_values_are_refused(arena: Arena, layer: bytes, needle: str) -> None:
    """ERROR naming the entry: PAX records can carry values no file can have (a NUL in a
    name, an owner or time the system calls refuse, a negative size that would make tar
    readers disagree on where the next header is). Without the check these ended in
    ValueError or OverflowError."""
    refused(arena.unpack(NewImage([NewLayer(layer, "gzip")])), needle, "entry ")


# -- as an ordinary user ---------------------------------------------------------------------
ORDINARY_USER = """
import json, os, sys
from pathlib import Path
from pysbx.images import ImageError, open_image
from pysbx.images.extract import unpack_image

arena = Path(sys.argv[1])
results = {}
for image in sorted((arena / "images").iterdir()):
    try:
        report = unpack_image(open_image(str(image / "layout")), arena / "targets" / image.name)
    except ImageError as error:
        results[image.name] = {"error": str(error)}
        continue
    results[image.name] = {"error": None, "skipped": report.skipped_devices, "fifos": report.fifos,
                           "not_kept": report.ownership_not_kept, "recorded": report.ownership_recorded}
probe = arena / "targets" / "probe"
probe.write_bytes(b"")
try:
    os.setxattr(probe, "user.probe", b"1")
    results["xattrs"] = True
except OSError:
    results["xattrs"] = False
print(json.dumps(results))
"""
OWNER_XATTR = "user.containers.override_stat"


def _ordinary_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("needs root, to create and become the ordinary user sbxtest")
    if shutil.which("runuser") is None:
        pytest.skip("needs runuser (util-linux)")
    try:
        return pwd.getpwnam("sbxtest")
    except KeyError:
        made = subprocess.run(["useradd", "-m", "sbxtest"], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot create the user sbxtest: {made.stderr.strip()}")
        return pwd.getpwnam("sbxtest")


def _run_as(user: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [shutil.which("runuser") or "runuser", "-u", user, "--", sys.executable, "-c", code, *args]
    environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=environment, timeout=60)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    for directory, folders, files in os.walk(path):
        for name in [*folders, *files]:
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)
    os.chown(path, uid, gid)


def test_unpacking_as_an_ordinary_user_is_just_as_safe() -> None:
    """As sbxtest, who owns the victim (so a write through a link would succeed): absolute
    names land inside, writes through outward symlinks land inside, hard links to outside
    are refused, devices are skipped and FIFOs made, and ownership that cannot be kept
    (uid 0 and 1000) is counted in `ownership_not_kept` and recorded in an xattr."""
    user = _ordinary_user()
    check = _run_as("sbxtest", "import pysbx.images.extract, zstandard")
    if check.returncode != 0:
        pytest.skip(f"sbxtest cannot run {sys.executable} with the project: {check.stderr.strip()[-300:]}")
    arena = Arena(Path(tempfile.mkdtemp(prefix="pysandbox-hostile-")))
    try:
        arena.setup()
        victim = arena.victim
        targets = arena.base / "targets"
        relative = os.path.relpath(victim, targets / "through/sub")  # ../../../arena/victim
        cases = {
            "absolute": [T("/etc/passwd", data=b"inside"), T(str(victim / "secret"), data=b"inside too")],
            "through": [T("link", "symlink", link=str(victim)), T("link/secret", data=b"through"),
                        T("sub", "dir"), T("sub/rel", "symlink", link=relative),
                        T("sub/rel/secret", data=b"through rel")],
            "hardlink-out": [T("h", "hardlink", link=os.path.relpath(victim / "secret", targets / "hardlink-out"))],
            "hardlink-abs": [T("h", "hardlink", link=str(victim / "secret"))],
            "devices": [T("dev", "dir"), T("dev/null", "char"), T("dev/sda", "block"), T("pipe", "fifo")],
            "owners": [T("etc", "dir"), T("etc/shadow", data=b"s", mode=0o640, uid=0, gid=42),
                       T("home", "dir", uid=1000, gid=1000), T("home/app", data=b"a", uid=1000, gid=1000),
                       T("home/link", "symlink", link="app", uid=1000, gid=1000)],
        }  # fmt: skip
        for name, entries in cases.items():
            (arena.base / "images" / name).mkdir()
            write_image(image_of(entries), arena.base / "images" / name, "oci-layout")
        targets.mkdir()
        _chown_tree(arena.base, user.pw_uid, user.pw_gid)
        before = arena.outside()
        done = _run_as("sbxtest", ORDINARY_USER, str(arena.base))
        assert done.returncode == 0, done.stderr
        results = json.loads(done.stdout)
        after = arena.outside()
        assert {k: v for k, v in after.items() if not k.startswith("targets")} == {
            k: v for k, v in before.items() if not k.startswith("targets")
        }, "something outside the targets changed"
        assert (victim / "secret").read_bytes() == SECRET and (victim / "secret").stat().st_nlink == 1

        assert results["absolute"]["error"] is None
        assert (targets / "absolute/etc/passwd").read_bytes() == b"inside"
        assert (targets / "absolute" / str(victim / "secret").lstrip("/")).read_bytes() == b"inside too"

        assert results["through"]["error"] is None
        assert (targets / "through" / str(victim / "secret").lstrip("/")).read_bytes() == b"through"
        climbed = relative.replace("../", "")  # `..` stops at the target's root
        assert (targets / "through" / climbed / "secret").read_bytes() == b"through rel"

        for name, needle in (("hardlink-out", "climbs out of the root"), ("hardlink-abs", "not in the image")):
            assert results[name]["error"] and needle in results[name]["error"] and "layer 1" in results[name]["error"]
            assert not (targets / name).exists()

        assert results["devices"]["skipped"] == ["dev/null", "dev/sda"] and results["devices"]["fifos"] == 1
        assert os.listdir(targets / "devices/dev") == [] and (targets / "devices/pipe").is_fifo()

        owners = results["owners"]
        assert owners["error"] is None and owners["not_kept"] == 5, owners  # 2 dirs, 2 files, 1 symlink
        shadow = targets / "owners/etc/shadow"
        assert shadow.stat().st_uid == user.pw_uid  # not root's: the unpack could not chown
        if results["xattrs"]:
            assert owners["recorded"] == 4, owners  # a symlink cannot carry a user xattr
            assert os.getxattr(shadow, OWNER_XATTR) == b"0:42:0640"
            assert os.getxattr(targets / "owners/home/app", OWNER_XATTR) == b"1000:1000:0644"
    finally:
        shutil.rmtree(arena.base, ignore_errors=True)

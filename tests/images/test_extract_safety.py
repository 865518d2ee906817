"""Hostile layers: whatever an archive holds, unpacking creates or changes nothing outside
its target. Each case ends in a clear ImageError or a documented safe outcome, and the
folder around the target (with a `victim/` beside it) is byte-for-byte unchanged."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from images import ImageError, open_image
from images.extract import UnpackOptions, unpack_image
from images.writer import NewImage, NewLayer, write_oci_layout
from tests.imagekit import T, make_tar, snapshot


@pytest.fixture
def arena(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret").write_text("do not touch")
    (victim / "dir").mkdir()
    return tmp_path


def unpack(arena: Path, *layers: bytes, max_bytes: int | None = None, compression: str = "gzip") -> tuple[Path, object]:
    image = NewImage([NewLayer(tar, compression) for tar in layers])
    write_oci_layout(arena / "image", [("1", [image])])
    before = snapshot(arena)
    target = arena / "root"
    options = UnpackOptions() if max_bytes is None else UnpackOptions(max_bytes=max_bytes)
    try:
        outcome: object = unpack_image(open_image(str(arena / "image")), target, options)
    except ImageError as error:
        outcome = error
    after = {k: v for k, v in snapshot(arena).items() if not k.startswith(("root", "image"))}
    assert after == {k: v for k, v in before.items() if not k.startswith(("root", "image"))}, (
        "something outside the target changed"
    )
    return target, outcome


def test_dot_dot_names_are_refused(arena: Path) -> None:
    for name in ("../victim/x", "a/../../victim/x", "../../etc/passwd"):
        _, outcome = unpack(arena, make_tar([T(name, data=b"evil")]))
        assert isinstance(outcome, ImageError) and "climbs out of the root" in str(outcome)


def test_absolute_names_land_inside_the_target(arena: Path) -> None:
    """Documented outcome: `/x` means x at the image's root, as Docker reads it."""
    target, outcome = unpack(
        arena, make_tar([T("/victim/secret", data=b"inside"), T("/etc/passwd", data=b"root::0:0")])
    )
    assert not isinstance(outcome, ImageError)
    assert (target / "victim/secret").read_bytes() == b"inside"
    assert (target / "etc/passwd").read_bytes() == b"root::0:0"


@pytest.mark.parametrize("link", ["/../../victim", "../../victim", "HOST-VICTIM", "/"])
def test_a_symlink_out_of_the_root_cannot_be_written_through(arena: Path, link: str) -> None:
    """Documented outcome: the link is created as it is (it is data), but a later entry
    under it is resolved inside the root, as if the root were /."""
    real_link = str(arena / "victim") if link == "HOST-VICTIM" else link  # the victim's real path
    same = make_tar(
        [T("link", "symlink", link=real_link), T("link/secret", data=b"written"), T("link/new", data=b"new")]
    )
    target, outcome = unpack(arena, same)
    assert not isinstance(outcome, ImageError), outcome
    assert os.readlink(target / "link") == real_link
    later_layer = make_tar([T("link2", "symlink", link=real_link)])
    through = make_tar([T("link2/secret", data=b"written later")])
    unpack(arena.joinpath("second").mkdir() or arena / "second", later_layer, through)


def test_an_entry_named_like_an_existing_symlink_replaces_it(arena: Path) -> None:
    target, outcome = unpack(
        arena, make_tar([T("s", "symlink", link=str(arena / "victim/secret")), T("s", data=b"plain file")])
    )
    assert not isinstance(outcome, ImageError)
    assert not (target / "s").is_symlink() and (target / "s").read_bytes() == b"plain file"


def test_a_hard_link_through_an_outward_symlink_stays_inside(arena: Path) -> None:
    layer = make_tar(
        [
            T("out", "symlink", link=str(arena / "victim")),
            T("out/secret", data=b"inner"),
            T("h", "hardlink", link="out/secret"),
        ]
    )
    target, outcome = unpack(arena, layer)
    assert not isinstance(outcome, ImageError), outcome
    assert (target / "h").read_bytes() == b"inner"
    assert os.stat(arena / "victim/secret").st_nlink == 1


@pytest.mark.parametrize(
    ("link", "expected"), [("../../victim/secret", "climbs out"), ("missing/file", "not in the image")]
)
def test_hard_links_to_outside_or_to_missing_targets_are_refused(arena: Path, link: str, expected: str) -> None:
    _, outcome = unpack(arena, make_tar([T("h", "hardlink", link=link)]))
    assert isinstance(outcome, ImageError) and expected in str(outcome)
    assert os.stat(arena / "victim/secret").st_nlink == 1


def test_an_absolute_hard_link_resolves_inside_the_root(arena: Path) -> None:
    _, outcome = unpack(arena, make_tar([T("h", "hardlink", link=str(arena / "victim/secret"))]))
    assert isinstance(outcome, ImageError) and "not in the image" in str(outcome)  # not the host's file


def test_device_nodes_are_skipped_with_a_note_and_fifos_made(arena: Path) -> None:
    target, outcome = unpack(
        arena, make_tar([T("dev", "dir"), T("dev/sda", "block"), T("dev/mem", "char"), T("pipe", "fifo")])
    )
    assert not isinstance(outcome, ImageError)
    assert outcome.skipped_devices == ["dev/sda", "dev/mem"]  # type: ignore[attr-defined]
    assert not (target / "dev/sda").exists() and (target / "pipe").is_fifo()


def test_duplicate_entries_the_later_wins(arena: Path) -> None:
    layer = make_tar(
        [
            T("a", data=b"one"),
            T("a", data=b"two"),
            T("b", data=b"file"),
            T("b", "dir"),
            T("b/c", data=b"c"),
            T("d", "dir"),
            T("d/e", data=b"e"),
            T("d", data=b"now a file"),
        ]
    )
    target, outcome = unpack(arena, layer)
    assert not isinstance(outcome, ImageError)
    assert (
        (target / "a").read_bytes() == b"two"
        and (target / "b/c").read_bytes() == b"c"
        and (target / "d").read_bytes() == b"now a file"
    )


def test_long_deep_and_non_utf8_names(arena: Path) -> None:
    deep = "/".join(["d"] * 300) + "/leaf"
    raw_name = b"caf\xe9-\xff".decode("utf-8", "surrogateescape")
    target, outcome = unpack(
        arena, make_tar([T("n" * 255, data=b"ok"), T(deep, data=b"deep"), T(raw_name, data=b"bytes")])
    )
    assert not isinstance(outcome, ImageError), outcome
    assert (target / ("n" * 255)).read_bytes() == b"ok"
    assert (target / deep).read_bytes() == b"deep"
    assert b"caf\xe9-\xff" in os.listdir(bytes(target))
    _, too_long = unpack(arena.joinpath("x").mkdir() or arena / "x", make_tar([T("m" * 300, data=b"no")]))
    assert isinstance(too_long, ImageError) and "cannot create" in str(too_long)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_decompression_bomb_stops_at_the_ceiling_and_leaves_nothing(arena: Path, compression: str) -> None:
    bomb = make_tar([T("zeros", data=b"\0" * (200 * 1024 * 1024))])
    target, outcome = unpack(arena, bomb, max_bytes=50 * 1024 * 1024, compression=compression)
    assert isinstance(outcome, ImageError) and "decompression bomb" in str(outcome)
    assert not target.exists()


def test_a_tampered_layer_leaves_nothing(arena: Path) -> None:
    image = NewImage([NewLayer(make_tar([T("a", data=b"x" * 5000)]), "none")])
    write_oci_layout(arena / "image", [("1", [image])])
    opened = open_image(str(arena / "image"))
    blob = arena / "image" / opened.layers[0].location
    data = bytearray(blob.read_bytes())
    data[600] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="does not match its digest"):
        unpack_image(open_image(str(arena / "image")), arena / "root")
    assert not (arena / "root").exists()


def test_symlink_loops_are_refused_clearly(arena: Path) -> None:
    _, outcome = unpack(
        arena, make_tar([T("a", "symlink", link="b"), T("b", "symlink", link="a"), T("a/x", data=b"x")])
    )
    assert isinstance(outcome, ImageError) and "too many levels of symbolic links" in str(outcome)


def test_whiteouts_cannot_delete_outside(arena: Path) -> None:
    base = make_tar([T("link", "symlink", link=str(arena / "victim"))])
    whiteouts = make_tar([T("link/.wh.secret"), T(".wh.victim")])
    _, outcome = unpack(arena, base, whiteouts)
    assert not isinstance(outcome, ImageError)
    assert (arena / "victim/secret").read_text() == "do not touch"


def test_a_huge_pax_header_is_refused(arena: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"comment": "x" * (2 * 1024 * 1024)}
        archive.addfile(info, io.BytesIO(b""))
    _, outcome = unpack(arena, buffer.getvalue())
    assert isinstance(outcome, ImageError) and "metadata header" in str(outcome)


ORDINARY_USER_SCRIPT = """
import os, sys
from pathlib import Path
from images import ImageError, open_image
from images.extract import unpack_image
from images.writer import NewImage, NewLayer, write_oci_layout
from tests.imagekit import T, make_tar
arena = Path(sys.argv[1])
layer = make_tar([
    T("/etc/passwd", data=b"inside", uid=0),
    T("link", "symlink", link=str(arena / "victim")), T("link/secret", data=b"through"),
    T("dev", "dir"), T("dev/null", "char"),
    T("home", "dir", uid=1000, gid=1000), T("home/app", data=b"app", uid=1000, gid=1000),
])
write_oci_layout(arena / "image", [("1", [NewImage([NewLayer(layer)])])])
report = unpack_image(open_image(str(arena / "image")), arena / "root")
print(report.skipped_devices, report.ownership_not_kept > 0, (arena / "root/etc/passwd").read_bytes())
"""


def test_unpacking_as_an_ordinary_user_is_just_as_safe(tmp_path: Path) -> None:
    import pwd
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root to create and become the ordinary test user")
    try:
        user = pwd.getpwnam("sbxtest")
    except KeyError:
        subprocess.run(["useradd", "--create-home", "sbxtest"], check=True)
        user = pwd.getpwnam("sbxtest")
    arena = Path(tempfile.mkdtemp(prefix="pysandbox-user-arena-"))
    try:
        (arena / "victim").mkdir()
        (arena / "victim/secret").write_text("do not touch")
        os.chown(arena, user.pw_uid, user.pw_gid)
        repo = Path(__file__).resolve().parents[2]
        done = subprocess.run(
            [shutil.which("runuser") or "runuser", "-u", "sbxtest", "--", sys.executable, "-c", ORDINARY_USER_SCRIPT, str(arena)],
            capture_output=True, text=True, cwd=repo, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)},
        )  # fmt: skip
        if "ModuleNotFoundError" in done.stderr or "Permission denied: '" + sys.executable in done.stderr:
            pytest.skip(f"the test user cannot run this interpreter: {done.stderr[-200:]}")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "['dev/null'] True b'inside'"
        assert (arena / "victim/secret").read_text() == "do not touch"
    finally:
        shutil.rmtree(arena, ignore_errors=True)

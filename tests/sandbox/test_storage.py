"""The pure parts of the host-side trust boundary: the storage path check, names, root's
reserved id range, in-root reads of an image's files, and the cache's tree digests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pysbx.images.errors import ImageError
from pysbx.images.overlay import read_visible_file, visible
from pysbx.sandbox import idmap
from pysbx.sandbox.idmap import IdMapError, reserved_range
from pysbx.sandbox.names import InvalidName, check_name, is_valid_name
from pysbx.sandbox.state import StorageError, check_trusted_path, private_folder
from pysbx.sandbox.treedigest import tree_digest


@pytest.mark.parametrize("name", ["web", "a", "my_app.v2-1", "0x", "A" * 128])
def test_docker_names_are_accepted(name: str) -> None:
    assert is_valid_name(name) and check_name("volume", name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "x/y", "-x", ".x", "_x", "a b", "x\n", "é", "A" * 129])
def test_anything_else_is_not_a_name(name: str) -> None:
    assert not is_valid_name(name)
    with pytest.raises(InvalidName, match="volume name"):
        check_name("volume", name)


def test_a_private_folder_is_made_0700_and_tightened(tmp_path: Path) -> None:
    made = Path(private_folder(str(tmp_path / "store" / "inner")))
    assert made.stat().st_mode & 0o777 == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o711)
    private_folder(str(loose))
    assert loose.stat().st_mode & 0o777 == 0o700


def test_a_folder_others_can_write_anywhere_on_the_path_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StorageError, match="writable by other users"):
        check_trusted_path(str(shared / "mine"))
    shared.chmod(0o775)
    with pytest.raises(StorageError, match="writable by other users"):
        check_trusted_path(str(shared))
    shared.chmod(0o1777)  # sticky, but ours and the last component: still refused as last
    with pytest.raises(StorageError):
        check_trusted_path(str(shared))


def test_a_root_owned_sticky_folder_may_stand_above_storage() -> None:
    if os.stat("/tmp").st_uid != 0 or not os.stat("/tmp").st_mode & 0o1000:
        pytest.skip("needs a root-owned sticky /tmp")
    import tempfile

    folder = tempfile.mkdtemp()
    try:
        check_trusted_path(folder)
    finally:
        os.rmdir(folder)


def test_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a folder another user owns needs root")
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o755)
    os.chown(foreign, 65534, 65534)
    with pytest.raises(StorageError, match="owned by uid 65534"):
        check_trusted_path(str(foreign))
    with pytest.raises(StorageError, match="owned by uid 65534"):
        check_trusted_path(str(foreign / "below"))


def test_a_symlink_of_another_user_on_the_way_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a symlink another user owns needs root")
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    os.chown(link, 65534, 65534, follow_symlinks=False)
    with pytest.raises(StorageError, match="symlink of uid 65534"):
        check_trusted_path(str(link))


def _table(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_reserved_range_is_pysandboxs_entry(tmp_path: Path) -> None:
    subuid = _table(tmp_path, "subuid", "alice:100000:65536\npysandbox:165536:65536\n")
    passwd = _table(tmp_path, "passwd", "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    found = reserved_range(subuid, passwd)
    assert (found.host, found.size) == (165536, 65536)


@pytest.mark.parametrize(
    ("subuid", "passwd", "message"),
    [
        ("alice:100000:65536\n", "", "no id range is reserved"),
        ("alice:100000:65536\npysandbox:100000:65536\n", "", "overlaps alice's"),
        ("pysandbox:165536:65536\nbob:231000:10\n", "", "overlaps bob's"),
        ("bob:160000:10000\npysandbox:165536:65536\n", "", "overlaps bob's"),
        ("pysandbox:165536:65536\n", "svc:x:170000:170000::/:/bin/sh\n", "holds svc's id 170000"),
    ],
)
def test_a_reserved_range_any_user_could_become_is_refused(
    tmp_path: Path, subuid: str, passwd: str, message: str
) -> None:
    with pytest.raises(IdMapError, match=message):
        reserved_range(_table(tmp_path, "subuid", subuid), _table(tmp_path, "passwd", passwd))


@pytest.mark.parametrize(
    "line",
    ["eve:165536:65536:", "eve:0x28720:65536", "eve: 165536:65536", "eve:+165536:65536", "eve:0165536:65536", "eve:1"],
)
def test_a_line_newuidmap_might_read_otherwise_is_refused(tmp_path: Path, line: str) -> None:
    """shadow parses numbers with strtoll(..., 0) and ignores trailing fields: a line we
    skipped could still give its user root's ids."""
    subuid = _table(tmp_path, "subuid", f"pysandbox:165536:65536\n{line}\n")
    with pytest.raises(IdMapError, match=":2: expected NAME:FIRST:COUNT"):
        reserved_range(subuid, _table(tmp_path, "passwd", ""))


def test_a_free_range_avoids_every_entry_and_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idmap, "SUBUID", _table(tmp_path, "subuid", "a:100000:65536\nb:165536:65536\n"))
    monkeypatch.setattr(idmap, "SUBGID", _table(tmp_path, "subgid", "a:100000:65536\nc:240000:10\n"))
    monkeypatch.setattr(idmap, "PASSWD", _table(tmp_path, "passwd", "x:x:231100:1::/:/bin/sh\n"))
    monkeypatch.setattr(idmap, "GROUP", _table(tmp_path, "group", ""))
    start = idmap.free_range(65536)
    assert start == 240010  # past b's range, the account 231100 and c's range


# ----- an image's files, read inside its layers --------------------------------------------------


def test_a_symlinked_parent_in_a_layer_leads_nowhere(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "etc").symlink_to("/etc")  # an image author's way to the host's /etc/passwd
    assert Path("/etc/passwd").exists()
    assert visible([layer], "etc/passwd") is None
    assert read_visible_file([layer], "etc/passwd", 1 << 20) is None


def test_special_and_oversized_files_are_not_read(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    os.mkfifo(layer / "etc" / "passwd")
    assert read_visible_file([layer], "etc/passwd", 1 << 20) is None  # would block forever if opened
    (layer / "etc" / "group").symlink_to("/etc/group")
    assert read_visible_file([layer], "etc/group", 1 << 20) is None
    (layer / "etc" / "big").write_bytes(b"x" * 101)
    with pytest.raises(ImageError, match="larger than 100 bytes"):
        read_visible_file([layer], "etc/big", 100)
    assert read_visible_file([layer], "etc/big", 101) == b"x" * 101


# ----- tree digests -------------------------------------------------------------------------------


def test_a_tree_digest_changes_with_any_content_mode_name_or_link(tmp_path: Path) -> None:
    tree = tmp_path / "root"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_bytes(b"program")
    (tree / "bin" / "link").symlink_to("tool")
    first = tree_digest(str(tree))
    assert tree_digest(str(tree)) == first
    changes = [
        lambda: (tree / "bin" / "tool").write_bytes(b"programX"),
        lambda: (tree / "bin" / "tool").chmod(0o4755),
        lambda: ((tree / "bin" / "link").unlink(), (tree / "bin" / "link").symlink_to("/etc/shadow")),
        lambda: (tree / "bin" / "new").write_bytes(b""),
    ]
    seen = {first}
    for change in changes:
        change()
        digest = tree_digest(str(tree))
        assert digest not in seen
        seen.add(digest)

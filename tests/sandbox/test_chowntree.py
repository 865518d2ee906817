"""`-v SRC:DST:U`: the tree becomes the container user's (as root, its host ids in the
reserved range; as an ordinary user, given from inside the container's user namespace), so
a folder the container sees as another's is writable; governed by the policy
(binds[].chown), and walked as root walks other users' folders: no link followed, no mount
crossed, setuid bits not kept."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysbx.sandbox.chowntree import ChownError, give_tree, open_folder
from tests.sandbox.conftest import PYSANDBOX, as_user, command
from tests.sandbox.harness import root_container_base

OWNER = (166536, 166536)  # any ids: give_tree's target in the tests that call it directly


@pytest.fixture
def shared() -> Iterator[Path]:
    """A tree outside pytest's 0700 folders (the container's ids must reach it)."""
    if os.geteuid() != 0:
        pytest.skip("giving a tree away is root's")
    folder = Path(tempfile.mkdtemp(prefix="pysandbox-give-"))
    folder.chmod(0o755)
    yield folder
    subprocess.run(["umount", "-R", str(folder / "data" / "mounted")], capture_output=True)
    subprocess.run(["rm", "-rf", str(folder)], check=True)


def build_tree(base: Path) -> dict[str, Path]:
    outside_file, outside_dir = base / "outside-file", base / "outside-dir"
    outside_file.write_text("host's\n")
    outside_dir.mkdir()
    (outside_dir / "inner").write_text("host's\n")
    data = base / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "file").write_text("x\n")
    (data / "tool").write_text("#!/bin/sh\n")
    (data / "tool").chmod(0o4755)
    (data / "to-file").symlink_to(outside_file)
    (data / "to-dir").symlink_to(outside_dir)
    (data / "mounted").mkdir()
    subprocess.run(["mount", "--bind", str(outside_dir), str(data / "mounted")], check=True)
    return {"data": data, "outside_file": outside_file, "outside_dir": outside_dir}


def test_the_tree_is_given_without_following_links_or_crossing_mounts(shared: Path) -> None:
    paths = build_tree(shared)
    changed = give_tree(str(paths["data"]), *OWNER)
    for inside in ("", "sub", "sub/file", "tool", "to-file", "to-dir", "mounted"):
        entry = os.lstat(paths["data"] / inside)
        assert (entry.st_uid, entry.st_gid) == OWNER or inside == "mounted", inside
    assert changed == 6  # the top, sub, sub/file, tool and the two links: not the mount point
    for outside in (paths["outside_file"], paths["outside_dir"], paths["outside_dir"] / "inner"):
        assert (os.lstat(outside).st_uid, os.lstat(outside).st_gid) == (0, 0), outside  # neither linked nor mounted
    assert not os.stat(paths["data"] / "tool").st_mode & stat.S_ISUID  # chown clears setuid


def test_a_component_that_became_a_link_is_refused(shared: Path) -> None:
    (shared / "real").mkdir()
    (shared / "link").symlink_to(shared / "real")
    with pytest.raises(ChownError, match="without following links"):
        open_folder(str(shared / "link"))
    with pytest.raises(ChownError, match="without following links"):
        give_tree(str(shared / "link"), *OWNER)
    assert os.stat(shared / "real").st_uid == 0


def policy_allowing(world: Path, source: Path, chown: bool) -> Path:
    text = (world / "baseline-unsigned.yaml").read_text()
    rule = f"    binds: [{{source: {source}, read_only: false, chown: {str(chown).lower()}}}]"
    path = source.parent / f"policy-{chown}.yaml"
    path.write_text(text.replace("    binds: []", rule))
    path.chmod(0o644)
    return path


def test_a_run_as_root_writes_into_a_root_owned_folder_only_with_u(shared: Path, world: Path) -> None:
    data = shared / "data"
    data.mkdir()
    (data / "old").write_text("old\n")
    allowed = policy_allowing(world, data, chown=True)
    image = str(world / "busybox-app.tar")
    write = ["sh", "-c", "touch /data/new && echo wrote"]
    plain = subprocess.run([PYSANDBOX, "run", "--rm", "-v", f"{data}:/data", "--policy", str(allowed), image, *write],
                           capture_output=True, text=True, cwd="/")  # fmt: skip
    assert plain.returncode == 1 and "Permission denied" in plain.stderr
    given = subprocess.run([PYSANDBOX, "run", "--rm", "-v", f"{data}:/data:U", "--policy", str(allowed), image, *write],
                           capture_output=True, text=True, cwd="/")  # fmt: skip
    assert given.returncode == 0 and "wrote" in given.stdout, given.stderr
    app = root_container_base() + 1000  # the image's user 1000 on the range reserved for pysandbox
    assert f"gave {data} to {app}:{app}" in given.stderr
    assert (os.stat(data / "new").st_uid, os.stat(data / "old").st_uid) == (app, app)


def test_the_policy_governs_u_and_unknown_options_are_refused(shared: Path, world: Path) -> None:
    data = shared / "data"
    data.mkdir()
    refused_policy = policy_allowing(world, data, chown=False)
    image = str(world / "busybox-app.tar")
    for option, words in (("U", "the policy does not let -v :U change the owners"), ("Q", "unknown option 'Q'")):
        result = subprocess.run([PYSANDBOX, "run", "--rm", "-v", f"{data}:/data:{option}", "--policy",
                                 str(refused_policy), image, "true"], capture_output=True, text=True, cwd="/")  # fmt: skip
        assert result.returncode == 125 and words in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    assert os.stat(data).st_uid == 0  # nothing given


@pytest.fixture
def users_folder(test_user: str) -> Iterator[Path]:
    """A folder the test user owns, outside pytest's 0700 folders; removed as that user
    from a namespace like the container's (what it gave away is no longer the user's)."""
    folder = Path(tempfile.mkdtemp(prefix="pysandbox-give-user-"))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        account = pwd.getpwnam(test_user)
        os.chown(folder, account.pw_uid, account.pw_gid)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], capture_output=True)
    if folder.exists():
        remove_as(test_user, folder)


def remove_as(user: str, folder: Path) -> None:
    code = f"from pathlib import Path; from pysbx.sandbox.prune import remove_tree; remove_tree(Path({str(folder)!r}))"
    subprocess.run([*as_user(user), sys.executable, "-c", code], capture_output=True, cwd="/")


def subordinate_start(user: str) -> int:
    from pysbx.sandbox.idmap import _subordinate

    found = _subordinate("/etc/subuid", user, pwd.getpwnam(user).pw_uid)
    if found is None or shutil.which("newuidmap") is None:
        pytest.skip(f"{user} has no subordinate ids to give a tree to")
    return found.host


def test_an_ordinary_user_gives_own_tree_to_the_container_user_through_the_map(
    world: Path, test_user: str, users_folder: Path
) -> None:
    """podman's rootless :U: inside the user namespace the tree becomes the container user's
    (1000:1000 for busybox-app), which on the host is the user's subordinate id 1000 - 1 up
    from the first; a file the user does not own is not theirs to give, and says so."""
    start = subordinate_start(test_user)
    data = users_folder / "data"
    run_as = [*as_user(test_user)]
    subprocess.run([*run_as, "mkdir", "-p", str(data / "sub")], check=True)
    subprocess.run([*run_as, "sh", "-c", f"echo old > {data}/sub/old"], check=True)
    policy = policy_allowing(world, data, chown=True)
    image = str(world / "busybox-app.tar")
    write = ["sh", "-c", "touch /data/new /data/sub/old && id -u && stat -c %u:%g /data/sub/old"]
    plain = subprocess.run(command("user", ["--rm", "-v", f"{data}:/data", "--policy", str(policy), image, *write],
                                   test_user), capture_output=True, text=True, cwd="/")  # fmt: skip
    assert plain.returncode == 1 and "Permission denied" in plain.stderr, plain.stderr
    given = subprocess.run(command("user", ["--rm", "-v", f"{data}:/data:U", "--policy", str(policy), image, *write],
                                   test_user), capture_output=True, text=True, cwd="/")  # fmt: skip
    assert given.returncode == 0 and given.stdout.split() == ["1000", "1000:1000"], given.stderr
    host = start + 999
    assert f"gave {data} to 1000:1000 in the container, {host}:" in given.stderr
    assert {os.stat(data / name).st_uid for name in ("", "new", "sub", "sub/old")} == {host}
    if os.geteuid() == 0:  # a file of root's inside: not the user's to give, and named
        (users_folder / "root-data").mkdir()
        os.chown(users_folder / "root-data", pwd.getpwnam(test_user).pw_uid, pwd.getpwnam(test_user).pw_gid)
        (users_folder / "root-data" / "roots").write_text("root's\n")
        other = policy_allowing(world, users_folder / "root-data", chown=True)
        refused = subprocess.run(command("user", ["--rm", "-v", f"{users_folder}/root-data:/data:U", "--policy",
                                                  str(other), image, "true"], test_user),
                                 capture_output=True, text=True, cwd="/")  # fmt: skip
        assert refused.returncode == 125 and "roots: cannot give it to 1000:1000" in refused.stderr, refused.stderr
        assert os.stat(users_folder / "root-data" / "roots").st_uid == 0


def test_a_folder_swapped_for_a_link_after_its_look_is_not_followed(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a path-based walk loses: the look (lstat) sees a folder, then someone who can
    write in the tree puts a link to /etc-like territory in its place before it is opened."""
    import pysbx.sandbox.chowntree as chowntree

    paths = build_tree(shared)
    real_lstat = os.lstat
    folder_look = real_lstat(paths["data"] / "sub")

    class OsWhoseLookIsStale:
        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        @staticmethod
        def lstat(name: str, dir_fd: int | None = None) -> os.stat_result:
            return folder_look if name == "to-dir" else real_lstat(name, dir_fd=dir_fd)

    monkeypatch.setattr(chowntree, "os", OsWhoseLookIsStale())
    with pytest.raises(ChownError, match="to-dir"):
        give_tree(str(paths["data"]), *OWNER)
    for outside in (paths["outside_dir"], paths["outside_dir"] / "inner"):
        assert os.lstat(outside).st_uid == 0


def test_a_file_with_other_hard_links_is_not_given(shared: Path) -> None:
    """Where fs.protected_hardlinks is off, anyone can link /etc/shadow into a folder they
    write; giving the name would give the host's file. (Root makes the link here.)"""
    outside = shared / "shadow-like"
    outside.write_text("root's secret\n")
    outside.chmod(0o600)
    data = shared / "data"
    data.mkdir()
    os.link(outside, data / "linked")
    (data / "own").write_text("x\n")
    give_tree(str(data), *OWNER)
    assert os.stat(outside).st_uid == 0 and os.stat(data / "own").st_uid == OWNER[0]


def test_a_folder_swapped_for_a_link_between_the_check_and_the_walk_is_not_given(shared: Path, world: Path) -> None:
    """Found by review: the check and the walk each resolved the path, and a user owning the
    folder swapped it for a link to /etc in between. Now the walk takes the path as written
    and opens each component without following links."""
    from pysbx.cli.runargs import parse
    from pysbx.policies.loader import load_policy
    from pysbx.sandbox.plan import check_flags, give_trees, trees_to_give
    from pysbx.sandbox.process import User

    allowed, victim = shared / "allowed", shared / "victim"
    (allowed / "proj").mkdir(parents=True)
    victim.mkdir()
    (victim / "shadow").write_text("x\n")
    policy = policy_allowing(world, allowed, chown=True)
    args = parse(["--policy", str(policy), "-v", f"{allowed}/proj:/data:U", "img"])
    check_flags(args, load_policy(str(policy)))  # allowed now
    (allowed / "proj").rmdir()
    (allowed / "proj").symlink_to(victim)  # ... and swapped before the walk
    from pysbx.sandbox.idmap import IdMaps, IdRange

    maps = IdMaps((IdRange(0, 165536, 65536),), (IdRange(0, 165536, 65536),), False)
    with pytest.raises(ChownError, match="without following links"):
        give_trees(trees_to_give(args.volume), User(1000, 1000, (), "/"), maps)
    assert os.stat(victim / "shadow").st_uid == 0 and os.stat(victim).st_uid == 0


def test_a_bind_source_that_is_a_link_gives_nothing(shared: Path, world: Path) -> None:
    """Found by review: the policy's own bind source, a folder a user owns, replaced by a link
    to /etc: both sides resolved alike and /etc was given. A link on either path is refused."""
    victim = shared / "victim"
    victim.mkdir()
    (victim / "passwd").write_text("x\n")
    (shared / "shared").symlink_to(victim)
    policy = policy_allowing(world, shared / "shared", chown=True)
    result = subprocess.run([PYSANDBOX, "run", "--rm", "-v", f"{shared}/shared:/d:U", "--policy", str(policy),
                             str(world / "busybox-app.tar"), "true"], capture_output=True, text=True, cwd="/")  # fmt: skip
    assert result.returncode == 125 and "symbolic link" in result.stderr, result.stderr
    assert os.stat(victim / "passwd").st_uid == 0


def test_a_mount_the_path_table_misses_is_still_not_crossed(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review's suspicion: mountinfo is read once, by path; a folder above a mount renamed
    after that hides the mount from the table. Each folder's own mount id is compared too."""
    import pysbx.sandbox.chowntree as chowntree

    paths = build_tree(shared)
    monkeypatch.setattr(chowntree, "mount_points_below", lambda path: set())  # the table as a rename leaves it
    give_tree(str(paths["data"]), *OWNER)
    for outside in (paths["outside_dir"], paths["outside_dir"] / "inner"):
        assert (os.lstat(outside).st_uid, os.lstat(outside).st_gid) == (0, 0), outside

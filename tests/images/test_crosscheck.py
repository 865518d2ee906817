"""Cross-checks of the image reader against real third-party tools: Debian's skopeo and
umoci, and GNU tar (each test skips cleanly when a tool it needs is absent).

An image is built with umoci in six layers (files, symlinks, hard links, nested folders,
a set-uid file, a FIFO, a file whiteout, a folder whiteout, an opaque folder, a folder
replaced by a file, a folder and a symlink replaced by symlinks), configured with `umoci
config`, and copied by skopeo into a docker archive and an OCI archive. For each of the
three forms:

1. our manifest digest is the sha256 of `skopeo inspect --raw`;
2. layer digests, config digest and the run settings are what `skopeo inspect` reports;
3. each layer's entries (name, type, size, link) are what GNU `tar -tv` lists, and the
   uncompressed layer is exactly the bytes `layer_stats` counts and the diff_id names;
4. `unpack_image` makes the tree `umoci unpack` makes (paths, types, contents, symlink
   targets, permission bits, hard links);
5. a skopeo round trip back to an OCI layout has the manifest digest skopeo reports.

A second tag adds a layer replacing folders and symlinks below the root (this once failed
with EBADF: the resolver closed the parent's cached descriptor while an entry was made in it).

The shared dive test data (real archives from docker, kaniko and buildkit) is checked the
same way for digests and entries, and its four plain tars are refused as not images.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from pysbx.images import Image, ImageError, Layer, open_image
from pysbx.images.extract import unpack_image
from pysbx.images.layers import Entry, layer_stats, walk_layer
from tests.conftest import SHARED

FIXED_TIME = 1_700_000_000
FIXED_STAMP = "2023-11-14T22:13:20Z"  # FIXED_TIME, for umoci's history and config
TOOL_ENV = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}


def need(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def run(*args: str) -> bytes:
    done = subprocess.run(args, capture_output=True, env=TOOL_ENV)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def skopeo(*args: str) -> bytes:
    # --insecure-policy: copying between local files needs no signature policy, and the
    # test should not depend on /etc/containers/policy.json being present.
    return run("skopeo", "--insecure-policy", *args)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


# -- building the image with umoci -------------------------------------------------------


def make_tree(root: Path, spec: list[tuple[str, str, bytes | str | None, int | None]]) -> None:
    """Create (path, kind, content or link target, mode) entries under `root`, then give
    every folder without an explicit mode 0755 and everything the same mtime, so that the
    layers do not depend on the umask or the clock."""
    explicit = {name for name, kind, _, mode in spec if kind == "dir" and mode is not None}
    for name, kind, value, mode in spec:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            path.mkdir(exist_ok=True)
        elif kind == "file":
            assert isinstance(value, bytes)
            path.write_bytes(value)
        elif kind == "symlink":
            assert isinstance(value, str)
            os.symlink(value, path)
        elif kind == "hardlink":
            assert isinstance(value, str)
            os.link(root / value, path)
        elif kind == "fifo":
            os.mkfifo(path)
        if mode is not None:
            os.chmod(path, mode)
    os.chmod(root, 0o755)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            path = Path(folder, name)
            if not path.is_symlink() and str(path.relative_to(root)) not in explicit:
                os.chmod(path, 0o755)
        for name in dirs + files:
            os.utime(Path(folder, name), (FIXED_TIME, FIXED_TIME), follow_symlinks=False)
    os.utime(root, (FIXED_TIME, FIXED_TIME))


BASE_LAYER: list[tuple[str, str, bytes | str | None, int | None]] = [
    ("etc/motd", "file", b"hello\n", 0o644),
    ("etc/app/conf", "file", b"k=v\n", 0o644),
    ("etc/app/secret", "file", b"s\n", 0o600),
    ("etc/gone", "file", b"bye\n", 0o644),
    ("etc/abs", "symlink", "/etc/motd", None),
    ("usr/bin/prog", "file", b"#!/bin/sh\necho prog\n", 0o755),
    ("usr/bin/prog-alias", "hardlink", "usr/bin/prog", None),
    ("usr/bin/tool", "file", b"\x7fELF", 0o4755),
    ("usr/bin/rel", "symlink", "prog", None),
    ("usr/lib/libx.so", "file", b"lib", 0o755),
    ("usr/share/doc/pkg/a/b/c/deep.txt", "file", b"deep\n", 0o644),
    ("lib", "symlink", "usr/lib", None),
    ("dangling", "symlink", "does/not/exist", None),
    ("var/private", "dir", None, 0o750),
    ("var/private/key", "file", b"k", 0o400),
    ("tmp", "dir", None, 0o1777),
    ("empty", "file", b"", 0o644),
    ("big.bin", "file", random.Random(7).randbytes(300_000), 0o644),
    ("opt/keep", "file", b"keep", 0o644),
    ("opt/old/f1", "file", b"1", 0o644),
    ("opt/old/sub/f2", "file", b"2", 0o644),
    ("srv/x", "file", b"x", 0o644),
    ("srv/y/z", "file", b"z", 0o644),
    ("srv/h1", "file", b"h", 0o644),
    ("srv/h2", "hardlink", "srv/h1", None),
    ("data/inner", "file", b"i", 0o644),
    ("run/fifo", "fifo", None, 0o644),
    ("home/user/.profile", "file", b"PS1='$ '\n", 0o644),
]


@dataclass(frozen=True)
class Form:
    name: str
    ours: str  # the IMAGE argument for open_image
    theirs: str  # the skopeo reference
    blobs: Path  # the folder the image's layer locations are relative to


@dataclass(frozen=True)
class Built:
    work: Path
    layout: Path
    forms: dict[str, Form]
    umoci_rootfs: Path
    umoci_rootfs_t2: Path


FORMS = ("oci-layout", "docker-archive", "oci-archive")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    need("umoci", "skopeo", "tar")
    work = tmp_path_factory.mktemp("crosscheck")
    layout = work / "L"
    image = f"{layout}:t"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", image)

    def insert(*args: str) -> None:
        run("umoci", "insert", "--history.created", FIXED_STAMP, "--image", image, *args)

    make_tree(work / "base", BASE_LAYER)
    insert(str(work / "base"), "/")  # layer 1: everything
    insert("--whiteout", "/etc/gone")  # layer 2: a file whiteout
    insert("--whiteout", "/opt/old")  # layer 3: a folder whiteout
    make_tree(
        work / "opaque",
        [
            ("srv/new", "file", b"new\n", 0o644),
            ("srv/new-link", "hardlink", "srv/new", None),
            ("srv/d/e", "file", b"e", 0o644),
        ],
    )
    insert("--opaque", str(work / "opaque/srv"), "/srv")  # layer 4: /srv replaced whole
    make_tree(work / "file", [("data", "file", b"now a file\n", 0o640)])
    insert(str(work / "file/data"), "/data")  # layer 5: a folder replaced by a file
    make_tree(
        work / "last",
        [
            ("etc/motd", "file", b"changed\n", 0o600),
            ("usr/lib/liby.so", "file", b"y", 0o755),
            ("dangling", "symlink", "usr/lib/liby.so", None),
            ("home", "symlink", "srv", None),
        ],
    )
    insert(str(work / "last"), "/")  # layer 6: a file rewritten, a symlink and a folder replaced by symlinks
    run(
        "umoci", "config", "--image", image, "--created", FIXED_STAMP, "--history.created", FIXED_STAMP,
        "--config.user", "1000", "--config.cmd", "/bin/sh", "--config.env", "A=b",
        "--config.workingdir", "/w", "--config.exposedports", "80/tcp", "--config.label", "k=v",
    )  # fmt: skip
    skopeo("copy", "-q", f"oci:{image}", f"docker-archive:{work}/out.tar:example/app:1")
    skopeo("copy", "-q", f"oci:{image}", f"oci-archive:{work}/out.oci.tar")
    # --rootless works as root too; it only means "do not require root".
    run("umoci", "unpack", "--rootless", "--image", image, str(work / "bundle"))
    # Tag t2 adds a seventh layer that replaces things below the root: a folder by a
    # symlink, a symlink by another, a folder by a file, a symlink by a folder.
    make_tree(
        work / "below",
        [
            ("etc/app", "symlink", "/usr/lib", None),
            ("usr/bin/rel", "symlink", "prog-alias", None),
            ("usr/share/doc", "file", b"no docs\n", 0o644),
            ("etc/abs", "dir", None, 0o700),
        ],
    )
    run("umoci", "insert", "--history.created", FIXED_STAMP, "--image", image, "--tag", "t2", str(work / "below"), "/")
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:t2", str(work / "bundle2"))
    # GNU tar unpacks the two archives, so that their layer blobs can be read without our code.
    for name in ("out.tar", "out.oci.tar"):
        (work / f"{name}.d").mkdir()
        run("tar", "-xf", str(work / name), "-C", str(work / f"{name}.d"))
    forms = {
        "oci-layout": Form("oci-layout", image, f"oci:{image}", layout),
        "docker-archive": Form(
            "docker-archive", str(work / "out.tar"), f"docker-archive:{work}/out.tar", work / "out.tar.d"
        ),
        "oci-archive": Form(
            "oci-archive", str(work / "out.oci.tar"), f"oci-archive:{work}/out.oci.tar", work / "out.oci.tar.d"
        ),
    }
    return Built(work, layout, forms, work / "bundle/rootfs", work / "bundle2/rootfs")


# -- 1 and 2: digests and config against skopeo ------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_manifest_digest_is_skopeos(built: Built, form: str) -> None:
    f = built.forms[form]
    image = open_image(f.ours)
    raw = skopeo("inspect", "--raw", f.theirs)
    assert str(image.manifest_digest) == sha256(raw)
    assert image.manifest_bytes == raw
    assert json.loads(skopeo("inspect", f.theirs))["Digest"] == sha256(raw)


@pytest.mark.parametrize("form", FORMS)
def test_layers_and_config_are_skopeos(built: Built, form: str) -> None:
    f = built.forms[form]
    image = open_image(f.ours)
    report = json.loads(skopeo("inspect", f.theirs))
    assert [str(layer.digest) for layer in image.layers] == report["Layers"]
    assert len(image.layers) == 6
    assert (image.platform.os, image.platform.architecture) == (report["Os"], report["Architecture"])

    raw_config = skopeo("inspect", "--config", "--raw", f.theirs)
    assert str(image.config_digest) == sha256(raw_config)
    assert str(image.config_digest) == json.loads(skopeo("inspect", "--raw", f.theirs))["config"]["digest"]

    config = json.loads(skopeo("inspect", "--config", f.theirs))
    run_config = config["config"]
    assert image.config.user == run_config["User"] == "1000"
    assert image.config.cmd == run_config["Cmd"] == ["/bin/sh"]
    assert image.config.env == run_config["Env"] == ["A=b"]
    assert image.config.working_dir == run_config["WorkingDir"] == "/w"
    assert image.config.exposed_ports == sorted(run_config["ExposedPorts"]) == ["80/tcp"]
    assert image.config.labels == run_config["Labels"] == report["Labels"] == {"k": "v"}
    assert [str(d) for d in image.config.diff_ids] == config["rootfs"]["diff_ids"]


def test_the_docker_archive_is_found_by_its_tag(built: Built) -> None:
    image = open_image(f"{built.work}/out.tar:example/app:1")
    assert image.references == ["docker.io/example/app:1"]  # skopeo writes the normalised name
    assert str(image.manifest_digest) == sha256(skopeo("inspect", "--raw", built.forms["docker-archive"].theirs))


# -- 3: entries against GNU tar -----------------------------------------------------------

_TAR_KINDS = {"-": "file", "d": "dir", "l": "symlink", "h": "hardlink", "p": "fifo", "c": "char", "b": "block"}


def plain_layer(blob: Path, into: Path) -> Path:
    """The uncompressed layer, decompressed by gzip or zstd (chosen by magic bytes)."""
    with open(blob, "rb") as stream:
        magic = stream.read(4)
    if magic[:2] == b"\x1f\x8b":
        tool = "gzip"
    elif magic == b"\x28\xb5\x2f\xfd":
        tool = "zstd"
    else:
        return blob
    need(tool)
    target = into / (blob.name + ".plain")
    with open(target, "wb") as out:
        subprocess.run([tool, "-dc", str(blob)], stdout=out, check=True)
    return target


def _clean(name: str) -> str:
    """tar's name with `./`, leading `/` and the trailing `/` of folders taken off."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def tar_entries(plain: Path) -> list[tuple[str, str, int, str]]:
    """(name, kind, size, link) for each entry GNU tar lists.

    Debian's umoci 0.4.7 ends layer tars right after the last file's data, without block
    padding or the end-of-archive blocks: GNU tar lists every entry, then says "Unexpected
    EOF in archive" and exits 2. Our reader accepts such layers on purpose (every byte is
    still covered by the digests), so tar's exit status 2 is tolerated here and only what it
    prints is compared."""
    listings = []
    for flags in ("-tf", "-tvf"):
        done = subprocess.run(
            ["tar", "--quoting-style=literal", "--numeric-owner", flags, str(plain)], capture_output=True, env=TOOL_ENV
        )
        stderr = done.stderr.decode(errors="replace")
        assert done.returncode in (0, 2), stderr
        if done.returncode == 2:
            assert "Unexpected EOF in archive" in stderr, stderr
        listings.append(done.stdout.decode("utf-8", "surrogateescape").splitlines())
    names, verbose = listings
    assert len(names) == len(verbose)
    entries = []
    for name, line in zip(names, verbose, strict=True):
        perms, _owner, size, _date, _time, rest = line.split(maxsplit=5)
        kind = _TAR_KINDS[perms[0]]
        link = ""
        if kind == "symlink":
            rest, link = rest.split(" -> ", 1)
        elif kind == "hardlink":
            rest, link = rest.split(" link to ", 1)
            link = _clean(link)
        assert rest == name
        entries.append((name, kind, int(size) if kind == "file" else 0, link))
    return entries


def expected_from_tar(entries: list[tuple[str, str, int, str]]) -> list[tuple[str, str, int, str]]:
    expected = []
    for name, kind, size, link in entries:
        clean = _clean(name)
        if not clean:
            continue  # the root folder's own entry (`/` or `./`): the walker does not report it
        base = clean.rsplit("/", 1)[-1]
        if base.startswith(".wh..wh.") and base != ".wh..wh..opq":
            continue  # aufs bookkeeping (.wh..wh.plnk...): the walker drops it, it is not content
        expected.append((clean, kind, size, link))
    return expected


def tar_name(entry: Entry) -> str:
    """The name a walker entry had in the tar: whiteouts name what they remove."""
    if entry.whiteout is None:
        return entry.path
    parent, _, base = entry.path.rpartition("/")
    marker = ".wh..wh..opq" if entry.whiteout == "opaque" else f".wh.{base}"
    folder = entry.path if entry.whiteout == "opaque" else parent
    return f"{folder}/{marker}" if folder else marker


def is_whiteout_name(name: str) -> bool:
    return name.rpartition("/")[2].startswith(".wh.")


def walked(image: Image, layer: Layer) -> list[tuple[str, str, int, str]]:
    return [
        (tar_name(m.entry), m.entry.kind, m.entry.size, m.entry.link if m.entry.kind != "dir" else "")
        for m in walk_layer(image, layer)
    ]


def check_layers_against_tar(image: Image, blobs: Path, scratch: Path) -> list[list[tuple[str, str, int, str]]]:
    """Compare every layer of `image` with GNU tar's listing of the same blob; return ours."""
    all_layers = []
    for layer in image.layers:
        blob = blobs / layer.location
        if layer.digest != layer.diff_id:
            assert sha256_file(blob) == str(layer.digest), layer.label
        plain = plain_layer(blob, scratch)
        assert sha256_file(plain) == str(layer.diff_id), layer.label
        ours = walked(image, layer)
        assert ours == expected_from_tar(tar_entries(plain)), layer.label
        stats = layer_stats(image, layer)
        assert stats.entries == len(ours)
        assert stats.uncompressed_bytes == plain.stat().st_size
        files = [size for name, kind, size, _ in ours if kind == "file" and not is_whiteout_name(name)]
        assert (stats.files, stats.file_bytes) == (len(files), sum(files)), layer.label
        all_layers.append(ours)
    return all_layers


@pytest.mark.parametrize("form", FORMS)
def test_layer_entries_are_what_tar_lists(built: Built, form: str, tmp_path: Path) -> None:
    f = built.forms[form]
    image = open_image(f.ours)
    layers = check_layers_against_tar(image, f.blobs, tmp_path)
    # The image really holds what this test is meant to cover.
    kinds = {kind for layer in layers for _, kind, _, _ in layer}
    assert {"file", "dir", "symlink", "hardlink", "fifo"} <= kinds
    whiteouts = [(m.entry.path, m.entry.whiteout) for layer in image.layers for m in walk_layer(image, layer)]
    assert [w for w in whiteouts if w[1]] == [("etc/gone", "file"), ("opt/old", "file"), ("srv", "opaque")]
    assert ("usr/bin/prog-alias", "hardlink", 0, "usr/bin/prog") in layers[0]
    assert ("etc/abs", "symlink", 0, "/etc/motd") in layers[0]


# -- 4: unpacking against umoci unpack ----------------------------------------------------


def tree(root: Path) -> dict[str, tuple[str, int | None, bytes | str | None]]:
    """Every path below `root`: type, permission bits (not for symlinks) and content or
    link target. Owners and times are left out on purpose."""
    found: dict[str, tuple[str, int | None, bytes | str | None]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("symlink", None, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", stat.S_IMODE(info.st_mode), None)
            elif stat.S_ISREG(info.st_mode):
                found[rel] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
            elif stat.S_ISFIFO(info.st_mode):
                found[rel] = ("fifo", stat.S_IMODE(info.st_mode), None)
            else:
                found[rel] = (f"other {stat.S_IFMT(info.st_mode):o}", stat.S_IMODE(info.st_mode), None)
    return found


def hard_link_groups(root: Path) -> set[frozenset[str]]:
    by_inode: dict[int, set[str]] = defaultdict(set)
    for folder, _, files in os.walk(root):
        for name in files:
            info = os.lstat(Path(folder, name))
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                by_inode[info.st_ino].add(str(Path(folder, name).relative_to(root)))
    return {frozenset(paths) for paths in by_inode.values()}


@pytest.mark.parametrize("form", FORMS)
def test_unpacking_makes_the_tree_umoci_unpack_makes(built: Built, form: str, tmp_path: Path) -> None:
    unpack_image(open_image(built.forms[form].ours), tmp_path / "rootfs")
    ours, theirs = tree(tmp_path / "rootfs"), tree(built.umoci_rootfs)
    assert sorted(ours) == sorted(theirs)
    for path in sorted(theirs):
        assert ours[path] == theirs[path], path
    groups = hard_link_groups(tmp_path / "rootfs")
    assert groups == hard_link_groups(built.umoci_rootfs)
    # ... and that tree is the one the layers describe.
    assert groups == {frozenset({"usr/bin/prog", "usr/bin/prog-alias"}), frozenset({"srv/new", "srv/new-link"})}
    assert theirs["usr/bin/tool"] == ("file", 0o4755, b"\x7fELF")
    assert theirs["tmp"][:2] == ("dir", 0o1777)
    assert theirs["var/private"][:2] == ("dir", 0o750)
    assert theirs["etc/motd"] == ("file", 0o600, b"changed\n")
    assert theirs["data"] == ("file", 0o640, b"now a file\n")
    assert theirs["dangling"] == ("symlink", None, "usr/lib/liby.so")
    assert theirs["home"] == ("symlink", None, "srv")
    assert theirs["run/fifo"] == ("fifo", 0o644, None)
    assert sorted(p for p in theirs if p.startswith("srv/")) == ["srv/d", "srv/d/e", "srv/new", "srv/new-link"]
    assert "etc/gone" not in theirs and "opt/old" not in theirs and "opt/keep" in theirs


def test_replacing_folders_and_symlinks_below_the_root_matches_umoci(built: Built, tmp_path: Path) -> None:
    theirs = tree(built.umoci_rootfs_t2)
    assert theirs["etc/app"] == ("symlink", None, "/usr/lib")
    assert theirs["usr/bin/rel"] == ("symlink", None, "prog-alias")
    assert theirs["usr/share/doc"] == ("file", 0o644, b"no docs\n")
    assert theirs["etc/abs"] == ("dir", 0o700, None)
    unpack_image(open_image(f"{built.layout}:t2"), tmp_path / "rootfs")
    assert tree(tmp_path / "rootfs") == theirs
    assert hard_link_groups(tmp_path / "rootfs") == hard_link_groups(built.umoci_rootfs_t2)


# -- 5: a skopeo round trip ---------------------------------------------------------------


def test_a_skopeo_round_trip_to_an_oci_layout_has_skopeos_digest(built: Built, tmp_path: Path) -> None:
    skopeo("copy", "-q", built.forms["docker-archive"].theirs, f"oci:{tmp_path}/L2:x")
    image = open_image(f"{tmp_path}/L2:x")
    assert str(image.manifest_digest) == sha256(skopeo("inspect", "--raw", f"oci:{tmp_path}/L2:x"))
    original = open_image(built.forms["oci-layout"].ours)
    assert image.config.diff_ids == original.config.diff_ids
    # Converting the docker manifest to an OCI one, skopeo writes the config out again: the
    # same JSON in other bytes, so another digest; and it compresses the layers the docker
    # archive held uncompressed. Hold both to skopeo's own account of the copy.
    assert str(image.config_digest) == sha256(skopeo("inspect", "--config", "--raw", f"oci:{tmp_path}/L2:x"))
    assert image.config.raw == open_image(built.forms["docker-archive"].ours).config.raw
    report = json.loads(skopeo("inspect", f"oci:{tmp_path}/L2:x"))
    assert [str(layer.digest) for layer in image.layers] == report["Layers"]


# -- the shared dive test data ------------------------------------------------------------

DIVE = SHARED / "testdata/dive"
DIVE_IMAGES = [
    ("test-docker-image.tar", "docker-archive"),
    ("test-kaniko-image.tar", "docker-archive"),
    ("test-oci-gzip-image.tar", "oci-archive"),
    ("test-oci-zstd-image.tar", "oci-archive"),
    ("test-oci-uncompressed-image.tar", "oci-archive"),
    ("test-oci-estargz-image.tar", "oci-archive"),
]
# Not images: plain tars holding a README.
DIVE_NOT_IMAGES = [f"test-{kind}-image.tar" for kind in ("gzip", "zstd", "uncompressed", "estargz")]


def test_every_dive_file_is_covered() -> None:
    if not DIVE.is_dir():
        pytest.skip(f"no shared dive test data at {DIVE}")
    assert sorted(p.name for p in DIVE.glob("*.tar")) == sorted([n for n, _ in DIVE_IMAGES] + DIVE_NOT_IMAGES)


@pytest.mark.parametrize(("name", "transport"), DIVE_IMAGES)
def test_dive_images_agree_with_skopeo_and_tar(name: str, transport: str, tmp_path: Path) -> None:
    if not DIVE.is_dir():
        pytest.skip(f"no shared dive test data at {DIVE}")
    need("skopeo", "tar")
    path = DIVE / name
    image = open_image(str(path))
    raw = skopeo("inspect", "--raw", f"{transport}:{path}")
    assert str(image.manifest_digest) == sha256(raw)
    report = json.loads(skopeo("inspect", f"{transport}:{path}"))
    assert [str(layer.digest) for layer in image.layers] == report["Layers"]
    assert str(image.config_digest) == sha256(skopeo("inspect", "--config", "--raw", f"{transport}:{path}"))
    run("tar", "-xf", str(path), "-C", str(tmp_path))
    (tmp_path / "scratch").mkdir()
    layers = check_layers_against_tar(image, tmp_path, tmp_path / "scratch")
    assert layers and all(layers)


@pytest.mark.parametrize("name", DIVE_NOT_IMAGES)
def test_dive_plain_tars_are_not_images(name: str) -> None:
    if not DIVE.is_dir():
        pytest.skip(f"no shared dive test data at {DIVE}")
    with pytest.raises(ImageError, match="not an image"):
        open_image(str(DIVE / name))

"""Every layout, compression and layering case that `open_image` and `unpack_image` must
handle, on images the tests write themselves."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import pytest

from pysbx.images import ImageError, Platform, open_image
from pysbx.images.extract import unpack_image
from pysbx.images.layers import layer_stats, walk_layer
from pysbx.images.writer import NewImage, NewLayer, compress, write_oci_archive, write_oci_layout
from tests.imagekit import LAYOUTS, T, image_of, make_tar, write_image

BASE = [
    T("etc", "dir"),
    T("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
    T("etc/old.conf", data=b"old"),
    T("srv", "dir"),
    T("srv/a", data=b"a" * 100),
    T("srv/sub", "dir"),
    T("srv/sub/b", data=b"b"),
    T("bin", "dir"),
    T("bin/tool", data=b"#!/bin/sh\n", mode=0o755),
    T("bin/alias", "symlink", link="tool"),
    T("bin/hard", "hardlink", link="bin/tool"),
]
CHANGES = [
    T("etc/.wh.old.conf"),  # whiteout of a file
    T("srv", "dir"),
    T("srv/.wh..wh..opq"),  # opaque: srv/a and srv/sub vanish
    T("srv/new", data=b"new"),
    T("bin/tool", data=b"#!/bin/sh\necho v2\n", mode=0o755),  # overwritten
]
REPLACE = [T("srv", "symlink", link="etc")]  # a later non-directory hides a whole tree


def tree(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[name] = "dir"
        else:
            found[name] = path.read_bytes().decode()
    return found


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_every_layout_and_compression_opens_and_unpacks_the_same_tree(
    tmp_path: Path, layout: str, compression: str
) -> None:
    image = image_of(BASE, CHANGES, compression=compression, config={"User": "app", "Cmd": ["/bin/tool"]})
    opened = open_image(write_image(image, tmp_path, layout))
    assert [layer.compression for layer in opened.layers] == [compression] * 2
    assert opened.config.user == "app" and opened.config.cmd == ["/bin/tool"]
    assert opened.platform == Platform("linux", "amd64")
    report = unpack_image(opened, tmp_path / "root")
    assert report.layers == 2 and report.whiteouts == 3
    assert tree(tmp_path / "root") == {
        "bin": "dir",
        "bin/alias": "-> tool",
        "bin/hard": "#!/bin/sh\n",  # a hard link keeps the old inode when tool is rewritten
        "bin/tool": "#!/bin/sh\necho v2\n",
        "etc": "dir",
        "etc/passwd": "root:x:0:0::/root:/bin/sh\n",
        "srv": "dir",
        "srv/new": "new",
    }
    assert os.stat(tmp_path / "root/bin/tool").st_mode & 0o777 == 0o755


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_manifest_digest_is_the_sha256_of_the_manifest_bytes(tmp_path: Path, layout: str) -> None:
    opened = open_image(write_image(image_of(BASE), tmp_path, layout))
    assert opened.manifest_digest.hex == __import__("hashlib").sha256(opened.manifest_bytes).hexdigest()
    if layout != "docker-legacy":  # legacy archives carry no manifest: it is synthesised
        blob = Path(str(opened.store.label)) if layout == "oci-layout" else None
        if blob is not None:
            assert (blob / "blobs/sha256" / opened.manifest_digest.hex).read_bytes() == opened.manifest_bytes


def test_a_later_non_directory_hides_the_tree_below(tmp_path: Path) -> None:
    opened = open_image(write_image(image_of(BASE, REPLACE), tmp_path, "oci-layout"))
    unpack_image(opened, tmp_path / "root")
    assert os.readlink(tmp_path / "root/srv") == "etc"
    assert not (tmp_path / "root/etc/a").exists()


def test_references_come_from_tags_and_annotations(tmp_path: Path) -> None:
    (tmp_path / "l").mkdir()
    legacy = open_image(write_image(image_of(BASE), tmp_path / "l", "docker-legacy", "example/app:1"))
    assert legacy.references == ["example/app:1"]
    (tmp_path / "d").mkdir()
    modern = open_image(write_image(image_of(BASE), tmp_path / "d", "docker-25", "example/app:1"))
    assert "example/app:1" in modern.references
    assert modern.layout.startswith("docker-archive (Docker 25+")


def test_path_and_tag_select_one_of_several_images(tmp_path: Path) -> None:
    one, two = image_of([T("one")]), image_of([T("two")])
    write_oci_layout(tmp_path / "lay", [("v1", [one]), ("v2", [two])])
    assert [e.entry.path for e in walk_layer(*_first(open_image(f"{tmp_path}/lay:v2")))] == ["two"]
    with pytest.raises(ImageError, match=r"holds 2 images \(v1, v2\); name one as IMAGE:REF"):
        open_image(str(tmp_path / "lay"))
    with pytest.raises(ImageError, match=r"no image named 'v3'.*names: v1, v2"):
        open_image(f"{tmp_path}/lay:v3")


def _first(image):  # type: ignore[no-untyped-def]
    return image, image.layers[0]


def test_docker_names_match_as_docker_normalises_them(tmp_path: Path) -> None:
    path = write_image(image_of(BASE), tmp_path, "docker-legacy", "busybox:latest")
    for ref in ("busybox", "busybox:latest", "docker.io/library/busybox:latest", "library/busybox"):
        assert open_image(f"{path}:{ref}").references == ["busybox:latest"]
    with pytest.raises(ImageError, match="no image tagged 'busybox:1'"):
        open_image(f"{path}:busybox:1")


def test_multi_platform_index_defaults_to_linux_amd64_and_honours_platform(tmp_path: Path) -> None:
    amd = image_of([T("amd64")])
    arm = NewImage([NewLayer(make_tar([T("arm64")]))], {}, Platform("linux", "arm64", "v8"))
    write_oci_archive(tmp_path / "multi.tar", [("1", [arm, amd])])
    default = open_image(str(tmp_path / "multi.tar"))
    assert default.platform == Platform("linux", "amd64") and default.index_digest is not None
    chosen = open_image(str(tmp_path / "multi.tar"), "linux/arm64")
    assert chosen.platform.architecture == "arm64"
    assert open_image(str(tmp_path / "multi.tar"), "linux/arm64/v8").manifest_digest == chosen.manifest_digest
    with pytest.raises(
        ImageError, match=r"no manifest for platform linux/s390x \(offered: linux/arm64/v8, linux/amd64\)"
    ):
        open_image(str(tmp_path / "multi.tar"), "linux/s390x")


def test_a_single_platform_image_of_another_platform_is_refused_when_asked(tmp_path: Path) -> None:
    path = write_image(image_of(BASE), tmp_path, "oci-archive")
    with pytest.raises(ImageError, match="the image is linux/amd64, not the requested linux/arm64"):
        open_image(path, "linux/arm64")


def test_history_lines_pair_with_the_layers_they_made(tmp_path: Path) -> None:
    layout = tmp_path / "lay"
    write_oci_layout(layout, [("1", [image_of(BASE, CHANGES)])])
    opened = open_image(str(layout))
    config = json.loads((layout / "blobs/sha256" / opened.config_digest.hex).read_bytes())
    config["history"].insert(1, {"created_by": "ENV A=b", "empty_layer": True})
    _rewrite_config(layout, config)
    reopened = open_image(str(layout))
    assert [layer.history.created_by for layer in reopened.layers if layer.history] == ["layer 0", "layer 1"]


def _rewrite_config(layout: Path, config: dict[str, object]) -> None:
    """Replace the config blob and fix the digests up the chain, as a re-tagging tool would."""
    import hashlib

    index = json.loads((layout / "index.json").read_bytes())
    manifest_entry = index["manifests"][0]
    manifest = json.loads((layout / "blobs/sha256" / manifest_entry["digest"][7:]).read_bytes())
    data = json.dumps(config).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    manifest["config"].update(digest=f"sha256:{digest}", size=len(data))
    manifest_bytes = json.dumps(manifest).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    (layout / "blobs/sha256" / manifest_digest).write_bytes(manifest_bytes)
    manifest_entry.update(digest=f"sha256:{manifest_digest}", size=len(manifest_bytes))
    (layout / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda c: c["config"].update(Env="PATH=/bin"),
            r"\.config\.Env: expected a JSON array, got a string",
        ),
        (
            lambda c: c["rootfs"]["diff_ids"].append("sha256:" + "0" * 64),
            "2 layers but the config lists 3 diff_ids",
        ),
        (
            lambda c: c["rootfs"].update(diff_ids=["sha256:../../etc/passwd"] * 2),
            "is not a sha256 or sha512 digest",
        ),
        (lambda c: c["rootfs"]["diff_ids"].reverse(), r"diff_id.*does not match its digest"),
    ],
)
def test_a_malformed_config_is_one_clear_error(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    layout = tmp_path / "lay"
    write_oci_layout(layout, [("1", [image_of(BASE, CHANGES)])])
    opened = open_image(str(layout))
    config = json.loads((layout / "blobs/sha256" / opened.config_digest.hex).read_bytes())
    mutate(config)
    _rewrite_config(layout, config)
    with pytest.raises(ImageError, match=message):
        reopened = open_image(str(layout))
        for layer in reopened.layers:
            layer_stats(reopened, layer)


def test_a_manifest_that_does_not_match_its_descriptor_is_refused(tmp_path: Path) -> None:
    layout = tmp_path / "lay"
    write_oci_layout(layout, [("1", [image_of(BASE)])])
    index = json.loads((layout / "index.json").read_bytes())
    manifest_path = layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]
    manifest_path.write_bytes(manifest_path.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":2 '))
    with pytest.raises(ImageError, match="manifest blob does not match its descriptor: expected sha256:"):
        open_image(str(layout))


def test_a_missing_layer_blob_is_named(tmp_path: Path) -> None:
    layout = tmp_path / "lay"
    write_oci_layout(layout, [("1", [image_of(BASE, CHANGES)])])
    opened = open_image(str(layout))
    (layout / opened.layers[1].location).unlink()
    with pytest.raises(ImageError, match=rf"layer 2 \({opened.layers[1].digest.short()}\) blob is missing"):
        open_image(str(layout))


def test_a_layer_that_lies_about_its_size_is_refused(tmp_path: Path) -> None:
    layout = tmp_path / "lay"
    write_oci_layout(layout, [("1", [image_of(BASE)])])
    opened = open_image(str(layout))
    blob = layout / opened.layers[0].location
    blob.write_bytes(blob.read_bytes() + b"\0" * 4096)
    with pytest.raises(ImageError, match=r"larger than the .* bytes its descriptor declares"):
        layer_stats(opened, opened.layers[0])


@pytest.mark.parametrize(
    ("media_type", "message"),
    [
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "non-distributable"),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "non-distributable"),
        ("application/x-made-up", "unsupported layer media type 'application/x-made-up'"),
    ],
)
def test_unsupported_and_foreign_layers_are_refused_clearly(tmp_path: Path, media_type: str, message: str) -> None:
    layout = tmp_path / "lay"
    write_oci_layout(layout, [("1", [image_of(BASE)])])
    index = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    manifest["layers"][0]["mediaType"] = media_type
    import hashlib

    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    index["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(ImageError, match=message):
        open_image(str(layout))


def test_not_an_image_is_said_plainly(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match=r"not an image: no index.json"):
        open_image(str(tmp_path / "empty"))
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageError, match="not a readable tar archive"):
        open_image(str(tmp_path / "junk.tar"))
    (tmp_path / "image.tar.gz").write_bytes(gzip.compress(b"x"))
    with pytest.raises(ImageError, match="the archive itself is compressed; decompress it first"):
        open_image(str(tmp_path / "image.tar.gz"))
    with pytest.raises(ImageError, match="no such file or directory"):
        open_image(str(tmp_path / "absent.tar"))


def test_a_huge_index_is_refused_before_it_is_read(tmp_path: Path) -> None:
    layout = tmp_path / "lay"
    layout.mkdir()
    (layout / "index.json").write_bytes(b" " * (17 * 1024 * 1024))
    with pytest.raises(ImageError, match=r"index.json is 17825792 bytes, more than the 16777216 allowed"):
        open_image(str(layout))


def test_legacy_config_must_match_its_file_name(tmp_path: Path) -> None:
    path = Path(write_image(image_of(BASE), tmp_path, "docker-legacy"))
    members = {}
    with tarfile.open(path) as archive:
        for info in archive:
            members[info.name] = archive.extractfile(info).read()  # type: ignore[union-attr]
    config_name = next(name for name in members if name.endswith(".json") and name != "manifest.json")
    members[config_name] = members[config_name].replace(b'"User"', b'"user"') + b" "
    from pysbx.images.writer import write_tar

    path.unlink()
    write_tar(path, members.items())
    with pytest.raises(ImageError, match="does not match its name: its sha256 is"):
        open_image(str(path))


def test_legacy_layers_may_be_compressed_and_are_sniffed(tmp_path: Path) -> None:
    path = write_image(image_of(BASE, CHANGES, compression="zstd"), tmp_path, "docker-legacy")
    opened = open_image(path)
    assert [layer.compression for layer in opened.layers] == ["zstd", "zstd"]
    assert layer_stats(opened, opened.layers[1]).files == 2


def test_walking_a_layer_streams_without_holding_file_data(tmp_path: Path) -> None:
    """Memory grows with entries, not bytes: walk 200 MB of file data and stay small."""
    import tracemalloc

    big = T("big", data=b"\0" * (200 * 1024 * 1024))
    path = write_image(image_of([big, *[T(f"f{i}") for i in range(2000)]]), tmp_path, "oci-archive")
    opened = open_image(path)
    tracemalloc.start()
    stats = layer_stats(opened, opened.layers[0])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert stats.files == 2001 and stats.file_bytes == 200 * 1024 * 1024
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes"


def test_a_tar_that_stops_after_the_last_files_data_is_accepted(tmp_path: Path) -> None:
    """Debian's umoci 0.4.7 writes layers without block padding or end-of-archive blocks."""
    tar = make_tar([T("a", data=b"x" * 700), T("b", data=b"yz")])
    cut = _strip_trailer(tar)
    layout = tmp_path / "lay"
    image = NewImage([NewLayer(cut, "gzip")])
    write_oci_layout(layout, [("1", [image])])
    opened = open_image(str(layout))
    assert [m.entry.path for m in walk_layer(opened, opened.layers[0])] == ["a", "b"]
    truncated = NewImage([NewLayer(cut[:-1], "gzip")])
    write_oci_layout(tmp_path / "bad", [("1", [truncated])])
    bad = open_image(str(tmp_path / "bad"))
    with pytest.raises(ImageError, match="data of /b is cut short"):
        unpack_image(bad, tmp_path / "root")


def _strip_trailer(tar: bytes) -> bytes:
    """Cut a tar right after the last member's data."""
    with tarfile.open(fileobj=__import__("io").BytesIO(tar)) as archive:
        last = archive.getmembers()[-1]
    return tar[: last.offset_data + last.size]


def test_multi_member_gzip_layers_are_read_whole(tmp_path: Path) -> None:
    tar = make_tar([T("a", data=b"1" * 5000), T("b", data=b"2")])
    two_members = gzip.compress(tar[:3000]) + gzip.compress(tar[3000:])
    layout = tmp_path / "lay"
    write_oci_layout(layout, [("1", [NewImage([NewLayer(tar, "none")])])])
    opened = open_image(str(layout))
    # swap the blob for a two-member gzip of the same tar and fix the descriptor
    index = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    import hashlib

    blob_digest = hashlib.sha256(two_members).hexdigest()
    (layout / "blobs/sha256" / blob_digest).write_bytes(two_members)
    manifest["layers"][0].update(
        digest=f"sha256:{blob_digest}",
        size=len(two_members),
        mediaType="application/vnd.oci.image.layer.v1.tar+gzip",
    )
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    index["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
    (layout / "index.json").write_text(json.dumps(index))
    reopened = open_image(str(layout))
    assert reopened.layers[0].diff_id == opened.layers[0].diff_id
    assert layer_stats(reopened, reopened.layers[0]).file_bytes == 5001
    assert compress(b"", "none") == b""


def test_later_layers_replace_folders_and_symlinks_below_the_root(tmp_path: Path) -> None:
    """Regression: replacing a folder or a symlink below the root used to close the parent's
    cached descriptor before the new entry was made in it (EBADF)."""
    first = [
        T("usr", "dir"),
        T("usr/bin", "dir"),
        T("usr/bin/prog", data=b"p"),
        T("usr/bin/rel", "symlink", link="prog"),
        T("etc", "dir"),
        T("etc/app", "dir"),
        T("etc/app/conf", data=b"c"),
    ]
    second = [
        T("usr", "dir"),
        T("usr/bin", "dir"),
        T("usr/bin/rel", "symlink", link="prog2"),
        T("etc", "dir"),
        T("etc/app", data=b"now a file"),
    ]
    path = write_image(image_of(first, second), tmp_path, "oci-layout")
    unpack_image(open_image(path), tmp_path / "root")
    assert os.readlink(tmp_path / "root/usr/bin/rel") == "prog2"
    assert (tmp_path / "root/etc/app").read_bytes() == b"now a file"

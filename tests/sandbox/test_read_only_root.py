"""A read-only root in the foreground (strict's) is an overlay of the cached layers alone:
no writable layer under it, a superblock the kernel keeps read-only; and an image whose mount
points are not all where a placeholder can stand in (behind a symlink) still gets them, from
the overlay with a writable layer (sandbox.runner._mount_root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive
from tests.imagekit import T, make_tar


def root_mount(mountinfo: str) -> tuple[list[str], list[str]]:
    """The mount options and the superblock options of the mount at /."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if fields[4] == "/":
            return fields[5].split(","), fields[-1].split(",")
    raise AssertionError(f"no mount at / in:\n{mountinfo}")


def test_a_read_only_root_has_no_writable_layer_at_all(sandbox) -> None:  # type: ignore[no-untyped-def]
    result = sandbox("cat /proc/self/mountinfo; echo ---; cat /etc/hostname; touch /x 2>&1")
    mountinfo, _, rest = result.stdout.partition("---\n")
    options, superblock = root_mount(mountinfo)
    assert "ro" in options and "ro" in superblock, mountinfo  # the filesystem itself, not only this mount
    assert not any(option.startswith(("upperdir=", "workdir=")) for option in superblock), mountinfo
    hostname, touched = rest.splitlines()
    assert hostname.startswith("pysandbox-") and "Read-only file system" in touched, rest


@pytest.fixture(scope="session")
def linked_etc_image(world: Path) -> str:
    """busybox whose /etc/resolv.conf is a symlink to a file it lacks (as systemd-resolved
    images have it): the file etc_files mounts on has to be made at the link's target."""
    name = "busybox-linked-resolv.tar"
    linked = make_tar([T("etc", "dir"), T("etc/resolv.conf", "symlink", link="../run/resolv.conf")])
    layers = [NewLayer(tar_from_directory(world / "rootfs"), "gzip", "COPY rootfs /"), NewLayer(linked, "gzip", "RUN")]
    write_docker_archive(
        world / name, NewImage(layers, {"User": "1000:1000", "Cmd": ["/bin/sh"]}), [f"example/{name}:1"]
    )
    (world / name).chmod(0o644)
    return name


def test_a_mount_point_behind_a_symlink_is_still_made_and_the_root_stays_read_only(  # type: ignore[no-untyped-def]
    sandbox, linked_etc_image: str
) -> None:
    result = sandbox(
        "ls /run; grep -q . /etc/resolv.conf && echo resolv; touch /x 2>&1 || true", image=linked_etc_image
    )
    assert result.returncode == 0, result.stderr
    listed, resolv, touched = result.stdout.splitlines()
    assert (listed, resolv) == ("resolv.conf", "resolv") and "Read-only file system" in touched, result.stdout

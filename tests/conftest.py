from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.imagekit import static_busybox

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def reserved_ids() -> None:
    """As root, the id range root's containers run as (`pysandbox system setup-ids`, which
    the README asks of a host once): made here if missing, as an administrator would."""
    import os

    if os.geteuid() == 0:
        from pysbx.sandbox.idsetup import reserve_ids

        reserve_ids()


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runnable image (docker-archive) built from Debian's static busybox with the
    project's own example recipe and `pysandbox image build`."""
    if static_busybox() is None:
        pytest.skip("needs Debian's busybox-static")
    work = tmp_path_factory.mktemp("busybox")
    subprocess.run([str(ROOT / "examples/busybox/make-rootfs.sh"), str(work / "rootfs")], check=True)
    from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive

    image = NewImage(
        [NewLayer(tar_from_directory(work / "rootfs"), "gzip", "COPY rootfs /")],
        {"User": "1000", "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
    )
    write_docker_archive(work / "busybox.tar", image, ["example/busybox:1"])
    return work / "busybox.tar"

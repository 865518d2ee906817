"""Fixtures every sandbox test shares: the busybox images and policies in a folder every
user can read, the ordinary test user, and `sandbox`, which runs `pysandbox run` as root
or as that user (parametrised: each test runs both ways)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive
from tests.conftest import ROOT
from tests.imagekit import T, make_tar, static_busybox

PYSANDBOX = str(Path(sys.executable).parent / "pysandbox")
TEST_USER = "sbxtest"
MODES = ["root", "user"]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder every test user can read: images and policies live here."""
    if static_busybox() is None:
        pytest.skip("needs Debian's busybox-static")
    folder = Path(tempfile.mkdtemp(prefix="pysandbox-tests-"))
    folder.chmod(0o755)
    rootfs = folder / "rootfs"
    subprocess.run([str(ROOT / "examples/busybox/make-rootfs.sh"), str(rootfs)], check=True)
    base = tar_from_directory(rootfs)
    (rootfs / "etc/removed-later").write_text("x")
    layers = [
        NewLayer(base, "gzip", "COPY rootfs /"),
        NewLayer(
            make_tar([T("etc", "dir"), T("etc/removed-later", data=b"gone"), T("etc/kept", data=b"kept\n")]),
            "zstd",
            "RUN add",
        ),
        NewLayer(make_tar([T("etc", "dir"), T("etc/.wh.removed-later")]), "gzip", "RUN rm /etc/removed-later"),
    ]
    for name, user in (("busybox-root.tar", "0"), ("busybox-app.tar", "1000:1000")):
        write_docker_archive(
            folder / name,
            NewImage(layers, {"User": user, "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
            [f"example/{name}:1"],
        )
    for name in ("strict", "baseline", "permissive"):
        text = (ROOT / f"policies/{name}.yaml").read_text().replace("  required: true", "  required: false")
        (folder / f"{name}-unsigned.yaml").write_text(text)
    (folder / "strict-with-probe.yaml").write_text(
        (folder / "strict-unsigned.yaml")
        .read_text()
        .replace("    binds: []", f"    binds: [{{source: {folder}, read_only: true}}]")
    )
    (folder / "volumes-allowed.yaml").write_text(
        (folder / "strict-unsigned.yaml").read_text().replace("    volumes: false", "    volumes: true")
    )
    for item in folder.rglob("*"):
        if not item.is_symlink():
            item.chmod(item.stat().st_mode | 0o044 | (0o011 if item.is_dir() else 0))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def invoking_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def as_user(user: str) -> list[str]:
    """The prefix that runs a command as `user`: runuser from root, nothing when the tests
    already run as that user."""
    return [] if os.geteuid() != 0 and user == invoking_user() else ["runuser", "-u", user, "--"]


@pytest.fixture(scope="session")
def test_user() -> str:
    """The ordinary user of user mode: made (as sbxtest) when the tests run as root, else the
    user running them."""
    if os.geteuid() != 0:
        return invoking_user()
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", TEST_USER], check=True)
    probe = subprocess.run(
        ["runuser", "-u", TEST_USER, "--", sys.executable, "-c", "import pysbx.sandbox"], capture_output=True, cwd="/"
    )
    if probe.returncode != 0:
        pytest.skip(f"{TEST_USER} cannot run this interpreter ({probe.stderr.decode().strip()[-200:]})")
    return TEST_USER


def command(mode: str, args: list[str], user: str | None) -> list[str]:
    if mode == "root":
        if os.geteuid() != 0:
            pytest.skip("root mode needs root")
        return [PYSANDBOX, "run", *args]
    assert user is not None
    home = pwd.getpwnam(user).pw_dir
    return [*as_user(user), "env", f"HOME={home}", "XDG_RUNTIME_DIR=", PYSANDBOX, "run", *args]


@pytest.fixture(params=MODES)
def sandbox(request: pytest.FixtureRequest, world: Path) -> object:
    mode = request.param
    if mode == "root" and os.geteuid() != 0:  # before a test looks at root's storage
        pytest.skip("root mode needs root")
    user = request.getfixturevalue("test_user") if mode == "user" else None

    def run(
        *args: str,
        policy: str = "strict-unsigned.yaml",
        image: str = "busybox-app.tar",
        timeout: float = 60,
        **kw: object,
    ) -> subprocess.CompletedProcess[str]:
        full = (
            ["--rm", "--policy", str(world / policy), *args[:-1], str(world / image), "sh", "-c", args[-1]]
            if args
            else []
        )
        return subprocess.run(command(mode, full, user), capture_output=True, text=True, timeout=timeout, cwd="/", **kw)  # type: ignore[call-overload]

    run.mode = mode  # type: ignore[attr-defined]
    run.user = user  # type: ignore[attr-defined]
    return run


@pytest.fixture
def named(sandbox: Any) -> Iterator[list[str]]:
    """Container names a test uses, each removed (rm -f) at its end, passed or failed."""
    from tests.sandbox.harness import tool

    names: list[str] = []
    yield names
    for name in names:
        tool(sandbox, "rm", "-f", name)


@pytest.fixture(scope="session")
def denials_image(world: Path) -> str:
    """busybox plus /denials (tests/sandbox/denials.c, static: calls made on purpose, for
    run --explain and learn), in the world folder; its file name there."""
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler for the test program")
    binary = world / "denials"
    source = Path(__file__).with_name("denials.c")
    subprocess.run(["cc", "-static", "-O2", "-pthread", "-o", str(binary), str(source)], check=True)
    owned = T("home/owned", data=b"another user's\n", mode=0o600, uid=1000, gid=1000)  # capability checks
    extra = make_tar([T("denials", data=binary.read_bytes(), mode=0o755), owned])
    layers = [NewLayer(tar_from_directory(world / "rootfs"), "gzip", "COPY rootfs /"), NewLayer(extra, "gzip", "COPY")]
    image = world / "busybox-denials.tar"
    write_docker_archive(image, NewImage(layers, {"User": "1000:1000", "Env": ["PATH=/bin"]}), ["example/denials:1"])
    for item in (binary, image):
        item.chmod(0o755)
    return image.name

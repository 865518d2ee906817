"""The one primitive under sandbox/linux.py: the C extension sandbox._syscall and its ctypes
stand-in must give the same answers on real system calls, and a container must come up
confined with either."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from pysbx.sandbox import linux, syscall_ctypes
from tests.sandbox.harness import root_container_base

NUMBERS = {"x86_64": {"getpid": 39, "write": 1, "read": 0, "writev": 20}, "aarch64": {"getpid": 172, "write": 64, "read": 63, "writev": 66}}[os.uname().machine]  # fmt: skip


def native() -> ModuleType:
    return pytest.importorskip("pysbx.sandbox._syscall", reason="the extension was not built here")


IMPLEMENTATIONS: dict[str, Callable[[], ModuleType]] = {"C extension": native, "ctypes": lambda: syscall_ctypes}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def primitive(request: pytest.FixtureRequest) -> ModuleType:
    return IMPLEMENTATIONS[request.param]()


def test_the_install_built_the_extension_and_linux_uses_it() -> None:
    """Where a compiler and the Python headers are (the README's install and .ci/run put
    them there), the install compiles the extension and linux.py uses it."""
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists() or not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no C compiler or Python headers here: the install fell back to ctypes")
    from pysbx.sandbox import _syscall

    assert linux.syscall is _syscall.syscall


def test_answers_and_errors_are_the_kernels(primitive: ModuleType) -> None:
    assert primitive.syscall(NUMBERS["getpid"]) == os.getpid()
    with pytest.raises(OSError) as refused:
        primitive.syscall(NUMBERS["write"], 987654, b"x", 1)
    assert refused.value.errno == 9  # EBADF, with its message
    assert refused.value.strerror == os.strerror(9)
    with pytest.raises(TypeError):
        primitive.syscall(NUMBERS["getpid"], 1.5)


def test_bytes_are_read_and_bytearrays_written(primitive: ModuleType) -> None:
    read, write = os.pipe()
    try:
        assert primitive.syscall(NUMBERS["write"], write, b"hello", 5) == 5
        into = bytearray(5)
        assert primitive.syscall(NUMBERS["read"], read, into, 5) == 5
        assert into == b"hello"
    finally:
        os.close(read)
        os.close(write)


def test_an_address_points_at_the_buffer(primitive: ModuleType) -> None:
    """writev reads two buffers through the addresses in its iovec array."""
    first, second = b"conta", bytearray(b"iner")
    vectors = b"".join(
        primitive.address(part).to_bytes(8, sys.byteorder) + len(part).to_bytes(8, sys.byteorder)
        for part in (first, second)
    )
    read, write = os.pipe()
    try:
        assert primitive.syscall(NUMBERS["writev"], write, vectors, 2) == 9
        assert os.read(read, 16) == b"container"
    finally:
        os.close(read)
        os.close(write)


def test_a_container_is_confined_through_ctypes_too(world: Path) -> None:
    """With the extension hidden, the fallback unshares, mounts, drops capabilities and
    loads the seccomp filter just the same."""
    if os.geteuid() != 0:
        pytest.skip("runs as root here")
    hide = (
        "import sys; sys.modules['pysbx.sandbox._syscall'] = None; import pysbx.sandbox.linux as l; "
        "assert l.syscall.__module__ == 'pysbx.sandbox.syscall_ctypes'; from pysbx.cli.entry import main; main()"
    )
    args = ["run", "--rm", "--policy", str(world / "strict-unsigned.yaml"), str(world / "busybox-app.tar")]
    probe = "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; cat /proc/self/uid_map"
    state = tempfile.mkdtemp(prefix="pysandbox-state-")
    os.chmod(state, 0o711)  # the container's mapped ids traverse it
    result = subprocess.run(
        [sys.executable, "-c", hide, *args, "sh", "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "PYSANDBOX_STATE": state},
        cwd="/",
        timeout=60,
    )
    shutil.rmtree(state, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":\t") for line in result.stdout.splitlines() if ":\t" in line)
    assert fields == {"CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}
    assert result.stdout.split("\n")[3].split()[:2] == ["0", str(root_container_base())]

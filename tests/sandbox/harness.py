"""Helpers for the tests that run the sandbox for real, beside the fixtures of conftest.py:
policy variants, an image with a static attack program (for the system calls busybox has no
applet for), long-running containers to signal, and counts of what runs may leave behind."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive
from pysbx.sandbox import procfs
from tests.imagekit import T, make_tar
from tests.sandbox.conftest import as_user, command

ATTACK_SOURCE = Path(__file__).with_name("attack.c")


class Sandbox(Protocol):
    """conftest's `sandbox`: runs `pysandbox run --rm --policy P FLAGS... IMAGE sh -c SCRIPT`
    (SCRIPT is the last argument) as root or as the test user."""

    mode: str
    user: str | None

    def __call__(
        self, *args: str, policy: str = ..., image: str = ..., timeout: float = ..., **kw: object
    ) -> subprocess.CompletedProcess[str]: ...


def tool(sandbox: Sandbox, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """Another pysandbox command (`volume rm`, `prune`) as the sandbox's user."""
    argv = tool_argv(sandbox) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=60, **kw)  # type: ignore[call-overload,no-any-return]


def tool_argv(sandbox: Sandbox) -> list[str]:
    """`pysandbox` (without `run`) as the sandbox's user."""
    return command(sandbox.mode, [], sandbox.user)[:-1]


def share(folder: Path) -> None:
    """Make everything under `folder` readable (and folders traversable) by the test user."""
    for item in [folder, *folder.rglob("*")]:
        if not item.is_symlink():
            item.chmod(item.stat().st_mode | 0o044 | (0o011 if item.is_dir() else 0))


def strict_variant(world: Path, name: str, *replacements: tuple[str, str]) -> Path:
    """A policy file in `world`: strict (unsigned) with each (old, new) text replaced; every
    `old` must be there, so a changed strict.yaml fails loudly instead of testing nothing."""
    text = (world / "strict-unsigned.yaml").read_text()
    for old, new in replacements:
        assert old in text, f"strict.yaml no longer has {old!r}"
        text = text.replace(old, new)
    path = world / name
    path.write_text(text)
    path.chmod(0o644)
    return path


@pytest.fixture(scope="session")
def attack_image(world: Path) -> Path:
    """busybox plus /attack (tests/sandbox/attack.c, static) and symlinks that try to steer
    mount destinations out of the root: /to-proc -> /proc, /up -> .., /to-etc -> /etc,
    /deep -> ../../.. ."""
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler for the attack program")
    binary = world / "attack"
    subprocess.run(["cc", "-static", "-O2", "-o", str(binary), str(ATTACK_SOURCE)], check=True)
    extra = make_tar(
        [
            T("attack", data=binary.read_bytes(), mode=0o755),
            T("to-proc", "symlink", link="/proc"),
            T("up", "symlink", link=".."),
            T("to-etc", "symlink", link="/etc"),
            T("deep", "symlink", link="../../.."),
        ]
    )
    image = world / "busybox-attack.tar"
    layers = [NewLayer(tar_from_directory(world / "rootfs"), "gzip", "COPY rootfs /"), NewLayer(extra, "gzip", "COPY")]
    write_docker_archive(image, NewImage(layers, {"User": "1000:1000", "Env": ["PATH=/bin"]}), ["example/attack:1"])
    share(world)
    return image


def start_until_ready(
    sandbox: Sandbox,
    world: Path,
    script: str,
    flags: tuple[str, ...] = ("--rm",),
    image: str = "busybox-app.tar",
    policy: str = "strict-unsigned.yaml",
) -> tuple[subprocess.Popen[str], int]:
    """Start a long-running container (under strict unless told), wait for its `ready` line,
    and return the process and the pid of pysandbox itself (below runuser in user mode)."""
    full = [*flags, "--policy", str(world / policy), str(world / image), "sh", "-c", script]
    process = subprocess.Popen(
        command(sandbox.mode, full, sandbox.user), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/"
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process, monitor_pid(sandbox, process.pid)


def monitor_pid(sandbox: Sandbox, started: int) -> int:
    """pysandbox's own pid, for a command line `started` as the sandbox's user: below runuser
    when there is one (env execs pysandbox, so without runuser it is `started` itself)."""
    under_runuser = sandbox.mode == "user" and bool(as_user(str(sandbox.user)))
    return pysandbox_below(started) if under_runuser else started


def pysandbox_below(pid: int, poll: float = 0.05, seconds: float = 2.5) -> int:
    """The pysandbox process under runuser (and env, which execs it), looked for every
    `poll` seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for child in procfs.children(pid):
            if "pysandbox" in cmdline(str(child)):
                return child
        time.sleep(poll)
    raise AssertionError("pysandbox did not start under runuser")


def cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def processes_with(marker: str) -> list[str]:
    """Host pids whose command line contains `marker`."""
    return [p for p in os.listdir("/proc") if p.isdigit() and marker in cmdline(p)]


def wait_until(condition: Callable[[], object], seconds: float = 5) -> bool:
    """Poll `condition()` until it holds or `seconds` pass; return its last value."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(condition())


def state_folders(mode: str, cache: Path) -> list[Path]:
    """Where this mode's per-container state folders live (sandbox/state.container_dir;
    runs as the test user get XDG_RUNTIME_DIR= so theirs are in the cache), and the layer
    and image caches where unpacking stages its `.unpack-*` folders."""
    containers = [Path("/run/pysandbox")] if mode == "root" else []
    return [*containers, cache / "containers", cache / "layers", cache / "images"]


def default_cache(sandbox: Sandbox) -> Path:
    """The cache a run uses when PYSANDBOX_STATE is not set."""
    if sandbox.mode == "root":
        return Path(os.environ.get("PYSANDBOX_STATE", "/var/lib/pysandbox"))
    assert sandbox.user is not None
    return Path(pwd.getpwnam(sandbox.user).pw_dir) / ".cache/pysandbox"


def leftovers(sandbox: Sandbox, cache: Path, marker: str) -> dict[str, object]:
    """What runs named `marker` (--name, and in their command line) may leave on the host,
    to compare before and after: mounts in our mount namespace, processes, per-container
    state and staging folders, /tmp entries of ours, and this process's descriptors. Other
    workers' containers on this machine are told apart by the marker, their /tmp entries
    by their owner."""
    return {
        "mounts": len(Path("/proc/self/mountinfo").read_text().splitlines()),
        "processes": processes_with(marker),
        "state": state_entries(sandbox.mode, cache, marker),
        "tmp": own_tmp_entries(sandbox),
        "fds": sorted(os.listdir("/proc/self/fd")),
    }


def own_tmp_entries(sandbox: Sandbox) -> list[str]:
    """/tmp entries of pysandbox's that belong to the user the sandbox runs as."""
    owner = pwd.getpwnam(sandbox.user).pw_uid if sandbox.user else os.geteuid()
    tmp = tempfile.gettempdir()
    names = (name for name in os.listdir(tmp) if "pysandbox" in name or "unpack" in name)
    return sorted(name for name in names if _owner(os.path.join(tmp, name)) == owner)


def _owner(path: str) -> int | None:
    with contextlib.suppress(FileNotFoundError):
        return os.lstat(path).st_uid
    return None


def state_entries(mode: str, cache: Path, marker: str) -> list[str]:
    """Per-container state folders of runs named `marker`, and staging folders of unpacks."""
    return sorted(
        str(entry)
        for folder in state_folders(mode, cache)
        if folder.is_dir()
        for entry in folder.iterdir()
        if entry.name.startswith((marker, ".unpack-"))
    )


def root_container_base() -> int:
    """The first host id of root's containers: the range reserved for pysandbox in
    /etc/subuid (tests/conftest.py reserves it in a root session)."""
    from pysbx.sandbox.idmap import PASSWD, SUBUID, reserved_range

    return reserved_range(SUBUID, PASSWD).host


def signed_image(folder: Path, source: Path) -> Path:
    """`folder` with a copy of `source` signed by a new key (image.tar and its sidecar
    bundle, team.key, team.pub) and policy.yaml, strict trusting that key; readable by the
    test users. Returns `folder`."""
    from tests.sandbox.conftest import PYSANDBOX

    folder.mkdir(exist_ok=True)
    shutil.copy(source, folder / "image.tar")
    subprocess.run(
        [PYSANDBOX, "keygen", "--no-password", "--output-key-prefix", str(folder / "team")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [PYSANDBOX, "sign", str(folder / "image.tar"), "--key", str(folder / "team.key")],
        check=True,
        capture_output=True,
    )
    (folder / "policy.yaml").write_text("version: 1\nextends: strict\nsigning:\n  keys: [team.pub]\n")
    share(folder)
    return folder


PASSWD = b"root:x:0:0::/root:/bin/sh\npostgres:x:100:102::/var/lib/postgresql:/bin/sh\n"


def owned_image(world: Path, name: str, extra: list[T]) -> str:
    path = world / name
    if not path.exists():
        layers = [NewLayer(tar_from_directory(world / "rootfs"), "gzip", "COPY rootfs /"),
                  NewLayer(make_tar(extra), "gzip", "RUN useradd postgres")]  # fmt: skip
        write_docker_archive(path, NewImage(layers, {"Env": ["PATH=/bin"]}), [f"example/{name}:1"])
        share(world)
    return name


OWNERS = "owners.tar"  # made by the postgres_like fixture


@pytest.fixture
def postgres_like(world: Path) -> str:
    """busybox with a postgres user (100:102) whose home is 0700 and holds a 0600 file."""
    return owned_image(world, OWNERS, [
        T("etc", "dir"), T("etc/passwd", data=PASSWD, mode=0o644),
        T("etc/group", data=b"root:x:0:\npostgres:x:102:\n", mode=0o644),
        T("var", "dir"), T("var/lib", "dir"),
        T("var/lib/postgresql", "dir", mode=0o700, uid=100, gid=102),
        T("var/lib/postgresql/secret", data=b"pg\n", mode=0o600, uid=100, gid=102),
        T("nobodys", data=b"x\n", uid=65534, gid=65534),
    ])  # fmt: skip


def subordinate_starts(user: str) -> tuple[int, int]:
    from pysbx.sandbox.idmap import _subordinate

    uid = pwd.getpwnam(user).pw_uid
    found = [_subordinate(path, user, uid) for path in ("/etc/subuid", "/etc/subgid")]
    if None in found:
        pytest.skip(f"{user} has no subordinate ids")
    return found[0].host, found[1].host  # type: ignore[union-attr]


# ----- published ports (test_network, test_bridge) -----


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch(port: int, seconds: float = 5.0) -> str:
    """The page on 127.0.0.1:port, retried while the server inside starts."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                return str(page.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def port_is_free(port: int) -> bool:
    """Nothing listens there (connections the engine accepted may linger in TIME_WAIT)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True

"""`--network pasta` and published ports, as root and as an ordinary user, with Debian's
pasta (package passt): an HTTP server in a container answers on its published host port and
only there, a port in use or outside the policy is one line, and neither `rm` nor a SIGKILL
of the monitor leaves an engine or a bound port behind. Traffic stays on this machine: the
host's loopback and the namespaces the runs make."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive
from tests.sandbox.harness import Sandbox, tool

POLICY = "baseline-unsigned.yaml"  # pasta among network_modes; -p on 127.0.0.1 from 1024
SERVE = "mkdir -p /tmp/www && echo {text} > /tmp/www/index.html && exec httpd -f -p {port} -h /tmp/www"


@pytest.fixture(autouse=True)
def pasta_usable(sandbox: Sandbox) -> None:
    if shutil.which("pasta") is None:
        pytest.skip("needs pasta (Debian's passt)")
    tun = Path("/dev/net/tun")
    if sandbox.user is not None and (not tun.exists() or tun.stat().st_mode & 0o006 != 0o006):
        pytest.skip("an ordinary user's pasta needs /dev/net/tun mode 0666 (Debian's default; .ci/run sets it)")


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


def pastas_publishing(port: int) -> list[int]:
    """pasta processes whose command line publishes host port `port`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            words = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.isdigit() and words[0].endswith(b"pasta") and f"/{port}:".encode() in b" ".join(words):
            found.append(int(entry))
    return found


def serve(sandbox: Sandbox, world: Path, name: str, port: int, *flags: str) -> subprocess.CompletedProcess[str]:
    return tool(sandbox, "run", "-d", "--name", name, "--policy", str(world / POLICY), "--network", "pasta",
                "-p", f"{port}:8000", *flags, str(world / "busybox-app.tar"),
                "sh", "-c", SERVE.format(text=name, port=8000))  # fmt: skip


def test_a_published_port_reaches_the_server_in_the_container_until_rm(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"web-{sandbox.mode}")
    port = free_port()
    started = serve(sandbox, world, name, port)
    assert started.returncode == 0, started.stderr
    assert fetch(port) == f"{name}\n"
    shown = tool(sandbox, "port", name)
    assert shown.stdout == f"8000/tcp -> 127.0.0.1:{port}\n", shown.stderr
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    assert inspected["ports"] == [{"container_port": 8000, "host_ip": "127.0.0.1", "host_port": port,
                                   "protocol": "tcp"}]  # fmt: skip
    assert len(pastas_publishing(port)) == 1
    assert tool(sandbox, "rm", "-f", name).returncode == 0
    assert port_is_free(port) and pastas_publishing(port) == []


def test_a_published_port_is_the_same_after_a_restart(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    named.append(name := f"web-again-{sandbox.mode}")
    port = free_port()
    assert serve(sandbox, world, name, port).returncode == 0
    assert fetch(port) == f"{name}\n"
    restarted = tool(sandbox, "restart", name)
    assert restarted.returncode == 0, restarted.stderr
    assert fetch(port) == f"{name}\n"


def test_a_port_in_use_is_refused_in_one_line_and_nothing_starts(sandbox: Sandbox, world: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = tool(sandbox, "run", "--rm", "--policy", str(world / POLICY), "--network", "pasta",
                   "-p", f"{port}:8000", str(world / "busybox-app.tar"), "echo", "started")  # fmt: skip
    assert ran.returncode == 125 and "started" not in ran.stdout
    errors = [line for line in ran.stderr.splitlines() if "error" in line]
    assert errors == [f"pysandbox: error: host port 127.0.0.1:{port}/tcp cannot be published: Address already in use"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["-p", "0.0.0.0:18000:8000"], "the host address 0.0.0.0 is not one the policy lets ports be published on"),
        (["-p", "80:8000"], "host port 80 is below the lowest the policy allows (1024)"),
        (["--network", "loopback", "-p", "18000:8000"], "-p and -P need a network that publishes ports"),
    ],
)
def test_ports_outside_the_policy_are_refused_naming_it(
    sandbox: Sandbox, world: Path, flags: list[str], words: str
) -> None:
    ran = tool(sandbox, "run", "--rm", "--policy", str(world / POLICY), "--network", "pasta", *flags,
               str(world / "busybox-app.tar"), "echo", "started")  # fmt: skip
    assert ran.returncode == 125 and "started" not in ran.stdout
    assert words in ran.stderr, ran.stderr


def test_strict_refuses_the_engine(sandbox: Sandbox, world: Path) -> None:
    ran = tool(sandbox, "run", "--rm", "--policy", str(world / "strict-unsigned.yaml"), "--network", "pasta",
               str(world / "busybox-app.tar"), "echo", "started")  # fmt: skip
    assert ran.returncode == 125 and "--network pasta is refused: the policy allows the networks none" in ran.stderr


def test_under_pasta_the_container_has_the_hosts_address_and_the_forwarded_resolver(
    sandbox: Sandbox, world: Path
) -> None:
    ran = tool(sandbox, "run", "--rm", "--policy", str(world / POLICY), "--network", "pasta",
               str(world / "busybox-app.tar"), "sh", "-c", "ip -o -4 addr show; cat /etc/resolv.conf")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    interfaces = [line.split()[1] for line in ran.stdout.splitlines() if " inet " in line]
    assert "lo" in interfaces and len(interfaces) == 2  # lo and the tap pasta configured
    assert [line for line in ran.stdout.splitlines() if line.startswith("nameserver")] == ["nameserver 169.254.1.1"]


def test_a_sigkilled_monitor_leaves_no_engine_and_no_bound_port(
    sandbox: Sandbox, world: Path, named: list[str]
) -> None:
    named.append(name := f"web-killed-{sandbox.mode}")
    port = free_port()
    assert serve(sandbox, world, name, port).returncode == 0
    assert fetch(port) == f"{name}\n"
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    os.kill(inspected["status"]["monitor"][0], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (pastas_publishing(port) or not port_is_free(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pastas_publishing(port) == [] and port_is_free(port)


def test_publish_all_publishes_the_images_exposed_ports(sandbox: Sandbox, world: Path, named: list[str]) -> None:
    image = world / "busybox-exposed.tar"
    if not image.exists():
        write_docker_archive(image, NewImage([NewLayer(tar_from_directory(world / "rootfs"), "gzip", "COPY rootfs /")],
                             {"User": "1000:1000", "Env": ["PATH=/bin"], "ExposedPorts": {"8000/tcp": {}}}),
                             ["example/exposed:1"])  # fmt: skip
        image.chmod(0o644)
    named.append(name := f"web-all-{sandbox.mode}")
    started = tool(sandbox, "run", "-d", "--name", name, "--policy", str(world / POLICY), "--network", "pasta", "-P",
                   str(image), "sh", "-c", SERVE.format(text=name, port=8000))  # fmt: skip
    assert started.returncode == 0, started.stderr
    shown = tool(sandbox, "port", name, "8000/tcp").stdout.split()
    assert shown[:2] == ["8000/tcp", "->"] and shown[2].startswith("127.0.0.1:")
    assert fetch(int(shown[2].rpartition(":")[2])) == f"{name}\n"


def test_the_container_cannot_reach_services_on_the_hosts_loopback(sandbox: Sandbox, world: Path) -> None:
    """pasta's defaults would forward the host's bound ports into the container's own
    loopback (-T auto) and map the gateway address to the host's loopback: both are off, so
    a service listening on the host's 127.0.0.1 (a database, a Docker socket's proxy, a
    metadata endpoint) is out of the container's reach, at either address."""
    with socket.socket() as host_service:
        host_service.bind(("127.0.0.1", 0))
        host_service.listen()
        port = host_service.getsockname()[1]
        probe = (f"gw=$(ip route | awk '/^default/ {{print $3}}'); "
                 f"for address in 127.0.0.1 $gw; do nc -w 2 $address {port} </dev/null && echo reached $address; done; "
                 "echo probed")  # fmt: skip
        ran = tool(sandbox, "run", "--rm", "--policy", str(world / POLICY), "--network", "pasta",
                   str(world / "busybox-app.tar"), "sh", "-c", probe)  # fmt: skip
    assert ran.returncode == 0 and ran.stdout.endswith("probed\n"), ran.stderr
    assert "reached" not in ran.stdout

"""`--network pasta|slirp4netns` and published ports, as root and as an ordinary user, with
Debian's engines: an HTTP server in a container answers on its published host port and only
there, a port in use or outside the policy is one line, the host's loopback is out of reach,
and neither `rm` nor a SIGKILL of the monitor leaves an engine or a bound port behind.
Traffic stays on this machine: the host's loopback and the namespaces the runs make."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive
from tests.sandbox.harness import Sandbox, fetch, free_port, port_is_free, tool

POLICY = "baseline-unsigned.yaml"  # pasta and slirp4netns among network_modes; -p on 127.0.0.1 from 1024
ENGINE_NAMES = {"pasta": ("pasta", "passt", "passt.avx2"), "slirp4netns": ("slirp4netns",)}
RESOLVERS = {"pasta": "169.254.1.1", "slirp4netns": "10.0.2.3"}
SERVE = "mkdir -p /tmp/www && echo {text} > /tmp/www/index.html && exec httpd -f -p {port} -h /tmp/www"


@pytest.fixture(params=list(ENGINE_NAMES))
def engine(request: pytest.FixtureRequest, sandbox: Sandbox) -> str:
    """Each test with each engine, where it is installed and usable."""
    name: str = request.param
    if shutil.which(name) is None:
        pytest.skip(f"needs {name} (Debian's {'passt' if name == 'pasta' else name})")
    tun = Path("/dev/net/tun")
    if sandbox.user is not None and (not tun.exists() or tun.stat().st_mode & 0o006 != 0o006):
        pytest.skip("an ordinary user's engine needs /dev/net/tun mode 0666 (Debian's default; .ci/run sets it)")
    return name


def engines_of(monitor: int, engine: str) -> list[int]:
    """The engine processes the container's monitor started (its children of that name)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition("(")[2].rpartition(")")
        if name in ENGINE_NAMES[engine] and int(rest.split()[1]) == monitor:
            found.append(int(entry))
    return found


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def monitor_of(sandbox: Sandbox, name: str) -> int:
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    return int(inspected["status"]["monitor"][0])


def serve(
    sandbox: Sandbox, world: Path, engine: str, name: str, port: int, *flags: str
) -> subprocess.CompletedProcess[str]:
    return tool(sandbox, "run", "-d", "--name", name, "--policy", str(world / POLICY), "--network", engine,
                "-p", f"{port}:8000", *flags, str(world / "busybox-app.tar"),
                "sh", "-c", SERVE.format(text=name, port=8000))  # fmt: skip


def served(sandbox: Sandbox, world: Path, engine: str, named: list[str], label: str) -> tuple[str, int]:
    """A detached web server publishing a free port, answering there: its name and the port."""
    named.append(name := f"{label}-{engine}-{sandbox.mode}")
    port = free_port()
    started = serve(sandbox, world, engine, name, port)
    assert started.returncode == 0, started.stderr
    assert fetch(port) == f"{name}\n"
    return name, port


def test_a_published_port_reaches_the_server_in_the_container_until_rm(
    sandbox: Sandbox, world: Path, engine: str, named: list[str]
) -> None:
    name, port = served(sandbox, world, engine, named, "web")
    shown = tool(sandbox, "port", name)
    assert shown.stdout == f"8000/tcp -> 127.0.0.1:{port}\n", shown.stderr
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    assert inspected["network"] == engine
    assert inspected["ports"] == [{"container_port": 8000, "host_ip": "127.0.0.1", "host_port": port,
                                   "protocol": "tcp"}]  # fmt: skip
    running = engines_of(monitor_of(sandbox, name), engine)
    assert len(running) == 1
    assert tool(sandbox, "rm", "-f", name).returncode == 0
    assert port_is_free(port) and alive(running) == []


def test_a_published_port_is_the_same_after_a_restart(
    sandbox: Sandbox, world: Path, engine: str, named: list[str]
) -> None:
    name, port = served(sandbox, world, engine, named, "web-again")
    restarted = tool(sandbox, "restart", name)
    assert restarted.returncode == 0, restarted.stderr
    assert fetch(port) == f"{name}\n"


def test_a_port_in_use_is_refused_in_one_line_and_nothing_starts(sandbox: Sandbox, world: Path, engine: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = tool(sandbox, "run", "--rm", "--policy", str(world / POLICY), "--network", engine,
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
    sandbox: Sandbox, world: Path, engine: str, flags: list[str], words: str
) -> None:
    ran = tool(sandbox, "run", "--rm", "--policy", str(world / POLICY), "--network", engine, *flags,
               str(world / "busybox-app.tar"), "echo", "started")  # fmt: skip
    assert ran.returncode == 125 and "started" not in ran.stdout
    assert words in ran.stderr, ran.stderr


def test_strict_refuses_the_engine(sandbox: Sandbox, world: Path, engine: str) -> None:
    ran = tool(sandbox, "run", "--rm", "--policy", str(world / "strict-unsigned.yaml"), "--network", engine,
               str(world / "busybox-app.tar"), "echo", "started")  # fmt: skip
    assert ran.returncode == 125
    assert f"--network {engine} is refused: the policy allows the networks none" in ran.stderr


def test_the_container_gets_an_interface_and_the_engines_resolver(sandbox: Sandbox, world: Path, engine: str) -> None:
    ran = tool(sandbox, "run", "--rm", "--policy", str(world / POLICY), "--network", engine,
               str(world / "busybox-app.tar"), "sh", "-c", "ip -o -4 addr show; cat /etc/resolv.conf")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    interfaces = [line.split()[1] for line in ran.stdout.splitlines() if " inet " in line]
    assert "lo" in interfaces and len(interfaces) == 2  # lo and the tap the engine configured
    assert [line for line in ran.stdout.splitlines() if line.startswith("nameserver")] == [
        f"nameserver {RESOLVERS[engine]}"
    ]


def test_a_sigkilled_monitor_leaves_no_engine_and_no_bound_port(
    sandbox: Sandbox, world: Path, engine: str, named: list[str]
) -> None:
    name, port = served(sandbox, world, engine, named, "web-killed")
    monitor = monitor_of(sandbox, name)
    running = engines_of(monitor, engine)
    assert len(running) == 1
    os.kill(monitor, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (alive(running) or not port_is_free(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(running) == [] and port_is_free(port)


def test_publish_all_publishes_the_images_exposed_ports(
    sandbox: Sandbox, world: Path, engine: str, named: list[str]
) -> None:
    image = world / "busybox-exposed.tar"
    if not image.exists():
        write_docker_archive(image, NewImage([NewLayer(tar_from_directory(world / "rootfs"), "gzip", "COPY rootfs /")],
                             {"User": "1000:1000", "Env": ["PATH=/bin"], "ExposedPorts": {"8000/tcp": {}}}),
                             ["example/exposed:1"])  # fmt: skip
        image.chmod(0o644)
    named.append(name := f"web-all-{engine}-{sandbox.mode}")
    started = tool(sandbox, "run", "-d", "--name", name, "--policy", str(world / POLICY), "--network", engine, "-P",
                   str(image), "sh", "-c", SERVE.format(text=name, port=8000))  # fmt: skip
    assert started.returncode == 0, started.stderr
    shown = tool(sandbox, "port", name, "8000/tcp").stdout.split()
    assert shown[:2] == ["8000/tcp", "->"] and shown[2].startswith("127.0.0.1:")
    assert fetch(int(shown[2].rpartition(":")[2])) == f"{name}\n"


def test_the_container_cannot_reach_services_on_the_hosts_loopback(sandbox: Sandbox, world: Path, engine: str) -> None:
    """pasta's defaults would forward the host's bound ports into the container's own
    loopback (-T auto), and slirp4netns's would let 10.0.2.2 reach the host's loopback: both
    off, so a service listening on the host's 127.0.0.1 (a database, a Docker socket's
    proxy, a metadata endpoint) is out of the container's reach."""
    with socket.socket() as host_service:
        host_service.bind(("127.0.0.1", 0))
        host_service.listen()
        port = host_service.getsockname()[1]
        # slirp4netns's gateway is its own (10.0.2.2); pasta's is this machine's real one, which
        # a test does not touch: pasta_arguments' own test holds --no-map-gw
        addresses = "127.0.0.1 10.0.2.2" if engine == "slirp4netns" else "127.0.0.1"
        probe = (f"for address in {addresses}; do nc -w 2 $address {port} </dev/null && echo reached $address; done; "
                 "echo probed")  # fmt: skip
        ran = tool(sandbox, "run", "--rm", "--policy", str(world / POLICY), "--network", engine,
                   str(world / "busybox-app.tar"), "sh", "-c", probe)  # fmt: skip
    assert ran.returncode == 0 and ran.stdout.endswith("probed\n"), ran.stderr
    assert "reached" not in ran.stdout


def test_pasta_is_told_no_forwarding_but_the_published_ports() -> None:
    """pasta's defaults forward every bound port either way (`auto`) and map the gateway to the
    host's loopback; its command line turns each off (the gateway cannot be probed here
    without traffic to this machine's real gateway)."""
    from pysbx.sandbox.network import Published, pasta_arguments

    argv = pasta_arguments([Published("127.0.0.1", 8080, 80, "tcp")], as_root=False)
    pairs = list(itertools.pairwise(argv))
    assert "--no-map-gw" in argv and ("-T", "none") in pairs and ("-U", "none") in pairs and ("-u", "none") in pairs
    assert [value for flag, value in pairs if flag == "-t"] == ["127.0.0.1/8080:80"]
    assert "--runas" not in argv and pasta_arguments([], as_root=True)[-6:-4] == ["--runas", "0"]


def test_a_warm_start_refuses_what_the_cold_path_refuses(sandbox: Sandbox, world: Path) -> None:
    """--network, -p and -P keep a warm start (bench/network.py: the cold path cost a network
    run 100 ms), so the cached plan carries the policy's network rules and the same check
    runs on it, with the same words and policy lines."""
    base = ["run", "--rm", "--policy", str(world / POLICY)]
    image = [str(world / "busybox-app.tar"), "true"]
    assert tool(sandbox, *base, *image).returncode == 0  # the plan is cached now
    for flags, words in (
        (["--network", "host"], "--network host is refused: the policy allows the networks none, loopback, pasta"),
        (["--network", "pasta", "-p", "0.0.0.0:18000:80"], "the host address 0.0.0.0 is not one the policy lets"),
        (["--network", "pasta", "-p", "1000:80"], "host port 1000 is below the lowest the policy allows (1024)"),
        (["-p", "18000:80"], "-p and -P need a network that publishes ports"),
    ):
        ran = tool(sandbox, *base, *flags, *image)
        assert ran.returncode == 125 and words in ran.stderr, (flags, ran.stderr)
        assert POLICY in ran.stderr or "need a network" in words  # a refusal names the policy line


def test_network_none_under_a_policy_of_the_hosts_network_is_its_own(sandbox: Sandbox, world: Path) -> None:
    """Found by review: a policy whose default is the host's network has no network namespace
    in its plan, and --network none used that plan: the container got the host's network."""
    policy = world / f"host-network-{sandbox.mode}.yaml"
    text = (world / "strict-unsigned.yaml").read_text()
    text = text.replace(
        "namespaces: [user, pid, mount, uts, ipc, network, cgroup]", "namespaces: [user, pid, mount, uts, ipc, cgroup]"
    )
    policy.write_text(text.replace("  network: none\n", "  network: host\n"))
    policy.chmod(0o644)
    for _ in range(2):  # cold, then warm
        ran = tool(sandbox, "run", "--rm", "--policy", str(policy), "--network", "none", str(world / "busybox-app.tar"),
                   "sh", "-c", "ls /sys/class/net")  # fmt: skip
        assert ran.returncode == 0 and ran.stdout.split() == ["lo"], ran.stdout + ran.stderr


TARGETS = ("10.231.0.2", "10.231.0.3")  # in a network namespace of the test's own, behind a veth


@pytest.fixture(scope="module")
def targets() -> Iterator[int]:
    """Two addresses on this machine that a container reaches only the way it reaches the
    outside (through its engine and the host's routing): a namespace the test makes, with a
    veth to the host and an HTTP server on both addresses; yields the port."""
    if os.geteuid() != 0:
        pytest.skip("making the target namespace needs root (the runs themselves go as both users)")
    name, link = f"pysbx-egress-{os.getpid()}", f"pse{os.getpid() % 100000}"  # a link's name: 15 bytes at most
    port = 18231
    setup = [f"ip netns add {name}", f"ip link add {link}h type veth peer name {link}n",
             f"ip link set {link}n netns {name}", f"ip addr add 10.231.0.1/24 dev {link}h", f"ip link set {link}h up",
             *(f"ip -n {name} addr add {address}/24 dev {link}n" for address in TARGETS),
             f"ip -n {name} link set {link}n up", f"ip -n {name} link set lo up"]  # fmt: skip
    server = None
    try:
        for command in setup:
            subprocess.run(command.split(), check=True, capture_output=True)
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-m", "http.server", "--bind",
                                   "0.0.0.0", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  cwd="/")  # fmt: skip
        time.sleep(0.5)
        yield port
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", f"{link}h"], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_the_egress_allow_list_admits_its_destination_and_refuses_another(
    sandbox: Sandbox, world: Path, engine: str, targets: int
) -> None:
    """The policy's egress list names one of two addresses the container could otherwise
    reach: that one answers, the other is refused at once (an nftables table in the
    container's own namespace), DNS to the engine's resolver stays allowed, and a run that
    asks for NET_ADMIN (which could remove the table) is refused."""
    egress_holds(sandbox, world, engine, targets)


def test_the_egress_allow_list_holds_on_the_default_bridge(sandbox: Sandbox, world: Path, targets: int) -> None:
    """The same on a bridge network: out through the keeper's engine (sandbox.netkeeper)."""
    if not Path("/usr/lib/podman/netavark").exists() or shutil.which("pasta") is None:
        pytest.skip("needs netavark, aardvark-dns and pasta (Debian's packages)")
    egress_holds(sandbox, world, "bridge", targets)


def egress_holds(sandbox: Sandbox, world: Path, engine: str, targets: int) -> None:
    probe = " ".join(f"nc -w 3 {address} {targets} </dev/null >/dev/null && echo reached {address};"
                     for address in TARGETS) + " echo probed"  # fmt: skip
    plain = tool(sandbox, "run", "--rm", "--policy", str(world / POLICY), "--network", engine,
                 str(world / "busybox-app.tar"), "sh", "-c", probe)  # fmt: skip
    assert plain.stdout.split("\n")[:-1] == [f"reached {TARGETS[0]}", f"reached {TARGETS[1]}", "probed"], plain.stderr
    policy = world / f"egress-{sandbox.mode}.yaml"
    policy.write_text(
        (world / POLICY).read_text().replace("  publish:\n", f"  egress: ['{TARGETS[0]}:{targets}']\n  publish:\n", 1)
    )
    policy.chmod(0o644)
    for _ in range(2):  # cold, then warm
        limited = tool(sandbox, "run", "--rm", "--policy", str(policy), "--network", engine,
                       str(world / "busybox-app.tar"), "sh", "-c", probe)  # fmt: skip
        assert limited.stdout.split("\n")[:-1] == [f"reached {TARGETS[0]}", "probed"], limited.stderr
    admin = tool(sandbox, "run", "--rm", "--policy", str(policy), "--network", engine, "--cap-add", "NET_ADMIN",
                 str(world / "busybox-app.tar"), "true")  # fmt: skip
    assert admin.returncode == 125 and "NET_ADMIN would let the container undo the policy's egress" in admin.stderr


def test_a_sigkilled_pid_1_ends_the_engine_and_frees_the_port(
    sandbox: Sandbox, world: Path, engine: str, named: list[str]
) -> None:
    """The container's end (here its PID 1 killed) is the engine's: the monitor records the
    exit and stops the engine, and the port is free again."""
    name, port = served(sandbox, world, engine, named, "web-pid1")
    monitor = monitor_of(sandbox, name)
    running = engines_of(monitor, engine)
    (inspected,) = json.loads(tool(sandbox, "inspect", name).stdout)
    os.kill(inspected["status"]["init"][0], signal.SIGKILL)
    assert tool(sandbox, "wait", name).stdout.strip() == "137"
    assert alive(running) == [] and port_is_free(port)

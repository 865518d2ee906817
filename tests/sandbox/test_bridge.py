"""Bridge networks, as root and as an ordinary user: containers on one network reach each
other by name (aardvark-dns) and by address, never across networks (not by address, not by
asking the other network's resolver), the default bridge names nobody, `network` commands
keep what is in use, and a SIGKILL of a container's monitor or of the keeper leaves no
keeper, no aardvark-dns and no engine behind. Everything runs in namespaces the runs make."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.harness import Sandbox, fetch, free_port, port_is_free, root_container_base, tool, wait_until

POLICY = "baseline-unsigned.yaml"  # bridge among network_modes, any network (networks: ["*"])
SERVE = "mkdir -p /tmp/www && echo {text} > /tmp/www/index.html && exec httpd -f -p 8000 -h /tmp/www"
GET = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 8000 | tail -1"
NETAVARK = Path("/usr/lib/podman/netavark")


@pytest.fixture
def nets(sandbox: Sandbox) -> Iterator[tuple[str, str]]:
    """Two networks of the sandbox's user, made for the test and removed after it."""
    for program in (NETAVARK, Path("/usr/lib/podman/aardvark-dns")):
        if not program.exists():
            pytest.skip(f"needs {program} (Debian's netavark and aardvark-dns)")
    if shutil.which("pasta") is None and shutil.which("slirp4netns") is None:
        pytest.skip("the keeper's outbound access needs pasta or slirp4netns")
    tun = Path("/dev/net/tun")
    if sandbox.user is not None and (not tun.exists() or tun.stat().st_mode & 0o006 != 0o006):
        pytest.skip("an ordinary user's keeper engine needs /dev/net/tun mode 0666 (.ci/run sets it)")
    names = (f"pysbx-test-a-{sandbox.mode}", f"pysbx-test-b-{sandbox.mode}")
    for name in names:
        tool(sandbox, "network", "rm", name)
        made = tool(sandbox, "network", "create", name)
        assert made.returncode == 0, made.stderr
    yield names
    for name in names:
        tool(sandbox, "network", "rm", name)


def uid_of(sandbox: Sandbox) -> int:
    return 0 if sandbox.user is None else pwd.getpwnam(sandbox.user).pw_uid


def keeper_uids(sandbox: Sandbox) -> set[int]:
    """Whose the keeper's processes are: the user's; for root, root's supervisor and the
    keeper itself as the first id of root's reserved range (never root)."""
    return {0, root_container_base()} if sandbox.user is None else {uid_of(sandbox)}


def processes(uid: int | set[int], *, command: str = "", comm: str = "") -> list[int]:
    """The pids of `uid`'s processes whose command line starts with `command` or whose
    name is `comm`."""
    found = []
    uids = uid if isinstance(uid, set) else {uid}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{entry}").st_uid not in uids:
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            name = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if (command and argv.startswith(command)) or (comm and name == comm):
            found.append(int(entry))
    return found


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def in_pid_namespace_of(pid: int) -> list[int]:
    """The host's pids of the processes in `pid`'s pid namespace (its descendants' too)."""
    namespace = os.stat(f"/proc/{pid}/ns/pid").st_ino
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{entry}/ns/pid").st_ino == namespace:
                found.append(int(entry))
        except OSError:
            continue
    return found


def keeper_processes(sandbox: Sandbox) -> list[int]:
    uid = keeper_uids(sandbox)
    return processes(uid, command="pysandbox-network-keeper") + processes(uid, comm="aardvark-dns")


def serve(sandbox: Sandbox, world: Path, network: str, name: str, named: list[str], *flags: str) -> None:
    named.append(name)
    started = tool(sandbox, "run", "-d", "--name", name, "--policy", str(world / POLICY), "--network", network,
                   *flags, str(world / "busybox-app.tar"), "sh", "-c", SERVE.format(text=name))  # fmt: skip
    assert started.returncode == 0, started.stderr


def address_of(sandbox: Sandbox, name: str) -> str:
    shown = tool(sandbox, "exec", name, "sh", "-c", "ip -o -4 addr show eth0")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.split()[3].split("/")[0]


def on(sandbox: Sandbox, network: str, script: str) -> str:
    ran = sandbox("--network", network, script, policy=POLICY)
    assert ran.returncode == 0, ran.stderr
    return str(ran.stdout)


def test_containers_on_one_network_reach_each_other_by_name_and_not_across_networks(
    sandbox: Sandbox, world: Path, nets: tuple[str, str], named: list[str]
) -> None:
    net_a, net_b = nets
    web = f"web-{sandbox.mode}"
    serve(sandbox, world, net_a, web, named)
    address = address_of(sandbox, web)
    assert address.startswith("10.89.")
    seen = on(sandbox, net_a, f"{GET.format(host=web)}; cat /etc/resolv.conf; grep $(hostname) /etc/hosts")
    lines = seen.splitlines()
    assert lines[0] == web
    gateway = address.rsplit(".", 1)[0] + ".1"
    assert f"nameserver {gateway}" in lines  # the network's aardvark-dns
    assert lines[-1].split()[0].startswith(address.rsplit(".", 1)[0])  # /etc/hosts: its own address there
    across = on(sandbox, net_b, f"nslookup {web} >/dev/null 2>&1 && echo named; {GET.format(host=address)}; "
                f"nslookup {web} {gateway} >/dev/null 2>&1 && echo asked; echo done")  # fmt: skip
    assert across.split() == ["done"]  # no name, no packet, no answer from the other network's resolver


def test_the_default_bridge_reaches_by_address_and_names_nobody(
    sandbox: Sandbox, world: Path, nets: tuple[str, str], named: list[str]
) -> None:
    web = f"web-bridge-{sandbox.mode}"
    serve(sandbox, world, "bridge", web, named)
    address = address_of(sandbox, web)
    assert address.startswith("10.88.")
    seen = on(sandbox, "bridge", f"{GET.format(host=address)}; nslookup {web} >/dev/null 2>&1 && echo named; echo end")
    assert seen.split() == [web, "end"]


def test_network_commands_keep_what_is_in_use(
    sandbox: Sandbox, world: Path, nets: tuple[str, str], named: list[str]
) -> None:
    net_a, net_b = nets
    listed = tool(sandbox, "network", "ls", "-q")
    assert {"bridge", "host", "none", net_a, net_b} <= set(listed.stdout.split())
    assert tool(sandbox, "network", "create", net_a).stderr == f"pysandbox: error: network {net_a!r} already exists\n"
    web = f"web-kept-{sandbox.mode}"
    serve(sandbox, world, net_a, web, named)
    (inspected,) = json.loads(tool(sandbox, "network", "inspect", net_a).stdout)
    ((shown),) = inspected["containers"]
    assert shown["name"] == web and shown["address"].startswith("10.89.") and inspected["dns"] is True
    refused = tool(sandbox, "network", "rm", net_a)
    assert refused.returncode == 125 and f"is in use by {web}" in refused.stderr
    stopped = tool(sandbox, "stop", web)
    assert stopped.returncode == 0, stopped.stderr
    assert f"is in use by {web}" in tool(sandbox, "network", "rm", net_a).stderr  # its next start would need it
    pruned = tool(sandbox, "network", "prune", "-f")
    assert net_b in pruned.stdout.split() and net_a not in pruned.stdout.split()
    assert tool(sandbox, "rm", web).returncode == 0
    assert tool(sandbox, "network", "rm", net_a).stdout == f"{net_a}\n"
    internal = tool(sandbox, "network", "create", "--internal", f"{net_a}-internal")
    assert internal.returncode == 125 and "--internal needs --disable-dns here" in internal.stderr
    gone = sandbox("--network", net_a, "true", policy=POLICY)
    assert gone.returncode == 125 and f"network {net_a!r} not found" in gone.stderr


def test_the_policy_decides_which_networks_a_container_joins(
    sandbox: Sandbox, world: Path, nets: tuple[str, str]
) -> None:
    strict = sandbox("--network", nets[0], "true")
    assert strict.returncode == 125 and f"--network {nets[0]} is refused: the policy allows the networks none" in (
        strict.stderr
    )
    narrowed = world / f"networks-{sandbox.mode}.yaml"
    narrowed.write_text((world / POLICY).read_text().replace('  networks: ["*"]', f"  networks: [{nets[1]}]"))
    narrowed.chmod(0o644)
    refused = sandbox("--network", nets[0], "true", policy=narrowed.name)
    assert refused.returncode == 125
    assert f"--network {nets[0]} is refused: the policy lets containers join {nets[1]} ({narrowed}:" in refused.stderr
    assert sandbox("--network", nets[1], "true", policy=narrowed.name).returncode == 0


def test_a_published_port_reaches_the_container_on_its_network_until_rm(
    sandbox: Sandbox, world: Path, nets: tuple[str, str], named: list[str]
) -> None:
    web, port = f"web-port-{sandbox.mode}", free_port()
    serve(sandbox, world, nets[0], web, named, "-p", f"{port}:8000")
    assert fetch(port) == f"{web}\n"
    assert tool(sandbox, "port", web).stdout == f"8000/tcp -> 127.0.0.1:{port}\n"
    assert processes(uid_of(sandbox), comm="rootlessport")
    restarted = tool(sandbox, "restart", web)
    assert restarted.returncode == 0, restarted.stderr
    assert fetch(port) == f"{web}\n"  # the same port after a restart
    assert tool(sandbox, "rm", "-f", web).returncode == 0
    assert port_is_free(port) and not processes(uid_of(sandbox), comm="rootlessport")


def test_a_sigkilled_monitor_detaches_its_container_and_the_keeper_ends(
    sandbox: Sandbox, world: Path, nets: tuple[str, str], named: list[str]
) -> None:
    web, port = f"web-killed-{sandbox.mode}", free_port()
    serve(sandbox, world, nets[0], web, named, "-p", f"{port}:8000")
    assert keeper_processes(sandbox) and fetch(port) == f"{web}\n"
    (inspected,) = json.loads(tool(sandbox, "inspect", web).stdout)
    os.kill(int(inspected["status"]["monitor"][0]), signal.SIGKILL)
    assert wait_until(lambda: not keeper_processes(sandbox)), keeper_processes(sandbox)
    assert wait_until(lambda: port_is_free(port) and not processes(uid_of(sandbox), comm="rootlessport"))


def test_a_sigkilled_keeper_takes_everything_it_started_with_it(
    sandbox: Sandbox, world: Path, nets: tuple[str, str], named: list[str]
) -> None:
    web = f"web-orphan-{sandbox.mode}"
    serve(sandbox, world, nets[0], web, named)
    uid = keeper_uids(sandbox)
    engines = processes(uid, comm="pasta") + processes(uid, comm="pasta.avx2") + processes(uid, comm="slirp4netns")
    keepers = processes(uid, command="pysandbox-network-keeper")
    supervisors = [pid for pid in keepers if parent_of(pid) not in keepers]
    assert len(supervisors) == 1  # the supervisor: detached, its parent none of the keeper's
    os.kill(supervisors[0], signal.SIGKILL)
    assert wait_until(lambda: not keeper_processes(sandbox) and not [p for p in engines if Path(f"/proc/{p}").exists()])
    rejoined = on(sandbox, nets[0], "nslookup $(hostname) | grep -c Address")  # a new keeper starts
    assert int(rejoined) >= 2


def test_the_keeper_sees_no_homes_and_no_tmp(
    sandbox: Sandbox, world: Path, nets: tuple[str, str], named: list[str]
) -> None:
    """aardvark-dns answers the containers: a process that could be turned holds no
    capability (none to unmount what hides the host), is no one of root's, sees only its own pid namespace's processes and four devices, finds empty folders
    where the host's homes, /tmp and the storage are, and a read-only root."""
    serve(sandbox, world, nets[0], f"web-hidden-{sandbox.mode}", named)
    (aardvark,) = processes(keeper_uids(sandbox), comm="aardvark-dns")
    owner = root_container_base() if sandbox.user is None else uid_of(sandbox)
    assert os.stat(f"/proc/{aardvark}").st_uid == owner  # root's keeper is never root
    assert sorted(os.listdir(f"/proc/{aardvark}/root/dev")) == ["null", "random", "urandom", "zero"]
    seen = [pid for pid in os.listdir(f"/proc/{aardvark}/root/proc") if pid.isdigit()]
    assert len(seen) == len(in_pid_namespace_of(aardvark))  # its /proc: its own pid namespace's, no more
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{aardvark}/status").read_text().splitlines())
    assert (status["CapEff"], status["CapPrm"], status["CapBnd"], status["NoNewPrivs"]) == ("0" * 16, "0" * 16,
                                                                                            "0" * 16, "1")  # fmt: skip
    root = Path(f"/proc/{aardvark}/root")
    assert os.listdir("/tmp") and os.listdir(root / "tmp") == []
    assert os.listdir(root / "home") == [] and os.listdir(root / "var/lib/pysandbox") == []
    assert " ro," in next(line for line in (Path(f"/proc/{aardvark}/mountinfo").read_text().splitlines())
                          if line.split()[4] == "/") + ","  # fmt: skip


def test_no_one_but_its_user_is_served_by_a_keeper(
    sandbox: Sandbox, world: Path, nets: tuple[str, str], named: list[str]
) -> None:
    """Root can reach an ordinary user's keeper socket, yet gets nothing from it: the keeper
    serves its own user only (SO_PEERCRED), never another account."""
    if sandbox.user is None or os.geteuid() != 0:
        pytest.skip("root connects to an ordinary user's keeper")
    serve(sandbox, world, nets[0], f"web-peer-{sandbox.mode}", named)
    home = pwd.getpwnam(sandbox.user).pw_dir
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(5)
        sock.connect(f"{home}/.cache/pysandbox/networks/keeper.sock")
        data, fds, _, _ = socket.recv_fds(sock, 65536, 1)
    assert (data, fds) == (b"", [])  # closed: no hello, no namespace
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and not keeper_processes(sandbox):
        time.sleep(0.05)
    assert keeper_processes(sandbox)  # still serving its own user


def test_network_connect_joins_a_running_container_at_once_and_for_good(
    sandbox: Sandbox, world: Path, nets: tuple[str, str], named: list[str]
) -> None:
    net_a, net_b = nets
    web = f"web-connect-{sandbox.mode}"
    serve(sandbox, world, net_a, web, named)
    ask = f"{GET.format(host=web)}; echo end"
    assert on(sandbox, net_b, ask).split() == ["end"]
    joined = tool(sandbox, "network", "connect", net_b, web)
    assert joined.returncode == 0, joined.stderr
    assert on(sandbox, net_b, ask).split() == [web, "end"]  # at once, by name, on the other network
    (inspected,) = json.loads(tool(sandbox, "inspect", web).stdout)
    assert inspected["network"] == f"{net_a},{net_b}"
    assert f"is in use by {web}" in tool(sandbox, "network", "rm", net_b).stderr
    assert tool(sandbox, "restart", web).returncode == 0
    assert on(sandbox, net_b, ask).split() == [web, "end"]  # and at every start
    both = on(sandbox, f"{net_a},{net_b}", "ip -o -4 addr | grep -c eth")
    assert both.split() == ["2"]  # run --network a,b: one interface on each
    left = tool(sandbox, "network", "disconnect", net_b, web)
    assert left.returncode == 0, left.stderr
    assert on(sandbox, net_b, ask).split() == ["end"]
    assert on(sandbox, net_a, ask).split() == [web, "end"]
    last = tool(sandbox, "network", "disconnect", net_a, web)
    assert last.returncode == 125 and "is container" in last.stderr and "only network" in last.stderr


def test_network_connect_asks_the_containers_policy(
    sandbox: Sandbox, world: Path, nets: tuple[str, str], named: list[str]
) -> None:
    narrowed = world / f"connect-{sandbox.mode}.yaml"
    narrowed.write_text((world / POLICY).read_text().replace('  networks: ["*"]', f"  networks: [{nets[0]}]"))
    narrowed.chmod(0o644)
    web = f"web-narrow-{sandbox.mode}"
    named.append(web)
    started = tool(sandbox, "run", "-d", "--name", web, "--policy", str(narrowed), "--network", nets[0],
                   str(world / "busybox-app.tar"), "sleep", "1000")  # fmt: skip
    assert started.returncode == 0, started.stderr
    refused = tool(sandbox, "network", "connect", nets[1], web)
    assert refused.returncode == 125
    assert f"--network {nets[1]} is refused: the policy lets containers join {nets[0]} ({narrowed}:" in refused.stderr

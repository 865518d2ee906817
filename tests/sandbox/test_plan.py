"""plan.check_flags: each `run` flag against the policy, refused with the policy line it loosens."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysbx.cli.runargs import parse
from pysbx.policies.loader import load_policy
from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.plan import Refused, check_flags


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--privileged"], "the policy forbids privileged mode"),
        (["--pid", "host"], "host's pid namespace"),
        (["--network", "host"], "the policy allows the networks none, loopback"),
        (["--network", "pasta"], "the policy allows the networks none, loopback"),
        (["--network", "pasta", "-p", "8080:80"], "the policy allows the networks"),
        (["-p", "8080:80"], "need a network that publishes ports"),
        (["--cap-add", "SYS_ADMIN"], "the policy does not grant it"),
        (["--cap-add", "NOT_A_CAP"], "not a Linux capability"),
        (["--security-opt", "seccomp=unconfined"], "the policy's seccomp profile is strict"),
        (["--security-opt", "apparmor=x"], "unsupported option"),
        (["-v", "/:/host"], "hands the host to the container"),
        (["-v", "/etc:/x"], "is not under a bind source the policy allows"),
        (["-v", "vol:/x"], "the policy forbids named volumes"),
        (["-v", "rel:x"], "an absolute DST"),
        (["--memory", "1g"], "the policy allows at most"),
        (["--memory", "lots"], "expected a size"),
        (["--pids-limit", "100000"], "the policy allows at most"),
        (["--cpus", "0.001"], "the range of CPUs"),
    ],
)
def test_each_loosening_flag_is_refused_naming_the_policy_line(flags: list[str], words: str) -> None:
    loaded = load_policy("strict")
    with pytest.raises(Refused, match=words) as refused:
        check_flags(parse(["--policy", "strict", *flags, "img"]), loaded)
    if "policy" in words or "forbids" in words or "allows" in words:
        assert "strict.yaml" in str(refused.value)


def test_flags_within_the_policy_pass() -> None:
    flags = ["--memory", "64m", "--pids-limit", "16", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    check_flags(parse(["--policy", "strict", *flags, "img"]), load_policy("strict"))


def test_a_refused_size_is_said_in_the_units_given_and_the_policys() -> None:
    with pytest.raises(Refused, match=r"--memory 1g is refused: the policy allows at most 512Mi \(.*strict.yaml:\d+\)"):
        check_flags(parse(["--policy", "strict", "--memory", "1g", "img"]), load_policy("strict"))
    with pytest.raises(Refused, match=r"--tmpfs of 1Gi in all is refused: the policy allows at most 256Mi"):
        check_flags(parse(["--policy", "strict", "--tmpfs", "/a:size=1g", "img"]), load_policy("strict"))


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["-p", "0.0.0.0:8080:80"], r"-p 0.0.0.0:8080:80 is refused: the host address 0.0.0.0 is not one .*baseline"),
        (["-p", "[::1]:8080:80"], "the host address ::1 is not one the policy lets ports be published on"),
        (["-p", "80:80"], r"host port 80 is below the lowest the policy allows \(1024\)"),
        (["-p", "8000-8001:80-82"], "ranges differ in length"),
        (["-p", "8080:80/sctp"], "tcp or udp"),
        (["-p", "localhost:8080:80"], "'localhost' is not an IP address"),
        (["-p", "8080:0"], "between 1 and 65535"),
        (["--network", "host"], "the policy allows the networks none, loopback, pasta, slirp4netns"),
    ],
)
def test_published_ports_follow_the_policys_publish_rules(flags: list[str], words: str) -> None:
    """baseline: pasta allowed, ports published on 127.0.0.1 only, from 1024."""
    with pytest.raises(SandboxError, match=words):
        check_flags(parse(["--policy", "baseline", "--network", "pasta", *flags, "img"]), load_policy("baseline"))


def test_ports_within_the_publish_rules_pass() -> None:
    for flags in (["-p", "8080:80"], ["-p", "127.0.0.1:8080-8081:80-81/udp"], ["-p", "80"], ["-P"]):
        check_flags(parse(["--policy", "baseline", "--network", "pasta", *flags, "img"]), load_policy("baseline"))


def test_a_published_range_is_bounded() -> None:
    """An image's EXPOSE 1024-65535 under -P would be 64,512 sockets and pasta arguments."""
    from pysbx.sandbox import ports

    wanted = ports.exposed(["1024-65535/tcp"])
    assert len(wanted) == 64512
    with pytest.raises(ports.PortError, match="64512 ports to publish: at most 1024 per container"):
        ports.bind_free(wanted)
    (one,) = ports.bind_free(ports.parse("8080"))
    assert (one.host_ip, one.container_port, one.protocol) == ("127.0.0.1", 8080, "tcp") and one.host_port > 0


@pytest.mark.parametrize("entry", ["0.0.0.0:2222:22/tcp", "[::]:8080:80", "127.0.0.1::80", "80-", "-80", "x/tcp", ""])
def test_an_images_expose_cannot_choose_the_address_or_host_port(entry: str) -> None:
    """Found by review: EXPOSE entries were read as -p values, so an image could publish
    itself on 0.0.0.0 (or below the lowest port) under -P whatever the policy said."""
    from pysbx.sandbox import ports

    with pytest.raises(ports.PortError, match="which is not PORT"):
        ports.exposed([entry])
    assert [(p.host_ip, p.host_port, p.container_port) for p in ports.exposed(["22/tcp", "53/udp", "9/sctp"])] == [
        ("127.0.0.1", 0, 22),
        ("127.0.0.1", 0, 53),
    ]


def test_ipv6_spellings_of_every_ipv4_address_are_refused() -> None:
    """::ffff:0.0.0.0 binds every IPv4 address on a socket without IPV6_V6ONLY (review)."""
    from pysbx.sandbox import ports

    for spec in ("[::ffff:0.0.0.0]:8080:80", "[::ffff:127.0.0.1]:8080:80", "[fe80::1%1]:8080:80"):
        with pytest.raises(ports.PortError):
            ports.parse(spec)


def test_an_egress_allow_list_refuses_the_hosts_network_and_net_admin(tmp_path: Path) -> None:
    """The table lives in the container's own network namespace: the host's network would be
    out of its reach, and NET_ADMIN could delete it."""
    path = tmp_path / "egress.yaml"
    path.write_text(
        "version: 1\nsandbox:\n  network_modes: [none, loopback, pasta, host]\n  egress: ['10.0.0.0/8']\n"
        "  capabilities: {drop: [ALL]}\n"
    )
    loaded = load_policy(str(path))
    for flags, words in ((["--network", "host"], "holds only in a network namespace of the container's own"),
                         (["--network", "pasta", "--cap-add", "NET_ADMIN"], "NET_ADMIN would let the container")):  # fmt: skip
        with pytest.raises(Refused, match=words):
            check_flags(parse([*flags, "img"]), loaded)
    check_flags(parse(["--network", "pasta", "img"]), loaded)
    check_flags(parse(["--network", "none", "img"]), loaded)

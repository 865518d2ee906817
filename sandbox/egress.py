"""The policy's egress allow-list (sandbox.egress), enforced in the container's own network
namespace by an nftables table that nft loads before the command starts: the monitor forks
a child that enters the container's user and network namespaces (the descriptors the setup
process handed over: sandbox.runner's gate), becomes that user namespace's root, and runs
Debian's `nft -f -`. Everything leaving the container is dropped with an ICMP
"administratively prohibited" (connect fails at once, rather than after a timeout) unless it
goes to loopback, answers a connection that came in (a published port), asks the engine's
resolver on port 53, or matches a rule. The table holds as long as nothing inside holds
NET_ADMIN in that namespace, which sandbox.netrules refuses. (Not a seccomp or BPF filter:
a BPF program would need privileges an ordinary user lacks; nftables in a namespace of
one's own needs none.)"""

from __future__ import annotations

import fcntl
import os

from pysbx.policies.values import parse_egress
from pysbx.sandbox import linux
from pysbx.sandbox.errors import SandboxError

TABLE = "pysandbox_egress"


def ruleset(allowed: list[str], resolver: str | None) -> str:
    """The nftables table for `allowed` (CIDR[:PORT[-PORT]] rules, as the policy loader
    normalised them) and the engine's `resolver`."""
    lines = [f"table inet {TABLE} {{", "  chain output {", "    type filter hook output priority 0; policy drop;",
             '    oif "lo" accept', "    ct state established,related accept"]  # fmt: skip
    if resolver is not None:
        lines += [f"    ip daddr {resolver} {protocol} dport 53 accept" for protocol in ("udp", "tcp")]
    for text in allowed:
        rule = parse_egress(text)
        if rule is None:  # the loader refuses such a rule: never widen on one we cannot read
            raise SandboxError(f"egress rule {text!r} is not CIDR[:PORT[-PORT]]")
        network, low, high = rule
        family = "ip" if network.version == 4 else "ip6"
        if (low, high) == (1, 65535):
            lines.append(f"    {family} daddr {network} accept")
            continue
        ports = str(low) if low == high else f"{low}-{high}"
        lines += [f"    {family} daddr {network} {protocol} dport {ports} accept" for protocol in ("tcp", "udp")]
    lines += ["    reject with icmpx type admin-prohibited", "  }", "}"]
    return "\n".join(lines) + "\n"


def restrict(namespaces: list[int], allowed: list[str], resolver: str | None) -> None:
    """Load the table into the container's network namespace; SandboxError when nft cannot
    (a run that was promised an allow-list does not start without one)."""
    from pysbx.sandbox.network import find_program

    program = find_program("nft")
    if program is None:
        raise SandboxError("the policy's egress allow-list needs nft (Debian's package nftables): install it")
    text = ruleset(allowed, resolver).encode()
    rules_r, rules_w = os.pipe2(os.O_CLOEXEC)
    said_r, said_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:  # pragma: no cover - enters the namespaces and execs nft, or _exits
        try:
            os.dup2(rules_r, 0)
            os.dup2(said_w, 1)
            os.dup2(said_w, 2)
            userns, netns = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in namespaces)  # gone at exec
            low, high = sorted((userns, netns))
            for first, end in ((3, low), (low + 1, high), (high + 1, os.sysconf("SC_OPEN_MAX"))):
                os.closerange(first, end)  # nothing else of the monitor's reaches nft
            linux.setns(userns, linux.CLONE_NEWUSER, "the container's user namespace")
            linux.setns(netns, linux.CLONE_NEWNET, "the container's network namespace")
            os.setresgid(0, 0, 0)  # its root: capabilities survive exec only for uid 0 of the namespace
            os.setresuid(0, 0, 0)
            os.execv(program, ["nft", "-f", "-"])
        finally:
            os._exit(127)
    os.close(rules_r)
    os.close(said_w)
    os.write(rules_w, text)  # a few hundred bytes: within the pipe's buffer
    os.close(rules_w)
    said = os.read(said_r, 4096).decode(errors="replace").strip()
    os.close(said_r)
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise SandboxError(f"nft could not load the egress allow-list: {said or os.waitstatus_to_exitcode(status)}")

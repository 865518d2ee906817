"""`-p/--publish` and `-P` as Docker reads them, `[IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]`
with ranges of equal length, and what the policy allows of them (sandbox.publish).

One difference from Docker, on purpose: without an address a port is published on
127.0.0.1, not on every address of the host (issue #16; a policy may allow more, and the
address is then given). A host port left out (`-p 80`, `-P`) is one the kernel picks free.
Each host port is bound once here before the engine starts, so that a port in use or a
privileged one is one sentence naming the flag, not the engine's error."""

from __future__ import annotations

import ipaddress
import re
import socket

from pysbx.policies.model import address_covers
from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.network import Published

DEFAULT_ADDRESS = "127.0.0.1"
PROTOCOLS = ("tcp", "udp")
MAX_PORTS = 1024


class PortError(SandboxError):
    """A -p value that is not one, or a port the host cannot give."""


def parse(spec: str) -> list[Published]:
    """The ports one -p value publishes (host port 0: to be chosen)."""
    text, _, protocol = spec.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise PortError(f"-p {spec}: the protocol must be tcp or udp, not {protocol!r}")
    address, host, container = _split(spec, text)
    containers = _port_range(spec, container, "container port")
    hosts = _port_range(spec, host, "host port") if host else [0] * len(containers)
    if len(hosts) != len(containers):
        raise PortError(f"-p {spec}: the host and container port ranges differ in length")
    return [Published(address, host_port, port, protocol) for host_port, port in zip(hosts, containers, strict=True)]


def exposed(ports: list[str]) -> list[Published]:
    """-P: the image's EXPOSE entries (`80/tcp`, `8000-8010/udp`), each on a free host port
    of 127.0.0.1. Only a port or a range and a protocol: an entry that names an address or a
    host port (`0.0.0.0:2222:22`) would let the image choose where it listens (found by
    review), and is refused."""
    found: list[Published] = []
    for entry in ports:
        port, _, protocol = entry.partition("/")
        if not re.fullmatch(r"[0-9]+(-[0-9]+)?", port):
            raise PortError(f"-P: the image exposes {entry!r}, which is not PORT[-PORT][/tcp|udp]")
        if (protocol or "tcp") in PROTOCOLS:  # Docker's sctp: nothing our engines publish
            found += [Published(DEFAULT_ADDRESS, 0, number, protocol or "tcp")
                      for number in _port_range(f"(EXPOSE {entry})", port, "container port")]  # fmt: skip
    return found


def _split(spec: str, text: str) -> tuple[str, str, str]:
    """(address, host ports, container ports) of `[IP:][HOST:]CONTAINER`, IPv6 in brackets."""
    address = DEFAULT_ADDRESS
    if text.startswith("["):
        bracketed, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise PortError(f"-p {spec}: expected [IPV6]:HOST_PORT:CONTAINER_PORT")
        address, text = bracketed, f"{rest[1:]}"
        host, _, container = text.rpartition(":")
        return _address(spec, address, 6), host, container
    parts = text.split(":")
    if len(parts) > 3:
        raise PortError(f"-p {spec}: expected [IP:][HOST_PORT:]CONTAINER_PORT (an IPv6 address goes in [brackets])")
    if len(parts) == 3:
        address = _address(spec, parts[0], 4)
    return address, parts[-2] if len(parts) > 1 else "", parts[-1]


def _address(spec: str, text: str, version: int) -> str:
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        raise PortError(f"-p {spec}: {text!r} is not an IP address") from None
    if parsed.version != version:
        raise PortError(f"-p {spec}: {text!r} is not an IPv{version} address")
    if isinstance(parsed, ipaddress.IPv6Address) and (parsed.ipv4_mapped is not None or parsed.scope_id):
        # ::ffff:0.0.0.0 is every IPv4 address to a socket without IPV6_V6ONLY (found by review)
        raise PortError(f"-p {spec}: give an IPv4 address as such, and an IPv6 one without a scope")
    return str(parsed)


def _port_range(spec: str, text: str, what: str) -> list[int]:
    first, _, last = text.partition("-")
    try:
        low, high = int(first), int(last or first)
    except ValueError:
        raise PortError(f"-p {spec}: the {what} must be a number or a range N-M, not {text!r}") from None
    if not 1 <= low <= high <= 65535:
        raise PortError(f"-p {spec}: the {what} must be between 1 and 65535, the range from low to high")
    return list(range(low, high + 1))


def refusal(port: Published, addresses: tuple[str, ...], lowest: int) -> str | None:
    """Why the policy's publish rules refuse `port` (None: they allow it). An address of
    every interface (0.0.0.0, ::) in the rules allows any address of its family."""
    if not any(address_covers(address, port.host_ip) for address in addresses):
        shown = ", ".join(addresses) or "none"
        return f"the host address {port.host_ip} is not one the policy lets ports be published on ({shown})"
    if port.host_port and port.host_port < lowest:
        return f"host port {port.host_port} is below the lowest the policy allows ({lowest})"
    return None


def bind_free(ports: list[Published]) -> list[Published]:
    """The ports with each host port chosen (0: one the kernel gives) and checked free on its
    address now, all held at once (two -p for one host port, or two picks of the same free
    port, are refused or avoided); PortError naming the port otherwise. (The engine binds
    them a moment later: a port taken in between is its error.)"""
    if len(ports) > MAX_PORTS:  # each is a socket here and an argument of pasta's (an image's EXPOSE 1-65535)
        raise PortError(f"{len(ports)} ports to publish: at most {MAX_PORTS} per container")
    held: list[socket.socket] = []
    try:
        return [_bound(port, held) for port in ports]
    finally:
        for probe in held:
            probe.close()


def _bound(port: Published, held: list[socket.socket]) -> Published:
    family = socket.AF_INET6 if ":" in port.host_ip else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM)
    held.append(probe)
    if port.protocol == "tcp":  # as pasta binds (and servers do): a port whose connections
        # linger in TIME_WAIT (a container just removed) is free, one something listens on is
        # not. Not for UDP: there it would let us share a port another user holds so (review)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:  # [::] is IPv6's every address, not IPv4's too
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        probe.bind((port.host_ip, port.host_port))
    except PermissionError:
        raise PortError(
            f"host port {port.host_port}/{port.protocol} is a privileged port: an ordinary user may publish "
            "ports from net.ipv4.ip_unprivileged_port_start (1024 by default)"
        ) from None
    except OSError as error:
        raise PortError(
            f"host port {port.host_ip}:{port.host_port}/{port.protocol} cannot be published: {error.strerror or error}"
        ) from None
    return Published(port.host_ip, probe.getsockname()[1], port.container_port, port.protocol)

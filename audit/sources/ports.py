"""Published ports as Docker spells them, for the Compose and docker-inspect sources: the
short syntax `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]` read as Docker's
nat.ParsePortSpec reads it, Compose's long syntax, and docker inspect's PortBindings. An
entry still holding a variable is left unjudged, as an image reference with one is: its
address may be 127.0.0.1 once deployed."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pysbx.audit.sources.lines import LineDict, LineList
from pysbx.audit.sources.shape import ShapeError, described
from pysbx.audit.spec import PublishedPort

_RANGE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_PROTOCOLS = ("tcp", "udp", "sctp")


def compose_port(entry: Any, line: int, target: str, where: str) -> PublishedPort | None:
    """One item of a service's `ports:`. One that Compose refuses is a ShapeError naming
    it: Compose would not start the file, and read as nothing it would pass the gate."""
    try:
        if isinstance(entry, LineDict):
            return _long_syntax(entry, line)
        if isinstance(entry, str | int) and not isinstance(entry, bool):
            return _short_syntax(str(entry), line)
        raise ValueError(f'expected a port such as "8080:80" or a mapping with a target, found {described(entry)}')
    except ValueError as error:
        raise ShapeError(f"{target}:{line}: {where}ports: {error}") from None


def inspect_ports(bindings: Any) -> list[PublishedPort]:
    """HostConfig.PortBindings, `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`. What is
    not of that shape is passed over, as the rest of docker inspect's reading does: the
    engine wrote it, so the engine has already refused or accepted it."""
    ports = []
    for key, hosts in bindings.items() if isinstance(bindings, LineDict) else ():
        container, _, protocol = str(key).partition("/")
        for host in hosts if isinstance(hosts, LineList) else ():
            try:
                ports.append(_binding(container, protocol or "tcp", host))
            except ValueError:
                continue
    return ports


def host_address(written: str) -> str | None:
    """The host address of a port, normalised ("::" for "[::]" or "0:0::0"); None for none
    given. A value that is no IP address is a ValueError: the engine refuses it too."""
    if not written:
        return None
    bare = written[1:-1] if written.startswith("[") and written.endswith("]") else written
    try:
        return ipaddress.ip_address(bare).compressed
    except ValueError:
        raise ValueError(f"{written!r} is not an IP address") from None


def _port_range(written: str, what: str) -> str:
    """A port (`80`) or range (`8000-8010`) as Docker accepts it, returned as written."""
    match = _RANGE.fullmatch(written)
    numbers = [int(number) for number in match.groups() if number is not None] if match else []
    if not numbers or max(numbers) > 65535 or numbers != sorted(numbers):
        raise ValueError(f"{what} {written!r} is not a port or a range of ports")
    return written


def _short_syntax(written: str, line: int) -> PublishedPort | None:
    if "$" in written:
        return None  # a variable without a default: unknown until deployed
    ports, _, protocol = written.partition("/")
    parts = ports.split(":")
    port = _port(line, parts[-1], protocol or "tcp", parts[-2] if len(parts) > 1 else "", ":".join(parts[:-2]))
    port.loopback_form = f'"{_on_loopback(port)}"'
    return port


def _long_syntax(entry: LineDict, line: int) -> PublishedPort | None:
    """`{target, published, host_ip, protocol, mode}`; `target` is required."""
    keys = ("target", "published", "host_ip", "protocol")
    written = {key: str(entry[key]) for key in keys if entry.get(key) is not None}
    if any("$" in value for value in written.values()):
        return None
    if "target" not in written:
        raise ValueError("a port mapping needs a target (the container port)")
    port = _port(
        line,
        written["target"],
        written.get("protocol", "tcp"),
        written.get("published", ""),
        written.get("host_ip", ""),
    )
    port.loopback_form = "host_ip: 127.0.0.1"
    return port


def _binding(container: str, protocol: str, host: Any) -> PublishedPort:
    if not isinstance(host, LineDict):
        raise ValueError("not a binding")
    port = _port(host.line, container, protocol, str(host.get("HostPort") or ""), str(host.get("HostIp") or ""))
    port.loopback_form = f"-p {_on_loopback(port)}"
    return port


def _port(line: int, container: str, protocol: str, host: str = "", address: str = "") -> PublishedPort:
    """A port from its written parts, each checked as Docker checks it: a range of container
    ports needs a range of host ports as long (one container port may take a range to pick from)."""
    port = PublishedPort(
        container_port=_port_range(container, "container port"),
        protocol=_protocol(protocol),
        line=line,
        host_port=_port_range(host, "host port") if host else "",
        host_ip=host_address(address),
    )
    if host and _span(container) and _span(host) != _span(container):
        raise ValueError(f"host ports {host} and container ports {container} are ranges of different lengths")
    return port


def _span(ports: str) -> int:
    first, _, last = ports.partition("-")
    return int(last or first) - int(first)


def _on_loopback(port: PublishedPort) -> str:
    """The port as `-p` and Compose's short syntax spell it, bound to 127.0.0.1."""
    suffix = "" if port.protocol == "tcp" else f"/{port.protocol}"
    return f"127.0.0.1:{port.host_port}:{port.container_port}{suffix}"


def _protocol(written: str) -> str:
    if written.lower() not in _PROTOCOLS:
        raise ValueError(f"protocol {written!r} is not one of {', '.join(_PROTOCOLS)}")
    return written.lower()

"""Bridge networks: Docker's default `bridge` (no DNS by name, as Docker's) and the ones a
user defines (`pysandbox network create`), each a JSON file in the storage's `networks`
folder, written in netavark's own network format: what `netavark setup` reads as a
container's network_info (sandbox.netkeeper drives it in the user's keeper namespace).

Subnets: the default bridge is 10.88.0.0/16 and new networks take the first free
10.89.N.0/24 (podman's choices); they live in the keeper's network namespace, never on the
host's, so they cannot collide with the host's routes. A definition is the user's own file
in a private folder: read back, it is still checked (a name that is a path, an interface
name the kernel refuses, a subnet that is not one)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time

from pysbx.policies.record import Record
from pysbx.sandbox.errors import SandboxError
from pysbx.sandbox.state import private_folder, private_root, read_private_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

FOLDER = "networks"
DEFAULT = "bridge"
BUILT_IN = ("bridge", "host", "none")  # what `network ls` shows besides the user's own
# --network's modes that are not networks; a user network may not take their names
RESERVED = frozenset({"bridge", "host", "none", "loopback", "pasta", "slirp4netns", "default", "container", "ns"})
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}")  # Docker's pattern, bounded
_DEFAULT_SUBNET, _POOL = "10.88.0.0/16", "10.89.{}.0/24"
_INTERFACE_PREFIX = "pysbx"  # pysbx0: the default bridge; pysbxN: a user's network


class NetworkError(SandboxError):
    """A network that cannot be created, found or removed (one sentence, exit 125)."""


class Network(Record):
    """One bridge network as netavark defines it."""

    __slots__ = ("created", "dns", "gateway", "id", "interface", "internal", "name", "subnet")

    def __init__(
        self, name: str, id: str, subnet: str, gateway: str, interface: str, dns: bool, internal: bool, created: str
    ) -> None:
        self.name, self.id, self.subnet, self.gateway = name, id, subnet, gateway
        self.interface, self.dns, self.internal, self.created = interface, dns, internal, created

    def definition(self) -> dict[str, object]:
        """netavark's network_info for this network. isolate: no traffic to or from the
        keeper's other bridges (Docker's isolation between networks)."""
        return {
            "name": self.name,
            "id": self.id,
            "driver": "bridge",
            "network_interface": self.interface,
            "created": self.created,
            "subnets": [{"subnet": self.subnet, "gateway": self.gateway}],
            "ipv6_enabled": False,
            "internal": self.internal,
            "dns_enabled": self.dns,
            "options": {"isolate": "true"},
            "ipam_options": {"driver": "host-local"},
        }


def container_addresses(definition: dict[str, Any]) -> Iterator[str]:
    """The container addresses of a network's subnet (netavark's definition), lowest first,
    without the gateway: one at a time (the default bridge's /16 has 65,533)."""
    subnet, gateway = definition["subnets"][0]["subnet"], definition["subnets"][0]["gateway"]
    return (str(host) for host in ipaddress.ip_network(subnet).hosts() if str(host) != gateway)


def folder() -> str:
    return private_folder(os.path.join(private_root(), FOLDER))


def default_bridge() -> Network:
    """Docker's default network: outbound access and published ports, no DNS by name."""
    subnet = ipaddress.ip_network(_DEFAULT_SUBNET)
    return Network(DEFAULT, "0" * 64, _DEFAULT_SUBNET, str(next(subnet.hosts())), f"{_INTERFACE_PREFIX}0",
                   dns=False, internal=False, created="1970-01-01T00:00:00Z")  # fmt: skip


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise NetworkError(
            f"invalid network name {name!r}: expected a letter or digit, then letters, digits, '_', '.' or '-' "
            "(64 at most)"
        )


def load(name: str) -> Network:
    """The network called `name`: the default bridge, or a definition of the user's."""
    if name == DEFAULT:
        return default_bridge()
    check_name(name)
    path = os.path.join(folder(), f"{name}.json")
    try:
        data = json.loads(read_private_file(path))
    except FileNotFoundError:
        raise NetworkError(f"network {name!r} not found (pysandbox network ls lists them)") from None
    except (OSError, ValueError) as error:
        raise NetworkError(f"{path}: unreadable network definition: {error}") from None
    return _from_definition(path, name, data)


def _from_definition(path: str, name: str, data: object) -> Network:
    try:
        assert isinstance(data, dict) and data["name"] == name and data["driver"] == "bridge"
        subnet, gateway = data["subnets"][0]["subnet"], data["subnets"][0]["gateway"]
        network = ipaddress.ip_network(subnet)
        assert network.version == 4 and ipaddress.ip_address(gateway) in network
        interface, identifier = data["network_interface"], data["id"]
        assert re.fullmatch(rf"{_INTERFACE_PREFIX}[0-9]{{1,4}}", interface) and re.fullmatch(
            r"[0-9a-f]{64}", identifier
        )
        return Network(name, identifier, str(network), gateway, interface, bool(data["dns_enabled"]),
                       bool(data["internal"]), str(data.get("created", "")))  # fmt: skip
    except (AssertionError, KeyError, IndexError, TypeError, ValueError):
        raise NetworkError(f"{path}: not a bridge network definition as pysandbox writes them") from None


def listing() -> list[Network]:
    """The user's own networks, by name."""
    found = []
    for entry in sorted(os.listdir(folder())):
        if entry.endswith(".json") and _NAME.fullmatch(entry[: -len(".json")]):
            found.append(load(entry[: -len(".json")]))
    return found


def create(name: str, subnet: str | None = None, gateway: str | None = None, internal: bool = False,
           dns: bool = True) -> Network:  # fmt: skip
    """Define a network (nothing runs until a container joins it: sandbox.netkeeper)."""
    check_name(name)
    if name in RESERVED:
        raise NetworkError(f"network name {name!r} is reserved (a --network mode of its own)")
    if internal and dns:  # found by review: `nslookup` of any outside name answered
        raise NetworkError(
            "--internal needs --disable-dns here: Debian's aardvark-dns (1.4) asks the outside for every name "
            "it does not know, a way out of an internal network"
        )
    existing = listing()
    if any(network.name == name for network in existing):
        raise NetworkError(f"network {name!r} already exists")
    chosen = _subnet(subnet, [default_bridge(), *existing])
    hosts = chosen.hosts()
    first = str(next(hosts))
    if gateway is None:
        gateway = first
    elif ipaddress.ip_address(gateway) not in chosen or gateway in (
        str(chosen.network_address),
        str(chosen.broadcast_address),
    ):
        raise NetworkError(f"--gateway {gateway} is not a host address of {chosen}")
    used = {network.interface for network in existing}
    interface = next(f"{_INTERFACE_PREFIX}{n}" for n in range(1, 10000) if f"{_INTERFACE_PREFIX}{n}" not in used)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    network = Network(name, os.urandom(32).hex(), str(chosen), gateway, interface, dns, internal, created)
    _write(name, network.definition())
    return network


def _subnet(asked: str | None, existing: list[Network]) -> ipaddress.IPv4Network:
    taken = [ipaddress.ip_network(network.subnet) for network in existing]
    if asked is not None:
        try:
            chosen = ipaddress.ip_network(asked)
        except ValueError:
            raise NetworkError(f"--subnet {asked!r} is not a network in CIDR form (10.90.0.0/24)") from None
        if not isinstance(chosen, ipaddress.IPv4Network) or chosen.prefixlen > 30:
            raise NetworkError(f"--subnet {asked}: an IPv4 network of /30 or wider is needed")
        clash = next((other for other in existing if chosen.overlaps(ipaddress.ip_network(other.subnet))), None)
        if clash is not None:
            raise NetworkError(f"--subnet {asked} overlaps network {clash.name!r} ({clash.subnet})")
        return chosen
    for number in range(1, 256):
        candidate = ipaddress.IPv4Network(_POOL.format(number))
        if not any(candidate.overlaps(other) for other in taken):
            return candidate
    raise NetworkError("no free subnet is left in 10.89.0.0/16: give one with --subnet")


def _write(name: str, definition: dict[str, object]) -> None:
    """Create the file, never replace one (two creates of one name: the second fails)."""
    path = os.path.join(folder(), f"{name}.json")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise NetworkError(f"network {name!r} already exists") from None
    with os.fdopen(fd, "w") as out:
        json.dump(definition, out, indent=1)
        out.write("\n")


def remove(name: str) -> None:
    if name in BUILT_IN:
        raise NetworkError(f"{name} is a built-in network: it cannot be removed")
    check_name(name)
    try:
        os.unlink(os.path.join(folder(), f"{name}.json"))
    except FileNotFoundError:
        raise NetworkError(f"network {name!r} not found") from None

"""Where a workload's calls send (`pysandbox learn`'s network use): the address of each
connect, sendto and sendmsg, read from the caller's memory under observation, as a policy's
egress rule writes it (`93.184.216.34/32:443`, `[2001:db8::1/128]:53`). Loopback, Unix
sockets and calls without an address (a connected socket's send) are not network use."""

from __future__ import annotations

import ipaddress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

AF_INET, AF_INET6 = 2, 10
# Where each call keeps its address: (argument of the pointer, argument of its length); sendmsg's
# is in its struct msghdr (msg_name, then msg_namelen), at argument 1.
SENDS = {"connect": (1, 2), "sendto": (4, 5), "sendmsg": (-1, 1)}


def destination(how: tuple[int, int], args: tuple[int, ...] | list[int], read: Callable[[int, int], bytes]) -> str:
    """The egress rule for this call's destination, or "" (none, loopback, not IP)."""
    pointer, length = how
    if pointer < 0:  # sendmsg: struct msghdr { void *msg_name; socklen_t msg_namelen; ... }
        header = read(args[length], 12)
        if len(header) < 12:
            return ""
        address, size = int.from_bytes(header[:8], "little"), int.from_bytes(header[8:12], "little")
    else:
        address, size = args[pointer], args[length] & 0xFFFFFFFF
    if not address or size < 8:
        return ""
    return rule_for(read(address, min(size, 28)))


def rule_for(sockaddr: bytes) -> str:
    """An IPv4 or IPv6 sockaddr as an egress rule; "" for loopback and anything else."""
    if len(sockaddr) < 8:
        return ""
    family, port = int.from_bytes(sockaddr[:2], "little"), int.from_bytes(sockaddr[2:4], "big")
    if family == AF_INET:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(sockaddr[4:8])
    elif family == AF_INET6 and len(sockaddr) >= 24:
        ip = ipaddress.IPv6Address(sockaddr[8:24])
        mapped = ip.ipv4_mapped
        ip = mapped if mapped is not None else ip
    else:
        return ""
    if ip.is_loopback or ip.is_unspecified or not port:
        return ""
    return f"{ip}/32:{port}" if ip.version == 4 else f"[{ip}/128]:{port}"

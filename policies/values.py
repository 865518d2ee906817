"""Parsing and printing the scalar kinds of policy files: sizes (512Mi), durations (30s),
capability names (CAP_SYS_ADMIN or SYS_ADMIN), egress rules (10.0.0.0/8:443)."""

from __future__ import annotations

import re

from pysbx.policies.capnames import LINUX_CAPABILITIES

TYPE_CHECKING = False  # ipaddress is imported where an egress rule is read: pyaudit's start prints sizes only
if TYPE_CHECKING:
    import ipaddress

# Container engines' control sockets: whoever reaches one can start a privileged container,
# which is root on the host. The run gate refuses to bind them and pyaudit flags a mount of
# one (PA1080): one list for both gates.
ENGINE_SOCKETS = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
    "/run/podman/podman.sock",
    "/var/run/podman/podman.sock",
)
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTP]i?|[kmgtp]|[KMGTP]?B)?$")
_SIZE_UNITS = {
    "": 1, "B": 1,
    "k": 1000, "K": 1000, "KB": 1000, "M": 1000**2, "m": 1000**2, "MB": 1000**2,
    "G": 1000**3, "g": 1000**3, "GB": 1000**3, "T": 1000**4, "t": 1000**4, "TB": 1000**4,
    "P": 1000**5, "p": 1000**5, "PB": 1000**5,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5,
}  # fmt: skip
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(text: str) -> int | None:
    """`512Mi` -> 536870912 (binary units as Kubernetes writes them; k/M/G decimal)."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        return None
    # Decimal, not float: a number of 400 digits is infinite as a float, and int() of that raises.
    from decimal import Decimal  # here: a report that only writes sizes never parses one

    return int(Decimal(match.group(1)) * _SIZE_UNITS[match.group(2) or ""])


def format_size(value: int) -> str:
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if value >= factor and value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def parse_duration(text: str) -> float | None:
    match = _DURATION_RE.match(text.strip())
    return None if not match else float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def format_duration(value: float) -> str:
    for unit, factor in (("h", 3600), ("m", 60), ("s", 1)):
        if value >= factor and value % factor == 0:
            return f"{int(value // factor)}{unit}"
    return f"{round(value * 1000)}ms"


def normalize_capability(name: str) -> str | None:
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    return full if full in LINUX_CAPABILITIES else None


def suggest(word: str, choices: list[str] | frozenset[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' when something is close enough, else ''."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def counted(number: int, singular: str, plural: str | None = None) -> str:
    """`1 problem`, `2 problems`, `1 policy`, `3 policies`: counts in messages and summaries."""
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


EgressRule = tuple["ipaddress.IPv4Network | ipaddress.IPv6Network", int, int]  # network, lowest, highest port
_EGRESS_RE = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<plain>[^:\[\]]+))(?::(?P<low>[0-9]+)(?:-(?P<high>[0-9]+))?)?$")


def parse_egress(text: str) -> EgressRule | None:
    """`CIDR[:PORT[-PORT]]` (an IPv6 network in brackets: `[fd00::/8]:443`; an address alone
    is its own /32 or /128; no port: every port) as (network, lowest, highest); None when it
    is not one (a host name, host bits set, a port outside 1-65535 or a range upside down)."""
    found = _EGRESS_RE.match(text.strip())
    if found is None:
        return None
    import ipaddress

    try:
        network = ipaddress.ip_network(found["v6"] or found["plain"])
    except ValueError:
        return None
    if found["v6"] and network.version != 6:
        return None
    low = int(found["low"]) if found["low"] else 1
    high = int(found["high"]) if found["high"] else (low if found["low"] else 65535)
    return (network, low, high) if 1 <= low <= high <= 65535 else None


def format_egress(rule: EgressRule) -> str:
    """A rule as the policy writes it, normalised (one spelling per rule)."""
    network, low, high = rule
    where = f"[{network}]" if network.version == 6 else str(network)
    if (low, high) == (1, 65535):
        return where
    return f"{where}:{low}" if low == high else f"{where}:{low}-{high}"

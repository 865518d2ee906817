"""What the policy lets a run ask of the network (`--network`, `-p`, `-P`), as plain data a
plan carries (sandbox.planrecord.Confinement.network_rules), and the one check of a run's
flags against it: the cold path makes the rules from the loaded policy, a warm start reads
them from its cached plan, so a run with --network pasta or -p starts as fast as one without
and is refused by the same words, naming the same policy lines."""

from __future__ import annotations

from pysbx.sandbox.errors import Refused
from pysbx.sandbox.network import ENGINES, Published

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pysbx.cli.runargs import RunArgs

ALWAYS = ("none", "loopback")  # only lo: nothing to loosen


def rules(
    default: str,
    modes: list[str],
    addresses: list[str],
    lowest_port: int,
    where: dict[str, str],
    egress: list[str] | None = None,
    net_admin: bool = False,
    networks: list[str] | None = None,
) -> dict[str, Any]:
    """The rules as a plan stores them; `where` holds the policy lines of network_modes,
    publish, egress and networks; `net_admin` whether the policy grants the one capability
    that could undo an egress allow-list; `networks` the bridge networks a run may join."""
    return {"default": default, "modes": modes, "addresses": addresses, "lowest_port": lowest_port, "where": where,
            "egress": egress, "net_admin": net_admin, "networks": networks or []}  # fmt: skip


def check_joinable(name: str, network_rules: dict[str, Any]) -> None:
    """A bridge network's name: the default bridge, or one the policy's networks list names."""
    joinable, where = network_rules.get("networks", []), network_rules["where"]
    if name in ("none", "loopback", "host", *ENGINES):
        raise Refused(f"--network {name} cannot be combined with other networks: only bridge networks can")
    if name != "bridge" and "*" not in joinable and name not in joinable:
        raise Refused(
            f"--network {name} is refused: the policy lets containers join "
            f"{', '.join(joinable) if joinable else 'no network of its own'} ({where.get('networks', 'networks')})"
        )


def kind_of(mode: str) -> str:
    """The policy's mode a --network value stands for: a bridge network's name is bridge."""
    return mode if mode in (*ALWAYS, *ENGINES, "host") else "bridge"


def mode_of(args: RunArgs, network_rules: dict[str, Any]) -> str:
    """The network a run gets: --network, else the policy's default."""
    return str(args.network or network_rules["default"])


def check(args: RunArgs, network_rules: dict[str, Any]) -> None:
    """--network: the policy's default, a mode it lists, or none and loopback. -p and -P:
    under an engine that publishes, on an address and from a port the policy allows."""
    mode, where = mode_of(args, network_rules), network_rules["where"]
    allowed = list(dict.fromkeys((*ALWAYS, network_rules["default"], *network_rules["modes"])))
    kind = kind_of(mode)
    if kind not in allowed:
        raise Refused(
            f"--network {mode} is refused: the policy allows the networks {', '.join(allowed)} ({where['modes']})"
        )
    if mode != kind:
        for name in mode.split(","):
            check_joinable(name, network_rules)
    _check_egress(args, network_rules, kind)
    if not args.publish and not args.publish_all:
        return
    from pysbx.sandbox import ports

    if kind_of(mode) not in (*ENGINES, "bridge"):
        raise Refused(
            f"-p and -P need a network that publishes ports (pasta, slirp4netns, a bridge); this run's is {mode}"
        )
    wanted = [(f"-p {spec}", port) for spec in args.publish for port in ports.parse(spec)]
    if args.publish_all:  # the image's EXPOSE: free ports of 127.0.0.1 (sandbox.ports.exposed)
        wanted.append(("-P", Published(ports.DEFAULT_ADDRESS, 0, 0, "tcp")))
    for flag, port in wanted:
        lowest = network_rules["lowest_port"] if port.host_port else 0
        why = ports.refusal(port, tuple(network_rules["addresses"]), lowest)
        if why is not None:
            raise Refused(f"{flag} is refused: {why} ({where['publish']})")


def _check_egress(args: RunArgs, network_rules: dict[str, Any], mode: str) -> None:
    """An egress allow-list holds only in the container's own network namespace (not the
    host's), and only while nothing in the container may change its nftables: NET_ADMIN
    (from the policy, --cap-add or --privileged) would."""
    if network_rules.get("egress") is None or mode in ALWAYS:
        return
    if mode == "host":  # the host's network: no namespace of its own to hold the table
        raise Refused(
            f"--network {mode} is refused: the policy's egress allow-list holds only in a network namespace of "
            f"the container's own ({network_rules['where']['egress']})"
        )
    added = {name.upper().removeprefix("CAP_") for name in args.cap_add}
    if network_rules.get("net_admin") or args.privileged or added & {"NET_ADMIN", "ALL"}:
        raise Refused(
            "NET_ADMIN would let the container undo the policy's egress allow-list: the run is refused "
            f"({network_rules['where']['egress']})"
        )

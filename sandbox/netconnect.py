"""`network connect` and `disconnect`: a detached container's bridge networks, changed in its
record and saved spec (every later start joins them) and, while it runs, at once (the keeper
holds its network namespace: sandbox.netkeeper). A network it joins must be one its policy
lets it join, as at `run` (the rules its monitor saved: sandbox.netrules)."""

from __future__ import annotations

from pysbx.sandbox import netkeeper, networks
from pysbx.sandbox.containers import RECORD, Container, write_json
from pysbx.sandbox.errors import Refused
from pysbx.sandbox.netrules import check_joinable
from pysbx.sandbox.networks import NetworkError
from pysbx.sandbox.runner import on_bridge
from pysbx.sandbox.specfile import load_spec, save_spec

RUNNING = ("running", "paused", "restarting")


def change(operation: str, network_name: str, container: Container) -> list[str]:
    """Connect or disconnect; the container's networks afterwards."""
    current = str(container.record.get("network", ""))
    if not on_bridge(current):
        raise NetworkError(
            f"container {container.name} has the network {current}: only a container on a bridge network can "
            "join or leave one"
        )
    names, joined = current.split(","), networks.load(network_name)
    spec, extra = load_spec(container.folder)
    if operation == "connect":
        if network_name in names:
            raise NetworkError(f"container {container.name} is already on network {network_name!r}")
        rules = extra.get("network")
        if not isinstance(rules, dict):
            raise Refused(f"container {container.name} was made before network connect: its policy's word is unknown")
        check_joinable(network_name, rules)
        after = [*names, network_name]
    else:
        if network_name not in names:
            raise NetworkError(f"container {container.name} is not on network {network_name!r}")
        if len(names) == 1:
            raise NetworkError(f"network {network_name!r} is container {container.name}'s only network")
        after = [name for name in names if name != network_name]
    if container.state() in RUNNING:
        _change_running(operation, container.name, joined)
    spec.network = container.record["network"] = ",".join(after)
    save_spec(container.folder, spec, extra)
    write_json(container.folder, RECORD, container.record)
    return after


def _change_running(operation: str, name: str, joined: networks.Network) -> None:
    keeper = netkeeper.running(networks.folder())
    if keeper is None:
        raise NetworkError(f"container {name} runs, yet no network keeper does: start it again")
    try:
        keeper.change(operation, name, joined, [name])
    finally:
        keeper.close()

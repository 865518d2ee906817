"""`pysandbox network create|ls|inspect|rm|prune`: bridge networks (sandbox.networks), whose
containers reach each other by address and, but on the default bridge, by name (aardvark-dns
in the user's network keeper: sandbox.netkeeper). Errors are one line, exit 125."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pysbx.cli.kit import fail
from pysbx.sandbox.errors import EXIT_SETUP_FAILED, SandboxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pysbx.sandbox.networks import Network

app = typer.Typer(
    help="Bridge networks: containers on one reach each other by name (run --network NAME).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _failing(error: SandboxError | OSError) -> None:
    fail(
        "pysandbox", str(error) if isinstance(error, SandboxError) else f"{error.strerror or error}", EXIT_SETUP_FAILED
    )


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="The network's name.", metavar="NAME")],
    subnet: Annotated[str | None, typer.Option("--subnet", help="CIDR (default: the next free 10.89.N.0/24).")] = None,
    gateway: Annotated[str | None, typer.Option("--gateway", help="The gateway (default: the first address).")] = None,
    internal: Annotated[
        bool, typer.Option("--internal", help="No outbound access, only the network's own (with --disable-dns).")
    ] = False,
    disable_dns: Annotated[bool, typer.Option("--disable-dns", help="No DNS by name on this network.")] = False,
) -> None:
    """Define a bridge network; containers join it with run --network NAME."""
    from pysbx.sandbox import networks

    try:
        made = networks.create(name, subnet, gateway, internal=internal, dns=not disable_dns)
    except (SandboxError, OSError) as error:
        _failing(error)
    typer.echo(made.name)


@app.command("ls")
def list_networks(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Names only.")] = False,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List the networks: the built-in ones, then the user's."""
    from pysbx.sandbox import networks

    try:
        own = networks.listing()
    except (SandboxError, OSError) as error:
        _failing(error)
    rows = [("-", "host", "host", "", ""), ("-", "none", "null", "", ""),
            *(_row(network) for network in [networks.default_bridge(), *own])]  # fmt: skip
    rows.sort(key=lambda row: row[1])
    if output == "json":
        typer.echo(json.dumps([_summary(network) for network in [networks.default_bridge(), *own]], indent=2))
    elif quiet:
        typer.echo("".join(f"{row[1]}\n" for row in rows), nl=False)
    else:
        width = max(len(row[1]) for row in rows)
        typer.echo(f"{'NETWORK ID':<14}{'NAME':<{width + 2}}{'DRIVER':<8}{'SUBNET':<16}DNS")
        for row in rows:
            typer.echo(f"{row[0]:<14}{row[1]:<{width + 2}}{row[2]:<8}{row[3]:<16}{row[4]}".rstrip())


def _row(network: Network) -> tuple[str, str, str, str, str]:
    return network.id[:12], network.name, "bridge", network.subnet, "yes" if network.dns else "no"


def _summary(network: Network) -> dict[str, object]:
    return {"name": network.name, "id": network.id, "driver": "bridge", "subnet": network.subnet,
            "gateway": network.gateway, "dns": network.dns, "internal": network.internal,
            "created": network.created, "interface": network.interface}  # fmt: skip


@app.command()
def inspect(names: Annotated[list[str], typer.Argument(help="Networks to show.", metavar="NAME...")]) -> None:
    """The networks' settings and the containers on them now, as JSON."""
    from pysbx.sandbox import networks

    shown = []
    try:
        live = _live_users()
        for name in names:
            network = networks.load(name)
            users = sorted(live.get(network.name, {}).items())
            shown.append(_summary(network) | {"containers": [{"name": n, "address": a} for n, a in users]})
    except (SandboxError, OSError) as error:
        _failing(error)
    typer.echo(json.dumps(shown, indent=2))


def _live_users() -> dict[str, dict[str, str]]:
    """network -> the containers on it now -> their addresses there (the keeper knows them;
    none when none runs). One question for every network."""
    from pysbx.sandbox import netkeeper, networks

    keeper = netkeeper.running(networks.folder())
    if keeper is None:
        return {}
    try:
        found = keeper.ask({"op": "users"})["networks"]
    finally:
        keeper.close()
    return {
        str(network): {str(user): str(address) for user, address in users.items()} for network, users in found.items()
    }


def _recorded_users() -> dict[str, list[str]]:
    """network -> the detached containers whose record names it (running or not)."""
    from pysbx.sandbox.containers import all_containers

    found: dict[str, list[str]] = {}
    for container in all_containers():
        for name in str(container.record.get("network")).split(","):
            found.setdefault(name, []).append(container.name)
    return found


@app.command()
def connect(
    network: Annotated[str, typer.Argument(help="The network to join.", metavar="NETWORK")],
    container: Annotated[str, typer.Argument(help="A detached container on a bridge network.", metavar="CONTAINER")],
) -> None:
    """Put a container on another bridge network too: at once if it runs, and at every start."""
    _change("connect", network, container)


@app.command()
def disconnect(
    network: Annotated[str, typer.Argument(help="The network to leave.", metavar="NETWORK")],
    container: Annotated[str, typer.Argument(help="A detached container on it.", metavar="CONTAINER")],
) -> None:
    """Take a container off one of its bridge networks: at once if it runs, and for good."""
    _change("disconnect", network, container)


def _change(operation: str, network: str, reference: str) -> None:
    from pysbx.sandbox.containers import find
    from pysbx.sandbox.netconnect import change

    try:
        change(operation, network, find(reference))
    except (SandboxError, OSError) as error:
        _failing(error)


@app.command()
def rm(names: Annotated[list[str], typer.Argument(help="Networks to remove.", metavar="NAME...")]) -> None:
    """Remove networks no container is on (nor would be on at its next start)."""
    from pysbx.sandbox import networks

    try:
        recorded, live = _recorded_users(), _live_users()
        for name in names:
            if name in networks.BUILT_IN:
                raise networks.NetworkError(f"{name} is a built-in network: it cannot be removed")
            networks.load(name)  # found
            users = sorted({*live.get(name, {}), *recorded.get(name, [])})
            if users:
                raise networks.NetworkError(
                    f"network {name!r} is in use by {', '.join(users)}: remove those containers first"
                )
            networks.remove(name)
            typer.echo(name)
    except (SandboxError, OSError) as error:
        _failing(error)


@app.command()
def prune(force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask.")] = False) -> None:
    """Remove every network of the user's that no container is on or names."""
    if not force and not typer.confirm("Remove every network no container uses?"):
        raise typer.Exit(1)
    try:
        for name in prune_networks():
            typer.echo(name)
    except (SandboxError, OSError) as error:
        _failing(error)


def prune_networks() -> list[str]:
    """Remove every network no container is on or names; the names removed."""
    from pysbx.sandbox import networks

    recorded, live = _recorded_users(), _live_users()
    removed = []
    for network in networks.listing():
        if not recorded.get(network.name) and not live.get(network.name):
            networks.remove(network.name)
            removed.append(network.name)
    return removed

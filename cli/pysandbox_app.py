"""The `pysandbox` command line. Commands parse arguments and print; the work lives in the
library packages (`images`, and later `policies`, `signing`, the runtime)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from pysbx.cli import (
    container_cmd,
    image_cmd,
    network_cmd,
    policy_cmd,
    registry_cmd,
    seccomp_cmd,
    signing_cmd,
    store_cmd,
    system_cmd,
    volume_cmd,
)
from pysbx.cli.exits import EXIT_BAD_INPUT
from pysbx.cli.kit import ExitWith, fail, run_app, version_option
from pysbx.sandbox.errors import EXIT_SETUP_FAILED

app = typer.Typer(
    name="pysandbox",
    help="Run container images rootless, confined by a policy, after they verify.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh and fish
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(image_cmd.app, name="image")
app.add_typer(policy_cmd.app, name="policy")
app.add_typer(seccomp_cmd.app, name="seccomp")
app.add_typer(volume_cmd.app, name="volume")
app.add_typer(network_cmd.app, name="network")
app.add_typer(system_cmd.app, name="system")
app.add_typer(container_cmd.prune_app, name="container")
app.add_typer(container_cmd.generate_app, name="generate")
_store_command: Callable[..., None]
for _name, _store_command in (("load", store_cmd.load), ("save", store_cmd.save), ("images", store_cmd.images),
                        ("tag", store_cmd.tag), ("rmi", store_cmd.rmi), ("history", store_cmd.history),
                        ("pull", registry_cmd.pull), ("push", registry_cmd.push), ("login", registry_cmd.login),
                        ("logout", registry_cmd.logout)):  # fmt: skip
    app.command(_name)(_store_command)
for _name, _store_command in (("ls", store_cmd.images), ("load", store_cmd.load), ("save", store_cmd.save),
                        ("tag", store_cmd.tag), ("rm", store_cmd.rmi), ("history", store_cmd.history),
                        ("prune", store_cmd.prune), ("pull", registry_cmd.pull),
                        ("push", registry_cmd.push)):  # fmt: skip
    image_cmd.app.command(_name)(_store_command)
app.command("keygen")(signing_cmd.keygen)
app.command("sign")(signing_cmd.sign)
app.command("verify")(signing_cmd.verify)
for _command in (container_cmd.ps, container_cmd.logs, container_cmd.start, container_cmd.stop,
                 container_cmd.restart, container_cmd.kill, container_cmd.rm, container_cmd.wait,
                 container_cmd.inspect, container_cmd.pause, container_cmd.unpause, container_cmd.attach,
                 container_cmd.port):  # fmt: skip
    app.command(_command.__name__)(_command)
app.command("exec", context_settings={"allow_interspersed_args": False})(container_cmd.exec_)


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            "-V",
            callback=version_option("pysandbox"),
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = None,
) -> None:
    """pysandbox: inspect, verify, audit and run container images under a policy."""


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def run(context: typer.Context) -> None:
    """Run an image rootless under a policy (pysandbox run --help lists the flags)."""
    from pysbx.cli.run_cmd import main as run_main

    raise ExitWith(run_main(list(context.args)))


@app.command()
def explain(
    container: Annotated[
        str, typer.Argument(help="Container name or id (a unique prefix of the id).", metavar="CONTAINER")
    ],
    output_format: Annotated[str, typer.Option("--format", help="text or json.", metavar="FORMAT")] = "text",
) -> None:
    """What a detached container started with --explain had denied so far: each system call,
    the policy line that denied it, and the policy diff that would allow it."""
    from pysbx.cli.explain_cmd import explain_container

    if output_format not in ("text", "json"):
        fail("pysandbox", f"--format {output_format}: text or json", EXIT_BAD_INPUT)
    raise ExitWith(explain_container(container, output_format == "json"))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def learn(context: typer.Context) -> None:
    """Learn a policy from a workload: run it observed, write the policy it needs, lint it,
    replay it (pysandbox learn --help)."""
    from pysbx.cli.learn_cmd import main as learn_main

    raise ExitWith(learn_main(list(context.args)))


@app.command()
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed, remove nothing.")] = False,
) -> None:
    """Remove what runs that did not finish left behind (a pysandbox killed with SIGKILL):
    container state folders whose pysandbox is gone, their cgroups, half-unpacked layers."""
    from pathlib import Path

    from pysbx.sandbox.prune import prune as remove_leftovers
    from pysbx.sandbox.state import StorageError, private_root

    failed = False
    try:
        cache = Path(private_root())
    except StorageError as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    for item in remove_leftovers(cache, dry_run):
        if item.error is not None:
            typer.echo(f"pysandbox: error: cannot remove {item.kind} {item.path} ({item.why}): {item.error}", err=True)
            failed = True
        else:
            typer.echo(f"{'would remove' if dry_run else 'removed'} {item.kind} {item.path} ({item.why})")
    if failed:
        raise ExitWith(1)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def unshare(
    command: Annotated[
        list[str] | None, typer.Argument(help="The command and its arguments (default: $SHELL).")
    ] = None,
) -> None:
    """As an ordinary user: run COMMAND as root of a user namespace mapped as your containers'
    are (podman unshare), to look at, change or remove what belongs to their ids: your layer
    cache, volumes, folders given with -v :U. Exits with the command's status."""
    import os

    from pysbx.sandbox.userns import run_as_container_root, subordinate_maps

    if os.geteuid() == 0:
        fail("pysandbox", "unshare is for ordinary users: root reaches every id already", EXIT_SETUP_FAILED)
    maps = subordinate_maps()
    if maps is None:
        fail("pysandbox", "no subordinate ids (/etc/subuid, /etc/subgid, newuidmap): your files are all yours already",
             EXIT_SETUP_FAILED)  # fmt: skip
    argv = command or [os.environ.get("SHELL") or "/bin/sh"]
    try:
        raise ExitWith(run_as_container_root(maps, argv))
    except OSError as error:
        fail("pysandbox", f"cannot enter the user namespace: {error}", EXIT_SETUP_FAILED)


@app.command(
    hidden=True,  # for the sigstore-conformance harness, not for people
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def conformance(context: typer.Context) -> None:
    """The sigstore-conformance protocol: verify-bundle, sign-bundle (pysandbox conformance --help)."""
    from pysbx.cli.conformance_cmd import main as conformance_main

    raise ExitWith(conformance_main(list(context.args)))


def main() -> None:
    run_app(app, "pysandbox", EXIT_SETUP_FAILED, {"policy": EXIT_BAD_INPUT})

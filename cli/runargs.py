"""`pysandbox run`'s command line: one table of Docker's flags, read by two parsers.

argparse (with gettext, locale and re behind it) costs a warm start about 3 ms, a tenth of
it. So the common forms (`--opt value`, `--opt=value`, `-e value`, `-it`, then IMAGE and
the command) are read by `parse_fast` straight from the table; anything else (`--help`, an
error, an abbreviation, "--" anywhere, a value that starts with "-", `-eK=V`) makes it answer None,
and argparse, built from the same table, decides. It never guesses: a property test checks
that whenever it answers, argparse answers the same."""

from __future__ import annotations

import os
import sys

from pysbx.policies.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import NoReturn


class Option(Record):
    """One flag: its names, what it stores under `dest`, and its help."""

    __slots__ = ("choices", "convert", "dest", "help", "kind", "metavar", "names")

    def __init__(
        self,
        names: tuple[str, ...],
        kind: str,  # "flag" (store_true), "value" (last one wins) or "append"
        help: str,
        *,
        metavar: str | None = None,
        choices: tuple[str, ...] | None = None,
        convert: Callable[[str], object] | None = None,
        dest: str | None = None,
    ) -> None:
        self.names, self.kind, self.help = names, kind, help
        self.metavar, self.choices, self.convert = metavar, choices, convert
        self.dest = dest or names[-1].lstrip("-").replace("-", "_")


NETWORKS = ("none", "loopback", "pasta", "slirp4netns", "host")  # the modes that are not bridge networks


def _is_network_name(name: str) -> bool:
    return 0 < len(name) <= 64 and name[0].isalnum() and name.isascii() and all(c.isalnum() or c in "_.-" for c in name)


def network_name(text: str) -> str:
    """A --network value: a mode, or a bridge network's name (Docker's pattern: checked
    again, with the definition, when the network is loaded)."""
    if text in NETWORKS or all(_is_network_name(name) for name in text.split(",")):  # several: bridges only
        return text
    raise ValueError(f"not a network name: {text!r}")


OPTIONS = (
    Option(("--policy",), "value", "built-in policy (strict, baseline, permissive) or a policy file", metavar="POLICY"),
    Option(("-i", "--interactive"), "flag", "with -t, typed input reaches the container (stdin is open without -t)"),
    Option(("-t", "--tty"), "flag", "allocate a pseudo-terminal of the container's own"),
    Option(("-d", "--detach"), "flag", "run in the background and print the container's id (see ps, logs, stop)"),
    Option(("--detach-keys",), "value", "with -d: the keys that detach an attach (ctrl-p,ctrl-q)", metavar="KEYS"),
    Option(
        ("--monitor-pidfile",), "value", "with -d: write the monitor's pid here (systemd's PIDFile)", metavar="FILE"
    ),
    Option(("--rm",), "flag", "delete the container's writable layer when it exits"),
    Option(("--restart",), "value", "with -d: no, on-failure[:N], always, unless-stopped", metavar="POLICY"),
    Option(("--log-opt",), "append", "with -d: max-size=SIZE (10m) and max-file=N (1) of its log", metavar="K=V"),
    Option(
        ("--stop-signal",),
        "value",
        "with -d: the signal stop sends first (default: the image's STOPSIGNAL, else TERM)",
        metavar="SIG",
    ),
    Option(("--stop-timeout",), "value", "with -d: seconds stop waits before SIGKILL (10)", convert=int, metavar="N"),
    Option(
        ("--health-cmd",),
        "value",
        "with -d: a command (run by sh -c) that says whether the container is healthy",
        metavar="CMD",
    ),
    Option(("--health-interval",), "value", "time between health checks (30s)", metavar="DURATION"),
    Option(("--health-timeout",), "value", "time a health check may take (30s)", metavar="DURATION"),
    Option(("--health-start-period",), "value", "time after start when failures do not count (0s)", metavar="DURATION"),
    Option(("--health-retries",), "value", "failures in a row that make it unhealthy (3)", convert=int, metavar="N"),
    Option(("--no-healthcheck",), "flag", "do not run the image's HEALTHCHECK"),
    Option(("--name",), "value", "container name (and default hostname)", metavar="NAME"),
    Option(("-e", "--env"), "append", "set an environment variable", metavar="K=V"),
    Option(("--env-file",), "append", "read K=V lines from FILE", metavar="FILE"),
    Option(("-w", "--workdir"), "value", "working directory inside the container", metavar="DIR"),
    Option(("-u", "--user"), "value", "USER[:GROUP], names or ids", metavar="USER[:GROUP]"),
    Option(("-v", "--volume"), "append", "bind mount or named volume", metavar="SRC:DST[:ro]"),
    Option(("--tmpfs",), "append", "mount a tmpfs", metavar="DST[:size=64m,mode=1777]"),
    Option(
        ("--network",),
        "value",
        "none, loopback, pasta or slirp4netns (outbound through that engine), host, bridge (the default bridge) "
        "or a network's name (pysandbox network create; its containers by name) (default: the policy's)",
        convert=network_name,
        metavar="NETWORK",
    ),
    Option(
        ("-p", "--publish"),
        "append",
        "publish a container port (on 127.0.0.1 unless an address is given; needs pasta or slirp4netns)",
        metavar="[IP:][HOST_PORT:]PORT[/udp]",
    ),
    Option(("-P", "--publish-all"), "flag", "publish the image's EXPOSE ports on free ports of 127.0.0.1"),
    Option(("--hostname",), "value", "container hostname", metavar="NAME"),
    Option(("--init",), "flag", "run an init as PID 1 (always done)"),
    Option(("--memory",), "value", "memory limit, e.g. 512m or 1g", metavar="SIZE"),
    Option(("--pids-limit",), "value", "process limit", convert=int, metavar="N"),
    Option(("--cpus",), "value", "CPU share (needs delegated cgroups)", convert=float, metavar="N"),
    Option(("--read-only",), "flag", "mount the root filesystem read-only"),
    Option(("--cap-add",), "append", "add a capability (only if the policy grants it)", metavar="CAP"),
    Option(("--cap-drop",), "append", "drop a capability (ALL for every one)", metavar="CAP"),
    Option(("--security-opt",), "append", "seccomp=PROFILE or no-new-privileges", metavar="OPT"),
    Option(("--privileged",), "flag", "privileged mode (only if the policy allows it)"),
    Option(("--pid",), "value", "share the host's pid namespace (only if the policy allows it)", choices=("host",)),
    Option(("--entrypoint",), "value", "override the image's ENTRYPOINT", metavar="CMD"),
    Option(("--platform",), "value", "platform to choose from a multi-platform image", metavar="OS/ARCH"),
    Option(
        ("--bundle",),
        "value",
        "the signature bundle (default: IMAGE.sigstore.json beside it, or a referrer)",
        metavar="FILE",
    ),
    Option(
        ("--dry-run",), "flag", "print the plan (namespaces, mappings, mounts, capabilities, seccomp, limits) and exit"
    ),
    Option(
        ("--explain",),
        "flag",
        "at exit, say on stderr each system call the policy denied, the policy line that denied it, and the "
        "policy diff that would allow it",
    ),
    # a flag of its own: `--explain IMAGE` must never read IMAGE as a format
    Option(("--explain=json",), "flag", "the same, as one line of JSON at the end of stderr", dest="explain_json"),
)
_BY_NAME = {name: option for option in OPTIONS for name in option.names}


def takes_value(name: str) -> bool:
    """Whether run's flag `name` (-e, --env) takes a value (an unknown one is taken not to)."""
    option = _BY_NAME.get(name)
    return option is not None and option.kind != "flag"


_DEFAULTS: dict[str, object] = {"policy": "strict"}
DESCRIPTION = (
    "Run IMAGE's command in a rootless sandbox confined as the policy says. "
    "Flags that would loosen the policy are refused before anything starts."
)


class RunArgs(Record):
    """The parsed command line, whichever parser read it."""

    __slots__ = (
        *(option.dest for option in OPTIONS),
        "image",
        "command",
        "anonymous_volumes",
        "given",
        "observe",
        "heard",
        "capabilities_held",
    )

    policy: str
    interactive: bool
    tty: bool
    detach: bool
    detach_keys: str | None
    monitor_pidfile: str | None
    rm: bool
    restart: str | None
    log_opt: list[str]
    stop_signal: str | None
    stop_timeout: int | None
    health_cmd: str | None
    health_interval: str | None
    health_timeout: str | None
    health_start_period: str | None
    health_retries: int | None
    no_healthcheck: bool
    name: str | None
    env: list[str]
    env_file: list[str]
    workdir: str | None
    user: str | None
    volume: list[str]
    tmpfs: list[str]
    network: str | None
    publish: list[str]
    publish_all: bool
    hostname: str | None
    init: bool
    memory: str | None
    pids_limit: int | None
    cpus: float | None
    read_only: bool
    cap_add: list[str]
    cap_drop: list[str]
    security_opt: list[str]
    privileged: bool
    pid: str | None
    entrypoint: str | None
    platform: str | None
    bundle: str | None
    dry_run: bool
    explain: bool
    explain_json: bool
    image: str
    command: list[str]

    def __init__(self, values: dict[str, object]) -> None:
        for option in OPTIONS:
            setattr(self, option.dest, values[option.dest] if option.dest in values else _default(option))
        command = values.get("command") or []
        assert isinstance(command, list)
        self.image, self.command = str(values["image"]), command
        self.anonymous_volumes: list[str] = []  # -v /path: the names run gave them (sandbox.volumes)
        self.given: list[str] = []  # the command line as typed (run -d records it: generate systemd)
        self.observe = False  # pysandbox learn: every call is heard and goes on (sandbox.notify)
        self.heard: object = None  # learn: what was heard (a sandbox.notify.Heard), once the run is over
        self.capabilities_held = 0  # learn: the command's capabilities (a mask), once the run is over


def _default(option: Option) -> object:
    if option.dest in _DEFAULTS:
        return _DEFAULTS[option.dest]
    return [] if option.kind == "append" else False if option.kind == "flag" else None


def parse(argv: list[str]) -> RunArgs:
    """The command line; argparse's SystemExit (with its message or help) when it is not one."""
    return parse_fast(argv) or RunArgs(vars(parser(argv).parse_args(argv)))


def parse_fast(argv: list[str]) -> RunArgs | None:
    """The common forms only; None where argparse must decide."""
    if "--" in argv:  # argparse drops some "--" and keeps others: its call
        return None
    values: dict[str, object] = {}
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        taken = _read_option(argv, index, values)
        if taken == 0:
            return None
        index += taken
    if index == len(argv) or argv[index] == "":
        return None
    values["image"], values["command"] = argv[index], argv[index + 1 :]
    return RunArgs(values)


def _read_option(argv: list[str], index: int, values: dict[str, object]) -> int:
    """Store the option at argv[index]; how many arguments it took (0: declined)."""
    text = argv[index]
    whole = _BY_NAME.get(text)
    if whole is not None and whole.kind == "flag":  # a flag whose name has "=" (--explain=json)
        values[whole.dest] = True
        return 1
    if text.startswith("--"):
        name, equals, attached = text.partition("=")
        option = _BY_NAME.get(name)
        if option is None or (equals and option.kind == "flag"):
            return 0
        if equals:
            return 1 if _store(option, attached, values) else 0
    elif len(text) > 2:  # a cluster of short flags, like -it
        options = [_BY_NAME.get(f"-{letter}") for letter in text[1:]]
        if not all(option is not None and option.kind == "flag" for option in options):
            return 0
        values.update({option.dest: True for option in options if option is not None})
        return 1
    else:
        option = _BY_NAME.get(text)
        if option is None:
            return 0
    if option.kind == "flag":
        values[option.dest] = True
        return 1
    if index + 1 == len(argv) or argv[index + 1].startswith("-"):
        return 0
    return 2 if _store(option, argv[index + 1], values) else 0


def _store(option: Option, text: str, values: dict[str, object]) -> bool:
    if option.choices is not None and text not in option.choices:
        return False
    try:
        value = option.convert(text) if option.convert is not None else text
    except ValueError:
        return False
    if option.kind == "append":
        values.setdefault(option.dest, [])
        values[option.dest].append(value)  # type: ignore[attr-defined]
    else:
        values[option.dest] = value
    return True


def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """argparse's reading of the same table: help, errors and every form parse_fast declines."""
    import argparse

    class OneLineErrors(argparse.ArgumentParser):
        """A usage error is one line (Docker's style), not the whole usage: a flag of a feature
        still to come says so."""

        def error(self, message: str) -> NoReturn:
            coming = _coming_feature(argv or [])
            hint = f" ({coming} is not supported yet)" if coming else " (pysandbox run --help lists the flags)"
            self.exit(2, f"pysandbox run: error: {message}{hint}\n")

        def format_help(self) -> str:
            return help_text(_terminal_width())

    p = OneLineErrors(prog="pysandbox run", description=DESCRIPTION)
    for option in OPTIONS:
        settings: dict[str, object] = {"dest": option.dest, "help": option.help}
        if option.kind == "flag":
            settings["action"] = "store_true"
        else:
            settings.update(metavar=option.metavar, choices=option.choices, type=option.convert)
            if option.kind == "append":
                settings.update(action="append", default=[])
            elif option.dest in _DEFAULTS:
                settings["default"] = _DEFAULTS[option.dest]
        p.add_argument(*option.names, **settings)  # type: ignore[arg-type]
    p.add_argument("image", help="image archive or OCI layout, optionally :REF")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments (default: the image's)")
    return p


def _coming_feature(argv: list[str]) -> str | None:
    """A Docker flag of a feature pysandbox does not have yet, if the command line has one."""
    for index, word in enumerate(argv):
        if word.partition("=")[0] == "--network":
            value = word.partition("=")[2] or (argv[index + 1 : index + 2] or [""])[0]
            if value.startswith("container:"):
                return "--network container:NAME (sharing another container's network)"
    return None


def _terminal_width() -> int:
    """COLUMNS, else the terminal's width, else 80 (argparse would import shutil to ask)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns)
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except OSError:
        return 80


ARGUMENTS = (("IMAGE", "image archive or OCI layout, optionally :REF  [required]"),
             ("[COMMAND]...", "command and arguments (default: the image's)"))  # fmt: skip


def help_text(width: int = 80) -> str:
    """`pysandbox run --help` in the style of every other command's (typer's): usage, the
    description, then arguments and options in two columns, defaults in brackets."""
    import textwrap

    width = max(min(width, 100), 50)
    rows = [("-h, --help", "Show this message and exit.")]
    for option in OPTIONS:
        names = ", ".join(option.names) + ("" if option.kind == "flag" else f" {_metavar(option)}")
        default = f"  [default:\0{_DEFAULTS[option.dest]}]" if option.dest in _DEFAULTS else ""  # kept whole
        rows.append((names, option.help + default))
    left = min(max(len(name) for name, _ in [*rows, *ARGUMENTS]) + 2, 34)

    def table(entries: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[str]:
        lines = []
        for name, text in entries:
            wrapped = [part.replace("\0", " ") for part in textwrap.wrap(text, width - left - 2)] or [""]
            if len(name) + 2 > left:
                lines += [f"  {name}", *(" " * (left + 2) + part for part in wrapped)]
            else:
                lines += [f"  {name:<{left}}{wrapped[0]}", *(" " * (left + 2) + part for part in wrapped[1:])]
        return lines

    description = textwrap.wrap(DESCRIPTION, width - 2, initial_indent="  ", subsequent_indent="  ")
    lines = ["Usage: pysandbox run [OPTIONS] IMAGE [COMMAND]...", "", *description, ""]
    lines += ["Arguments:", *table(ARGUMENTS), "", "Options:", *table(rows)]
    return "\n".join(lines) + "\n"


def _metavar(option: Option) -> str:
    if option.choices is not None:
        return "[" + "|".join(option.choices) + "]"
    return option.metavar or option.dest.upper()

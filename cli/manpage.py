"""Man pages for pysandbox(1) and pyaudit(1), generated from the command tree that --help
prints (typer's commands, and `run`'s own option table), so the two never disagree:

    python -m pysbx.cli.manpage pysandbox > pysandbox.1 && man -l pysandbox.1
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import typer

from pysbx.cli.kit import package_version

ENVIRONMENT = {
    "pysandbox": [
        ("PYSANDBOX_STATE", "The private storage (layers, plans, containers, volumes); default ~/.cache/pysandbox, "
         "/var/lib/pysandbox for root."),
        ("COSIGN_PASSWORD", "The password of a private key (keygen, sign); empty: an unencrypted key."),
        ("SOURCE_DATE_EPOCH", "image build: clamps file times and sets the creation time."),
    ],
    "pyaudit": [("NO_COLOR", "Set and not empty: no colour on a terminal.")],
}  # fmt: skip
EXIT_STATUS = {
    "pysandbox": "run: the container's own status; 125 the sandbox could not be set up or the image was refused; "
    "126 the command cannot be executed; 127 not found; 128+N killed by signal N (137: also over the memory limit). "
    "policy: 0 clean or nothing loosens, 1 a change loosens, 2 a usage or input error. verify: 0 verified, 1 refused, "
    "2 bad input.",
    "pyaudit": "0 nothing at or above --fail-on; 1 findings at or above it; 2 a usage or input error (an input that "
    "could not be read is reported and fails the run with 2).",
}


def render(tool: str) -> str:
    """The man page of `tool` (pysandbox or pyaudit) in roff (man(7) macros)."""
    app, summary = _app(tool)
    root = typer.main.get_command(app)
    lines = [
        f'.TH {tool.upper()} 1 "" "{tool} {package_version()}" "User Commands"',
        ".SH NAME",
        f"{tool} \\- {_roff(summary)}",
        ".SH SYNOPSIS",
        f".B {tool}",
        "[\\fIOPTIONS\\fR] " + ("\\fICOMMAND\\fR [\\fIARGS\\fR]..." if _children(root) else "\\fITARGET\\fR..."),
        ".SH DESCRIPTION",
        _paragraph(root.help or summary),
        ".SH OPTIONS",
        *_options(root),
    ]
    commands = list(_commands(root, tool))
    if tool == "pyaudit":
        from pysbx.cli.pyaudit_app import rules_app

        commands.append((f"{tool} rules", typer.main.get_command(rules_app)))
    if commands:
        lines.append(".SH COMMANDS")
    for path, command in commands:
        lines += [f'.SS "{_roff(path)}"', _paragraph(command.help or "")]
        lines += _arguments(command) + _options(command)
        if path == f"{tool} run":
            lines += _run_page()
    lines += [".SH EXIT STATUS", _paragraph(EXIT_STATUS[tool]), ".SH ENVIRONMENT"]
    for name, text in ENVIRONMENT[tool]:
        lines += [".TP", f"\\fB{name}\\fR", _roff(text)]
    other = "pyaudit" if tool == "pysandbox" else "pysandbox"
    lines += [".SH SEE ALSO", f"\\fB{other}\\fR(1), \\fBdocker-run\\fR(1), \\fBcosign\\fR(1)"]
    return "\n".join(lines) + "\n"


def _app(tool: str) -> tuple[typer.Typer, str]:
    if tool == "pysandbox":
        from pysbx.cli.pysandbox_app import app

        return app, "run container images rootless, confined by a policy, after they verify"
    if tool == "pyaudit":
        from pysbx.cli.pyaudit_app import app as audit_app

        return audit_app, "the CI gate for container images, Dockerfiles, Compose, Kubernetes and runtime configs"
    raise ValueError(f"no man page for {tool!r}: pysandbox or pyaudit")


def _children(command: Any) -> dict[str, Any]:
    return dict(getattr(command, "commands", {}) or {})


def _commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every visible command below `command`, depth first, in the order --help lists them."""
    for name, child in _children(command).items():
        if getattr(child, "hidden", False):
            continue
        if _children(child):
            yield from _commands(child, f"{path} {name}")
        else:
            yield f"{path} {name}", child


def _options(command: Any) -> list[str]:
    lines = []
    for param in getattr(command, "params", []):
        if getattr(param, "hidden", False) or type(param).__name__.endswith("Argument"):
            continue
        names = ", ".join(f"\\fB{_roff(name)}\\fR" for name in [*param.opts, *param.secondary_opts])
        metavar = "" if getattr(param, "is_flag", False) or not param.metavar else f" \\fI{_roff(param.metavar)}\\fR"
        lines += [".TP", names + metavar, _roff(param.help or "")]
    return lines


def _arguments(command: Any) -> list[str]:
    lines = []
    for param in getattr(command, "params", []):
        if type(param).__name__.endswith("Argument"):
            lines += [".TP", f"\\fI{_roff((param.metavar or param.name).upper())}\\fR", _roff(param.help or "")]
    return lines


def _run_page() -> list[str]:
    """`run` parses its own flags (no CLI framework on a container's start): from its table."""
    from pysbx.cli.runargs import _DEFAULTS, ARGUMENTS, DESCRIPTION, OPTIONS, _metavar

    lines = [_paragraph(DESCRIPTION)]
    for name, text in ARGUMENTS:
        lines += [".TP", f"\\fI{_roff(name)}\\fR", _roff(text)]
    for option in OPTIONS:
        names = ", ".join(f"\\fB{_roff(name)}\\fR" for name in option.names)
        metavar = "" if option.kind == "flag" else f" \\fI{_roff(_metavar(option))}\\fR"
        default = f" [default: {_DEFAULTS[option.dest]}]" if option.dest in _DEFAULTS else ""
        lines += [".TP", names + metavar, _roff(option.help + default)]
    return lines


def _paragraph(text: str) -> str:
    return ".PP\n" + "\n".join(_roff(line.strip()) for line in text.strip().splitlines() if line.strip())


def _roff(text: str) -> str:
    """Text safe in a roff line: backslashes and hyphens escaped, no line starting a request."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + escaped if escaped.startswith((".", "'")) else escaped


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("pysandbox", "pyaudit"):
        print("usage: python -m pysbx.cli.manpage pysandbox|pyaudit", file=sys.stderr)
        return 2
    sys.stdout.write(render(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

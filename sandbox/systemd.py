"""`pysandbox generate systemd NAME`: a systemd unit that runs a detached container as a
service, so that it survives a reboot (podman's `generate systemd --new`). Each start of the
unit makes the container anew with the command line it was first run with, so the image is
verified again at every boot, and nothing rests on state that a reboot clears (root's
containers live under /run). systemd supervises the monitor through PIDFile (Type=forking);
stopping the unit is `pysandbox stop` with the container's timeout, then `rm -f`.

Written for a user (`~/.config/systemd/user`, WantedBy=default.target, `loginctl
enable-linger` to start at boot) or for root (`/etc/systemd/system`, multi-user.target)."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from pysbx.sandbox.errors import SandboxError

# run's flags that the unit sets itself (or that make no sense under systemd), with how
# many values each takes
_DROPPED = {"-d": 0, "--detach": 0, "--rm": 0, "--name": 1, "--restart": 1, "--monitor-pidfile": 1}
_RESTARTS = ("no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always")


def quote(word: str) -> str:
    """One argument as systemd's command-line parser reads it back: double quotes with \\
    and " escaped, % as %% (a specifier otherwise) and $ as $$ (a variable otherwise)."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"' if escaped != word or not word or any(c.isspace() or c in "'\";" for c in word) else word


def _plain(text: str) -> str:
    """A value systemd takes whole (a path, a description): only its specifiers escaped."""
    return text.replace("%", "%%").replace("\n", " ")


def _command(*words: str) -> str:
    return " ".join(quote(word) for word in words)


def run_arguments(argv: list[str]) -> list[str]:
    """`run`'s recorded arguments without the flags the unit gives itself."""
    kept: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        flag, equals, _ = word.partition("=")
        if word == "--":
            kept += argv[index:]
            break
        if flag in _DROPPED:
            index += 1 + (_DROPPED[flag] if not equals else 0)
            continue
        if not word.startswith("-") or word == "-":
            kept += argv[index:]  # the image and the command: from here on nothing is a flag of ours
            break
        kept.append(word)
        index += 1
    return kept


def unit(container: Any, restart: str, stop_timeout: int | None, program: str | None = None) -> str:
    """The unit's text for `container` (a sandbox.containers.Container)."""
    if restart not in _RESTARTS:
        raise SandboxError(f"--restart-policy {restart}: expected one of {', '.join(_RESTARTS)}")
    recorded = container.record.get("run")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("argv"), list):
        raise SandboxError(f"container {container.name}: its run command line was not recorded (made by an older "
                           "pysandbox): run it again")  # fmt: skip
    name = container.name
    pysandbox = program or _program()
    seconds = stop_timeout if stop_timeout is not None else container.stop_timeout()
    pidfile = f"%t/pysandbox-{name}.pid"
    arguments = run_arguments([str(word) for word in recorded["argv"]])
    root = os.geteuid() == 0
    start = f"{_command(pysandbox, 'run', '-d', '--name', name, '--monitor-pidfile')} {pidfile} {_command(*arguments)}"
    return "\n".join([
        f"# container-{name}.service, made by `pysandbox generate systemd {name}`",
        f"# {'/etc/systemd/system' if root else '~/.config/systemd/user'}: systemctl {'' if root else '--user '}"
        f"enable --now container-{name}.service",
        "",
        "[Unit]",
        f"Description=pysandbox container {name} ({_plain(str(container.record.get('image', '')))})",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=forking",
        f"Restart={restart}",
        f"TimeoutStopSec={seconds + 60}",
        f"WorkingDirectory={_plain(str(recorded.get('cwd') or '/'))}",
        f"ExecStartPre=-{_command(pysandbox, 'rm', '-f', '-v', name)}",
        f"ExecStart={start}",
        f"ExecStop={_command(pysandbox, 'stop', '-t', str(seconds), name)}",
        f"ExecStopPost=-{_command(pysandbox, 'rm', '-f', '-v', name)}",
        f"PIDFile={pidfile}",
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if root else 'default.target'}",
        "",
    ])  # fmt: skip


def _program() -> str:
    """This pysandbox, by absolute path (systemd runs units with a bare PATH)."""
    found = shutil.which("pysandbox") or os.path.join(os.path.dirname(sys.executable), "pysandbox")
    return os.path.abspath(found)

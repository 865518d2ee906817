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
from collections.abc import Callable
from typing import Any

from pysbx.sandbox.errors import SandboxError

# run's flags that the unit sets itself (or that make no sense under systemd)
_DROPPED = ("-d", "--detach", "--rm", "--name", "--restart", "--monitor-pidfile")
_RESTARTS = ("no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always")


def quote(word: str) -> str:
    """One argument as systemd's command-line parser reads it back: double quotes with \\
    and " escaped, % as %% (a specifier otherwise), $ as $$ (a variable otherwise), and
    every control character as a C escape (\\xNN: systemd ends a line at a newline or a
    carriage return; found by review, a multi-line `sh -c` script broke the unit)."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    escaped = "".join(f"\\x{ord(c):02x}" if _control(c) else c for c in escaped)
    return f'"{escaped}"' if escaped != word or not word or any(c.isspace() or c in "'\";" for c in word) else word


def _control(character: str) -> bool:
    return ord(character) < 0x20 or ord(character) == 0x7F


def _plain(text: str, what: str) -> str:
    """A value systemd takes whole (a path): its specifiers escaped; one with a control
    character or a final backslash (both would end or join lines of the unit: found by
    review, a carriage return in the folder `run` was started from added a directive) is
    refused."""
    if any(_control(c) for c in text) or text.endswith("\\"):
        raise SandboxError(f"{what} {text!r} cannot be written into a unit (a control character or a final \\)")
    return text.replace("%", "%%")


def write_unit(path: str, text: str) -> None:
    """The unit into `path`, readable by its owner only (it holds the run's -e values), as a
    new file renamed into place: never through a link, never into a file of another user's
    (found by review: O_TRUNC wrote into one another user had made in a shared folder)."""
    import stat

    folder, name = os.path.split(path)
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    temporary = f".{name}.{os.urandom(6).hex()}"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(temporary, flags, 0o600, dir_fd=directory), "w") as out:
            out.write(text)
        try:
            existing = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and (not stat.S_ISREG(existing.st_mode) or existing.st_uid != os.geteuid()):
            os.unlink(temporary, dir_fd=directory)
            raise OSError(f"{path} exists and is not a file of ours")
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    finally:
        os.close(directory)


def _described(text: str) -> str:
    """The image as the Description shows it: control characters as spaces, no final \\."""
    return "".join(" " if _control(c) else c for c in text).rstrip("\\").replace("%", "%%")


def _command(*words: str) -> str:
    return " ".join(quote(word) for word in words)


def run_arguments(argv: list[str], takes_value: Callable[[str], bool]) -> list[str]:
    """`run`'s recorded arguments without the flags the unit gives itself, read with run's
    own table of which flags take a value (found by review: the value of -e was taken for
    the image, and every flag after it kept)."""
    kept: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--" or not word.startswith("-") or word == "-":
            return kept + argv[index:]  # the image and its command: nothing after is a flag of ours
        words = _option_words(word, argv[index + 1 : index + 2], takes_value)
        kept += _without_dropped(words, takes_value)
        index += len(words)
    return kept


def _option_words(word: str, after: list[str], takes_value: Callable[[str], bool]) -> list[str]:
    """The words one option (or a cluster of short ones, -dit, -eK=V) takes from argv."""
    if word.startswith("--"):
        name, equals, _ = word.partition("=")
        return [word, *after] if takes_value(name) and not equals else [word]
    for position, letter in enumerate(word[1:], 1):
        if takes_value(f"-{letter}"):
            return [word, *after] if position == len(word) - 1 else [word]
    return [word]


def _without_dropped(words: list[str], takes_value: Callable[[str], bool]) -> list[str]:
    """One option's words, or none when the unit sets it itself; from a cluster of short
    flags only -d goes (-dit: -it)."""
    word = words[0]
    if word.startswith("--"):
        return [] if word.partition("=")[0] in _DROPPED else words
    letters = word[1:]
    flags = next((letters[:at] for at, letter in enumerate(letters) if takes_value(f"-{letter}")), letters)
    kept = flags.replace("d", "") + letters[len(flags) :]
    return [f"-{kept}", *words[1:]] if kept else []


def unit(
    container: Any,
    restart: str,
    stop_timeout: int | None,
    takes_value: Callable[[str], bool],
    program: str | None = None,
) -> str:
    """The unit's text for `container` (a sandbox.containers.Container); `takes_value`: which
    of run's flags take a value (cli.runargs knows: this package imports nothing above it)."""
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
    arguments = run_arguments([str(word) for word in recorded["argv"]], takes_value)
    root = os.geteuid() == 0
    start = f"{_command(pysandbox, 'run', '-d', '--name', name, '--monitor-pidfile')} {pidfile} {_command(*arguments)}"
    return "\n".join([
        f"# container-{name}.service, made by `pysandbox generate systemd {name}`",
        f"# {'/etc/systemd/system' if root else '~/.config/systemd/user'}: systemctl {'' if root else '--user '}"
        f"enable --now container-{name}.service",
        "",
        "[Unit]",
        f"Description=pysandbox container {name} ({_described(str(container.record.get('image', '')))})",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=forking",
        f"Restart={restart}",
        f"TimeoutStopSec={seconds + 60}",
        f"WorkingDirectory={_plain(str(recorded.get('cwd') or '/'), 'the folder it was run from,')}",
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

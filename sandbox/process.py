"""What the container runs and as whom: Docker's ENTRYPOINT/CMD override rules, the
environment (image env, a default PATH, -e), and USER resolved through the image's own
/etc/passwd and /etc/group (numeric ids work without them)."""

from __future__ import annotations

from pysbx.policies.record import Record
from pysbx.sandbox.errors import SandboxError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ProcessError(SandboxError):
    """A command or user the image cannot provide."""


class User(Record):
    __slots__ = ("gid", "groups", "home", "uid")

    def __init__(self, uid: int, gid: int, groups: tuple[int, ...], home: str) -> None:
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home


def command_line(
    entrypoint: list[str] | None, cmd: list[str] | None, entrypoint_flag: str | None, args: list[str]
) -> list[str]:
    """Docker's rules: --entrypoint replaces ENTRYPOINT and drops the image's CMD; arguments
    after the image replace CMD."""
    if entrypoint_flag is not None:
        base = [entrypoint_flag] if entrypoint_flag else []
        argv = base + args
    else:
        argv = list(entrypoint or []) + (args if args else list(cmd or []))
    if not argv:
        raise ProcessError("no command: the image sets neither ENTRYPOINT nor CMD, and none was given")
    return argv


def environment(
    image_env: list[str], extra: list[str], user: User, host_env: dict[str, str] | None = None, tty: bool = False
) -> dict[str, str]:
    """Defaults (with -t, TERM=xterm, as Docker), then the image's ENV, then -e and --env-file
    (`NAME=value`; a bare `NAME` passes the host's value when it has one, as Docker does, and
    otherwise changes nothing)."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": "", "HOME": user.home} | ({"TERM": "xterm"} if tty else {})
    for item in image_env:
        key, sep, value = item.partition("=")
        if key:
            env[key] = value if sep else env.get(key, "")
    for item in extra:
        key, sep, value = item.partition("=")
        if key and sep:
            env[key] = value
        elif key and host_env is not None and key in host_env:
            env[key] = host_env[key]
    return env


def _table(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel


def _id(text: str, where: str) -> int:
    if not text.isdigit() or int(text) > _MAX_ID:
        raise ProcessError(f"{where}: {text[:40]!r} is not a user or group id")
    return int(text)


def resolve_user(spec: str, passwd_text: str, group_text: str) -> User:
    """USER as `name`, `uid`, `name:group` or `uid:gid`, looked up in the text of the image's
    own /etc/passwd and /etc/group (read inside its layers: rootfs.etc_text; the host never
    opens an image's file by path at run time)."""
    user_part, _, group_part = (spec or "0").partition(":")
    passwd = _table(passwd_text)
    groups = _table(group_text)
    entry = next((row for row in passwd if len(row) >= 7 and (row[0] == user_part or row[2] == user_part)), None)
    if entry is not None:
        uid, gid, home, name = _id(entry[2], "passwd"), _id(entry[3], "passwd"), entry[5] or "/", entry[0]
    elif user_part.isdigit():
        uid, gid, home, name = _id(user_part, "user"), _id(user_part, "user") if not group_part else 0, "/", ""
    else:
        raise ProcessError(f"user {user_part!r} is not in the image's /etc/passwd")
    if group_part:
        row = next((row for row in groups if len(row) >= 3 and (row[0] == group_part or row[2] == group_part)), None)
        if row is not None:
            gid = _id(row[2], "group")
        elif group_part.isdigit():
            gid = _id(group_part, "group")
        else:
            raise ProcessError(f"group {group_part!r} is not in the image's /etc/group")
    supplementary = tuple(
        sorted(
            {
                _id(row[2], "group")
                for row in groups
                if len(row) >= 4 and name and name in row[3].split(",") and row[2].isdigit()
            }
        )
    )
    return User(uid, gid, supplementary, home)

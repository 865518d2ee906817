"""`pysandbox system setup-ids`: reserve the id range root's containers run as. A system
user `pysandbox` (no home, no shell, so no one logs in as it) owns a range in /etc/subuid and
/etc/subgid that overlaps no other user's, made with shadow's own tools, which lock those
files against a concurrent useradd. Idempotent: an existing, sound reservation is kept."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess

from pysbx.sandbox.idmap import (
    GROUP,
    PASSWD,
    RESERVED_USER,
    SUBGID,
    SUBUID,
    IdMapError,
    IdRange,
    NoReservedRange,
    free_range,
    reserved_range,
)

DEFAULT_COUNT = 65536


def reserve_ids(count: int = DEFAULT_COUNT) -> tuple[IdRange, bool]:
    """The reservation, made if missing; returns it and whether it was made now. Raises
    IdMapError when an existing one is unsound or the tools fail."""
    _ensure_system_user()
    try:
        return _checked_reservation(), False
    except NoReservedRange:
        pass
    start = free_range(count)
    span = f"{start}-{start + count - 1}"
    _run(["usermod", "--add-subuids", span, "--add-subgids", span, RESERVED_USER])
    return _checked_reservation(), True


def _checked_reservation() -> IdRange:
    uids, gids = reserved_range(SUBUID, PASSWD), reserved_range(SUBGID, GROUP)
    if (uids.host, uids.size) != (gids.host, gids.size):
        raise IdMapError(f"the ranges reserved for {RESERVED_USER} in {SUBUID} and {SUBGID} differ")
    return uids


def _ensure_system_user() -> None:
    """The owner of the range: made as a system account no one logs in as; an existing
    account of that name with a login shell is refused (someone could be it)."""
    try:
        account = pwd.getpwnam(RESERVED_USER)
    except KeyError:
        shell = shutil.which("nologin") or "/usr/sbin/nologin"
        _run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", shell, RESERVED_USER])
        return
    if os.path.basename(account.pw_shell) not in ("nologin", "false"):
        raise IdMapError(
            f"the account {RESERVED_USER} has the login shell {account.pw_shell}: its ids must belong to no one "
            "who can log in (give it /usr/sbin/nologin, or remove it and run setup-ids again)"
        )


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise IdMapError(f"{command[0]}: {error.strerror}") from None
    if done.returncode != 0:
        raise IdMapError(f"{' '.join(command)}: {done.stderr.strip() or 'failed'}")

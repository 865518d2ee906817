"""process: USER lookups in the image's own passwd and group, Docker's rules for ENTRYPOINT and
CMD, and the environment a container starts with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pysbx.sandbox.process import ProcessError, User, command_line, environment, resolve_user

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n# comment\nbad:x:zz:1::/:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1001:\nwheel:x:10:app,other\naudio:x:29:other\n"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("app", User(1000, 1001, (10,), "/home/app")),
        ("1000", User(1000, 1001, (10,), "/home/app")),
        ("app:wheel", User(1000, 10, (10,), "/home/app")),
        ("app:29", User(1000, 29, (10,), "/home/app")),
        ("4242", User(4242, 4242, (), "/")),  # numeric, not in the image: its own group
        ("4242:7", User(4242, 7, (), "/")),
        ("", User(0, 0, (), "/root")),
    ],
)
def test_user_specs_resolve_as_docker_does(spec: str, expected: User) -> None:
    assert resolve_user(spec, PASSWD, GROUP) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nobody", "not in the image's /etc/passwd"),
        ("app:staff", "not in the image's /etc/group"),
        ("bad", "is not a user or group id"),
        ("99999999999", "is not a user or group id"),
    ],
)
def test_users_the_image_cannot_provide_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ProcessError, match=message):
        resolve_user(spec, PASSWD, GROUP)


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "flag", "args", "expected"),
    [
        (["/init"], ["serve"], None, [], ["/init", "serve"]),
        (["/init"], ["serve"], None, ["debug"], ["/init", "debug"]),
        (None, ["sh"], None, ["true"], ["true"]),
        (["/init"], ["serve"], "/bin/sh", [], ["/bin/sh"]),  # --entrypoint drops the image's CMD
        (["/init"], ["serve"], "", ["x"], ["x"]),
    ],
)
def test_entrypoint_and_cmd_combine_as_docker_does(
    entrypoint: list[str] | None, cmd: list[str] | None, flag: str | None, args: list[str], expected: list[str]
) -> None:
    assert command_line(entrypoint, cmd, flag, args) == expected


def test_no_command_at_all_is_an_error() -> None:
    with pytest.raises(ProcessError, match="no command"):
        command_line(None, None, None, [])


def test_the_environment_layers_defaults_image_and_flags() -> None:
    env = environment(["PATH=/opt/bin", "A=1"], ["A=2", "B="], User(1000, 1000, (), "/home/app"))
    assert env == {"PATH": "/opt/bin", "HOSTNAME": "", "HOME": "/home/app", "A": "2", "B": ""}


def test_a_bare_name_takes_the_hosts_value_as_docker_does() -> None:
    user = User(0, 0, (), "/root")
    host = {"FROM_HOST": "yes"}
    env = environment(["KEPT=image"], ["FROM_HOST", "KEPT", "UNSET_ON_HOST"], user, host)
    assert env["FROM_HOST"] == "yes" and env["KEPT"] == "image" and "UNSET_ON_HOST" not in env


def test_an_env_file_is_read_as_docker_reads_it(tmp_path: Path) -> None:
    from pysbx.sandbox.warm import _env_file_lines

    path = tmp_path / "app.env"
    path.write_text('\ufeff# comment\n  QUOTED="kept as written" \n\nBARE\nEMPTY=\nURL=a=b\n')
    assert _env_file_lines(str(path)) == ['QUOTED="kept as written" ', "BARE", "EMPTY=", "URL=a=b"]
    for line, shown in (("export A=1", "'export A'"), ("=value", "''"), ("A B=1", "'A B'")):
        path.write_text(f"OK=1\n{line}\n")
        with pytest.raises(ProcessError, match=rf"app.env:2: {re.escape(shown)} is no variable name"):
            _env_file_lines(str(path))

"""Unit tests for the runtime's pure parts, which the end-to-end tests only reach through a
real container: in-root resolution of mount destinations, USER lookups, Docker's command
line rules, the environment, and the flag checks against a policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pysbx.cli.runargs import parse
from pysbx.policies.loader import load_policy
from pysbx.sandbox.mounts import inside
from pysbx.sandbox.plan import Refused, check_flags
from pysbx.sandbox.process import ProcessError, User, command_line, environment, resolve_user

# ----- mounts.inside: a destination resolved as if the root were / ----------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "abs").symlink_to("/etc")  # absolute: inside the root, not the host's /etc
    (tmp_path / "up").symlink_to("../../../../data")  # climbs: stops at the root
    (tmp_path / "loop").symlink_to("loop")
    return tmp_path


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("/etc/hosts", "etc/hosts"),
        ("/abs/hosts", "etc/hosts"),
        ("/up/file", "data/file"),
        ("/../../etc", "etc"),
        ("//./etc/./x", "etc/x"),
        ("/missing/deeper", "missing/deeper"),
    ],
)
def test_a_destination_never_leaves_the_root(root: Path, destination: str, expected: str) -> None:
    assert inside(str(root), destination) == os.path.join(str(root), expected)


def test_a_symlink_loop_is_an_error_not_a_hang(root: Path) -> None:
    with pytest.raises(OSError, match="too many symbolic links"):
        inside(str(root), "/loop/x")


# ----- process: USER, command line, environment -------------------------------------------------

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


# ----- flag checks against a policy -------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--privileged"], "the policy forbids privileged mode"),
        (["--pid", "host"], "host's pid namespace"),
        (["--network", "host"], "the policy's network is none"),
        (["--cap-add", "SYS_ADMIN"], "the policy does not grant it"),
        (["--cap-add", "NOT_A_CAP"], "not a Linux capability"),
        (["--security-opt", "seccomp=unconfined"], "the policy's seccomp profile is strict"),
        (["--security-opt", "apparmor=x"], "unsupported option"),
        (["-v", "/:/host"], "hands the host to the container"),
        (["-v", "/etc:/x"], "is not under a bind source the policy allows"),
        (["-v", "vol:/x"], "the policy forbids named volumes"),
        (["-v", "rel:x"], "an absolute DST"),
        (["--memory", "1g"], "the policy allows at most"),
        (["--memory", "lots"], "expected a size"),
        (["--pids-limit", "100000"], "the policy allows at most"),
        (["--cpus", "0.001"], "the range of CPUs"),
    ],
)
def test_each_loosening_flag_is_refused_naming_the_policy_line(flags: list[str], words: str) -> None:
    loaded = load_policy("strict")
    with pytest.raises(Refused, match=words) as refused:
        check_flags(parse(["--policy", "strict", *flags, "img"]), loaded)
    if "policy" in words or "forbids" in words or "allows" in words:
        assert "strict.yaml" in str(refused.value)


def test_flags_within_the_policy_pass() -> None:
    flags = ["--memory", "64m", "--pids-limit", "16", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    check_flags(parse(["--policy", "strict", *flags, "img"]), load_policy("strict"))


# ----- the plan record ------------------------------------------------------------------------


def test_a_plan_survives_marshal_and_a_plan_of_another_shape_is_refused() -> None:
    import marshal

    from pysbx.sandbox.idmap import IdMaps, IdRange
    from pysbx.sandbox.limits import Enforcement
    from pysbx.sandbox.mounts import TmpfsMount
    from pysbx.sandbox.planrecord import Confinement, ImageRun, Plan

    plan = Plan(
        lowers=["/cache/layers/a/root"],
        etc_texts=["root:x:0:0::/root:/bin/sh\n", "root:x:0:\n"],
        image=ImageRun(["/init"], None, ["A=1"], "/srv", "1000"),
        confinement=Confinement(
            namespaces=["user", "pid"],
            network="none",
            capabilities=0,
            no_new_privileges=True,
            read_only_rootfs=True,
            masked_paths=["/proc/kcore"],
            readonly_paths=["/proc/sys"],
            wall_time=None,
            user=None,
            user_where="strict.yaml:1",
            signing_required=True,
        ),
        id_maps=IdMaps((IdRange(0, 165536, 65536),), (IdRange(0, 165536, 65536),), False),
        limits=[Enforcement("pids", 256, "RLIMIT_NPROC")],
        tmpfs=[TmpfsMount("/tmp", 1 << 26, "1777")],
        bpf=None,
        evidence=[["p.yaml", "/p.yaml", [1, 2, 3, 4, 5]]],
        bundle=None,
    )
    again = Plan.from_marshal(marshal.loads(marshal.dumps(plan.to_marshal())))
    assert again == plan
    shapeless = plan.to_marshal() | {"confinement": {"capabilities": -1}}
    with pytest.raises(TypeError):
        Plan.from_marshal(shapeless)


def test_credentials_other_than_the_ones_set_stop_the_command() -> None:
    """check_credentials reads the ids and capabilities back from the kernel: here, this
    test process is not the user and capabilities a spec asks for, as a process whose
    setresuid and capset a filter had faked would not be."""
    from types import SimpleNamespace

    from pysbx.sandbox.idmap import IdMaps, IdRange
    from pysbx.sandbox.runner import check_credentials

    maps = IdMaps((IdRange(0, 165536, 65536),), (IdRange(0, 165536, 65536),), False)
    other = 4242 if os.geteuid() != 4242 else 4243
    spec = SimpleNamespace(user=User(other, other, (), "/"), capabilities=0, id_maps=maps)
    with pytest.raises(OSError, match="credentials are not the ones set"):
        check_credentials(spec)  # type: ignore[arg-type]
    from pysbx.sandbox.linux import capget

    euid, egid = os.geteuid(), os.getegid()
    effective, permitted, inheritable = capget()
    ours = SimpleNamespace(user=User(euid, egid, tuple(os.getgroups()), "/"), capabilities=effective, id_maps=maps)
    as_it_is = os.getresuid() == (euid,) * 3 and os.getresgid() == (egid,) * 3 and euid == 0
    if as_it_is and permitted == effective and inheritable == 0:
        check_credentials(ours)  # type: ignore[arg-type]  # the process as it is: passes


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["-d", "img"], "running detached (-d) is not supported yet"),
        (["--network", "bridge", "img"], "a network other than none, loopback or host is not supported yet"),
        (["--restart=always", "img"], "a restart policy (--restart) is not supported yet"),
        (["--bogus", "img"], "pysandbox run --help lists the flags"),
    ],
)
def test_a_usage_error_is_one_line_and_names_a_coming_feature(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        parse(argv)
    error = capsys.readouterr().err
    assert done.value.code == 2 and error.count("\n") == 1 and words in error, error


def test_a_bare_name_takes_the_hosts_value_as_docker_does() -> None:
    user = User(0, 0, (), "/root")
    host = {"FROM_HOST": "yes"}
    env = environment(["KEPT=image"], ["FROM_HOST", "KEPT", "UNSET_ON_HOST"], user, host)
    assert env["FROM_HOST"] == "yes" and env["KEPT"] == "image" and "UNSET_ON_HOST" not in env

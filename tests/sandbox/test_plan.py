"""plan.check_flags: each `run` flag against the policy, refused with the policy line it loosens."""

from __future__ import annotations

import pytest

from pysbx.cli.runargs import parse
from pysbx.policies.loader import load_policy
from pysbx.sandbox.plan import Refused, check_flags


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


def test_a_refused_size_is_said_in_the_units_given_and_the_policys() -> None:
    with pytest.raises(Refused, match=r"--memory 1g is refused: the policy allows at most 512Mi \(.*strict.yaml:\d+\)"):
        check_flags(parse(["--policy", "strict", "--memory", "1g", "img"]), load_policy("strict"))
    with pytest.raises(Refused, match=r"--tmpfs of 1Gi in all is refused: the policy allows at most 256Mi"):
        check_flags(parse(["--policy", "strict", "--tmpfs", "/a:size=1g", "img"]), load_policy("strict"))

"""policies.learn on recorded observations (sandbox.notify.Denial, with the base filter's
verdict, the arguments it read and what the observation answered) under the built-in
policies: what goes into the cut profile, what is added and how, what is refused."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from pathlib import Path

import pytest

from pysbx.policies.learn import Learned, LearnError, allowed_names, learn
from pysbx.policies.loader import load_policy
from pysbx.policies.model import granted_capabilities
from pysbx.policies.seccomp import load_profile, syscall_number
from pysbx.sandbox import bpfeval
from pysbx.sandbox.notify import Denial, Heard

ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[os.uname().machine]
ALLOW, EPERM, ENOSYS = bpfeval.RET_ALLOW, bpfeval.RET_ERRNO | errno.EPERM, bpfeval.RET_ERRNO | errno.ENOSYS


def observed(*calls: tuple[str, int, dict[int, int], int]) -> Heard:
    """Each call by name: the base's verdict, the arguments its filter read, and the errno
    the observation answered (0: it went on)."""
    heard = Heard()
    for name, verdict, args, answered in calls:
        number = syscall_number(name)
        assert number is not None
        kind = Denial(number, ARCH, answered, args, {}, 1, tuple(args.get(i, 0) for i in range(6)))
        kind.verdict = verdict
        heard.denials.append(kind)
        heard.total += 1
    return heard


def learned_from(base: str, heard: Heard, tmp_path: Path, as_copy: bool = False) -> Learned:
    """learn() under `base`; `as_copy`: its rules as a copy's, without strict's rule that a
    policy extending it may not loosen it."""
    loaded = load_policy(base)
    if as_copy:
        loaded = dataclasses.replace(loaded, chain=[str(tmp_path / f"{base}-copy.yaml")])
    granted = granted_capabilities(loaded.policy.sandbox.capabilities)
    return learn(base, loaded, granted, heard, tmp_path / "app.yaml", "app:1 serve")


def test_the_profile_keeps_the_bases_rules_for_the_calls_made_conditions_and_all(tmp_path: Path) -> None:
    heard = observed(("read", ALLOW, {}, 0), ("socket", ALLOW, {0: 2}, 0), ("clone3", ENOSYS, {}, errno.ENOSYS))
    result = learned_from("baseline", heard, tmp_path)
    profile = json.loads(result.profile_text)
    names = {name for rule in profile["syscalls"] for name in rule["names"]}
    assert {"read", "socket", "clone3", "execve", "sendmsg"} <= names and "write" in names  # the runtime's own
    assert "mount" not in names and "ptrace" not in names
    sockets = [rule for rule in profile["syscalls"] if rule["names"] == ["socket"]]
    assert sockets and all(rule.get("args") for rule in sockets)  # baseline's family conditions kept
    clone3 = next(rule for rule in profile["syscalls"] if "clone3" in rule["names"])
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == errno.ENOSYS
    assert result.added == {}  # clone3's ENOSYS is on purpose
    (tmp_path / "app.seccomp.json").write_text(result.profile_text)
    granted = granted_capabilities(load_policy("baseline").policy.sandbox.capabilities)
    assert result.learned_allows == len(allowed_names(load_profile(str(tmp_path / "app.seccomp.json")), granted))
    assert result.narrower_by > 300


def test_a_call_the_base_refuses_is_added_by_name_or_for_its_arguments(tmp_path: Path) -> None:
    """process_vm_readv by name (strict's filter never looks at its arguments); personality
    for the value made only (strict allows 0 and 0xffffffff); mount, refused while learning,
    not at all."""
    heard = observed(
        ("read", ALLOW, {}, 0),
        ("process_vm_readv", EPERM, {}, 0),
        ("personality", EPERM, {0: 8}, 0),
        ("mount", EPERM, {}, errno.EPERM),
    )
    result = learned_from("strict", heard, tmp_path, as_copy=True)
    assert list(result.added) == ["process_vm_readv"] and list(result.failed) == ["mount"]
    assert "      - process_vm_readv  # refused by strict; 1x, first process_vm_readv()\n" in result.policy_text
    assert "#   refused by strict for these arguments; 1x, first personality(persona=8)\n" in result.policy_text
    rules = json.loads(result.profile_text)["syscalls"]
    assert rules[-1]["names"] == ["personality"]
    assert rules[-1]["args"] == [{"index": 0, "value": 0xFFFFFFFF, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]
    assert result.policy_text.startswith("# Learned by `pysandbox learn` from: app:1 serve\n")


def test_strict_cannot_be_loosened_by_learning(tmp_path: Path) -> None:
    with pytest.raises(LearnError, match="a policy extending strict cannot allow them"):
        learned_from("strict", observed(("process_vm_readv", EPERM, {}, 0)), tmp_path)


def test_an_observation_that_lost_calls_is_refused(tmp_path: Path) -> None:
    heard = observed(("read", ALLOW, {}, 0))
    heard.dropped = 3
    with pytest.raises(LearnError, match="more kinds of call than were kept"):
        learned_from("baseline", heard, tmp_path)
    heard.dropped, heard.unavailable = 0, "the kernel gave no seccomp notification listener (EBUSY)"
    with pytest.raises(LearnError, match="nothing was observed"):
        learned_from("baseline", heard, tmp_path)


def test_a_made_up_call_number_is_left_out(tmp_path: Path) -> None:
    heard = observed(("read", ALLOW, {}, 0))
    junk = Denial(100_000, ARCH, 0, {}, {}, 1)
    junk.verdict = EPERM
    heard.denials.append(junk)
    result = learned_from("baseline", heard, tmp_path)
    assert result.failed == {"syscall_100000": "libseccomp has no name for it (nor, then, the kernel)"}


def test_a_hostile_command_line_cannot_break_out_of_its_comment(tmp_path: Path) -> None:
    loaded = load_policy("baseline")
    granted = granted_capabilities(loaded.policy.sandbox.capabilities)
    heard = observed(("read", ALLOW, {}, 0))
    result = learn("baseline", loaded, granted, heard, tmp_path / "a.yaml", "x\nsandbox: {}")
    assert result.policy_text.splitlines()[0] == "# Learned by `pysandbox learn` from: x\\x0asandbox: {}"

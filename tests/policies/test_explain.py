"""policies.explain: the cause of a denial, its place, and the change that allows it, for
denials as the monitor records them (sandbox.notify.Denial), under real policies and
profiles compiled by libseccomp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pysbx.policies.explain import explain, quote, rule_lines
from pysbx.policies.loader import load_policy
from pysbx.policies.model import granted_capabilities
from pysbx.policies.seccomp import compile_bpf, load_profile, syscall_number
from pysbx.sandbox import bpfeval
from pysbx.sandbox.notify import Denial, Heard

ROOT = Path(__file__).parents[2]
NATIVE = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


def heard_of(*calls: tuple[str, dict[int, int]]) -> Heard:
    import os

    heard = Heard()
    for name, args in calls:
        number = syscall_number(name)
        assert number is not None
        heard.denials.append(Denial(number, NATIVE[os.uname().machine], 1, args, {}, 1))
        heard.total += 1
    return heard


def explained(policy: Path | str, heard: Heard):  # type: ignore[no-untyped-def]
    loaded = load_policy(policy)
    granted = granted_capabilities(loaded.policy.sandbox.capabilities)
    seccomp = loaded.policy.sandbox.seccomp
    plain = compile_bpf(load_profile(seccomp.profile), granted, seccomp.deny, seccomp.allow).bpf
    return explain(loaded, granted, plain, heard)


def test_a_call_the_profile_gates_by_a_capability_is_allowed_by_adding_the_capability(tmp_path: Path) -> None:
    """Docker's profile allows mount with CAP_SYS_ADMIN: the change is the capability, not
    a seccomp.allow that would let mount through for everyone."""
    policy = tmp_path / "app.yaml"
    policy.write_text("version: 1\nextends: baseline\nsandbox:\n  seccomp:\n    profile: default\n")
    result = explained(policy, heard_of(("mount", {})))
    (item,) = result.denials
    assert "only with CAP_SYS_ADMIN" in item.reason
    assert item.places[0].file.endswith("default.json")
    assert [change.describe() for change in result.changes] == ["sandbox.capabilities: +CAP_SYS_ADMIN"]
    assert all(change.effect == "loosens" for change in result.changes)
    assert not [note for note in result.notes if "would deny" in note]  # the changed filter allows it


def test_the_change_is_checked_against_the_filter_it_would_compile() -> None:
    strict = load_policy("strict")
    result = explained("strict", heard_of(("unshare", {}), ("bpf", {})))
    assert {change.describe() for change in result.changes} == {
        "sandbox.seccomp.allow: +unshare",
        "sandbox.seccomp.allow: +bpf",
    }
    assert not [note for note in result.notes if "would deny" in note]
    assert any("built-in strict cannot be changed" in note for note in result.notes)
    assert result.target == strict.chain[0]


def test_a_policy_extending_strict_is_told_it_cannot_loosen_it(tmp_path: Path) -> None:
    policy = tmp_path / "mine.yaml"
    policy.write_text("version: 1\nextends: strict\nsandbox:\n  limits:\n    pids: 64\n")
    result = explained(policy, heard_of(("unshare", {})))
    assert any(
        f"{policy.name} extends strict, which a policy may tighten but not loosen" in note for note in result.notes
    )


def test_an_argument_condition_is_named() -> None:
    result = explained("strict", heard_of(("personality", {0: 0x1234})))
    assert result.denials[0].reason == "the profile allows personality only when arg0 == 0x0"
    assert result.denials[0].call == "personality(persona=0x1234)"


def test_nothing_heard_explains_nothing() -> None:
    heard = Heard()
    heard.unavailable = "the kernel gave no seccomp notification listener (EBUSY)"
    result = explained("strict", heard)
    assert result.denials == [] and result.changes == []
    assert result.notes == ["nothing was heard: the kernel gave no seccomp notification listener (EBUSY)"]


def test_quote_escapes_every_byte_a_terminal_acts_on() -> None:
    assert quote(b'/tmp/\x1b[2J"\\\n\xff') == '"/tmp/\\x1b[2J\\x22\\x5c\\x0a\\xff"'


def test_rule_lines_point_at_each_rule_of_the_profile() -> None:
    path = ROOT / "policies/seccomp/strict.json"
    lines = rule_lines(str(path))
    text = path.read_text().splitlines()
    profile = load_profile("strict")
    assert "defaultAction" in text[lines["defaultAction"] - 1]
    for index, rule in enumerate(profile.syscalls):
        following = "\n".join(text[lines[f"syscalls[{index}]"] - 1 : lines[f"syscalls[{index}]"] + 12])
        assert f'"{rule.names[0]}"' in following


def test_a_denied_call_gets_the_plain_answer_the_explanation_names() -> None:
    """The errno in the report is the monitor's, which is the filter's: EPERM for strict's
    default action."""
    loaded = load_policy("strict")
    plain = compile_bpf(load_profile("strict")).bpf
    import os

    number = syscall_number("unshare")
    assert number is not None
    value = bpfeval.evaluate(plain, bpfeval.seccomp_data(number, NATIVE[os.uname().machine]))
    assert bpfeval.action_of(value) == (bpfeval.RET_ERRNO, 1)
    assert loaded.policy.sandbox.seccomp.profile == "strict"


def test_an_x32_call_is_named_as_x32_names_it() -> None:
    from pysbx.policies.explain import syscall_name

    if os.uname().machine != "x86_64":
        pytest.skip("x32 is x86_64's")

    assert syscall_name(0xC000003E, 0x40000000 | 165) == "mount"
    assert syscall_name(0xC000003E, 100_000) == "syscall_100000"


def test_a_policy_gone_by_the_time_of_the_report_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from pysbx.cli.explain_cmd import report_run

    report_run(str(tmp_path / "gone.yaml"), 0, None, Heard(), as_json=False)
    said = capfd.readouterr().err
    assert said.startswith("pysandbox: explain: cannot explain: ") and said.count("\n") == 1

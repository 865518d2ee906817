"""Loosening is decided by effect, for every field: `policy diff` and `extends: strict` judge
each change by what it lets through (ids by the host ids they reach, a seccomp profile by
what it allows, a key by its content), and nothing can pass unjudged."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

import pytest

from pysbx.policies import diff, model
from pysbx.policies.diff import Change, diff_policies, loosens
from pysbx.policies.errors import PolicyError
from pysbx.policies.loader import BUILTIN_DIR, BUILTINS, load_policy
from pysbx.policies.seccomp import compare_profiles, load_profile, parse_profile
from pysbx.signing.keys import generate_key_pair

BIN = Path(sys.executable).parent


def policy(folder: Path, text: str, name: str = "policy.yaml") -> model.Policy:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return load_policy(str(path)).policy


def effects(old: model.Policy, new: model.Policy) -> dict[str, str]:
    return {change.describe(): change.effect for change in diff_policies(old, new)}


def strict_problems(folder: Path, text: str) -> list[str]:
    """The messages lint gives a policy that extends strict, as file:line:column: message."""
    path = folder / "child.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("version: 1\nextends: strict\n" + textwrap.dedent(text).lstrip())
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    return [str(problem).removeprefix(f"{path}:") for problem in caught.value.problems]


# ----- every field is judged -----------------------------------------------------------------


def _fields(cls: type, prefix: str = "") -> typing.Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        yield prefix + f.name, f, hint
        nested = [hint, *typing.get_args(hint), *(a for arg in typing.get_args(hint) for a in typing.get_args(arg))]
        for candidate in nested:
            if dataclasses.is_dataclass(candidate):
                yield from _fields(candidate, f"{prefix}{f.name}.")  # type: ignore[arg-type]


def test_every_field_of_the_model_is_judged_by_its_effect() -> None:
    walked = list(_fields(model.Policy))
    assert {name for name, _, _ in walked} >= {
        "sandbox.ids.host_base",
        "signing.identities.subject_regex",  # inside list items too
        "audit.rules.severity",  # and inside mappings
        "sandbox.mounts.tmpfs.mode",
    }
    for name, f, _ in walked:
        assert f.metadata.get(model.LOOSENS) in model.KINDS, f"{name} has no kind of change"
        assert f.metadata[model.LOOSENS] != "review", name
    sections = [name for name, f, hint in walked if dataclasses.is_dataclass(hint)]
    for name in sections:
        assert dict((n, f) for n, f, _ in walked)[name].metadata[model.LOOSENS] in ("fields", "granted"), name


def test_every_kind_has_a_judge_and_review_is_none_of_them() -> None:
    assert set(diff.JUDGES) == model.KINDS
    assert "review" not in model.KINDS
    with pytest.raises(ValueError, match="not a kind of policy change"):
        model.spec("a field added later without a kind", "review")


def test_a_change_without_a_judge_loosens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delitem(diff.JUDGES, "more")
    tighter = policy(tmp_path, "version: 1\nextends: baseline\nsandbox: {limits: {pids: 10}}\n")
    changes = diff_policies(load_policy("baseline").policy, tighter)
    assert [(c.path, c.effect) for c in changes] == [(("sandbox", "limits", "pids"), "loosens")]


def test_anything_not_known_to_tighten_loosens_a_strict_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert loosens(Change(("x",), 1, 2, "changes")) and not loosens(Change(("x",), 1, 2, "tightens"))
    monkeypatch.setitem(diff.JUDGES, "more", lambda before, after, at: [at.change(before, after, "changes")])
    assert strict_problems(tmp_path, "sandbox:\n  limits: {pids: 100}\n") == [
        "4:12: extends strict but loosens it: sandbox.limits.pids: 256 -> 100"
    ]


# ----- id mapping ----------------------------------------------------------------------------


def test_host_base_defaults_to_the_reserved_range_and_no_builtin_sets_it() -> None:
    assert model.IdMapping().host_base is None and model.IdMapping().size == 65536
    for name in BUILTINS:
        assert "host_base" not in (BUILTIN_DIR / f"{name}.yaml").read_text()
        assert load_policy(name).policy.sandbox.ids.host_base is None


def test_host_base_zero_under_strict_is_refused_at_its_line(tmp_path: Path) -> None:
    problems = strict_problems(tmp_path, "sandbox:\n  ids:\n    host_base: 0\n")
    assert problems == ["5:5: extends strict but loosens it: sandbox.ids.host_base: null -> 0"]


@pytest.mark.parametrize(
    ("old", "new", "effect"),
    [
        ("{}", "{host_base: 100000}", "loosens"),  # a hand-picked range may overlap a user's
        ("{host_base: 100000}", "{host_base: 200000}", "loosens"),
        ("{host_base: 100000}", "{host_base: null}", "tightens"),  # back to the reserved range
        ("{}", "{size: 70000}", "loosens"),
        ("{}", "{size: 1000}", "tightens"),
        ("{subordinate_ids: false}", "{subordinate_ids: true}", "loosens"),
        ("{}", "{subordinate_ids: false}", "tightens"),  # the invoker's own uid alone
        ("{}", "{user: '0'}", "loosens"),
        ("{user: '1000'}", "{user: app}", "loosens"),  # a name may be root in the image
    ],
)
def test_id_mapping_changes_are_judged_by_the_host_ids_they_reach(
    tmp_path: Path, old: str, new: str, effect: str
) -> None:
    before = policy(tmp_path, f"version: 1\nsandbox: {{ids: {old}}}\n", "old.yaml")
    after = policy(tmp_path, f"version: 1\nsandbox: {{ids: {new}}}\n", "new.yaml")
    assert list(effects(before, after).values()) == [effect]


# ----- seccomp profiles ----------------------------------------------------------------------


def write_profile(folder: Path, name: str, document: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(document))
    return folder / name


def with_profile(folder: Path, profile: str, extra: str = "") -> model.Policy:
    """A policy that differs from STRICT_SECCOMP only in its seccomp settings."""
    return policy(folder, f"version: 1\nsandbox:\n  seccomp:\n    profile: {profile}\n{extra}", f"{profile}.yaml")


def test_an_allow_all_profile_under_strict_is_refused(tmp_path: Path) -> None:
    write_profile(tmp_path, "allow-all.json", {"defaultAction": "SCMP_ACT_ALLOW"})
    problems = strict_problems(tmp_path, "sandbox:\n  seccomp:\n    profile: allow-all.json\n")
    assert (
        "5:5: extends strict but loosens it: sandbox.seccomp.profile: strict -> allow-all.json: "
        + ("default action: errno -> allow")
        in problems
    )
    assert all(problem.startswith("5:5: ") for problem in problems)


def test_policy_diff_counts_an_allow_all_profile_as_loosening(tmp_path: Path) -> None:
    write_profile(tmp_path, "allow-all.json", {"defaultAction": "SCMP_ACT_ALLOW"})
    (tmp_path / "new.yaml").write_text("version: 1\nextends: baseline\nsandbox: {seccomp: {profile: allow-all.json}}\n")
    result = subprocess.run(
        [BIN / "pysandbox", "policy", "diff", "baseline", str(tmp_path / "new.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 1
    loosening = [line for line in result.stdout.splitlines() if line.endswith("loosens")]
    assert any("default action: errno -> allow" in line for line in loosening)
    assert result.stderr.strip() == f"{len(result.stdout.splitlines())} changes, {len(loosening)} loosen"


def test_a_profile_is_compared_by_what_it_allows_not_its_name(tmp_path: Path) -> None:
    copy = write_profile(tmp_path, "mine.json", load_profile("strict").to_json())
    strict = with_profile(tmp_path, "strict")
    assert effects(strict, with_profile(tmp_path, copy.name)) == {}
    document = load_profile("strict").to_json()
    document["syscalls"].append({"names": ["ptrace"], "action": "SCMP_ACT_ALLOW"})
    write_profile(tmp_path, "ptrace.json", document)
    assert effects(strict, with_profile(tmp_path, "ptrace.json")) == {
        "sandbox.seccomp.profile: strict -> ptrace.json: ptrace: errno -> allow": "loosens"
    }
    assert effects(with_profile(tmp_path, "ptrace.json"), strict) == {
        "sandbox.seccomp.profile: ptrace.json -> strict: ptrace: allow -> errno": "tightens"
    }


def test_an_argument_value_the_new_profile_admits_loosens(tmp_path: Path) -> None:
    document = load_profile("strict").to_json()
    document["syscalls"].append(
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
    )
    write_profile(tmp_path, "linux32.json", document)
    assert effects(with_profile(tmp_path, "strict"), with_profile(tmp_path, "linux32.json")) == {
        "sandbox.seccomp.profile: strict -> linux32.json: personality(arg0 == 0x8): errno -> allow": "loosens"
    }


def test_a_more_permissive_default_action_loosens() -> None:
    kill = parse_profile('{"defaultAction": "SCMP_ACT_KILL_PROCESS"}')
    errno = parse_profile('{"defaultAction": "SCMP_ACT_ERRNO"}')
    further, sooner = compare_profiles(kill, errno)
    assert [d.describe() for d in further] == ["default action: kill-process -> errno"] and sooner == []
    further, sooner = compare_profiles(errno, kill)
    assert further == [] and [d.describe() for d in sooner] == ["default action: errno -> kill-process"]


def test_a_rule_that_applies_only_with_a_capability_is_compared_with_the_capabilities_granted() -> None:
    base = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}
    gated = {
        **base,
        "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}],
    }
    old, new = parse_profile(json.dumps(base)), parse_profile(json.dumps(gated))
    assert compare_profiles(old, new, [frozenset()]) == ([], [])
    further, _ = compare_profiles(old, new, [frozenset(), frozenset({"CAP_SYS_ADMIN"})])
    assert [d.describe() for d in further] == ["mount: errno -> allow"]


def test_unconfined_and_an_unreadable_profile_loosen(tmp_path: Path) -> None:
    strict = with_profile(tmp_path, "strict")
    assert effects(strict, with_profile(tmp_path / "a", "unconfined")) == {
        "sandbox.seccomp.profile: strict -> unconfined": "loosens"
    }
    missing = effects(strict, with_profile(tmp_path / "b", "missing.json"))
    assert list(missing.values()) == ["loosens"]
    assert "cannot compare what they allow" in next(iter(missing))


def test_calls_the_policy_itself_denies_are_judged_by_its_deny_list(tmp_path: Path) -> None:
    """Switching strict's profile for Docker's default while denying what default adds is no loosening."""
    strict = with_profile(tmp_path, "strict")
    added = [text for text, effect in effects(strict, with_profile(tmp_path, "default")).items() if effect == "loosens"]
    calls = sorted({text.split(": ")[2].split("(")[0].split(" on ")[0] for text in added if "architecture" not in text})
    assert "ptrace" in calls
    denying = with_profile(tmp_path / "deny", "default", f"    deny: [{', '.join(calls)}]\n")
    loosened = [text for text, effect in effects(strict, denying).items() if effect == "loosens"]
    assert loosened and all("architecture" in text for text in loosened), loosened


def test_seccomp_allow_and_deny_lists_keep_their_direction(tmp_path: Path) -> None:
    old = policy(tmp_path, "version: 1\nsandbox: {seccomp: {deny: [ptrace]}}\n", "old.yaml")
    new = policy(tmp_path, "version: 1\nsandbox: {seccomp: {allow: [ptrace]}}\n", "new.yaml")
    assert effects(old, new) == {
        "sandbox.seccomp.deny: -ptrace": "loosens",
        "sandbox.seccomp.allow: +ptrace": "loosens",
    }


# ----- signing -------------------------------------------------------------------------------


def write_key(path: Path, pem: bytes | None = None) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = pem or generate_key_pair().public_pem
    path.write_bytes(pem)
    return pem


def test_keys_compare_by_content_not_path(tmp_path: Path) -> None:
    team = write_key(tmp_path / "old/team.pub")
    write_key(tmp_path / "new/keys/same-key.pub", team)
    old = policy(tmp_path / "old", "version: 1\nsigning: {keys: [team.pub]}\n")
    moved = policy(tmp_path / "new", "version: 1\nsigning: {keys: [keys/same-key.pub]}\n")
    assert effects(old, moved) == {}
    write_key(tmp_path / "other/team.pub")  # another key at the same relative path
    replaced = policy(tmp_path / "other", "version: 1\nsigning: {keys: [team.pub]}\n")
    assert sorted(effects(old, replaced).values()) == ["loosens", "tightens"]
    assert [c.item.startswith("+") for c in diff_policies(old, replaced) if c.effect == "loosens"] == [True]


def test_an_added_or_unreadable_key_loosens_and_lint_points_at_its_line(tmp_path: Path) -> None:
    write_key(tmp_path / "team.pub")
    old = policy(tmp_path, "version: 1\nsigning: {keys: [team.pub]}\n", "old.yaml")
    new = policy(tmp_path, "version: 1\nsigning:\n  keys:\n    - team.pub\n    - absent.pub\n", "new.yaml")
    assert [(c.item.split(" (")[0], c.effect, c.location) for c in diff_policies(old, new)] == [
        (f"+{tmp_path / 'absent.pub'}", "loosens", ("signing", "keys[1]"))
    ]
    assert load_policy(str(tmp_path / "new.yaml")).locations[("signing", "keys[1]")][1:] == (5, 7)


IDENTITY = "issuer: https://token.actions.githubusercontent.com"


@pytest.mark.parametrize(
    ("old", "new", "effect"),
    [
        ("subject_regex: '^https://github\\.com/acme/'", "subject_regex: '^https://github\\.com/'", "loosens"),
        ("subject_regex: '^https://github\\.com/acme/'", "subject_regex: '^https://github\\.com/acme/app/'", "loosens"),
        ("subject_regex: '^https://github\\.com/acme/.*'", "subject: https://github.com/acme/app", "tightens"),
        ("subject_regex: '^https://github\\.com/acme/.*'", "subject: https://github.com/evil/app", "loosens"),
        ("subject: a@acme.test", "subject: b@acme.test", "loosens"),
        ("subject: a@acme.test\n      repository: acme/app", "subject: a@acme.test", "loosens"),
        ("subject: a@acme.test", "subject: a@acme.test\n      repository: acme/app", "tightens"),
        (
            "subject: a@acme.test\n      workflow_ref: refs/tags/v1",
            "subject: a@acme.test\n      workflow_ref: refs/heads/x",
            "loosens",
        ),
    ],
)
def test_an_identity_change_is_judged_field_by_field(tmp_path: Path, old: str, new: str, effect: str) -> None:
    before = policy(tmp_path, f"version: 1\nsigning:\n  identities:\n    - {IDENTITY}\n      {old}\n", "old.yaml")
    after = policy(tmp_path, f"version: 1\nsigning:\n  identities:\n    - {IDENTITY}\n      {new}\n", "new.yaml")
    added = [c.effect for c in diff_policies(before, after) if c.item.startswith("+")]
    assert added == [effect]


def test_an_added_identity_or_issuer_change_loosens(tmp_path: Path) -> None:
    one = f"    - {IDENTITY}\n      subject: a@acme.test\n"
    before = policy(tmp_path, f"version: 1\nsigning:\n  identities:\n{one}", "old.yaml")
    two = one + "    - issuer: https://accounts.acme.test\n      subject: a@acme.test\n"
    after = policy(tmp_path, f"version: 1\nsigning:\n  identities:\n{two}", "new.yaml")
    assert list(effects(before, after).values()) == ["loosens"]
    moved = one.replace("token.actions.githubusercontent.com", "accounts.acme.test")
    issuer = policy(tmp_path, f"version: 1\nsigning:\n  identities:\n{moved}", "issuer.yaml")
    assert sorted(effects(before, issuer).values()) == ["loosens", "tightens"]


def test_a_trusted_root_compares_by_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a/root.json").write_text('{"mediaType": "one"}')
    (tmp_path / "b/other.json").write_text('{"mediaType": "one"}')
    old = policy(tmp_path / "a", "version: 1\nsigning: {trusted_root: root.json}\n")
    assert effects(old, policy(tmp_path / "b", "version: 1\nsigning: {trusted_root: other.json}\n")) == {}
    (tmp_path / "b/other.json").write_text('{"mediaType": "two"}')
    changed = policy(tmp_path / "b", "version: 1\nsigning: {trusted_root: other.json}\n")
    assert list(effects(old, changed).values()) == ["loosens"]
    assert list(effects(old, load_policy("strict").policy).values()).count("loosens") == 1  # to the public root


def test_strict_leaves_whom_to_trust_to_the_policy_extending_it(tmp_path: Path) -> None:
    write_key(tmp_path / "team.pub")
    (tmp_path / "root.json").write_text("{}")
    path = tmp_path / "team.yaml"
    path.write_text(
        f"version: 1\nextends: strict\nsigning:\n  keys: [team.pub]\n  trusted_root: root.json\n"
        f"  identities:\n    - {IDENTITY}\n      subject: a@acme.test\n"
    )
    loaded = load_policy(str(path)).policy
    assert len(loaded.signing.keys) == 1 and loaded.signing.trusted_root is not None
    assert "loosens" in effects(load_policy("strict").policy, loaded).values()  # still shown to reviewers
    assert strict_problems(tmp_path, "signing: {required: false}\n") == [
        "3:11: extends strict but loosens it: signing.required: true -> false"
    ]


# ----- the rest of the model -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "effect"),
    [
        ("audit: {rules: {root-user: {severity: critical}}}", "audit: {rules: {root-user: {severity: info}}}", "loosens"),
        ("audit: {rules: {root-user: {severity: info}}}", "audit: {rules: {root-user: {severity: high}}}", "tightens"),
        ("", "audit: {rules: {root-user: {severity: low}}}", "loosens"),  # may be below the rule's own
        ("", "audit: {rules: {root-user: {severity: critical}}}", "tightens"),
        ("audit: {allowed_registries: [ghcr.io]}", "audit: {allowed_registries: []}", "loosens"),  # empty: any
        ("", "audit: {allowed_registries: [ghcr.io]}", "tightens"),
        ("audit: {allowed_registries: [ghcr.io]}", "audit: {allowed_registries: [ghcr.io, docker.io]}", "loosens"),
        ("audit: {ignore: [{rule: root-user, reason: a, expires: 2027-01-01}]}",
         "audit: {ignore: [{rule: root-user, reason: a, expires: 2028-01-01}]}", "loosens"),
        ("audit: {ignore: [{rule: root-user, reason: a}]}",
         "audit: {ignore: [{rule: root-user, reason: a, target: legacy/*}]}", "tightens"),
        ("sandbox: {mounts: {read_only_rootfs: true}}",
         "sandbox: {mounts: {read_only_rootfs: true, tmpfs: [{path: /run, size: 1Mi}]}}", "loosens"),
        ("sandbox: {mounts: {read_only_rootfs: true, tmpfs: [{path: /tmp, size: 8Mi}]}}",
         "sandbox: {mounts: {read_only_rootfs: true, tmpfs: [{path: /tmp, size: 4Mi}]}}", "tightens"),
        ("sandbox: {mounts: {binds: [{source: /srv}]}}", "sandbox: {mounts: {binds: [{source: /srv, read_only: false}]}}",
         "loosens"),
    ],
)  # fmt: skip
def test_list_items_and_rule_settings_are_judged_by_effect(tmp_path: Path, old: str, new: str, effect: str) -> None:
    before = policy(tmp_path, f"version: 1\n{old}\n", "old.yaml")
    after = policy(tmp_path, f"version: 1\n{new}\n", "new.yaml")
    assert any(map(loosens, diff_policies(before, after))) == (effect == "loosens")


def test_lint_reports_every_loosening_of_strict_at_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "child.yaml"
    path.write_text(
        "version: 1\nextends: strict\nsandbox:\n  ids:\n    host_base: 1000\n    size: 100000\n"
        "  mounts:\n    tmpfs:\n      - {path: /tmp, size: 64Mi}\n      - {path: /run, size: 1Mi}\n"
    )
    result = subprocess.run([BIN / "pysandbox", "policy", "lint", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert [line.split(": extends")[0] for line in result.stdout.splitlines()] == [
        f"{path}:5:5",
        f"{path}:6:5",
        f"{path}:10:9",
    ]
    assert result.stderr.strip() == "1 policy checked, 3 problems"


# ----- what a container may write, in all ----------------------------------------------------


def test_a_tmpfs_within_a_capped_writable_roots_budget_tightens_and_beyond_it_loosens(tmp_path: Path) -> None:
    baseline = load_policy("baseline").policy
    assert baseline.sandbox.limits.writable_size == 1 << 30  # the writable layer is bounded by default
    assert not any(effect == "loosens" for effect in effects(baseline, load_policy("strict").policy).values())
    tmpfs = "version: 1\nextends: baseline\nsandbox:\n  mounts:\n    tmpfs: [{path: /tmp, size: %s}]\n"
    added = "sandbox.mounts.tmpfs: +{path: /tmp, size: %s, mode: 1777}"
    within = policy(tmp_path / "within", tmpfs % "64Mi" + "  limits: {writable_size: 512Mi}\n")
    assert effects(baseline, within) == {
        added % "64Mi": "tightens",  # 64Mi + 512Mi in all, less than the 1Gi before
        "sandbox.limits.writable_size: 1Gi -> 512Mi": "tightens",
    }
    beyond = policy(tmp_path / "beyond", tmpfs % "64Mi")
    assert effects(baseline, beyond) == {added % "64Mi": "loosens"}  # 1Gi + 64Mi
    unbounded = policy(tmp_path / "none", "version: 1\nextends: baseline\nsandbox:\n  limits: {writable_size: null}\n")
    assert effects(baseline, unbounded) == {"sandbox.limits.writable_size: 1Gi -> null": "loosens"}


@pytest.mark.parametrize(
    ("old", "new", "effect"),
    [
        ("exec: false", "exec: true", "loosens"),
        ("exec: true", "exec: false", "tightens"),
        ("exec_user: false", "exec_user: true", "loosens"),
        ("exec_user: true", "exec_user: false", "tightens"),
        ("health: false", "health: true", "loosens"),
        ("detach: false", "detach: true", "loosens"),
        ("restart: ['no', on-failure]", "restart: ['no', on-failure, always]", "loosens"),
        ("restart: ['no', on-failure]", "restart: ['no']", "tightens"),
        ("log_max_size: 10Mi", "log_max_size: 1Gi", "loosens"),
        ("log_max_file: 2", "log_max_file: 1", "tightens"),
    ],
)
def test_the_lifecycle_section_is_judged_by_what_it_lets_containers_do(
    tmp_path: Path, old: str, new: str, effect: str
) -> None:
    before = policy(tmp_path, f"version: 1\nsandbox:\n  lifecycle:\n    {old}\n", "old.yaml")
    after = policy(tmp_path, f"version: 1\nsandbox:\n  lifecycle:\n    {new}\n", "new.yaml")
    assert set(effects(before, after).values()) == {effect}


# ----- network modes and published ports -----------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("network_modes: [none, loopback]", "network_modes: [none, loopback, pasta]",
         {"sandbox.network_modes: +pasta": "loosens"}),
        ("network_modes: [none, loopback, pasta]", "network_modes: [none, loopback]",
         {"sandbox.network_modes: -pasta": "tightens"}),
        ("network: loopback", "network: pasta", {"sandbox.network: loopback -> pasta": "loosens"}),
        # one level, but each engine exposes what the other does not
        ("network: pasta", "network: slirp4netns", {"sandbox.network: pasta -> slirp4netns": "loosens"}),
        ("network: slirp4netns", "network: pasta", {"sandbox.network: slirp4netns -> pasta": "loosens"}),
        ("network: pasta", "network: loopback", {"sandbox.network: pasta -> loopback": "tightens"}),
        ("network: none", "network: slirp4netns", {"sandbox.network: none -> slirp4netns": "loosens"}),
        ("network: host\n  namespaces: [user, pid, mount]", "network: pasta\n  namespaces: [user, pid, mount, network]",
         {"sandbox.network: host -> pasta": "tightens", "sandbox.namespaces: +network": "tightens"}),
        ("publish: {addresses: [127.0.0.1]}", "publish: {addresses: [127.0.0.1, 0.0.0.0]}",
         {"sandbox.publish.addresses: +0.0.0.0": "loosens"}),
        ("publish: {addresses: [127.0.0.1, 0.0.0.0]}", "publish: {addresses: [127.0.0.1]}",
         {"sandbox.publish.addresses: -0.0.0.0": "tightens"}),
        # every IPv4 address covers each one, and :: every IPv6 one, but neither the other family
        ("publish: {addresses: [0.0.0.0]}", "publish: {addresses: [0.0.0.0, 10.0.0.1]}",
         {"sandbox.publish.addresses: +10.0.0.1": "tightens"}),
        ("publish: {addresses: [0.0.0.0]}", "publish: {addresses: [10.0.0.1]}",
         {"sandbox.publish.addresses: +10.0.0.1": "tightens", "sandbox.publish.addresses: -0.0.0.0": "tightens"}),
        ("publish: {addresses: ['::']}", "publish: {addresses: ['::', 'fd00::1']}",
         {"sandbox.publish.addresses: +fd00::1": "tightens"}),
        ("publish: {addresses: ['::']}", "publish: {addresses: ['::', 10.0.0.1]}",
         {"sandbox.publish.addresses: +10.0.0.1": "loosens"}),
        ("publish: {addresses: [0.0.0.0]}", "publish: {addresses: [0.0.0.0, '::1']}",
         {"sandbox.publish.addresses: +::1": "loosens"}),
        ("publish: {addresses: [10.0.0.1]}", "publish: {addresses: [10.0.0.2]}",
         {"sandbox.publish.addresses: +10.0.0.2": "loosens", "sandbox.publish.addresses: -10.0.0.1": "tightens"}),
        ("publish: {addresses: ['::1']}", "publish: {addresses: ['0:0::1']}", {}),  # one address, two spellings
        ("publish: {lowest_port: 1024}", "publish: {lowest_port: 80}", {"sandbox.publish.lowest_port: 1024 -> 80": "loosens"}),
        ("publish: {lowest_port: 80}", "publish: {lowest_port: 1024}", {"sandbox.publish.lowest_port: 80 -> 1024": "tightens"}),
    ],
)  # fmt: skip
def test_network_and_publish_changes_are_judged_by_what_they_let_a_run_reach(
    tmp_path: Path, old: str, new: str, expected: dict[str, str]
) -> None:
    before = policy(tmp_path, f"version: 1\nsandbox:\n  {old}\n", "old.yaml")
    after = policy(tmp_path, f"version: 1\nsandbox:\n  {new}\n", "new.yaml")
    assert effects(before, after) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sandbox:\n  network_modes: [none, loopback, pasta]\n",
         "4:35: extends strict but loosens it: sandbox.network_modes: +pasta"),
        ("sandbox:\n  network: slirp4netns\n", "4:3: extends strict but loosens it: sandbox.network: none -> slirp4netns"),
        ("sandbox:\n  publish:\n    addresses: [127.0.0.1]\n",
         "5:17: extends strict but loosens it: sandbox.publish.addresses: +127.0.0.1"),
        ("sandbox:\n  publish: {lowest_port: 443}\n",
         "4:13: extends strict but loosens it: sandbox.publish.lowest_port: 1024 -> 443"),
    ],
)  # fmt: skip
def test_strict_refuses_outbound_networks_and_published_ports_at_their_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert strict_problems(tmp_path, text) == [expected]


def test_a_policy_extending_strict_may_narrow_its_network_further(tmp_path: Path) -> None:
    path = tmp_path / "narrow.yaml"
    path.write_text("version: 1\nextends: strict\nsandbox:\n  network_modes: [none]\n  publish: {lowest_port: 8000}\n")
    sandbox = load_policy(str(path)).policy.sandbox
    assert (sandbox.network_modes, sandbox.publish) == (("none",), model.Publish(addresses=(), lowest_port=8000))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("network: loopback", "egress: ['10.0.0.0/8:443']", "tightens"),  # null (anything) -> a list
        ("egress: ['10.0.0.0/8:443']", "network: loopback", "loosens"),  # the list removed: anything
        ("egress: ['10.0.0.0/8:443']", "egress: ['10.0.0.0/8:443', '192.0.2.1']", "loosens"),
        (
            "egress: ['10.0.0.0/8:443', '192.0.2.1']",
            "egress: ['10.0.0.0/8:443']",
            "loosens",
        ),  # a constraint: any change
    ],
)
def test_an_egress_allow_list_is_judged_as_a_constraint(tmp_path: Path, old: str, new: str, expected: str) -> None:
    """null lets a container reach anything; setting a list tightens; any other change is
    marked loosening (when in doubt, a change loosens)."""
    before = policy(tmp_path, f"version: 1\nsandbox:\n  {old}\n", "old.yaml")
    after = policy(tmp_path, f"version: 1\nsandbox:\n  {new}\n", "new.yaml")
    assert set(effects(before, after).values()) == {expected}


def test_egress_rules_are_normalised_and_a_bad_one_is_refused_at_its_line(tmp_path: Path) -> None:
    loaded = policy(
        tmp_path,
        "version: 1\nsandbox:\n  egress: ['10.1.2.3', '10.0.0.0/8:80-90', '[fd00::/8]:53', '192.0.2.0/24:1-65535']\n",
    )
    assert loaded.sandbox.egress == ("10.1.2.3/32", "10.0.0.0/8:80-90", "[fd00::/8]:53", "192.0.2.0/24")
    for bad in ("example.com:443", "10.0.0.1/8", "10.0.0.0/8:0", "10.0.0.0/8:90-80", "fd00::/8:53"):
        with pytest.raises(
            PolicyError, match=r"policy.yaml:3:12: sandbox.egress\[0\]: .* is not CIDR\[:PORT\[-PORT\]\]"
        ):
            policy(tmp_path, f"version: 1\nsandbox:\n  egress: ['{bad}']\n")


def test_an_egress_allow_list_with_net_admin_granted_is_a_contradiction(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"policy.yaml:3:3: egress: an allow-list cannot hold while .* NET_ADMIN"):
        policy(tmp_path, "version: 1\nsandbox:\n  egress: ['10.0.0.0/8']\n  capabilities: {add: [NET_ADMIN]}\n")

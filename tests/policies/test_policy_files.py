"""Policy files: the built-ins, located one-sentence errors for malformed files, extends and
its merge rules, the diff's verdicts, and the generated JSON Schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pysbx.policies import model
from pysbx.policies.diff import diff_policies
from pysbx.policies.errors import PolicyError
from pysbx.policies.loader import BUILTINS, load_policy
from pysbx.policies.schema import SCHEMA_PATH, policy_schema, schema_text

BIN = Path(sys.executable).parent


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_load_and_lint_clean(name: str) -> None:
    loaded = load_policy(name)
    assert loaded.policy.version == 1
    result = subprocess.run([BIN / "pysandbox", "policy", "lint", name], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_strict_says_what_the_issue_asks() -> None:
    strict = load_policy("strict").policy
    sandbox = strict.sandbox
    assert strict.signing.required
    assert set(sandbox.namespaces) == {"user", "pid", "mount", "uts", "ipc", "network", "cgroup"}
    assert sandbox.network == "none" and not sandbox.privileged and not sandbox.host_pid
    assert model.granted_capabilities(sandbox.capabilities) == frozenset()
    assert sandbox.no_new_privileges and sandbox.mounts.read_only_rootfs
    assert [t.path for t in sandbox.mounts.tmpfs] == ["/tmp"] and sandbox.mounts.binds == ()
    assert sandbox.seccomp.profile == "strict" and "/proc/kcore" in sandbox.mounts.masked_paths
    assert sandbox.limits.memory == 512 * 2**20 and sandbox.limits.pids and sandbox.limits.open_files
    assert strict.audit.fail_on == "medium" and not sandbox.ids.map_root_to_host_root


def test_baseline_grants_dockers_default_capabilities_and_permissive_allows_unsigned() -> None:
    baseline = load_policy("baseline").policy
    assert model.granted_capabilities(baseline.sandbox.capabilities) == model.DOCKER_DEFAULT_CAPABILITIES
    assert baseline.signing.required and baseline.sandbox.seccomp.profile == "default"
    assert baseline.sandbox.network == "loopback"
    permissive = load_policy("permissive").policy
    assert not permissive.signing.required and permissive.sandbox.seccomp.profile == "default"


def test_the_builtins_say_which_networks_a_run_may_choose_and_where_it_may_publish() -> None:
    strict, baseline, permissive = (load_policy(name).policy.sandbox for name in BUILTINS)
    assert (strict.network, strict.network_modes, strict.networks) == ("none", ("none", "loopback"), ())
    assert strict.publish == model.Publish(addresses=(), lowest_port=1024)  # nothing is published
    for sandbox in (baseline, permissive):
        assert (sandbox.network, sandbox.network_modes) == (
            "loopback",
            ("none", "loopback", "pasta", "slirp4netns", "bridge"),
        )
        assert sandbox.networks == ("*",)  # any network the user makes
        assert sandbox.publish.addresses[0] == "127.0.0.1" and sandbox.publish.lowest_port == 1024
    assert permissive.publish.addresses == ("127.0.0.1", "::1")  # the host's loopback, either family
    assert model.SandboxPolicy().network_modes == ("none", "loopback")
    assert (model.Publish().addresses, model.Publish().lowest_port) == (("127.0.0.1",), 1024)


def test_an_address_is_kept_as_ipaddress_writes_it(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nsandbox:\n  publish:\n    addresses: ['0:0::1', '::', 1:2:3:4:5:6:7:8]\n")
    assert load_policy(str(path)).policy.sandbox.publish.addresses == ("::1", "::", "1:2:3:4:5:6:7:8")


MALFORMED = [
    ("sandbox: {}", "1:1: 'version: 1' is required"),
    ("version: 2", "1:10: version: '2' is not one of 1"),
    ("version: 1\nsandbx: {}", "2:1: sandbx: unknown key (did you mean 'sandbox'?)"),
    ("version: 1\nsandbox:\n  netwrok: none", "3:3: sandbox.netwrok: unknown key (did you mean 'network'?)"),
    (
        "version: 1\nsandbox:\n  network: hots",
        "3:12: sandbox.network: 'hots' is not one of none, loopback, pasta, slirp4netns, bridge, host (did you mean 'host'?)",
    ),
    (
        "version: 1\nsandbox:\n  network_modes: [loopback, slirp]",
        "3:29: sandbox.network_modes[1]: 'slirp' is not one of none, loopback, pasta, slirp4netns, bridge, host",
    ),
    (
        "version: 1\nsandbox:\n  network: pasta\n  namespaces: [user, pid, mount]",
        "3:3: network: pasta needs a network namespace of its own; add network to sandbox.namespaces",
    ),
    (
        "version: 1\nsandbox:\n  publish:\n    addresses: [127.0.0.1, localhost]",
        "4:28: sandbox.publish.addresses[1]: 'localhost' is not an IP address such as 127.0.0.1 or '::1'",
    ),
    (
        "version: 1\nsandbox:\n  publish:\n    addresses: [300.1.1.1]",
        "4:17: sandbox.publish.addresses[0]: '300.1.1.1' is not an IP address",
    ),
    (
        "version: 1\nsandbox:\n  publish:\n    addresses: [10.0.0.0/8]",
        "4:17: sandbox.publish.addresses[0]: '10.0.0.0/8' is not an IP address",
    ),
    (
        "version: 1\nsandbox:\n  publish:\n    addresses:\n      - ::",  # YAML reads an unquoted :: as a mapping
        "5:9: sandbox.publish.addresses[0]: expected an IP address (quote an IPv6 one: '::'), got a mapping",
    ),
    (
        "version: 1\nsandbox:\n  publish:\n    lowest_port: 0",
        "4:18: sandbox.publish.lowest_port: expected a port from 1 to 65535, got '0'",
    ),
    (
        "version: 1\nsandbox:\n  publish: {lowest_port: 70000}",
        "3:26: sandbox.publish.lowest_port: expected a port from 1 to 65535, got '70000'",
    ),
    (
        "version: 1\nsandbox:\n  privileged: yes please",
        "3:15: sandbox.privileged: expected true or false, got 'yes please'",
    ),
    (
        "version: 1\nsandbox:\n  privileged: [true]",
        "3:15: sandbox.privileged: expected true or false, got a list",
    ),
    (
        "version: 1\nsandbox:\n  limits:\n    memory: 12 bananas",
        "4:13: sandbox.limits.memory: expected a size such as 512Mi",
    ),
    ("version: 1\nsandbox:\n  limits:\n    memory: -5", "4:13: sandbox.limits.memory: expected a size"),
    (
        "version: 1\nsandbox:\n  limits:\n    wall_time: 3 days",
        "4:16: sandbox.limits.wall_time: expected a duration such as 500ms",
    ),
    (
        "version: 1\nsandbox:\n  limits:\n    pids: lots",
        "4:11: sandbox.limits.pids: expected a whole number, got 'lots'",
    ),
    (
        "version: 1\nsandbox:\n  limits:\n    required: [memory]",
        "4:5: limits.required names memory, but sandbox.limits.memory is not set",
    ),
    (
        "version: 1\nsandbox:\n  capabilities:\n    add: [SYS_ADMN]",
        "4:11: sandbox.capabilities.add[0]: 'SYS_ADMN' is not a Linux capability (did you mean 'SYS_ADMIN'?)",
    ),
    (
        "version: 1\nsandbox:\n  capabilities:\n    drop: CAP_CHOWN",
        "4:11: sandbox.capabilities.drop: expected a list, got a value",
    ),
    (
        "version: 1\nsandbox:\n  seccomp:\n    deny: [frobnicate]",
        "4:12: sandbox.seccomp.deny[0]: 'frobnicate' is not a system call that libseccomp knows",
    ),
    (
        "version: 1\nsandbox:\n  network: host",
        "3:3: network: host needs the host's network namespace, but sandbox.namespaces lists network",
    ),
    (
        "version: 1\nsandbox:\n  namespaces: [user, pid]",
        "2:1: network: loopback needs a network namespace of its own",
    ),
    (
        "version: 1\nsandbox:\n  host_pid: true",
        "3:3: host_pid: true contradicts sandbox.namespaces, which lists pid",
    ),
    (
        "version: 1\nsandbox:\n  namespaces: [user, pid, mount, time, network]",
        "3:34: sandbox.namespaces[3]: 'time' is not one of",
    ),
    (
        "version: 1\nextends: strict\nsandbox:\n  privileged: true",
        "4:3: extends strict but loosens it: sandbox.privileged: false -> true",
    ),
    (
        "version: 1\nextends: strict\nsandbox:\n  capabilities:\n    add: [NET_ADMIN]",
        "4:3: extends strict but loosens it: sandbox.capabilities: +CAP_NET_ADMIN",
    ),
    ("version: 1\nextends: strikt", "2:1: extends 'strikt': no such built-in policy or file"),
    (
        "version: 1\nsigning:\n  identities:\n    - subject: a@b.c",
        "4:7: signing.identities[0]: issuer is required",
    ),
    (
        "version: 1\nsigning:\n  identities:\n    - issuer: https://x\n      subject: a\n      subject_regex: b",
        "4:7: signing.identities[0]: give exactly one of subject and subject_regex",
    ),
    (
        "version: 1\nsigning:\n  identities:\n    - issuer: https://x\n      subject_regex: '(unclosed'",
        "4:7: signing.identities[0]: subject_regex is not a valid regular expression",
    ),
    (
        "version: 1\naudit:\n  fail_on: severe",
        "3:12: audit.fail_on: 'severe' is not one of critical, high, medium, low, info",
    ),
    ("version: 1\naudit:\n  ignore:\n    - rule: root-user", "4:7: audit.ignore[0]: reason is required"),
    (
        "version: 1\naudit:\n  ignore:\n    - rule: root-user\n      reason: ' '",
        "4:7: audit.ignore[0]: reason must say why the finding is ignored",
    ),
    (
        "version: 1\naudit:\n  ignore:\n    - rule: root-user\n      reason: legacy\n      expires: next year",
        "6:16: audit.ignore[0].expires: expected a date such as 2027-01-31",
    ),
    (
        "version: 1\naudit:\n  rules:\n    root-user: {enabled: maybe}",
        "4:26: audit.rules.root-user.enabled: expected true or false, got 'maybe'",
    ),
    (
        "version: 1\nsandbox:\n  mounts:\n    tmpfs:\n      - path: /tmp\n        mode: rwx",
        "5:9: sandbox.mounts.tmpfs[0]: mode 'rwx' is not an octal mode",
    ),
    ("version: 1\nversion: 1", "2:1: version: set twice in the same mapping"),
    ("version: 1\nsandbox: [a, b]", "2:10: sandbox: expected a mapping of settings"),
    ("version: 1\nsandbox:\n  network: none\n   bad: indent", "4:7: not valid YAML"),
    ("", "1:1: the policy is empty"),
]


@pytest.mark.parametrize(("text", "expected"), MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_a_malformed_policy_gives_a_located_one_sentence_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text + "\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    messages = [str(problem) for problem in caught.value.problems]
    assert any(message.startswith(f"{path}:{expected}") for message in messages), messages
    assert all("\n" not in message for message in messages)


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        sandbox:
          network: hots
          limits: {memory: lots, pids: many}
        audit: {fail_on: severe}
        """,
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert [(p.line, p.column) for p in caught.value.problems] == [(3, 12), (4, 20), (4, 32), (5, 18)]


def test_lint_formats_for_people_scripts_and_pull_requests(tmp_path: Path) -> None:
    bad = write(tmp_path, "version: 1\nsandbox:\n  network: hots\n")
    text = subprocess.run([BIN / "pysandbox", "policy", "lint", str(bad)], capture_output=True, text=True)
    assert text.returncode == 2 and text.stdout.startswith(f"{bad}:3:12: sandbox.network")
    as_json = subprocess.run(
        [BIN / "pysandbox", "policy", "lint", "--format", "json", str(bad)], capture_output=True, text=True
    )
    assert json.loads(as_json.stdout)["problems"][0] | {"message": ""} == {
        "file": str(bad),
        "line": 3,
        "column": 12,
        "message": "",
    }
    github = subprocess.run(
        [BIN / "pysandbox", "policy", "lint", "--format", "github", str(bad)], capture_output=True, text=True
    )
    assert github.stdout.startswith(f"::error file={bad},line=3,col=12,")


def test_extends_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    write(
        tmp_path,
        "version: 1\nextends: baseline\nsandbox:\n  limits: {memory: 1Gi}\naudit:\n  rules:\n    root-user: {severity: low}\n",
        "team.yaml",
    )
    path = write(
        tmp_path,
        """
        version: 1
        extends: team.yaml
        sandbox:
          limits: {pids: 100}
          mounts:
            masked_paths: [/proc/kcore]
        audit:
          rules:
            root-user: {enabled: false}
        """,
    )
    loaded = load_policy(str(path))
    limits = loaded.policy.sandbox.limits
    assert (limits.memory, limits.pids) == (2**30, 100)  # both parents' and child's keys survive
    assert loaded.policy.sandbox.mounts.masked_paths == ("/proc/kcore",)  # a list replaces
    assert loaded.policy.sandbox.mounts.readonly_paths == load_policy("baseline").policy.sandbox.mounts.readonly_paths
    assert loaded.policy.audit.rules["root-user"] == model.RuleSettings(enabled=False, severity="low")
    assert [Path(p).name for p in loaded.chain] == ["policy.yaml", "team.yaml", "baseline.yaml"]


def test_an_extends_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\nextends: b.yaml\n", "a.yaml")
    write(tmp_path, "version: 1\nextends: a.yaml\n", "b.yaml")
    with pytest.raises(PolicyError, match="extends itself in a cycle"):
        load_policy(str(tmp_path / "a.yaml"))


def test_paths_are_relative_to_the_policy_that_names_them(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    path = write(tmp_path / "keys", "version: 1\nsigning:\n  keys: [cosign.pub]\n  trusted_root: ../root.json\n")
    signing = load_policy(str(path)).policy.signing
    assert signing.keys == (str(tmp_path / "keys/cosign.pub"),)
    assert signing.trusted_root == str(tmp_path / "root.json")


def test_a_policy_that_only_tightens_strict_is_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        extends: strict
        signing:
          identities:
            - issuer: https://token.actions.githubusercontent.com
              subject_regex: ^https://github\\.com/acme/
        sandbox:
          limits: {memory: 128Mi, pids: 64}
          seccomp: {deny: [socket]}
        audit: {fail_on: low}
        """,
    )
    policy = load_policy(str(path)).policy
    assert policy.sandbox.limits.memory == 128 * 2**20 and policy.sandbox.seccomp.deny == ("socket",)


def test_diff_marks_each_change_loosening_or_tightening(tmp_path: Path) -> None:
    new = write(
        tmp_path,
        """
        version: 1
        extends: baseline
        sandbox:
          capabilities: {add: [NET_ADMIN], drop: [MKNOD]}
          network: none
          limits: {pids: 8192, memory: 1Gi}
        audit: {fail_on: critical}
        """,
    )
    changes = {
        change.describe(): change.effect
        for change in diff_policies(load_policy("baseline").policy, load_policy(str(new)).policy)
    }
    assert changes == {
        "sandbox.capabilities: +CAP_NET_ADMIN": "loosens",
        "sandbox.capabilities: -CAP_MKNOD": "tightens",
        "sandbox.network: loopback -> none": "tightens",
        "sandbox.limits.pids: 4096 -> 8192": "loosens",
        "sandbox.limits.memory: null -> 1Gi": "tightens",
        "audit.fail_on: high -> critical": "loosens",
    }
    result = subprocess.run([BIN / "pysandbox", "policy", "diff", "baseline", str(new)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "sandbox.capabilities: +CAP_NET_ADMIN  loosens" in result.stdout.replace("   ", " ").replace(
        "  ", " "
    ).replace(" loosens", "  loosens")
    tighter = subprocess.run(
        [BIN / "pysandbox", "policy", "diff", "baseline", "strict"], capture_output=True, text=True
    )
    assert tighter.returncode == 0 and "loosens" not in tighter.stdout


def test_show_prints_the_resolved_policy_as_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nextends: strict\nsandbox:\n  limits: {memory: 256Mi}\n")
    shown = subprocess.run([BIN / "pysandbox", "policy", "show", str(path)], capture_output=True, text=True)
    document = yaml.safe_load(shown.stdout)
    assert document["sandbox"]["limits"]["memory"] == "256Mi" and document["sandbox"]["network"] == "none"
    effective = subprocess.run(
        [BIN / "pysandbox", "policy", "show", "--effective", str(path)], capture_output=True, text=True
    )
    assert yaml.safe_load(effective.stdout)["sandbox"]["ids"]["user"] is None  # defaults appear only with --effective
    assert "user" not in document["sandbox"]["ids"]


def test_show_prints_the_network_modes_and_the_publish_section() -> None:
    shown = subprocess.run([BIN / "pysandbox", "policy", "show", "baseline"], capture_output=True, text=True)
    sandbox = yaml.safe_load(shown.stdout)["sandbox"]
    assert sandbox["network_modes"] == ["none", "loopback", "pasta", "slirp4netns", "bridge"]
    assert sandbox["networks"] == ["*"]
    assert sandbox["publish"] == {"addresses": ["127.0.0.1"], "lowest_port": 1024}
    effective = subprocess.run(
        [BIN / "pysandbox", "policy", "show", "--effective", "strict"], capture_output=True, text=True
    )
    assert yaml.safe_load(effective.stdout)["sandbox"]["publish"] == {"addresses": [], "lowest_port": 1024}


def test_the_committed_schema_is_generated_from_the_model() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "run: python -c 'from pysbx.policies.schema import schema_text; ...'"
    )


def test_the_schema_accepts_the_builtins_and_rejects_typos() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = policy_schema()
    for name in BUILTINS:
        jsonschema.validate(yaml.safe_load((SCHEMA_PATH.parent / f"{name}.yaml").read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "sandbox": {"netwrok": "none"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "sandbox": {"limits": {"memory": "lots"}}}, schema)


@pytest.mark.parametrize("kind", ["fifo", "device", "long extends"])
def test_a_policy_that_is_no_regular_file_or_extends_an_impossible_name_is_one_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "policy.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer
    elif kind == "device":
        path.symlink_to("/dev/zero")  # reading it would never end
    else:
        path.write_text(f"version: 1\nextends: {'9' * 400}Mi\n")  # ENAMETOOLONG, not "no such file"
    result = subprocess.run(
        [BIN / "pysandbox", "policy", "lint", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    expected = {
        "long extends": "no such built-in policy or file",
        "fifo": "the policy is empty",  # read as a pipe (`<(git show ...)`): no writer, no wait
        "device": "cannot read the policy: not a regular file",
    }[kind]
    assert expected in result.stdout, result.stdout

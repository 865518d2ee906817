"""Fingerprints, baselines and report files, as a CI gate lives with them: a fingerprint names
the object a finding is about (service, container, stage) and what was found, so a bad service
added after the baseline is new; the report and the baseline are written whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pysbx.audit.findings import Finding, number_fingerprints
from tests.audit.test_cli import pyaudit, write
from tests.audit.test_hostile_inputs import assert_one_line_input_error

COMPOSE = "services:\n  web:\n    image: nginx:1.27\n    privileged: true\n"
SECOND_SERVICE = "  worker:\n    image: nginx:1.27\n    privileged: true\n"
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  template:
    spec:
      containers:
        - name: app
          image: nginx:1.27
          securityContext: {privileged: true}
"""


def new_findings(*args: str) -> list[tuple[str, str]]:
    result = pyaudit(*args, "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    return [(f["rule_id"], f["subject"]) for f in json.loads(result.stdout)["findings"]]


def test_a_second_bad_service_added_after_the_baseline_is_reported(tmp_path: Path) -> None:
    compose = write(tmp_path, "compose.yaml", COMPOSE)
    baseline = tmp_path / "baseline.json"
    assert pyaudit(str(compose), "--write-baseline", str(baseline)).returncode == 0
    assert new_findings(str(compose), "--baseline", str(baseline)) == []
    compose.write_text("services:\n" + SECOND_SERVICE + COMPOSE.removeprefix("services:\n"))  # added first
    found = new_findings(str(compose), "--baseline", str(baseline))
    assert ("PA1001", "service worker") in found and {subject for _, subject in found} == {"service worker"}


def test_moving_lines_and_editing_elsewhere_keep_the_fingerprints(tmp_path: Path) -> None:
    compose = write(tmp_path, "compose.yaml", COMPOSE + SECOND_SERVICE)
    baseline = tmp_path / "baseline.json"
    assert pyaudit(str(compose), "--write-baseline", str(baseline)).returncode == 0
    compose.write_text(
        "# a comment\nservices:\n" + SECOND_SERVICE + "  web:\n    privileged: true\n    image: nginx:1.27\n"
    )
    assert new_findings(str(compose), "--baseline", str(baseline)) == []


def test_one_more_identical_finding_in_a_stage_is_new(tmp_path: Path) -> None:
    dockerfile = write(tmp_path, "Dockerfile", "FROM alpine:3.20\nRUN sudo a\nRUN sudo b\nUSER 1000\n")
    baseline = tmp_path / "baseline.json"
    assert pyaudit(str(dockerfile), "--write-baseline", str(baseline)).returncode == 0
    dockerfile.write_text("FROM alpine:3.20\nRUN sudo a\nRUN sudo b\nRUN sudo c\nUSER 1000\n")
    assert new_findings(str(dockerfile), "--baseline", str(baseline)) == [("PA1202", "stage 0")]


def test_two_stages_and_two_deployments_are_told_apart_in_sarif(tmp_path: Path) -> None:
    write(tmp_path, "Dockerfile", "FROM alpine AS a\nRUN true\nFROM alpine AS b\nUSER 1000\n")
    write(tmp_path, "k8s.yaml", DEPLOYMENT % "one" + "---\n" + DEPLOYMENT % "two")
    result = pyaudit(str(tmp_path), "--format", "sarif")
    results = json.loads(result.stdout)["runs"][0]["results"]
    keys = [(r["ruleId"], r["partialFingerprints"]["pyauditFingerprint/v2"]) for r in results]
    assert len(keys) == len(set(keys)) and len(keys) > 4
    unpinned = [r for r in results if r["ruleId"] == "PA1020"]
    assert len(unpinned) == 2


def test_separators_in_a_name_cannot_spell_another_findings_fingerprint() -> None:
    """Without escaping, subject `s|x` + no path and subject `s` + path `x|` join alike, and
    a layer `#2` spells the second of two identical findings: a pull request could name a new
    object so that a baseline's entry covers it."""
    one = Finding("PA1", "c", "high", "t", "m", "f", subject="s|x", evidence="e")
    two = Finding("PA1", "c", "high", "t", "m", "f", subject="s", path="x|", evidence="e")
    assert one.identity() != two.identity()
    twins = [Finding("PA1", "c", "high", "t", "m", "f", subject="s", evidence="e") for _ in range(2)]
    spelled = Finding("PA1", "c", "high", "t", "m", "f", subject="s", evidence="e", layer="#2")
    number_fingerprints([*twins, spelled])
    assert len({found.fingerprint for found in [*twins, spelled]}) == 3


def test_a_baseline_of_the_old_format_is_refused_not_half_applied(tmp_path: Path) -> None:
    compose = write(tmp_path, "compose.yaml", COMPOSE + SECOND_SERVICE)
    old = write(
        tmp_path, "old.json", json.dumps({"tool": "pyaudit", "fingerprints": ["PA1001|" + str(compose) + "|||"]})
    )
    assert_one_line_input_error(pyaudit(str(compose), "--baseline", str(old)), "old.json", "--write-baseline")


@pytest.mark.parametrize("option", ["--output", "--write-baseline"])
def test_writing_into_a_missing_folder_is_one_line_and_exit_2(tmp_path: Path, option: str) -> None:
    compose = write(tmp_path, "compose.yaml", COMPOSE)
    result = pyaudit(str(compose), option, str(tmp_path / "missing" / "report.json"))
    assert_one_line_input_error(result, "missing/report.json: cannot write (No such file or directory)")


def test_a_report_is_replaced_whole_and_a_failed_write_keeps_the_old_one(tmp_path: Path) -> None:
    compose = write(tmp_path, "compose.yaml", COMPOSE)
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    report.write_text("previous report\n")
    os.chmod(report.parent, 0o500)  # the folder cannot take a new file
    try:
        result = pyaudit(str(compose), "--output", str(report), "--format", "json")
    finally:
        os.chmod(report.parent, 0o700)
    if os.geteuid() == 0:  # root writes anyway: then the new report is whole
        assert json.loads(report.read_text())["findings"]
    else:
        assert_one_line_input_error(result, "report.json: cannot write")
        assert report.read_text() == "previous report\n"
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.json"]  # no temporary left


def test_a_link_at_the_report_path_is_replaced_not_written_through(tmp_path: Path) -> None:
    """A report path in a shared folder where someone planted a link to another file: that
    file is untouched; the link itself is replaced by the report."""
    victim = write(tmp_path, "victim.txt", "keep me\n")
    report = tmp_path / "report.json"
    report.symlink_to(victim)
    compose = write(tmp_path, "compose.yaml", COMPOSE)
    assert pyaudit(str(compose), "--output", str(report), "--format", "json").returncode == 1
    assert victim.read_text() == "keep me\n" and not report.is_symlink()
    assert json.loads(report.read_text())["findings"]


def test_a_report_path_that_is_a_folder_fails_cleanly_even_for_root(tmp_path: Path) -> None:
    compose = write(tmp_path, "compose.yaml", COMPOSE)
    (tmp_path / "out").mkdir()
    result = pyaudit(str(compose), "--output", str(tmp_path / "out"))
    assert_one_line_input_error(result, "out: cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compose.yaml", "out"]
    assert list((tmp_path / "out").iterdir()) == []

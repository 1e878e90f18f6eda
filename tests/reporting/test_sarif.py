"""report.sarif follows the SARIF 2.1.0 structure: one rule per check, results for failures.

No SARIF 2.1.0 JSON Schema ships offline (``sarif-om`` has none), so the required
properties of the OASIS specification are asserted structurally.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bastion.findings import Finding, Severity, Status
from bastion.report import DatasetRef
from bastion.reporting import render
from bastion.reporting.sarif import sarif_log

from .conftest import make_report

_LEVELS = {"none", "note", "warning", "error"}


def _log(**changes: Any) -> dict[str, Any]:
    log: dict[str, Any] = json.loads(render(make_report(**changes), "sarif"))
    return log


def _check_structure(log: dict[str, Any]) -> None:
    """The spec's required properties (sections 3.13, 3.14, 3.18, 3.19, 3.27, 3.49)."""
    assert log["version"] == "2.1.0"
    assert isinstance(log["$schema"], str)
    assert isinstance(log["runs"], list)
    assert log["runs"]
    for run in log["runs"]:
        driver = run["tool"]["driver"]
        assert isinstance(driver["name"], str)
        assert driver["name"]
        rules = driver.get("rules", [])
        for rule in rules:
            assert isinstance(rule["id"], str)
            assert rule["id"]
            assert isinstance(rule["shortDescription"]["text"], str)
            assert isinstance(rule["fullDescription"]["text"], str)
            assert rule["defaultConfiguration"]["level"] in _LEVELS
        for result in run["results"]:
            assert isinstance(result["message"]["text"], str)
            assert result["message"]["text"]
            assert result["level"] in _LEVELS
            assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
            for location in result.get("locations", []):
                physical = location["physicalLocation"]
                assert isinstance(physical["artifactLocation"]["uri"], str)
                assert physical["region"]["startLine"] >= 1
        for invocation in run.get("invocations", []):
            assert isinstance(invocation["executionSuccessful"], bool)


def test_structure_and_version() -> None:
    log = _log()
    _check_structure(log)
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["name"] == "bastion"
    assert driver["version"] == "0.1.0"
    assert driver["informationUri"].startswith("https://")


def test_one_rule_per_check_id() -> None:
    report = make_report()
    rules = _log()["runs"][0]["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert ids == sorted({f.check_id for f in report.findings})
    mv001 = next(r for r in rules if r["id"] == "MV001")
    assert mv001["shortDescription"]["text"] == "Accuracy"
    assert mv001["name"] == "Accuracy"
    assert {"AML.T0015", "ML01", "security", "validation"} <= set(mv001["properties"]["tags"])
    assert mv001["properties"]["security-severity"] == "8.0"
    assert "MV001" in mv001["help"]["text"]  # the registered check's module docstring
    unknown = next(r for r in rules if r["id"] == "XY001")
    assert unknown["fullDescription"]["text"] == "Something else"
    assert "help" not in unknown


def test_results_only_for_unwaived_failures_and_errors() -> None:
    results = _log()["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["MV001", "FA001", "FA002"]
    levels = {r["ruleId"]: r["level"] for r in results}
    assert levels == {"MV001": "error", "FA001": "note", "FA002": "error"}
    mv001 = results[0]
    assert mv001["properties"]["metrics"] == {"accuracy": 0.81, "balanced_accuracy": None}
    assert mv001["properties"]["subject"] == "model"
    assert mv001["properties"]["severity"] == "high"
    assert "accuracy 0.81 is below 0.9" in mv001["message"]["text"]
    assert len(mv001["partialFingerprints"]["bastionFinding/v1"]) == 64


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        (Severity.CRITICAL, "error"),
        (Severity.HIGH, "error"),
        (Severity.MEDIUM, "warning"),
        (Severity.LOW, "note"),
        (Severity.INFO, "note"),
    ],
)
def test_levels_follow_severity(severity: Severity, level: str) -> None:
    finding = Finding("DQ001", "Types", Status.FAIL, severity, subject="dataset:test")
    (result,) = _log(findings=(finding,))["runs"][0]["results"]
    assert result["level"] == level


def test_locations_point_at_the_subject_file() -> None:
    results = {r["ruleId"]: r for r in _log()["runs"][0]["results"]}
    uri = results["MV001"]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri == {"uri": "models/clf.skops", "uriBaseId": "%SRCROOT%"}

    data = Finding("DQ005", "Dupes", Status.FAIL, Severity.HIGH, subject="dataset:test")
    other = Finding("XY002", "Odd", Status.FAIL, Severity.HIGH, subject="pipeline")
    results = {r["ruleId"]: r for r in _log(findings=(data, other))["runs"][0]["results"]}
    loc = results["DQ005"]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc["uri"] == "data/test.csv"
    loc = results["XY002"]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc["uri"] == "bastion.yaml"  # the policy when nothing better is known


def test_absolute_and_windows_paths_become_file_uris() -> None:
    finding = Finding("DQ005", "Dupes", Status.FAIL, Severity.HIGH, subject="dataset:train")
    datasets = (DatasetRef("train", "/srv/my data/train.csv", "0" * 64, 1, 1),)
    log = sarif_log(make_report(findings=(finding,), datasets=datasets))
    loc = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "file:///srv/my%20data/train.csv"}

    datasets = (DatasetRef("train", "C:\\data\\train.csv", "0" * 64, 1, 1),)
    log = sarif_log(make_report(findings=(finding,), datasets=datasets))
    loc = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "file:///C:/data/train.csv"}


def test_no_location_when_no_file_is_known() -> None:
    finding = Finding("XY002", "Odd", Status.FAIL, Severity.HIGH)
    log = _log(findings=(finding,), model=None, datasets=(), policy_path=None)
    _check_structure(log)
    assert "locations" not in log["runs"][0]["results"][0]


def test_invocation_reports_errors_and_utc_time() -> None:
    (invocation,) = _log()["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False  # FA002 errored
    assert invocation["endTimeUtc"] == "2026-03-01T12:00:00.000000Z"
    ok = Finding("DQ002", "Completeness", Status.PASS, Severity.MEDIUM)
    log = _log(findings=(ok,), created_at="2026-03-01T14:00:00+02:00")
    (invocation,) = log["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is True
    assert invocation["endTimeUtc"] == "2026-03-01T12:00:00.000000Z"
    assert log["runs"][0]["results"] == []

"""Findings, waivers and the fail-closed verdict."""

from __future__ import annotations

import datetime as dt

import pytest

from bastion.findings import Finding, Severity, Status, Waiver, json_number
from bastion.verdict import apply_waivers, decide

TODAY = dt.date(2026, 11, 26)


def make(
    check_id: str, status: Status, severity: Severity = Severity.MEDIUM, subject: str = ""
) -> Finding:
    return Finding(check_id, "title", status, severity, subject=subject, message="m")


def test_severity_is_ordered() -> None:
    assert [s.rank for s in Severity] == [0, 1, 2, 3, 4]
    assert Severity.HIGH.at_least(Severity.MEDIUM)
    assert not Severity.LOW.at_least(Severity.MEDIUM)


@pytest.mark.parametrize(
    ("status", "severity", "fail_on", "passed"),
    [
        (Status.PASS, Severity.CRITICAL, Severity.LOW, True),
        (Status.WARN, Severity.CRITICAL, Severity.LOW, True),  # warn never fails the gate
        (Status.FAIL, Severity.LOW, Severity.MEDIUM, True),  # below the bar
        (Status.FAIL, Severity.MEDIUM, Severity.MEDIUM, False),
        (Status.FAIL, Severity.CRITICAL, Severity.HIGH, False),
        (Status.ERROR, Severity.INFO, Severity.CRITICAL, False),  # errors always fail
        (Status.SKIPPED, Severity.HIGH, Severity.LOW, True),
    ],
)
def test_decide(status: Status, severity: Severity, fail_on: Severity, passed: bool) -> None:
    verdict = decide([make("DQ001", status, severity)], fail_on=fail_on)
    assert verdict.passed is passed
    assert verdict.exit_code == (0 if passed else 1)


def test_required_check_skipped_or_missing_fails() -> None:
    findings = [make("DQ001", Status.SKIPPED), make("DQ002", Status.PASS)]
    verdict = decide(findings, required=["DQ001", "DQ002", "MV001"])
    assert not verdict.passed
    assert any("DQ001 is required but was skipped" in r for r in verdict.reasons)
    assert any("MV001 is required but did not run" in r for r in verdict.reasons)
    assert not any("DQ002" in r for r in verdict.reasons)


def test_required_check_skipped_on_one_subject_fails() -> None:
    findings = [
        make("DQ008", Status.PASS, subject="dataset:train"),
        make("DQ008", Status.SKIPPED, subject="dataset:test"),
    ]
    verdict = decide(findings, required=["DQ008"])
    assert not verdict.passed
    assert verdict.reasons == ("DQ008 is required but was skipped on dataset:test: m",)


def test_active_waiver_turns_failure_into_visible_waived_result() -> None:
    waiver = Waiver("FA001", "retraining", "jane", TODAY)
    findings = apply_waivers([make("FA001", Status.FAIL, Severity.HIGH)], [waiver], TODAY)
    assert findings[0].status is Status.FAIL
    assert findings[0].waiver == waiver
    verdict = decide(findings)
    assert verdict.passed
    assert verdict.counts["waived"] == 1


def test_expired_waiver_does_not_apply() -> None:
    waiver = Waiver("FA001", "retraining", "jane", TODAY - dt.timedelta(days=1))
    findings = apply_waivers([make("FA001", Status.FAIL, Severity.HIGH)], [waiver], TODAY)
    assert findings[0].waiver is None
    assert not decide(findings).passed


def test_waiver_never_covers_errors_or_other_subjects() -> None:
    waiver = Waiver("DQ002", "known gap", "ops", TODAY, subject="dataset:train")
    findings = apply_waivers(
        [
            make("DQ002", Status.ERROR, subject="dataset:train"),
            make("DQ002", Status.FAIL, subject="dataset:test"),
            make("DQ002", Status.FAIL, subject="dataset:train"),
        ],
        [waiver],
        TODAY,
    )
    assert [f.waived for f in findings] == [False, False, True]
    assert not decide(findings).passed


def test_finding_round_trip_and_json_numbers() -> None:
    f = Finding(
        "MV001",
        "Performance",
        Status.FAIL,
        Severity.HIGH,
        metrics={"accuracy": 0.5, "nan": float("nan"), "n": 3},
        threshold={"min_accuracy": 0.9},
        tags=("AML.T0015",),
        waiver=Waiver("MV001", "r", "o", TODAY),
    )
    d = f.to_dict()
    assert d["metrics"] == {"accuracy": 0.5, "nan": None, "n": 3}
    back = Finding.from_dict(d)
    assert back.waiver == f.waiver
    assert back.tags == f.tags
    assert back.status is Status.FAIL
    assert json_number(float("inf")) is None
    assert json_number(True) == 1

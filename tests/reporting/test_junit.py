"""junit.xml parses and maps every finding status to the JUnit element CI expects."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from bastion.findings import Finding, Severity, Status
from bastion.reporting import render

from .conftest import EVIL, make_report


def _root(**changes: object) -> ET.Element:
    return ET.fromstring(render(make_report(**changes), "junit"))  # type: ignore[arg-type]


def _case(root: ET.Element, check_id: str) -> ET.Element:
    cases = [c for c in root.iter("testcase") if c.get("name", "").startswith(check_id + " ")]
    assert len(cases) == 1, check_id
    return cases[0]


def test_one_testcase_per_finding_plus_the_verdict() -> None:
    report = make_report()
    root = ET.fromstring(render(report, "junit"))
    assert root.tag == "testsuites"
    cases = list(root.iter("testcase"))
    assert len(cases) == len(report.findings) + 1
    suites = [s.get("name") for s in root.iter("testsuite")]
    assert suites == [
        "bastion.data",
        "bastion.validation",
        "bastion.fairness",
        "bastion.other",
        "bastion.gate",
    ]


def test_status_mapping() -> None:
    root = _root()
    failed = _case(root, "MV001")
    failure = failed.find("failure")
    assert failure is not None
    assert failure.get("type") == "high"
    assert failure.get("message") == f"accuracy 0.81 is below 0.9 {EVIL}"  # escaped, then parsed
    assert "metric accuracy = 0.81" in (failure.text or "")
    assert failed.get("classname") == "bastion.validation.MV001"
    assert failed.get("name") == "MV001 Accuracy [model]"
    assert failed.get("time") == "0.250000"

    error = _case(root, "FA002").find("error")
    assert error is not None
    assert error.get("message") == "ValueError: only one class in group M"

    skipped = _case(root, "XY001")
    assert skipped.find("skipped") is not None
    assert skipped.get("name") == "XY001 Something else"  # no subject, no brackets

    waived = _case(root, "DQ005")
    assert waived.find("failure") is None
    element = waived.find("skipped")
    assert element is not None
    assert element.get("message", "").startswith("waived by data-team until 2030-01-31")

    warned = _case(root, "DQ008")
    assert warned.find("failure") is None
    assert warned.find("skipped") is None
    assert (warned.findtext("system-out") or "").startswith("WARNING: ")

    passed = _case(root, "DQ002")
    assert list(passed) == [passed.find("system-out")]


def test_counts_on_suites_and_root() -> None:
    root = _root()
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "10",
        "3",  # MV001, FA001 and the gate verdict
        "1",
        "2",
    )
    fairness = next(s for s in root.iter("testsuite") if s.get("name") == "bastion.fairness")
    assert (fairness.get("tests"), fairness.get("failures"), fairness.get("errors")) == (
        "2",
        "1",
        "1",
    )


def test_gate_case_carries_the_reasons() -> None:
    root = _root()
    gate = next(root.iter("testsuite"))
    gate = next(s for s in root.iter("testsuite") if s.get("name") == "bastion.gate")
    failure = gate.find("testcase/failure")
    assert failure is not None
    assert "DQ009 is required but did not run" in (failure.text or "")

    passing = _root(findings=(), required=())
    gate = next(s for s in passing.iter("testsuite") if s.get("name") == "bastion.gate")
    assert gate.find("testcase/failure") is None
    assert passing.get("failures") == "0"


def test_control_characters_do_not_break_the_xml() -> None:
    finding = Finding("DQ001", "Types", Status.FAIL, Severity.LOW, message="bad byte \x00\x1b here")
    root = _root(findings=(finding,))
    failure = _case(root, "DQ001").find("failure")
    assert failure is not None
    assert failure.get("message") == "bad byte \ufffd\ufffd here"

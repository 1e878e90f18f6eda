"""``junit.xml``: the findings as a JUnit XML test report, which every CI system displays.

Layout: ``<testsuites name="bastion">`` holds one ``<testsuite name="bastion.<category>">``
per category that has findings (data, validation, fairness, robustness, extraction,
poisoning, privacy, other) with one ``<testcase>``
per finding, plus a final ``bastion.gate`` suite with a single ``verdict`` testcase that
fails with the gate's reasons. That last case is how CI shows reasons no finding carries
(a required check that never ran) and makes the file fail exactly when the gate did.

Status mapping:

=========  ===================================================================
pass       a passing testcase (message and metrics in ``<system-out>``)
warn       a passing testcase; the warning is in ``<system-out>`` (warn never fails the
           gate, so it must not turn CI red)
fail       ``<failure message=... type=SEVERITY>`` with metrics and thresholds as text
error      ``<error message=... type="error">``: the check could not run
skipped    ``<skipped message=...>``
waived     ``<skipped message="waived by OWNER until DATE: REASON">``: the failure is
           accepted until the waiver expires, so it neither fails CI nor hides as a pass
=========  ===================================================================

A ``fail`` below the gate's ``--fail-on`` severity still maps to ``<failure>``: the check did
fail; only the ``verdict`` testcase says whether the gate did.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from bastion.findings import Finding, Status
from bastion.reporting.writers import CATEGORIES, REPORTERS, ReportWriter, category_of, waiver_text

if TYPE_CHECKING:
    from bastion.report import Report

__all__ = ["JunitWriter", "render_junit"]

# Characters XML 1.0 forbids even when escaped; a message quoting binary data must not make
# the whole file unparseable.
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _ILLEGAL_XML.sub("\ufffd", text)


def _details(f: Finding) -> str:
    lines = [f"{f.check_id} {f.title}", f"subject: {f.subject or '-'}", f"severity: {f.severity}"]
    lines.append(f"status: {f.status}")
    if f.message:
        lines.append(f"message: {f.message}")
    lines += [f"metric {k} = {v}" for k, v in f.metrics.items()]
    lines += [f"threshold {k} = {v}" for k, v in f.threshold.items()]
    if f.tags:
        lines.append(f"tags: {', '.join(f.tags)}")
    return _clean("\n".join(lines))


def _testcase(parent: ET.Element, f: Finding, category: str) -> str:
    """Append the testcase of ``f``; return its outcome: passed/failure/error/skipped."""
    subject = f" [{f.subject}]" if f.subject else ""
    case = ET.SubElement(
        parent,
        "testcase",
        {
            "classname": _clean(f"bastion.{category}.{f.check_id}"),
            "name": _clean(f"{f.check_id} {f.title}{subject}"),
            "time": f"{max(f.duration_s, 0.0):.6f}",
        },
    )
    message = _clean(f.message)
    if f.status is Status.FAIL and f.waived:
        ET.SubElement(case, "skipped", {"message": _clean(waiver_text(f))}).text = _details(f)
        return "skipped"
    if f.status is Status.FAIL:
        ET.SubElement(
            case, "failure", {"message": message, "type": f.severity.value}
        ).text = _details(f)
        return "failure"
    if f.status is Status.ERROR:
        ET.SubElement(case, "error", {"message": message, "type": "error"}).text = _details(f)
        return "error"
    if f.status is Status.SKIPPED:
        ET.SubElement(case, "skipped", {"message": message})
        return "skipped"
    prefix = "WARNING: " if f.status is Status.WARN else ""
    ET.SubElement(case, "system-out").text = prefix + _details(f)
    return "passed"


def _suite(root: ET.Element, name: str, timestamp: str) -> ET.Element:
    return ET.SubElement(root, "testsuite", {"name": name, "timestamp": timestamp})


def _close(suite: ET.Element, outcomes: list[str], seconds: float) -> None:
    suite.set("tests", str(len(outcomes)))
    suite.set("failures", str(outcomes.count("failure")))
    suite.set("errors", str(outcomes.count("error")))
    suite.set("skipped", str(outcomes.count("skipped")))
    suite.set("time", f"{seconds:.6f}")


def render_junit(report: Report) -> str:
    """The JUnit XML text of ``report`` (see the module docstring for the mapping).

    Example::

        root = xml.etree.ElementTree.fromstring(render_junit(report))
        root.get("failures")  # '2'
    """
    root = ET.Element("testsuites", {"name": "bastion"})
    timestamp = _clean(report.created_at)
    everything: list[str] = []
    total_time = 0.0
    for category in CATEGORIES:
        members = [f for f in report.findings if category_of(f.check_id) == category]
        if not members:
            continue
        suite = _suite(root, f"bastion.{category}", timestamp)
        outcomes = [_testcase(suite, f, category) for f in members]
        seconds = sum(max(f.duration_s, 0.0) for f in members)
        _close(suite, outcomes, seconds)
        everything += outcomes
        total_time += seconds

    verdict = report.verdict
    gate = _suite(root, "bastion.gate", timestamp)
    case = ET.SubElement(
        gate,
        "testcase",
        {"classname": "bastion.gate", "name": f"verdict (fail on {verdict.fail_on})", "time": "0"},
    )
    if verdict.passed:
        ET.SubElement(case, "system-out").text = _clean(f"PASSED: {report.project}")
        everything.append("passed")
    else:
        n = len(verdict.reasons)
        ET.SubElement(
            case,
            "failure",
            {"message": _clean(f"gate failed: {n} reason{'' if n == 1 else 's'}"), "type": "gate"},
        ).text = _clean("\n".join(verdict.reasons))
        everything.append("failure")
    _close(gate, [everything[-1]], 0.0)
    _close(root, everything, total_time)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


@REPORTERS.register
class JunitWriter(ReportWriter):
    """``junit.xml``: one testcase per finding plus the gate's verdict."""

    id = "junit"
    filename = "junit.xml"
    media_type = "application/xml"

    def render(self, report: Report) -> str:
        return render_junit(report)

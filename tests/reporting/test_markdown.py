"""summary.md: verdict, counts, a table of findings that did not pass, reasons and waivers."""

from __future__ import annotations

import re

from bastion.findings import Finding, Severity, Status
from bastion.reporting import render
from bastion.reporting.markdown import MAX_CHARS

from .conftest import make_report


def test_summary_has_verdict_counts_table_reasons_and_waivers() -> None:
    text = render(make_report(), "markdown")
    assert text.startswith("## Bastion gate: FAILED\n")
    assert "| 9 | 3 | 1 | 3 | 1 | 1 | 1 |" in text
    assert "| check | subject | status | severity | message |" in text
    assert "| `MV001` Accuracy | `model` | fail | high |" in text
    assert "| `DQ005` Duplicate rows | `dataset:train` | fail (waived) | medium |" in text
    assert "- DQ009 is required but did not run" in text
    assert "### Waivers" in text
    assert "by data-team until 2030-01-31 (active)" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 6  # every finding that is not a pass
    assert "DQ002" not in text  # passes are left out


def test_passed_summary() -> None:
    findings = (Finding("DQ002", "Completeness", Status.PASS, Severity.MEDIUM),)
    text = render(make_report(findings=findings, waivers=(), required=()), "markdown")
    assert text.startswith("## Bastion gate: PASSED\n")
    assert "Every check passed." in text
    assert "Why the gate failed" not in text
    assert "Waivers" not in text


def test_cells_cannot_break_the_table_or_inject_html() -> None:
    finding = Finding(
        "DQ001",
        "Types",
        Status.FAIL,
        Severity.HIGH,
        subject="col|umn",
        message="a | b\nnext line <img src=x>",
    )
    text = render(make_report(findings=(finding,)), "markdown")
    row = next(line for line in text.splitlines() if line.startswith("| `DQ001`"))
    assert "`col\\|umn`" in row
    assert "a \\| b next line &lt;img src=x&gt;" in row
    assert len(re.findall(r"(?<!\\)\|", row)) == 6  # five cells, no more


def test_long_reports_are_cut_below_the_limit() -> None:
    findings = tuple(
        Finding(
            f"DQ{i:03d}",
            "Check",
            Status.FAIL,
            Severity.HIGH,
            subject=f"column:c{i}",
            message="x" * 280,
        )
        for i in range(1000)
    )
    text = render(make_report(findings=findings), "markdown")
    assert len(text) <= MAX_CHARS
    assert "more findings are listed in `report.html`" in text
    assert "- … and 975 more (see `report.html`)" in text
    assert text.rstrip().endswith("machine-readable record: `report.json`.")

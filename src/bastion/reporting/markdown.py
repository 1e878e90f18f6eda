"""``summary.md``: a short GitHub-flavoured summary for a CI step summary or a PR comment.

Verdict (PASSED / FAILED, no emoji), counts, the gate's reasons, a table of every finding
that is not a pass, and the waivers. It stays under :data:`MAX_CHARS` (64 KB budgets of CI
summaries): past that, table rows are cut and a line says how many more are in the full
report. Cell text is escaped so that a message can neither break the table nor inject HTML.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bastion.findings import Finding, Status
from bastion.reporting.writers import REPORTERS, ReportWriter, waiver_text

if TYPE_CHECKING:
    from bastion.report import Report

__all__ = ["MAX_CHARS", "MarkdownWriter", "render_markdown"]

MAX_CHARS = 60_000
"""Upper bound on the summary's length, leaving room below a 64 KiB limit."""

_CELL_CHARS = 300
_MAX_REASONS = 25  # reasons and waivers listed; the full lists are in report.html
_ORDER = {"error": 0, "fail": 1, "warn": 2, "skipped": 3}


def _cell(text: str, limit: int = _CELL_CHARS) -> str:
    """``text`` safe inside a table cell: one line, pipes escaped, no live HTML or markup."""
    one_line = re.sub(r"\s+", " ", text).strip()
    if len(one_line) > limit:
        one_line = one_line[: limit - 1] + "…"
    return (
        one_line.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("`", "\\`")
    )


def _code(text: str) -> str:
    """``text`` as inline code; GFM needs ``\\|`` even inside code spans in a table."""
    one_line = re.sub(r"\s+", " ", text).strip()[:_CELL_CHARS]
    if not one_line or "`" in one_line:
        return _cell(one_line)
    return "`" + one_line.replace("|", "\\|") + "`"


def _status(f: Finding) -> str:
    return "fail (waived)" if f.waived else f.status.value


def render_markdown(report: Report) -> str:
    """The Markdown summary of ``report``.

    Example::

        Path(os.environ["GITHUB_STEP_SUMMARY"]).write_text(render_markdown(report))
    """
    verdict = report.verdict
    counts = verdict.counts
    word = "PASSED" if verdict.passed else "FAILED"
    head = [
        f"## Bastion gate: {word}",
        "",
        f"**Project:** {_cell(report.project)} · **fail on:** {verdict.fail_on.value} and above"
        f" · **bastion** {_cell(report.bastion_version)} · {_cell(report.created_at)}",
        "",
        "| findings | pass | warn | fail | error | skipped | waived |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(report.findings)} | "
        + " | ".join(
            str(counts.get(k, 0)) for k in ("pass", "warn", "fail", "error", "skipped", "waived")
        )
        + " |",
        "",
    ]
    if verdict.reasons:
        head += ["### Why the gate failed", ""]
        head += [f"- {_cell(r, 500)}" for r in verdict.reasons[:_MAX_REASONS]]
        if len(verdict.reasons) > _MAX_REASONS:
            head.append(f"- … and {len(verdict.reasons) - _MAX_REASONS} more (see `report.html`)")
        head.append("")

    tail: list[str] = []
    waived = [f for f in report.findings if f.waived]
    if report.waivers or waived:
        tail += ["### Waivers", ""]
        for w in report.waivers[:_MAX_REASONS]:
            subject = f" on {_code(str(w['subject']))}" if w.get("subject") else ""
            state = ""
            if "active" in w:
                state = " (active)" if w["active"] else " (**expired**)"
            check, owner = _code(str(w.get("check_id", ""))), _cell(str(w.get("owner", "")))
            until, reason = _cell(str(w.get("expires", ""))), _cell(str(w.get("reason", "")))
            tail.append(f"- {check}{subject}: by {owner} until {until}{state}: {reason}")
        if len(report.waivers) > _MAX_REASONS:
            tail.append(f"- … and {len(report.waivers) - _MAX_REASONS} more (see `report.html`)")
        if not report.waivers:
            tail += [
                f"- {_code(f.check_id)} on {_code(f.subject)}: {_cell(waiver_text(f))}"
                for f in waived[:_MAX_REASONS]
            ]
        tail.append("")
    tail.append("Full details: `report.html` · machine-readable record: `report.json`.")

    problems = sorted(
        (f for f in report.findings if f.status is not Status.PASS),
        key=lambda f: (_ORDER.get(f.status.value, 9), f.waived, -f.severity.rank, f.check_id),
    )
    body: list[str] = []
    if problems:
        body += [
            "### Findings that did not pass",
            "",
            "| check | subject | status | severity | message |",
            "|---|---|---|---|---|",
        ]
        budget = MAX_CHARS - sum(len(x) + 1 for x in head + tail) - 200
        for shown, f in enumerate(problems):
            message = f.message
            if f.waived:
                message = f"{message} ({waiver_text(f)})"
            row = (
                f"| {_code(f.check_id)} {_cell(f.title, 80)} | {_code(f.subject)} | "
                f"{_status(f)} | {f.severity.value} | {_cell(message)} |"
            )
            if len(row) + 1 > budget:
                body.append("")
                body.append(f"_{len(problems) - shown} more findings are listed in `report.html`._")
                break
            body.append(row)
            budget -= len(row) + 1
        body.append("")
    else:
        body += ["Every check passed.", ""]
    return "\n".join(head + body + tail) + "\n"


@REPORTERS.register
class MarkdownWriter(ReportWriter):
    """``summary.md``: the CI step summary."""

    id = "markdown"
    filename = "summary.md"
    media_type = "text/markdown"

    def render(self, report: Report) -> str:
        return render_markdown(report)

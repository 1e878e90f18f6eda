"""Report writers: JSON (the schema'd record), HTML, JUnit XML, SARIF 2.1.0 and Markdown.

Example::

    from bastion.reporting import write_reports

    paths = write_reports(report, "out")            # every format
    paths = write_reports(report, "out", ["json"])  # just report.json

Importing this package is light: matplotlib and Jinja2 load only when HTML is rendered.
"""

from __future__ import annotations

from bastion.reporting.writers import (
    FORMATS,
    REPORTERS,
    ReportWriter,
    redact,
    render,
    write_reports,
)

__all__ = ["FORMATS", "REPORTERS", "ReportWriter", "redact", "render", "write_reports"]

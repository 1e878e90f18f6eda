"""``report.sarif``: failing findings as SARIF 2.1.0, for code-scanning dashboards.

One run whose ``tool.driver`` lists one rule per check id seen in the report and one result
per *failing* finding: status ``error``, or ``fail`` without a waiver. Passing, warning,
skipped and waived findings produce no result (a waiver is a decision already taken).

Levels: ``error`` status -> ``error``; otherwise severity critical / high -> ``error``,
medium -> ``warning``, low / info -> ``note``. Each rule also carries GitHub's numeric
``security-severity`` so alerts sort by it.

Locations: a result points at the file its finding is about, which SARIF consumers need to
anchor an alert: the dataset named in the subject, else the model file for model checks,
else the policy file. Relative paths stay relative to the repository root
(``uriBaseId`` ``%SRCROOT%``), absolute ones become ``file://`` URIs. A data or model file
has no meaningful line, so the region is line 1 (GitHub requires ``region.startLine``).
``partialFingerprints`` (check id + subject) keep an alert stable across runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bastion.findings import Finding, Severity, Status
from bastion.reporting.writers import (
    REPORTERS,
    ReportWriter,
    category_of,
    check_class,
    is_failure,
)

if TYPE_CHECKING:
    from bastion.report import Report

__all__ = ["SARIF_SCHEMA", "SARIF_VERSION", "SarifWriter", "artifact_uri", "render_sarif"]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/bastion-ml/bastion"

_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
# GitHub maps security-severity > 9.0 critical, >= 7.0 high, >= 4.0 medium, > 0 low.
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


def _level(f: Finding) -> str:
    return "error" if f.status is Status.ERROR else _LEVEL[f.severity]


def _rule_name(title: str, check_id: str) -> str:
    """A PascalCase identifier from the title, as SARIF's ``name`` suggests."""
    words = re.findall(r"[A-Za-z0-9]+", title)
    return "".join(w[:1].upper() + w[1:] for w in words) or check_id


def _plain_doc(doc: str | None, limit: int) -> str:
    """A docstring as plain text: reST literals unquoted, examples dropped, whitespace folded."""
    text = (doc or "").split("Example::")[0].replace("``", "")
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    joined = "\n\n".join(p for p in paragraphs if p)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def _descriptions(check_id: str, title: str) -> tuple[str, str]:
    """The rule's one-paragraph description and its longer help (the check module's docstring)."""
    cls = check_class(check_id)
    if cls is None:
        return title or check_id, ""
    full = _plain_doc(cls.__doc__, 1000).split("\n\n")[0] or title or check_id
    module = sys.modules.get(cls.__module__)
    return full, _plain_doc(module.__doc__ if module is not None else None, 4000)


def _rule(check_id: str, findings: list[Finding]) -> dict[str, Any]:
    first = findings[0]
    worst = max((f.severity for f in findings), key=lambda s: s.rank)
    tags = ["security", "machine-learning", category_of(check_id)]
    tags += list(dict.fromkeys(t for f in findings for t in f.tags))
    full, help_text = _descriptions(check_id, first.title)
    rule: dict[str, Any] = {
        "id": check_id,
        "name": _rule_name(first.title, check_id),
        "shortDescription": {"text": first.title or check_id},
        "fullDescription": {"text": full},
        "defaultConfiguration": {"level": _LEVEL[worst]},
        "properties": {
            "tags": list(dict.fromkeys(tags)),
            "security-severity": _SECURITY_SEVERITY[worst],
            "category": category_of(check_id),
        },
    }
    if help_text:
        rule["help"] = {"text": help_text}
    return rule


def artifact_uri(path: str) -> dict[str, str]:
    """A SARIF ``artifactLocation`` for a path: relative to ``%SRCROOT%``, or a file URI."""
    drive = PureWindowsPath(path).drive
    if len(drive) == 2:  # C:\data\train.csv
        return {"uri": "file:///" + quote(PureWindowsPath(path).as_posix(), safe="/:")}
    if path.startswith("/"):
        return {"uri": "file://" + quote(path, safe="/")}
    relative = path.replace("\\", "/").removeprefix("./")
    return {"uri": quote(relative, safe="/"), "uriBaseId": "%SRCROOT%"}


def _utc(timestamp: str) -> str | None:
    """``timestamp`` in the UTC form SARIF requires, or None when it does not parse."""
    try:
        moment = dt.datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _artifact(f: Finding, report: Report) -> str | None:
    """The file a finding is about: its dataset, the model, or the policy."""
    tokens = set(re.split(r"[\s:/@,=\[\]()]+", f.subject)) - {""}
    for d in report.datasets:
        if d.path and d.name in tokens:
            return d.path
    model_path = report.model.get("path") if isinstance(report.model, Mapping) else None
    if (
        isinstance(model_path, str)
        and model_path
        and ("model" in tokens or category_of(f.check_id) in ("validation", "fairness"))
    ):
        return model_path
    if report.policy_path:
        return report.policy_path
    only = [d.path for d in report.datasets if d.path]
    return only[0] if len(only) == 1 else None


def _result(f: Finding, index: int, report: Report) -> dict[str, Any]:
    where = f" on {f.subject}" if f.subject else ""
    verb = "errored" if f.status is Status.ERROR else "failed"
    text = f"{f.check_id} {f.title}{where} {verb}"
    if f.message:
        text = f"{text}: {f.message}"
    result: dict[str, Any] = {
        "ruleId": f.check_id,
        "ruleIndex": index,
        "level": _level(f),
        "kind": "fail",
        "message": {"text": text},
        "partialFingerprints": {
            "bastionFinding/v1": hashlib.sha256(f"{f.check_id}\0{f.subject}".encode()).hexdigest()
        },
        "properties": {
            "status": f.status.value,
            "severity": f.severity.value,
            "subject": f.subject,
            "metrics": dict(f.metrics),
            "threshold": dict(f.threshold),
            "tags": list(f.tags),
        },
    }
    path = _artifact(f, report)
    if path is not None:
        result["locations"] = [
            {
                "physicalLocation": {
                    "artifactLocation": artifact_uri(path),
                    "region": {"startLine": 1},
                },
                "message": {"text": f.subject or f.check_id},
            }
        ]
    return result


def sarif_log(report: Report) -> dict[str, Any]:
    """The SARIF 2.1.0 log of ``report`` as a dict (see the module docstring).

    Example::

        log = sarif_log(report)
        log["runs"][0]["results"][0]["ruleId"]  # 'MV001'
    """
    from bastion.reporting.json_report import jsonable

    by_rule: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_rule.setdefault(f.check_id, []).append(f)
    rule_ids = sorted(by_rule)
    index = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    results = [_result(f, index[f.check_id], report) for f in report.findings if is_failure(f)]
    verdict = report.verdict
    invocation: dict[str, Any] = {
        # An errored check is reported as a result and also makes this false, so dashboards
        # can tell "nothing found" from "could not look".
        "executionSuccessful": not any(f.status is Status.ERROR for f in report.findings),
        "properties": {"seed": report.seed},
    }
    end = _utc(report.created_at)
    if end is not None:
        invocation["endTimeUtc"] = end
    run = {
        "tool": {
            "driver": {
                "name": "bastion",
                "version": report.bastion_version,
                "semanticVersion": report.bastion_version,
                "informationUri": INFORMATION_URI,
                "rules": [_rule(r, by_rule[r]) for r in rule_ids],
            }
        },
        "automationDetails": {"id": f"bastion/{report.project}/"},
        "invocations": [invocation],
        "results": results,
        "properties": {
            "project": report.project,
            "schema": "bastion.report/v1",
            "verdict": {
                "passed": verdict.passed,
                "fail_on": verdict.fail_on.value,
                "reasons": list(verdict.reasons),
            },
        },
    }
    log: dict[str, Any] = jsonable(
        {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}, "sarif"
    )
    return log


def render_sarif(report: Report) -> str:
    """The SARIF 2.1.0 JSON text of ``report``.

    Example::

        json.loads(render_sarif(report))["version"]  # '2.1.0'
    """
    return json.dumps(sarif_log(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


@REPORTERS.register
class SarifWriter(ReportWriter):
    """``report.sarif``: one SARIF result per failing finding."""

    id = "sarif"
    filename = "report.sarif"
    media_type = "application/sarif+json"

    def render(self, report: Report) -> str:
        return render_sarif(report)

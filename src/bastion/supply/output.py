"""``bastion scan`` output: text for people, JSON for pipelines, SARIF for code scanning.

JSON::

    {"tool": "bastion", "version": "...", "verdict": "unsafe",
     "files": [{"path", "format", "verdict", "sha256", "size", "globals",
                "findings": [{"rule", "severity", "verdict", "message", "location"}]}]}

SARIF 2.1.0: one rule per rule id seen (descriptions from :data:`bastion.supply.rules.RULES`),
one result per finding of a file that is not safe; levels: unsafe and error -> ``error``,
suspicious -> ``warning``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bastion import __version__
from bastion.supply.results import FileScan, ScanVerdict, worst
from bastion.supply.rules import RULES

__all__ = ["exit_code", "render_json", "render_sarif", "render_text"]

_LEVEL = {
    ScanVerdict.UNSAFE: "error",
    ScanVerdict.ERROR: "error",
    ScanVerdict.SUSPICIOUS: "warning",
    ScanVerdict.SAFE: "note",
}


def exit_code(results: Sequence[FileScan]) -> int:
    """0 every file safe; 1 something unsafe or suspicious; 2 only read errors."""
    verdicts = {r.verdict for r in results}
    if verdicts & {ScanVerdict.UNSAFE, ScanVerdict.SUSPICIOUS}:
        return 1
    if ScanVerdict.ERROR in verdicts:
        return 2
    return 0


def render_json(results: Sequence[FileScan]) -> str:
    doc = {
        "tool": "bastion",
        "version": __version__,
        "verdict": worst(r.verdict for r in results).value,
        "files": [r.to_dict() for r in results],
    }
    return json.dumps(doc, indent=2) + "\n"


def render_text(results: Sequence[FileScan], verbose: bool = False) -> str:
    lines = []
    for r in results:
        lines.append(f"{r.verdict.value.upper():10s} {r.path}  ({r.format})")
        for f in r.findings:
            where = f" [{f.location}]" if f.location else ""
            lines.append(f"  {f.rule} {f.verdict.value}: {f.message}{where}")
        if verbose and r.globals:
            lines.append(f"  imports: {', '.join(r.globals)}")
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict.value] = counts.get(r.verdict.value, 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    lines.append(f"{len(results)} file(s) scanned: {summary or 'none'}")
    return "\n".join(lines) + "\n"


def render_sarif(results: Sequence[FileScan]) -> str:
    from bastion.reporting.sarif import SARIF_SCHEMA, SARIF_VERSION, artifact_uri

    used = sorted({f.rule for r in results for f in r.findings})
    rules = [
        {
            "id": rule,
            "name": rule,
            "shortDescription": {"text": RULES.get(rule, rule)},
            "helpUri": "https://github.com/bastion-ml/bastion#bastion-scan",
        }
        for rule in used
    ]
    index = {rule: i for i, rule in enumerate(used)}
    sarif_results: list[dict[str, Any]] = []
    for r in results:
        for f in r.findings:
            message = f"{r.path}: {f.message}" + (f" ({f.location})" if f.location else "")
            sarif_results.append(
                {
                    "ruleId": f.rule,
                    "ruleIndex": index[f.rule],
                    "level": _LEVEL[f.verdict],
                    "message": {"text": message},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": artifact_uri(r.path),
                                "region": {"startLine": 1},
                            },
                            **(
                                {"logicalLocations": [{"fullyQualifiedName": f.location}]}
                                if f.location
                                else {}
                            ),
                        }
                    ],
                    "partialFingerprints": {"bastionScan/v1": f"{r.sha256}:{f.rule}:{f.location}"},
                }
            )
    log = {
        "version": SARIF_VERSION,
        "$schema": SARIF_SCHEMA,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "bastion-scan",
                        "version": __version__,
                        "informationUri": "https://github.com/bastion-ml/bastion",
                        "rules": rules,
                    }
                },
                "results": sarif_results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"

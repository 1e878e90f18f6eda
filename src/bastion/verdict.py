"""The gate's verdict, fail closed.

The gate fails on any ``fail`` finding at or above ``fail_on`` that no active waiver covers, on
any ``error`` finding, and on a required check that was ``skipped`` or never ran. ``warn``
never fails it. Waivers apply to ``fail`` findings only: an error or a missing required check
cannot be waived away.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bastion.findings import Finding, Severity, Status, Waiver

__all__ = ["Verdict", "apply_waivers", "decide"]


@dataclass(frozen=True)
class Verdict:
    """Whether the gate passed, and every reason it did not."""

    passed: bool
    fail_on: Severity
    reasons: tuple[str, ...]
    counts: dict[str, int]

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "fail_on": self.fail_on.value,
            "reasons": list(self.reasons),
            "counts": dict(self.counts),
        }


def apply_waivers(
    findings: Sequence[Finding], waivers: Iterable[Waiver], today: dt.date
) -> list[Finding]:
    """Attach the first active waiver covering each ``fail`` finding; expired ones never apply."""
    active = [w for w in waivers if w.is_active(today)]
    out: list[Finding] = []
    for finding in findings:
        if finding.status is Status.FAIL and finding.waiver is None:
            waiver = next((w for w in active if w.covers(finding)), None)
            if waiver is not None:
                finding = finding.with_updates(waiver=waiver)
        out.append(finding)
    return out


def decide(
    findings: Sequence[Finding],
    fail_on: Severity = Severity.MEDIUM,
    required: Iterable[str] = (),
) -> Verdict:
    """Compute the verdict of already-waived findings."""
    reasons: list[str] = []
    for f in findings:
        where = f" on {f.subject}" if f.subject else ""
        if f.status is Status.ERROR:
            reasons.append(f"{f.check_id}{where} errored: {f.message}")
        elif f.status is Status.FAIL and not f.waived and f.severity.at_least(fail_on):
            reasons.append(f"{f.check_id}{where} failed ({f.severity.value}): {f.message}")
    present = {f.check_id for f in findings}
    skipped = {f.check_id: f for f in findings if f.status is Status.SKIPPED}
    for check_id in sorted(set(required)):
        if check_id not in present:
            reasons.append(f"{check_id} is required but did not run")
        elif check_id in skipped:
            # a required check must run on every subject it applies to
            f = skipped[check_id]
            where = f" on {f.subject}" if f.subject else ""
            reasons.append(f"{check_id} is required but was skipped{where}: {f.message}")
    counts = Counter(f.status.value for f in findings)
    counts["waived"] = sum(1 for f in findings if f.waived)
    return Verdict(
        passed=not reasons,
        fail_on=fail_on,
        reasons=tuple(reasons),
        counts={s.value: counts.get(s.value, 0) for s in Status} | {"waived": counts["waived"]},
    )

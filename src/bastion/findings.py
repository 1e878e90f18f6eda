"""Findings: the result of one check on one subject. A finding is data, never an exception."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

__all__ = ["Finding", "Severity", "Status", "Waiver", "json_number"]


class Status(StrEnum):
    """Outcome of a check. ``warn`` never fails the gate; ``error`` always does."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


class Severity(StrEnum):
    """How much a failing finding matters; ordered from ``info`` to ``critical``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_SEVERITY_ORDER: tuple[Severity, ...] = tuple(Severity)


@dataclass(frozen=True)
class Waiver:
    """A policy-approved exception for one check's failures, valid until ``expires`` (inclusive)."""

    check_id: str
    reason: str
    owner: str
    expires: dt.date
    subject: str | None = None  # None waives the check on every subject

    def is_active(self, today: dt.date) -> bool:
        return today <= self.expires

    def covers(self, finding: Finding) -> bool:
        return finding.check_id == self.check_id and self.subject in (None, finding.subject)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check_id": self.check_id,
            "reason": self.reason,
            "owner": self.owner,
            "expires": self.expires.isoformat(),
            "subject": self.subject,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Waiver:
        return cls(
            check_id=str(data["check_id"]),
            reason=str(data["reason"]),
            owner=str(data["owner"]),
            expires=dt.date.fromisoformat(str(data["expires"])),
            subject=data.get("subject"),
        )


def json_number(value: float | int | None) -> float | int | None:
    """A number that JSON can carry: NaN and infinities become ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    f = float(value)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Finding:
    """The outcome of one check on one subject.

    Parameters
    ----------
    check_id:
        Stable id of the check, e.g. ``DQ002``.
    title:
        Short human title of the check.
    status:
        pass / warn / fail / error / skipped.
    severity:
        How much a failure matters; compared with the gate's ``--fail-on``.
    subject:
        What was checked: ``dataset:train``, ``model``, ``column:age`` ...
    metrics:
        Measured numbers, name -> value.
    threshold:
        The limits the metrics were compared with, name -> value.
    message:
        One or two sentences for a human.
    evidence:
        Aggregate figures for reports and plots (JSON-compatible). Raw data rows go only
        under the key ``samples``, which reports drop unless the policy allows raw rows.
    tags:
        MITRE ATLAS technique ids and OWASP ML Top 10 ids.
    duration_s:
        Wall time of the check.
    waiver:
        The waiver that turned this failure into a waived result, if any.
    """

    check_id: str
    title: str
    status: Status
    severity: Severity
    subject: str = ""
    metrics: Mapping[str, float | int | None] = field(default_factory=dict)
    threshold: Mapping[str, float | int | str | None] = field(default_factory=dict)
    message: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    duration_s: float = 0.0
    waiver: Waiver | None = None

    @property
    def waived(self) -> bool:
        return self.waiver is not None

    def with_updates(self, **changes: Any) -> Finding:
        """A copy with some fields changed (findings are immutable)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check_id": self.check_id,
            "title": self.title,
            "status": self.status.value,
            "severity": self.severity.value,
            "subject": self.subject,
            "metrics": {k: json_number(v) for k, v in self.metrics.items()},
            "threshold": {
                k: v if isinstance(v, str) else json_number(v) for k, v in self.threshold.items()
            },
            "message": self.message,
            "evidence": dict(self.evidence),
            "tags": list(self.tags),
            "duration_s": round(self.duration_s, 6),
            "waiver": self.waiver.to_dict() if self.waiver else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        waiver = data.get("waiver")
        return cls(
            check_id=str(data["check_id"]),
            title=str(data["title"]),
            status=Status(data["status"]),
            severity=Severity(data["severity"]),
            subject=str(data.get("subject", "")),
            metrics=dict(data.get("metrics", {})),
            threshold=dict(data.get("threshold", {})),
            message=str(data.get("message", "")),
            evidence=dict(data.get("evidence", {})),
            tags=tuple(data.get("tags", ())),
            duration_s=float(data.get("duration_s", 0.0)),
            waiver=Waiver.from_dict(waiver) if waiver else None,
        )

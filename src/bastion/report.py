"""The report of one gate run: findings plus what they are about, and the verdict.

Its JSON form follows the schema ``bastion.report/v1`` shipped in
``bastion/schemas/report.v1.json``; :func:`validate_report_dict` checks a document against it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from bastion.findings import Finding, Severity, Status, Waiver
from bastion.verdict import Verdict

__all__ = ["REPORT_SCHEMA_ID", "DatasetRef", "Report", "load_report_schema", "validate_report_dict"]

REPORT_SCHEMA_ID = "bastion.report/v1"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset the run read: its role, file, content hash and shape."""

    name: str
    path: str | None
    sha256: str
    n_rows: int
    n_columns: int
    target: str | None = None
    sensitive: tuple[str, ...] = ()
    features: tuple[str, ...] | None = None  # the model's input columns, in order

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "n_rows": self.n_rows,
            "n_columns": self.n_columns,
            "target": self.target,
            "sensitive": list(self.sensitive),
        }
        if self.features is not None:
            out["features"] = list(self.features)
        return out


@dataclass(frozen=True)
class Report:
    """Everything a gate run produced.

    ``profiles`` holds aggregate per-column summaries (never raw rows or reservoir samples)
    for the HTML report's histograms. ``waivers`` lists every waiver the policy declared,
    with whether it was active and which findings it covered.
    """

    project: str
    findings: tuple[Finding, ...]
    verdict: Verdict
    created_at: str
    bastion_version: str
    seed: int
    model: Mapping[str, Any] | None = None
    baseline: Mapping[str, Any] | None = None
    datasets: tuple[DatasetRef, ...] = ()
    environment: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    waivers: tuple[Mapping[str, Any], ...] = ()
    profiles: Mapping[str, Any] = field(default_factory=dict)
    policy_path: str | None = None
    raw_rows_allowed: bool = False
    # the feature schema the gate judged the data by (declared or inferred, per column); a
    # release carries it signed, and the gateway validates requests against it
    feature_schema: Mapping[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        """The CLI's exit code: 2 when a check found a policy error while it ran (an
        ``error`` finding from a :class:`~bastion.exceptions.ConfigError`: the same code as
        a policy refused on reading), else the verdict's (0 passed, 1 failed)."""
        for f in self.findings:
            if f.status is Status.ERROR and f.evidence.get("error") == "config":
                return 2
        return self.verdict.exit_code

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def by_status(self, status: Status) -> list[Finding]:
        return [f for f in self.findings if f.status is status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA_ID,
            "bastion_version": self.bastion_version,
            "project": self.project,
            "created_at": self.created_at,
            "seed": self.seed,
            "policy_path": self.policy_path,
            "raw_rows_allowed": self.raw_rows_allowed,
            "model": dict(self.model) if self.model else None,
            "baseline": dict(self.baseline) if self.baseline else None,
            "datasets": [d.to_dict() for d in self.datasets],
            "environment": dict(self.environment),
            "timings": dict(self.timings),
            "verdict": self.verdict.to_dict(),
            "waivers": [dict(w) for w in self.waivers],
            "findings": [f.to_dict() for f in self.findings],
            "profiles": dict(self.profiles),
            "feature_schema": dict(self.feature_schema) if self.feature_schema else None,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        if data.get("schema") != REPORT_SCHEMA_ID:
            raise ValueError(
                f"not a {REPORT_SCHEMA_ID} document (schema is {data.get('schema')!r})"
            )
        v = data["verdict"]
        return cls(
            project=data["project"],
            findings=tuple(Finding.from_dict(f) for f in data["findings"]),
            verdict=Verdict(
                passed=bool(v["passed"]),
                fail_on=Severity(v["fail_on"]),
                reasons=tuple(v["reasons"]),
                counts=dict(v["counts"]),
            ),
            created_at=data["created_at"],
            bastion_version=data["bastion_version"],
            seed=int(data["seed"]),
            model=data.get("model"),
            baseline=data.get("baseline"),
            datasets=tuple(
                DatasetRef(
                    **{
                        **d,
                        "sensitive": tuple(d.get("sensitive", ())),
                        "features": tuple(d["features"]) if d.get("features") is not None else None,
                    }
                )
                for d in data.get("datasets", ())
            ),
            environment=data.get("environment", {}),
            timings=data.get("timings", {}),
            waivers=tuple(data.get("waivers", ())),
            profiles=data.get("profiles", {}),
            policy_path=data.get("policy_path"),
            raw_rows_allowed=bool(data.get("raw_rows_allowed", False)),
            feature_schema=data.get("feature_schema"),
        )


def waiver_entries(
    waivers: Sequence[Waiver], findings: Sequence[Finding], today: str
) -> list[dict[str, Any]]:
    """Each declared waiver with whether it is active and the findings it covered."""
    import datetime as dt

    day = dt.date.fromisoformat(today)
    out = []
    for w in waivers:
        covered = [f"{f.check_id}@{f.subject}" for f in findings if f.waiver == w]
        out.append(w.to_dict() | {"active": w.is_active(day), "applied_to": covered})
    return out


@cache
def load_report_schema() -> dict[str, Any]:
    """The JSON Schema of ``bastion.report/v1`` shipped with the package."""
    text = resources.files("bastion").joinpath("schemas/report.v1.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_report_dict(data: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``data`` does not follow the report schema."""
    import jsonschema

    jsonschema.validate(instance=data, schema=load_report_schema())

"""Hand-built reports for the writer tests: every status, a waiver and plottable evidence."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from bastion.findings import Finding, Severity, Status, Waiver
from bastion.report import DatasetRef, Report
from bastion.verdict import decide

WAIVER = Waiver(
    check_id="DQ005",
    reason="known duplicates in the 2019 extract",
    owner="data-team",
    expires=dt.date(2030, 1, 31),
    subject="dataset:train",
)

RAW_MARKER = "PATIENT-7731"  # a raw-row value that must never reach a report

EVIL = '<script>alert("x")</script> & <b>bold</b>'


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def profile_summary() -> dict[str, Any]:
    """A ``Profile.summary()``-shaped dict: numeric, categorical and unplottable columns.

    ``mean radius`` has decile cut points with open outer bins (``Profile.summary()``'s
    layout: ``len(counts) == len(edges) + 1``); ``open bins`` lists every edge with open ends
    as ``None``; ``note`` has nothing to draw.
    """
    return {
        "n_rows": 200,
        "window_start": None,
        "window_end": None,
        "columns": {
            "mean radius": {
                "kind": "numeric",
                "count": 200,
                "null_count": 0,
                "null_fraction": 0.0,
                "min": 6.98,
                "max": 28.1,
                "mean": 14.1,
                "std": 3.5,
                "quantiles": {"0.5": 13.4},
                "distinct": 180.0,
                "histogram": {
                    "source": "exact",
                    "edges": [10.3, 11.4, 12.0, 12.7, 13.4, 14.1, 15.1, 17.1, 19.5],
                    "counts": [20, 20, 20, 20, 20, 20, 20, 20, 20, 20],
                    "null_count": 0,
                },
            },
            "open bins": {
                "kind": "numeric",
                "count": 200,
                "null_count": 3,
                "min": -1.0,
                "max": 9.0,
                "histogram": {"edges": [None, 0.0, 5.0, None], "counts": [5, 150, 42]},
            },
            "sex": {
                "kind": "categorical",
                "count": 200,
                "null_count": 0,
                "distinct": 2.0,
                "top": [{"value": "F", "count": 120}, {"value": "M", "count": 80}],
                "histogram": None,
            },
            "note": {"kind": "text"},
        },
    }


def make_report(
    *,
    findings: tuple[Finding, ...] | None = None,
    raw_rows_allowed: bool = False,
    required: tuple[str, ...] = ("DQ009",),
    **changes: Any,
) -> Report:
    """A report with findings of every status, a waived failure and plottable evidence."""
    if findings is None:
        findings = (
            Finding(
                "DQ002",
                "Completeness",
                Status.PASS,
                Severity.MEDIUM,
                subject="dataset:train",
                metrics={"null_share": 0.0},
                threshold={"max_null_share": 0.05},
                message="no column exceeds 5% nulls",
                duration_s=0.01,
            ),
            Finding(
                "DQ005",
                "Duplicate rows",
                Status.FAIL,
                Severity.MEDIUM,
                subject="dataset:train",
                metrics={"duplicate_share": 0.08},
                threshold={"max_duplicate_share": 0.01},
                message="8% of rows are duplicates",
                waiver=WAIVER,
            ),
            Finding(
                "DQ008",
                "Label balance",
                Status.WARN,
                Severity.LOW,
                subject="dataset:train",
                metrics={"minority_share": 0.2},
                threshold={"min_minority_share": 0.25},
                message="the minority class is 20% of rows",
            ),
            Finding(
                "MV001",
                "Accuracy",
                Status.FAIL,
                Severity.HIGH,
                subject="model",
                metrics={"accuracy": 0.81, "balanced_accuracy": float("nan")},
                threshold={"min_accuracy": 0.9},
                message=f"accuracy 0.81 is below 0.9 {EVIL}",
                tags=("AML.T0015", "ML01"),
                duration_s=0.25,
            ),
            Finding(
                "MV002",
                "Calibration",
                Status.PASS,
                Severity.MEDIUM,
                subject="model",
                metrics={"ece": 0.04},
                threshold={"max_ece": 0.1},
                message="expected calibration error 0.04",
                evidence={
                    "bins": [
                        {
                            "lower": 0.0,
                            "upper": 0.5,
                            "count": 40,
                            "mean_predicted": 0.2,
                            "fraction_positive": 0.25,
                        },
                        {
                            "lower": 0.5,
                            "upper": 1.0,
                            "count": 60,
                            "mean_predicted": 0.8,
                            "fraction_positive": 0.76,
                        },
                        {
                            "lower": 1.0,
                            "upper": 1.0,
                            "count": 0,
                            "mean_predicted": None,
                            "fraction_positive": None,
                        },
                    ]
                },
            ),
            Finding(
                "MV003",
                "Confusion matrix",
                Status.PASS,
                Severity.INFO,
                subject="model",
                message="per-class recall above 0.8",
                evidence={"labels": ["benign", "malignant"], "matrix": [[50, 3], [2, 45]]},
            ),
            Finding(
                "FA001",
                "Demographic parity",
                Status.FAIL,
                Severity.LOW,
                subject="model",
                metrics={"demographic_parity_difference": 0.4},
                threshold={"max_difference": 0.1},
                message="selection rates differ by 0.4 between groups",
                evidence={
                    "sensitive_features": ["sex"],
                    "by_group": [
                        {
                            "group": "F",
                            "count": 120,
                            "selection_rate": 0.8,
                            "tpr": 0.9,
                            "fpr": 0.2,
                            "precision": 0.85,
                        },
                        {
                            "group": "M",
                            "count": 80,
                            "selection_rate": 0.4,
                            "tpr": 0.7,
                            "fpr": None,
                            "precision": 0.8,
                        },
                    ],
                    "samples": [{"age": 41, "sex": "F", "patient": RAW_MARKER}],
                },
            ),
            Finding(
                "FA002",
                "Equalized odds",
                Status.ERROR,
                Severity.HIGH,
                subject="model",
                message="ValueError: only one class in group M",
            ),
            Finding(
                "XY001",
                "Something else",
                Status.SKIPPED,
                Severity.INFO,
                subject="",
                message="needs predict_proba",
            ),
        )
    verdict = decide(findings, Severity.MEDIUM, required=required)
    base: dict[str, Any] = {
        "project": "diagnosis",
        "findings": findings,
        "verdict": verdict,
        "created_at": "2026-03-01T12:00:00+00:00",
        "bastion_version": "0.1.0",
        "seed": 7,
        "model": {
            "name": "clf",
            "format": "sklearn",
            "path": "models/clf.skops",
            "sha256": _sha("model"),
            "trusted_override": True,
            "details": {"estimator": "LogisticRegression"},
        },
        "datasets": (
            DatasetRef("train", "data/train.csv", _sha("train"), 200, 6, "y", ("sex",)),
            DatasetRef("test", "data/test.csv", _sha("test"), 100, 6, "y", ("sex",)),
        ),
        "environment": {"python": "3.12.1", "numpy": "2.3.0", "platform": "linux"},
        "timings": {"load": 0.5, "checks": 1.25},
        "waivers": (WAIVER.to_dict() | {"active": True, "applied_to": ["DQ005@dataset:train"]},),
        "profiles": {"train": profile_summary()},
        "policy_path": "bastion.yaml",
        "raw_rows_allowed": raw_rows_allowed,
    }
    base.update(changes)
    return Report(**base)


@pytest.fixture
def report_factory() -> Callable[..., Report]:
    return make_report


@pytest.fixture
def report() -> Report:
    return make_report()

"""MV004 slices: performance on each slice of the test set against the overall performance.

What it detects
    A model that works on average but badly for one group: one hospital, one age band, one
    sex. The check slices the test set by each configured column separately, computes the
    metric on every slice and compares the worst judged slice with the whole test set.
Why it matters
    Aggregate metrics hide subgroup failures (hidden stratification); a skewed model harms
    the group it fails and is a target for model-skewing attacks (OWASP ML08).
References
    Oakden-Rayner et al. 2020, "Hidden stratification causes clinically meaningful failures";
    Chung et al. 2019, "Slice Finder"; OWASP ML Top 10 ML08.
Metrics
    ``overall``: the metric on all rows (:func:`~bastion.validation.metrics.compute_metrics`);
    ``worst``: the worst value over slices with at least ``min_slice_size`` rows (smaller
    slices are reported, not judged); ``gap = overall - worst`` for metrics where higher is
    better, ``worst - overall`` for log-loss, Brier and ECE. Categorical columns (and numeric
    ones with at most ``bins`` distinct values) slice by value; other numeric columns by
    ``bins`` quantile bins; missing values form their own slice. Evidence lists each slice's
    column, label, size and metric value (aggregates only, never rows).
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from bastion._names import known_names
from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.exceptions import ConfigError
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.threats import OWASP_MODEL_SKEWING
from bastion.validation.checks._common import config_as
from bastion.validation.metrics import (
    HIGHER_IS_BETTER,
    PROBA_METRICS,
    compute_metrics,
    take,
    validate_metric_name,
)

__all__ = ["SliceConfig", "SlicePerformance", "slice_masks"]


class SliceConfig(CheckConfig):
    """Which columns to slice by, the metric, and when a slice's shortfall fails."""

    columns: list[str] | None = None
    metric: str = "accuracy"
    bins: int = Field(default=4, ge=2, le=100)
    min_slice_size: int = Field(default=30, ge=1)
    max_gap: float = Field(default=0.1, ge=0.0)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return validate_metric_name(value, parameter="checks.validation.slices.metric")


def slice_masks(column: pd.Series, bins: int) -> list[tuple[str, np.ndarray]]:
    """``(label, boolean mask)`` for every non-empty slice of ``column``.

    Example::

        slice_masks(frame["age"], bins=4)   # [("(24.9, 41.0]", mask), ...]
    """
    missing = column.isna().to_numpy()
    out: list[tuple[str, np.ndarray]] = []
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if numeric and column.nunique(dropna=True) > bins:
        cut = pd.qcut(column, q=bins, duplicates="drop")
        for interval in cut.cat.categories:
            mask = (cut == interval).to_numpy()
            if mask.any():
                out.append((str(interval), mask))
    else:
        values: list[Any] = list(column[~missing].unique())
        with contextlib.suppress(TypeError):  # mixed types keep the order of first appearance
            values = sorted(values)
        for value in values:
            out.append((str(value), (column == value).to_numpy() & ~missing))
    if missing.any():
        out.append(("missing", missing))
    return out


@CHECKS.register
class SlicePerformance(Check):
    """Fail when the worst judged slice trails the overall metric by more than ``max_gap``.

    Example::

        cfg = SliceConfig(columns=["sex", "age"], metric="recall", max_gap=0.05)
        finding = SlicePerformance(cfg).execute(ctx)
        finding.evidence["slices"]
    """

    id = "MV004"
    name = "slices"
    title = "Per-slice performance"
    category = "validation"
    scope = Scope.MODEL
    severity = Severity.MEDIUM
    tags = (OWASP_MODEL_SKEWING,)
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    needs_target = True
    Config = SliceConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, SliceConfig)
        if ctx.test is None:
            return self.skip(ctx, "No test dataset in this run.")
        columns = list(cfg.columns or ctx.sensitive_features or ctx.test.sensitive)
        if not columns:
            return self.skip(
                ctx,
                "No slice columns: set checks.validation.slices.columns or declare "
                "sensitive features.",
            )
        frame = ctx.test.frame
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise ConfigError(
                f"checks.validation.slices.columns: column {absent[0]!r} is not in the test "
                f"dataset {ctx.test.name!r}; {known_names(absent[0], frame.columns)}"
            )
        pred = ctx.predictions()
        overall = compute_metrics(pred).get(cfg.metric)
        if overall is None:
            why = (
                "the model has no predict_proba"
                if cfg.metric in PROBA_METRICS and pred.proba is None
                else "it is undefined on this test set"
            )
            return self.skip(ctx, f"Metric {cfg.metric!r} is unavailable: {why}.")
        higher = HIGHER_IS_BETTER[cfg.metric]

        slices: list[dict[str, Any]] = []
        worst: dict[str, Any] | None = None
        worst_value = 0.0
        for column in columns:
            for label, mask in slice_masks(frame[column], cfg.bins):
                size = int(mask.sum())
                value = compute_metrics(take(pred, mask)).get(cfg.metric)
                entry = {"column": column, "slice": label, "size": size, "metric": value}
                entry["judged"] = size >= cfg.min_slice_size and value is not None
                slices.append(entry)
                better = worst is None or (
                    value is not None and (value < worst_value if higher else value > worst_value)
                )
                if entry["judged"] and value is not None and better:
                    worst, worst_value = entry, value
        threshold: dict[str, float | int | str | None] = {
            "max_gap": cfg.max_gap,
            "min_slice_size": cfg.min_slice_size,
            "metric": cfg.metric,
        }
        evidence = {"metric": cfg.metric, "overall": overall, "slices": slices}
        n_judged = sum(1 for s in slices if s["judged"])
        if worst is None:
            return self.finding(
                ctx,
                Status.SKIPPED,
                f"No slice of {', '.join(columns)} has at least min_slice_size "
                f"{cfg.min_slice_size} rows with a defined {cfg.metric}; nothing judged.",
                metrics={"overall": overall, "n_slices": len(slices), "n_judged": 0},
                threshold=threshold,
                evidence=evidence,
            )
        gap = overall - worst_value if higher else worst_value - overall
        failed = gap > cfg.max_gap
        where = f"{worst['column']}={worst['slice']} (n={worst['size']})"
        message = (
            f"Worst slice {where}: {cfg.metric} {worst_value:.4f} vs overall {overall:.4f}; "
            f"gap {gap:.4f} {'exceeds' if failed else 'is within'} max_gap {cfg.max_gap:g} "
            f"({n_judged} of {len(slices)} slices judged)."
        )
        return self.finding(
            ctx,
            Status.FAIL if failed else Status.PASS,
            message,
            metrics={
                "overall": overall,
                "worst_slice": worst_value,
                "gap": gap,
                "n_slices": len(slices),
                "n_judged": n_judged,
            },
            threshold=threshold,
            evidence=evidence,
        )

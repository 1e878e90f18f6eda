"""MV001 performance: the model's test-set metrics against the policy's minimums and maximums.

What it detects
    A model whose accuracy, balanced accuracy, precision, recall, F1 or ROC-AUC fall below
    the policy's minimums, or whose log-loss or Brier score exceed its maximums.
Why it matters
    A release that ships a model worse than the team agreed on is the most common and most
    costly failure of a training pipeline; this check makes the agreement executable in CI.
References
    scikit-learn's metrics (``sklearn.metrics``); Brier 1950; definitions in
    :mod:`bastion.validation.metrics`.
Metrics
    Every metric :func:`~bastion.validation.metrics.compute_metrics` returns (binary problems
    use the positive label; multiclass problems macro averages and one-vs-rest ROC-AUC).
    Probability metrics are absent for models without ``predict_proba``; a limit on an absent
    metric cannot be shown to hold, so it is reported as not judged and fails (fail closed).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.validation.checks._common import config_as
from bastion.validation.metrics import compute_metrics

__all__ = ["Performance", "PerformanceConfig"]

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class PerformanceConfig(CheckConfig):
    """Limits on the test-set metrics; ``None`` (the default) leaves a metric unjudged."""

    min_accuracy: Fraction | None = None
    min_balanced_accuracy: Fraction | None = None
    min_precision: Fraction | None = None
    min_recall: Fraction | None = None
    min_f1: Fraction | None = None
    min_roc_auc: Fraction | None = None
    max_log_loss: float | None = Field(default=None, ge=0.0)
    max_brier: float | None = Field(default=None, ge=0.0, le=2.0)  # multiclass Brier is in [0, 2]


# config field -> (metric, True for a minimum / False for a maximum)
_LIMITS: dict[str, tuple[str, bool]] = {
    "min_accuracy": ("accuracy", True),
    "min_balanced_accuracy": ("balanced_accuracy", True),
    "min_precision": ("precision", True),
    "min_recall": ("recall", True),
    "min_f1": ("f1", True),
    "min_roc_auc": ("roc_auc", True),
    "max_log_loss": ("log_loss", False),
    "max_brier": ("brier", False),
}


@CHECKS.register
class Performance(Check):
    """Fail when any configured metric limit is violated, naming each violation.

    Example::

        check = Performance(PerformanceConfig(min_accuracy=0.9, min_recall=0.95))
        finding = check.execute(CheckContext(test=test, model=adapter))
    """

    id = "MV001"
    name = "performance"
    title = "Model performance"
    category = "validation"
    scope = Scope.MODEL
    severity = Severity.HIGH
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    needs_target = True
    Config = PerformanceConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, PerformanceConfig)
        metrics = compute_metrics(ctx.predictions())
        threshold: dict[str, float | None] = {}
        violations: list[str] = []
        unjudged: list[str] = []
        for field_name, (metric, is_min) in _LIMITS.items():
            limit = getattr(cfg, field_name)
            if limit is None:
                continue
            threshold[field_name] = limit
            value = metrics.get(metric)
            if value is None:
                unjudged.append(metric)
            elif (value < limit) if is_min else (value > limit):
                op = "<" if is_min else ">"
                violations.append(f"{metric} {value:.4f} {op} {field_name} {limit:g}")
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        if violations:
            status, message = Status.FAIL, "Limits violated: " + "; ".join(violations) + "."
        elif not threshold:
            status, message = Status.PASS, f"No limits configured (info only): {summary}."
        else:
            status, message = Status.PASS, f"All {len(threshold)} limit(s) met: {summary}."
        if unjudged:
            note = (
                f" Not judged: {', '.join(unjudged)} (unavailable: the model has no "
                "predict_proba or the metric is undefined on this test set)."
            )
            message += note
            status = Status.FAIL  # a limit nobody can check must not pass the gate
        return self.finding(ctx, status, message, metrics=metrics, threshold=threshold)

"""MV002 calibration: expected calibration error (ECE) of the model's probabilities.

What it detects
    Probabilities that do not mean what they say: among rows given 0.8, far more or far fewer
    than 80% are positive.
Why it matters
    A diagnostic score is read as a risk; downstream thresholds, triage rules and cost
    calculations assume it is calibrated. Accuracy can be high while the probabilities are
    badly over- or under-confident.
References
    Naeini, Cooper and Hauskrecht 2015 (ECE); Guo et al. 2017, "On Calibration of Modern
    Neural Networks" (top-label reliability diagrams).
Metrics
    ``ece = sum_b (n_b / n) |mean(p_b) - mean(y_b)|`` over 10 equal-width bins on [0, 1], the
    last bin including 1.0. Binary: ``p`` is the positive-class probability and ``y`` the
    positive indicator. Multiclass: ``p`` is the top-class probability and ``y`` whether that
    class is correct. ``evidence["bins"]`` lists the non-empty bins (lower, upper, count,
    mean_predicted, fraction_positive) for the report's calibration curve. Skipped when the
    model has no ``predict_proba``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.validation.checks._common import config_as
from bastion.validation.metrics import (
    N_BINS,
    calibration_bins,
    calibration_inputs,
    compute_metrics,
)

__all__ = ["Calibration", "CalibrationConfig"]


class CalibrationConfig(CheckConfig):
    """``max_ece``: the largest acceptable expected calibration error."""

    max_ece: float = Field(default=0.1, ge=0.0, le=1.0)


@CHECKS.register
class Calibration(Check):
    """Fail when the expected calibration error exceeds ``max_ece``.

    Example::

        finding = Calibration(CalibrationConfig(max_ece=0.05)).execute(ctx)
        finding.evidence["bins"][0]["fraction_positive"]
    """

    id = "MV002"
    name = "calibration"
    title = "Probability calibration (ECE)"
    category = "validation"
    scope = Scope.MODEL
    severity = Severity.MEDIUM
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    needs_target = True
    Config = CalibrationConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, CalibrationConfig)
        pred = ctx.predictions()
        inputs = calibration_inputs(pred)
        if inputs is None:
            reason = (
                "the model has no predict_proba"
                if pred.proba is None
                else "the test set holds labels outside the model's classes"
            )
            return self.skip(ctx, f"Calibration needs class probabilities for every row: {reason}.")
        confidence, outcome = inputs
        ece = compute_metrics(pred)["ece"]
        bins = calibration_bins(confidence, outcome, N_BINS)
        kind = "positive-class probability" if pred.is_binary else "top-label confidence"
        failed = ece > cfg.max_ece
        message = (
            f"ECE {ece:.4f} ({N_BINS} equal-width bins on the {kind}) "
            f"{'exceeds' if failed else 'is within'} max_ece {cfg.max_ece:g}."
        )
        return self.finding(
            ctx,
            Status.FAIL if failed else Status.PASS,
            message,
            metrics={"ece": ece},
            threshold={"max_ece": cfg.max_ece},
            evidence={
                "n_bins": N_BINS,
                "binning": kind,
                "bins": [b.to_dict() for b in bins],
            },
        )

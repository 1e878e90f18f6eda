"""MV005 baseline_comparison: is the new model significantly worse than a baseline or champion?

What it detects
    A candidate model that performs worse than the model it replaces (the production
    champion) or than a simple baseline, by more than sampling noise explains.
Why it matters
    A release should never silently regress. Comparing point estimates alone fails builds on
    noise or lets real regressions through; a paired bootstrap on the same test rows
    separates the two.
References
    Efron and Tibshirani 1993, "An Introduction to the Bootstrap" (paired resampling,
    percentile intervals); :mod:`bastion.validation.bootstrap`.
Metrics
    ``new`` and ``baseline``: the metric of each model on the test set
    (:func:`~bastion.validation.metrics.compute_metrics`); ``difference = new - baseline``;
    ``ci_low`` / ``ci_high``: the percentile bootstrap interval of the difference at
    ``confidence``, both models evaluated on the same ``n_resamples`` resamples of rows
    (seeded by the run's seed). For a metric where higher is better the check fails when
    ``ci_high < -margin``; for log-loss, Brier and ECE (lower is better) when
    ``ci_low > margin``. Skipped without a baseline model.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field, field_validator

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.validation.bootstrap import paired_bootstrap
from bastion.validation.checks._common import config_as
from bastion.validation.metrics import (
    HIGHER_IS_BETTER,
    PROBA_METRICS,
    compute_metrics,
    validate_metric_name,
)

__all__ = ["BaselineComparison", "BaselineComparisonConfig"]


class BaselineComparisonConfig(CheckConfig):
    """Metric, bootstrap size and confidence, and the tolerated shortfall ``margin``."""

    metric: str = "accuracy"
    n_resamples: int = Field(default=1000, ge=100, le=100_000)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    margin: float = Field(default=0.0, ge=0.0)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return validate_metric_name(value, parameter="checks.validation.baseline_comparison.metric")


@CHECKS.register
class BaselineComparison(Check):
    """Fail when the new model is significantly worse than ``ctx.baseline``.

    Example::

        ctx = CheckContext(test=test, model=candidate, baseline=champion, seed=7)
        finding = BaselineComparison().execute(ctx)
        finding.metrics["ci_high"]
    """

    id = "MV005"
    name = "baseline_comparison"
    title = "Comparison with the baseline model"
    category = "validation"
    scope = Scope.MODEL
    severity = Severity.HIGH
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    needs_target = True
    Config = BaselineComparisonConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, BaselineComparisonConfig)
        if ctx.baseline is None:
            return self.skip(
                ctx,
                "No baseline model given (no champion or baseline in this run); "
                "nothing to compare.",
            )
        new, base = ctx.predictions(), ctx.predictions("baseline")
        for which, pred in (("model", new), ("baseline", base)):
            if cfg.metric not in compute_metrics(pred):
                why = (
                    "it has no predict_proba"
                    if cfg.metric in PROBA_METRICS and pred.proba is None
                    else "it is undefined on this test set"
                )
                # a comparison the policy asked for but nobody can make fails closed
                return self.finding(
                    ctx,
                    Status.FAIL,
                    f"Cannot compare with the baseline: metric {cfg.metric!r} is unavailable "
                    f"for the {which} ({why}).",
                )
        res = paired_bootstrap(
            new,
            base,
            cfg.metric,
            n_resamples=cfg.n_resamples,
            confidence=cfg.confidence,
            random_state=ctx.rng(self.id),
        )
        higher = HIGHER_IS_BETTER[cfg.metric]
        undefined = math.isnan(res.ci_low) or math.isnan(res.ci_high)
        worse = undefined or (res.ci_high < -cfg.margin if higher else res.ci_low > cfg.margin)
        pct = f"{cfg.confidence:.0%}"
        ci = f"{pct} CI [{res.ci_low:.4f}, {res.ci_high:.4f}]"
        if undefined:
            verdict = "no confidence interval could be computed, so not shown to be no worse"
        elif worse:
            bound = (
                f"upper bound < -margin {cfg.margin:g}"
                if higher
                else f"lower bound > margin {cfg.margin:g}"
            )
            verdict = f"significantly worse than the baseline ({bound})"
        else:
            verdict = "not significantly worse than the baseline"
        message = (
            f"{cfg.metric}: new {res.new:.4f} vs baseline {res.baseline:.4f}, difference "
            f"{res.difference:+.4f}, {ci} over {res.n_valid} paired resamples: {verdict}."
        )
        return self.finding(
            ctx,
            Status.FAIL if worse else Status.PASS,
            message,
            metrics={
                "new": res.new,
                "baseline": res.baseline,
                "difference": res.difference,
                "ci_low": res.ci_low,
                "ci_high": res.ci_high,
            },
            threshold={
                "metric": cfg.metric,
                "margin": cfg.margin,
                "confidence": cfg.confidence,
                "n_resamples": cfg.n_resamples,
            },
            evidence={"n_valid_resamples": res.n_valid, "higher_is_better": higher},
        )

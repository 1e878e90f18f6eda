"""FA001 demographic_parity: do the groups receive the positive outcome at the same rate?

What it detects
    A model that selects (predicts the positive label for) some groups of a sensitive
    feature, or of an intersection of several, more often than others.
Why it matters
    Unequal selection rates are the most direct form of group disparity: a diagnostic model
    that refers one sex for follow-up far more often than the other allocates care unequally,
    whatever the cause. Regulators and auditors ask for this figure first.
References
    Fairlearn user guide, "Disparity metrics" (``fairlearn.metrics.demographic_parity_*``);
    Dwork et al. 2012, "Fairness through awareness" (statistical parity).
Metrics
    ``demographic_parity_difference`` = max - min over groups of the selection rate
    ``P[h(X) = 1 | A = a]``; ``demographic_parity_ratio`` = min / max (NaN when no group is
    selected); both identical to Fairlearn's. ``*_ci_low`` / ``*_ci_high``: percentile
    bootstrap interval (``bootstrap.n_resamples`` row resamples). Fails when the difference
    exceeds ``max_difference`` (default 0.1) or, when set, the ratio is below ``min_ratio``.
"""

from __future__ import annotations

from pydantic import Field

from bastion.checks import CHECKS, config_as
from bastion.fairness.checks._base import FairnessCheck, FairnessConfig, Limit
from bastion.fairness.metrics import GroupMetrics

__all__ = ["DemographicParity", "DemographicParityConfig"]


class DemographicParityConfig(FairnessConfig):
    """Largest tolerated selection-rate gap and, optionally, the smallest ratio."""

    max_difference: float = Field(default=0.1, ge=0, le=1)
    min_ratio: float | None = Field(default=None, ge=0, le=1)


@CHECKS.register
class DemographicParity(FairnessCheck):
    """Fail when group selection rates differ by more than ``max_difference``.

    Example::

        ctx = CheckContext(test=test, model=model, sensitive_features=("sex", "age_band"))
        finding = DemographicParity(DemographicParityConfig(max_difference=0.05)).execute(ctx)
        finding.metrics["demographic_parity_difference"]
    """

    id = "FA001"
    name = "demographic_parity"
    title = "Demographic parity"
    Config = DemographicParityConfig

    def measure(self, gm: GroupMetrics) -> dict[str, float]:
        return {
            "demographic_parity_difference": gm.metric("demographic_parity_difference"),
            "demographic_parity_ratio": gm.metric("demographic_parity_ratio"),
        }

    def limits(self) -> list[Limit]:
        cfg = config_as(self.config, DemographicParityConfig)
        out = [Limit("demographic_parity_difference", "max", "max_difference", cfg.max_difference)]
        if cfg.min_ratio is not None:
            out.append(Limit("demographic_parity_ratio", "min", "min_ratio", cfg.min_ratio))
        return out

    def interval_metrics(self) -> tuple[str, ...]:
        return ("demographic_parity_difference", "demographic_parity_ratio")

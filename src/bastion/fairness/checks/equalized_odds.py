"""FA002 equalized_odds: are the model's errors spread equally across groups?

What it detects
    Groups whose true positive rate (sick patients correctly flagged) or false positive rate
    (healthy patients wrongly flagged) differs from other groups'.
Why it matters
    Equal selection rates can hide unequal mistakes. Equalized odds asks that, given the true
    outcome, the prediction does not depend on the group: a model that misses the disease
    more often in one group fails it even when its overall accuracy looks fine.
References
    Hardt, Price and Srebro 2016, "Equality of Opportunity in Supervised Learning";
    Fairlearn ``fairlearn.metrics.equalized_odds_difference`` / ``equalized_odds_ratio``.
Metrics
    ``true_positive_rate_difference`` and ``false_positive_rate_difference``: max - min over
    groups of ``TP / (TP + FN)`` and ``FP / (FP + TN)`` (0 for a group without positives,
    respectively negatives, as in Fairlearn); ``equalized_odds_difference`` = the larger of
    the two (``agg: mean``: their mean); ``equalized_odds_ratio`` = the smaller of the two
    min / max ratios (``agg: mean``: their mean); all identical to Fairlearn's. Fails when
    the difference exceeds ``max_difference`` (default 0.1) or, when set, the ratio is below
    ``min_ratio``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bastion.checks import CHECKS, config_as
from bastion.fairness.checks._base import FairnessCheck, FairnessConfig, Limit
from bastion.fairness.metrics import GroupMetrics

__all__ = ["EqualizedOdds", "EqualizedOddsConfig"]


class EqualizedOddsConfig(FairnessConfig):
    """Largest tolerated TPR/FPR gap, optional smallest ratio, and how to combine the two."""

    max_difference: float = Field(default=0.1, ge=0, le=1)
    min_ratio: float | None = Field(default=None, ge=0, le=1)
    agg: Literal["worst_case", "mean"] = "worst_case"


@CHECKS.register
class EqualizedOdds(FairnessCheck):
    """Fail when group TPRs or FPRs differ by more than ``max_difference``.

    Example::

        ctx = CheckContext(test=test, model=model, sensitive_features=("sex",))
        finding = EqualizedOdds(EqualizedOddsConfig(agg="mean")).execute(ctx)
        finding.metrics["equalized_odds_difference"]
    """

    id = "FA002"
    name = "equalized_odds"
    title = "Equalized odds"
    Config = EqualizedOddsConfig
    rates = ("tpr", "fpr")

    def measure(self, gm: GroupMetrics) -> dict[str, float]:
        agg = config_as(self.config, EqualizedOddsConfig).agg
        return {
            "equalized_odds_difference": gm.metric("equalized_odds_difference", agg=agg),
            "equalized_odds_ratio": gm.metric("equalized_odds_ratio", agg=agg),
            "true_positive_rate_difference": gm.difference("tpr"),
            "false_positive_rate_difference": gm.difference("fpr"),
        }

    def limits(self) -> list[Limit]:
        cfg = config_as(self.config, EqualizedOddsConfig)
        out = [Limit("equalized_odds_difference", "max", "max_difference", cfg.max_difference)]
        if cfg.min_ratio is not None:
            out.append(Limit("equalized_odds_ratio", "min", "min_ratio", cfg.min_ratio))
        return out

    def interval_metrics(self) -> tuple[str, ...]:
        return ("equalized_odds_difference", "equalized_odds_ratio")

    def interval_options(self) -> dict[str, Any]:
        return {"agg": config_as(self.config, EqualizedOddsConfig).agg}

    def threshold(self) -> dict[str, float | int | str | None]:
        return {**super().threshold(), "agg": config_as(self.config, EqualizedOddsConfig).agg}

"""FA003 equal_opportunity: do qualified members of every group get the positive outcome?

What it detects
    Groups whose true positive rate (share of actual positives the model flags) is lower
    than other groups'.
Why it matters
    Equal opportunity is the half of equalized odds that concerns the people who should be
    selected: in a diagnostic setting, patients with the disease who are missed more often
    in one group than in another. It tolerates unequal false positive rates.
References
    Hardt, Price and Srebro 2016, "Equality of Opportunity in Supervised Learning";
    Fairlearn ``fairlearn.metrics.equal_opportunity_difference`` / ``equal_opportunity_ratio``.
Metrics
    ``equal_opportunity_difference`` = max - min over groups of ``TP / (TP + FN)`` (0 for a
    group without actual positives, as in Fairlearn); ``equal_opportunity_ratio`` = min / max
    (NaN when every group's TPR is 0); both identical to Fairlearn's. Fails when the
    difference exceeds ``max_difference`` (default 0.1) or, when set, the ratio is below
    ``min_ratio``.
"""

from __future__ import annotations

from pydantic import Field

from bastion.checks import CHECKS, config_as
from bastion.fairness.checks._base import FairnessCheck, FairnessConfig, Limit
from bastion.fairness.metrics import GroupMetrics

__all__ = ["EqualOpportunity", "EqualOpportunityConfig"]


class EqualOpportunityConfig(FairnessConfig):
    """Largest tolerated TPR gap and, optionally, the smallest TPR ratio."""

    max_difference: float = Field(default=0.1, ge=0, le=1)
    min_ratio: float | None = Field(default=None, ge=0, le=1)


@CHECKS.register
class EqualOpportunity(FairnessCheck):
    """Fail when group true positive rates differ by more than ``max_difference``.

    Example::

        ctx = CheckContext(test=test, model=model, sensitive_features=("sex",))
        finding = EqualOpportunity().execute(ctx)
        finding.metrics["equal_opportunity_difference"]
    """

    id = "FA003"
    name = "equal_opportunity"
    title = "Equal opportunity"
    Config = EqualOpportunityConfig
    rates = ("tpr",)

    def measure(self, gm: GroupMetrics) -> dict[str, float]:
        return {
            "equal_opportunity_difference": gm.metric("equal_opportunity_difference"),
            "equal_opportunity_ratio": gm.metric("equal_opportunity_ratio"),
        }

    def limits(self) -> list[Limit]:
        cfg = config_as(self.config, EqualOpportunityConfig)
        out = [Limit("equal_opportunity_difference", "max", "max_difference", cfg.max_difference)]
        if cfg.min_ratio is not None:
            out.append(Limit("equal_opportunity_ratio", "min", "min_ratio", cfg.min_ratio))
        return out

    def interval_metrics(self) -> tuple[str, ...]:
        return ("equal_opportunity_difference", "equal_opportunity_ratio")

"""FA004 disparate_impact: the four-fifths rule on selection rates.

What it detects
    A group whose selection rate is below four fifths (``min_ratio``, default 0.8) of the
    most-selected group's.
Why it matters
    The four-fifths rule of the US Uniform Guidelines on Employee Selection Procedures
    (29 CFR 1607.4(D)) is the classic legal screen for adverse impact and the figure many
    compliance reviews ask for. It is a ratio, so it flags disparities among rare outcomes
    that a difference threshold lets through.
References
    29 CFR 1607.4(D) (1978); Feldman et al. 2015, "Certifying and removing disparate
    impact"; Fairlearn ``fairlearn.metrics.demographic_parity_ratio``.
Metrics
    ``demographic_parity_ratio`` = min / max over groups of the selection rate
    ``P[h(X) = 1 | A = a]`` (Fairlearn's definition; NaN, and no failure, when no group is
    selected at all); ``demographic_parity_difference`` for context. Fails when the ratio is
    below ``min_ratio``.
"""

from __future__ import annotations

from pydantic import Field

from bastion.checks import CHECKS, config_as
from bastion.fairness.checks._base import FairnessCheck, FairnessConfig, Limit
from bastion.fairness.metrics import GroupMetrics

__all__ = ["DisparateImpact", "DisparateImpactConfig"]


class DisparateImpactConfig(FairnessConfig):
    """The smallest tolerated ratio of selection rates (0.8: the four-fifths rule)."""

    min_ratio: float = Field(default=0.8, ge=0, le=1)


@CHECKS.register
class DisparateImpact(FairnessCheck):
    """Fail when the lowest group selection rate is below ``min_ratio`` of the highest.

    Example::

        ctx = CheckContext(test=test, model=model, sensitive_features=("sex",))
        finding = DisparateImpact().execute(ctx)
        finding.metrics["demographic_parity_ratio"]
    """

    id = "FA004"
    name = "disparate_impact"
    title = "Disparate impact (four-fifths rule)"
    Config = DisparateImpactConfig

    def measure(self, gm: GroupMetrics) -> dict[str, float]:
        return {
            "demographic_parity_ratio": gm.metric("demographic_parity_ratio"),
            "demographic_parity_difference": gm.metric("demographic_parity_difference"),
        }

    def limits(self) -> list[Limit]:
        cfg = config_as(self.config, DisparateImpactConfig)
        return [Limit("demographic_parity_ratio", "min", "min_ratio", cfg.min_ratio)]

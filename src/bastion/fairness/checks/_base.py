"""What the fairness checks share: their options, the data they read and their evidence.

Every fairness check (FA001-FA004) measures group metrics once with
:func:`bastion.fairness.metrics.group_metrics` on the shared test-set predictions
(``ctx.predictions()``), grouped by the sensitive features (every observed combination of
them, as Fairlearn does), adds percentile bootstrap intervals seeded by ``ctx.rng(check id)``,
compares its metrics with the policy's limits and reports the per-group table as evidence::

    {"sensitive_features": [...], "by_group": GroupMetrics.to_records(),
     "confidence_intervals": {metric: [low, high]}, "small_groups": [...]}

Every group takes part in the differences and ratios, as in Fairlearn; groups smaller than
``min_group_size`` only turn a pass into a warning, because their rates are too noisy to trust.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion._names import known_names
from bastion.checks import Check, CheckConfig, CheckContext, Scope, config_as
from bastion.exceptions import DataError
from bastion.fairness.metrics import ConfidenceInterval, GroupMetrics, group_metrics
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability

__all__ = ["BootstrapConfig", "FairnessCheck", "FairnessConfig", "Limit"]


MISSING_COLUMNS = (
    "sensitive feature column(s) {missing} not found in test dataset {dataset!r}; {columns}"
)


class BootstrapConfig(BaseModel):
    """Bootstrap options; ``n_resamples: 0`` (or ``bootstrap: false``) disables intervals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_resamples: int = Field(default=1000, ge=0, le=1_000_000)
    confidence: float = Field(default=0.95, gt=0, lt=1)


class FairnessConfig(CheckConfig):
    """Options every fairness check accepts."""

    sensitive_features: tuple[str, ...] | None = None  # None: the policy's data.sensitive_features
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    min_group_size: int = Field(default=30, ge=0)

    @field_validator("sensitive_features", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("bootstrap", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `bootstrap: false` / `bootstrap: 0` disable it, `bootstrap: 500` sets the resamples
        if isinstance(value, bool):
            return {"n_resamples": 1000 if value else 0}
        if isinstance(value, int):
            return {"n_resamples": value}
        return value


@dataclass(frozen=True)
class Limit:
    """One policy limit: ``metric`` must be ``<= value`` (``max``) or ``>= value`` (``min``)."""

    metric: str
    kind: Literal["max", "min"]
    option: str  # the policy option that set it, for the message and the threshold block
    value: float

    def violated(self, measured: float) -> bool:
        """True when the limit is broken or cannot be judged.

        An undefined (NaN) metric, e.g. a ratio when no group is ever selected, cannot show
        that the limit holds, so the gate fails closed on it.
        """
        if math.isnan(measured):
            return True
        return measured > self.value if self.kind == "max" else measured < self.value


_RATE_LABELS = {
    "selection_rate": "Selection rate",
    "tpr": "True positive rate",
    "fpr": "false positive rate",
    "precision": "precision",
}


def _fmt(value: float) -> str:
    return "undefined" if math.isnan(value) else f"{value:.4f}"


class FairnessCheck(Check):
    """Base of FA001-FA004: subclasses name their metrics and limits."""

    category = "fairness"
    scope = Scope.MODEL
    severity = Severity.HIGH
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    needs_target = True
    needs_sensitive = True
    Config: ClassVar[type[CheckConfig]] = FairnessConfig

    # the rates whose extreme groups the message names
    rates: ClassVar[tuple[str, ...]] = ("selection_rate",)

    def measure(self, gm: GroupMetrics) -> dict[str, float]:
        """The check's metrics, by Fairlearn name (plus any helper figures)."""
        raise NotImplementedError

    def limits(self) -> list[Limit]:
        """The policy limits the metrics are judged against."""
        raise NotImplementedError

    def interval_metrics(self) -> tuple[str, ...]:
        """The metrics that get bootstrap intervals."""
        return tuple(limit.metric for limit in self.limits())

    def interval_options(self) -> dict[str, Any]:
        """Extra keyword arguments of ``GroupMetrics.bootstrap_ci`` (e.g. ``agg``)."""
        return {}

    def threshold(self) -> dict[str, float | int | str | None]:
        """The threshold block of the finding (every limit option, set or not)."""
        return {limit.option: limit.value for limit in self.limits()}

    # -- the shared run -------------------------------------------------------------------
    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, FairnessConfig)
        features = tuple(cfg.sensitive_features or ctx.sensitive_features)
        if not features:
            return self.skip(
                ctx,
                "No sensitive features configured (set data.sensitive_features or this "
                "check's sensitive_features); fairness cannot be measured.",
            )
        if ctx.model is None or ctx.test is None:
            return self.skip(ctx, "Fairness checks need a model and a test dataset.")
        frame = ctx.test.frame
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise DataError(
                MISSING_COLUMNS.format(
                    missing=missing,
                    dataset=ctx.test.name,
                    columns=known_names(missing[0], frame.columns),
                )
            )
        pred = ctx.predictions()
        if pred.is_binary:
            y_true, y_pred, pos_label = pred.y_true, pred.y_pred, pred.positive_label
        elif ctx.positive_label is not None:
            # one class against the rest, as the policy asked
            y_true, y_pred, pos_label = pred.y_true_binary, pred.y_pred_binary, 1
        else:
            return self.skip(
                ctx,
                f"The model has {len(pred.classes)} classes; group fairness metrics compare a "
                "positive outcome: set positive_label to judge one class against the rest.",
            )
        gm = group_metrics(y_true, y_pred, frame[list(features)], pos_label=pos_label)
        measured = self.measure(gm)

        intervals: dict[str, ConfidenceInterval] = {}
        if cfg.bootstrap.n_resamples > 0:
            intervals = gm.bootstrap_ci(
                self.interval_metrics(),
                n_resamples=cfg.bootstrap.n_resamples,
                confidence=cfg.bootstrap.confidence,
                random_state=ctx.rng(self.id),
                **self.interval_options(),
            )
        metrics: dict[str, float | int | None] = dict(measured)
        for name, ci in intervals.items():
            metrics[f"{name}_ci_low"] = ci.low
            metrics[f"{name}_ci_high"] = ci.high
        metrics["n_groups"] = gm.n_groups

        broken = [lim for lim in self.limits() if lim.violated(measured[lim.metric])]
        small = gm.small_groups(cfg.min_group_size)
        if broken:
            status = Status.FAIL
        elif small:
            status = Status.WARN
        else:
            status = Status.PASS
        message = self._message(gm, features, measured, intervals, broken, small, cfg)
        return self.finding(
            ctx,
            status,
            message,
            metrics=metrics,
            threshold={**self.threshold(), "min_group_size": cfg.min_group_size},
            evidence={
                "sensitive_features": list(features),
                "by_group": gm.to_records(),
                "confidence_intervals": {
                    name: [_json_float(ci.low), _json_float(ci.high)]
                    for name, ci in intervals.items()
                },
                "small_groups": small,
            },
        )

    def _message(
        self,
        gm: GroupMetrics,
        features: Sequence[str],
        measured: dict[str, float],
        intervals: dict[str, ConfidenceInterval],
        broken: list[Limit],
        small: list[str],
        cfg: FairnessConfig,
    ) -> str:
        over = ", ".join(features)
        parts = []
        for limit in self.limits():
            value = measured[limit.metric]
            text = f"{limit.metric} {_fmt(value)}"
            ci = intervals.get(limit.metric)
            if ci is not None and not math.isnan(ci.low):
                text += f" ({ci.confidence:.0%} CI [{ci.low:.4f}, {ci.high:.4f}])"
            if limit in broken and math.isnan(value):
                text += f" so {limit.option} {limit.value:g} cannot be shown to hold"
            elif limit in broken:
                word = "above" if limit.kind == "max" else "below"
                text += f" is {word} {limit.option} {limit.value:g}"
            parts.append(text)
        undefined = any(math.isnan(measured[lim.metric]) for lim in broken)
        verdict = "Cannot judge fairness" if undefined else "Unfair" if broken else "Within limits"
        message = f"{verdict} across {gm.n_groups} groups of {over}: " + "; ".join(parts) + "."
        spans = []
        for rate in self.rates:
            values = np.asarray(getattr(gm, rate))
            lo, hi = int(np.argmin(values)), int(np.argmax(values))
            label = _RATE_LABELS[rate]
            if values[lo] == values[hi]:
                spans.append(f"{label} is {values[lo]:.4f} in every group")
            else:
                spans.append(
                    f"{label} ranges from {values[lo]:.4f} ({gm.groups[lo]}) to "
                    f"{values[hi]:.4f} ({gm.groups[hi]})"
                )
        message += " " + "; ".join(spans) + "."
        if small:
            shown = ", ".join(small[:5]) + (f" and {len(small) - 5} more" if len(small) > 5 else "")
            message += (
                f" Note: {len(small)} group(s) have fewer than {cfg.min_group_size} rows "
                f"({shown}); their rates are noisy."
            )
        return message


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None

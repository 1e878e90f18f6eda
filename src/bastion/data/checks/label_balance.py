"""DQ008 label_balance: the share of the rarest class of the target.

Why it matters: a model trained on a target whose minority class is rare learns to predict
the majority and still scores a high accuracy; a minority class that shrank since the last
release can also be the trace of a label-flipping or row-removal poisoning attempt (MITRE
ATLAS AML.T0020, OWASP ML02).

Metric definitions (over rows with a non-null label):

- ``minority_fraction``: rows of the rarest class / labelled rows; compared with
  ``min_minority_fraction`` scaled by ``2 / n_classes`` (never up): the limit is written for
  a binary target, and a balanced target of k classes has shares of 1/k, so ten balanced
  classes (10% each) pass the default 10% (limit 2%). A single class has a fraction of 0.
- ``majority_fraction``: rows of the most frequent class / labelled rows.
- ``imbalance_ratio``: majority count / minority count (Deepchecks' class imbalance ratio
  is its inverse).
- ``n_classes``: distinct labels. A target with more than ``max_classes`` distinct values
  looks continuous (regression) and the check is skipped.

Counts come from the profile's exact category counts when the target is categorical, else
from one ``value_counts`` of the target column.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import (
    ATLAS_POISON_TRAINING_DATA,
    OWASP_DATA_POISONING,
    config_of,
    fraction,
    profile_of,
)
from bastion.findings import Finding, Severity, Status

__all__ = ["LabelBalance", "LabelBalanceConfig"]


class LabelBalanceConfig(CheckConfig):
    """Thresholds of DQ008."""

    min_minority_fraction: float = Field(
        default=0.1, ge=0, le=1, description="smallest allowed share of the rarest class"
    )
    max_classes: int = Field(
        default=50, ge=2, le=100_000, description="more distinct labels: treated as regression"
    )


@CHECKS.register
class LabelBalance(Check):
    """Flag a target whose rarest class is below ``min_minority_fraction``.

    Example::

        LabelBalance(LabelBalanceConfig(min_minority_fraction=0.05)).run(ctx).metrics
    """

    id = "DQ008"
    name = "label_balance"
    title = "Label balance"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.MEDIUM
    tags = (ATLAS_POISON_TRAINING_DATA, OWASP_DATA_POISONING)
    needs_target = True
    Config: ClassVar[type[CheckConfig]] = LabelBalanceConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, LabelBalanceConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        target = ds.target
        if target is None:
            return self.skip(ctx, f"dataset {ds.name!r} has no target column")
        col = profile_of(ctx, ds).columns.get(str(target))
        counts = dict(col.category_counts) if col is not None and col.category_counts else None
        if counts is None:
            vc = ds.frame[target].value_counts(dropna=True)
            counts = {str(k): int(v) for k, v in vc.items()}
        counts = {k: v for k, v in counts.items() if v > 0}
        labelled = sum(counts.values())
        if not labelled:
            return self.skip(ctx, f"target {target!r} has no non-null label")
        if len(counts) > config.max_classes:
            return self.skip(
                ctx,
                f"target {target!r} has {len(counts)} distinct values (more than max_classes="
                f"{config.max_classes}); it looks continuous",
            )
        ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
        minority_label, minority = ordered[0]
        majority_label, majority = ordered[-1]
        if len(counts) < 2:
            minority_share = 0.0
            ratio = None
        else:
            minority_share = fraction(minority, labelled)
            ratio = majority / minority
        majority_share = fraction(majority, labelled)
        limit = config.min_minority_fraction * min(1.0, 2.0 / max(len(counts), 1))
        failed = minority_share < limit
        if len(counts) < 2:
            message = f"target {target!r} holds a single class"
        else:
            message = (
                f"rarest class is {minority_share:.2%} of {labelled} labelled rows "
                f"(most frequent {majority_share:.2%}); needs at least {limit:.2%}"
                + (f" ({len(counts)} classes)" if len(counts) > 2 else "")
            )
        return self.finding(
            ctx,
            Status.FAIL if failed else Status.PASS,
            message,
            metrics={
                "n_classes": len(counts),
                "labelled_rows": labelled,
                "minority_fraction": minority_share,
                "majority_fraction": majority_share,
                "imbalance_ratio": ratio,
            },
            threshold={
                "min_minority_fraction": config.min_minority_fraction,
                "applied_limit": limit,
            },
            evidence={
                "class_counts": dict(sorted(counts.items())),
                "minority_class": minority_label,
                "majority_class": majority_label,
            },
        )

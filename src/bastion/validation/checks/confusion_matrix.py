"""MV003 confusion_matrix: per-class recall and the positive class's false-negative rate.

What it detects
    A class the model rarely gets right although the overall accuracy looks fine, and (for a
    diagnostic model) too many missed positives: sick patients classified healthy.
Why it matters
    Overall metrics average over classes; a rare class, often the one that matters, can be
    ignored by the model without moving accuracy. In a diagnostic setting a false negative
    usually costs far more than a false positive.
References
    scikit-learn ``confusion_matrix``; Saito and Rehmsmeier 2015 on imbalanced evaluation.
Metrics
    ``recall[label] = TP_label / rows with y_true == label`` for every label with rows;
    ``min_class_recall`` its minimum; ``false_negative_rate = FN / (TP + FN)`` of the positive
    class (binary problems, or multiclass ones where the policy names a positive label).
    ``evidence`` holds ``labels`` and ``matrix`` (rows true, columns predicted). Without
    thresholds (the default) the check is informational and passes.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.validation.checks._common import config_as, json_label
from bastion.validation.metrics import confusion

__all__ = ["ConfusionMatrix", "ConfusionMatrixConfig"]

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ConfusionMatrixConfig(CheckConfig):
    """Optional limits: the lowest per-class recall and the highest false-negative rate."""

    min_class_recall: Fraction | None = None
    max_false_negative_rate: Fraction | None = None


@CHECKS.register
class ConfusionMatrix(Check):
    """Report the confusion matrix; fail on a class recall or false-negative rate limit.

    Example::

        cfg = ConfusionMatrixConfig(max_false_negative_rate=0.05)
        finding = ConfusionMatrix(cfg).execute(ctx)
        finding.evidence["matrix"]
    """

    id = "MV003"
    name = "confusion_matrix"
    title = "Confusion matrix and per-class recall"
    category = "validation"
    scope = Scope.MODEL
    severity = Severity.MEDIUM
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    needs_target = True
    Config = ConfusionMatrixConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, ConfusionMatrixConfig)
        pred = ctx.predictions()
        labels, matrix = confusion(pred)
        support = matrix.sum(axis=1)
        metrics: dict[str, float | int | None] = {}
        recalls: dict[str, float] = {}
        for i, label in enumerate(labels):
            if support[i] > 0:
                recalls[str(label)] = float(matrix[i, i] / support[i])
                metrics[f"recall[{label}]"] = recalls[str(label)]
        worst_label = min(recalls, key=lambda k: recalls[k]) if recalls else None
        metrics["min_class_recall"] = recalls[worst_label] if worst_label is not None else None

        fnr: float | None = None
        positive = pred.positive_label if pred.is_binary else ctx.positive_label
        if positive is not None:
            hits = np.flatnonzero(labels == positive)
            if hits.size and support[hits[0]] > 0:
                p = int(hits[0])
                fnr = float((support[p] - matrix[p, p]) / support[p])
            metrics["false_negative_rate"] = fnr

        threshold = {
            k: v
            for k, v in (
                ("min_class_recall", cfg.min_class_recall),
                ("max_false_negative_rate", cfg.max_false_negative_rate),
            )
            if v is not None
        }
        violations: list[str] = []
        unjudged: list[str] = []
        floor = cfg.min_class_recall
        if floor is not None and worst_label is not None and recalls[worst_label] < floor:
            low = sorted(k for k, v in recalls.items() if v < floor)
            violations.append(
                f"recall below min_class_recall {floor:g} for class(es) "
                + ", ".join(f"{k} ({recalls[k]:.4f})" for k in low)
            )
        if cfg.max_false_negative_rate is not None:
            if fnr is None:
                unjudged.append(
                    "false_negative_rate (no positive label for a multiclass model, or no "
                    "positive rows in the test set)"
                )
            elif fnr > cfg.max_false_negative_rate:
                violations.append(
                    f"false-negative rate of class {positive} {fnr:.4f} > "
                    f"max_false_negative_rate {cfg.max_false_negative_rate:g}"
                )

        parts = []
        if worst_label is not None:
            parts.append(f"lowest class recall {recalls[worst_label]:.4f} (class {worst_label})")
        if fnr is not None:
            parts.append(f"false-negative rate of class {positive} {fnr:.4f}")
        summary = "; ".join(parts) or "no class has rows"
        if violations:
            status, message = Status.FAIL, "; ".join(violations) + "."
        elif threshold:
            status, message = Status.PASS, f"Within limits: {summary}."
        else:
            status, message = Status.PASS, f"Info only (no limits configured): {summary}."
        if unjudged:
            message += " Not judged: " + "; ".join(unjudged) + "."
            status = Status.FAIL  # a configured limit that cannot be checked fails closed
        evidence = {
            "labels": [json_label(label) for label in labels],
            "matrix": matrix.astype(int).tolist(),
        }
        return self.finding(
            ctx, status, message, metrics=metrics, threshold=threshold, evidence=evidence
        )

"""Per-sample attack results and the metrics reports carry, under stable names.

Metric names are part of the report format (``clean_accuracy``, ``robust_accuracy``,
``attack_success_rate``, ``median_perturbation``, ``median_queries``, ``fidelity``, ``auc``,
``tpr_at_1pct_fpr``, ``tpr_at_0.1pct_fpr``, ``advantage``, ``precision``, ``recall``); see
REFERENCE.md "Attack metrics" for their definitions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EvasionResult", "low_fpr_metrics", "merge_worst_case"]


@dataclass(frozen=True)
class EvasionResult:
    """What one evasion attack (or an ensemble) did to each point.

    Attributes
    ----------
    attack:
        The attack's name (``pgd``, ``apgd-ce``, ``square``, ``auto`` ...).
    x_adv:
        The best adversarial input found per point (the original where none was found),
        feasible under the constraints, in the model's input space.
    y_true, clean_pred, adv_pred:
        Labels, predictions on the originals and on ``x_adv``.
    success:
        Per point: correct before the attack and misclassified (untargeted) or sent to the
        target (targeted) at ``x_adv`` within ``eps``.
    perturbation:
        Per point, ``||x_adv - x||_p`` in eps units (std units for tabular data); NaN where
        the attack did not succeed.
    queries:
        Per point, model calls spent on it (initialisation and success checks included).
    eps, norm:
        The threat model: radius and ``"inf"`` or ``"2"``.
    elapsed_s:
        Wall time.
    stopped:
        Why the attack stopped early (``query budget``, ``time budget``, ``interrupted``)
        or None when it ran to completion.
    extra:
        Attack-specific diagnostics (gradient statistics, restarts ...), JSON-compatible.
    """

    attack: str
    x_adv: np.ndarray
    y_true: np.ndarray
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    success: np.ndarray
    perturbation: np.ndarray
    queries: np.ndarray
    eps: float
    norm: str
    elapsed_s: float
    stopped: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def clean_correct(self) -> np.ndarray:
        return np.asarray(self.clean_pred == self.y_true)

    @property
    def robust(self) -> np.ndarray:
        """Correct before the attack and not broken by it."""
        robust: np.ndarray = self.clean_correct & ~self.success
        return robust

    def metrics(self) -> dict[str, float | int | None]:
        """The stable metric names of REFERENCE.md, for findings and JSON output."""
        n = len(self.y_true)
        correct = self.clean_correct
        attacked = int(correct.sum())
        ok = self.perturbation[self.success]
        q = self.queries
        return {
            "n_points": n,
            "clean_accuracy": _share(int(correct.sum()), n),
            "robust_accuracy": _share(int(self.robust.sum()), n),
            "attack_success_rate": _share(int(self.success.sum()), attacked),
            "attacked_points": attacked,
            "median_perturbation": float(np.median(ok)) if ok.size else None,
            "mean_perturbation": float(np.mean(ok)) if ok.size else None,
            "median_queries": float(np.median(q)) if q.size else None,
            "max_queries": int(q.max()) if q.size else None,
            "eps": self.eps,
            "time_s": round(self.elapsed_s, 6),
        }


def merge_worst_case(results: list[EvasionResult], name: str = "auto") -> EvasionResult:
    """Per point, the first attack in ``results`` that broke it (robust accuracy is the
    per-point worst case over the suite); queries add up over the attacks that ran."""
    if not results:
        raise ValueError("merge_worst_case needs at least one result")
    first = results[0]
    x_adv = first.x_adv.copy()
    adv_pred = first.adv_pred.copy()
    success = first.success.copy()
    perturbation = first.perturbation.copy()
    queries = first.queries.astype(np.int64).copy()
    for later in results[1:]:
        newly = later.success & ~success
        x_adv[newly] = later.x_adv[newly]
        adv_pred[newly] = later.adv_pred[newly]
        perturbation[newly] = later.perturbation[newly]
        success |= later.success
        queries += later.queries.astype(np.int64)
    stopped = next((r.stopped for r in results if r.stopped), None)
    return EvasionResult(
        attack=name,
        x_adv=x_adv,
        y_true=first.y_true,
        clean_pred=first.clean_pred,
        adv_pred=adv_pred,
        success=success,
        perturbation=perturbation,
        queries=queries,
        eps=first.eps,
        norm=first.norm,
        elapsed_s=sum(r.elapsed_s for r in results),
        stopped=stopped,
        extra={"attacks": [r.attack for r in results]},
    )


def low_fpr_metrics(scores: np.ndarray, is_member: np.ndarray) -> dict[str, float | int | None]:
    """ROC-AUC, TPR at 0.1% and 1% FPR, and membership advantage of an attack score.

    The ROC is computed as ``sklearn.metrics.roc_curve`` does (tied scores make one step);
    TPR at a target FPR is read at the largest FPR <= the target. The smallest nonzero FPR is
    1 / n_nonmembers: when that exceeds a target, its TPR is reported as None (the data cannot
    measure it), and ``n_nonmembers`` says why.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    members = np.asarray(is_member, dtype=bool)
    n_neg = int((~members).sum())
    if members.all() or not members.any():
        raise ValueError("membership metrics need both members and non-members")
    # every threshold's operating point: the default drops those on a straight line between
    # their neighbours (tie groups alike in make-up), and the TPR read at the largest FPR
    # <= the target would then come from an earlier, lower point
    fpr, tpr, _ = roc_curve(members, scores, drop_intermediate=False)
    out: dict[str, float | int | None] = {
        "auc": float(roc_auc_score(members, scores)),
        "advantage": float(np.max(tpr - fpr)),
        "n_members": int(members.sum()),
        "n_nonmembers": n_neg,
    }
    for label, target in (("tpr_at_1pct_fpr", 0.01), ("tpr_at_0.1pct_fpr", 0.001)):
        if 1.0 / n_neg > target:
            out[label] = None
        else:
            out[label] = float(tpr[fpr <= target + 1e-15].max())
    return out


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None

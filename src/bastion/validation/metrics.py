"""Model-validation metrics: the one code path every validation check reads.

:func:`compute_metrics` turns a :class:`~bastion.models.predictions.Predictions` into a dict of
named numbers using scikit-learn. :func:`metric_kernel` evaluates the same metrics for many
row weightings at once (bootstrap resamples, see :mod:`bastion.validation.bootstrap`); the
tests assert that both agree with scikit-learn.

Definitions
-----------
``accuracy``
    Share of rows with ``y_pred == y_true`` (``accuracy_score``).
``balanced_accuracy``
    Mean per-class recall over the classes present in ``y_true`` (``balanced_accuracy_score``).
``precision`` / ``recall`` / ``f1``
    Binary problems: of the positive class (``Predictions.positive_label``). Multiclass: the
    macro average over the labels present in ``y_true`` or ``y_pred``. An undefined ratio
    (no predicted or no true positives) counts as 0, scikit-learn's ``zero_division`` default.
``roc_auc``
    Binary: ROC-AUC of the positive-class probability. Multiclass: one-vs-rest, macro
    average. Omitted when a class has no row in ``y_true`` (the AUC is undefined).
``log_loss``
    Mean negative natural log of the probability given to the true class, clipped to
    ``[eps, 1 - eps]`` (``log_loss``).
``brier``
    Binary: mean of ``(p_positive - y)^2`` in ``[0, 1]``. Multiclass: mean over rows of
    ``sum_k (p_k - y_k)^2`` in ``[0, 2]`` (``brier_score_loss``'s defaults).
``ece``
    Expected calibration error with 10 equal-width bins on ``[0, 1]``, the last bin closed on
    the right: ``sum_b (n_b / n) |mean(p_b) - mean(y_b)|``. Binary problems bin the
    positive-class probability ``p`` against the outcome ``y = [y_true == positive]``.
    Multiclass problems use top-label calibration (Guo et al. 2017): ``p`` is the largest
    class probability and ``y`` is whether the class holding it is the true label.

Metrics that need probabilities (``roc_auc``, ``log_loss``, ``brier``, ``ece``) are omitted,
not NaN, when the predictions carry none, or when ``y_true`` holds a label that is not among
the model's classes (its probability is unknown). Probability rows that do not sum to one
(float32 models) are renormalised before use.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from bastion._numeric import safe_divide
from bastion.exceptions import CapabilityError, ConfigError, ModelOutputError
from bastion.models.predictions import Predictions

__all__ = [
    "HIGHER_IS_BETTER",
    "METRIC_NAMES",
    "N_BINS",
    "PROBA_METRICS",
    "CalibrationBin",
    "calibration_bins",
    "calibration_inputs",
    "compute_metrics",
    "confusion",
    "expected_calibration_error",
    "metric_kernel",
    "take",
    "validate_metric_name",
]

METRIC_NAMES: Final[tuple[str, ...]] = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "brier",
    "ece",
)
"""Every metric :func:`compute_metrics` can return, in report order."""

PROBA_METRICS: Final[frozenset[str]] = frozenset({"roc_auc", "log_loss", "brier", "ece"})
"""Metrics that need ``predict_proba``."""

HIGHER_IS_BETTER: Final[dict[str, bool]] = {
    name: name not in {"log_loss", "brier", "ece"} for name in METRIC_NAMES
}
"""Direction of each metric: ``True`` when a larger value means a better model."""

N_BINS: Final[int] = 10
"""Number of equal-width ECE bins."""
_SUM_RTOL: Final[float] = float(np.sqrt(np.finfo(np.float64).eps))  # scikit-learn's tolerance


def validate_metric_name(metric: str, *, parameter: str = "metric") -> str:
    """Return ``metric`` when it is one of :data:`METRIC_NAMES`, else raise ``ConfigError``."""
    if metric not in METRIC_NAMES:
        raise ConfigError(
            f"{parameter} must be one of {', '.join(METRIC_NAMES)}; received {metric!r}"
        )
    return metric


def take(pred: Predictions, rows: np.ndarray) -> Predictions:
    """The predictions restricted to ``rows`` (a boolean mask or integer indices).

    Example::

        women = take(pred, frame["sex"].to_numpy() == "F")
    """
    return replace(
        pred,
        y_true=pred.y_true[rows],
        y_pred=pred.y_pred[rows],
        proba=None if pred.proba is None else pred.proba[rows],
    )


# -- probabilities ------------------------------------------------------------------------
def _usable_proba(pred: Predictions) -> np.ndarray | None:
    """Validated, row-normalised probabilities, or ``None`` when proba metrics are undefined."""
    if pred.proba is None or pred.n == 0:
        return None
    proba = np.asarray(pred.proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape != (pred.n, len(pred.classes)):
        raise ModelOutputError(
            f"probabilities have shape {proba.shape}; expected ({pred.n}, {len(pred.classes)}) "
            "(rows, classes)"
        )
    lo, hi = float(proba.min()), float(proba.max())
    if lo < 0.0 or hi > 1.0:
        raise ModelOutputError(
            f"probabilities must lie in [0, 1]; received values from {lo:g} to {hi:g}"
        )
    if not np.isin(pred.y_true, pred.classes).all():
        return None
    sums = proba.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=_SUM_RTOL, atol=0.0):
        if (sums <= 0.0).any():
            raise ModelOutputError(
                f"{int((sums <= 0.0).sum())} probability row(s) sum to zero; cannot normalise"
            )
        proba = proba / sums[:, None]
    return proba


def _positive_index(pred: Predictions) -> int:
    hits = np.flatnonzero(pred.classes == pred.positive_label)
    if hits.size == 0:
        raise ModelOutputError(
            f"positive_label {pred.positive_label!r} is not one of the classes "
            f"{pred.classes.tolist()}"
        )
    return int(hits[0])


def calibration_inputs(pred: Predictions) -> tuple[np.ndarray, np.ndarray] | None:
    """``(confidence, outcome)`` arrays that ECE bins, or ``None`` without probabilities.

    Binary: positive-class probability and ``y_true == positive_label``. Multiclass: the top
    class probability and whether that class is the true label.
    """
    proba = _usable_proba(pred)
    if proba is None:
        return None
    if pred.is_binary:
        return proba[:, _positive_index(pred)], pred.y_true_binary.astype(np.float64)
    top = proba.argmax(axis=1)
    correct = pred.classes[top] == pred.y_true
    return proba[np.arange(pred.n), top], correct.astype(np.float64)


# -- calibration --------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationBin:
    """One equal-width bin of a reliability diagram."""

    lower: float
    upper: float
    count: int
    mean_predicted: float
    fraction_positive: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "count": self.count,
            "mean_predicted": self.mean_predicted,
            "fraction_positive": self.fraction_positive,
        }


def _bin_index(confidence: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    # i / n_bins is the correctly rounded edge (linspace gives 0.30000000000000004 for 0.3)
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    # searchsorted on the inner edges: bin i holds [edge_i, edge_i+1); 1.0 lands in the last bin
    idx = np.searchsorted(edges[1:-1], np.clip(confidence, 0.0, 1.0), side="right")
    return idx, edges


def calibration_bins(
    confidence: np.ndarray, outcome: np.ndarray, n_bins: int = N_BINS
) -> list[CalibrationBin]:
    """Reliability-diagram bins (non-empty ones only), equal width on ``[0, 1]``.

    Parameters
    ----------
    confidence:
        Predicted probabilities, one per row.
    outcome:
        1 where the event happened (positive class / correct top label), else 0.
    n_bins:
        Number of equal-width bins; the last one includes 1.0.

    Returns
    -------
    list[CalibrationBin]
        One entry per bin holding at least one row, in increasing order.

    Raises
    ------
    ConfigError
        ``n_bins`` is below 1 or the arrays differ in length.

    Example::

        bins = calibration_bins(np.array([0.1, 0.9]), np.array([0, 1]))
    """
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1; received {n_bins}")
    p = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    if p.shape != y.shape:
        raise ConfigError(
            f"confidence and outcome must have the same length; received {p.shape} and {y.shape}"
        )
    idx, edges = _bin_index(p, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    return [
        CalibrationBin(
            lower=float(edges[b]),
            upper=float(edges[b + 1]),
            count=int(counts[b]),
            mean_predicted=float(sum_p[b] / counts[b]),
            fraction_positive=float(sum_y[b] / counts[b]),
        )
        for b in range(n_bins)
        if counts[b] > 0
    ]


def expected_calibration_error(
    confidence: np.ndarray, outcome: np.ndarray, n_bins: int = N_BINS
) -> float:
    """``sum_b (n_b / n) |mean(p_b) - mean(y_b)|`` over equal-width bins.

    Example::

        >>> expected_calibration_error(np.array([0.2, 0.2, 0.9]), np.array([0, 1, 1]))
        0.2333...

    Raises
    ------
    ConfigError
        Empty input, ``n_bins`` below 1 or arrays of different lengths.
    """
    bins = calibration_bins(confidence, outcome, n_bins)
    n = sum(b.count for b in bins)
    if n == 0:
        raise ConfigError("expected_calibration_error needs at least one row; received none")
    return float(sum(b.count / n * abs(b.mean_predicted - b.fraction_positive) for b in bins))


# -- scikit-learn path --------------------------------------------------------------------
def compute_metrics(pred: Predictions) -> dict[str, float]:
    """Every validation metric for ``pred``, computed with scikit-learn.

    Parameters
    ----------
    pred:
        Labels, predictions and (optionally) probabilities of one dataset.

    Returns
    -------
    dict[str, float]
        Keys from :data:`METRIC_NAMES`, in that order; probability metrics are absent when
        the predictions hold no usable probabilities, ``roc_auc`` is absent when a class has
        no row in ``y_true``.

    Raises
    ------
    ModelOutputError
        Probabilities outside ``[0, 1]``, of the wrong shape, or rows summing to zero.

    Example::

        pred = ctx.predictions()
        compute_metrics(pred)["accuracy"]
    """
    from sklearn import metrics as skm

    if pred.n == 0:
        return {}
    y_true, y_pred = pred.y_true, pred.y_pred
    out: dict[str, float] = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
    with warnings.catch_warnings():
        # a slice may lack a class that the model predicts; the value is still well defined
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        out["balanced_accuracy"] = float(skm.balanced_accuracy_score(y_true, y_pred))
    if pred.is_binary:
        yt, yp = pred.y_true_binary, pred.y_pred_binary
        kw: dict[str, object] = {"pos_label": 1, "average": "binary", "zero_division": 0.0}
    else:
        yt, yp = y_true, y_pred
        kw = {"average": "macro", "zero_division": 0.0}
    out["precision"] = float(skm.precision_score(yt, yp, **kw))
    out["recall"] = float(skm.recall_score(yt, yp, **kw))
    out["f1"] = float(skm.f1_score(yt, yp, **kw))

    proba = _usable_proba(pred)
    if proba is None:
        return out
    # scikit-learn orders probability columns by sorted label
    order = np.argsort(pred.classes, kind="stable")
    classes, proba_sorted = pred.classes[order], proba[:, order]
    if pred.is_binary:
        score = proba[:, _positive_index(pred)]
        if 0 < int(pred.y_true_binary.sum()) < pred.n:
            out["roc_auc"] = float(skm.roc_auc_score(pred.y_true_binary, score))
    elif np.isin(classes, y_true).all():
        out["roc_auc"] = float(
            skm.roc_auc_score(
                y_true, proba_sorted, multi_class="ovr", average="macro", labels=classes
            )
        )
    out["log_loss"] = float(skm.log_loss(y_true, proba_sorted, labels=classes))
    if pred.is_binary:
        out["brier"] = float(skm.brier_score_loss(pred.y_true_binary, score, pos_label=1))
    else:
        out["brier"] = float(skm.brier_score_loss(y_true, proba_sorted, labels=classes))
    conf = calibration_inputs(pred)
    if conf is not None:
        out["ece"] = expected_calibration_error(*conf)
    return {k: out[k] for k in METRIC_NAMES if k in out}


def confusion(pred: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Labels and confusion matrix (rows true, columns predicted) via scikit-learn.

    The labels are the model's classes in their order, followed by any label that occurs
    only in ``y_true`` (sorted), so a class the model never learned still shows its rows.

    Example::

        labels, matrix = confusion(pred)
        recall = matrix.diagonal() / matrix.sum(axis=1)
    """
    from sklearn.metrics import confusion_matrix

    extra = np.setdiff1d(np.unique(pred.y_true), pred.classes)
    labels = np.concatenate([pred.classes, extra]) if extra.size else np.asarray(pred.classes)
    return labels, confusion_matrix(pred.y_true, pred.y_pred, labels=labels)


# -- weighted kernels (bootstrap) ---------------------------------------------------------
Kernel = Callable[[np.ndarray], np.ndarray]


def _confusion_kernel(pred: Predictions, metric: str) -> Kernel:
    labels, codes = np.unique(np.concatenate([pred.y_true, pred.y_pred]), return_inverse=True)
    k = len(labels)
    pair = (codes[: pred.n] * k + codes[pred.n :]).astype(np.int64)
    hits = np.flatnonzero(labels == pred.positive_label)
    # pos < 0: the positive class never occurs, so every binary ratio is 0 (zero_division)
    pos = int(hits[0]) if hits.size else -1

    def kernel(w: np.ndarray) -> np.ndarray:
        b = w.shape[0]
        flat = (np.arange(b)[:, None] * (k * k) + pair[None, :]).ravel()
        cm = np.bincount(flat, weights=w.ravel(), minlength=b * k * k).reshape(b, k, k)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        true_n = cm.sum(axis=2)
        pred_n = cm.sum(axis=1)
        total = true_n.sum(axis=1)
        if metric == "accuracy":
            return safe_divide(tp.sum(axis=1), total)
        if metric == "balanced_accuracy":
            present = true_n > 0
            rec = safe_divide(tp, true_n)
            return safe_divide((rec * present).sum(axis=1), present.sum(axis=1).astype(float))
        if pred.is_binary:
            if pos < 0:
                return np.zeros(b)
            tp_, t_, p_ = tp[:, pos], true_n[:, pos], pred_n[:, pos]
            if metric == "precision":
                return safe_divide(tp_, p_)
            if metric == "recall":
                return safe_divide(tp_, t_)
            return safe_divide(2 * tp_, t_ + p_)
        present = (true_n + pred_n) > 0
        if metric == "precision":
            per = safe_divide(tp, pred_n)
        elif metric == "recall":
            per = safe_divide(tp, true_n)
        else:
            per = safe_divide(2 * tp, true_n + pred_n)
        return safe_divide((per * present).sum(axis=1), present.sum(axis=1).astype(float))

    return kernel


def _auc_kernel_binary(score: np.ndarray, positive: np.ndarray) -> Kernel:
    """Weighted Mann-Whitney AUC (ties count one half), vectorised over weight rows."""
    order = np.argsort(score, kind="stable")
    s, y = score[order], positive[order].astype(np.float64)
    # index of the last row of each run of equal scores
    ends = np.append(np.flatnonzero(np.diff(s)), s.size - 1)

    def kernel(w: np.ndarray) -> np.ndarray:
        ws = w[:, order]
        cum_all = np.cumsum(ws, axis=1)[:, ends]
        ws *= y  # in place: ws is a fresh copy from the gather above
        cum_pos = np.cumsum(ws, axis=1)[:, ends]
        cum_neg = cum_all - cum_pos
        pos_g = np.diff(cum_pos, axis=1, prepend=0.0)
        neg_g = np.diff(cum_neg, axis=1, prepend=0.0)
        neg_below = cum_neg - neg_g
        num = (pos_g * (neg_below + 0.5 * neg_g)).sum(axis=1)
        den = cum_pos[:, -1] * cum_neg[:, -1]
        out = np.full(w.shape[0], np.nan)
        np.divide(num, den, out=out, where=den > 0)
        return out

    return kernel


def _weighted_mean(values: np.ndarray) -> Kernel:
    def kernel(w: np.ndarray) -> np.ndarray:
        tot = w.sum(axis=1)
        out = np.full(w.shape[0], np.nan)
        np.divide(w @ values, tot, out=out, where=tot > 0)
        return out

    return kernel


def metric_kernel(pred: Predictions, metric: str) -> Kernel:
    """A function mapping row weights ``w`` of shape (b, n) to ``metric`` under each weighting.

    Row weights are bootstrap counts: weight 2 means the row was drawn twice. With all
    weights 1 the kernel returns :func:`compute_metrics`'s value. An undefined value (a
    resample with no positive row for ``roc_auc``) is NaN.

    Parameters
    ----------
    pred:
        The predictions to evaluate.
    metric:
        One of :data:`METRIC_NAMES`.

    Returns
    -------
    Callable[[numpy.ndarray], numpy.ndarray]
        ``kernel(w)`` with ``w`` of shape (b, n) returns an array of shape (b,).

    Raises
    ------
    ConfigError
        Unknown metric name.
    CapabilityError
        A probability metric was asked of predictions without usable probabilities.

    Example::

        kernel = metric_kernel(pred, "accuracy")
        kernel(np.ones((1, pred.n)))   # == compute_metrics(pred)["accuracy"]
    """
    validate_metric_name(metric)
    if metric not in PROBA_METRICS:
        return _confusion_kernel(pred, metric)
    proba = _usable_proba(pred)
    if proba is None:
        raise CapabilityError(
            f"metric {metric!r} needs class probabilities for every row, but the predictions "
            "have none (no predict_proba) or y_true holds labels outside the model's classes"
        )
    onehot = (pred.y_true[:, None] == pred.classes[None, :]).astype(np.float64)
    if metric == "roc_auc":
        if pred.is_binary:
            pos = _positive_index(pred)
            return _auc_kernel_binary(proba[:, pos], onehot[:, pos])
        per_class = [_auc_kernel_binary(proba[:, c], onehot[:, c]) for c in range(proba.shape[1])]

        def macro_auc(w: np.ndarray) -> np.ndarray:
            # a class absent from a resample leaves the OvR macro AUC undefined (NaN)
            return np.asarray(np.mean([k(w) for k in per_class], axis=0))

        return macro_auc
    if metric == "log_loss":
        eps = np.finfo(np.float64).eps
        p_true = np.clip((proba * onehot).sum(axis=1), eps, 1.0 - eps)
        return _weighted_mean(-np.log(p_true))
    if metric == "brier":
        if pred.is_binary:
            pos = _positive_index(pred)
            return _weighted_mean((proba[:, pos] - onehot[:, pos]) ** 2)
        return _weighted_mean(((proba - onehot) ** 2).sum(axis=1))
    conf = calibration_inputs(pred)
    if conf is None:  # pragma: no cover - _usable_proba already returned probabilities
        raise CapabilityError("metric 'ece' needs class probabilities")
    p, y = conf
    idx, _ = _bin_index(p, N_BINS)
    onebin = np.zeros((p.size, N_BINS))
    onebin[np.arange(p.size), idx] = 1.0
    design = np.hstack([onebin * p[:, None], onebin * y[:, None]])

    def ece(w: np.ndarray) -> np.ndarray:
        sums = w @ design
        tot = w.sum(axis=1)
        gap = np.abs(sums[:, :N_BINS] - sums[:, N_BINS:]).sum(axis=1)
        out = np.full(w.shape[0], np.nan)
        np.divide(gap, tot, out=out, where=tot > 0)
        return out

    return ece

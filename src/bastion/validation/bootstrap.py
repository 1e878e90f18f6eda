"""Vectorised bootstrap confidence intervals for a metric and for a paired model difference.

Each resample draws ``n`` row indices with replacement from a seeded
:class:`numpy.random.Generator`; the draw becomes a row of bootstrap counts (weights), and
:func:`bastion.validation.metrics.metric_kernel` evaluates the metric for a whole block of
resamples with array operations (weighted confusion matrices via ``bincount``, weighted
means via a matrix product, ROC-AUC via cumulative sums over the sorted scores), never a
Python loop per resample. Blocks keep memory near ``2**22`` cells whatever the row count.

The paired comparison draws the row indices once and evaluates both models on the same
resample, so the interval of ``new - baseline`` reflects only the models' disagreement, not
the sampling noise they share (Efron and Tibshirani 1993, ch. 13; the percentile interval).

Resamples where the metric is undefined (no positive row for ``roc_auc``) are dropped;
``n_valid`` says how many remained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bastion.exceptions import ConfigError, DataError
from bastion.models.predictions import Predictions
from bastion.validation.metrics import compute_metrics, metric_kernel, validate_metric_name

__all__ = ["BootstrapResult", "PairedBootstrapResult", "bootstrap_metric", "paired_bootstrap"]

_BLOCK_CELLS = 1 << 22


@dataclass(frozen=True)
class BootstrapResult:
    """A metric's value on the full data and its percentile bootstrap interval."""

    metric: str
    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    n_resamples: int
    n_valid: int
    samples: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class PairedBootstrapResult:
    """``new - baseline`` on the same rows, with its percentile bootstrap interval."""

    metric: str
    new: float
    baseline: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    n_resamples: int
    n_valid: int
    samples: np.ndarray = field(repr=False, compare=False)


def _check_params(metric: str, n_resamples: int, confidence: float) -> None:
    validate_metric_name(metric)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer):
        raise ConfigError(f"n_resamples must be an integer; received {n_resamples!r}")
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be >= 1; received {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1; received {confidence}")


def _generator(random_state: int | np.random.Generator) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def _resample_weights(rng: np.random.Generator, n: int, n_resamples: int) -> list[np.ndarray]:
    """Bootstrap counts, shape (block, n) per block, drawn in a fixed order from ``rng``."""
    block = max(1, min(n_resamples, _BLOCK_CELLS // max(n, 1)))
    out: list[np.ndarray] = []
    done = 0
    while done < n_resamples:
        b = min(block, n_resamples - done)
        idx = rng.integers(0, n, size=(b, n))
        flat = (idx + (np.arange(b) * n)[:, None]).ravel()
        out.append(np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64))
        done += b
    return out


def _percentile(samples: np.ndarray, confidence: float) -> tuple[float, float, int]:
    valid = samples[np.isfinite(samples)]
    if valid.size == 0:
        return float("nan"), float("nan"), 0
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(valid, [alpha, 1.0 - alpha])
    return float(lo), float(hi), int(valid.size)


def _point(pred: Predictions, metric: str) -> float:
    return float(compute_metrics(pred).get(metric, float("nan")))


def bootstrap_metric(
    pred: Predictions,
    metric: str = "accuracy",
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: int | np.random.Generator = 0,
) -> BootstrapResult:
    """Percentile bootstrap confidence interval of one metric.

    Parameters
    ----------
    pred:
        Predictions on the evaluation rows.
    metric:
        One of :data:`bastion.validation.metrics.METRIC_NAMES`.
    n_resamples:
        Number of bootstrap resamples (>= 1).
    confidence:
        Coverage of the interval, strictly between 0 and 1.
    random_state:
        Seed or generator; the same seed gives the same interval.

    Returns
    -------
    BootstrapResult
        The full-data estimate (from :func:`~bastion.validation.metrics.compute_metrics`),
        the interval and the resampled values.

    Raises
    ------
    ConfigError
        Unknown metric, ``n_resamples`` < 1, ``confidence`` outside (0, 1).
    DataError
        ``pred`` holds no rows.
    CapabilityError
        A probability metric without probabilities.

    Example::

        res = bootstrap_metric(ctx.predictions(), "f1", random_state=ctx.rng("MV005"))
        res.ci_low, res.ci_high
    """
    _check_params(metric, n_resamples, confidence)
    if pred.n == 0:
        raise DataError("bootstrap_metric needs at least one row; the predictions hold none")
    kernel = metric_kernel(pred, metric)
    rng = _generator(random_state)
    samples = np.concatenate([kernel(w) for w in _resample_weights(rng, pred.n, n_resamples)])
    lo, hi, n_valid = _percentile(samples, confidence)
    return BootstrapResult(
        metric=metric,
        estimate=_point(pred, metric),
        ci_low=lo,
        ci_high=hi,
        confidence=confidence,
        n_resamples=n_resamples,
        n_valid=n_valid,
        samples=samples,
    )


def paired_bootstrap(
    new: Predictions,
    baseline: Predictions,
    metric: str = "accuracy",
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: int | np.random.Generator = 0,
) -> PairedBootstrapResult:
    """Percentile bootstrap interval of ``metric(new) - metric(baseline)`` on shared resamples.

    Parameters
    ----------
    new, baseline:
        Two models' predictions on the same rows, in the same order (equal ``y_true``).
    metric:
        One of :data:`bastion.validation.metrics.METRIC_NAMES`.
    n_resamples:
        Number of bootstrap resamples (>= 1).
    confidence:
        Coverage of the interval, strictly between 0 and 1.
    random_state:
        Seed or generator; the same seed gives the same interval.

    Returns
    -------
    PairedBootstrapResult
        Both full-data values, their difference, the interval of the difference and the
        resampled differences. For a metric where lower is better (``log_loss``, ``brier``,
        ``ece``) a positive difference means the new model is worse.

    Raises
    ------
    ConfigError
        Unknown metric, ``n_resamples`` < 1, ``confidence`` outside (0, 1).
    DataError
        The two predictions cover different rows or no rows.
    CapabilityError
        A probability metric where either model lacks probabilities.

    Example::

        res = paired_bootstrap(ctx.predictions(), ctx.predictions("baseline"))
        significantly_worse = res.ci_high < 0
    """
    _check_params(metric, n_resamples, confidence)
    if new.n == 0:
        raise DataError("paired_bootstrap needs at least one row; the predictions hold none")
    if new.n != baseline.n or not np.array_equal(new.y_true, baseline.y_true):
        raise DataError(
            "paired_bootstrap needs both models' predictions on the same rows: received "
            f"{new.n} and {baseline.n} rows"
            + ("" if new.n != baseline.n else " with different y_true")
        )
    k_new, k_base = metric_kernel(new, metric), metric_kernel(baseline, metric)
    rng = _generator(random_state)
    samples = np.concatenate(
        [k_new(w) - k_base(w) for w in _resample_weights(rng, new.n, n_resamples)]
    )
    lo, hi, n_valid = _percentile(samples, confidence)
    v_new, v_base = _point(new, metric), _point(baseline, metric)
    return PairedBootstrapResult(
        metric=metric,
        new=v_new,
        baseline=v_base,
        difference=v_new - v_base,
        ci_low=lo,
        ci_high=hi,
        confidence=confidence,
        n_resamples=n_resamples,
        n_valid=n_valid,
        samples=samples,
    )

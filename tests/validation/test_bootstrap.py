"""Bootstrap intervals: same resamples as a plain loop, deterministic, and they cover."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn import metrics as skm

from bastion.exceptions import CapabilityError, ConfigError, DataError
from bastion.models.predictions import Predictions
from bastion.validation.bootstrap import bootstrap_metric, paired_bootstrap
from bastion.validation.metrics import compute_metrics


def _simulated(rng: np.random.Generator, n: int, accuracy: float) -> Predictions:
    y = rng.integers(0, 2, n)
    wrong = rng.random(n) >= accuracy
    return Predictions(y, np.where(wrong, 1 - y, y), None, np.array([0, 1]), 1)


def test_resamples_equal_a_plain_loop(cancer_pred: Predictions) -> None:
    res = bootstrap_metric(cancer_pred, "f1", n_resamples=200, random_state=11)
    idx = np.random.default_rng(11).integers(0, cancer_pred.n, size=(200, cancer_pred.n))
    want = [skm.f1_score(cancer_pred.y_true[i], cancer_pred.y_pred[i]) for i in idx]
    np.testing.assert_allclose(res.samples, want, rtol=1e-12)
    lo, hi = np.quantile(want, [0.025, 0.975])
    assert (res.ci_low, res.ci_high) == pytest.approx((lo, hi), rel=1e-12)
    assert res.estimate == compute_metrics(cancer_pred)["f1"]
    assert res.ci_low < res.estimate < res.ci_high


def test_blocks_draw_the_same_stream_as_one_draw() -> None:
    # 5,000 rows force several blocks; the result must equal one big draw
    pred = _simulated(np.random.default_rng(0), 5000, 0.7)
    res = bootstrap_metric(pred, "accuracy", n_resamples=1000, random_state=4)
    idx = np.random.default_rng(4).integers(0, pred.n, size=(1000, pred.n))
    want = (pred.y_true[idx] == pred.y_pred[idx]).mean(axis=1)
    np.testing.assert_allclose(res.samples, want, rtol=1e-12)


def test_deterministic_under_seed(iris_pred: Predictions) -> None:
    a = bootstrap_metric(iris_pred, "roc_auc", n_resamples=300, random_state=7)
    b = bootstrap_metric(iris_pred, "roc_auc", n_resamples=300, random_state=7)
    c = bootstrap_metric(iris_pred, "roc_auc", n_resamples=300, random_state=8)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert not np.array_equal(a.samples, c.samples)
    gen = bootstrap_metric(
        iris_pred, "roc_auc", n_resamples=300, random_state=np.random.default_rng(7)
    )
    np.testing.assert_array_equal(a.samples, gen.samples)


def test_interval_covers_the_true_accuracy() -> None:
    rng = np.random.default_rng(2024)
    true_acc, covered, reps = 0.8, 0, 300
    for _ in range(reps):
        res = bootstrap_metric(
            _simulated(rng, 200, true_acc), "accuracy", n_resamples=400, random_state=rng
        )
        covered += res.ci_low <= true_acc <= res.ci_high
    # nominal 95%; binomial sd over 300 repetitions is about 1.3 points
    assert 0.90 <= covered / reps <= 0.99


def test_undefined_resamples_are_dropped() -> None:
    pred = Predictions(
        np.array([0, 0, 0, 0, 0, 1]),
        np.array([0, 0, 0, 0, 1, 1]),
        np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.4, 0.6], [0.2, 0.8]]),
        np.array([0, 1]),
        1,
    )
    res = bootstrap_metric(pred, "roc_auc", n_resamples=500, random_state=0)
    # a resample misses the single positive row with probability (5/6)^6, about a third
    assert 250 < res.n_valid < 450
    assert np.isnan(res.samples).sum() == 500 - res.n_valid
    assert res.ci_high == 1.0


def test_paired_difference_uses_shared_resamples(cancer_pred: Predictions) -> None:
    weak = replace(cancer_pred, y_pred=np.ones_like(cancer_pred.y_pred))
    res = paired_bootstrap(cancer_pred, weak, "accuracy", n_resamples=300, random_state=1)
    idx = np.random.default_rng(1).integers(0, cancer_pred.n, size=(300, cancer_pred.n))
    y = cancer_pred.y_true[idx]
    want = (y == cancer_pred.y_pred[idx]).mean(axis=1) - (y == 1).mean(axis=1)
    np.testing.assert_allclose(res.samples, want, rtol=1e-12, atol=1e-15)
    assert res.difference == pytest.approx(res.new - res.baseline)
    assert res.ci_low > 0  # the fitted model is clearly better than always predicting 1
    same = paired_bootstrap(cancer_pred, cancer_pred, "log_loss", n_resamples=100)
    assert same.ci_low == same.ci_high == 0.0


def test_paired_is_narrower_than_independent_intervals(cancer_pred: Predictions) -> None:
    assert cancer_pred.proba is not None
    noisy = replace(cancer_pred, proba=np.clip(cancer_pred.proba * 0.9 + 0.05, 0, 1))
    paired = paired_bootstrap(cancer_pred, noisy, "brier", n_resamples=500)
    a = bootstrap_metric(cancer_pred, "brier", n_resamples=500)
    b = bootstrap_metric(noisy, "brier", n_resamples=500)
    assert paired.ci_high - paired.ci_low < 0.5 * ((a.ci_high - a.ci_low) + (b.ci_high - b.ci_low))


def test_errors(cancer_pred: Predictions) -> None:
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_metric(cancer_pred, confidence=1.0)
    with pytest.raises(ConfigError, match="n_resamples"):
        bootstrap_metric(cancer_pred, n_resamples=0)
    with pytest.raises(ConfigError, match="metric must be one of"):
        bootstrap_metric(cancer_pred, "mcc")
    with pytest.raises(CapabilityError, match="log_loss"):
        bootstrap_metric(replace(cancer_pred, proba=None), "log_loss")
    with pytest.raises(DataError, match="same rows"):
        paired_bootstrap(cancer_pred, take_first(cancer_pred, 10))
    flipped = replace(cancer_pred, y_true=1 - cancer_pred.y_true)
    with pytest.raises(DataError, match="different y_true"):
        paired_bootstrap(cancer_pred, flipped)


def take_first(pred: Predictions, k: int) -> Predictions:
    return replace(pred, y_true=pred.y_true[:k], y_pred=pred.y_pred[:k], proba=None)

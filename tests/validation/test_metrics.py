"""compute_metrics and the weighted kernels agree with scikit-learn; ECE by hand and by loop."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn import metrics as skm

from bastion.exceptions import CapabilityError, ConfigError, ModelOutputError
from bastion.models.predictions import Predictions
from bastion.validation.metrics import (
    METRIC_NAMES,
    PROBA_METRICS,
    calibration_bins,
    compute_metrics,
    confusion,
    expected_calibration_error,
    metric_kernel,
    take,
)

REL = 1e-12


def naive_ece(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Straightforward ECE: loop over bins [i/n, (i+1)/n), the last one closed at 1."""
    total = 0.0
    for i in range(n_bins):
        lo, hi = i / n_bins, (i + 1) / n_bins
        in_bin = (p >= lo) & ((p <= hi) if i == n_bins - 1 else (p < hi))
        if in_bin.any():
            total += in_bin.sum() / len(p) * abs(p[in_bin].mean() - y[in_bin].mean())
    return float(total)


# -- binary ------------------------------------------------------------------------------
@pytest.mark.parametrize("positive", [1, 0])
def test_binary_metrics_equal_sklearn(cancer_pred: Predictions, positive: int) -> None:
    pred = replace(cancer_pred, positive_label=positive)
    y, yp = pred.y_true, pred.y_pred
    score = pred.proba[:, list(pred.classes).index(positive)]  # type: ignore[index]
    got = compute_metrics(pred)
    want = {
        "accuracy": skm.accuracy_score(y, yp),
        "balanced_accuracy": skm.balanced_accuracy_score(y, yp),
        "precision": skm.precision_score(y, yp, pos_label=positive),
        "recall": skm.recall_score(y, yp, pos_label=positive),
        "f1": skm.f1_score(y, yp, pos_label=positive),
        "roc_auc": skm.roc_auc_score(y == positive, score),
        "log_loss": skm.log_loss(y, pred.proba),
        "brier": skm.brier_score_loss(y, score, pos_label=positive),
        "ece": naive_ece(score, (y == positive).astype(float)),
    }
    assert list(got) == list(METRIC_NAMES)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=REL, abs=1e-15), name
    # the positive label changes precision: the two runs are not the same numbers
    assert 0.5 < got["accuracy"] < 1.0


def test_multiclass_metrics_equal_sklearn(iris_pred: Predictions) -> None:
    pred = iris_pred
    y, yp, proba = pred.y_true, pred.y_pred, pred.proba
    assert proba is not None
    got = compute_metrics(pred)
    top = proba.argmax(axis=1)
    want = {
        "accuracy": skm.accuracy_score(y, yp),
        "balanced_accuracy": skm.balanced_accuracy_score(y, yp),
        "precision": skm.precision_score(y, yp, average="macro"),
        "recall": skm.recall_score(y, yp, average="macro"),
        "f1": skm.f1_score(y, yp, average="macro"),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"),
        "log_loss": skm.log_loss(y, proba),
        "brier": skm.brier_score_loss(y, proba, labels=pred.classes),
        "ece": naive_ece(proba.max(axis=1), (pred.classes[top] == y).astype(float)),
    }
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=REL, abs=1e-15), name
    assert got["ece"] > 0.05  # a regularised model: top-label confidence is off
    labels, matrix = confusion(pred)
    assert labels.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(matrix, skm.confusion_matrix(y, yp))


def test_unsorted_string_classes_match_sklearn(iris_pred: Predictions) -> None:
    names = np.array(["setosa", "versicolor", "virginica"])
    order = [2, 0, 1]  # the adapter's column order is not sklearn's sorted order
    assert iris_pred.proba is not None
    pred = Predictions(
        names[iris_pred.y_true],
        names[iris_pred.y_pred],
        iris_pred.proba[:, order],
        names[order],
        "virginica",
    )
    got = compute_metrics(pred)
    ref = compute_metrics(iris_pred)
    for name in METRIC_NAMES:
        assert got[name] == pytest.approx(ref[name], rel=REL), name


def test_no_proba_omits_probability_metrics(cancer_pred: Predictions) -> None:
    got = compute_metrics(replace(cancer_pred, proba=None))
    assert set(got) == set(METRIC_NAMES) - PROBA_METRICS
    assert all(np.isfinite(v) for v in got.values())


def test_single_class_slice_omits_auc_without_warning(cancer_pred: Predictions) -> None:
    only_pos = take(cancer_pred, cancer_pred.y_true == 1)
    got = compute_metrics(only_pos)
    assert "roc_auc" not in got
    assert got["recall"] == pytest.approx(skm.recall_score(only_pos.y_true, only_pos.y_pred))
    assert got["balanced_accuracy"] == pytest.approx(got["recall"])


def test_labels_outside_classes_omit_probability_metrics() -> None:
    pred = Predictions(
        np.array([0, 1, 2]),
        np.array([0, 1, 1]),
        np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]),
        np.array([0, 1]),
        1,
    )
    assert not PROBA_METRICS & set(compute_metrics(pred))


def test_unnormalised_rows_are_renormalised() -> None:
    proba = np.array([[0.6, 0.3], [0.1, 0.8], [0.5, 0.4]])  # rows sum to 0.9
    pred = Predictions(np.array([0, 1, 1]), np.array([0, 1, 0]), proba, np.array([0, 1]), 1)
    normal = proba / proba.sum(axis=1, keepdims=True)
    assert compute_metrics(pred)["log_loss"] == pytest.approx(
        skm.log_loss(pred.y_true, normal), rel=REL
    )


def test_probabilities_out_of_range_raise() -> None:
    pred = Predictions(
        np.array([0, 1]), np.array([0, 1]), np.array([[1.2, -0.2], [0.0, 1.0]]), np.array([0, 1]), 1
    )
    with pytest.raises(ModelOutputError, match=r"\[0, 1\]"):
        compute_metrics(pred)


# -- ECE ---------------------------------------------------------------------------------
def test_ece_hand_computed() -> None:
    p = np.array([0.05, 0.15, 0.15, 0.3, 0.3, 0.95, 1.0])
    y = np.array([0, 0, 1, 1, 1, 1, 1])
    # bin 0: |0.05 - 0| * 1/7; bin 1: |0.15 - 0.5| * 2/7; bin 3 (0.3 is its lower edge):
    # |0.3 - 1| * 2/7; bin 9 (1.0 included): |0.975 - 1| * 2/7
    want = (0.05 + 2 * 0.35 + 2 * 0.7 + 2 * 0.025) / 7
    assert expected_calibration_error(p, y) == pytest.approx(want, rel=1e-12)
    bins = calibration_bins(p, y)
    assert [(b.lower, b.count) for b in bins] == [(0.0, 1), (0.1, 2), (0.3, 2), (0.9, 2)]
    assert bins[-1].upper == 1.0
    assert bins[-1].mean_predicted == pytest.approx(0.975)
    assert bins[1].fraction_positive == 0.5


def test_ece_matches_loop_on_random_scores() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.random(500) ** 2
        p[:5] = [0.0, 0.1, 0.5, 0.9, 1.0]  # edges
        y = (rng.random(500) < p * 0.8).astype(float)
        assert expected_calibration_error(p, y) == pytest.approx(naive_ece(p, y), rel=1e-12)


def test_ece_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="n_bins"):
        calibration_bins(np.array([0.5]), np.array([1.0]), n_bins=0)
    with pytest.raises(ConfigError, match="same length"):
        calibration_bins(np.array([0.5, 0.2]), np.array([1.0]))
    with pytest.raises(ConfigError, match="at least one row"):
        expected_calibration_error(np.array([]), np.array([]))


# -- weighted kernels --------------------------------------------------------------------
@pytest.mark.parametrize("which", ["cancer_pred", "iris_pred"])
def test_kernels_equal_compute_metrics_on_resamples(
    which: str, request: pytest.FixtureRequest
) -> None:
    pred: Predictions = request.getfixturevalue(which)
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, pred.n, pred.n) for _ in range(3)]
    weights = np.vstack([np.ones(pred.n)] + [np.bincount(d, minlength=pred.n) for d in draws])
    refs = [compute_metrics(pred)] + [compute_metrics(take(pred, d)) for d in draws]
    for name in METRIC_NAMES:
        got = metric_kernel(pred, name)(weights.astype(float))
        want = [r[name] for r in refs]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14, err_msg=name)


def test_auc_kernel_equals_sklearn_with_sample_weight(cancer_pred: Predictions) -> None:
    rng = np.random.default_rng(5)
    w = rng.integers(0, 4, size=cancer_pred.n).astype(float)
    # ties: round the scores so that equal values share a rank
    assert cancer_pred.proba is not None
    pred = replace(cancer_pred, proba=np.round(cancer_pred.proba, 1))
    got = metric_kernel(pred, "roc_auc")(w[None, :])[0]
    want = skm.roc_auc_score(pred.y_true, pred.proba[:, 1], sample_weight=w)  # type: ignore[index]
    assert got == pytest.approx(want, rel=1e-12)


def test_kernel_errors(cancer_pred: Predictions) -> None:
    with pytest.raises(ConfigError, match="metric must be one of"):
        metric_kernel(cancer_pred, "auc")
    with pytest.raises(CapabilityError, match="roc_auc"):
        metric_kernel(replace(cancer_pred, proba=None), "roc_auc")


def test_kernel_positive_class_absent_gives_zero() -> None:
    pred = Predictions(np.array([0, 0, 0]), np.array([0, 0, 0]), None, np.array([0, 1]), 1)
    for name in ("precision", "recall", "f1"):
        assert metric_kernel(pred, name)(np.ones((1, 3)))[0] == compute_metrics(pred)[name] == 0.0

"""Live drift against the release's reference profile, prediction drift, feedback accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.datasets import load_breast_cancer

from bastion.data.profile import Profile
from bastion.exceptions import ConfigError, DataError
from bastion.monitoring.live import PSI_EPSILON, LiveMonitor, PendingPredictions


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, Any], pd.DataFrame]:
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "diagnosis"})
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    train = frame.sample(frac=0.6, random_state=0)
    test = frame.drop(train.index)
    features = [c for c in frame.columns if c != "diagnosis"]
    report = {
        "datasets": [{"name": "train", "features": features, "target": "diagnosis"}],
        "profiles": {"train": Profile.from_frame(train, seed=0).summary(5)},
    }
    return report, test


def test_same_distribution_does_not_drift_and_a_shift_does(
    reference: tuple[dict[str, Any], pd.DataFrame],
) -> None:
    report, test = reference
    X = test.drop(columns="diagnosis").to_numpy()
    calm = LiveMonitor(report, clock=lambda: 1000.0)
    calm.observe(X, test["diagnosis"].tolist())
    snap = calm.snapshot()
    assert snap.n_rows == len(X)
    assert not snap.drifted_features, snap.drifted_features
    assert snap.prediction_js is not None
    assert snap.prediction_js < 0.05  # the labels' shares match the training shares
    shifted = X.copy()
    shifted[:, 0] *= 1.6  # mean_radius grows by 60%
    moved = LiveMonitor(report, clock=lambda: 1000.0)
    moved.observe(shifted, [1] * len(X))
    snap = moved.snapshot()
    assert "mean_radius" in snap.drifted_features
    assert "mean_texture" not in snap.drifted_features
    assert snap.prediction_js is not None
    assert snap.prediction_js > 0.3


def test_psi_and_js_follow_their_definitions(
    reference: tuple[dict[str, Any], pd.DataFrame],
) -> None:
    report, test = reference
    mon = LiveMonitor(report, clock=lambda: 0.0)
    X = test.drop(columns="diagnosis").to_numpy()
    mon.observe(X, [0] * len(X))
    col = report["profiles"]["train"]["columns"]["mean_radius"]["histogram"]
    edges, counts = np.asarray(col["edges"]), np.asarray(col["counts"], dtype=float)
    cur = np.bincount(np.searchsorted(edges, X[:, 0], side="right"), minlength=len(counts))
    r, c = counts / counts.sum(), cur / cur.sum()
    rf, cf = np.maximum(r, PSI_EPSILON), np.maximum(c, PSI_EPSILON)
    got = next(f for f in mon.snapshot().features if f.feature == "mean_radius")
    assert got.psi == pytest.approx(float(np.sum((cf - rf) * np.log(cf / rf))), rel=1e-12)
    assert got.jensenshannon == pytest.approx(float(jensenshannon(r, c, base=2)), rel=1e-9)


def test_the_window_forgets_and_feedback_measures_accuracy(
    reference: tuple[dict[str, Any], pd.DataFrame],
) -> None:
    report, test = reference
    now = [0.0]
    mon = LiveMonitor(report, window_s=120, bucket_s=60, clock=lambda: now[0])
    X = test.drop(columns="diagnosis").to_numpy()[:10]
    mon.observe(X, [1] * 10, request_id="r1")
    with pytest.raises(DataError, match="had 10 rows; received 3"):
        mon.feedback("r1", [1, 0, 1])
    assert mon.feedback("r1", [1] * 8 + [0, 0]) == 10
    with pytest.raises(DataError, match="no prediction is waiting"):
        mon.feedback("r1", [1] * 10)
    snap = mon.snapshot()
    assert snap.accuracy == pytest.approx(0.8)
    assert snap.n_feedback == 10
    now[0] = 500.0  # past the window
    assert mon.snapshot().n_rows == 0
    assert mon.snapshot().accuracy is None


def test_pending_predictions_are_bounded_and_dropped_oldest_first() -> None:
    pending = PendingPredictions(10)
    for i in range(1000):
        pending.add(f"r{i}", [i % 3])
        assert len(pending) <= 10
    held = [i for i in range(1000) if pending.get(f"r{i}") is not None]
    # the last cap // 2 ids always answer; none older than the last cap does
    assert set(range(995, 1000)) <= set(held) <= set(range(990, 1000))
    assert held == list(range(held[0], 1000))  # oldest dropped first
    got = pending.get("r999")
    assert got is not None
    assert got.tolist() == ["0"]
    pending.discard("r999")
    assert pending.get("r999") is None
    pending.add("multi", [1, "a", 2.5])
    got = pending.get("multi")
    assert got is not None
    assert got.dtype == object
    assert got.tolist() == ["1", "a", "2.5"]
    with pytest.raises(ConfigError, match="at least 2"):
        PendingPredictions(1)


def test_a_reused_id_is_held_once_with_its_latest_prediction() -> None:
    pending = PendingPredictions(4)
    pending.add("a", [0])
    pending.add("b", [0])
    pending.add("c", [0])  # the first generation ("a", "b") becomes the older one
    pending.add("a", [1])
    assert len(pending) == 3
    got = pending.get("a")
    assert got is not None
    assert got.tolist() == ["1"]


def test_feedback_for_a_dropped_prediction_is_refused(
    reference: tuple[dict[str, Any], pd.DataFrame],
) -> None:
    report, test = reference
    mon = LiveMonitor(report, max_pending=6, clock=lambda: 0.0)
    X = test.drop(columns="diagnosis").to_numpy()
    mon.observe_many([(X[i : i + 1], [1], f"r{i}") for i in range(20)])
    assert len(mon._pending) <= 6
    with pytest.raises(DataError, match="no prediction is waiting"):
        mon.feedback("r0", [1])
    with pytest.raises(DataError, match="had 1 rows; received 2"):
        mon.feedback("r19", [1, 1])
    assert mon.feedback("r19", [1]) == 1  # a refused count leaves it waiting
    assert mon.feedback("r17", [0]) == 1
    snap = mon.snapshot()
    assert snap.n_feedback == 2
    assert snap.accuracy == pytest.approx(0.5)


def test_binned_counts_equal_a_searchsorted_per_feature(
    reference: tuple[dict[str, Any], pd.DataFrame],
) -> None:
    """observe bins every column in one broadcast: the same counts as a searchsorted and a
    bincount per feature over its finite values."""
    report, test = reference
    monitor = LiveMonitor(report, clock=lambda: 1000.0)
    X = test[list(monitor.features)].to_numpy(dtype=float).copy()
    X[0, 0], X[1, 1], X[2, 2] = np.nan, np.inf, -np.inf
    monitor.observe(X, [0] * len(X))
    expected = np.zeros((len(monitor.features), monitor._cells))
    for j, edges in enumerate(monitor._edges):
        if edges is None:
            continue
        col = X[:, j][np.isfinite(X[:, j])]
        expected[j, : len(edges) + 1] = np.bincount(
            np.searchsorted(edges, col, side="right"), minlength=len(edges) + 1
        )
    np.testing.assert_array_equal(monitor._buckets[-1].counts, expected)
    assert expected.sum() == X.size - 3

"""The OOD guard against a reference profile built exactly as the gate runner builds it
(``Profile.from_frame(frame, seed=...).summary(min_category_count)``) on breast cancer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from bastion.data.profile import Profile
from bastion.exceptions import ConfigError, DataError
from bastion.gateway.guards.auth import GuardRejectedError
from bastion.gateway.guards.ood import OODBurst, OODDetector


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = load_breast_cancer(as_frame=True)
    frame = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify=data.target)
    return train, test


@pytest.fixture(scope="module")
def report(split: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, Any]:
    train, _ = split
    summary = Profile.from_frame(train, seed=0).summary(5)  # the runner's min_category_count
    return {
        "datasets": [{"name": "train", "features": list(train.columns)}],
        "profiles": {"train": summary},
    }


@pytest.fixture(scope="module")
def detector(report: dict[str, Any]) -> OODDetector:
    return OODDetector.from_report(report)


def _perturb(x: np.ndarray, std: np.ndarray, k: int, sigmas: float, seed: int) -> np.ndarray:
    """Add N(0, sigmas * std) noise to ``k`` random columns of every row."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    for i in range(len(out)):
        cols = rng.choice(out.shape[1], k, replace=False)
        out[i, cols] += rng.normal(0.0, sigmas, k) * std[cols]
    return out


def test_held_out_rows_are_rarely_flagged(
    detector: OODDetector, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = split
    held = detector.score(test.to_numpy())
    beyond_range = held.anomalous & ~held.out_of_range
    # measured: 3.5 % out of range (tails of 30 skewed columns, 398 rows), 0 % by density
    assert held.anomalous.mean() < 0.08
    assert beyond_range.mean() < 0.02
    own = detector.score(train.to_numpy())
    assert not own.out_of_range.any()  # the reference's own rows lie in its range
    assert own.anomalous.mean() < 0.02  # measured 0.3 %
    assert detector.unchecked == ()


def test_independent_calibration_overflags_correlated_data(
    report: dict[str, Any], split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """Why ``dependence`` exists: marginal draws with independent columns miss the joint tails
    of correlated columns (documented: 12.9 % of held-out rows flagged)."""
    _, test = split
    independent = OODDetector.from_report(report, dependence=0.0)
    coupled = OODDetector.from_report(report)
    x = test.to_numpy()
    assert independent.threshold < coupled.threshold
    assert independent.score(x).anomalous.mean() > 0.08
    # calibrating on real rows instead sets the threshold so ~density_quantile exceed it
    tuned = OODDetector.from_report(report, dependence=0.0, density_quantile=0.05)
    tuned.calibrate(x)
    assert (tuned.score(x).density > tuned.threshold).mean() == pytest.approx(0.05, abs=0.01)


def test_threshold_matches_calibration_draws(report: dict[str, Any]) -> None:
    det = OODDetector.from_report(report, density_quantile=0.02, n_calibration=40_000, seed=3)
    fresh = det._draw(40_000, seed=99)  # same distribution, other seed
    exceed = (det._scores(fresh).sum(axis=1) > det.threshold).mean()
    assert exceed == pytest.approx(0.02, abs=0.005)
    again = OODDetector.from_report(report, density_quantile=0.02, n_calibration=40_000, seed=3)
    assert again.threshold == det.threshold  # seeded


def test_far_value_is_out_of_range_naming_the_feature(
    detector: OODDetector, report: dict[str, Any], split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _, test = split
    cols = report["profiles"]["train"]["columns"]
    x = test.to_numpy()[:4].copy()
    j = detector.features.index("mean_area")
    k = detector.features.index("worst_symmetry")
    span = cols["mean_area"]["max"] - cols["mean_area"]["min"]
    x[1, j] = cols["mean_area"]["max"] + 10 * span
    x[2, k] = cols["worst_symmetry"]["min"] - 0.5 * (
        cols["worst_symmetry"]["max"] - cols["worst_symmetry"]["min"]
    )
    x[3, k] = np.nan
    res = detector.score(x)
    assert res.out_of_range.tolist() == [False, True, True, True]
    assert res.first_feature == [None, "mean_area", "worst_symmetry", "worst_symmetry"]
    assert res.anomalous[1:].all()
    # just beyond the training max but inside the margin: in range, floor density
    y = test.to_numpy()[:1].copy()
    base = detector.score(y).density[0]
    y[0, j] = cols["mean_area"]["max"] + 0.05 * span
    nudged = detector.score(y)
    assert not nudged.out_of_range[0]
    assert nudged.density[0] > base


def test_perturbed_and_foreign_rows_are_flagged(
    detector: OODDetector, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = split
    x, std = test.to_numpy(), train.std().to_numpy()
    clean = detector.score(x)
    ten = detector.score(_perturb(x, std, k=10, sigmas=3.0, seed=7))
    five = detector.score(_perturb(x, std, k=5, sigmas=3.0, seed=7))
    assert ten.anomalous.mean() > 0.9  # measured 0.98
    assert five.anomalous.mean() > 0.6  # measured 0.78
    assert np.median(ten.density) > np.median(clean.density) + 20
    # rows from another distribution: independent normals with the training moments
    rng = np.random.default_rng(3)
    foreign = rng.normal(train.mean().to_numpy(), std, size=(1000, x.shape[1]))
    assert detector.score(foreign).anomalous.mean() > 0.25  # measured 0.35


def test_block_mode_raises_422_naming_row_and_feature(
    report: dict[str, Any], split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _, test = split
    blocker = OODDetector.from_report(report, mode="block")
    flagger = OODDetector.from_report(report, mode="flag")
    x = test.to_numpy()[:3].copy()
    assert not blocker.check(x[:2]).anomalous.any()  # clean rows pass in block mode
    j = blocker.features.index("mean_radius")
    x[2, j] = 1e4
    with pytest.raises(GuardRejectedError) as err:
        blocker.check(x)
    assert err.value.status == 422
    assert "row 2" in err.value.message
    assert "'mean_radius'" in err.value.message
    assert flagger.check(x).first_feature[2] == "mean_radius"  # flag mode returns
    # density rejection: every column perturbed, none out of range
    cols = report["profiles"]["train"]["columns"]
    lo = np.array([cols[f]["min"] for f in blocker.features])
    hi = np.array([cols[f]["max"] for f in blocker.features])
    edge = (hi + 0.05 * (hi - lo))[None, :]  # all beyond max, inside the margin
    res = flagger.score(edge)
    assert not res.out_of_range[0]
    assert res.anomalous[0]
    with pytest.raises(GuardRejectedError, match=r"row 0: density score .* above"):
        blocker.check(edge)


def test_input_validation(detector: OODDetector, report: dict[str, Any]) -> None:
    with pytest.raises(DataError, match="30 columns"):
        detector.score(np.zeros((2, 5)))
    with pytest.raises(ConfigError):
        OODDetector.from_report(report, mode="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        OODDetector.from_report(report, density_quantile=0.0)
    with pytest.raises(DataError, match="no input features"):
        OODDetector.from_report({"datasets": [{"name": "train"}], "profiles": {}})
    assert detector.score(np.empty((0, 30))).share == 0.0


def test_burst_triggers_and_clears() -> None:
    burst = OODBurst(window_s=10.0, threshold_share=0.2, min_requests=3)
    s = burst.record(10, 5, now=0.0)
    assert not s.active  # one request is not a burst
    assert not s.changed
    burst.record(10, 0, now=1.0)
    s = burst.record(10, 2, now=2.0)  # 7 / 30 = 0.233
    assert s.active
    assert s.changed
    assert s.share == pytest.approx(7 / 30)
    s = burst.record(10, 0, now=3.0)  # 7 / 40 = 0.175
    assert not s.active
    assert s.changed
    s = burst.record(10, 3, now=4.0)  # 10 / 50
    assert s.active
    assert s.changed
    s = burst.record(100, 0, now=5.0)
    assert not s.active
    assert s.changed
    # anomalies age out of the window: only the last 10 s count
    s = burst.record(2, 2, now=10.5)  # t=0 left the window (10.5 - 10]
    assert (s.requests, s.rows, s.anomalous) == (6, 142, 7)
    assert not burst.state(now=100.0).active
    assert burst.state(now=100.0).requests == 0
    with pytest.raises(ConfigError):
        burst.record(1, 2)
    with pytest.raises(ConfigError):
        OODBurst(window_s=0, threshold_share=0.5, min_requests=1)


def test_batched_scores_equal_each_columns_own_score(
    detector: OODDetector, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """The serving path scores all columns in one broadcast: equal to the per-column
    definition (searchsorted, -log density, the floor outside the reference range or NaN)."""
    _, test = split
    checked = test[list(detector.features)].to_numpy(dtype=float)[:, detector._index].copy()
    checked[0, 0] = np.nan
    checked[1, 1] = np.inf
    checked[2, 2] = -1e9
    expected = np.column_stack(
        [col.score(checked[:, j]) for j, col in enumerate(detector._columns)]
    )
    np.testing.assert_array_equal(detector._scores(checked), expected)

"""The gateway's default PRADA units (ReferenceScores from the reference profile) on skewed
tabular data and on images, without tuning.

Measured with these fixtures (``benchmarks/bench_extraction_calibration.py`` prints the full
table): breast cancer, 0 of 50 benign clients flagged (12 of 50 with features divided by the
reference standard deviation, the previous default); a T-RND attacker stepping 0.1 standard
deviations flagged in 15 of 20 runs, at 110 queries. Digits, 0 of 50 benign clients and the
T-RND attacker (1.6 pixel units) in 19 of 20 runs, as in pixel units. Fewer clients and
runs here keep the test under ~20 s.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from bastion.data.profile import Profile
from bastion.gateway.guards.extraction import ExtractionDetector, ReferenceScores

Setup = tuple[np.ndarray, np.ndarray, Pipeline, ReferenceScores]


def _setup(name: str) -> Setup:
    X, y = load_digits(return_X_y=True) if name == "digits" else load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.5, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(X_train, y_train)
    names = [f"f{i}" for i in range(X.shape[1])]
    summary = Profile.from_frame(pd.DataFrame(X_train, columns=names), seed=0).summary(5)
    return X_train, X_test, model, ReferenceScores(summary["columns"], names)


@pytest.fixture(scope="module")
def cancer() -> Setup:
    return _setup("breast_cancer")


@pytest.fixture(scope="module")
def digits() -> Setup:
    return _setup("digits")


def _flagged(scores: ReferenceScores, batches: Iterator[np.ndarray], model: Pipeline) -> bool:
    detector = ExtractionDetector(len(scores.features), transform=scores)
    status = None
    for batch in batches:
        status = detector.observe("c", batch, model.predict(batch))
        if status.flagged:
            return True
    return False


def _benign_flagged(setup: Setup, clients: int) -> int:
    _, X_test, model, scores = setup
    rng = np.random.default_rng(0)
    flagged = 0
    for _ in range(clients):
        rows = X_test[rng.permutation(len(X_test))]
        flagged += _flagged(scores, (rows[i : i + 10] for i in range(0, len(rows), 10)), model)
    return flagged


def _attacks_flagged(setup: Setup, step: np.ndarray | float, runs: int) -> int:
    X_train, _, model, scores = setup
    lo, hi = X_train.min(axis=0), X_train.max(axis=0)
    flagged = 0
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        rows = X_train[rng.choice(len(X_train), 10, replace=False)]

        def stream(rows: np.ndarray = rows, rng: np.random.Generator = rng) -> Iterator[np.ndarray]:
            yield rows
            while len(rows) < 1000:  # T-RND: a random-sign step from every row so far
                new = np.clip(rows + step * rng.choice([-1.0, 1.0], size=rows.shape), lo, hi)
                yield from (new[i : i + 10] for i in range(0, len(new), 10))
                rows = np.vstack([rows, new])

        flagged += _flagged(scores, stream(), model)
    return flagged


def test_skewed_tabular_features_no_longer_flag_benign_clients(cancer: Setup) -> None:
    assert set(cancer[3].kinds) == {"rank"}  # 30 continuous, skewed features
    assert _benign_flagged(cancer, 50) <= 2


def test_a_tabular_extraction_attack_is_still_flagged(cancer: Setup) -> None:
    step = 0.1 * cancer[0].std(axis=0)
    assert _attacks_flagged(cancer, step, 10) >= 6


def test_images_keep_pixel_units_benign_pass_and_attacks_are_flagged(digits: Setup) -> None:
    kinds = digits[3].kinds
    assert kinds.count("level") == len(kinds)  # at most 17 intensities per pixel
    assert _benign_flagged(digits, 10) == 0
    assert _attacks_flagged(digits, 1.6, 10) >= 8


def test_reference_scores_are_monotone_mid_ranked_and_extend_beyond_the_range() -> None:
    rng = np.random.default_rng(0)
    skewed = rng.lognormal(size=2000)
    levels = rng.choice([0.0, 0.0, 0.0, 1.0, 2.0], size=2000)
    frame = pd.DataFrame({"skewed": skewed, "levels": levels, "const": np.zeros(2000)})
    columns = Profile.from_frame(frame, seed=0).summary(5)["columns"]
    scores = ReferenceScores(columns, ["skewed", "levels", "const", "missing"])
    assert scores.kinds == ("rank", "level", "level", "scaled")
    grid = np.linspace(-5, 80, 500)
    z = scores(np.column_stack([grid, grid, grid, grid]))
    assert np.all(np.diff(z[:, 0]) >= 0)  # monotone: order is kept
    assert np.all(np.diff(z[:, 0])[grid[1:] > skewed.max()] > 0)  # beyond max still moves
    median = scores(np.array([[np.median(skewed), 0.0, 0.0, 0.0]]))[0, 0]
    assert abs(median) < 0.1  # the reference median is a normal score of 0
    inside = scores(skewed[:, None].repeat(4, axis=1))[:, 0]
    assert abs(inside.mean()) < 0.1
    assert 0.8 < inside.std() < 1.2  # skew gone: the reference itself comes out ~N(0, 1)
    np.testing.assert_array_equal(z[:, 1], grid)  # levels keep their own units
    np.testing.assert_array_equal(z[:, 3], grid)  # no profile: as is

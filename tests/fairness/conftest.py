"""Fixtures for the fairness tests: the diabetes fairness demo and a planted-bias generator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bastion.data.dataset import Dataset
from bastion.models.base import ArrayLike, ModelAdapter, ModelInfo


class FnModel(ModelAdapter):
    """A model that is a plain function of the feature frame (planted rules, fitted pipelines)."""

    def __init__(self, fn: Callable[[pd.DataFrame], np.ndarray], classes: list[Any]) -> None:
        super().__init__(ModelInfo(name="fn", format="callable"), classes=classes)
        self._fn = fn

    def _predict(self, X: ArrayLike) -> np.ndarray:
        return np.asarray(self._fn(pd.DataFrame(X)))


@pytest.fixture(scope="session")
def diabetes() -> dict[str, Any]:
    """Diabetes (unscaled): sex, an age band, target binarised at the median, LR predictions."""
    data = load_diabetes(as_frame=True, scaled=False)
    frame = data.frame.copy()
    frame["age_band"] = pd.cut(
        frame["age"], [0, 40, 60, 200], right=False, labels=["<40", "40-59", "60+"]
    )
    frame["target"] = (frame["target"] > frame["target"].median()).astype(int)
    features = list(data.feature_names)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        frame[features], frame["target"]
    )
    return {
        "frame": frame,
        "features": features,
        "estimator": model,
        "y_true": frame["target"].to_numpy(),
        "y_pred": model.predict(frame[features]),
    }


@pytest.fixture
def make_biased() -> Callable[..., tuple[Dataset, FnModel]]:
    """Synthetic test set and a rule model whose decision threshold depends on the group.

    ``bias`` shifts group "b"'s threshold; 0 gives a fair model (same rule for all groups).
    """

    def build(
        bias: float = 0.0, n: int = 4000, seed: int = 0, small_group: int = 0
    ) -> tuple[Dataset, FnModel]:
        rng = np.random.default_rng(seed)
        group = np.where(rng.random(n) < 0.5, "a", "b")
        if small_group:
            group[:small_group] = "c"
        x = rng.normal(size=n)
        y = (x + 0.5 * rng.normal(size=n) > 0).astype(int)
        frame = pd.DataFrame({"x": x, "group": group, "target": y})
        test = Dataset.from_frame(
            frame, name="test", target="target", sensitive=["group"], non_features=["group"]
        )
        # the rule reads each row's group by position: a stand-in for a proxy feature
        shift = np.where(group == "b", bias, 0.0)

        def predict(rows: pd.DataFrame) -> np.ndarray:
            return (rows["x"].to_numpy() > shift[: len(rows)]).astype(int)

        return test, FnModel(predict, classes=[0, 1])

    return build


@pytest.fixture
def fn_model() -> type[FnModel]:
    """The function-backed adapter class (test modules cannot import conftest directly)."""
    return FnModel

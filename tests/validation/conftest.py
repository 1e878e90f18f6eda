"""Fixtures for the validation tests: fitted scikit-learn models behind a minimal adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bastion.checks import CheckContext
from bastion.data.dataset import Dataset
from bastion.models.base import ArrayLike, Capability, ModelAdapter, ModelInfo
from bastion.models.predictions import Predictions


class EstimatorAdapter(ModelAdapter):
    """A fitted estimator behind the adapter interface; ``proba_map`` distorts probabilities."""

    def __init__(
        self,
        estimator: Any,
        *,
        with_proba: bool = True,
        proba_map: Callable[[np.ndarray], np.ndarray] | None = None,
        name: str = "estimator",
    ) -> None:
        caps = {Capability.PREDICT}
        if with_proba:
            caps.add(Capability.PREDICT_PROBA)
        self.capabilities = frozenset(caps)
        super().__init__(ModelInfo(name=name, format="sklearn"), classes=estimator.classes_)
        self.estimator = estimator
        self.proba_map = proba_map

    def _predict(self, X: ArrayLike) -> np.ndarray:
        return np.asarray(self.estimator.predict(X))

    def _predict_proba(self, X: ArrayLike) -> np.ndarray:
        proba = np.asarray(self.estimator.predict_proba(X))
        return proba if self.proba_map is None else self.proba_map(proba)


def _split(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = train_test_split(frame, test_size=0.4, random_state=0, stratify=frame[target])
    return train.reset_index(drop=True), test.reset_index(drop=True)


@pytest.fixture(scope="session")
def cancer() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Breast cancer Wisconsin, train and test frames with a ``target`` column."""
    frame = load_breast_cancer(as_frame=True).frame
    return _split(frame, "target")


@pytest.fixture(scope="session")
def cancer_model(cancer: tuple[pd.DataFrame, pd.DataFrame]) -> Any:
    train, _ = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(train.drop(columns="target"), train["target"])


@pytest.fixture(scope="session")
def cancer_dummy(cancer: tuple[pd.DataFrame, pd.DataFrame]) -> Any:
    train, _ = cancer
    return DummyClassifier(strategy="most_frequent").fit(
        train.drop(columns="target"), train["target"]
    )


@pytest.fixture(scope="session")
def cancer_test(cancer: tuple[pd.DataFrame, pd.DataFrame]) -> Dataset:
    return Dataset.from_frame(cancer[1], name="test", target="target")


@pytest.fixture(scope="session")
def cancer_pred(cancer_model: Any, cancer: tuple[pd.DataFrame, pd.DataFrame]) -> Predictions:
    test = cancer[1]
    x = test.drop(columns="target")
    return Predictions(
        test["target"].to_numpy(),
        cancer_model.predict(x),
        cancer_model.predict_proba(x),
        cancer_model.classes_,
        1,
    )


@pytest.fixture(scope="session")
def iris_pred() -> Predictions:
    frame = load_iris(as_frame=True).frame
    train, test = _split(frame, "target")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000))
    model.fit(train.drop(columns="target"), train["target"])
    x = test.drop(columns="target")
    return Predictions(
        test["target"].to_numpy(),
        model.predict(x),
        model.predict_proba(x),
        model.classes_,
        model.classes_[-1],
    )


@pytest.fixture
def make_ctx() -> Callable[..., CheckContext]:
    """``make_ctx(test_dataset, estimator, baseline=None, **adapter_kwargs, **context_kwargs)``."""

    def build(
        test: Dataset,
        estimator: Any,
        *,
        baseline: Any = None,
        with_proba: bool = True,
        proba_map: Callable[[np.ndarray], np.ndarray] | None = None,
        **context: Any,
    ) -> CheckContext:
        model = EstimatorAdapter(estimator, with_proba=with_proba, proba_map=proba_map)
        base = None if baseline is None else EstimatorAdapter(baseline, name="baseline")
        return CheckContext(test=test, model=model, baseline=base, subject="model", **context)

    return build

"""SklearnAdapter: same answers as the estimator, no feature-name warnings, counted queries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import Pipeline

from bastion.exceptions import CapabilityError, ModelError
from bastion.models.base import Capability
from bastion.models.sklearn import SklearnAdapter


def test_pipeline_matches_estimator_on_frames_and_arrays(
    cancer: tuple[pd.DataFrame, pd.Series], cancer_pipeline: Pipeline
) -> None:
    X, _ = cancer
    model = SklearnAdapter(cancer_pipeline)
    expected = cancer_pipeline.predict(X)
    # filterwarnings=error: an ndarray given to a DataFrame-fitted model would warn.
    np.testing.assert_array_equal(model.predict(X), expected)
    np.testing.assert_array_equal(model.predict(X.to_numpy()), expected)
    np.testing.assert_allclose(model.predict_proba(X.to_numpy()), cancer_pipeline.predict_proba(X))
    assert model.classes_.tolist() == [0, 1]
    assert model.has(Capability.PREDICT_PROBA)
    assert model.info.format == "sklearn"
    assert model.info.name == "Pipeline"


def test_frame_given_to_array_fitted_model(
    cancer: tuple[pd.DataFrame, pd.Series], cancer_lr_array: LogisticRegression
) -> None:
    X, _ = cancer
    Xs = (X - X.mean()) / X.std()
    model = SklearnAdapter(cancer_lr_array)
    np.testing.assert_array_equal(model.predict(Xs), cancer_lr_array.predict(Xs.to_numpy()))


def test_columns_are_reordered_to_the_fitted_order(
    cancer: tuple[pd.DataFrame, pd.Series], cancer_pipeline: Pipeline
) -> None:
    X, _ = cancer
    shuffled = X[X.columns[::-1]]
    model = SklearnAdapter(cancer_pipeline)
    np.testing.assert_array_equal(model.predict(shuffled), cancer_pipeline.predict(X))


def test_missing_column_and_wrong_width_are_named(
    cancer: tuple[pd.DataFrame, pd.Series], cancer_pipeline: Pipeline
) -> None:
    X, _ = cancer
    model = SklearnAdapter(cancer_pipeline)
    with pytest.raises(ModelError, match="mean radius"):
        model.predict(X.drop(columns=["mean radius"]))
    with pytest.raises(ModelError, match="expects 30 features"):
        model.predict(X.to_numpy()[:, :5])


def test_an_infinite_input_value_is_named(
    cancer: tuple[pd.DataFrame, pd.Series], cancer_pipeline: Pipeline
) -> None:
    """scikit-learn says "Input X contains infinity", naming neither column nor row: the
    CLI printed that alone for a data file with one inf."""
    X, _ = cancer
    broken = X.iloc[:10].copy()
    broken.iloc[7, 3] = np.inf
    model = SklearnAdapter(cancer_pipeline)
    named = r"row 7 of the rows sent holds inf in column 'mean area' \(1 infinite value"
    for call in (model.predict, model.predict_proba):
        for rows in (broken, broken.to_numpy()):  # an array gets the fitted names too
            with pytest.raises(ModelError, match=named):
                call(rows)


def test_query_counter(cancer: tuple[pd.DataFrame, pd.Series], cancer_pipeline: Pipeline) -> None:
    X, _ = cancer
    model = SklearnAdapter(cancer_pipeline)
    model.predict(X.iloc[:10])
    model.predict_proba(X.iloc[:5])
    assert (model.n_queries, model.n_calls) == (15, 2)
    model.reset_counter()
    assert (model.n_queries, model.n_calls) == (0, 0)


def test_no_predict_proba_is_a_capability_error(cancer: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = cancer
    svc = RidgeClassifier().fit(X.iloc[:200].to_numpy(), y.iloc[:200].to_numpy())
    model = SklearnAdapter(svc)
    assert model.capabilities == frozenset({Capability.PREDICT})
    with pytest.raises(CapabilityError, match="predict_proba"):
        model.predict_proba(X.to_numpy()[:3])
    with pytest.raises(CapabilityError, match="evasion needs predict_proba, logits"):
        model.require(Capability.PREDICT_PROBA, Capability.LOGITS, by="evasion")
    assert model.n_queries == 0  # refused before any query


def test_unfitted_and_non_estimators_are_refused() -> None:
    with pytest.raises(ModelError, match="not fitted"):
        SklearnAdapter(LogisticRegression())
    with pytest.raises(ModelError, match="predict method"):
        SklearnAdapter(object())


def test_kept_fitted_part_names_what_a_clone_shares_fitted() -> None:
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.datasets import load_breast_cancer
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from bastion.models.sklearn import kept_fitted_part

    X, y = load_breast_cancer(return_X_y=True)
    scaled = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    # stateless parts and ordinary fitted models clone anew
    plain = make_pipeline(FunctionTransformer(), StandardScaler(), LogisticRegression())
    assert kept_fitted_part(plain.fit(X, y), clone(plain)) is None
    assert kept_fitted_part(scaled, clone(scaled)) is None
    calibrated = CalibratedClassifierCV(FrozenEstimator(scaled)).fit(X, y)
    assert kept_fitted_part(calibrated, clone(calibrated)) == "'estimator': FrozenEstimator"
    frozen = FrozenEstimator(scaled)
    assert kept_fitted_part(frozen, clone(frozen)) == "the estimator: FrozenEstimator"
    # a parameter holding a class clones as itself: no fitted part (a review: calling its
    # unbound __sklearn_is_fitted__ raised a TypeError)
    from sklearn.ensemble import BaggingClassifier

    bagged = BaggingClassifier(estimator=LogisticRegression())
    bagged.estimator = make_pipeline(LogisticRegression()).__class__  # type: ignore[assignment]
    assert kept_fitted_part(bagged, clone(bagged)) is None

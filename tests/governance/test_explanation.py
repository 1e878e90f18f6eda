"""Permutation importance equals scikit-learn's to the last bit, for any adapter; SHAP is
optional and its absence is a clear MissingExtraError."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from bastion.data.dataset import Dataset
from bastion.exceptions import ConfigError, DataError, MissingExtraError
from bastion.governance import explanation
from bastion.governance.explanation import compute_permutation_importance, compute_shap_summary
from bastion.models.callable import CallableAdapter
from bastion.models.sklearn import SklearnAdapter


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, Dataset]:
    frame = load_breast_cancer(as_frame=True).frame
    frame["row_id"] = np.arange(len(frame))  # a non-feature column: must not be permuted
    train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame["target"])
    kw = {"target": "target", "non_features": ["row_id"]}
    return Dataset.from_frame(train, name="train", **kw), Dataset.from_frame(
        test, name="test", **kw
    )


def _fitted(train: Dataset, numpy: bool = False) -> object:
    # scaled: lbfgs converges in milliseconds instead of a second on the raw features
    X = train.features.to_numpy() if numpy else train.features
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, train.labels)


def _assert_same(ours: explanation.PermutationImportance, ref: object) -> None:
    # bit-equal, not merely close: same permutations, same scorer, same arithmetic
    np.testing.assert_array_equal(ours.importances, ref.importances)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(ours.importances_mean, ref.importances_mean)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(ours.importances_std, ref.importances_std)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("estimator", "seed", "n_repeats"),
    [
        (DecisionTreeClassifier(max_depth=4, random_state=0), 0, 5),
        (make_pipeline(StandardScaler(), LogisticRegression()), 7, 3),
        (RandomForestClassifier(n_estimators=25, random_state=0), 11, 4),
    ],
)
def test_equals_sklearn_permutation_importance(
    data: tuple[Dataset, Dataset], estimator: object, seed: int, n_repeats: int
) -> None:
    train, test = data
    estimator.fit(train.features, train.labels)  # type: ignore[attr-defined]
    ours = compute_permutation_importance(
        SklearnAdapter(estimator), test, n_repeats=n_repeats, seed=seed
    )
    ref = permutation_importance(
        estimator, test.features, test.labels, n_repeats=n_repeats, random_state=seed
    )
    _assert_same(ours, ref)
    assert ours.baseline_score == estimator.score(test.features, test.labels)  # type: ignore[attr-defined]
    assert [f.feature for f in ours.features] == test.feature_names
    assert "row_id" not in {f.feature for f in ours.features}
    assert ours.n_rows == test.n_rows
    assert ours.n_repeats == n_repeats
    assert ours.seed == seed
    assert ours.ranked()[0].mean == max(ours.importances_mean)


def test_balanced_accuracy_equals_sklearn(data: tuple[Dataset, Dataset]) -> None:
    train, test = data
    clf = _fitted(train)
    ours = compute_permutation_importance(
        SklearnAdapter(clf), test, n_repeats=3, seed=2, scoring="balanced_accuracy"
    )
    ref = permutation_importance(
        clf, test.features, test.labels, n_repeats=3, random_state=2, scoring="balanced_accuracy"
    )
    _assert_same(ours, ref)


def test_any_adapter_gives_the_same_numbers(data: tuple[Dataset, Dataset]) -> None:
    # a plain callable (what a remote or torch model looks like to Bastion): no sklearn API
    train, test = data
    clf = _fitted(train, numpy=True)
    seen: list[int] = []

    def predict(X: pd.DataFrame | np.ndarray) -> np.ndarray:
        seen.append(len(X))
        return clf.predict(np.asarray(X))  # type: ignore[attr-defined,no-any-return]

    adapter = CallableAdapter(predict=predict, classes=[0, 1], name="callable")
    ours = compute_permutation_importance(adapter, test, n_repeats=4, seed=5)
    ref = permutation_importance(
        clf, test.features.to_numpy(), test.labels, n_repeats=4, random_state=5
    )
    _assert_same(ours, ref)
    n_features = len(test.feature_names)
    # one call for the baseline, one per feature carrying all its repeats
    assert adapter.n_calls == n_features + 1
    assert seen == [test.n_rows] + [4 * test.n_rows] * n_features


def test_row_budget_splits_calls_without_changing_numbers(
    data: tuple[Dataset, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    clf = _fitted(train)
    whole = compute_permutation_importance(SklearnAdapter(clf), test, n_repeats=3, seed=1)
    monkeypatch.setattr(explanation, "MAX_ROWS_PER_CALL", 2 * test.n_rows)
    adapter = SklearnAdapter(clf)
    split = compute_permutation_importance(adapter, test, n_repeats=3, seed=1)
    assert split == whole
    assert adapter.n_calls == 1 + 2 * len(test.feature_names)  # 3 repeats -> calls of 2 + 1


def test_bad_arguments_raise(data: tuple[Dataset, Dataset]) -> None:
    train, test = data
    adapter = SklearnAdapter(_fitted(train))
    with pytest.raises(ConfigError, match="n_repeats must be an integer of at least 1"):
        compute_permutation_importance(adapter, test, n_repeats=0)
    with pytest.raises(ConfigError, match="scoring must be one of accuracy, balanced_accuracy"):
        compute_permutation_importance(adapter, test, scoring="roc_auc")
    unlabelled = Dataset.from_frame(test.features, name="unlabelled")
    with pytest.raises(DataError, match="'unlabelled' has no target column"):
        compute_permutation_importance(adapter, unlabelled)


def test_shap_missing_is_a_missing_extra(
    data: tuple[Dataset, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    adapter = SklearnAdapter(_fitted(train))
    monkeypatch.setitem(sys.modules, "shap", None)  # import shap now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'bastion\[explain\]'"):
        compute_shap_summary(adapter, test)


@pytest.mark.slow  # shap compiles its numba kernels on first use (about 20 s)
def test_shap_summary_when_installed(data: tuple[Dataset, Dataset]) -> None:
    pytest.importorskip("shap")
    train, test = data
    clf = _fitted(train)
    kw = {"seed": 0, "max_rows": 20, "background_rows": 10}
    summary = compute_shap_summary(SklearnAdapter(clf), test, **kw)  # type: ignore[arg-type]
    assert [f for f, _ in summary.mean_abs] == test.feature_names
    assert all(v >= 0 for _, v in summary.mean_abs)
    assert summary.n_rows == 20
    assert summary.n_background == 10
    assert summary.output == "probability of class 1"
    assert compute_shap_summary(SklearnAdapter(clf), test, **kw) == summary  # type: ignore[arg-type]

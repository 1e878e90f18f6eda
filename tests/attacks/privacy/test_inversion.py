"""Attribute inference: beats the no-query baseline when the model's outputs encode the
attribute (as an input, or memorised through the label) and not otherwise; Fredrikson's
inversion recovers an input attribute; label-only models, arrays, budgets and bad inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, RidgeClassifier

from bastion.attacks.base import ATTACKS
from bastion.attacks.budget import Budget
from bastion.attacks.privacy.inversion import (
    AttributeInference,
    AttributeInferenceConfig,
    AttributeInferenceResult,
)
from bastion.exceptions import ConfigError, ModelOutputError, TimeBudgetError
from bastion.models.sklearn import SklearnAdapter

N_TRAIN = 400


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    """``s`` is a coin flip independent of the features; the label depends on it strongly."""
    rng = np.random.default_rng(0)
    n = 600
    s = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + 3 * s + rng.normal(scale=0.5, size=n) > 1.5).astype(int)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    frame["s"] = s
    return {"frame": frame, "s": s, "y": y, "x": x}


def fit(data: dict[str, Any], columns: list[str], estimator: Any = None) -> SklearnAdapter:
    train = data["frame"].iloc[:N_TRAIN][columns]
    model = estimator if estimator is not None else LogisticRegression()
    return SklearnAdapter(model.fit(train, data["y"][:N_TRAIN]))


def run(
    model: SklearnAdapter,
    X: Any,
    s: Any = None,
    config: AttributeInferenceConfig | None = None,
    **kw: Any,
) -> AttributeInferenceResult:
    return AttributeInference(config or AttributeInferenceConfig(classifier="logistic")).run(
        model, X, s, **kw
    )


def test_registered_with_threat_tags() -> None:
    cls = ATTACKS.get("attribute_inference")
    assert cls.family == "privacy"
    assert cls.tags == ("AML.T0024.001", "ML03")


def test_an_input_attribute_the_model_relies_on_is_recovered(data: dict[str, Any]) -> None:
    columns = ["a", "b", "c", "d", "s"]
    model = fit(data, columns)
    X = data["frame"].iloc[:N_TRAIN][columns]
    result = run(model, X, attribute="s")
    assert result.baseline_accuracy < 0.6  # the other features say nothing about s
    assert result.method_accuracy["classifier"] > 0.9
    assert result.method_accuracy["inversion"] > 0.95  # Fredrikson: try 0 and 1, match outputs
    assert result.advantage > 0.35
    assert result.method == "inversion"
    np.testing.assert_array_equal(result.truth, data["s"][:N_TRAIN])
    # one query per target, then one per target and candidate value
    assert result.queries == N_TRAIN * 3
    assert result.metrics()["advantage"] == pytest.approx(result.advantage)
    # paired over the targets: the attack is right where the baseline is not, or both are
    right = (result.predicted == result.truth).astype(float)
    assert right.mean() == pytest.approx(result.attack_accuracy)
    se = result.extra["advantage_se"]
    assert 0.0 < se < 0.05
    # paired over the same targets: here at most the unpaired figure (the two methods'
    # hits are not negatively correlated), with 5% slack
    unpaired = np.sqrt(
        result.attack_accuracy * (1 - result.attack_accuracy) / N_TRAIN
        + result.baseline_accuracy * (1 - result.baseline_accuracy) / N_TRAIN
    )
    assert se <= unpaired * 1.05


def test_an_attribute_the_model_ignores_is_not_leaked(data: dict[str, Any]) -> None:
    model = fit(data, ["a", "b", "c", "d"])
    X = data["frame"].iloc[:N_TRAIN][["a", "b", "c", "d"]]
    result = run(model, X, data["s"][:N_TRAIN])
    assert abs(result.advantage) < 0.05
    assert result.attack_accuracy < 0.6
    assert "inversion" not in result.method_accuracy  # not a model input


def test_knowing_the_label_raises_the_baseline_not_the_leak(data: dict[str, Any]) -> None:
    columns = ["a", "b", "c", "d", "s"]
    X = data["frame"].iloc[:N_TRAIN][columns]
    y = data["y"][:N_TRAIN]
    leaky = run(fit(data, columns), X, attribute="s", y=y)
    assert leaky.baseline_accuracy > 0.85  # the label reveals most of s without the model
    assert leaky.advantage > 0.05  # the outputs still add what the label misses
    ignoring = run(
        fit(data, ["a", "b", "c", "d"]), X[["a", "b", "c", "d"]], data["s"][:N_TRAIN], y=y
    )
    assert abs(ignoring.advantage) < 0.03


def test_a_memorised_label_leaks_an_attribute_that_is_not_an_input() -> None:
    rng = np.random.default_rng(1)
    n = 400
    s = rng.integers(0, 2, n)
    y = np.where(rng.random(n) < 0.9, s, 1 - s)  # the label is mostly the attribute
    x = rng.normal(size=(n, 4))
    x[:, 0] += 0.3 * s  # a weak trace in the features: the baseline's share
    overfit = SklearnAdapter(RandomForestClassifier(random_state=0).fit(x, y))
    general = SklearnAdapter(LogisticRegression().fit(x, y))
    gb = AttributeInferenceConfig()  # the default gradient-boosting learner
    leaky = AttributeInference(gb).run(overfit, x, s)
    tight = AttributeInference(gb).run(general, x, s)
    assert leaky.advantage > 0.2  # measured 0.325: the forest memorised y ~ s
    assert abs(tight.advantage) < 0.05
    assert leaky.extra["evaluation"] == "5-fold cross-fit"


def test_auxiliary_rows_train_the_attack(data: dict[str, Any]) -> None:
    columns = ["a", "b", "c", "d", "s"]
    model = fit(data, columns)
    frame = data["frame"][columns]
    result = run(
        model,
        frame.iloc[:N_TRAIN],
        attribute="s",
        X_aux=frame.iloc[N_TRAIN:],
    )
    assert result.extra["evaluation"] == "auxiliary rows"
    assert result.queries == 600 + N_TRAIN * 2
    assert result.advantage > 0.35


def test_auxiliary_columns_of_another_dtype_match_by_value(data: dict[str, Any]) -> None:
    """The attribute (and the labels) as floats in the auxiliary rows, integers in the
    targets, as a CSV column with a gap reads: compared as text ("1.0" against "1") no
    prediction matched, the attack and the baseline both scored 0 and any limit passed; and
    labels known as "1.0" told the targets' classifiers nothing (the advantage moved from
    0.18 to 0.41)."""
    columns = ["a", "b", "c", "d", "s"]
    model = fit(data, columns)
    frame, y = data["frame"][columns], data["y"]
    targets, aux = frame.iloc[:N_TRAIN], frame.iloc[N_TRAIN:]
    same = run(model, targets, attribute="s", y=y[:N_TRAIN], X_aux=aux, y_aux=y[N_TRAIN:])
    mixed = run(
        model,
        targets,
        attribute="s",
        y=y[:N_TRAIN].astype(float),
        X_aux=aux.astype({"s": float}),
        y_aux=y[N_TRAIN:],
    )
    assert same.advantage > 0.05  # the labels alone say much about s
    assert mixed.extra["candidates"] == same.extra["candidates"] == ["0", "1"]
    for key in ("attack_accuracy", "baseline_accuracy", "advantage"):
        assert getattr(mixed, key) == getattr(same, key), key
    # the attribute given apart from the model's inputs
    given = run(
        model, targets, data["s"][:N_TRAIN], X_aux=aux, sensitive_aux=data["s"][N_TRAIN:] * 1.0
    )
    assert given.attack_accuracy > 0.5


def test_label_only_models_and_arrays(data: dict[str, Any]) -> None:
    x = data["frame"][["a", "b", "c", "d", "s"]].to_numpy()
    model = SklearnAdapter(RidgeClassifier().fit(x[:N_TRAIN], data["y"][:N_TRAIN]))
    result = run(model, x[:N_TRAIN], attribute=4)
    assert result.extra["outputs"] == "predict"
    # a label says less than a probability, but the attribute still shows through it
    assert result.advantage > 0.1
    assert result.attribute == "4"


def test_inversion_is_skipped_past_the_query_budget(data: dict[str, Any]) -> None:
    columns = ["a", "b", "c", "d", "s"]
    X = data["frame"].iloc[:N_TRAIN][columns]
    result = run(fit(data, columns), X, attribute="s", budget=Budget(max_queries=N_TRAIN + 10))
    assert result.stopped == "query budget"
    assert "inversion" not in result.method_accuracy
    assert result.queries == N_TRAIN
    with pytest.raises(ConfigError, match="below the 400 queries"):
        run(fit(data, columns), X, attribute="s", budget=Budget(max_queries=10))


def test_deterministic_under_a_seed(data: dict[str, Any]) -> None:
    model = fit(data, ["a", "b", "c", "d"])
    X = data["frame"].iloc[:N_TRAIN][["a", "b", "c", "d"]]
    gb = AttributeInferenceConfig()
    first = AttributeInference(gb).run(model, X, data["s"][:N_TRAIN], seed=3)
    again = AttributeInference(gb).run(model, X, data["s"][:N_TRAIN], seed=3)
    np.testing.assert_array_equal(first.predicted, again.predicted)
    assert first.metrics() | {"time_s": 0} == again.metrics() | {"time_s": 0}


def test_string_attributes_keep_their_values(data: dict[str, Any]) -> None:
    model = fit(data, ["a", "b", "c", "d"])
    X = data["frame"].iloc[:N_TRAIN][["a", "b", "c", "d"]]
    words = np.where(data["s"][:N_TRAIN] == 1, "yes", "no")
    result = run(model, X, words)
    assert set(result.predicted.tolist()) <= {"yes", "no"}
    assert result.extra["candidates"] == ["no", "yes"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attribute": "zz"}, "attribute 'zz' is not a column of X"),
        ({}, "sensitive is required"),
        ({"attribute": "s", "sensitive_aux": np.zeros(3)}, "without X_aux"),
        ({"attribute": "s", "y": np.zeros(3)}, "y must hold one label per row"),
    ],
)
def test_bad_inputs(data: dict[str, Any], kwargs: dict[str, Any], message: str) -> None:
    columns = ["a", "b", "c", "d", "s"]
    X = data["frame"].iloc[:N_TRAIN][columns]
    with pytest.raises(ConfigError, match=message):
        run(fit(data, columns), X, **kwargs)


def test_a_single_valued_attribute_has_nothing_to_infer(data: dict[str, Any]) -> None:
    model = fit(data, ["a", "b", "c", "d"])
    X = data["frame"].iloc[:50][["a", "b", "c", "d"]]
    with pytest.raises(ConfigError, match="single value"):
        run(model, X, np.zeros(50))


def test_a_numeric_attribute_with_many_values_is_inferred_as_quantile_bins(
    data: dict[str, Any],
) -> None:
    """``a`` (400 distinct values, a model input the label depends on) is hidden from the
    attacker, whose other features say nothing of it: the model's outputs reveal its quintile,
    by the classifier and by inversion (each bin's median plugged in)."""
    model = fit(data, ["a", "b", "c", "d"])
    X = data["frame"].iloc[:N_TRAIN][["a", "b", "c", "d"]]
    result = run(model, X, attribute="a", config=AttributeInferenceConfig(classifier="logistic"))
    assert result.extra["bins"]["count"] == 5
    assert len(result.extra["bins"]["edges"]) == 4
    names = set(result.extra["candidates"])
    assert len(names) == 5
    assert set(result.truth.tolist()) == names
    assert set(result.predicted.tolist()) <= names
    # equal-count bins: the majority guess is right a fifth of the time
    assert result.extra["majority_accuracy"] == pytest.approx(0.2, abs=0.02)
    assert result.method_accuracy["inversion"] > 0.4
    assert result.advantage > 0.2
    # the truth's bins are the quintiles of a
    edges = np.quantile(X["a"], [0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(result.extra["bins"]["edges"], edges)


def test_a_missing_attribute_value_is_refused_by_row(data: dict[str, Any]) -> None:
    """From a review: 1% of a numeric attribute missing made every quantile edge NaN, one bin
    for all, and the advantage fell from 0.31 to 0.005 (a pass)."""
    from bastion.exceptions import DataError

    model = fit(data, ["a", "b", "c", "d"])
    X = data["frame"].iloc[:N_TRAIN][["a", "b", "c", "d"]].copy()
    X.loc[X.index[[7, 30]], "a"] = np.nan
    with pytest.raises(DataError, match=r"'a' is missing in 2 of 400 rows of X .*row 7"):
        run(model, X, attribute="a")
    hidden = data["s"][:N_TRAIN].astype(object)
    hidden[3] = None
    with pytest.raises(DataError, match="missing in 1 of 400 rows of sensitive"):
        run(model, data["frame"].iloc[:N_TRAIN][["a", "b", "c", "d"]], hidden)


def test_a_missing_one_hot_member_is_refused() -> None:
    """A row of [NaN, 0, 0] read as the first member's value (NaN != 0; a review)."""
    from bastion.attacks.privacy.inversion import one_hot_names
    from bastion.exceptions import DataError

    frame = pd.DataFrame({"g_a": [np.nan, 0, 1], "g_b": [0, 1, 0], "g_c": [0, 0, 0]})
    with pytest.raises(DataError, match=r"missing in 1 row\(s\) \(the first at position 0\)"):
        one_hot_names(frame, ["g_a", "g_b", "g_c"], "X")
    text = pd.DataFrame({"a": ["1", "0", "nan"], "b": ["0", "1", "0"]})
    with pytest.raises(DataError, match=r"missing in 1 row\(s\) \(the first at position 2\)"):
        one_hot_names(text, ["a", "b"], "X")
    nullable = frame.fillna(0).astype("boolean")
    nullable.loc[1, "g_c"] = pd.NA  # a nullable column's NA: missing too, not "no number"
    with pytest.raises(DataError, match=r"missing in 1 row\(s\) \(the first at position 1\)"):
        one_hot_names(nullable, ["g_a", "g_b", "g_c"], "X")
    assert one_hot_names(frame.fillna(0), ["g_a", "g_b", "g_c"], "X").tolist() == [
        "(none)", "g_b", "g_a",
    ]  # fmt: skip


def test_a_non_numeric_attribute_with_many_values_is_refused(data: dict[str, Any]) -> None:
    model = fit(data, ["a", "b", "c", "d"])
    X = data["frame"].iloc[:N_TRAIN][["a", "b", "c", "d"]]
    words = np.array([f"v{i}" for i in range(N_TRAIN)])
    with pytest.raises(ConfigError, match=f"has {N_TRAIN} distinct values.*non-numeric"):
        run(model, X, words)


def test_a_binned_integer_attribute_is_plugged_in_as_a_value_it_takes() -> None:
    """An integer age in a frame: each bin's plugged-in value is a (lower) median, an age the
    data holds, so the integer column accepts it (a median of 23.5 used to fail the trial)."""
    rng = np.random.default_rng(1)
    n = 200
    age = np.arange(n) % 40 + 20
    X = pd.DataFrame({"a": rng.normal(size=n), "age": age})
    y = (X["a"] + 0.05 * (age - 40) > 0).astype(int)
    model = SklearnAdapter(LogisticRegression().fit(X, y))
    result = run(model, X, attribute="age")
    assert result.extra["bins"]["count"] == 5
    assert result.method_accuracy["inversion"] > 0.5
    # on an array too, where a fractional value used to be truncated silently
    arrays = run(model, X.to_numpy(), attribute=1)
    assert arrays.method_accuracy["inversion"] == result.method_accuracy["inversion"]


def test_auxiliary_rows_as_an_array_beside_a_frame_line_up(data: dict[str, Any]) -> None:
    """Auxiliary rows given as an array take the frame's column names (they used to form a
    second set of columns, NaN in the targets' rows, and both accuracies fell to chance)."""
    columns = ["a", "b", "c", "d", "s"]
    model = fit(data, columns)
    frame = data["frame"][columns]
    as_frame = run(model, frame.iloc[:N_TRAIN], attribute="s", X_aux=frame.iloc[N_TRAIN:])
    as_array = run(
        model, frame.iloc[:N_TRAIN], attribute="s", X_aux=frame.iloc[N_TRAIN:].to_numpy()
    )
    assert as_array.attack_accuracy == as_frame.attack_accuracy
    assert as_array.baseline_accuracy == as_frame.baseline_accuracy
    shuffled = frame.iloc[N_TRAIN:][["s", "d", "c", "b", "a"]]  # same columns, other order
    reordered = run(model, frame.iloc[:N_TRAIN], attribute="s", X_aux=shuffled)
    assert reordered.attack_accuracy == as_frame.attack_accuracy
    with pytest.raises(ConfigError, match="X_aux must hold the same feature columns as X"):
        run(model, frame.iloc[:N_TRAIN], attribute="s", X_aux=frame.iloc[N_TRAIN:, :3])
    renamed = frame.iloc[N_TRAIN:].rename(columns={"b": "B"})
    with pytest.raises(ConfigError, match=r"lacks \['b'\] and has \['B'\]"):
        run(model, frame.iloc[:N_TRAIN], attribute="s", X_aux=renamed)


def test_a_label_only_model_answering_floats_leaks_as_with_integers(data: dict[str, Any]) -> None:
    """An endpoint whose label output is FP64 (0.0, 1.0) while its classes are integers: the
    outputs used to match no class (text "0.0" against "0"), and the leak read 0."""
    from bastion.models.callable import CallableAdapter

    x = data["frame"][["a", "b", "c", "d", "s"]].to_numpy()
    ridge = RidgeClassifier().fit(x[:N_TRAIN], data["y"][:N_TRAIN])
    ints = CallableAdapter(predict=ridge.predict, classes=[0, 1])
    floats = CallableAdapter(predict=lambda X: ridge.predict(X).astype(float), classes=[0, 1])
    as_ints = run(ints, x[:N_TRAIN], attribute=4)
    as_floats = run(floats, x[:N_TRAIN], attribute=4)
    assert as_ints.advantage > 0.1
    assert as_floats.method_accuracy == as_ints.method_accuracy
    stray = CallableAdapter(predict=lambda X: np.full(len(X), 7), classes=[0, 1])
    with pytest.raises(ModelOutputError, match=r"predicted label\(s\) \[7\]"):
        run(stray, x[:N_TRAIN], attribute=4)


def test_a_spike_at_the_minimum_keeps_its_own_bin() -> None:
    """85% zeros among 35 values (cigarettes a day): every inner quantile is 0, and the bins
    used to collapse into one ("takes a single value")."""
    rng = np.random.default_rng(2)
    n = 400
    cig = np.where(rng.random(n) < 0.85, 0, rng.integers(1, 35, n))
    X = pd.DataFrame({"a": rng.normal(size=n), "cig": cig})
    y = (X["a"] + 0.1 * cig > 0.5).astype(int)
    model = SklearnAdapter(LogisticRegression().fit(X, y))
    result = run(model, X, attribute="cig")
    assert result.extra["bins"]["count"] >= 2
    first = result.extra["bins"]["edges"][0]
    assert first == cig[cig > 0].min()  # the zeros' bin ends at the next value
    assert set(result.truth[cig == 0].tolist()) == {f"[-inf, {first:.6g})"}


def test_a_time_budget_is_named_as_such(
    data: dict[str, Any], slow_attribute_fits: Callable[..., None]
) -> None:
    """Out of time after the classifiers' cross-fit: the inversion's queries are not sent,
    and the result says why."""
    columns = ["a", "b", "c", "d", "s"]
    X = data["frame"].iloc[:N_TRAIN][columns]
    slow_attribute_fits(0.3, only=10)  # the baseline of the last of 5 splits
    fast = AttributeInferenceConfig(classifier="logistic")
    result = AttributeInference(fast).run(
        fit(data, columns), X, attribute="s", budget=Budget(max_seconds=0.25)
    )
    assert result.stopped == "time budget"
    assert "inversion" not in result.method_accuracy
    assert result.queries == N_TRAIN  # one per target, none of the inversion's
    with pytest.raises(TimeBudgetError, match="max_seconds 1e-09 ran out before the 400 queries"):
        run(fit(data, columns), X, attribute="s", budget=Budget(max_seconds=1e-9))


def test_a_cross_fit_past_the_time_budget_stops_between_splits(data: dict[str, Any]) -> None:
    """The classifiers' training spends no queries: the deadline is looked at between the
    splits, and an accuracy over some of the targets is no result (it raised nothing and
    ran every split, however long)."""
    columns = ["a", "b", "c", "d", "s"]
    X = data["frame"].iloc[:N_TRAIN][columns]
    slow = AttributeInferenceConfig()  # gradient boosting: the cross-fit outlasts 50 ms
    with pytest.raises(TimeBudgetError, match=r"before attribute classifiers: split \d of 5"):
        AttributeInference(slow).run(
            fit(data, columns), X, attribute="s", budget=Budget(max_seconds=0.05)
        )


def test_a_named_series_names_the_attribute(data: dict[str, Any]) -> None:
    model = fit(data, ["a", "b", "c", "d"])
    X = data["frame"].iloc[:N_TRAIN][["a", "b", "c", "d"]]
    named = pd.Series(data["s"][:N_TRAIN], name="smoker")
    assert run(model, X, named).attribute == "smoker"
    assert run(model, X, data["s"][:N_TRAIN]).attribute == "sensitive"


def test_the_splits_and_the_inversion_report_their_stage(data: dict[str, Any]) -> None:
    from bastion.attacks.budget import report_progress

    columns = ["a", "b", "c", "d", "s"]
    seen: list[str] = []
    with report_progress(seen.append):
        run(fit(data, columns), data["frame"].iloc[:N_TRAIN][columns], attribute="s")
    splits = [f"attribute classifiers: split {k} of 5" for k in range(1, 6)]
    stages = [line for line in seen if "queries," not in line]  # not the budget's lines
    assert stages == [*splits, f"inversion: {2 * N_TRAIN:,} queries"]


def test_a_one_hot_attribute_is_hidden_and_inverted_as_a_whole(data: dict[str, Any]) -> None:
    """The attribute as the columns of its one-hot encoding: a row's value is its hot
    column's name ("(none)" where none is, as for a dropped reference category), none of
    them is the attacker's, and inversion sets them all. The figures equal the single
    column's; with a sibling among the attacker's features the baseline read it exactly."""
    frame = data["frame"].iloc[:N_TRAIN]
    single = run(fit(data, ["a", "b", "c", "d", "s"]), frame, attribute="s")
    encoded = frame.assign(s_1=frame["s"], s_0=1 - frame["s"]).drop(columns="s")
    columns = ["a", "b", "c", "d", "s_1", "s_0"]
    model = SklearnAdapter(LogisticRegression().fit(encoded[columns], data["y"][:N_TRAIN]))
    grouped = run(model, encoded[columns], attribute=["s_1", "s_0"])
    expected = np.where(frame["s"].to_numpy() == 1, "s_1", "s_0")
    np.testing.assert_array_equal(grouped.truth, expected)
    assert grouped.baseline_accuracy == pytest.approx(single.baseline_accuracy)
    assert grouped.method_accuracy["inversion"] == pytest.approx(
        single.method_accuracy["inversion"]
    )
    assert grouped.attribute == "s_1+s_0"
    leaked = run(model, encoded[columns], attribute="s_1")  # s_0 left to the attacker
    assert leaked.baseline_accuracy == 1.0
    # positions of an array; a dropped reference category reads "(none)"
    dropped = encoded[["a", "b", "c", "d", "s_1"]].assign(s_2=0)
    arr = dropped.to_numpy()
    model_arr = SklearnAdapter(LogisticRegression().fit(arr, data["y"][:N_TRAIN]))
    positional = run(model_arr, arr, attribute=[4, 5])
    assert set(positional.truth) == {"4", "(none)"}
    assert positional.method_accuracy["inversion"] > 0.95
    # more than one column set in a row is no one-hot encoding
    broken = encoded[columns].copy()
    broken.loc[3, "s_0"] = broken.loc[3, "s_1"] = 1
    with pytest.raises(ConfigError, match=r"1 row\(s\) \(the first at position 3\) have more"):
        run(model, broken, attribute=["s_1", "s_0"])
    with pytest.raises(ConfigError, match="needs distinct columns"):
        run(model, encoded[columns], attribute=["s_1", "s_1"])
    # one column: a binary attribute with its reference column dropped
    alone = run(model_arr, arr, attribute=[4])
    assert set(alone.truth) == {"4", "(none)"}

"""bastion.fairness.metrics against Fairlearn on the same data, to 1e-12."""

from __future__ import annotations

import dataclasses
import json
import math
from functools import partial
from typing import Any

import fairlearn.metrics as flm
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_score

from bastion.exceptions import ConfigError, DataError
from bastion.fairness import metrics as bm
from bastion.fairness.metrics import GroupMetrics, group_metrics

TOL = 1e-12
METHODS = ("between_groups", "to_overall")


def same(ours: float, theirs: float) -> bool:
    """Equal to 1e-12, NaN matching NaN."""
    theirs = float(theirs)
    if math.isnan(theirs):
        return math.isnan(ours)
    return abs(ours - theirs) <= TOL


# -- the cases ---------------------------------------------------------------------------
def _random_five(seed: int = 3, n: int = 5000) -> tuple[np.ndarray, np.ndarray, Any]:
    rng = np.random.default_rng(seed)
    groups = np.array(list("ABCDE"))[rng.integers(0, 5, n)]
    rate = {"A": 0.2, "B": 0.35, "C": 0.5, "D": 0.6, "E": 0.75}
    y_true = (rng.random(n) < 0.4).astype(int)
    noise = rng.random(n) < np.vectorize(rate.get)(groups)
    y_pred = np.where(rng.random(n) < 0.6, y_true, noise.astype(int))
    return y_true, y_pred, pd.Series(groups, name="group")


def _intersectional_random(seed: int = 4, n: int = 3000) -> tuple[np.ndarray, np.ndarray, Any]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, n)
    b = np.array(["x", "y", "z"])[rng.integers(0, 3, n)]
    b[(a == 2) & (b == "z")] = "y"  # leave one combination unobserved
    y_true = (rng.random(n) < 0.3 + 0.1 * a).astype(int)
    y_pred = np.where(rng.random(n) < 0.7, y_true, 1 - y_true)
    return y_true, y_pred, pd.DataFrame({"a": a, "b": b})


def _no_positives_group() -> tuple[np.ndarray, np.ndarray, Any]:
    rng = np.random.default_rng(5)
    g = np.repeat(np.array(["a", "b", "c"]), 200)
    y_true = (rng.random(600) < 0.5).astype(int)
    y_true[g == "c"] = 0  # group c has no actual positives: TPR 0 in Fairlearn
    y_pred = (rng.random(600) < 0.4).astype(int)
    return y_true, y_pred, g


def _perfect_specificity() -> tuple[np.ndarray, np.ndarray, Any]:
    # no false positive anywhere: every FPR is 0 and the FPR ratio is 0/0 = NaN
    rng = np.random.default_rng(6)
    g = rng.integers(0, 2, 400)
    y_true = (rng.random(400) < 0.5).astype(int)
    y_pred = y_true * (rng.random(400) < 0.5 + 0.3 * g)
    return y_true, y_pred.astype(int), g


def _never_detects() -> tuple[np.ndarray, np.ndarray, Any]:
    # every TPR is 0 (TPR ratio NaN) while FPRs differ: Fairlearn's min() keeps the NaN
    rng = np.random.default_rng(15)
    g = rng.integers(0, 2, 400)
    y_true = (rng.random(400) < 0.5).astype(int)
    y_pred = (1 - y_true) * (rng.random(400) < 0.2 + 0.3 * g)
    return y_true, y_pred.astype(int), g


def _nobody_selected() -> tuple[np.ndarray, np.ndarray, Any]:
    g = np.repeat([0, 1, 2], 50)
    y_true = np.tile([0, 1], 75)
    return y_true, np.zeros(150, dtype=int), g


def _minus_one_one() -> tuple[np.ndarray, np.ndarray, Any]:
    rng = np.random.default_rng(7)
    g = rng.integers(0, 3, 500)
    y_true = np.where(rng.random(500) < 0.5, 1, -1)
    y_pred = np.where(rng.random(500) < 0.3 + 0.2 * g, 1, -1)
    return y_true, y_pred, g


def _booleans() -> tuple[np.ndarray, np.ndarray, Any]:
    rng = np.random.default_rng(8)
    g = np.where(rng.random(500) < 0.3, "minority", "majority")
    return rng.random(500) < 0.5, rng.random(500) < np.where(g == "minority", 0.3, 0.5), g


@pytest.fixture(
    params=[
        "diabetes_sex",
        "diabetes_age_band",
        "diabetes_intersectional",
        "random_five_groups",
        "intersectional_random",
        "no_positives_group",
        "perfect_specificity",
        "never_detects",
        "nobody_selected",
        "minus_one_one",
        "booleans",
    ]
)
def case(request: pytest.FixtureRequest, diabetes: dict[str, Any]) -> tuple[Any, Any, Any]:
    name = request.param
    if name.startswith("diabetes"):
        frame = diabetes["frame"]
        sf = {
            "diabetes_sex": frame["sex"],
            "diabetes_age_band": frame["age_band"],
            "diabetes_intersectional": frame[["sex", "age_band"]],
        }[name]
        return diabetes["y_true"], diabetes["y_pred"], sf
    builders = {
        "random_five_groups": _random_five,
        "intersectional_random": _intersectional_random,
        "no_positives_group": _no_positives_group,
        "perfect_specificity": _perfect_specificity,
        "never_detects": _never_detects,
        "nobody_selected": _nobody_selected,
        "minus_one_one": _minus_one_one,
        "booleans": _booleans,
    }
    return builders[name]()


def fairlearn_by_group(y_true: Any, y_pred: Any, sf: Any, pos_label: Any = 1) -> pd.DataFrame:
    metrics = {
        "selection_rate": partial(flm.selection_rate, pos_label=pos_label),
        "tpr": partial(flm.true_positive_rate, pos_label=pos_label),
        "fpr": partial(flm.false_positive_rate, pos_label=pos_label),
        "precision": partial(precision_score, pos_label=pos_label, zero_division=0),
        "count": flm.count,
    }
    mf = flm.MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=sf)
    # Fairlearn lists every combination of several features, NaN where none was observed
    by_group: pd.DataFrame = mf.by_group.dropna(how="all")
    return by_group


# -- parity with Fairlearn ---------------------------------------------------------------
def test_every_metric_equals_fairlearn(case: tuple[Any, Any, Any]) -> None:
    y_true, y_pred, sf = case
    for name in bm.FAIRNESS_METRICS:
        ours_fn, theirs_fn = getattr(bm, name), getattr(flm, name)
        aggs: list[dict[str, str]] = [{}]
        if name.startswith("equalized_odds"):
            aggs = [{"agg": "worst_case"}, {"agg": "mean"}]
        for method in METHODS:
            for kw in aggs:
                theirs = theirs_fn(y_true, y_pred, sensitive_features=sf, method=method, **kw)
                ours = ours_fn(y_true, y_pred, sensitive_features=sf, method=method, **kw)
                assert isinstance(ours, float)
                assert same(ours, theirs), (name, method, kw, ours, theirs)


def test_group_metrics_equal_metricframe(case: tuple[Any, Any, Any]) -> None:
    y_true, y_pred, sf = case
    gm = group_metrics(y_true, y_pred, sf)
    theirs = fairlearn_by_group(y_true, y_pred, sf)
    keys = [k if isinstance(k, tuple) else (k,) for k in theirs.index]
    assert list(gm.values) == keys  # same groups, same (sorted) order
    np.testing.assert_array_equal(gm.count, theirs["count"].to_numpy(dtype=int))
    for ours, col in (
        (gm.selection_rate, "selection_rate"),
        (gm.tpr, "tpr"),
        (gm.fpr, "fpr"),
        (gm.precision, "precision"),
    ):
        np.testing.assert_allclose(ours, theirs[col].to_numpy(dtype=float), rtol=0, atol=TOL)


def test_diabetes_intersectional_labels(diabetes: dict[str, Any]) -> None:
    frame = diabetes["frame"]
    gm = group_metrics(diabetes["y_true"], diabetes["y_pred"], frame[["sex", "age_band"]])
    assert gm.features == ("sex", "age_band")
    assert "sex=1.0, age_band=40-59" in gm.groups
    assert gm.n_groups == 6
    assert int(gm.count.sum()) == len(frame)


def test_reference_vector() -> None:
    # REFERENCE.md: selection rates 0.8 and 0.4 give difference 0.4 and ratio 0.5
    y_pred = np.array([1, 1, 1, 1, 0, 1, 1, 0, 0, 0])
    y_true = np.zeros(10, dtype=int)
    sf = np.array(["f"] * 5 + ["m"] * 5)
    diff = bm.demographic_parity_difference(y_true, y_pred, sensitive_features=sf)
    ratio = bm.demographic_parity_ratio(y_true, y_pred, sensitive_features=sf)
    assert diff == pytest.approx(0.4, abs=TOL)
    assert ratio == pytest.approx(0.5, abs=TOL)
    assert same(diff, flm.demographic_parity_difference(y_true, y_pred, sensitive_features=sf))
    assert same(ratio, flm.demographic_parity_ratio(y_true, y_pred, sensitive_features=sf))


def test_string_labels_with_pos_label() -> None:
    rng = np.random.default_rng(9)
    n = 800
    g = np.array(["north", "south", "east"])[rng.integers(0, 3, n)]
    y_true = np.where(rng.random(n) < 0.45, "sick", "healthy")
    y_pred = np.where(rng.random(n) < np.where(g == "south", 0.6, 0.35), "sick", "healthy")
    # Fairlearn's disparity functions take no pos_label: compare them on 0/1 labels, and its
    # MetricFrame with pos_label on the strings themselves
    yt01, yp01 = (y_true == "sick").astype(int), (y_pred == "sick").astype(int)
    for name in bm.FAIRNESS_METRICS:
        for method in METHODS:
            ours = getattr(bm, name)(
                y_true, y_pred, sensitive_features=g, method=method, pos_label="sick"
            )
            theirs = getattr(flm, name)(yt01, yp01, sensitive_features=g, method=method)
            assert same(ours, theirs), (name, method)
    gm = group_metrics(y_true, y_pred, g, pos_label="sick")
    theirs = fairlearn_by_group(y_true, y_pred, g, pos_label="sick")
    np.testing.assert_allclose(gm.selection_rate, theirs["selection_rate"], rtol=0, atol=TOL)
    np.testing.assert_allclose(gm.tpr, theirs["tpr"], rtol=0, atol=TOL)
    np.testing.assert_allclose(gm.fpr, theirs["fpr"], rtol=0, atol=TOL)
    np.testing.assert_allclose(gm.precision, theirs["precision"], rtol=0, atol=TOL)
    assert gm.pos_label == "sick"


def test_string_labels_default_to_the_larger_label() -> None:
    y_true = np.array(["no", "yes", "yes", "no"])
    y_pred = np.array(["yes", "yes", "no", "no"])
    gm = group_metrics(y_true, y_pred, [0, 0, 1, 1])
    assert gm.pos_label == "yes"
    assert gm.selection_rate.tolist() == [1.0, 0.0]


def test_pos_label_zero_flips_the_outcome() -> None:
    y_true, y_pred, sf = _random_five()
    flipped = bm.demographic_parity_difference(y_true, y_pred, sensitive_features=sf, pos_label=0)
    theirs = flm.demographic_parity_difference(1 - y_true, 1 - y_pred, sensitive_features=sf)
    assert same(flipped, theirs)


def test_sensitive_feature_input_shapes_agree() -> None:
    y_true, y_pred, frame = _intersectional_random()
    as_frame = group_metrics(y_true, y_pred, frame)
    as_dict = group_metrics(y_true, y_pred, {"a": frame["a"].to_numpy(), "b": frame["b"].tolist()})
    as_array = group_metrics(y_true, y_pred, frame.to_numpy())
    assert as_dict.groups == as_frame.groups
    assert as_array.features == ("sensitive_feature_0", "sensitive_feature_1")
    for other in (as_dict, as_array):
        np.testing.assert_array_equal(other.cells, as_frame.cells)
    one = group_metrics(y_true, y_pred, list(frame["b"]))
    assert one.features == ("sensitive_feature_0",)
    assert one.groups == ("sensitive_feature_0=x", "sensitive_feature_0=y", "sensitive_feature_0=z")


def test_wide_integer_and_categorical_features_sort_like_fairlearn() -> None:
    rng = np.random.default_rng(10)
    n = 600
    codes = np.array([-5, 7, 10**9])[rng.integers(0, 3, n)]  # hashed path, not the dense table
    cat = pd.Categorical(
        np.array(["low", "high", "mid"])[rng.integers(0, 3, n)], categories=["low", "mid", "high"]
    )
    y_true = (rng.random(n) < 0.5).astype(int)
    y_pred = (rng.random(n) < 0.5).astype(int)
    for sf in (codes, pd.Series(cat, name="level"), pd.DataFrame({"c": codes, "level": cat})):
        gm = group_metrics(y_true, y_pred, sf)
        theirs = fairlearn_by_group(y_true, y_pred, sf)
        keys = [k if isinstance(k, tuple) else (k,) for k in theirs.index]
        assert list(gm.values) == keys
        np.testing.assert_allclose(gm.tpr, theirs["tpr"], rtol=0, atol=TOL)


def test_unobserved_categories_are_not_groups() -> None:
    cat = pd.Categorical(["b", "a", "b", "a"], categories=["c", "b", "a", "never"])
    gm = group_metrics([1, 0, 1, 1], [1, 1, 0, 1], pd.Series(cat, name="k"))
    assert gm.groups == ("k=a", "k=b")
    assert gm.tpr.tolist() == [1.0, 0.5]


def test_fast_paths_agree_with_the_general_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    y_true, y_pred, frame = _intersectional_random()
    strings = frame["b"].to_numpy(dtype=str)  # numpy fixed-width strings: the hashing path
    sf = {"a": frame["a"].to_numpy(), "b": strings}
    fast = group_metrics(y_true, y_pred, sf)
    # every hash collides: the hashing path must fall back to pandas, and the intersectional
    # encoding must take its hashed branch, with the same groups and counts
    monkeypatch.setattr(bm, "_HASH_MULT", np.uint32(0))
    monkeypatch.setattr(bm, "_MAX_DENSE_COMBINATIONS", 2)
    slow = group_metrics(y_true, y_pred, sf)
    assert slow.values == fast.values
    np.testing.assert_array_equal(slow.cells, fast.cells)
    byte_strings = group_metrics(y_true, y_pred, strings.astype("S"))
    assert [v[0] for v in byte_strings.values] == [b"x", b"y", b"z"]


def test_overall_equals_metricframe_overall(case: tuple[Any, Any, Any]) -> None:
    y_true, y_pred, sf = case
    mf = flm.MetricFrame(
        metrics={"tpr": flm.true_positive_rate, "fpr": flm.false_positive_rate},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sf,
    )
    overall = group_metrics(y_true, y_pred, sf).overall()
    assert same(overall["tpr"], mf.overall["tpr"])
    assert same(overall["fpr"], mf.overall["fpr"])


# -- errors ------------------------------------------------------------------------------
def test_single_group_is_a_data_error() -> None:
    with pytest.raises(DataError, match="form a single group") as info:
        bm.demographic_parity_difference([0, 1, 1], [1, 1, 0], sensitive_features=["a"] * 3)
    assert "sensitive_feature_0=a" in str(info.value)
    frame = pd.DataFrame({"sex": [1, 1, 1], "band": ["x", "x", "x"]})
    with pytest.raises(DataError, match=r"\['sex', 'band'\] form a single group"):
        group_metrics([0, 1, 1], [1, 1, 0], frame)


@pytest.mark.parametrize(
    ("y_pred", "sf", "fragment"),
    [
        ([1, 0], [0, 1, 0], "y_pred has 2 rows but y_true has 3"),
        ([1, 0, 1], [0, 1], "sensitive feature 'sensitive_feature_0' has 2 rows"),
    ],
)
def test_length_mismatch_is_a_data_error(y_pred: Any, sf: Any, fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        group_metrics([0, 1, 1], y_pred, sf)


def test_non_binary_labels_are_a_data_error() -> None:
    with pytest.raises(DataError, match="hold 3 distinct labels") as info:
        group_metrics([0, 1, 2], [0, 1, 1], [0, 1, 0])
    assert str(info.value) == bm.NON_BINARY.format(k=3, labels="0, 1, 2")
    with pytest.raises(DataError, match="hold 3 distinct labels"):
        group_metrics(["a", "b", "c"], ["a", "b", "b"], [0, 1, 0])


def test_other_input_errors() -> None:
    with pytest.raises(DataError, match="pos_label 'yes' is not one of the labels"):
        group_metrics([0, 1], [1, 0], [0, 1], pos_label="yes")
    with pytest.raises(DataError, match="y_true contains missing values"):
        group_metrics([0.0, np.nan], [1, 0], [0, 1])
    with pytest.raises(DataError, match="sensitive feature 'sex' has missing values"):
        group_metrics([0, 1, 1], [1, 0, 1], pd.Series(["f", None, "m"], name="sex"))
    mixed = np.array([1, "yes", 1, "yes"], dtype=object)
    with pytest.raises(DataError, match="cannot be ordered; pass pos_label"):
        group_metrics(mixed, mixed, [0, 0, 1, 1])
    assert group_metrics(mixed, mixed, [0, 0, 1, 1], pos_label="yes").tpr.tolist() == [1.0, 1.0]
    with pytest.raises(DataError, match="y_true is empty"):
        group_metrics([], [], [])
    with pytest.raises(DataError, match="must be one-dimensional"):
        group_metrics(np.zeros((3, 2)), [1, 0, 1], [0, 1, 0])
    with pytest.raises(DataError, match="sensitive_features is empty"):
        group_metrics([0, 1], [1, 0], pd.DataFrame(index=[0, 1]))


def test_bad_options_are_config_errors() -> None:
    args = ([0, 1, 1, 0], [1, 1, 0, 0])
    with pytest.raises(ConfigError, match="method must be"):
        bm.demographic_parity_ratio(*args, sensitive_features=[0, 0, 1, 1], method="pairwise")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="agg must be"):
        bm.equalized_odds_difference(*args, sensitive_features=[0, 0, 1, 1], agg="max")  # type: ignore[arg-type]
    gm = group_metrics(*args, [0, 0, 1, 1])
    with pytest.raises(ConfigError, match="metric must be one of"):
        gm.metric("accuracy_difference")
    with pytest.raises(ConfigError, match="n_resamples must be"):
        gm.bootstrap_ci(n_resamples=0)
    with pytest.raises(ConfigError, match="confidence must be"):
        gm.bootstrap_ci(confidence=1.0)


# -- results -----------------------------------------------------------------------------
def test_group_metrics_is_frozen_and_records_are_json() -> None:
    y_true, y_pred, sf = _random_five()
    gm = group_metrics(y_true, y_pred, sf)
    with pytest.raises(dataclasses.FrozenInstanceError):
        gm.groups = ()  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        gm.tpr[0] = 1.0
    records = gm.to_records()
    assert [r["group"] for r in records] == [f"group={g}" for g in "ABCDE"]
    assert records[0]["features"] == {"group": "A"}
    assert set(records[0]) == {
        "group",
        "features",
        "count",
        "selection_rate",
        "tpr",
        "fpr",
        "precision",
    }
    json.dumps(records, allow_nan=False)
    assert sum(r["count"] for r in records) == len(y_true)


def test_from_cells_reproduces_counts() -> None:
    gm = GroupMetrics.from_cells(
        [[5, 5, 0, 0], [2, 3, 1, 4]], features=["g"], values=[("a",), ("b",)]
    )
    assert gm.tpr.tolist() == [0.0, 0.8]  # group a has no positives: 0, as in Fairlearn
    assert gm.selection_rate.tolist() == [0.5, 0.7]
    assert gm.precision.tolist() == [0.0, 4 / 7]
    assert gm.small_groups(10) == []
    assert gm.small_groups(11) == ["g=a", "g=b"]


# -- bootstrap ---------------------------------------------------------------------------
def test_bootstrap_is_deterministic_and_contains_the_estimate(diabetes: dict[str, Any]) -> None:
    args = (diabetes["y_true"], diabetes["y_pred"])
    sf = diabetes["frame"][["sex", "age_band"]]
    first = bm.bootstrap_fairness_ci(*args, sensitive_features=sf, random_state=11)
    again = bm.bootstrap_fairness_ci(*args, sensitive_features=sf, random_state=11)
    other = bm.bootstrap_fairness_ci(*args, sensitive_features=sf, random_state=12)
    assert first == again
    assert first != other
    assert set(first) == set(bm.FAIRNESS_METRICS)
    for name, ci in first.items():
        assert ci.n_resamples == 1000
        assert ci.confidence == 0.95
        assert ci.low <= ci.high
        assert ci.contains(ci.estimate), name
        direct = getattr(bm, name)(*args, sensitive_features=sf)
        assert ci.estimate == direct


def test_bootstrap_matches_a_naive_row_resampling_bootstrap() -> None:
    # the multinomial shortcut must give the distribution of resampling rows
    rng = np.random.default_rng(13)
    n = 600
    g = rng.integers(0, 3, n)
    y_true = (rng.random(n) < 0.5).astype(int)
    y_pred = (rng.random(n) < 0.3 + 0.15 * g).astype(int)
    ours = bm.bootstrap_fairness_ci(
        y_true,
        y_pred,
        sensitive_features=g,
        metrics=["demographic_parity_difference", "equalized_odds_difference"],
        n_resamples=4000,
        random_state=1,
    )
    naive: dict[str, list[float]] = {"dp": [], "eo": []}
    for _ in range(4000):
        idx = rng.integers(0, n, n)
        naive["dp"].append(
            bm.demographic_parity_difference(y_true[idx], y_pred[idx], sensitive_features=g[idx])
        )
        naive["eo"].append(
            bm.equalized_odds_difference(y_true[idx], y_pred[idx], sensitive_features=g[idx])
        )
    for key, name in (("dp", "demographic_parity_difference"), ("eo", "equalized_odds_difference")):
        lo, hi = np.quantile(naive[key], [0.025, 0.975])
        assert ours[name].low == pytest.approx(lo, abs=0.012)
        assert ours[name].high == pytest.approx(hi, abs=0.012)


def test_bootstrap_covers_the_true_difference() -> None:
    # population: selection rates 0.5 and 0.4, so the true difference is 0.1
    rng = np.random.default_rng(14)
    covered = 0
    trials = 200
    for t in range(trials):
        g = rng.integers(0, 2, 1000)
        y_pred = (rng.random(1000) < np.where(g == 0, 0.5, 0.4)).astype(int)
        y_true = (rng.random(1000) < 0.5).astype(int)
        ci = bm.bootstrap_fairness_ci(
            y_true,
            y_pred,
            sensitive_features=g,
            metrics=["demographic_parity_difference"],
            n_resamples=500,
            random_state=t,
        )["demographic_parity_difference"]
        covered += ci.contains(0.1)
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_tolerates_groups_missing_from_resamples() -> None:
    # a one-row group is absent from about a third of the resamples; no warning, no NaN bounds
    y_true = np.array([0, 1] * 100 + [1])
    y_pred = np.array([0, 1, 1, 0] * 50 + [1])
    g = np.array(["big"] * 200 + ["tiny"])
    ci = bm.bootstrap_fairness_ci(y_true, y_pred, sensitive_features=g, random_state=3)
    for name, interval in ci.items():
        assert not math.isnan(interval.low), name
        assert interval.low <= interval.high, name


def test_bootstrap_of_an_undefined_ratio_is_nan() -> None:
    y_true, y_pred, sf = _nobody_selected()
    ci = bm.bootstrap_fairness_ci(
        y_true, y_pred, sensitive_features=sf, metrics=["demographic_parity_ratio"]
    )["demographic_parity_ratio"]
    assert math.isnan(ci.estimate)
    assert math.isnan(ci.low)
    assert math.isnan(ci.high)

"""Drift statistics equal scipy's on the same data, detect shifts, handle NaN and unseen values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from bastion.exceptions import ConfigError, DataError, EmptyDataError
from bastion.monitoring import drift_report


def _frames(seed: int, n: int, m: int, shift: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(list("abcd"), n)})
    p = [0.25 + shift, 0.25 - shift, 0.25, 0.25]
    cur = pd.DataFrame({"x": rng.normal(3 * shift, size=m), "c": rng.choice(list("abcd"), m, p=p)})
    return ref, cur


@pytest.mark.parametrize(("seed", "n", "m"), [(0, 500, 700), (1, 20_000, 15_000)])
def test_ks_equals_scipy(seed: int, n: int, m: int) -> None:
    ref, cur = _frames(seed, n, m, 0.05)
    got = drift_report(ref, cur, stattests={"x": "ks", "c": "chisquare"})["x"]
    want = stats.ks_2samp(ref["x"], cur["x"])
    assert got.statistic == pytest.approx(want.statistic, abs=1e-12)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("seed", [2, 3])
def test_wasserstein_equals_scipy_over_reference_std(seed: int) -> None:
    ref, cur = _frames(seed, 3000, 2000, 0.1)
    got = drift_report(ref, cur, stattests={"x": "wasserstein"})["x"]
    want = stats.wasserstein_distance(ref["x"], cur["x"]) / np.std(ref["x"])
    assert got.statistic == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("seed", [4, 5])
def test_psi_and_js_on_reference_deciles(seed: int) -> None:
    ref, cur = _frames(seed, 4000, 3000, 0.2)
    ref.loc[:9, "x"] = np.nan
    x, y = ref["x"].to_numpy(), cur["x"].to_numpy()
    edges = np.quantile(x[~np.isnan(x)], np.linspace(0.1, 0.9, 9))
    full = np.r_[-np.inf, edges, np.inf]

    def shares(v: np.ndarray) -> np.ndarray:
        counts = np.histogram(v[~np.isnan(v)], full)[0]
        out: np.ndarray = np.r_[counts, np.isnan(v).sum()] / v.size
        return out

    r, c = shares(x), shares(y)
    rf, cf = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    report = drift_report(ref, cur, stattests={"x": "psi", "c": "jensenshannon"})
    assert report["x"].statistic == pytest.approx(np.sum((cf - rf) * np.log(cf / rf)), rel=1e-12)
    js = drift_report(ref, cur, stattests={"x": "jensenshannon"})["x"].statistic
    assert js == pytest.approx(distance.jensenshannon(r, c, base=2), rel=1e-12)


def test_chisquare_equals_chi2_contingency_with_unseen_category() -> None:
    ref, cur = _frames(6, 2000, 1500, 0.05)
    cur.loc[:30, "c"] = "zzz"  # unseen in the reference
    got = drift_report(ref, cur, stattests={"c": "chisquare"})["c"]
    cats = sorted(set(ref["c"]) | set(cur["c"]))
    table = np.array([[int((s["c"] == k).sum()) for k in cats] for s in (ref, cur)])
    want = stats.chi2_contingency(table)
    assert got.statistic == pytest.approx(want.statistic, rel=1e-12)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-12)
    assert got.drifted
    # PSI pools the unseen category in its own bin: 31 of 1500 current rows.
    psi = drift_report(ref, cur)["c"].statistic
    assert psi > 0.0


def test_categorical_js_on_reference_categories_plus_unseen_and_null() -> None:
    ref = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50})
    cur = pd.DataFrame({"c": ["a"] * 40 + ["b"] * 40 + ["new"] * 10 + [None] * 10})
    got = drift_report(ref, cur, stattests={"c": "jensenshannon"})["c"].statistic
    assert got == pytest.approx(distance.jensenshannon([0.5, 0.5, 0, 0], [0.4, 0.4, 0.1, 0.1], 2))


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_shift_detected_and_same_distribution_not(seed: int) -> None:
    ref, same = _frames(seed, 5000, 5000, 0.0)
    _, shifted = _frames(seed + 100, 5000, 5000, 0.15)
    for test_x, test_c in (("psi", "psi"), ("ks", "chisquare"), ("wasserstein", "jensenshannon")):
        st = {"x": test_x, "c": test_c}
        assert drift_report(ref, shifted, stattests=st).share_drifted == 1.0, st
        # p-value tests flag 5% of same-distribution samples at 0.05; test them at 0.001.
        thr = {"x": 1e-3, "c": 1e-3} if test_x == "ks" else None
        assert drift_report(ref, same, stattests=st, thresholds=thr).n_drifted == 0, st
    assert drift_report(ref, shifted).dataset_drift
    assert not drift_report(ref, same).dataset_drift


def test_nan_is_own_psi_bin_and_dropped_by_ks() -> None:
    rng = np.random.default_rng(10)
    x = rng.normal(size=4000)
    y = rng.normal(size=4000)
    y[:800] = np.nan  # 20% missing in current only
    ref, cur = pd.DataFrame({"x": x}), pd.DataFrame({"x": y})
    assert drift_report(ref, cur)["x"].drifted  # PSI sees the missing values
    ks = drift_report(ref, cur, stattests={"x": "ks"})["x"]
    want = stats.ks_2samp(x, y[~np.isnan(y)])
    assert ks.p_value == pytest.approx(want.pvalue, rel=1e-12)
    assert ks.statistic < 0.05  # the values present are same-distribution


def test_empty_column_errors_name_column_and_sample() -> None:
    ref = pd.DataFrame({"x": [np.nan, np.nan], "c": ["a", "b"]})
    cur = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    with pytest.raises(EmptyDataError, match=r"'x'.*reference"):
        drift_report(ref, cur)
    with pytest.raises(EmptyDataError, match=r"'c'.*current"):
        drift_report(cur[["c"]], pd.DataFrame({"c": [None, None]}, dtype=object))
    with pytest.raises(EmptyDataError, match="'x'"):
        drift_report(cur.iloc[:0], cur, compatibility="evidently")


def test_misuse_is_config_or_data_error() -> None:
    ref, cur = _frames(11, 100, 100)
    with pytest.raises(ConfigError, match="compatibility"):
        drift_report(ref, cur, compatibility="nope")
    with pytest.raises(ConfigError, match="stattests"):
        drift_report(ref, cur, stattests={"x": "nope"})
    with pytest.raises(ConfigError, match="not defined"):
        drift_report(ref, cur, stattests={"c": "ks"})
    with pytest.raises(DataError, match="lacks"):
        drift_report(ref, cur[["x"]])


def test_evidently_choice_and_definitions() -> None:
    ref, cur = _frames(12, 2000, 1000, 0.1)
    report = drift_report(ref, cur, compatibility="evidently")
    x, c = report["x"], report["c"]
    assert (x.stattest, c.stattest) == ("wasserstein", "jensenshannon")
    assert x.statistic == pytest.approx(
        stats.wasserstein_distance(ref["x"], cur["x"]) / max(np.std(ref["x"]), 0.001), rel=1e-12
    )
    keys = sorted(set(ref["c"]) | set(cur["c"]))
    r = np.array([(ref["c"] == k).mean() for k in keys])
    q = np.array([(cur["c"] == k).mean() for k in keys])
    assert c.statistic == pytest.approx(distance.jensenshannon(r, q), rel=1e-12)  # natural log
    small = drift_report(ref.iloc[:500], cur, compatibility="evidently")
    assert (small["x"].stattest, small["c"].stattest) == ("ks", "chisquare")
    assert small["x"].p_value == pytest.approx(
        stats.ks_2samp(ref["x"].iloc[:500], cur["x"]).pvalue, rel=1e-12
    )
    edges = np.histogram_bin_edges(np.r_[ref["x"], cur["x"]], bins="sturges")
    rs = np.histogram(ref["x"], edges)[0] / len(ref)
    cs = np.histogram(cur["x"], edges)[0] / len(cur)
    rs = np.where(rs == 0, 1e-4 if rs[rs > 0].min() > 1e-4 else rs[rs > 0].min() / 1e6, rs)
    cs = np.where(cs == 0, 1e-4 if cs[cs > 0].min() > 1e-4 else cs[cs > 0].min() / 1e6, cs)
    psi = drift_report(ref, cur, stattests={"x": "psi"}, compatibility="evidently")["x"]
    assert psi.statistic == pytest.approx(np.sum((rs - cs) * np.log(rs / cs)), rel=1e-12)


def test_report_to_dict_and_thresholds() -> None:
    ref, cur = _frames(13, 1000, 1000, 0.15)
    report = drift_report(ref, cur, thresholds={"x": 10.0})
    assert not report["x"].drifted
    d = report.to_dict()
    assert d["n_columns"] == 2
    assert d["columns"][0]["threshold"] == 10.0
    assert d["share_drifted"] == report.share_drifted


def test_evidently_small_reference_chisquare_and_z_equal_scipy() -> None:
    ref, cur = _frames(14, 600, 900, 0.05)
    got = drift_report(ref, cur, compatibility="evidently")["c"]
    keys = sorted(set(ref["c"]) | set(cur["c"]))
    f_obs = [int((cur["c"] == k).sum()) for k in keys]
    f_exp = [int((ref["c"] == k).sum()) * len(cur) / len(ref) for k in keys]
    assert got.p_value == pytest.approx(stats.chisquare(f_obs, f_exp).pvalue, rel=1e-12)
    rng = np.random.default_rng(15)
    b_ref = pd.DataFrame({"b": rng.choice(["no", "yes"], 400, p=[0.5, 0.5])})
    b_cur = pd.DataFrame({"b": rng.choice(["no", "yes"], 300, p=[0.4, 0.6])})
    z = drift_report(b_ref, b_cur, compatibility="evidently")["b"]
    p1, p2 = (b_ref["b"] == "yes").mean(), (b_cur["b"] == "yes").mean()
    pooled = (p1 * 400 + p2 * 300) / 700
    stat = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / 400 + 1 / 300))
    assert z.stattest == "z"
    assert z.p_value == pytest.approx(2 * (1 - stats.norm.cdf(abs(stat))), rel=1e-12)

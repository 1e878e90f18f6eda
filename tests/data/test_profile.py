"""Profile: exact statistics merge exactly, sketches stay in bounds, JSON round-trips."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.data.profile import (
    ColumnProfile,
    Histogram,
    Profile,
    _BinCounter,
    profile_by_window,
)
from bastion.exceptions import ConfigError, DataError, EmptyDataError

# --------------------------------------------------------------------------- helpers


def exact_stats(profile: Profile) -> dict[str, dict[str, Any]]:
    """Everything a merge must reproduce exactly (floats within tolerance)."""
    out: dict[str, dict[str, Any]] = {}
    for name, col in profile.columns.items():
        row: dict[str, Any] = {
            "kind": col.kind,
            "count": col.count,
            "null_count": col.null_count,
            "inf_count": col.inf_count,
            "min": col.min,
            "max": col.max,
            "mean": col.mean,
            "variance": col.variance,
            "category_counts": None if col.category_counts is None else dict(col.category_counts),
        }
        for label, hist in (("histogram", col.histogram), ("fine", col.fine_histogram)):
            if hist is not None:
                row[label] = (hist.counts.tolist(), hist.null_count, hist.unseen_count)
        out[name] = row
    return out


def assert_same_exact_stats(a: Profile, b: Profile) -> None:
    assert a.n_rows == b.n_rows
    sa, sb = exact_stats(a), exact_stats(b)
    assert list(sa) == list(sb)
    for name in sa:
        ra, rb = sa[name], sb[name]
        for key in ra:
            va, vb = ra[key], rb[key]
            if key == "mean" and va is not None:
                assert vb == pytest.approx(va, rel=1e-9, abs=1e-9), (name, key)
            elif key == "variance" and va is not None:
                scale = max(1.0, abs(ra["min"] or 0.0), abs(ra["max"] or 0.0)) ** 2
                assert vb == pytest.approx(va, rel=1e-7, abs=1e-9 * scale), (name, key)
            else:
                assert va == vb, (name, key, va, vb)


def split(frame: pd.DataFrame, parts: int) -> list[pd.DataFrame]:
    bounds = np.linspace(0, len(frame), parts + 1).astype(int)
    return [frame.iloc[lo:hi] for lo, hi in itertools.pairwise(bounds)]


def mixed_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    floats = rng.normal(10, 3, n)
    floats[rng.random(n) < 0.1] = np.nan
    floats[:3] = [np.inf, -np.inf, np.inf]
    strings = rng.choice(np.array(["red", "green", "blue", "amber"], dtype=object), n)
    strings[rng.random(n) < 0.2] = None
    return pd.DataFrame(
        {
            "ints": rng.integers(-50, 50, n),
            "floats": floats,
            "bools": rng.random(n) < 0.3,
            "strings": pd.Series(strings, dtype=object),
            "str_dtype": pd.Series(strings).astype("str"),
            "nullable_int": pd.array(
                [
                    None if r < 0.1 else int(v)
                    for r, v in zip(rng.random(n), rng.integers(0, 9, n), strict=True)
                ],
                dtype="Int64",
            ),
            "all_null": np.full(n, np.nan),
            "empty_cat": pd.Categorical([None] * n, categories=[]),
            "cat": pd.Categorical(rng.choice(["lo", "hi"], n)),
            "when": pd.date_range("2024-01-01", periods=n, freq="min"),
        }
    )


# --------------------------------------------------------------------------- values


def test_statistics_match_pandas_on_mixed_columns() -> None:
    frame = mixed_frame()
    profile = Profile.from_frame(frame)
    assert profile.n_rows == len(frame)
    for name in ["ints", "floats", "bools", "nullable_int"]:
        col = profile[name]
        s = pd.to_numeric(frame[name]).astype("float64")
        finite = s[np.isfinite(s)]
        assert col.kind == "numeric"
        assert col.count == len(s)
        assert col.null_count == int(s.isna().sum())
        assert col.inf_count == int(np.isinf(s).sum())
        assert col.min == s.min()
        assert col.max == s.max()
        assert col.mean == pytest.approx(finite.mean(), rel=1e-12)
        assert col.variance == pytest.approx(finite.var(ddof=0), rel=1e-9)
        assert col.std == pytest.approx(finite.std(ddof=0), rel=1e-9)
        # every value fits the sample, so quantiles and distinct counts are exact
        non_null = s.dropna()
        assert col.quantiles([0.1, 0.5, 0.9]) == pytest.approx(
            list(np.quantile(non_null, [0.1, 0.5, 0.9]))
        )
        assert col.quantile(0.5) == pytest.approx(non_null.quantile(0.5))
        assert col.distinct_estimate() == non_null.nunique()
        assert col.top() == []
        assert col.category_counts is None
    for name in ["strings", "str_dtype", "cat"]:
        col = profile[name]
        vc = frame[name].value_counts()
        assert col.kind == "categorical"
        assert col.null_count == int(frame[name].isna().sum())
        assert col.min is None
        assert col.mean is None
        assert col.variance is None
        assert col.category_counts == {str(k): int(v) for k, v in vc.items()}
        assert col.top(2) == [(str(k), int(v)) for k, v in vc.head(2).items()]
        assert col.distinct_estimate() == frame[name].nunique()
        assert col.quantile(0.5) is None
        assert sorted(col.sample.tolist()) == sorted(frame[name].dropna().astype(str).tolist())


def test_all_null_empty_categorical_and_datetime_columns() -> None:
    frame = mixed_frame()
    profile = Profile.from_frame(frame)
    nulls = profile["all_null"]
    assert (nulls.kind, nulls.null_count, nulls.min, nulls.mean) == ("numeric", 400, None, None)
    assert nulls.quantiles([0.5]) == []
    assert nulls.distinct_estimate() == 0
    assert len(nulls.sample) == 0
    cat = profile["empty_cat"]
    assert (cat.kind, cat.null_count, cat.top()) == ("categorical", 400, [])
    assert cat.category_counts == {}
    when = profile["when"]
    assert when.kind == "numeric"
    assert when.min == pd.Timestamp("2024-01-01").timestamp()
    assert when.max is not None
    assert when.max - when.min == 399 * 60
    json.dumps(profile.summary(), allow_nan=False)


def test_moments_are_stable_for_large_offsets() -> None:
    rng = np.random.default_rng(1)
    values = 1e9 + rng.standard_normal(300_000)
    col = Profile.from_frame(pd.DataFrame({"x": values}), full=False)["x"]
    assert col.mean == pytest.approx(values.mean(), rel=1e-15)
    assert col.variance == pytest.approx(values.var(), rel=1e-9)


def test_full_false_keeps_exact_statistics_and_drops_sketches() -> None:
    frame = mixed_frame()
    full, cheap = Profile.from_frame(frame), Profile.from_frame(frame, full=False)
    for name in frame.columns:
        a, b = full[name], cheap[name]
        assert (a.count, a.null_count, a.inf_count, a.min, a.max) == (
            b.count,
            b.null_count,
            b.inf_count,
            b.min,
            b.max,
        )
        assert a.mean == b.mean
        assert a.variance == b.variance
        assert not b.full
        assert b.distinct_sketch is None
        assert len(b.sample) == 0
    assert not cheap.full
    with pytest.raises(DataError, match="full=True"):
        cheap["floats"].quantile(0.5)
    with pytest.raises(DataError, match="full=False"):
        cheap["strings"].distinct_estimate()
    merged = full.merge(cheap)
    assert not merged.full
    assert merged["floats"].count == 800
    assert "distinct" not in cheap.summary()["columns"]["floats"]


def test_quantiles_of_a_large_column_are_within_the_documented_rank_error() -> None:
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.lognormal(0, 1, 150_000), rng.uniform(-5, 0, 50_000)])
    values[rng.random(len(values)) < 0.05] = np.nan
    chunks = np.array_split(values, 7)
    profile = Profile.from_chunks(
        (pd.DataFrame({"x": c}) for c in chunks), sample_size=4_000, seed=3
    )
    col = profile["x"]
    population = np.sort(values[~np.isnan(values)])
    bound = col.quantile_rank_error(delta=1e-3)
    assert 0 < bound < 0.05
    assert len(col.sample) == 4_000
    qs = list(np.linspace(0, 1, 41))
    for q, v in zip(qs, col.quantiles(qs), strict=True):
        lo = np.searchsorted(population, v, side="left") / len(population)
        hi = np.searchsorted(population, v, side="right") / len(population)
        assert lo - bound <= q <= hi + bound
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        col.quantile(1.5)
    # distinct count: HyperLogLog within 3 relative standard errors
    true = len(np.unique(population))
    assert abs(col.distinct_estimate() - true) <= 3 * 1.04 / 64 * true


def test_top_categories_beyond_the_exact_limit_follow_misra_gries() -> None:
    rng = np.random.default_rng(4)
    hot = ["alpha"] * 3000 + ["beta"] * 2000 + ["gamma"] * 1000
    rare = [f"id{i}" for i in rng.integers(0, 5000, 6000)]
    values = np.array(hot + rare, dtype=object)
    rng.shuffle(values)
    frame = pd.DataFrame({"c": values})
    col = Profile.from_chunks(split(frame, 4), max_categories=20)["c"]
    assert col.category_counts is None
    assert [k for k, _ in col.top(3)] == ["alpha", "beta", "gamma"]
    assert col.frequent is not None
    err = col.frequent.max_error
    truth = frame["c"].value_counts()
    for key, count in col.top(3):
        assert truth[key] - err <= count <= truth[key]
    assert abs(col.distinct_estimate() - truth.size) <= 3 * 1.04 / 64 * truth.size


def test_seed_makes_profiles_deterministic() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x": rng.standard_normal(30_000), "s": rng.integers(0, 10**6, 30_000)})
    frame["s"] = frame["s"].astype(str)
    a = Profile.from_frame(frame, seed=1, sample_size=500).to_dict()
    b = Profile.from_frame(frame, seed=1, sample_size=500).to_dict()
    c = Profile.from_frame(frame, seed=2, sample_size=500).to_dict()
    assert a == b
    assert a["columns"][0]["sample"] != c["columns"][0]["sample"]


def test_threads_give_the_same_profile_as_one_worker() -> None:
    rng = np.random.default_rng(6)
    frame = pd.DataFrame(rng.standard_normal((20_000, 14)), columns=[f"c{i}" for i in range(14)])
    frame.iloc[::11, 3] = np.nan
    assert (
        Profile.from_frame(frame, workers=1).to_dict()
        == Profile.from_frame(frame, workers=2).to_dict()
    )


# --------------------------------------------------------------------------- merge (property)

finite_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
cells = st.one_of(finite_floats, st.just(math.nan), st.just(math.inf), st.just(-math.inf))
words = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "dd", "é", ""]))


@st.composite
def frames(draw: st.DrawFn, min_rows: int = 0) -> pd.DataFrame:
    n = draw(st.integers(min_rows, 30))
    return pd.DataFrame(
        {
            "f": pd.Series(draw(st.lists(cells, min_size=n, max_size=n)), dtype="float64"),
            "i": pd.Series(
                draw(st.lists(st.integers(-(10**6), 10**6), min_size=n, max_size=n)), dtype="int64"
            ),
            "b": pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool),
            "s": pd.Series(draw(st.lists(words, min_size=n, max_size=n)), dtype=object),
        }
    )


REFERENCE_FRAME = pd.DataFrame(
    {
        "f": np.linspace(-1e6, 1e6, 101),
        "i": np.arange(-50, 51) * 20_000,
        "b": np.arange(101) % 3 == 0,
        "s": pd.Series((["a", "b", "dd"] * 34)[:101], dtype=object),
    }
)
REFERENCE = Profile.reference(REFERENCE_FRAME)


@settings(max_examples=60, deadline=None)
@given(frames(), frames(), st.booleans())
def test_merge_equals_profile_of_union(a: pd.DataFrame, b: pd.DataFrame, binned: bool) -> None:
    kw: dict[str, Any] = {"bins_from": REFERENCE} if binned else {}
    union = pd.concat([a, b], ignore_index=True)
    merged = Profile.from_frame(a, **kw).merge(Profile.from_frame(b, **kw))
    assert_same_exact_stats(Profile.from_frame(union, **kw), merged)
    # the sketches still describe the union: the sample holds every value, HLL registers match
    whole = Profile.from_frame(union, **kw)
    for name in union.columns:
        got, want = merged[name].sample, whole[name].sample
        if merged[name].kind == "numeric":
            assert np.array_equal(np.sort(got), np.sort(want))  # -0.0 == 0.0 here
        else:
            assert sorted(got) == sorted(want)
        da, db = merged[name].distinct_sketch, whole[name].distinct_sketch
        assert da is not None
        assert db is not None
        assert np.array_equal(da.registers, db.registers)
        assert merged[name].distinct_estimate() == whole[name].distinct_estimate()


@settings(max_examples=40, deadline=None)
@given(frames(), frames(), frames())
def test_merge_is_associative(a: pd.DataFrame, b: pd.DataFrame, c: pd.DataFrame) -> None:
    pa, pb, pc = (Profile.from_frame(x, bins_from=REFERENCE) for x in (a, b, c))
    left = (pa + pb) + pc
    right = pa + (pb + pc)
    assert_same_exact_stats(left, right)
    assert_same_exact_stats(
        left, Profile.from_frame(pd.concat([a, b, c], ignore_index=True), bins_from=REFERENCE)
    )
    assert_same_exact_stats(left, sum([pa, pb, pc]))  # type: ignore[arg-type]


def test_histograms_count_into_reference_bins() -> None:
    rng = np.random.default_rng(8)
    ref_frame = pd.DataFrame(
        {
            "x": rng.standard_normal(5_000),
            "c": pd.Series(rng.choice(["a", "b", "c"], 5_000), dtype=object),
        }
    )
    ref = Profile.reference(ref_frame, n_bins=10, fine_bins=100)
    hist = ref["x"].histogram
    assert hist is not None
    assert hist.edges is not None
    # deciles of 5,000 distinct values (all in the sample): 500 per bin exactly
    assert len(hist.edges) == 9
    assert hist.counts.tolist() == [500] * 10
    fine = ref["x"].fine_histogram
    assert fine is not None
    assert fine.counts.tolist() == [50] * 100
    assert ref["c"].histogram is not None
    assert ref["c"].histogram.categories == tuple(k for k, _ in ref["c"].top())

    cur = pd.DataFrame(
        {
            "x": np.r_[rng.normal(1, 1, 999), np.nan],
            "c": pd.Series(["a"] * 500 + ["z"] * 300 + [None] * 200, dtype=object),
        }
    )
    prof = Profile.from_frame(cur, bins_from=ref)
    h = prof["x"].histogram
    assert h is not None
    assert h.edges is not None
    expected = np.bincount(np.searchsorted(h.edges, cur["x"].dropna(), side="right"), minlength=10)
    assert h.counts.tolist() == expected.tolist()
    assert h.null_count == 1
    assert h.total == 1000
    hc = prof["c"].histogram
    assert hc is not None
    assert hc.categories is not None
    assert dict(zip(hc.categories, hc.counts.tolist(), strict=True)) == {"a": 500, "b": 0, "c": 0}
    assert (hc.unseen_count, hc.null_count) == (300, 200)
    summary = prof.summary()["columns"]
    assert summary["x"]["histogram"]["source"] == "reference"
    assert summary["c"]["histogram"]["unseen_count"] == 300


def test_coarse_bins_that_are_not_among_the_fine_ones_are_counted_directly() -> None:
    rng = np.random.default_rng(13)
    frame = pd.DataFrame({"x": rng.standard_normal(2_000)})
    ref = Profile.reference(frame, n_bins=7, fine_bins=20)
    cur = rng.normal(0.5, 1, 3_000)
    prof = Profile.from_frame(pd.DataFrame({"x": cur}), bins_from=ref)
    for hist in (prof["x"].histogram, prof["x"].fine_histogram):
        assert hist is not None
        assert hist.edges is not None
        expected = np.bincount(
            np.searchsorted(hist.edges, cur, side="right"), minlength=len(hist.counts)
        )
        assert hist.counts.tolist() == expected.tolist()


def test_datetimes_beyond_the_nanosecond_range_and_timedeltas() -> None:
    far = pd.Series(np.array(["1500-01-01", "2500-06-01", "NaT"], dtype="datetime64[s]"))
    frame = pd.DataFrame({"far": far, "gap": pd.to_timedelta([1.5, None, 3.0], unit="s")})
    profile = Profile.from_frame(frame)
    assert profile["far"].min == pytest.approx(pd.Timestamp("1500-01-01").timestamp())
    assert profile["far"].null_count == 1
    assert (profile["gap"].min, profile["gap"].max, profile["gap"].null_count) == (1.5, 3.0, 1)


def test_reference_accepts_chunks_callables_and_iterators() -> None:
    rng = np.random.default_rng(9)
    frame = pd.DataFrame({"x": rng.standard_normal(3_000)})
    parts = split(frame, 3)
    from_frame = Profile.reference(frame).to_dict()
    assert (
        Profile.reference(parts).to_dict()["columns"][0]["histogram"]
        == from_frame["columns"][0]["histogram"]
    )
    assert Profile.reference(lambda: iter(parts))["x"].histogram is not None
    assert Profile.reference(iter(parts))["x"].histogram is not None
    with pytest.raises(ConfigError, match="n_bins"):
        Profile.reference(frame, n_bins=1)
    with pytest.raises(EmptyDataError):
        Profile.reference([])


def test_merge_errors_name_the_problem() -> None:
    rng = np.random.default_rng(10)
    a = pd.DataFrame({"x": rng.standard_normal(200)})
    b = pd.DataFrame({"x": rng.standard_normal(200) + 5})
    ref_a, ref_b = Profile.reference(a), Profile.reference(b)
    with pytest.raises(DataError, match="different bins"):
        Profile.from_frame(a, bins_from=ref_a).merge(Profile.from_frame(a, bins_from=ref_b))
    with pytest.raises(DataError, match="with histograms and one without"):
        Profile.from_frame(a, bins_from=ref_a).merge(Profile.from_frame(a))
    with pytest.raises(DataError, match="different columns"):
        Profile.from_frame(a).merge(Profile.from_frame(a.rename(columns={"x": "y"})))
    with pytest.raises(DataError, match="type changed"):
        Profile.from_frame(a).merge(Profile.from_frame(pd.DataFrame({"x": ["text"] * 3})))
    with pytest.raises(DataError, match="categorical here but numeric"):
        Profile.from_frame(pd.DataFrame({"x": ["text"]}), bins_from=ref_a)
    with pytest.raises(DataError, match="reference profile with histograms"):
        Profile.from_frame(a, bins_from=Profile.from_frame(a))
    with pytest.raises(DataError, match="DataFrame"):
        Profile.from_frame([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sample_size"):
        Profile.from_frame(a, sample_size=0)
    with pytest.raises(EmptyDataError):
        Profile.from_chunks([])
    with pytest.raises(DataError, match="no column 'nope'"):
        Profile.from_frame(a)["nope"]


def test_an_all_null_chunk_adopts_the_other_kind() -> None:
    numbers = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    nothing = pd.DataFrame({"x": pd.Series([None, None], dtype=object)})
    merged = Profile.from_frame(nothing) + Profile.from_frame(numbers)
    col = merged["x"]
    assert (col.kind, col.count, col.null_count, col.min, col.max) == ("numeric", 5, 2, 1.0, 3.0)
    assert col.quantile(0.5) == 2.0
    ref = Profile.reference(numbers)
    binned = Profile.from_frame(nothing, bins_from=ref) + Profile.from_frame(numbers, bins_from=ref)
    assert binned["x"].histogram is not None
    assert binned["x"].histogram.null_count == 2


# --------------------------------------------------------------------------- serialisation


def test_to_dict_round_trip_is_lossless() -> None:
    frame = mixed_frame(n=3_000)
    ref = Profile.reference(frame, fine_bins=20, sample_size=1_000)
    text = ref.to_json()
    back = Profile.from_json(text)
    assert back.to_dict() == ref.to_dict()
    assert back.to_json() == text
    for name in frame.columns:
        a, b = ref[name], back[name]
        assert a.sample.tolist() == b.sample.tolist() or (
            np.array_equal(a.sample, b.sample, equal_nan=True)
        )
        assert a.summary() == b.summary()
    assert back["floats"].max == math.inf
    assert back["floats"].min == -math.inf
    # a restored reference still bins live data, and merges with it
    live = Profile.from_frame(frame, bins_from=back)
    assert live["floats"].histogram is not None
    assert live["floats"].histogram.same_bins(ref["floats"].histogram)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="schema"):
        Profile.from_dict({"schema": "other"})
    with pytest.raises(DataError, match="not valid JSON"):
        Profile.from_json("{")
    broken = ref.to_dict()
    del broken["columns"][0]["count"]
    with pytest.raises(DataError, match="malformed"):
        Profile.from_dict(broken)


def test_summary_is_json_and_holds_no_raw_rows() -> None:
    rng = np.random.default_rng(11)
    ids = [f"patient-{i:06d}" for i in rng.permutation(50_000)]
    frame = pd.DataFrame({"id": ids, "x": rng.standard_normal(50_000)})
    frame.loc[:99, "id"] = "shared"
    profile = Profile.from_frame(frame, max_categories=100)
    summary = profile.summary()
    text = json.dumps(summary, allow_nan=False)
    col = summary["columns"]["id"]
    # 50,000 distinct ids, 100 counters: Misra-Gries may under-count by max_error
    max_error = profile["id"].frequent.max_error  # type: ignore[union-attr]
    assert col["top"][0]["value"] == "shared"
    assert 100 - max_error <= col["top"][0]["count"] <= 100
    assert col["top_exact"] is False
    assert len(col["top"]) <= 10
    shown = {t["value"] for t in col["top"]}
    leaked = [i for i in ids[100:] if i in text and i not in shown]
    assert leaked == []
    assert "sample" not in json.dumps(list(summary["columns"]["x"]))
    assert len(text) < 5_000
    # a reference histogram of 500 exact categories shows 10 of them, the rest summed
    codes = pd.DataFrame({"code": [f"code-{i % 500:03d}" for i in range(50_000)]})
    codes.loc[:199, "code"] = "code-top"
    ref = Profile.reference(codes)
    assert ref["code"].histogram is not None
    assert len(ref["code"].histogram.categories or ()) == 501
    binned = Profile.from_frame(codes, bins_from=ref).summary()["columns"]["code"]["histogram"]
    assert len(binned["categories"]) == 10
    assert binned["categories"][0] == "code-top"
    assert sum(binned["counts"]) + binned["other_count"] + binned["unseen_count"] == 50_000
    assert len(json.dumps(binned)) < 1_000
    x = summary["columns"]["x"]
    assert x["histogram"]["source"] == "sample"
    assert len(x["histogram"]["counts"]) == 10
    assert sum(x["histogram"]["counts"]) == pytest.approx(50_000, abs=10)
    assert set(x["quantiles"]) == {"0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99"}


@pytest.mark.parametrize("shape", ["normal", "lognormal", "integers", "offset", "cauchy"])
@pytest.mark.parametrize("n_bins", [5, 10, 100])
def test_grid_binning_equals_searchsorted(shape: str, n_bins: int) -> None:
    rng = np.random.default_rng(n_bins)
    base = {
        "normal": rng.standard_normal(5000),
        "lognormal": rng.lognormal(0, 3, 5000),
        "integers": rng.integers(0, 20, 5000).astype(float),
        "offset": 1e9 + rng.standard_normal(5000) * 1e-3,
        "cauchy": rng.standard_cauchy(5000),
    }[shape]
    edges = np.unique(np.quantile(base, np.arange(1, n_bins) / n_bins))
    # values on, just above and just below every edge, and the extremes
    values = np.concatenate(
        [
            base,
            edges,
            np.nextafter(edges, np.inf),
            np.nextafter(edges, -np.inf),
            [np.inf, -np.inf, 1e308, -1e308],
        ]
    )
    counter = _BinCounter(edges)
    counter.add(values)
    expected = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    assert counter.counts.tolist() == expected.tolist()


def test_histogram_merge_and_total() -> None:
    h = Histogram("numeric", np.array([1, 2, 3]), null_count=4, edges=np.array([0.0, 1.0]))
    doubled = h.merge(h)
    assert doubled.counts.tolist() == [2, 4, 6]
    assert doubled.total == 20
    assert Histogram.from_dict(h.to_dict()).same_bins(h)
    assert h.all_counts().tolist() == [1, 2, 3, 4]
    assert h.labels() == ["[-inf, 0)", "[0, 1)", "[1, inf)", "<null>"]
    cat = Histogram(
        "categorical", np.array([5, 6]), null_count=1, unseen_count=2, categories=("a", "b")
    )
    assert cat.all_counts().tolist() == [5, 6, 2, 1]
    assert cat.labels() == ["a", "b", "<unseen>", "<null>"]
    with pytest.raises(DataError, match="3 counts stored, its bins need 2"):
        Histogram.from_dict({**cat.to_dict(), "counts": [1, 2, 3]})
    other = Histogram("categorical", np.array([1]), categories=("a",))
    with pytest.raises(DataError, match="different bins"):
        h.merge(other, column="x")


def test_column_profile_merge_rejects_other_names() -> None:
    a = ColumnProfile(name="a", kind="numeric", count=0, null_count=0)
    with pytest.raises(DataError, match="column 'a' with column 'b'"):
        a.merge(ColumnProfile(name="b", kind="numeric", count=0, null_count=0))


# --------------------------------------------------------------------------- windows


def test_profile_by_window_buckets_and_merges_to_the_whole() -> None:
    rng = np.random.default_rng(12)
    n = 2_000
    frame = pd.DataFrame(
        {
            "ts": pd.Timestamp("2024-03-01 00:00")
            + pd.to_timedelta(rng.uniform(0, 5 * 3600, n), unit="s"),
            "x": rng.standard_normal(n),
            "c": pd.Series(rng.choice(["p", "q"], n), dtype=object),
        }
    )
    windows = profile_by_window(frame, "ts", "1h")
    assert list(windows) == [f"2024-03-01T0{h}:00:00" for h in range(5)]
    first = windows["2024-03-01T00:00:00"]
    assert first.window_end == "2024-03-01T01:00:00"
    assert "ts" not in first.columns
    in_first = frame["ts"] < pd.Timestamp("2024-03-01 01:00")
    assert first.n_rows == int(in_first.sum())
    assert first["x"].mean == pytest.approx(frame.loc[in_first, "x"].mean())
    merged = sum(windows.values())
    assert isinstance(merged, Profile)
    assert merged.window_start == "2024-03-01T00:00:00"
    assert merged.window_end == "2024-03-01T05:00:00"
    assert_same_exact_stats(merged, Profile.from_frame(frame.drop(columns=["ts"])))

    with pytest.raises(DataError, match="time_column 'nope'"):
        profile_by_window(frame, "nope")
    with pytest.raises(ConfigError, match="fixed window"):
        profile_by_window(frame, "ts", "1 fortnight")
    aware = frame.assign(ts=frame["ts"].dt.tz_localize("Europe/Paris"))
    aware_windows = profile_by_window(aware, "ts", "2h")
    assert next(iter(aware_windows)) == "2024-03-01T00:00:00+01:00"
    assert sum(p.n_rows for p in aware_windows.values()) == n
    gappy = frame.copy()
    gappy.loc[0, "ts"] = pd.NaT
    with pytest.raises(DataError, match="1 missing timestamps"):
        profile_by_window(gappy, "ts")

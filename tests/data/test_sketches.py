"""Sketches stay within their documented error bounds, and merge like their inputs' union."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.data.sketches import (
    FrequentItems,
    HyperLogLog,
    UniformSample,
    decode_array,
    dkw_epsilon,
    encode_array,
    hash_float64,
    hash_strings,
)
from bastion.exceptions import DataError


def hll_of(values: np.ndarray, precision: int = 12, block: int = 4096) -> HyperLogLog:
    values = np.asarray(values, dtype=np.float64)
    registers = np.zeros(1 << precision, dtype=np.uint8)
    for start in range(0, len(values), block):
        chunk = np.ascontiguousarray(values[start : start + block])
        out = np.empty(len(chunk), dtype=np.uint64)
        tmp = np.empty(len(chunk), dtype=np.uint64)
        HyperLogLog.update(registers, hash_float64(chunk, out, tmp))
    return HyperLogLog(precision, registers)


def structured(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.arange(n, dtype=np.float64)
    return {
        "ints": idx,
        "negative_ints": -idx - 1,
        "tenths": idx * 0.1,
        "huge": idx * 2.0**40,
        "tiny": idx * 1e-300,
        "normal": rng.standard_normal(n),
        "powers": 2.0 ** (idx % 500 - 250) * (1 + idx // 500),
    }[kind]


# --------------------------------------------------------------------------- HyperLogLog

KINDS = ["ints", "negative_ints", "tenths", "huge", "tiny", "normal", "powers"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [3_000, 60_000])
def test_hll_error_within_three_standard_errors(kind: str, n: int) -> None:
    values = structured(kind, n, np.random.default_rng(n))
    true = len(np.unique(values))
    sketch = hll_of(values)
    bound = 3 * sketch.relative_standard_error
    assert abs(sketch.estimate() - true) <= bound * true


def test_hll_is_unbiased_over_many_inputs() -> None:
    # 30 independent inputs: the mean error shrinks like rse / sqrt(30), the spread is ~rse
    rng = np.random.default_rng(7)
    errors = []
    for _ in range(30):
        start = float(rng.integers(0, 10**9))
        values = np.arange(start, start + 20_000)
        errors.append(hll_of(values).estimate() / 20_000 - 1)
    rse = 1.04 / math.sqrt(4096)
    assert abs(np.mean(errors)) < 3 * rse / math.sqrt(30)
    assert 0.5 * rse < np.std(errors) < 1.5 * rse


@pytest.mark.parametrize("n", [0, 1, 2, 10, 100, 300])
def test_hll_is_nearly_exact_for_small_counts(n: int) -> None:
    assert hll_of(np.arange(n)).estimate() == pytest.approx(n, abs=0.01 * n + 0.5)


def test_hll_counts_both_zeros_once() -> None:
    assert hll_of(np.array([0.0, -0.0, 0.0])).estimate() == pytest.approx(1.0, abs=0.01)
    assert hll_of(np.array([-0.0])).registers.tolist() == hll_of(np.array([0.0])).registers.tolist()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-1000, 1000), max_size=300),
    st.lists(st.integers(-1000, 1000), max_size=300),
)
def test_hll_merge_equals_sketch_of_union(a: list[int], b: list[int]) -> None:
    left, right = hll_of(np.array(a, dtype=float)), hll_of(np.array(b, dtype=float))
    union = hll_of(np.array(a + b, dtype=float))
    assert np.array_equal(left.merge(right).registers, union.registers)
    assert np.array_equal(right.merge(left).registers, union.registers)


def test_hll_string_hashes_and_round_trip() -> None:
    registers = np.zeros(1 << 10, dtype=np.uint8)
    words = [f"user-{i}" for i in range(5000)]
    HyperLogLog.update(registers, hash_strings(words + words[:100]))
    sketch = HyperLogLog(10, registers)
    assert abs(sketch.estimate() - 5000) <= 3 * sketch.relative_standard_error * 5000
    again = HyperLogLog.from_dict(sketch.to_dict())
    assert np.array_equal(again.registers, sketch.registers)
    assert again.estimate() == sketch.estimate()


def test_hll_rejects_bad_precision_and_mismatched_merge() -> None:
    with pytest.raises(DataError, match="hll_precision"):
        HyperLogLog.empty(3)
    with pytest.raises(DataError, match="precision 10 and 12"):
        HyperLogLog.empty(10).merge(HyperLogLog.empty(12))
    with pytest.raises(DataError, match="registers"):
        HyperLogLog.from_dict({"precision": 12, "registers": encode_array(np.zeros(8, np.uint8))})


# --------------------------------------------------------------------------- uniform sample


def sample_of(values: np.ndarray, capacity: int, seed: int) -> UniformSample:
    rng = np.random.default_rng(seed)
    if len(values) <= capacity:
        picked = values
    else:
        picked = values[rng.choice(len(values), capacity, replace=False)]
    return UniformSample(np.sort(picked), len(values), capacity)


def test_dkw_epsilon_values_and_errors() -> None:
    assert dkw_epsilon(10_000, 0.01) == pytest.approx(math.sqrt(math.log(200) / 20_000))
    assert dkw_epsilon(0) == 1.0
    with pytest.raises(DataError, match="delta"):
        dkw_epsilon(10, 0.0)
    with pytest.raises(DataError, match="k must"):
        dkw_epsilon(-1)


def test_merged_samples_keep_quantile_rank_error_within_dkw_bound() -> None:
    rng = np.random.default_rng(3)
    # chunks of very different sizes and distributions: a biased merge would show
    chunks = [
        rng.standard_normal(50_000),
        rng.exponential(3.0, 5_000) + 2,
        rng.uniform(-10, -5, 20_000),
        rng.standard_normal(1_000) * 0.01,
    ]
    capacity = 2_000
    merged = sample_of(chunks[0], capacity, 0)
    for i, chunk in enumerate(chunks[1:], start=1):
        merged = merged.merge(sample_of(chunk, capacity, i), np.random.default_rng(100 + i))
    population = np.sort(np.concatenate(chunks))
    assert merged.population == len(population)
    assert len(merged.values) == capacity
    bound = merged.rank_error(delta=1e-3)
    assert bound == pytest.approx(dkw_epsilon(capacity, 1e-3) + 1 / capacity)
    for q in np.linspace(0.0, 1.0, 101):
        v = np.quantile(merged.values, q)
        lo = np.searchsorted(population, v, side="left") / len(population)
        hi = np.searchsorted(population, v, side="right") / len(population)
        assert lo - bound <= q <= hi + bound


def test_merge_draws_each_side_in_proportion() -> None:
    # 90 % negative, 10 % positive: the merged sample's positive share is hypergeometric
    a = UniformSample(-np.arange(1.0, 5001.0), 90_000, 5000)
    b = UniformSample(np.arange(1.0, 5001.0), 10_000, 5000)
    shares = [float((a.merge(b, np.random.default_rng(s)).values > 0).mean()) for s in range(20)]
    sd = math.sqrt(0.1 * 0.9 / 5000)
    assert abs(np.mean(shares) - 0.1) < 4 * sd / math.sqrt(20)


def test_small_samples_merge_exactly() -> None:
    a = UniformSample(np.array([3.0, 1.0]), 2, 10)
    b = UniformSample(np.array([2.0]), 1, 10)
    merged = a.merge(b, np.random.default_rng(0))
    assert merged.exact
    assert merged.values.tolist() == [1.0, 2.0, 3.0]
    assert merged.rank_error() == 0.0
    empty = UniformSample.empty(10)
    assert empty.merge(b, np.random.default_rng(0)).values.tolist() == [2.0]


# --------------------------------------------------------------------------- frequent items


def test_frequent_items_exact_while_few() -> None:
    fi = FrequentItems.from_counts({"a": 5, "b": 3, "c": 3}, capacity=3)
    assert fi.exact
    assert fi.max_error == 0.0
    assert fi.top(2) == [("a", 5), ("b", 3)]
    with pytest.raises(DataError, match="max_categories"):
        FrequentItems.from_counts({}, capacity=0)


def check_misra_gries(fi: FrequentItems, truth: dict[str, int]) -> None:
    assert fi.total == sum(truth.values())
    assert len(fi.counts) <= fi.capacity
    for key, count in truth.items():
        got = fi.counts.get(key, 0)
        assert count - fi.max_error <= got <= count
        if count > fi.max_error:
            assert key in fi.counts


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(0, 40).map(lambda i: f"v{i}" if i > 5 else "hot"), max_size=60),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 8),
)
def test_misra_gries_bound_holds_through_merges(chunks: list[list[str]], capacity: int) -> None:
    truth: dict[str, int] = {}
    merged: FrequentItems | None = None
    for chunk in chunks:
        counts: dict[str, int] = {}
        for v in chunk:
            counts[v] = counts.get(v, 0) + 1
            truth[v] = truth.get(v, 0) + 1
        part = FrequentItems.from_counts(counts, capacity)
        merged = part if merged is None else merged.merge(part)
    assert merged is not None
    check_misra_gries(merged, truth)
    if len(truth) > capacity:
        assert not merged.exact
    if merged.exact:
        assert dict(merged.counts) == truth


def test_frequent_items_top_k_is_right_when_separated() -> None:
    rng = np.random.default_rng(5)
    heavy = {"a": 5000, "b": 3000, "c": 2000}
    truth = dict(heavy)
    merged: FrequentItems | None = None
    for _ in range(10):
        counts = {k: v // 10 for k, v in heavy.items()}
        for i in rng.integers(0, 10_000, 800):
            key = f"rare{i}"
            counts[key] = counts.get(key, 0) + 1
            truth[key] = truth.get(key, 0) + 1
        fi = FrequentItems.from_counts(counts, capacity=50)
        merged = fi if merged is None else merged.merge(fi)
    assert merged is not None
    assert not merged.exact
    check_misra_gries(merged, truth)
    assert [k for k, _ in merged.top(3)] == ["a", "b", "c"]
    again = FrequentItems.from_dict(merged.to_dict())
    assert dict(again.counts) == dict(merged.counts)
    assert again.exact == merged.exact
    assert again.max_error == merged.max_error


# --------------------------------------------------------------------------- encoding


def test_array_encoding_round_trips_exactly() -> None:
    values = np.array([0.1, -0.0, np.inf, -np.inf, 5e-324, 1.7976931348623157e308])
    back = decode_array(encode_array(values))
    assert back.tobytes() == values.tobytes()
    with pytest.raises(DataError, match="holds"):
        decode_array({**encode_array(values), "n": 3})
    with pytest.raises(DataError, match="malformed"):
        decode_array({"dtype": "<f8", "n": 1, "b64": "@@"})

"""DQ010 outliers: robust z and IQR counts equal scipy / numpy on the same data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bastion.data.checks.outliers import Outliers, OutliersConfig
from bastion.findings import Status


def _robust_z_counts(frame: pd.DataFrame, threshold: float = 3.5) -> dict[str, int]:
    out = {}
    for col in frame.columns:
        x = frame[col].dropna().to_numpy()
        median = np.median(x)
        mad = stats.median_abs_deviation(x)  # unscaled MAD
        z = 0.6745 * (x - median) / mad
        out[col] = int(np.sum(np.abs(z) > threshold))
    return out


def test_robust_z_counts_equal_scipy(make_ctx, cancer: pd.DataFrame) -> None:
    features = cancer.drop(columns="target")
    finding = Outliers().run(make_ctx(cancer, target="target"))
    expected = _robust_z_counts(features)
    assert finding.metrics["outlier_values"] == sum(expected.values())
    failing = finding.evidence["failing"]
    expected_failing = {c for c, n in expected.items() if n / len(features) > 0.05}
    assert set(failing) == expected_failing
    for col in failing:
        assert failing[col]["outliers"] == expected[col]
    assert finding.status is Status.FAIL  # "area error" is heavy-tailed: 14% beyond 3.5


def test_iqr_counts_equal_numpy(make_ctx, cancer: pd.DataFrame) -> None:
    features = cancer.drop(columns="target")
    q1, q3 = features.quantile(0.25), features.quantile(0.75)
    iqr = q3 - q1
    outside = (features < q1 - 1.5 * iqr) | (features > q3 + 1.5 * iqr)
    finding = Outliers(OutliersConfig(method="iqr", max_fraction=0.2)).run(
        make_ctx(cancer, target="target")
    )
    assert finding.metrics["outlier_values"] == int(outside.to_numpy().sum())
    assert finding.status is Status.PASS
    assert finding.metrics["max_outlier_fraction"] == pytest.approx(outside.mean().max())


def test_gaussian_passes_and_planted_outliers_fail(make_ctx) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=2_000), "b": rng.normal(5, 2, size=2_000)})
    clean = Outliers().run(make_ctx(frame))
    assert clean.status is Status.PASS
    assert clean.metrics["max_outlier_fraction"] < 0.005
    frame.loc[:199, "b"] = 1e6  # 10% poison points far away
    dirty = Outliers().run(make_ctx(frame))
    assert dirty.status is Status.FAIL
    assert dirty.evidence["failing"]["b"]["outliers"] == 200
    assert dirty.evidence["samples"]["b"][0] == 1e6


def test_zero_mad_falls_back_to_mean_absolute_deviation(make_ctx) -> None:
    values = np.zeros(100)
    values[:10] = np.arange(1, 11)  # MAD is 0: more than half the values are 0
    values[10] = 1000.0
    frame = pd.DataFrame({"v": values})
    finding = Outliers(OutliersConfig(min_distinct=2)).run(make_ctx(frame))
    deviation = np.abs(values - 0.0)
    z = values / (1.253314 * deviation.mean())
    assert finding.metrics["outlier_values"] == int(np.sum(np.abs(z) > 3.5))


def test_few_distinct_values_are_not_judged(make_ctx) -> None:
    frame = pd.DataFrame({"flag": [0.0] * 95 + [1.0] * 5, "x": np.arange(100.0)})
    finding = Outliers().run(make_ctx(frame))
    assert finding.evidence["not_judged"] == ["flag"]
    assert finding.status is Status.PASS


def test_large_columns_are_settled_from_the_sample_unless_close(
    make_ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.data.checks import outliers

    rng = np.random.default_rng(3)
    n = 40_000  # more than the profile's 10,000-value sample
    frame = pd.DataFrame({"clean": rng.normal(size=n), "dirty": rng.normal(size=n)})
    frame.loc[: n // 10 - 1, "dirty"] = 1e6
    read: list[str] = []
    original = outliers.numeric_values

    def spy(series: pd.Series) -> np.ndarray:
        read.append(str(series.name))
        return original(series)

    monkeypatch.setattr(outliers, "numeric_values", spy)
    finding = Outliers().run(make_ctx(frame))
    assert read == ["dirty"]  # the clean column passes on the sample's upper bound
    assert finding.evidence["estimated"] == ["clean"]
    dirty = finding.evidence["failing"]["dirty"]
    x = frame["dirty"].to_numpy()
    exact = int(np.sum((x < dirty["lower"]) | (x > dirty["upper"])))
    assert dirty["outliers"] == exact >= n // 10
    assert finding.status is Status.FAIL

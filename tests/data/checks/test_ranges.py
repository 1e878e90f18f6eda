"""DQ003 ranges: declared and train-inferred bounds; counts equal pandera's failure cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bastion.data.checks import ranges
from bastion.data.checks.ranges import RangeCheck, RangesConfig
from bastion.data.schema import ColumnKind, ColumnSpec, FeatureSchema
from bastion.findings import Status

AGE = FeatureSchema({"age": ColumnSpec("age", ColumnKind.NUMERIC, min=0, max=120)})


def _ages(bad: list[float]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0, 120, size=200), bad, [np.nan] * 5])
    return pd.DataFrame({"age": values, "other": np.arange(len(values), dtype=float)})


def test_declared_bounds_fail_and_match_pandera(make_ctx) -> None:
    pa = pytest.importorskip("pandera.pandas")
    frame = _ages([-1.0, 130.0, np.inf])
    finding = RangeCheck().run(make_ctx(frame, schema=AGE, infer_schema=False))
    assert finding.status is Status.FAIL
    schema = pa.DataFrameSchema({"age": pa.Column(float, pa.Check.in_range(0, 120), nullable=True)})
    with pytest.raises(pa.errors.SchemaErrors) as err:
        schema.validate(frame, lazy=True)
    cases = err.value.failure_cases
    assert finding.metrics["out_of_range_values"] == len(cases) == 3
    failing = finding.evidence["failing"]["age"]
    assert failing["in_range_fraction"] == pytest.approx(200 / 203)  # nulls left out
    assert failing["bounds"] == "declared"
    assert finding.evidence["samples"]["age"] == [-1.0, 130.0, "inf"]


def test_mostly_tolerates_a_share(make_ctx) -> None:
    frame = _ages([-1.0])
    check = RangeCheck(RangesConfig(mostly=0.99))
    assert check.run(make_ctx(frame, schema=AGE, infer_schema=False)).status is Status.PASS


def test_inferred_bounds_from_train(make_ctx, cancer: pd.DataFrame) -> None:
    train, test = cancer.iloc[:300], cancer.iloc[300:]
    ctx = make_ctx(test, name="test", target="target", reference=train)
    finding = RangeCheck(RangesConfig(inferred_mostly=1.0)).run(ctx)
    features = [c for c in cancer.columns if c != "target"]
    outside = (test[features] < train[features].min()) | (test[features] > train[features].max())
    assert finding.metrics["out_of_range_values"] == int(outside.to_numpy().sum()) > 0
    assert finding.metrics["failing_columns"] == int(outside.any().sum())
    assert finding.status is Status.FAIL
    assert {f["bounds"] for f in finding.evidence["failing"].values()} == {"inferred"}
    default = RangeCheck().run(ctx)
    assert default.metrics["failing_columns"] == int((outside.mean() > 0.05).sum())
    lenient = RangeCheck(RangesConfig(inferred_mostly=0.99)).run(ctx)
    assert lenient.metrics["failing_columns"] == int((outside.mean() > 0.01).sum()) > 0


def test_train_passes_its_own_bounds_without_reading_data(
    make_ctx, cancer: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_read(series: pd.Series) -> np.ndarray:
        raise AssertionError(f"read column {series.name!r}")

    monkeypatch.setattr(ranges, "numeric_values", no_read)
    finding = RangeCheck().run(make_ctx(cancer, target="target"))
    assert finding.status is Status.PASS
    assert finding.metrics["columns_checked"] == 30


def test_all_null_column_passes_vacuously(make_ctx) -> None:
    frame = pd.DataFrame({"age": [np.nan, np.nan]})
    finding = RangeCheck().run(make_ctx(frame, schema=AGE, infer_schema=False))
    assert finding.status is Status.PASS
    assert finding.metrics["min_in_range_fraction"] == 1.0


def test_declared_spec_without_bounds_takes_train_range(make_ctx) -> None:
    schema = FeatureSchema({"x": ColumnSpec("x", ColumnKind.NUMERIC)})
    train = pd.DataFrame({"x": np.arange(100.0)})
    test = pd.DataFrame({"x": [5.0, 500.0]})
    ctx = make_ctx(test, reference=train, schema=schema)
    finding = RangeCheck().run(ctx)
    assert finding.evidence["bounds"]["x"] == {"lower": 0.0, "upper": 99.0, "source": "inferred"}
    assert finding.status is Status.FAIL

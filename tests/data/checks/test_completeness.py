"""DQ002 completeness: non-null share over all rows (Great Expectations' not-null semantics)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bastion.data.checks.completeness import Completeness, CompletenessConfig
from bastion.data.schema import ColumnKind, ColumnSpec, FeatureSchema
from bastion.findings import Status


@pytest.fixture
def holes(cancer: pd.DataFrame) -> pd.DataFrame:
    frame = cancer.copy()
    rng = np.random.default_rng(0)
    frame.loc[rng.random(len(frame)) < 0.1, "mean radius"] = np.nan
    frame.loc[frame.index[:3], "mean texture"] = np.nan
    return frame


def test_complete_data_passes(make_ctx, cancer: pd.DataFrame) -> None:
    finding = Completeness().run(make_ctx(cancer, target="target"))
    assert finding.status is Status.PASS
    assert finding.metrics["min_non_null_fraction"] == 1.0
    assert finding.metrics["columns_checked"] == 31


def test_sparse_column_fails_with_pandas_fractions(make_ctx, holes: pd.DataFrame) -> None:
    finding = Completeness().run(make_ctx(holes, target="target"))
    assert finding.status is Status.FAIL
    assert set(finding.evidence["failing"]) == {"mean radius"}
    expected = float(holes["mean radius"].notna().mean())
    assert finding.evidence["failing"]["mean radius"]["non_null_fraction"] == pytest.approx(
        expected
    )
    assert finding.metrics["min_non_null_fraction"] == pytest.approx(expected)
    assert finding.metrics["null_cells_fraction"] == pytest.approx(
        float(holes.isna().to_numpy().mean())
    )
    assert finding.evidence["null_fraction"]["mean texture"] == pytest.approx(3 / len(holes))


def test_per_column_mostly(make_ctx, holes: pd.DataFrame) -> None:
    check = Completeness(CompletenessConfig(columns={"mean radius": 0.8}))
    assert check.run(make_ctx(holes, target="target")).status is Status.PASS
    strict = Completeness(CompletenessConfig(mostly=1.0))
    assert set(strict.run(make_ctx(holes)).evidence["failing"]) == {"mean radius", "mean texture"}


def test_all_null_column_fails(make_ctx) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [np.nan] * 3})
    finding = Completeness(CompletenessConfig(mostly=0.01)).run(make_ctx(frame))
    assert finding.status is Status.FAIL
    assert finding.evidence["failing"]["b"]["non_null_fraction"] == 0.0


def test_schema_nullable_false_requires_every_value(make_ctx) -> None:
    frame = pd.DataFrame({"a": [1.0] * 99 + [np.nan], "b": np.arange(100.0)})
    schema = FeatureSchema({"a": ColumnSpec("a", ColumnKind.NUMERIC, nullable=False)})
    ctx = make_ctx(frame, schema=schema)
    assert Completeness().run(ctx).status is Status.PASS
    finding = Completeness(CompletenessConfig(schema_nullable=True)).run(ctx)
    assert finding.status is Status.FAIL
    assert finding.evidence["failing"]["a"]["mostly"] == 1.0


def test_works_without_a_runner_profile(make_ctx, holes: pd.DataFrame) -> None:
    with_profile = Completeness().run(make_ctx(holes))
    without = Completeness().run(make_ctx(holes, profile=False))
    assert with_profile.metrics == without.metrics

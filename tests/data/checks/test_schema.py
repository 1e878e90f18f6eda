"""DQ001 schema: missing required columns and wrong kinds fail; compatible kinds pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bastion.data.checks.schema import SchemaCheck, SchemaConfig, kind_matches
from bastion.data.schema import ColumnKind, ColumnSpec, FeatureSchema
from bastion.findings import Status


def test_train_passes_its_own_inferred_schema(make_ctx, cancer: pd.DataFrame) -> None:
    finding = SchemaCheck().run(make_ctx(cancer, target="target", profile=False))
    assert finding.status is Status.PASS
    assert finding.metrics["columns_checked"] == 30


def test_missing_and_retyped_columns_fail(make_ctx, cancer: pd.DataFrame) -> None:
    test = cancer.drop(columns=["mean radius"]).astype({"mean area": str})
    ctx = make_ctx(test, name="test", target="target", reference=cancer, profile=False)
    finding = SchemaCheck().run(ctx)
    assert finding.status is Status.FAIL
    assert finding.evidence["missing"] == ["mean radius"]
    assert finding.evidence["mismatched"]["mean area"]["expected"] == "numeric"
    assert finding.metrics["missing_columns"] == 1
    assert finding.metrics["kind_mismatches"] == 1


def test_optional_and_extra_columns(make_ctx) -> None:
    schema = FeatureSchema(
        {
            "a": ColumnSpec("a", ColumnKind.INTEGER),
            "b": ColumnSpec("b", ColumnKind.TEXT, required=False),
        }
    )
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0], "z": [1, 2, 3]})
    ctx = make_ctx(frame, schema=schema, infer_schema=False, profile=False)
    finding = SchemaCheck().run(ctx)
    assert finding.status is Status.PASS  # integral floats are integers; b is optional
    assert finding.evidence["extra"] == ["z"]
    strict = SchemaCheck(SchemaConfig(allow_extra_columns=False)).run(ctx)
    assert strict.status is Status.FAIL


@pytest.mark.parametrize(
    ("kind", "values", "ok"),
    [
        (ColumnKind.NUMERIC, [1, 2], True),
        (ColumnKind.NUMERIC, ["1", "2"], False),
        (ColumnKind.INTEGER, [1.5, 2.0], False),
        (ColumnKind.BOOLEAN, [0, 1, 1], True),
        (ColumnKind.BOOLEAN, [0, 2], False),
        (ColumnKind.CATEGORICAL, ["a", "b"], True),
        (ColumnKind.CATEGORICAL, [1.0, np.nan], True),
        (ColumnKind.TEXT, [1, 2], False),
        (ColumnKind.DATETIME, pd.to_datetime(["2024-01-01"]), True),
        (ColumnKind.DATETIME, ["2024-01-01"], False),
    ],
)
def test_kind_compatibility(kind: ColumnKind, values: object, ok: bool) -> None:
    assert kind_matches(kind, pd.Series(values))[0] is ok


def test_skips_without_schema(make_ctx) -> None:
    ctx = make_ctx(pd.DataFrame({"a": [1]}), infer_schema=False, profile=False)
    assert SchemaCheck().run(ctx).status is Status.SKIPPED

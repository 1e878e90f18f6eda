"""DQ009 constant_columns: one distinct value, nulls aside, read from the profile."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bastion.data.checks.constant_columns import ConstantColumns, ConstantColumnsConfig
from bastion.findings import Status


def test_informative_features_pass(make_ctx, cancer: pd.DataFrame) -> None:
    finding = ConstantColumns().run(make_ctx(cancer, target="target"))
    assert finding.status is Status.PASS
    assert finding.metrics["columns_checked"] == 30


def test_constant_and_empty_columns_fail(make_ctx) -> None:
    frame = pd.DataFrame(
        {
            "x": np.arange(6.0),
            "one": [3.0, np.nan, 3.0, 3.0, np.nan, 3.0],  # constant, nulls aside
            "site": ["north"] * 6,
            "gone": [np.nan] * 6,
            "flag": [True, False] * 3,
            "y": [0, 1] * 3,
        }
    )
    finding = ConstantColumns().run(make_ctx(frame, target="y"))
    nunique = frame.drop(columns="y").nunique(dropna=True)
    assert finding.status is Status.FAIL
    assert finding.evidence["constant"] == sorted(nunique.index[nunique == 1])
    assert finding.evidence["empty"] == list(nunique.index[nunique == 0])
    assert finding.metrics["constant_columns"] == int((nunique <= 1).sum()) == 3
    assert finding.evidence["samples"] == {"one": 3.0, "site": "north"}
    lenient = ConstantColumns(ConstantColumnsConfig(max_constant_columns=3))
    assert lenient.run(make_ctx(frame, target="y")).status is Status.PASS


def test_profile_without_category_counts(make_ctx) -> None:
    from bastion.data.profile import Profile

    frame = pd.DataFrame({"site": ["north", None, "north"], "ward": ["a", "b", "a"]})
    ctx = make_ctx(frame)
    ctx.profile = Profile.from_frame(frame, full=False)
    finding = ConstantColumns().run(ctx)
    assert finding.evidence["constant"] == ["site"]
    assert finding.evidence["samples"] == {"site": "north"}

"""DQ005 duplicates: counts agree with pandas' duplicated / groupby(dropna=False) on NaN data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bastion.data import rowhash
from bastion.data.checks.duplicates import DuplicateRows, DuplicatesConfig
from bastion.findings import Status


def _random_frame(seed: int, n: int = 2_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.choice([0.0, -0.0, 1.5, np.nan], size=n)
    b = rng.integers(0, 3, size=n)
    c = rng.choice(np.array(["x", "y", None], dtype=object), size=n)
    d = pd.array(rng.choice([1, 2, 3], size=n), dtype="Int64")
    d[rng.random(n) < 0.2] = pd.NA
    return pd.DataFrame({"a": a, "b": b, "c": c, "d": d})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_equal_pandas_on_nan_data(make_ctx, seed: int) -> None:
    frame = _random_frame(seed)
    finding = DuplicateRows().run(make_ctx(frame, profile=False))
    sizes = frame.groupby(list(frame.columns), dropna=False).size()
    assert finding.metrics["duplicate_rows"] == int(frame.duplicated(keep="first").sum())
    assert finding.metrics["duplicate_rows"] == len(frame) - len(sizes)
    assert finding.metrics["rows_in_duplicate_groups"] == int(frame.duplicated(keep=False).sum())
    assert finding.metrics["rows_in_duplicate_groups"] == int(sizes[sizes > 1].sum())
    assert finding.metrics["duplicate_groups"] == int((sizes > 1).sum())
    assert finding.status is Status.FAIL


def test_planted_duplicates_fail_and_report_samples(make_ctx, cancer: pd.DataFrame) -> None:
    frame = pd.concat([cancer, cancer.iloc[:7]], ignore_index=True)
    frame.iloc[[0, len(cancer)], 0] = np.nan  # a NaN in a row and in its copy: still equal
    finding = DuplicateRows().run(make_ctx(frame, target="target", profile=False))
    assert finding.status is Status.FAIL
    assert finding.metrics["duplicate_rows"] == 7
    assert finding.metrics["duplicate_fraction"] == pytest.approx(7 / len(frame))
    assert len(finding.evidence["samples"]) == 5
    assert {s["count"] for s in finding.evidence["samples"]} == {2}
    # raw rows appear only under "samples"
    assert set(finding.evidence) == {"columns_compared", "samples"}


def test_clean_data_passes(make_ctx, cancer: pd.DataFrame) -> None:
    finding = DuplicateRows().run(make_ctx(cancer, target="target", profile=False))
    assert finding.status is Status.PASS
    assert finding.metrics["duplicate_rows"] == 0
    assert "samples" not in finding.evidence


def test_max_fraction_tolerates_a_few(make_ctx, cancer: pd.DataFrame) -> None:
    frame = pd.concat([cancer, cancer.iloc[:5]], ignore_index=True)
    check = DuplicateRows(DuplicatesConfig(max_fraction=0.01))
    assert check.run(make_ctx(frame, profile=False)).status is Status.PASS


def test_row_ids_in_non_features_are_ignored(make_ctx, cancer: pd.DataFrame) -> None:
    frame = pd.concat([cancer, cancer.iloc[:3]], ignore_index=True)
    frame["row_id"] = np.arange(len(frame))
    ctx = make_ctx(frame, target="target", non_features=["row_id"], profile=False)
    assert DuplicateRows().run(ctx).metrics["duplicate_rows"] == 3


def test_hash_collisions_never_change_the_count(make_ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _random_frame(5, n=300)
    # every row collides: the exact confirmation must still give pandas' count
    monkeypatch.setattr(
        rowhash, "row_hashes", lambda frames, cols: [np.zeros(len(f), np.uint64) for f in frames]
    )
    finding = DuplicateRows().run(make_ctx(frame, profile=False))
    assert finding.metrics["duplicate_rows"] == int(frame.duplicated().sum())


def test_config_rejects_fraction_out_of_range() -> None:
    with pytest.raises(ValueError, match="max_fraction"):
        DuplicatesConfig(max_fraction=1.5)

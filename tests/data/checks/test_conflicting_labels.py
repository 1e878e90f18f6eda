"""DQ006 conflicting_labels: planted label flips, counts equal to a plain pandas groupby."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bastion.checks import CheckContext
from bastion.data.checks.conflicting_labels import ConflictingLabels, ConflictingLabelsConfig
from bastion.findings import Status


def _pandas_conflicts(frame: pd.DataFrame, target: str) -> tuple[int, int]:
    """(rows, groups) with conflicting labels, the straightforward way."""
    features = [c for c in frame.columns if c != target]
    labelled = frame[frame[target].notna()]
    n_labels = labelled.groupby(features, dropna=False)[target].transform("nunique")
    groups = labelled.groupby(features, dropna=False)[target].nunique()
    return int((n_labels > 1).sum()), int((groups > 1).sum())


def test_planted_flips_fail(make_ctx, cancer: pd.DataFrame) -> None:
    flipped = cancer.iloc[:6].copy()
    flipped["target"] = 1 - flipped["target"]
    frame = pd.concat([cancer, flipped], ignore_index=True)
    finding = ConflictingLabels().run(make_ctx(frame, target="target", profile=False))
    assert finding.status is Status.FAIL
    assert finding.metrics["conflicting_groups"] == 6
    assert finding.metrics["conflicting_rows"] == 12
    assert finding.metrics["conflicting_fraction"] == pytest.approx(12 / len(frame))
    sample = finding.evidence["samples"][0]
    assert sorted(sample["labels"].values()) == [1, 1]
    assert set(finding.evidence) == {"features_compared", "samples"}


@pytest.mark.parametrize("seed", [0, 1])
def test_counts_equal_pandas_with_nan_features(make_ctx, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 1_500
    frame = pd.DataFrame(
        {
            "a": rng.choice([0.0, 1.0, np.nan], size=n),
            "b": rng.choice(np.array(["u", "v", None], dtype=object), size=n),
            "y": rng.choice([0.0, 1.0, 2.0, np.nan], size=n, p=[0.6, 0.25, 0.1, 0.05]),
        }
    )
    finding = ConflictingLabels().run(make_ctx(frame, target="y", profile=False))
    rows, groups = _pandas_conflicts(frame, "y")
    assert finding.metrics["conflicting_rows"] == rows
    assert finding.metrics["conflicting_groups"] == groups
    assert rows > 0


def test_duplicates_with_the_same_label_pass(make_ctx, cancer: pd.DataFrame) -> None:
    frame = pd.concat([cancer, cancer.iloc[:20]], ignore_index=True)
    finding = ConflictingLabels().run(make_ctx(frame, target="target", profile=False))
    assert finding.status is Status.PASS
    assert finding.metrics["conflicting_rows"] == 0


def test_max_fraction(make_ctx, cancer: pd.DataFrame) -> None:
    flipped = cancer.iloc[:1].assign(target=lambda f: 1 - f["target"])
    frame = pd.concat([cancer, flipped], ignore_index=True)
    check = ConflictingLabels(ConflictingLabelsConfig(max_fraction=0.01))
    assert check.run(make_ctx(frame, target="target", profile=False)).status is Status.PASS


def test_skips_without_target(make_ctx, cancer: pd.DataFrame) -> None:
    ctx: CheckContext = make_ctx(cancer, profile=False)
    assert ConflictingLabels().run(ctx).status is Status.SKIPPED
    assert ConflictingLabels.needs_target

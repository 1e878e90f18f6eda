"""DQ008 label_balance: minority share equals pandas' value_counts(normalize=True)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bastion.data.checks.label_balance import LabelBalance, LabelBalanceConfig
from bastion.findings import Status


def test_breast_cancer_is_balanced_enough(make_ctx, cancer: pd.DataFrame) -> None:
    finding = LabelBalance().run(make_ctx(cancer, target="target"))
    shares = cancer["target"].value_counts(normalize=True)
    assert finding.status is Status.PASS
    assert finding.metrics["minority_fraction"] == pytest.approx(shares.min())
    assert finding.metrics["majority_fraction"] == pytest.approx(shares.max())
    assert finding.metrics["imbalance_ratio"] == pytest.approx(shares.max() / shares.min())
    assert finding.evidence["class_counts"] == {"0": 212, "1": 357}


def test_rare_class_fails(make_ctx, cancer: pd.DataFrame) -> None:
    rare = pd.concat([cancer[cancer.target == 1], cancer[cancer.target == 0].iloc[:15]])
    finding = LabelBalance().run(make_ctx(rare, target="target"))
    assert finding.status is Status.FAIL
    assert finding.metrics["minority_fraction"] == pytest.approx(15 / len(rare))
    lenient = LabelBalance(LabelBalanceConfig(min_minority_fraction=0.03))
    assert lenient.run(make_ctx(rare, target="target")).status is Status.PASS


def test_string_labels_and_nulls(make_ctx) -> None:
    frame = pd.DataFrame({"x": range(10), "y": ["a"] * 8 + ["b", None]})
    finding = LabelBalance().run(make_ctx(frame, target="y"))
    assert finding.metrics["labelled_rows"] == 9
    assert finding.metrics["minority_fraction"] == pytest.approx(1 / 9)


def test_single_class_fails(make_ctx) -> None:
    frame = pd.DataFrame({"x": range(5), "y": [1] * 5})
    finding = LabelBalance().run(make_ctx(frame, target="y"))
    assert finding.status is Status.FAIL
    assert finding.metrics["minority_fraction"] == 0.0


def test_continuous_target_is_skipped(make_ctx) -> None:
    frame = pd.DataFrame({"x": range(200), "y": np.linspace(0, 1, 200)})
    assert LabelBalance().run(make_ctx(frame, target="y")).status is Status.SKIPPED


def test_the_limit_scales_with_the_number_of_classes() -> None:
    import pandas as pd

    from bastion.checks import CheckContext
    from bastion.data.dataset import Dataset

    # ten balanced classes (about 9.7-10.3% each) pass the default, written for binary targets
    labels = [i % 10 for i in range(1000)][:-3]
    ds = Dataset.from_frame(pd.DataFrame({"x": range(len(labels)), "y": labels}), target="y")
    finding = LabelBalance().run(CheckContext(dataset=ds, subject="dataset:data"))
    assert finding.status.value == "pass"
    assert finding.threshold["applied_limit"] == pytest.approx(0.02)
    # a binary target keeps the limit as written
    skewed = Dataset.from_frame(
        pd.DataFrame({"x": range(100), "y": [0] * 95 + [1] * 5}), target="y"
    )
    result = LabelBalance().run(CheckContext(dataset=skewed, subject="dataset:data"))
    assert result.status.value == "fail"
    assert result.threshold["applied_limit"] == pytest.approx(0.1)

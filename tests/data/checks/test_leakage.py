"""DQ007 leakage: a planted train/test overlap is found exactly, NaN equal to NaN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bastion.checks import CheckContext
from bastion.data.checks.leakage import LeakageConfig, TrainTestLeakage
from bastion.data.dataset import Dataset
from bastion.findings import Status

SENTINEL = -987654.321


def _ctx(train: pd.DataFrame, test: pd.DataFrame, target: str | None = "target") -> CheckContext:
    return CheckContext(
        subject="dataset:train+test",
        train=Dataset.from_frame(train, name="train", target=target),
        test=Dataset.from_frame(test, name="test", target=target),
    )


def _pandas_leaked(train: pd.DataFrame, test: pd.DataFrame) -> int:
    """Test rows found in train after filling NaN with a sentinel, the usual recipe."""
    t = _fill(train).drop_duplicates()
    s = _fill(test)
    merged = s.merge(t, how="left", indicator=True)
    return int((merged["_merge"] == "both").sum())


def _fill(frame: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_numeric_dtype(values.dtype):
            out[col] = values.astype(float).fillna(SENTINEL)
        else:
            out[col] = values.astype(object).where(values.notna(), "<NA>")
    return pd.DataFrame(out)


@pytest.fixture
def split(cancer: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = cancer.sample(frac=1.0, random_state=0).reset_index(drop=True)
    return shuffled.iloc[:400].copy(), shuffled.iloc[400:].copy()


def test_planted_overlap_is_found(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = split
    train.iloc[:5, 3] = np.nan  # NaN cells must match NaN cells
    test = pd.concat([test, train.iloc[:12]], ignore_index=True)
    finding = TrainTestLeakage().run(_ctx(train, test))
    assert finding.status is Status.FAIL
    assert finding.metrics["leaked_rows"] == 12
    assert finding.metrics["leaked_rows"] == _pandas_leaked(train, test)
    assert finding.metrics["leaked_fraction"] == pytest.approx(12 / len(test))
    assert len(finding.evidence["samples"]) == 5


def test_same_features_other_label_is_not_verbatim(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = split
    copies = train.iloc[:4].assign(target=lambda f: 1 - f["target"])
    finding = TrainTestLeakage().run(_ctx(train, pd.concat([test, copies])))
    assert finding.metrics["leaked_rows"] == 0


def test_disjoint_split_passes(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = split
    finding = TrainTestLeakage().run(_ctx(train, test))
    assert finding.status is Status.PASS
    assert finding.metrics["leaked_rows"] == 0
    assert "samples" not in finding.evidence


def test_integer_and_float_columns_compare_by_value() -> None:
    train = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "target": [0, 1, 0]})
    test = pd.DataFrame({"a": [1.0, np.nan, 3.5], "b": ["x", "y", "z"], "target": [0, 1, 0]})
    finding = TrainTestLeakage().run(_ctx(train, test))
    assert finding.metrics["leaked_rows"] == 1
    assert finding.metrics["leaked_rows"] == _pandas_leaked(train, test)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_equal_pandas_on_random_nan_data(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def frame(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "a": rng.choice([0.0, 1.0, np.nan], size=n),
                "b": rng.choice(np.array(["u", "v", None], dtype=object), size=n),
                "target": rng.integers(0, 2, size=n),
            }
        )

    train, test = frame(300), frame(200)
    finding = TrainTestLeakage().run(_ctx(train, test))
    assert finding.metrics["leaked_rows"] == _pandas_leaked(train, test) > 0


def test_max_fraction(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = split
    test = pd.concat([test, train.iloc[:1]], ignore_index=True)
    check = TrainTestLeakage(LeakageConfig(max_fraction=0.05))
    assert check.run(_ctx(train, test)).status is Status.PASS


def test_skips_without_both_datasets(cancer: pd.DataFrame) -> None:
    ctx = CheckContext(train=Dataset.from_frame(cancer, name="train"))
    assert TrainTestLeakage().run(ctx).status is Status.SKIPPED

"""DQ004 categories: unseen shares over non-null values, declared or inferred from train."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bastion.data.checks.categories import CategoriesConfig, CategoryCheck, category_key
from bastion.data.schema import ColumnKind, ColumnSpec, FeatureSchema
from bastion.findings import Status


@pytest.fixture
def wards() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"ward": rng.choice(["A", "B", "C"], size=300), "x": rng.normal(size=300)})
    test_values = rng.choice(["A", "B", "C", "Z", None], size=200, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    test = pd.DataFrame({"ward": test_values, "x": rng.normal(size=200)})
    return train, test


def test_unseen_categories_fail_with_pandas_share(
    make_ctx, wards: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = wards
    finding = CategoryCheck().run(make_ctx(test, name="test", reference=train))
    assert finding.status is Status.FAIL
    ward = test["ward"].dropna()
    expected = float((~ward.isin(["A", "B", "C"])).mean())
    assert finding.evidence["failing"]["ward"]["unseen_fraction"] == pytest.approx(expected)
    assert finding.metrics["unseen_values"] == int((~ward.isin(["A", "B", "C"])).sum())
    assert finding.evidence["samples"] == {"ward": ["Z"]}
    assert "Z" not in str(finding.evidence["failing"])


def test_train_passes_and_tolerance(make_ctx, wards: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = wards
    assert CategoryCheck().run(make_ctx(train)).status is Status.PASS
    lenient = CategoryCheck(CategoriesConfig(columns={"ward": 0.2}))
    assert lenient.run(make_ctx(test, name="test", reference=train)).status is Status.PASS


def test_declared_categories_and_number_normalisation(make_ctx) -> None:
    schema = FeatureSchema(
        {"grade": ColumnSpec("grade", ColumnKind.CATEGORICAL, categories=("1", "2", "3"))}
    )
    ok = pd.DataFrame({"grade": [1.0, 2.0, np.nan, 3.0]})  # an int column read as floats
    assert CategoryCheck().run(make_ctx(ok, schema=schema)).status is Status.PASS
    bad = pd.DataFrame({"grade": [1, 2, 4, 4]})
    finding = CategoryCheck().run(make_ctx(bad, schema=schema))
    assert finding.status is Status.FAIL
    assert finding.evidence["failing"]["grade"]["unseen_fraction"] == 0.5
    assert finding.evidence["failing"]["grade"]["categories"] == "declared"


def test_booleans(make_ctx) -> None:
    train = pd.DataFrame({"flag": [True, False, True]})
    test = pd.DataFrame({"flag": [True, True]})
    assert CategoryCheck().run(make_ctx(test, reference=train)).status is Status.PASS


def test_skips_without_categorical_columns(make_ctx, cancer: pd.DataFrame) -> None:
    assert CategoryCheck().run(make_ctx(cancer)).status is Status.SKIPPED


@pytest.mark.parametrize(
    ("value", "key"), [(1, "1"), (1.0, "1"), ("1.0", "1"), ("x", "x"), (2.5, "2.5"), (True, "True")]
)
def test_category_key(value: object, key: str) -> None:
    assert category_key(value) == key

"""Fixtures shared by the evasion tests: a synthetic table for the constraint tests of every
attack (an immutable integer feature, an integer feature, a numeric one and a one-hot group,
with a label that depends on all), and the check of its constraints."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from bastion.attacks.constraints import FeatureConstraints
from bastion.data.schema import ColumnKind, ColumnSpec, FeatureSchema


def _mixed_table(
    n: int = 600, seed: int = 1
) -> tuple[pd.DataFrame, np.ndarray, FeatureConstraints]:
    """Rows ``age`` (integer, immutable), ``visits`` (integer), ``income``, ``region_a/b/c``
    (one-hot), their labels, and the constraints of the declared schema."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    visits = rng.integers(0, 12, n).astype(float)
    income = rng.normal(50, 15, n)
    region = rng.integers(0, 3, n)
    onehot = np.eye(3)[region]
    score = 0.04 * (age - 50) + 0.3 * (visits - 6) + 0.08 * (income - 50) + onehot @ [1, -1, 0]
    y = (score + rng.normal(0, 0.5, n) > 0).astype(int)
    frame = pd.DataFrame(
        {
            "age": age,
            "visits": visits,
            "income": income,
            "region_a": onehot[:, 0],
            "region_b": onehot[:, 1],
            "region_c": onehot[:, 2],
        }
    )
    declared = FeatureSchema(
        columns={
            "age": ColumnSpec("age", ColumnKind.INTEGER, min=0, max=120, immutable=True),
            "visits": ColumnSpec("visits", ColumnKind.INTEGER, min=0, max=60),
            **{
                f"region_{k}": ColumnSpec(
                    f"region_{k}", ColumnKind.NUMERIC, min=0, max=1, one_hot_group="region"
                )
                for k in "abc"
            },
        }
    )
    schema = declared.merged_over(FeatureSchema.infer(frame))
    return frame, y, FeatureConstraints.from_schema(schema, list(frame.columns), frame)


def _check_mixed_constraints(adv: np.ndarray, X: np.ndarray, cons: FeatureConstraints) -> None:
    """Feasible, age unchanged, visits whole, one region on."""
    assert cons.violations(adv, X) == 0
    assert np.array_equal(adv[:, 0], X[:, 0])  # age is immutable
    assert np.all(adv[:, 1] == np.rint(adv[:, 1]))
    np.testing.assert_array_equal(
        np.sort(adv[:, 3:], axis=1), np.tile([0.0, 0.0, 1.0], (len(X), 1))
    )


@pytest.fixture(scope="session")
def mixed_table() -> tuple[pd.DataFrame, np.ndarray, FeatureConstraints]:
    """The synthetic table: rows, labels and the constraints of its declared schema."""
    return _mixed_table()


@pytest.fixture(scope="session")
def check_mixed() -> Callable[[np.ndarray, np.ndarray, FeatureConstraints], None]:
    """:func:`_check_mixed_constraints`, for tests to call on an attack's output."""
    return _check_mixed_constraints

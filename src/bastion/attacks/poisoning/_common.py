"""Helpers shared by the poisoning modules: label encoding, numeric features, folds."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd

from bastion.exceptions import ConfigError, DataError

__all__ = [
    "as_float_matrix",
    "check_rate",
    "encode_labels",
    "jsonable",
    "label_array",
    "make_rng",
    "seed_estimator",
    "take_rows",
]


def make_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A generator from a generator, a seed or ``None`` (seed 0: results stay reproducible)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(0 if rng is None else rng)


def take_rows(X: Any, rows: np.ndarray) -> Any:
    """Rows of an array or a DataFrame, by position."""
    if isinstance(X, pd.DataFrame | pd.Series):
        return X.iloc[rows]
    return np.asarray(X)[rows]


def jsonable(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar; anything else unchanged."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def label_array(y: Any, name: str = "y") -> np.ndarray:
    """``y`` as a 1-D array without missing values."""
    arr = np.asarray(y.to_numpy() if isinstance(y, pd.Series | pd.DataFrame) else y)
    arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise DataError(f"{name} must be one label per row; received shape {arr.shape}")
    if len(arr) and pd.isna(arr).any():
        raise DataError(
            f"{name} has {int(pd.isna(arr).sum())} missing label(s); drop those rows first"
        )
    return arr


def encode_labels(y: Any, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """(classes, indices): the sorted distinct labels and each row's column index."""
    arr = label_array(y, name)
    classes, idx = np.unique(arr, return_inverse=True)
    return classes, idx.astype(np.intp)


def check_rate(rate: float, name: str = "rate") -> float:
    """``rate`` as a float in (0, 1)."""
    value = float(rate)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be in (0, 1); received {rate!r}")
    return value


def poison_count(rate: float, n: int) -> int:
    """Rows to poison at ``rate`` of ``n``: rounded half up, at least one. Python's ``round``
    rounds half to even, so one rate gave 2 rows of 30 (1.5) and 2 of 50 (2.5); the product
    is taken in decimal, as the rate is written (0.145 x 100 is 14.499999999999998 in
    binary floating point)."""
    exact = Decimal(repr(float(rate))) * int(n)
    return max(1, int(exact.to_integral_value(rounding=ROUND_HALF_UP)))


def numeric_columns(frame: pd.DataFrame) -> np.ndarray:
    """Which columns of ``frame`` hold numbers (booleans count): the rest are text or
    categories."""
    return np.array(
        [
            pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
            for c in frame.columns
        ],
        dtype=bool,
    )


def as_float_matrix(X: Any, name: str = "X") -> np.ndarray:
    """Numeric features for distance and linear models.

    Numeric and boolean columns become floats; text and categorical columns of a DataFrame
    become one-hot columns; a missing value becomes its column's median (0 when the whole
    column is missing), so neighbours and linear fits never see NaN.
    """
    if isinstance(X, pd.DataFrame):
        frame = X
        other = list(frame.columns[~numeric_columns(frame)])
        if other:
            frame = pd.get_dummies(frame, columns=other, dummy_na=True, dtype=float)
        arr = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            arr = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(
                f"{name} must be numeric (or a DataFrame, whose text columns are one-hot "
                f"encoded); received {type(X).__name__}: {err}"
            ) from err
        if arr.ndim > 2:
            arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim != 2:
        raise DataError(f"{name} must have one row per sample; received shape {arr.shape}")
    if not np.isfinite(arr).all():
        arr = arr.copy()
        arr[np.isinf(arr)] = np.nan
        missing = np.isnan(arr)
        counts = (~missing).sum(axis=0)
        fill = np.zeros(arr.shape[1])
        cols = counts > 0
        if cols.any():
            fill[cols] = np.nanmedian(arr[:, cols], axis=0)
        arr[missing] = np.take(fill, np.nonzero(missing)[1])
    return arr


def seed_estimator(estimator: Any, seed: int) -> Any:
    """Fix every unset ``random_state`` of an estimator (nested ones too) to ``seed``.

    A retrained clone must not differ from the clean one by chance alone: the accuracy drop
    would then measure the seed, not the poison.
    """
    get_params = getattr(estimator, "get_params", None)
    if not callable(get_params):
        return estimator
    unset = {
        key: seed
        for key, value in get_params(deep=True).items()
        if key.endswith("random_state") and value is None
    }
    if unset:
        estimator.set_params(**unset)
    return estimator


def finite_rows(X: Any, what: str) -> np.ndarray:
    """``X`` (an array or a frame) as a contiguous float32 array for a torch module, or a
    :class:`~bastion.exceptions.DataError` naming the columns with missing or infinite values
    (a NaN would surface later as the model's "NaN logits", or a PCA error)."""
    rows = X.to_numpy(dtype=np.float32) if isinstance(X, pd.DataFrame) else np.asarray(X)
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    bad = ~np.isfinite(rows.reshape(len(rows), -1))
    if bad.any():
        counts = bad.sum(axis=0)
        names = list(X.columns) if isinstance(X, pd.DataFrame) else list(range(bad.shape[1]))
        listed = ", ".join(
            f"{names[j]!r} ({int(counts[j])} rows)" for j in np.flatnonzero(counts)[:5]
        )
        more = " ..." if np.count_nonzero(counts) > 5 else ""
        raise DataError(
            f"{what}: missing or infinite values in {listed}{more}; a torch model needs "
            "finite inputs: impute them or drop those rows"
        )
    return rows

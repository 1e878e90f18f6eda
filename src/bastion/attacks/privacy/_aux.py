"""Auxiliary rows (the auditor's own records, beside the evaluated ones) lined up with the
evaluated rows' columns: shared by membership inference's shadows and attribute inference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bastion.exceptions import ConfigError
from bastion.models.base import ArrayLike

__all__ = ["aligned_aux", "is_missing"]


def aligned_aux(X: ArrayLike, X_aux: ArrayLike) -> ArrayLike:
    """``X_aux`` with ``X``'s columns: an array beside a frame takes the frame's column names
    (its width must match), frames with the same columns in another order are reordered.
    Without this the attacker's features would be the union of both column sets, each half
    NaN in the other's rows, and both accuracies would collapse without a word."""
    width, aux_width = np.shape(X)[1], np.shape(X_aux)[1]
    if aux_width != width:
        raise ConfigError(
            f"X_aux must hold the same feature columns as X: X has {width}, X_aux {aux_width}"
        )
    if isinstance(X, pd.DataFrame) and isinstance(X_aux, pd.DataFrame):
        missing = [c for c in X.columns if c not in X_aux.columns]
        if missing:
            extra = [c for c in X_aux.columns if c not in X.columns]
            raise ConfigError(
                f"X_aux must hold the same feature columns as X: X_aux lacks {missing[:5]}"
                f" and has {extra[:5]} instead"
            )
        return X_aux[list(X.columns)]
    if isinstance(X, pd.DataFrame):
        aux = pd.DataFrame(np.asarray(X_aux), columns=X.columns)
        # an array holds one dtype: give each column X's back where that loses nothing, so
        # that an integer attribute reads 1, not 1.0, in both
        for name, dtype in X.dtypes.items():
            try:
                cast = aux[name].astype(dtype)
            except (TypeError, ValueError):
                continue
            if bool((cast == aux[name]).all()):
                aux[name] = cast
        return aux
    if isinstance(X_aux, pd.DataFrame):
        return X_aux.to_numpy()
    return X_aux


def is_missing(values: ArrayLike) -> np.ndarray:
    """Which values are missing (NaN, None, a nullable column's NA), whatever the dtype: the
    attacks refuse such labels and attributes by count and first row."""
    out: np.ndarray = pd.isna(pd.Series(np.asarray(values), dtype=object)).to_numpy()
    return out

"""Small numeric helpers shared by the metric modules."""

from __future__ import annotations

import numpy as np

__all__ = ["safe_divide"]


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0``, as scikit-learn's ``zero_division=0`` and
    Fairlearn's rates (a group without positives has a true positive rate of 0)."""
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out

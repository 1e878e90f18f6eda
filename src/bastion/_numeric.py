"""Small numeric helpers shared by the metric modules and the image shapes' one rule."""

from __future__ import annotations

import numpy as np

__all__ = ["looks_channels_last", "safe_divide"]


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0``, as scikit-learn's ``zero_division=0`` and
    Fairlearn's rates (a group without positives has a true positive rate of 0)."""
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def looks_channels_last(shape: tuple[int, ...]) -> bool:
    """Whether a 3-D image shape reads as (h, w, c): its last value is at most 4 and both
    others are larger ((32, 32, 3), (8, 8, 1)); else it is (c, h, w), so that 8 bands of
    4 x 4 stay bands. One rule for Square's windows and the report's pictures."""
    return len(shape) == 3 and shape[-1] <= 4 < min(shape[:2])

"""Model-validation checks (MV001-MV005); importing this package registers them in ``CHECKS``."""

from __future__ import annotations

from bastion.validation.checks import (
    baseline_comparison,
    calibration,
    confusion_matrix,
    performance,
    slices,
)

__all__ = ["baseline_comparison", "calibration", "confusion_matrix", "performance", "slices"]

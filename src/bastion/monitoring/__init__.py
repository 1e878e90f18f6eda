"""Monitoring of served models: drift statistics between a reference and a current sample."""

from __future__ import annotations

from bastion.monitoring.drift import (
    DEFAULT_STATTESTS,
    DEFAULT_THRESHOLDS,
    STATTESTS,
    ColumnDrift,
    DriftReport,
    drift_report,
)

__all__ = [
    "DEFAULT_STATTESTS",
    "DEFAULT_THRESHOLDS",
    "STATTESTS",
    "ColumnDrift",
    "DriftReport",
    "drift_report",
]

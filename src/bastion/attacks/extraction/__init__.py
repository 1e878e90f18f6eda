"""Extraction attacks: copy a model from its answers within a query budget.

Importing this package registers :class:`~bastion.attacks.extraction.extract.ExtractionAttack`
(id ``extraction``) in :data:`bastion.attacks.base.ATTACKS`.
"""

from __future__ import annotations

from bastion.attacks.extraction import extract, queries, surrogates
from bastion.attacks.extraction.extract import (
    CurvePoint,
    ExtractionAttack,
    ExtractionConfig,
    ExtractionResult,
)
from bastion.attacks.extraction.queries import FeatureStats, RateLimiter

__all__ = [
    "CurvePoint",
    "ExtractionAttack",
    "ExtractionConfig",
    "ExtractionResult",
    "FeatureStats",
    "RateLimiter",
    "extract",
    "queries",
    "surrogates",
]

"""Bastion: secure machine-learning pipelines end to end.

Four pillars: **Test** (data quality, model validation, fairness), **Attack** (adversarial
evasion, extraction, poisoning, privacy), **Protect** (artifact scanning, signed releases,
audit trail) and **Watch** (a guarded serving gateway). ``import bastion`` stays light:
torch, onnxruntime, fastapi and matplotlib load only when a feature needs them.
"""

from __future__ import annotations

from bastion.exceptions import (
    BastionError,
    CapabilityError,
    ConfigError,
    DataError,
    MissingExtraError,
    ModelError,
    ModelOutputError,
    UnsafeArtifactError,
)
from bastion.findings import Finding, Severity, Status

__version__ = "0.1.0"

__all__ = [
    "BastionError",
    "CapabilityError",
    "ConfigError",
    "DataError",
    "Finding",
    "MissingExtraError",
    "ModelError",
    "ModelOutputError",
    "Severity",
    "Status",
    "UnsafeArtifactError",
    "__version__",
]

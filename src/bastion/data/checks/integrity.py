"""DQ012 integrity: the dataset's sha256, recorded and compared with the expected one.

Why it matters: a training or evaluation set that changed since it was reviewed may have been
tampered with (poisoned rows, a swapped test set). Pinning its hash in the policy makes any
change visible, and recording it in every report gives each release its data provenance
(MITRE ATLAS mitigation AML.M0025 dataset provenance; technique AML.T0020; OWASP ML02).

The hash is the sha256 of the file's bytes when the dataset was read from a file, else of the
frame's values (``Dataset.content_hash``). The expected value comes from
``data.expected_sha256.<dataset name>`` in the policy (``ctx.expected_sha256``).

Metrics: ``n_rows``, ``n_columns`` and ``sha256_match`` (1 match, 0 mismatch; absent when no
hash is expected). The hash itself is in ``evidence["sha256"]`` (metrics are numbers).
Status: fail on a mismatch; pass when it matches or nothing is expected, unless
``require_expected`` is set, which turns a missing expectation into a failure.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import (
    ATLAS_DATASET_PROVENANCE,
    ATLAS_POISON_TRAINING_DATA,
    OWASP_DATA_POISONING,
    config_of,
)
from bastion.exceptions import ConfigError
from bastion.findings import Finding, Severity, Status

__all__ = ["DatasetIntegrity", "IntegrityConfig"]

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class IntegrityConfig(CheckConfig):
    """Options of DQ012."""

    require_expected: bool = Field(
        default=False, description="fail when the policy pins no sha256 for the dataset"
    )


@CHECKS.register
class DatasetIntegrity(Check):
    """Record the dataset's sha256 and compare it with the pinned one.

    Example::

        ctx.expected_sha256 = {"train": "9f86d0..."}
        DatasetIntegrity().run(ctx).status  # fail when the file changed
    """

    id = "DQ012"
    name = "integrity"
    title = "Dataset integrity (sha256)"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.HIGH
    tags = (ATLAS_DATASET_PROVENANCE, ATLAS_POISON_TRAINING_DATA, OWASP_DATA_POISONING)
    Config: ClassVar[type[CheckConfig]] = IntegrityConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, IntegrityConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        actual = ds.content_hash
        source = "file" if ds.sha256 is not None else "frame"
        expected = ctx.expected_sha256.get(ds.name)
        evidence = {
            "sha256": actual,
            "source": source,
            "path": str(ds.path) if ds.path is not None else None,
        }
        metrics: dict[str, float | int | None] = {
            "n_rows": ds.n_rows,
            "n_columns": int(ds.frame.shape[1]),
        }
        if expected is None:
            status = Status.FAIL if config.require_expected else Status.PASS
            message = f"dataset {ds.name!r} sha256 {actual} recorded; no expected hash pinned"
            if config.require_expected:
                message += f" (set data.expected_sha256.{ds.name})"
            return self.finding(ctx, status, message, metrics=metrics, evidence=evidence)
        if not _SHA256.match(expected):
            raise ConfigError(
                f"expected_sha256.{ds.name}: expected 64 hexadecimal characters, got {expected!r}"
            )
        match = expected.lower() == actual.lower()
        metrics["sha256_match"] = int(match)
        if match:
            status = Status.PASS
            message = f"dataset {ds.name!r} matches its pinned sha256 {actual}"
        else:
            status = Status.FAIL
            message = (
                f"dataset {ds.name!r} changed: sha256 {actual} ({source}), "
                f"expected {expected.lower()}"
            )
        return self.finding(
            ctx,
            status,
            message,
            metrics=metrics,
            threshold={"expected_sha256": expected.lower()},
            evidence=evidence,
        )

"""DQ005 duplicates: rows that repeat an earlier row of the same dataset.

Why it matters: duplicated rows weigh some examples more than others, inflate test scores
when a copy lands on each side of a split, and are a cheap way to poison a training set by
repetition (MITRE ATLAS AML.T0020, OWASP ML02).

Metrics (over the model's features plus the target; ``non_features`` such as row ids are
left out):

- ``duplicate_rows``: rows equal to an earlier row, i.e. ``frame.duplicated(keep="first")``
  summed; ``n_rows - duplicate_rows`` is the number of distinct rows.
- ``duplicate_fraction``: ``duplicate_rows / n_rows``, compared with ``max_fraction``.
- ``rows_in_duplicate_groups``: rows that have at least one copy, ``duplicated(keep=False)``.
- ``duplicate_groups``: distinct rows that occur more than once.

NaN equals NaN, as in pandas' ``duplicated`` and ``groupby(dropna=False)``.

References: Deepchecks ``DataDuplicates``; pandas ``DataFrame.duplicated``.
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import (
    ATLAS_POISON_TRAINING_DATA,
    OWASP_DATA_POISONING,
    config_of,
    dataset_columns,
    fraction,
    hash_candidates,
    jsonable,
)
from bastion.findings import Finding, Severity, Status

__all__ = ["DuplicateRows"]

_MAX_SAMPLE_GROUPS = 5


class DuplicatesConfig(CheckConfig):
    """Thresholds of DQ005."""

    max_fraction: float = Field(
        default=0.0, ge=0, le=1, description="largest allowed share of rows that repeat a row"
    )


@CHECKS.register
class DuplicateRows(Check):
    """Flag datasets whose share of repeated rows exceeds ``max_fraction``.

    Example::

        finding = DuplicateRows(DuplicatesConfig(max_fraction=0.01)).run(ctx)
        finding.metrics["duplicate_rows"]
    """

    id = "DQ005"
    name = "duplicates"
    title = "Duplicate rows"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.MEDIUM
    tags = (ATLAS_POISON_TRAINING_DATA, OWASP_DATA_POISONING)
    Config: ClassVar[type[CheckConfig]] = DuplicatesConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, DuplicatesConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        columns = dataset_columns(ds)
        frame = ds.frame
        n_rows = len(frame)
        hashes = ds.row_hashes(columns)
        candidates = hash_candidates(hashes)
        sub = frame.loc[candidates, columns]
        # exact confirmation on the few candidate rows; first copies keep their order
        in_groups = sub.duplicated(keep=False)
        repeats = sub.duplicated(keep="first")
        duplicate_rows = int(repeats.sum())
        rows_in_groups = int(in_groups.sum())
        groups = rows_in_groups - duplicate_rows
        share = fraction(duplicate_rows, n_rows)
        status = Status.FAIL if share > config.max_fraction else Status.PASS
        evidence: dict[str, object] = {"columns_compared": len(columns)}
        if duplicate_rows:
            evidence["samples"] = _sample_groups(sub[in_groups])
        message = (
            f"{duplicate_rows} of {n_rows} rows ({share:.2%}) repeat an earlier row "
            f"({groups} distinct rows occur more than once); allowed: {config.max_fraction:.2%}"
        )
        return self.finding(
            ctx,
            status,
            message,
            metrics={
                "n_rows": n_rows,
                "duplicate_rows": duplicate_rows,
                "duplicate_fraction": share,
                "rows_in_duplicate_groups": rows_in_groups,
                "duplicate_groups": groups,
            },
            threshold={"max_fraction": config.max_fraction},
            evidence=evidence,
        )


def _sample_groups(dups: pd.DataFrame) -> list[dict[str, object]]:
    """A few repeated rows with their copy counts (raw rows: reports drop them by default)."""
    counts = dups.groupby(list(dups.columns), dropna=False, sort=False).size()
    top = counts.sort_values(ascending=False, kind="stable").head(_MAX_SAMPLE_GROUPS)
    names = [str(c) for c in dups.columns]
    out: list[dict[str, object]] = []
    for key, count in top.items():
        values = key if isinstance(key, tuple) else (key,)
        out.append(
            {"row": dict(zip(names, map(jsonable, values), strict=True)), "count": int(count)}
        )
    return out

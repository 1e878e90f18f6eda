"""DQ007 leakage: test rows that also appear, verbatim, in the training data.

Why it matters: a test row the model saw in training measures memory, not generalisation, so
every validation and fairness figure computed on the test set looks better than production
will be. Overlap also hints at a broken split or a tampered evaluation set (MITRE ATLAS
AML.T0020 when the overlap is planted; OWASP ML02).

Metrics (over the test set's features and label, with NaN equal to NaN, i.e. NaN-filled;
columns that train lacks are left out of the comparison and listed in the evidence):

- ``leaked_rows``: test rows equal to at least one train row.
- ``leaked_fraction``: ``leaked_rows / test_rows``, compared with ``max_fraction``.
- ``distinct_leaked_rows``: distinct values among the leaked rows.

References: Deepchecks ``TrainTestSamplesMix``; Kapoor & Narayanan, "Leakage and the
reproducibility crisis in machine-learning-based science" (Patterns, 2023).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import (
    ATLAS_POISON_TRAINING_DATA,
    OWASP_DATA_POISONING,
    config_of,
    dataset_columns,
    fraction,
    jsonable,
    row_hashes,
)
from bastion.findings import Finding, Severity, Status

__all__ = ["LeakageConfig", "TrainTestLeakage"]

_MAX_SAMPLES = 5


class LeakageConfig(CheckConfig):
    """Thresholds of DQ007."""

    max_fraction: float = Field(
        default=0.0, ge=0, le=1, description="largest allowed share of test rows found in train"
    )


@CHECKS.register
class TrainTestLeakage(Check):
    """Flag test rows that occur verbatim in the training data.

    Example::

        ctx = CheckContext(train=train, test=test, subject="dataset:train+test")
        TrainTestLeakage().run(ctx).metrics["leaked_fraction"]
    """

    id = "DQ007"
    name = "leakage"
    title = "Train/test leakage"
    category = "data"
    scope = Scope.DATA_PAIR
    severity = Severity.HIGH
    tags = (ATLAS_POISON_TRAINING_DATA, OWASP_DATA_POISONING)
    Config: ClassVar[type[CheckConfig]] = LeakageConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, LeakageConfig)
        train, test = ctx.train, ctx.test
        if train is None or test is None:
            return self.skip(ctx, "needs both a train and a test dataset")
        wanted = dataset_columns(test)
        train_cols = set(train.frame.columns)
        columns = [c for c in wanted if c in train_cols]
        missing = [c for c in wanted if c not in train_cols]
        if not columns:
            return self.skip(ctx, "train and test share no column to compare")
        train_frame, test_frame = train.frame, test.frame
        n_test = len(test_frame)
        train_h, test_h = row_hashes([train_frame, test_frame], columns)
        # candidates by hash, then an exact comparison of only those rows
        candidate_test = np.isin(test_h, train_h)
        leaked_mask = np.zeros(n_test, dtype=bool)
        if candidate_test.any():
            candidate_train = np.isin(train_h, test_h[candidate_test])
            t_sub = train_frame.loc[candidate_train, columns].drop_duplicates()
            s_sub = test_frame.loc[candidate_test, columns]
            both = pd.concat([t_sub, s_sub], ignore_index=True)
            group = both.groupby(columns, dropna=False, sort=False).ngroup().to_numpy()
            in_train = np.isin(group[len(t_sub) :], group[: len(t_sub)])
            leaked_mask[np.flatnonzero(candidate_test)[in_train]] = True
        leaked = int(leaked_mask.sum())
        leaked_rows = test_frame.loc[leaked_mask, columns]
        distinct = len(leaked_rows.drop_duplicates()) if leaked else 0
        share = fraction(leaked, n_test)
        status = Status.FAIL if share > config.max_fraction else Status.PASS
        evidence: dict[str, object] = {
            "columns_compared": len(columns),
            "columns_missing_in_train": missing,
            "train_rows": len(train_frame),
        }
        if leaked:
            evidence["samples"] = [
                {str(c): jsonable(v) for c, v in row.items()}
                for row in leaked_rows.head(_MAX_SAMPLES).to_dict(orient="records")
            ]
        message = (
            f"{leaked} of {n_test} test rows ({share:.2%}) also occur verbatim in train "
            f"({distinct} distinct rows); allowed: {config.max_fraction:.2%}"
        )
        return self.finding(
            ctx,
            status,
            message,
            metrics={
                "test_rows": n_test,
                "leaked_rows": leaked,
                "leaked_fraction": share,
                "distinct_leaked_rows": distinct,
            },
            threshold={"max_fraction": config.max_fraction},
            evidence=evidence,
        )

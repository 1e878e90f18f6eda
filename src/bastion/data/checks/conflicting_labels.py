"""DQ006 conflicting_labels: identical feature rows that carry different labels.

Why it matters: the same input with two labels is either label noise or deliberate label
flipping, a classic poisoning attack (MITRE ATLAS AML.T0020, OWASP ML02). No model can be
right on both rows, and the flips move decision boundaries where the attacker wants.

Metrics (features are the model's input columns; rows with a missing label are ignored):

- ``conflicting_groups``: distinct feature rows seen with two or more different labels.
- ``conflicting_rows``: rows that belong to such a group.
- ``conflicting_fraction``: ``conflicting_rows / n_rows``, compared with ``max_fraction``.

Feature rows compare with NaN equal to NaN (``groupby(dropna=False)``).

References: Deepchecks ``ConflictingLabels``; Biggio et al., "Poisoning attacks against
support vector machines" (ICML 2012) for label flipping.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import (
    ATLAS_POISON_TRAINING_DATA,
    OWASP_DATA_POISONING,
    config_of,
    fraction,
    hash_candidates,
    jsonable,
)
from bastion.findings import Finding, Severity, Status

__all__ = ["ConflictingLabels", "ConflictingLabelsConfig"]

_MAX_SAMPLE_GROUPS = 5


class ConflictingLabelsConfig(CheckConfig):
    """Thresholds of DQ006."""

    max_fraction: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="largest allowed share of rows whose features recur with another label",
    )


@CHECKS.register
class ConflictingLabels(Check):
    """Flag identical feature rows labelled differently.

    Example::

        finding = ConflictingLabels().run(ctx)
        finding.metrics["conflicting_rows"]
    """

    id = "DQ006"
    name = "conflicting_labels"
    title = "Conflicting labels"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.MEDIUM
    tags = (ATLAS_POISON_TRAINING_DATA, OWASP_DATA_POISONING)
    needs_target = True
    Config: ClassVar[type[CheckConfig]] = ConflictingLabelsConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, ConflictingLabelsConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        target = ds.target
        if target is None:
            return self.skip(ctx, f"dataset {ds.name!r} has no target column")
        features = ds.feature_names
        if not features:
            return self.skip(ctx, f"dataset {ds.name!r} has no feature columns")
        frame = ds.frame
        n_rows = len(frame)
        labelled = frame[target].notna().to_numpy()
        hashes = ds.row_hashes(features)
        # a conflict needs two labelled rows with equal features: hash candidates first
        candidates = labelled.copy()
        candidates[labelled] = hash_candidates(hashes[labelled])
        sub = frame.loc[candidates, [*features, target]]
        group = sub.groupby(features, dropna=False, sort=False).ngroup()
        labels_per_group = sub[target].groupby(group.to_numpy()).nunique()
        conflicting = labels_per_group.index[labels_per_group.to_numpy() > 1]
        in_conflict = group.isin(conflicting).to_numpy()
        conflicting_rows = int(in_conflict.sum())
        n_groups = len(conflicting)
        share = fraction(conflicting_rows, n_rows)
        status = Status.FAIL if share > config.max_fraction else Status.PASS
        evidence: dict[str, object] = {"features_compared": len(features)}
        if n_groups:
            rows = sub[in_conflict]
            samples: list[dict[str, object]] = []
            for g in conflicting[:_MAX_SAMPLE_GROUPS]:
                members = rows[group[in_conflict].to_numpy() == g]
                first = members.iloc[0]
                samples.append(
                    {
                        "features": {str(c): jsonable(first[c]) for c in features},
                        "labels": {
                            str(jsonable(k)): int(v)
                            for k, v in members[target].value_counts().items()
                        },
                    }
                )
            evidence["samples"] = samples
        message = (
            f"{conflicting_rows} of {n_rows} rows ({share:.2%}) share their features with a "
            f"row of another label ({n_groups} feature rows); allowed: {config.max_fraction:.2%}"
        )
        return self.finding(
            ctx,
            status,
            message,
            metrics={
                "n_rows": n_rows,
                "conflicting_rows": conflicting_rows,
                "conflicting_groups": n_groups,
                "conflicting_fraction": share,
            },
            threshold={"max_fraction": config.max_fraction},
            evidence=evidence,
        )

"""POI001 label_issues: training rows whose label disagrees with what the data says.

What it detects
    Training rows that look mislabelled: label noise, or label flipping planted by an
    attacker who controls part of the data pipeline (a labelling vendor, a scraped source, a
    compromised feature store). Flipped labels move the decision boundary where the attacker
    wants, and a pipeline that never looks at its labels will not notice.
How
    Confident learning (default): out-of-sample class probabilities from 5-fold
    cross-validation of a standardized logistic regression, per-class thresholds, the
    confident joint, pruning by noise rate, then one refit round without the flagged rows
    (see :mod:`bastion.attacks.poisoning.detect`). ``method: knn`` uses kNN label
    consistency on standardized features instead. The model under test is not queried.
Metrics
    ``n_flagged`` (training rows flagged), ``n_rows`` (labelled training rows),
    ``flagged_fraction = n_flagged / n_rows``, ``estimated_issues`` (confident learning's
    estimate of the number of label errors, from the calibrated confident joint).
Evidence
    ``flagged_by_class`` (count of flagged rows per given label) and, under ``samples``
    (dropped from reports unless the policy allows raw rows), the positions of the most
    suspicious rows in the training file (0-based, header excluded).
Gate
    Fails when ``flagged_fraction > max_flagged_fraction``. Clean real data has some hard
    or ambiguous rows: the default 5% leaves room for them. An ``error`` when the detector
    does not finish within ``max_seconds`` (default 600, checked between folds, and between
    chunks of 2,048 rows for ``knn``).
References
    Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset
    Labels" (JAIR 2021); MITRE ATLAS AML.T0020 (poison training data); OWASP ML02.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from bastion._deadline import wall_deadline
from bastion.attacks.checks._training import labelled_rows, stopped_by_time
from bastion.attacks.poisoning.detect import find_label_issues
from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope, config_as
from bastion.exceptions import TimeBudgetError
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.threats import ATLAS_POISON_TRAINING_DATA, OWASP_DATA_POISONING

__all__ = ["LabelIssuesCheck", "LabelIssuesConfig"]

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class LabelIssuesConfig(CheckConfig):
    """Detector settings and the gate limit."""

    method: Literal["confident_learning", "knn"] = "confident_learning"
    cv: int = Field(default=5, ge=2, le=50, description="cross-validation folds")
    refits: int = Field(default=1, ge=0, le=10, description="re-estimation rounds")
    k: int = Field(default=10, ge=1, description="neighbours for method knn")
    max_flagged_fraction: Fraction = 0.05
    n_samples_reported: int = Field(default=20, ge=0, le=10_000)
    # checked between cross-validation folds (kNN chunks): a detector stopped is an error
    max_seconds: float | None = Field(default=600.0, gt=0)


@CHECKS.register
class LabelIssuesCheck(Check):
    """Fail when too many training rows look mislabelled.

    Example::

        check = LabelIssuesCheck(LabelIssuesConfig(max_flagged_fraction=0.02))
        finding = check.execute(CheckContext(train=train, test=test, model=adapter))
    """

    id = "POI001"
    gate_limits = ("max_flagged_fraction",)
    name = "label_issues"
    title = "Training-label issues (confident learning)"
    category = "poisoning"
    scope = Scope.MODEL
    severity = Severity.MEDIUM
    tags = (ATLAS_POISON_TRAINING_DATA, OWASP_DATA_POISONING)
    requires: ClassVar[frozenset[Capability]] = frozenset()  # reads data, never the model
    enabled_by_default = False
    Config = LabelIssuesConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, LabelIssuesConfig)
        rows = labelled_rows(ctx.train)
        if isinstance(rows, str):
            return self.skip(ctx, rows)
        train, positions, y = rows
        n = len(y)
        folds = min(cfg.cv, n)
        if cfg.method == "knn" and n <= cfg.k:
            return self.skip(ctx, f"{n} labelled rows; method knn needs more than k={cfg.k}")
        seed = int(ctx.rng(self.id).integers(2**31 - 1))
        try:
            with wall_deadline(cfg.max_seconds):
                issues = find_label_issues(
                    train.features.iloc[positions],
                    y,
                    method=cfg.method,
                    cv=folds,
                    seed=seed,
                    refits=cfg.refits,
                    k=cfg.k,
                )
        except TimeBudgetError as err:
            return stopped_by_time(self, ctx, err, cfg.max_seconds)
        share = issues.n_flagged / n
        metrics: dict[str, float | int | None] = {
            "n_flagged": issues.n_flagged,
            "n_rows": n,
            "flagged_fraction": share,
            "estimated_issues": issues.details.get("estimated_issues"),
        }
        unjudged = int(issues.details.get("unjudged_rows") or 0)
        if cfg.method == "confident_learning":
            # rows no model scored for their own label (a class too small for the folds, or
            # a fold whose training rows held one class): none of them can be flagged
            metrics["unjudged_rows"] = unjudged
        evidence: dict[str, object] = {
            "method": cfg.method,
            "flagged_by_class": {str(k): v for k, v in issues.counts_by_class(y).items()},
        }
        unscored: list[object] = list(issues.details.get("unscored_classes") or [])
        if cfg.method == "confident_learning":
            evidence["cv_folds"] = folds
            evidence["rounds"] = issues.details.get("rounds")
            if unscored:
                evidence["unscored_classes"] = unscored
        if issues.n_flagged and cfg.n_samples_reported:
            # row positions are not raw data, but they point at rows: samples only
            top = positions[issues.flagged[: cfg.n_samples_reported]]
            evidence["samples"] = {"row_positions": [int(i) for i in top]}
        how = "confident learning" if cfg.method == "confident_learning" else "kNN consistency"
        message = (
            f"{issues.n_flagged} of {n} training rows ({share:.2%}) look mislabelled by {how}; "
            f"allowed: {cfg.max_flagged_fraction:.2%}."
        )
        if unscored:
            # their rows are still judged against the other classes; no row can be judged
            # as belonging to them
            message += (
                f" Class(es) {', '.join(map(str, unscored[:5]))} too small for the "
                f"{folds}-fold cross-validation: no model saw them while scoring their rows, "
                "so no row is estimated to belong to them."
            )
        if unjudged:
            # from a review: a binary minority of 2 rows, both in one fold, left that fold's
            # 114 majority rows unscored, and the pass read as every row judged
            message += (
                f" {unjudged} of {n} rows could not be judged (no model of the "
                f"{folds}-fold cross-validation scored them for their own label): none of them "
                "can be flagged."
            )
        if share > cfg.max_flagged_fraction:
            status = Status.FAIL
            message += " Review the flagged rows (label noise or label flipping)."
        elif unjudged:
            status = Status.WARN
            message += " Not shown for the rows not judged: give the small classes more rows."
        else:
            status = Status.PASS
        return self.finding(
            ctx,
            status,
            message,
            metrics=metrics,
            threshold={"max_flagged_fraction": cfg.max_flagged_fraction},
            evidence=evidence,
        )

"""EXT001 extraction: how faithfully an attacker copies the model within a query budget.

What it detects
    A model that an attacker can clone from its answers: a surrogate trained on ``budget``
    queries agrees with the model on more than ``max_fidelity`` of the test rows.
Why it matters
    A faithful copy steals the model's value, escapes the endpoint's quotas and monitoring,
    and hands the attacker a white-box stand-in for crafting transferable adversarial
    examples and for membership inference. The fidelity-vs-budget curve says how many
    queries a client may be allowed before the copy is good enough to matter.
References
    Tramèr et al. 2016, "Stealing Machine Learning Models via Prediction APIs"; Orekondy et
    al. 2019, "Knockoff Nets"; Jagielski et al. 2020 (fidelity vs accuracy). MITRE ATLAS
    AML.T0024.002; OWASP ML05 (model theft).
Metrics
    ``fidelity`` = share of test rows where surrogate(x) == model(x), for the surrogate
    trained on the first ``budget`` answers; ``surrogate_accuracy`` = share where
    surrogate(x) == y (with a target); ``queries_used`` = rows the judged attack sent (never
    above ``budget``; where two copies run, each sends its own, see below).
    ``evidence["fidelity_curve"]`` lists (budget, queries, fidelity,
    surrogate_accuracy) at each ``budget_curve`` point; the curve reuses the same queries.

Threat model and defaults
    ``attacker_data: train`` (default) lets the training rows stand in for natural data an
    attacker holds (public records of the same population): the strongest realistic case,
    and the one that matters, because natural-data queries copy tabular models far better
    than synthetic ones. Without train data, the attacker holds a seeded half of the test
    rows and fidelity is measured on the other half. ``none`` sends Gaussian queries around
    the training data's per-feature mean and standard deviation (summary statistics a data
    sheet may publish). The fidelity is the worst case over a logistic and a
    gradient-boosting surrogate (``auto``: the more faithful one at each budget), and
    probabilities are used when the model returns them. Where the model's labels are not
    always the most probable class (a tuned decision threshold, Platt scaling), an attacker
    who copies the labels may do better: both copies run, each an attacker with ``budget``
    queries of its own (the endpoint answers up to twice the budget), the first at most half
    of ``max_seconds`` and the second what it left, and the more faithful is judged
    (``evidence["copies"]``, each copy's fidelity, queries and waits); a pass needs both run
    to their budget, else it fails (report only: a warn).
    The run's shared predictions on the test rows show such labels
    (``evidence["labels_not_argmax"]``, the share of rows; a model that declares its
    classes); where they cannot be seen (a rate cap, a missing value in the test set, no
    target: ``labels_not_argmax`` null), both copies run all the same.

    ``max_fidelity`` defaults to 0.95: a surrogate that agrees with the model on more than
    95% of rows after 500 queries is a usable copy. Most tabular models fail this at 500
    natural queries (a logistic model is copied at 0.96-1.0, a gradient-boosting one at
    0.97-1.0), so the useful knob is ``budget``: set it to the quota one client gets, and
    the check says whether that quota is enough to steal the model. Set ``max_fidelity``
    to null for a report-only run. A run stopped by ``max_seconds`` before the budget and
    still under the limit fails: the limit was not shown to hold (report only: a warn; after
    Ctrl-C the runner makes it an error).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from bastion.attacks.budget import Budget
from bastion.attacks.checks._training import not_shown_status, train_lacks
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.extraction.extract import (
    ExtractionAttack,
    ExtractionConfig,
    ExtractionResult,
    Strategy,
    SurrogateChoice,
)
from bastion.attacks.extraction.queries import FeatureStats, RateLimiter
from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope, config_as
from bastion.data.schema import FeatureSchema
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.threats import ATLAS_MODEL_EXTRACTION, OWASP_MODEL_THEFT

__all__ = ["Extraction", "ExtractionCheckConfig"]

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ExtractionCheckConfig(CheckConfig):
    """Gate threshold and attack settings (modest budgets: the check runs in seconds).

    ``max_fidelity``: fail when the fidelity at ``budget`` queries exceeds it (None: report
    only). ``attacker_data``: ``train`` or ``none`` (see the module docstring). The other
    fields are :class:`~bastion.attacks.extraction.extract.ExtractionConfig`'s.
    """

    max_fidelity: Fraction | None = 0.95
    budget: int = Field(default=500, ge=1)
    # each >= 1, checked with the policy (a 0 was an error finding at run time, exit 1)
    budget_curve: tuple[Annotated[int, Field(ge=1)], ...] = (50, 100, 200, 500)
    strategy: Strategy | None = None
    surrogate: SurrogateChoice = "auto"
    soft_labels: bool = True
    attacker_data: Literal["train", "none"] = "train"
    batch_size: int = Field(default=50, ge=1)
    requests_per_second: float | None = Field(default=None, gt=0)
    queries_per_second: float | None = Field(default=None, gt=0)
    max_seconds: float | None = Field(default=60.0, gt=0)


@CHECKS.register
class Extraction(Check):
    """Fail when a surrogate trained on ``budget`` answers agrees with the model too well.

    Example::

        check = Extraction(ExtractionCheckConfig(budget=1000, max_fidelity=0.9))
        finding = check.execute(ctx)
        finding.metrics["fidelity"], finding.evidence["fidelity_curve"]
    """

    id = "EXT001"
    gate_limits = ("max_fidelity",)
    name = "extraction"
    title = "Model extraction (fidelity at a query budget)"
    category = "extraction"
    scope = Scope.MODEL
    severity = Severity.HIGH
    tags = (ATLAS_MODEL_EXTRACTION, OWASP_MODEL_THEFT)
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    enabled_by_default = False
    Config = ExtractionCheckConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, ExtractionCheckConfig)
        if ctx.model is None or ctx.test is None:
            return self.skip(ctx, "Extraction needs a model and a test dataset.")
        test, train = ctx.test, ctx.train
        names = test.model_inputs(ctx.model)
        features = test.features[names]
        non_numeric = [c for c in names if not pd.api.types.is_numeric_dtype(features[c].dtype)]
        if non_numeric:
            return self.skip(
                ctx,
                f"Extraction sends numeric query rows; feature(s) {non_numeric[:5]} are not "
                "numeric (encode them in the model's pipeline input first).",
            )
        lacking = None if train is None else train_lacks(train, names)
        if lacking:
            return self.skip(ctx, lacking)

        rng = ctx.rng(self.id)
        seed = int(rng.integers(2**31 - 1))
        X_test = features.to_numpy(dtype=np.float64)
        finite_test = np.isfinite(X_test).all(axis=1)
        eval_mask = finite_test.copy()
        if train is not None:
            reference, source = train.features[names], "train"
        else:
            # no train data (e.g. `bastion attack extraction` on one file): the attacker holds
            # a seeded half of the test rows and fidelity is measured on the other half
            usable = np.flatnonzero(finite_test)
            if len(usable) < 4:
                return self.skip(ctx, "Too few complete test rows to split for extraction.")
            held = rng.permutation(usable)[: len(usable) // 2]
            eval_mask[held] = False
            reference, source = features.iloc[held], "half of the test rows"
        if not eval_mask.any():
            return self.skip(ctx, "Every test row has a missing value; fidelity needs rows.")
        X_ref = reference.to_numpy(dtype=np.float64)
        keep_ref = np.isfinite(X_ref).all(axis=1)
        if not keep_ref.any():
            return self.skip(ctx, f"Every row of the {source} has a missing value.")
        constraints = FeatureConstraints.from_schema(
            ctx.schema or FeatureSchema(), names, reference
        )
        # from the complete rows: one infinite value (a ratio over zero) made the statistics
        # themselves infinite, and the check an error, where the row is skipped as announced
        stats = FeatureStats.from_data(X_ref[keep_ref])
        pool = X_ref[keep_ref] if cfg.attacker_data == "train" else None

        eval_labels, victim_labels = None, None
        if test.target is not None:
            eval_labels = test.labels[eval_mask]
        # the victim's labels of the evaluation rows: shared with the other checks when the
        # run has them already (no extra queries); else the attack asks for those rows only,
        # through its rate limiter (the shared predictions would send every test row, those
        # with missing values included, at full speed)
        capped = cfg.requests_per_second is not None or cfg.queries_per_second is not None
        not_argmax: float | None = None
        if test.target is not None and (
            ctx.has_predictions() or (finite_test.all() and not capped)
        ):
            shared = ctx.predictions()
            victim_labels = shared.y_pred[eval_mask]
            declared = ctx.model.classes_
            if shared.proba is not None and declared is not None:
                # the probability columns in the model's own order (the shared predictions'
                # classes are the labels seen when the model declares none)
                top = np.asarray(declared)[np.argmax(shared.proba[eval_mask], axis=1)]
                not_argmax = float(np.mean(top != victim_labels))

        victim = ctx.model
        # one cap for both copies: each copy with a fresh limiter sent its first request
        # right after the other's last
        limiter = RateLimiter(cfg.requests_per_second, cfg.queries_per_second)

        def steal(soft_labels: bool, seconds: float | None) -> ExtractionResult:
            attack = ExtractionAttack(
                ExtractionConfig(
                    strategy=cfg.strategy,
                    surrogate=cfg.surrogate,
                    soft_labels=soft_labels,
                    budget=cfg.budget,
                    budget_curve=cfg.budget_curve,
                    batch_size=cfg.batch_size,
                    requests_per_second=cfg.requests_per_second,
                    queries_per_second=cfg.queries_per_second,
                )
            )
            return attack.run(
                victim,
                attacker_data=pool,
                constraints=constraints,
                eval_data=X_test[eval_mask],
                eval_labels=eval_labels,
                budget=Budget(max_seconds=seconds),
                seed=seed,
                feature_stats=stats,
                victim_eval_labels=victim_labels,
                rate_limiter=limiter,
            )

        # labels that are not the most probable class (a tuned threshold): a copy of the
        # probabilities decides otherwise than the model on some rows, so an attacker who
        # copies the labels may do better (a review saw 0.86 against 0.97); where it does not
        # (Platt scaling's 1%), the probabilities stay the stronger copy. Both run, each
        # with the budget's queries and half the time, and the more faithful is judged. Where
        # not_argmax was not measured (a rate cap, a missing value in the test set, no
        # target), a threshold cannot be ruled out and both run too (a review saw a tuned
        # threshold pass at 0.85 where its labels are copied at 0.975)
        unknown = (
            not_argmax is None
            and ctx.model.classes_ is not None
            and ctx.model.has(Capability.PREDICT_PROBA)
        )
        both = bool(cfg.soft_labels and (not_argmax or unknown))
        share = cfg.max_seconds / 2 if both and cfg.max_seconds is not None else cfg.max_seconds
        started = time.monotonic()
        result = steal(cfg.soft_labels, share)
        copies: dict[str, Any] = {}
        unproven: str | None = None  # a copy that did not run to its budget: why
        unproven_stop: str | None = None  # and what stopped it
        if both and result.soft_labels:
            copies["probabilities"] = _copy_summary(result)
            if result.stopped == "interrupted":
                # Ctrl-C stops the check, not one copy of it
                copies["labels"] = "not run: interrupted"
                unproven = "the copy of the labels did not run (interrupted)"
                unproven_stop = "interrupted"
            else:
                # what the first copy left of max_seconds: at least its half
                left = (
                    None
                    if cfg.max_seconds is None
                    else max(cfg.max_seconds - (time.monotonic() - started), share or 0.0)
                )
                labels = steal(False, left)
                copies["labels"] = _copy_summary(labels)
                judged, other = (
                    (labels, result)
                    if (labels.fidelity or -1.0) > (result.fidelity or -1.0)
                    else (result, labels)
                )
                if _short(other):
                    name = "labels" if other is labels else "probabilities"
                    unproven = f"the copy of the {name} stopped ({other.stopped}) short"
                    unproven_stop = other.stopped
                result = judged
        status, verdict = _judge(result, cfg.max_fidelity)
        if unproven and status is Status.PASS:
            # the other attacker was not run to its budget: the limit is not shown to hold
            status = not_shown_status(cfg.max_fidelity is not None, unproven_stop)
            verdict += f" Not shown for every attacker: {unproven} of the budget."
        return self.finding(
            ctx,
            status,
            _describe(result, result.eval_rows or int(eval_mask.sum())) + " " + verdict,
            # elapsed time is not a metric: findings must repeat exactly under a seed
            metrics={k: v for k, v in result.metrics().items() if k != "elapsed_s"},
            threshold={"max_fidelity": cfg.max_fidelity, "budget": cfg.budget},
            evidence={
                **_evidence(result, cfg, constraints, source, finite_test, eval_mask, keep_ref),
                "labels_not_argmax": not_argmax,
                **({"copies": copies} if copies else {}),
            },
        )


def _trained_on(result: ExtractionResult) -> int:
    """The answers the judged surrogate trained on: the last curve point's (short of the
    budget when the queries stopped early, or when the surrogates' training did)."""
    return result.curve[-1].queries if result.curve else result.queries_used


def _short(result: ExtractionResult) -> bool:
    """Whether ``result``'s surrogate trained on fewer queries than its budget (or none), or
    the time budget left surrogate families untried at the last point."""
    if result.fidelity is None or result.families_untried:
        return True
    return _trained_on(result) < result.budget


def _copy_summary(result: ExtractionResult) -> dict[str, Any]:
    """One copy's figures for ``evidence["copies"]``: each copy sends its own queries."""
    return {
        "fidelity": result.fidelity,
        "queries_used": result.queries_used,
        "stopped": result.stopped,
        "rate_wait_s": round(result.rate_wait_s, 3),
    }


def _judge(result: ExtractionResult, limit: float | None) -> tuple[Status, str]:
    fidelity = result.fidelity
    if fidelity is None:
        # nothing measured: a limit set and never judged fails closed (a review saw the whole
        # time budget of a rate-capped endpoint go to labelling the evaluation rows, and
        # the required check pass as a warn)
        if limit is None:
            return Status.WARN, "Nothing judged (report only: no max_fidelity)."
        # after Ctrl-C, not a failure: the runner makes the warning an error (nothing was
        # found, and a fail claims a finding)
        status = not_shown_status(True, result.stopped)
        return status, f"max_fidelity {limit:g} not judged: no fidelity was measured."
    if limit is not None and fidelity > limit:
        return Status.FAIL, f"Fidelity {fidelity:.4f} exceeds max_fidelity {limit:g}."
    trained_on = _trained_on(result)
    short = trained_on < result.budget
    if short or result.families_untried:
        reach = (
            f"Stopped ({result.stopped}) with a surrogate trained on {trained_on} of "
            f"{result.budget} queries: the fidelity at the full budget was not measured"
            if short
            else f"Stopped ({result.stopped}) before the surrogate families "
            f"{list(result.families_untried)} were trained on the {result.budget} answers: "
            "the most faithful copy was not measured"
        )
        if limit is None:
            return Status.WARN, reach + " (report only: no max_fidelity)."
        status = not_shown_status(True, result.stopped)
        return status, reach + f"; so far within max_fidelity {limit:g}, not shown to hold."
    if limit is None:
        return Status.PASS, "Report only (no max_fidelity set)."
    return Status.PASS, f"Within max_fidelity {limit:g}."


def _describe(result: ExtractionResult, n_eval: int) -> str:
    accuracy = (
        ""
        if result.surrogate_accuracy is None
        else f" (surrogate accuracy {result.surrogate_accuracy:.4f}"
        + (
            f", model accuracy {result.victim_accuracy:.4f})"
            if result.victim_accuracy is not None
            else ")"
        )
    )
    labels = "probabilities" if result.soft_labels else "labels"
    if result.fidelity is None:
        # the queries may all have been answered, and the surrogate's training cut (Ctrl-C
        # during the fit read "no attack query was answered" beside queries_used = budget)
        why = (
            f"{result.queries_used} attack queries were answered, none trained on"
            if result.queries_used
            else "no attack query was answered"
        )
        return (
            f"Extraction with {result.strategy} queries trained no surrogate: {why} "
            f"(stopped: {result.stopped}; {result.eval_queries} queries labelled the "
            "evaluation rows)."
        )
    trained_on = result.curve[-1].queries if result.curve else result.queries_used
    return (
        f"A {result.surrogate} surrogate trained on the model's {labels} for "
        f"{trained_on} {result.strategy} queries agrees with the model on "
        f"{result.fidelity:.2%} of {n_eval} test rows{accuracy}."
    )


def _evidence(
    result: ExtractionResult,
    cfg: ExtractionCheckConfig,
    constraints: FeatureConstraints,
    source: str,
    finite_test: np.ndarray,
    eval_mask: np.ndarray,
    keep_ref: np.ndarray,
) -> dict[str, Any]:
    holds_data = cfg.attacker_data == "train"
    return {
        "fidelity_curve": [p.to_dict() for p in result.curve],
        "strategy": result.strategy,
        "surrogate": result.surrogate,
        "surrogate_scores": result.surrogate_scores,
        "soft_labels": result.soft_labels,
        "attacker_data": cfg.attacker_data,
        # where the attacker's rows (or, with "none", its summary statistics) came from
        "attacker_data_source": source,
        "attacker_rows": int(keep_ref.sum()) if holds_data else 0,
        "answer_shares": result.answer_shares,
        # the rows fidelity was measured on: those labelled before a stop
        "eval_rows": result.eval_rows if result.eval_rows is not None else int(eval_mask.sum()),
        "rows_skipped_missing_values": {
            "test": int((~finite_test).sum()),
            "attacker": int((~keep_ref).sum()) if holds_data else 0,
        },
        "stopped": result.stopped,
        **(
            {"rate_wait_s": round(result.rate_wait_s, 3)}
            if cfg.requests_per_second or cfg.queries_per_second
            else {}
        ),
        "constraints": constraints.describe(),
    }

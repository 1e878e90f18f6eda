"""PRV001 membership: can an attacker tell the model's training records from other records?

What it detects
    A model that leaks who was in its training set: it answers its own training records
    (members) differently from other records of the same distribution (non-members), so
    anyone who can query it learns, for a hospital's diagnostic model, who was a patient.
How
    Members are a random sample of the training rows, non-members an equal number of test
    rows (at most ``n_points`` of each). The attack is LiRA's offline variant
    (:class:`~bastion.attacks.privacy.membership.ShadowMembership`) with ``n_shadow`` shadow
    models when the model is a clonable scikit-learn estimator (``attack: auto``), and the
    confidence threshold attack otherwise; with shadows, the threshold attack runs too and
    the gate judges the stronger of the two (the higher AUC): a weak attack must not pass a
    leaky model.
Shadow data, and why it does not leak
    The shadows train on random halves of a pool made of the evaluated records plus up to
    ``max_aux_rows`` of the other training and test rows, every pooled row joining exactly
    half of the shadows; each evaluated record is scored only against the shadows that did
    not train on it (OUT models). The pool assignment ignores membership, so the shadows
    carry no information about which records the target saw; they only learn how confident
    a model of this recipe is on each record when the record is not in its data.
Metrics
    ``auc``, ``tpr_at_1pct_fpr``, ``tpr_at_0.1pct_fpr`` (None when there are too few
    non-members to measure it: the smallest nonzero FPR is 1 / n_nonmembers), ``advantage``
    (max TPR - FPR), ``n_members``, ``n_nonmembers``, ``n_shadow``. The ROC
    follows ``sklearn.metrics.roc_curve`` (tied scores make one step) and TPR is read at the
    largest FPR <= the target; see :func:`~bastion.attacks.results.low_fpr_metrics`.
Gate
    Fails when ``auc > max_auc`` or, if set, ``tpr_at_1pct_fpr > max_tpr_at_1pct_fpr``; a TPR
    limit that the data cannot measure fails closed. An attack whose AUC is below
    ``1 - max_auc`` (members scoring lower than non-members: reversed, the signal is above the
    limit) and more than 3 standard errors of a chance AUC below 0.5 is a warn: the split may
    differ between train and test, or the model leaks the other way round. An attack cut by
    the time budget (fewer shadows: a weaker attack) within the limits fails: they were not
    shown to hold (after Ctrl-C the runner makes the finding an error). One whose query
    budget scored a subset of the records is a warn.
References
    MITRE ATLAS AML.T0024.000 (infer training data membership); OWASP ML04. Carlini et al.,
    "Membership Inference Attacks From First Principles" (IEEE S&P 2022); Shokri et al.,
    "Membership Inference Attacks Against Machine Learning Models" (IEEE S&P 2017).
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from bastion._user_code import TrainFnReference
from bastion.attacks.budget import Budget
from bastion.attacks.privacy.membership import (
    MembershipResult,
    ShadowMembership,
    ShadowMembershipConfig,
    ThresholdMembership,
    balanced_membership_rows,
    check_records,
    stack_rows,
)
from bastion.attacks.privacy.shadow import ShadowScoringError, TrainedBy, shadow_recipe
from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope, config_as
from bastion.exceptions import CapabilityError, ConfigError
from bastion.executor import check_executor_spec
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability, ModelAdapter, input_names
from bastion.threats import ATLAS_MEMBERSHIP_INFERENCE, OWASP_MEMBERSHIP_INFERENCE

if TYPE_CHECKING:
    from bastion.data.dataset import Dataset

__all__ = ["MembershipCheck", "MembershipCheckConfig"]

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class MembershipCheckConfig(CheckConfig):
    """Gate limits and the attack's (demo-sized) budget."""

    attack: Literal["auto", "shadow", "threshold"] = "auto"
    n_shadow: int = Field(default=8, ge=2, le=1024)
    max_auc: float = Field(default=0.6, ge=0.5, le=1.0)
    max_tpr_at_1pct_fpr: Fraction | None = None
    n_points: int = Field(default=1000, ge=2)
    max_aux_rows: int = Field(default=10_000, ge=0)
    executor: str = "local"
    max_seconds: float | None = Field(default=300.0, gt=0)

    @field_validator("executor")
    @classmethod
    def _executor_spec(cls, value: str) -> str:
        """Its form, when the policy is read (a typo was an error once the check ran, after
        every other check, or never, where the target took the threshold attack)."""
        try:
            return check_executor_spec(value)
        except ConfigError as err:
            raise ValueError(str(err)) from None

    train_fn: TrainFnReference | None = Field(
        default=None,
        description="'package.module:function' taking (X, y) and returning a fitted model "
        "with predict_proba and classes_: trains the shadow models like the target when it "
        "is not a clonable scikit-learn estimator (ONNX, torch, an endpoint)",
    )


@CHECKS.register
class MembershipCheck(Check):
    """Fail when membership inference beats the policy's AUC (or low-FPR TPR) limit.

    Example::

        check = MembershipCheck(MembershipCheckConfig(max_auc=0.6, n_shadow=16))
        finding = check.execute(CheckContext(train=train, test=test, model=adapter))
    """

    id = "PRV001"
    gate_limits = ("max_auc", "max_tpr_at_1pct_fpr")
    user_code = ("train_fn",)
    name = "membership"
    title = "Membership inference"
    category = "privacy"
    scope = Scope.MODEL
    severity = Severity.HIGH
    tags = (ATLAS_MEMBERSHIP_INFERENCE, OWASP_MEMBERSHIP_INFERENCE)
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT_PROBA})
    needs_target = True
    enabled_by_default = False
    Config = MembershipCheckConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, MembershipCheckConfig)
        model = ctx.model
        if model is None or ctx.test is None:
            return self.skip(ctx, "needs a model and a test dataset (the non-members)")
        if ctx.train is None:
            return self.skip(ctx, "needs the training dataset (the members): set data.train")
        if ctx.train.target is None or ctx.test.target is None:
            return self.skip(ctx, "needs the target column in train and test (set data.target)")
        if not model.has(Capability.PREDICT_PROBA):
            return self.skip(ctx, f"model {model.info.name!r} does not provide predict_proba")
        attack, no_shadow = _choose_attack(cfg, model)
        if attack is None:
            return self.skip(
                ctx,
                f"attack 'shadow' cannot run: {no_shadow}. Name the target's training recipe "
                "(train_fn 'package.module:function'; bastion attack membership --train-fn), "
                "or use attack: threshold",
            )

        rng = ctx.rng(self.id)
        # labelled rows only (a row without a label is no record to judge), and no test row
        # that is a training row: it is a member, and counted a non-member it pulls the AUC
        # down (a review saw a leaky forest pass with 80% of its test rows copied from train)
        train_rows, test_rows, copies = _candidate_rows(ctx.train, ctx.test, model)
        if len(test_rows) == 0:
            return self.skip(
                ctx,
                f"no non-member to compare with: every labelled test row ({copies}) is also a "
                "training row; give test rows the model never saw",
            )
        train_X = ctx.train.features.iloc[train_rows]
        test_X = ctx.test.features.iloc[test_rows]
        train_y, test_y = ctx.train.labels[train_rows], ctx.test.labels[test_rows]
        members, nonmembers = balanced_membership_rows(len(train_y), len(test_y), cfg.n_points, rng)
        X = stack_rows([train_X.iloc[members], test_X.iloc[nonmembers]])
        y = np.concatenate([train_y[members], test_y[nonmembers]])
        is_member = np.repeat([True, False], [len(members), len(nonmembers)])
        seed = int(rng.integers(2**31 - 1))
        # the target answers once for both attacks (the shadow attack asked again for the
        # same rows), and max_seconds covers the check: that answer's time is taken from
        # the shadows' (they had all of it, after it, and a check passed past its budget)
        check_records(model, X, y, is_member)  # refusals first: nothing asked in vain
        started = time.monotonic()
        proba = np.asarray(model.predict_proba(X))
        results: dict[str, MembershipResult] = {
            "threshold": ThresholdMembership().run(
                model, X, y, is_member, seed=seed, target_proba=proba
            )
        }
        left = None if cfg.max_seconds is None else cfg.max_seconds - (time.monotonic() - started)
        budget = Budget(max_seconds=None if left is None else max(left, 1e-3))
        if attack == "shadow":
            aux_X, aux_y = _aux_rows(
                (train_X, train_y), (test_X, test_y), members, nonmembers, cfg.max_aux_rows, rng
            )
            try:
                results["shadow"] = ShadowMembership(
                    ShadowMembershipConfig(n_shadow=cfg.n_shadow)
                ).run(
                    model,
                    X,
                    y,
                    is_member,
                    X_aux=aux_X,
                    y_aux=aux_y,
                    estimator=_user_recipe(cfg),
                    executor=cfg.executor,
                    budget=budget,
                    seed=seed,
                    target_proba=proba,
                )
            except ShadowScoringError as err:
                if cfg.attack != "auto":
                    raise
                # auto: the threshold attack is judged, and the finding says why
                no_shadow = str(err).rstrip(".")
        # the gate judges the stronger attack: a weak one must not vouch for the model
        judged = max(results, key=lambda k: float(results[k].metrics["auc"] or 0.0))
        return self._finding(ctx, cfg, results, judged, copies, no_shadow)

    def _finding(
        self,
        ctx: CheckContext,
        cfg: MembershipCheckConfig,
        results: dict[str, MembershipResult],
        judged: str,
        copies: int = 0,
        no_shadow: str | None = None,
    ) -> Finding:
        result = results[judged]
        # each figure is the worst case over the attacks that ran: the shadow attack may have
        # the higher TPR at low FPR while the threshold attack has the higher AUC
        m = dict(result.metrics)
        source: dict[str, str] = {}  # the attack each measured figure comes from
        for key in ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "advantage"):
            values = [
                (float(v), k) for k, r in results.items() if (v := r.metrics[key]) is not None
            ]
            # a tie goes to the judged attack (by name, "threshold" won it; a review)
            best = max(values, key=lambda vk: (vk[0], vk[1] == judged), default=None)
            m[key] = None if best is None else best[0]
            if best is not None:
                source[key] = best[1]
        metrics: dict[str, float | int | None] = {
            "auc": m["auc"],
            "tpr_at_1pct_fpr": m["tpr_at_1pct_fpr"],
            "tpr_at_0.1pct_fpr": m["tpr_at_0.1pct_fpr"],
            "advantage": m["advantage"],
            "n_members": m["n_members"],
            "n_nonmembers": m["n_nonmembers"],
            # the figures are a worst case over the attacks: the shadows trained, whichever
            # attack had the higher AUC (it read 0 when the threshold attack did)
            "n_shadow": max(r.n_shadow for r in results.values()),
        }
        threshold: dict[str, float | None] = {"max_auc": cfg.max_auc}
        violations: list[str] = []
        if m["auc"] is None:
            # no AUC (one side of the split empty) judged nothing: read as 0 it passed
            violations.append(f"no AUC was measured, so max_auc {cfg.max_auc:g} is not judged")
        auc = float(m["auc"] or 0.0)
        if auc > cfg.max_auc:
            violations.append(f"AUC {auc:.3f} > max_auc {cfg.max_auc:g}")
        tpr = m["tpr_at_1pct_fpr"]
        n_non = int(m["n_nonmembers"] or 0)
        if cfg.max_tpr_at_1pct_fpr is not None:
            threshold["max_tpr_at_1pct_fpr"] = cfg.max_tpr_at_1pct_fpr
            if tpr is None:
                violations.append(
                    f"TPR at 1% FPR cannot be measured with {n_non} non-members (needs >= 100)"
                    " and max_tpr_at_1pct_fpr is set (fail closed)"
                )
            elif tpr > cfg.max_tpr_at_1pct_fpr:
                violations.append(
                    f"TPR at 1% FPR {tpr:.3f} > max_tpr_at_1pct_fpr {cfg.max_tpr_at_1pct_fpr:g}"
                )
        names = {
            "shadow": f"LiRA offline with {results['shadow'].n_shadow} shadow models"
            if "shadow" in results
            else "",
            "threshold": "confidence threshold",
        }
        # figures from more than one attack say which gave each (from a review: a TPR of the
        # threshold attack's read as LiRA's, under LiRA's name)
        mixed = len(set(source.values())) > 1
        what = (
            "worst case of " + " and ".join(names[k] for k in results) if mixed else names[judged]
        )

        def by(key: str) -> str:
            if not mixed or key not in source:  # unmeasured: no attack to name
                return ""
            return f" ({'LiRA' if source[key] == 'shadow' else 'threshold'})"

        summary = (
            f"Membership inference ({what}) on {m['n_members']} members and {n_non} "
            f"non-members: AUC {auc:.3f}{by('auc')}, advantage "
            f"{float(m['advantage'] or 0):.3f}{by('advantage')}, "
            f"TPR at 1% FPR {_pct(tpr, n_non, 100)}{by('tpr_at_1pct_fpr')}, at 0.1% FPR "
            f"{_pct(m['tpr_at_0.1pct_fpr'], n_non, 1000)}{by('tpr_at_0.1pct_fpr')}."
        )
        if result.stopped:
            summary += f" Stopped early ({result.stopped}): {result.n_shadow} shadow models."
        if no_shadow is not None:
            # attack auto fell back to the weaker attack: said, not silent
            summary += f" The shadow attack did not run: {no_shadow}."
        # the attacks score members higher; far below 0.5 the signal is there, reversed
        aucs = [(float(a), k) for k, r in results.items() if (a := r.metrics["auc"]) is not None]
        lowest, lowest_by = min(aucs) if aucs else (0.5, "")
        # ... and far enough below 0.5 not to be chance: 3 standard errors of the AUC of
        # scores that say nothing (Mann-Whitney), which on 50 + 50 points is 0.17
        n_mem = int(m["n_members"] or 0)
        chance = 3 * np.sqrt((n_mem + n_non + 1) / (12 * max(n_mem * n_non, 1)))
        inverted = lowest < 1.0 - cfg.max_auc and 0.5 - lowest > chance
        cut = any(r.stopped == "time budget" for r in results.values())
        if violations:
            status, message = Status.FAIL, "Leaks membership: " + "; ".join(violations) + ". "
        elif cut:
            # fewer shadow models than asked: a weaker attack, within the limits, did not show
            # them to hold, and a limit not shown to hold fails closed (as ADV001, EXT001);
            # after Ctrl-C the runner makes the warning below an error
            status = Status.FAIL
            message = (
                "Within limits so far, but an attack was cut short (time budget): the limits "
                "were not shown to hold; raise max_seconds. "
            )
            if inverted:
                message += f"Members also score lower than non-members (AUC {lowest:.3f}). "
        elif inverted:
            status = Status.WARN
            message = (
                f"Members score lower than non-members (AUC {lowest:.3f}, {lowest_by} "
                f"attack): an attacker who reverses the score reaches AUC {1 - lowest:.3f} > "
                f"max_auc {cfg.max_auc:g}. Either the test rows differ from the training rows "
                "(then no attack here measures membership), or the model leaks it the other "
                "way round: look at how the data was split. "
            )
        elif any(r.stopped == "interrupted" for r in results.values()):
            status, message = Status.WARN, "Within limits, but an attack was interrupted. "
        elif any(r.stopped for r in results.values()):
            # a query budget scored a stratified subset: the attack as configured, on fewer
            # records (coarser low-FPR figures)
            status, message = Status.WARN, "Within limits, on the records the budget paid for. "
        else:
            status, message = Status.PASS, "Within limits. "
        evidence: dict[str, Any] = {
            "judged_attack": judged,
            "inverted_auc": lowest if inverted else None,
            "members_from": "train",
            "nonmembers_from": "test",
            # test rows with a training row's feature values: members, not non-members
            "test_rows_in_train_left_out": copies,
            "shadow_not_run": no_shadow,
            "attacks": {
                name: {
                    "auc": r.metrics["auc"],
                    "tpr_at_1pct_fpr": r.metrics["tpr_at_1pct_fpr"],
                    "advantage": r.metrics["advantage"],
                    "n_shadow": r.n_shadow,
                    **{k: v for k, v in r.extra.items() if isinstance(v, int | float | str)},
                }
                for name, r in results.items()
            },
        }
        return self.finding(
            ctx, status, message + summary, metrics=metrics, threshold=threshold, evidence=evidence
        )


def _user_recipe(cfg: MembershipCheckConfig) -> Any:
    """The shadows' recipe from ``train_fn`` (None: the target's own estimator, cloned)."""
    if cfg.train_fn is None:
        return None
    from bastion._user_code import resolve_reference

    return functools.partial(TrainedBy, resolve_reference(cfg.train_fn, what="train_fn"))


def _choose_attack(
    cfg: MembershipCheckConfig, model: ModelAdapter
) -> tuple[str | None, str | None]:
    """The attack to run (None when ``shadow`` was asked for and cannot run), and why the
    shadow attack cannot run, where it cannot."""
    if cfg.attack == "threshold":
        return "threshold", None
    if cfg.train_fn is not None:
        return "shadow", None
    try:
        shadow_recipe(model)
    except CapabilityError as err:
        return ("threshold" if cfg.attack == "auto" else None), str(err).rstrip(".")
    return "shadow", None


def _candidate_rows(
    train: Dataset, test: Dataset, model: ModelAdapter
) -> tuple[np.ndarray, np.ndarray, int]:
    """Positions of the labelled training rows, of the labelled test rows that are no
    training row, and how many test rows were such copies. A copy has the training row's
    values in every column the model reads: its ``feature_names_in_`` where it names them
    (a column it ignores, a record id, a timestamp, must not make a copy look new; a review
    saw one hide 240 copies and pass a leaky forest), else every feature."""
    train_rows = np.flatnonzero(train.frame[train.target].notna().to_numpy())
    test_rows = np.flatnonzero(test.frame[test.target].notna().to_numpy())
    read = input_names(model)
    in_both = set(train.frame.columns) & set(test.frame.columns)
    if read and set(read) <= in_both:
        names = read
    else:
        names = [c for c in test.feature_names if c in set(train.feature_names)]
        if len(names) != len(test.feature_names):
            names = []
    copies = 0
    if names:
        from bastion.data.rowhash import row_hashes

        seen_in_train, in_test = row_hashes([train.frame, test.frame], tuple(names))
        copy = np.isin(in_test[test_rows], seen_in_train)
        copies = int(copy.sum())
        test_rows = test_rows[~copy]
    return train_rows, test_rows, copies


def _aux_rows(
    train: tuple[pd.DataFrame, np.ndarray],
    test: tuple[pd.DataFrame, np.ndarray],
    members: np.ndarray,
    nonmembers: np.ndarray,
    limit: int,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame | None, np.ndarray | None]:
    """Candidate train and test rows that are not evaluated, for the shadows' pool (at most
    ``limit``)."""
    (train_X, train_y), (test_X, test_y) = train, test
    rest_train = np.setdiff1d(np.arange(len(train_y)), members)
    rest_test = np.setdiff1d(np.arange(len(test_y)), nonmembers)
    frames = [train_X.iloc[rest_train], test_X.iloc[rest_test]]
    labels = np.concatenate([train_y[rest_train], test_y[rest_test]])
    if len(labels) == 0 or limit == 0:
        return None, None
    X = stack_rows(frames)
    if len(labels) > limit:
        keep = np.sort(rng.choice(len(labels), size=limit, replace=False))
        X, labels = X.iloc[keep].reset_index(drop=True), labels[keep]
    return X, labels


def _pct(value: float | int | None, n_nonmembers: int, needed: int) -> str:
    if value is None:
        return f"not measurable with {n_nonmembers} non-members (needs >= {needed})"
    return f"{100 * float(value):.1f}%"

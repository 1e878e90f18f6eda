"""Membership inference: was this record in the model's training set?

What it measures
    How well an attacker who can query the model tells its training records (members) from
    other records of the same distribution (non-members). A model that memorises its
    training set (an unlimited-depth forest, an over-trained network) answers members with
    more confidence than anyone else, and that difference leaks who was in the data: for a
    diagnostic model, that a person was a patient.
Attacks
    ``membership_threshold``: one score per record from the target's output alone: its
    confidence in the true label (default), the negative cross-entropy loss (the same
    ranking) or the negated modified entropy of Song and Mittal (2021).

    ``membership_shadow``: LiRA's offline variant (Carlini et al., "Membership Inference
    Attacks From First Principles", IEEE S&P 2022). ``n_shadow`` shadow models are trained
    like the target on random halves of a pool the auditor holds; for each record, the
    shadows that did not train on it (OUT models) give the distribution of its logit-scaled
    confidence ``phi = log(p / (1 - p))`` when it is *not* a member, fitted by a Gaussian.
    The score is the standardised statistic ``(phi_target - mu_out) / sigma_out``, whose
    normal CDF is LiRA's one-sided likelihood that the target's phi is larger than an OUT
    model's (the same ranking, without saturating at 1.0). Per-record calibration is what
    lets it beat a global threshold: a hard record answered with 0.9 is suspicious, an easy
    one answered with 0.9 is not.
Choices, and why
    - The pool is the evaluated records plus any auxiliary rows (``X_aux``); every pooled
      point joins exactly half of the shadows, and each evaluated record is scored against
      the shadows it did not join (LiRA's reference code). Shadows never see membership
      labels, so nothing leaks into them; with ``shadow_on_targets=False`` evaluated records
      join no shadow and every shadow is an OUT model for every record.
    - Probabilities of exactly 0 or 1 (a forest's unanimous vote) are clipped before the
      logit. ``clip=None`` picks half the smallest distance from 0 or 1 observed in the
      outputs: half a tree's vote for a forest, so a unanimous vote reads as "one notch beyond
      the most extreme split vote" rather than an arbitrary 1e-6.
    - Few OUT models give noisy per-record variances: ``variance="auto"`` uses one global
      variance below 8 OUT models per record (LiRA's advice for small shadow counts) and
      per-record variances from 8 on.
Metrics (REFERENCE.md "Attack metrics", via :func:`~bastion.attacks.results.low_fpr_metrics`)
    ``auc``; ``tpr_at_1pct_fpr`` and ``tpr_at_0.1pct_fpr`` read on the ROC as
    ``sklearn.metrics.roc_curve`` builds it (tied scores make one step) at the largest FPR
    <= the target, None when ``1 / n_nonmembers`` exceeds the target; ``advantage`` =
    max(TPR - FPR); ``n_members``, ``n_nonmembers``.
References
    MITRE ATLAS AML.T0024.000; OWASP ML04. Shokri et al. 2017 (shadow models); Yeom et al.
    2018 (loss threshold); Song and Mittal 2021 (modified entropy); Carlini et al. 2022 (LiRA).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from bastion.attacks.base import ATTACKS, Attack, AttackConfig
from bastion.attacks.budget import Budget, BudgetTracker
from bastion.attacks.privacy._aux import aligned_aux, is_missing
from bastion.attacks.privacy.shadow import (
    Recipe,
    describe_recipe,
    keep_matrix,
    shadow_recipe,
    train_shadows,
    true_label_confidence,
)
from bastion.attacks.results import low_fpr_metrics
from bastion.exceptions import ConfigError, DataError, TimeBudgetError
from bastion.executor import Executor, get_executor
from bastion.models.base import (
    PROBA_TOLERANCE,
    ArrayLike,
    Capability,
    ModelAdapter,
    input_names,
    n_rows,
)
from bastion.threats import ATLAS_MEMBERSHIP_INFERENCE, OWASP_MEMBERSHIP_INFERENCE

__all__ = [
    "MembershipResult",
    "ShadowMembership",
    "ShadowMembershipConfig",
    "ThresholdMembership",
    "ThresholdMembershipConfig",
    "auto_clip",
    "balanced_membership_rows",
    "check_records",
    "lira_offline_scores",
    "logit_confidence",
    "stack_rows",
    "threshold_scores",
]

# below this many OUT models per record, one global variance beats per-record estimates
_MIN_OUT_FOR_PER_EXAMPLE = 8
# per-record variances are floored at this share of the global one (all-saturated OUT models)
_VARIANCE_FLOOR = 0.1
_CLIP_RANGE = (1e-15, 0.05)


@dataclass(frozen=True)
class MembershipResult:
    """What a membership attack concluded about each evaluated record.

    Attributes
    ----------
    attack:
        ``membership_threshold`` or ``membership_shadow``.
    scores:
        Per record, higher means "more likely a member".
    is_member:
        The ground truth the auditor supplied, aligned with ``scores``.
    metrics:
        :func:`~bastion.attacks.results.low_fpr_metrics` of the scores: ``auc``,
        ``tpr_at_1pct_fpr``, ``tpr_at_0.1pct_fpr``, ``advantage``, ``n_members``,
        ``n_nonmembers``.
    n_shadow:
        Shadow models trained (0 for the threshold attack).
    elapsed_s:
        Wall time.
    queries:
        Rows of the target's answers the attack read: sent by it, or handed to it as
        ``target_proba`` (PRV001 asks once for its two attacks; the adapter counts them
        once).
    rows:
        Positions, in the input, of the records scored (all of them unless a query budget
        cut the set down).
    stopped:
        ``query budget``, ``time budget`` or ``interrupted`` when the attack was cut short.
    extra:
        Diagnostics (clip, variance mode, shadow recipe ...), JSON-compatible.
    """

    attack: str
    scores: np.ndarray
    is_member: np.ndarray
    metrics: Mapping[str, float | int | None]
    n_shadow: int
    elapsed_s: float
    queries: int
    rows: np.ndarray
    stopped: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class ThresholdMembershipConfig(AttackConfig):
    """``score``: ``confidence`` in the true label, negative ``loss`` (cross-entropy; the same
    ranking as the confidence) or ``modified_entropy`` (Song and Mittal 2021, negated)."""

    score: Literal["confidence", "loss", "modified_entropy"] = "confidence"


class ShadowMembershipConfig(AttackConfig):
    """LiRA offline options; see the module docstring for the reasons behind the defaults."""

    n_shadow: int = Field(default=16, ge=2, le=4096)
    clip: float | None = Field(default=None, gt=0.0, lt=0.5)
    variance: Literal["auto", "global", "per_example"] = "auto"
    shadow_on_targets: bool = True


class _MembershipAttack(Attack):
    family: ClassVar[Literal["privacy"]] = "privacy"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT_PROBA})
    tags: ClassVar[tuple[str, ...]] = (ATLAS_MEMBERSHIP_INFERENCE, OWASP_MEMBERSHIP_INFERENCE)

    def _target_outputs(
        self,
        model: ModelAdapter,
        X: ArrayLike,
        y: np.ndarray,
        is_member: np.ndarray,
        budget: Budget | None,
        seed: int,
        known: np.ndarray | None = None,
    ) -> tuple[BudgetTracker, np.ndarray, np.ndarray]:
        """Query the target once on the rows the budget allows: (tracker, rows, proba).
        ``known``: the target's probabilities on every row of ``X``, already asked for
        (another attack of the same check): those rows are taken from it, with no query
        and whatever time is left (they were paid for), and still counted as this attack's
        queries."""
        self.check_model(model)
        check_records(model, X, y, is_member)
        tracker = BudgetTracker(budget or Budget())
        if known is not None:
            try:  # a frame of object columns holds numbers too
                known = np.asarray(known, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise DataError(f"target_proba must hold probabilities: {err}") from err
            declared = None if model.classes_ is None else len(model.classes_)
            if (
                known.ndim != 2
                or known.shape[0] != len(is_member)
                or (declared is not None and known.shape[1] != declared)
            ):
                columns = "" if declared is None else f" and one column per class ({declared})"
                raise DataError(
                    f"target_proba must hold one row of probabilities per record of X "
                    f"({len(is_member)}){columns}; received shape {known.shape}"
                )
            if not np.isfinite(known).all():
                raise DataError(
                    "target_proba must hold probabilities (finite, in [0, 1]); received "
                    f"{int((~np.isfinite(known)).sum())} NaN or infinite value(s)"
                )
            # with the adapter's tolerance: float32 runtimes round a little past the ends
            if known.size and (
                known.min() < -PROBA_TOLERANCE or known.max() > 1.0 + PROBA_TOLERANCE
            ):
                raise DataError(
                    "target_proba must hold probabilities (finite, in [0, 1]); received "
                    f"values from {known.min():g} to {known.max():g}"
                )
            limit = tracker.budget.max_queries
            if limit is None or limit >= len(is_member):
                rows = np.arange(len(is_member))
                tracker.spend(len(rows))
                return tracker, rows, known
        rows = _budgeted_rows(tracker, is_member, np.random.default_rng(seed))
        proba = model.predict_proba(_take(X, rows)) if known is None else known[rows]
        tracker.spend(len(rows))
        return tracker, rows, proba


@ATTACKS.register
class ThresholdMembership(_MembershipAttack):
    """Score each record by the target's own output (no shadow models).

    Example::

        attack = ThresholdMembership()
        result = attack.run(adapter, X_eval, y_eval, is_member)
        result.metrics["auc"], result.metrics["tpr_at_1pct_fpr"]
    """

    id = "membership_threshold"
    title = "Membership inference (confidence threshold)"
    Config = ThresholdMembershipConfig

    def run(
        self,
        model: ModelAdapter,
        X: ArrayLike,
        y: np.ndarray,
        is_member: np.ndarray,
        *,
        budget: Budget | None = None,
        seed: int = 0,
        target_proba: np.ndarray | None = None,
    ) -> MembershipResult:
        """Score every record of ``X`` (labels ``y``) and measure the attack.

        Parameters
        ----------
        model:
            The target; needs ``predict_proba``.
        X, y:
            Evaluated records and their true labels.
        is_member:
            Ground truth (True for training records); both kinds must be present.
        budget:
            ``max_queries`` below ``len(X)`` scores a stratified random subset.
        seed:
            Seeds that subset.
        target_proba:
            The target's ``predict_proba`` on every row of ``X`` when the caller has it
            already: not asked again (counted in ``queries`` all the same).

        Returns
        -------
        MembershipResult

        Raises
        ------
        CapabilityError
            The model has no ``predict_proba``.
        ConfigError
            Misaligned inputs, or members or non-members missing.
        TimeBudgetError
            The time budget ran out before the first record was scored.
        """
        cfg = self.options(ThresholdMembershipConfig)
        start = time.perf_counter()
        y = _labels(y, "y")
        members = _membership_flags(is_member)
        tracker, rows, proba = self._target_outputs(
            model, X, y, members, budget, seed, target_proba
        )
        classes = _classes(model, proba, y[rows])
        scores = threshold_scores(proba, classes, y[rows], cfg.score)
        return MembershipResult(
            attack=self.id,
            scores=scores,
            is_member=members[rows],
            metrics=low_fpr_metrics(scores, members[rows]),
            n_shadow=0,
            elapsed_s=time.perf_counter() - start,
            queries=tracker.queries,
            rows=rows,
            stopped=tracker.exhausted_reason,
            extra={"score": cfg.score},
        )


@ATTACKS.register
class ShadowMembership(_MembershipAttack):
    """LiRA offline: per-record Gaussians of OUT shadow models' logit-scaled confidence.

    Example::

        attack = ShadowMembership(ShadowMembershipConfig(n_shadow=16))
        # X_pool: records of the same population, beside the evaluated ones (rows equal to
        # an evaluated record are left out of the shadows' pool)
        result = attack.run(adapter, X_eval, y_eval, is_member, X_aux=X_pool, y_aux=y_pool,
                            executor=LocalExecutor(max_workers=4))
    """

    id = "membership_shadow"
    title = "Membership inference (LiRA offline, shadow models)"
    Config = ShadowMembershipConfig

    def run(
        self,
        model: ModelAdapter,
        X: ArrayLike,
        y: np.ndarray,
        is_member: np.ndarray,
        *,
        X_aux: ArrayLike | None = None,
        y_aux: np.ndarray | None = None,
        estimator: Recipe | None = None,
        executor: Executor | str | None = None,
        budget: Budget | None = None,
        seed: int = 0,
        target_proba: np.ndarray | None = None,
    ) -> MembershipResult:
        """Train the shadows, score every record of ``X`` and measure the attack.

        Parameters
        ----------
        model:
            The target; needs ``predict_proba``.
        X, y:
            Evaluated records and their true labels.
        is_member:
            Ground truth (True for training records); used for the metrics only.
        X_aux, y_aux:
            More rows of the same distribution for the shadows' pool (the auditor's data);
            required with ``shadow_on_targets=False``.
        estimator:
            The shadows' recipe: an unfitted estimator (cloned per shadow) or a zero-argument
            factory (a class counts). One that a worker process cannot take (a lambda, a
            class of a notebook) trains every shadow in this process. Default: a clone of the
            target's scikit-learn estimator.
        executor:
            Where shadows train (an :class:`~bastion.executor.Executor` or a spec for
            :func:`~bastion.executor.get_executor`); default: every local CPU.
        budget:
            ``max_queries`` caps target queries (one per record); ``max_seconds`` caps the
            shadows trained; Ctrl-C keeps the shadows already trained.
        seed:
            Seeds the pool assignment and every shadow.
        target_proba:
            The target's ``predict_proba`` on every row of ``X`` when the caller has it
            already (PRV001 runs the threshold attack first): not asked again. Counted in
            ``queries`` all the same: they are the attack's inputs.

        Returns
        -------
        MembershipResult

        Raises
        ------
        CapabilityError
            No ``predict_proba``, or no recipe for the shadows.
        ConfigError
            Misaligned inputs, members or non-members missing, or no pool for the shadows
            (auxiliary rows equal to an evaluated record are left out of it).
        TimeBudgetError
            The time budget ran out before the first record was scored.
        """
        cfg = self.options(ShadowMembershipConfig)
        start = time.perf_counter()
        recipe = shadow_recipe(model, estimator)
        y = _labels(y, "y")
        members = _membership_flags(is_member)
        if (X_aux is None) != (y_aux is None):
            raise ConfigError("X_aux and y_aux go together; received only one of them")
        if X_aux is not None and y_aux is not None:
            y_aux = _labels(y_aux, "y_aux")
            if n_rows(X_aux) != len(y_aux):
                raise ConfigError(
                    f"X_aux has {n_rows(X_aux)} rows but y_aux has {len(y_aux)} labels"
                )
            _check_aux_columns(X, X_aux)
            if isinstance(X, pd.DataFrame) and not isinstance(X_aux, pd.DataFrame):
                # an array beside a frame takes the frame's column names here, before the
                # frame is narrowed to the model's inputs (named after that, the array's
                # values sat under the wrong names: a review saw AUC 0.73 read 0.61)
                X_aux = aligned_aux(X, X_aux)
        n_aux = 0 if X_aux is None else n_rows(X_aux)
        if not cfg.shadow_on_targets and n_aux < 2:
            raise ConfigError(
                "shadow_on_targets=False trains shadows on X_aux only; pass X_aux and y_aux "
                f"with at least 2 rows (received {n_aux})"
            )
        tracker, rows, proba = self._target_outputs(
            model, X, y, members, budget, seed, target_proba
        )
        classes = _classes(model, proba, y[rows])
        target_conf = true_label_confidence(proba, classes, y[rows])

        # the shadows train on the columns the target reads (a scikit-learn estimator fitted
        # on a frame takes its named inputs from wider rows; fitted on every column, the
        # shadows were another recipe, and a review saw a leaky model pass: TPR at 1% FPR
        # 0.03 against 0.14)
        pool_X, pool_y = _pool(
            _inputs_of(model, _take(X, rows)), y[rows], _inputs_of(model, X_aux), y_aux
        )
        n_eval = len(rows)
        # an auxiliary row equal to an evaluated record is that record: a shadow counted
        # "out" for it would have trained on its copy (a review saw TPR at 1% FPR fall from
        # 0.15 to 0.05 with the evaluated records left in the pool)
        groups = _row_groups(pool_X, len(pool_y))
        pool_X, pool_y, groups, aux_copies = _without_copies(pool_X, pool_y, groups, n_eval)
        if not cfg.shadow_on_targets and len(pool_y) - n_eval < 2:
            raise ConfigError(
                "shadow_on_targets=False trains shadows on X_aux only, and of its rows "
                f"{aux_copies} equal an evaluated record (left out: a shadow counted out for "
                f"a record would train on its copy), leaving {len(pool_y) - n_eval}: pass "
                "at least 2 other rows"
            )
        rng = np.random.default_rng(seed)
        keep = np.zeros((cfg.n_shadow, len(pool_y)), dtype=bool)
        trainable = (
            np.arange(len(pool_y)) if cfg.shadow_on_targets else np.arange(n_eval, len(pool_y))
        )
        # rows equal to each other (a record twice among the evaluated) join the same shadows
        keep[:, trainable] = _grouped_keep(cfg.n_shadow, groups[trainable], rng)
        shadow_conf, keep = train_shadows(
            recipe,
            pool_X,
            pool_y,
            keep,
            np.arange(n_eval),
            classes,
            executor=get_executor(executor),
            seed=seed,
            tracker=tracker,
        )
        out_mask = ~keep[:, :n_eval]
        scores, info = lira_offline_scores(
            target_conf, shadow_conf, out_mask, clip=cfg.clip, variance=cfg.variance
        )
        extra = {
            **info,
            "recipe": describe_recipe(recipe),
            "pool_rows": len(pool_y),
            "aux_rows_equal_to_evaluated_left_out": aux_copies,
        }
        metrics = low_fpr_metrics(scores, members[rows])
        if len(shadow_conf) == 0:
            # no shadow trained (the budget was spent first): the scores are the target's
            # confidence alone, the threshold attack's, which published under LiRA's name
            # could be judged as it (a review); nothing of LiRA's was measured
            metrics = {
                **metrics,
                **dict.fromkeys(("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "advantage")),
            }
        return MembershipResult(
            attack=self.id,
            scores=scores,
            is_member=members[rows],
            metrics=metrics,
            n_shadow=len(shadow_conf),
            elapsed_s=time.perf_counter() - start,
            queries=tracker.queries,
            rows=rows,
            stopped=tracker.exhausted_reason,
            extra=extra,
        )


def logit_confidence(p: np.ndarray, clip: float) -> np.ndarray:
    """LiRA's ``phi = log(p / (1 - p))`` with ``p`` clipped to ``[clip, 1 - clip]``."""
    q = np.clip(np.asarray(p, dtype=np.float64), clip, 1.0 - clip)
    phi: np.ndarray = np.log(q) - np.log1p(-q)
    return phi


def auto_clip(*confidences: np.ndarray) -> float:
    """Half the smallest nonzero distance of any confidence from 0 or 1, within [1e-15, 0.05].

    For a forest of T trees that is half a vote, 1 / (2T): a unanimous vote becomes one
    notch beyond the most extreme split vote instead of an arbitrary extreme logit.
    """
    values = np.concatenate([np.ravel(c) for c in confidences])
    gaps = np.minimum(values, 1.0 - values)
    positive = gaps[gaps > 0]
    if positive.size == 0:
        return 1e-3  # every output saturated: any clip ranks them the same
    return float(np.clip(0.5 * positive.min(), *_CLIP_RANGE))


def lira_offline_scores(
    target_conf: np.ndarray,
    shadow_conf: np.ndarray,
    out_mask: np.ndarray,
    *,
    clip: float | None = None,
    variance: Literal["auto", "global", "per_example"] = "auto",
) -> tuple[np.ndarray, dict[str, Any]]:
    """LiRA offline scores from the target's and the shadows' true-label confidences.

    Parameters
    ----------
    target_conf:
        (n,) the target's confidence in each record's true label.
    shadow_conf:
        (k, n) each shadow's confidence on each record.
    out_mask:
        (k, n) True where the shadow did not train on the record (an OUT model).
    clip:
        Probability clip before the logit; None picks :func:`auto_clip`.
    variance:
        ``global``, ``per_example`` (floored at 10% of the global variance) or ``auto``
        (per-example from 8 OUT models per record on).

    Returns
    -------
    (scores, info)
        ``scores`` (n,): ``(phi - mu_out) / sigma_out``, higher means member; ``info``: the
        clip, the variance mode used and the fewest OUT models any record had.

    Example::

        >>> s, _ = lira_offline_scores(np.array([0.99, 0.6]),
        ...                            np.array([[0.6, 0.6], [0.7, 0.5]]), np.ones((2, 2), bool))
        >>> bool(s[0] > s[1])
        True
    """
    eps = auto_clip(target_conf, shadow_conf) if clip is None else clip
    phi_t = logit_confidence(target_conf, eps)
    phi_s = logit_confidence(shadow_conf, eps)
    n_out = out_mask.sum(axis=0)
    out_phi = np.where(out_mask, phi_s, 0.0)
    safe = np.maximum(n_out, 1)
    mu = out_phi.sum(axis=0) / safe
    sq = np.where(out_mask, (phi_s - mu) ** 2, 0.0).sum(axis=0)
    var = np.where(n_out >= 2, sq / np.maximum(n_out - 1, 1), np.nan)
    with np.errstate(invalid="ignore"):
        global_var = float(np.nanmean(var)) if np.isfinite(var).any() else 0.0
    if not global_var > 0:
        global_var = 1.0  # every OUT output identical: only phi - mu ranks the records
    # a record no OUT model scored (an interrupted run) falls back to the population's mean
    if (n_out == 0).any():
        population = float(out_phi.sum() / max(int(n_out.sum()), 1))
        mu = np.where(n_out == 0, population, mu)
    fewest = int(n_out.min()) if n_out.size else 0
    mode = variance
    if mode == "auto":
        mode = "per_example" if fewest >= _MIN_OUT_FOR_PER_EXAMPLE else "global"
    if mode == "per_example":
        sigma2 = np.where(np.isnan(var), global_var, np.maximum(var, _VARIANCE_FLOOR * global_var))
    else:
        sigma2 = np.full_like(mu, global_var)
    scores: np.ndarray = (phi_t - mu) / np.sqrt(sigma2)
    info = {"clip": eps, "variance": mode, "min_out_models": fewest}
    return scores, info


def threshold_scores(
    proba: np.ndarray,
    classes: np.ndarray,
    y: np.ndarray,
    score: Literal["confidence", "loss", "modified_entropy"],
) -> np.ndarray:
    """Per record, higher means member: the true-label confidence, ``log p_y`` (negative
    cross-entropy) or minus the modified entropy of Song and Mittal (2021)."""
    p_y = true_label_confidence(proba, classes, y)
    if score == "confidence":
        return p_y
    tiny = 1e-300
    if score == "loss":
        loss: np.ndarray = np.log(np.maximum(p_y, tiny))
        return loss
    # Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i): low for members
    p = np.clip(np.asarray(proba, dtype=np.float64), tiny, 1.0)
    others = p * np.log(np.maximum(1.0 - p, tiny))
    is_y = classes[None, :] == np.asarray(y)[:, None]
    mentr = -(1.0 - p_y) * np.log(np.maximum(p_y, tiny)) - np.where(is_y, 0.0, others).sum(axis=1)
    negated: np.ndarray = -mentr
    return negated


def balanced_membership_rows(
    n_members: int, n_nonmembers: int, n_per_side: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of an equal number of members and non-members, at most ``n_per_side`` each.

    Example::

        >>> m, n = balanced_membership_rows(120, 80, 1000, np.random.default_rng(0))
        >>> len(m), len(n)
        (80, 80)
    """
    side = min(n_members, n_nonmembers, n_per_side)
    members = np.sort(rng.choice(n_members, size=side, replace=False))
    nonmembers = np.sort(rng.choice(n_nonmembers, size=side, replace=False))
    return members, nonmembers


# -- helpers ----------------------------------------------------------------------------------


def check_records(model: ModelAdapter, X: ArrayLike, y: np.ndarray, is_member: np.ndarray) -> None:
    """What the attacks refuse before the target is asked anything: a model without
    ``predict_proba``, misaligned inputs, members or non-members missing, and members'
    labels outside the model's declared classes. A caller that asks the target itself
    (PRV001, once for both attacks) runs it first."""
    model.require(Capability.PREDICT_PROBA, by="membership inference")
    y, is_member = _labels(y, "y"), _membership_flags(is_member)
    _validate(X, y, is_member)
    unlabelled = is_missing(y)
    if unlabelled.any():
        # an unlabelled record has no true label to be confident in (it read as a label
        # spelled otherwise than the model's classes; a review)
        raise DataError(
            f"y is missing for {int(unlabelled.sum())} of {len(y)} record(s) (the first at row "
            f"{int(np.flatnonzero(unlabelled)[0])}): leave unlabelled records out, as PRV001 does"
        )
    _check_known_labels(model, y, is_member)


def _validate(X: ArrayLike, y: np.ndarray, is_member: np.ndarray) -> None:
    n = n_rows(X)
    if len(y) != n or len(is_member) != n:
        raise ConfigError(
            f"X, y and is_member must have the same length; received {n}, {len(y)} and "
            f"{len(is_member)}"
        )
    if is_member.all() or not is_member.any():
        raise ConfigError(
            "is_member must mark both members and non-members; received "
            f"{int(is_member.sum())} member(s) among {n} record(s)"
        )


def _labels(y: Any, name: str) -> np.ndarray:
    """One label per row: a column vector is flattened, other shapes are refused."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ConfigError(f"{name} must hold one label per row; received shape {labels.shape}")
    return labels


def _membership_flags(is_member: Any) -> np.ndarray:
    """``is_member`` as booleans: True / False or 1 / 0 only (a NaN would read as a member)."""
    flags = np.asarray(is_member)
    if flags.ndim == 2 and flags.shape[1] == 1:  # a column (df[["member"]]), as _labels reads y
        flags = flags[:, 0]
    if flags.ndim != 1:
        raise ConfigError(f"is_member must hold one flag per row; received shape {flags.shape}")
    if flags.dtype == bool:
        return flags
    values = pd.unique(pd.Series(flags.ravel(), dtype=object))
    odd = [
        v
        for v in values.tolist()
        if v is pd.NA or pd.isna(v) or not (v is True or v is False or v in (0, 1))
    ]
    if odd:
        raise ConfigError(
            f"is_member must hold True / False (or 1 / 0) for every record; received {odd[:3]}"
        )
    return flags.astype(bool)


def _check_known_labels(model: ModelAdapter, y: np.ndarray, members: np.ndarray) -> None:
    """A member's label that the model's declared classes do not hold means the labels are
    written otherwise than the model's (``"0"`` for ``0``): every record would score 0 and
    the attack read no leak. Refused, naming them, before the model is queried. A
    non-member may hold a class the model never saw (a rare class missing from the
    training split): its confidence is 0, the right signal. But not most of them: then the
    non-members' labels are written otherwise (``"yes"`` for ``"Yes"``), each would score
    0 against the members' confidences, and the attack read AUC 1.0, a leak that is not
    (from a review)."""
    if model.classes_ is None:
        return  # checked against the probability columns once they are known
    classes = np.asarray(model.classes_)
    known = _isin_labels(y, classes)
    for who, rows, allowed in (("member", members, 0), ("non-member", ~members, 0.5)):
        unknown = ~known & rows
        if unknown.sum() > allowed * rows.sum():
            seen = pd.unique(pd.Series(y[unknown], dtype=object)).tolist()[:3]
            raise ConfigError(
                f"labels {seen} of {int(unknown.sum())} of {int(rows.sum())} {who}(s) are "
                f"not among model {model.info.name!r}'s classes {classes.tolist()[:10]}"
                + (", though it trained on them" if who == "member" else "")
                + ": give the labels as the model names its classes"
            )


def _isin_labels(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Which labels of ``y`` the classes hold, compared as values of one type (a column of
    text labels beside numeric classes holds none of them; numpy's own comparison of mixed
    types fails)."""
    try:
        return np.isin(y, classes)
    except TypeError:
        wanted = set(classes.tolist())
        return np.array([v in wanted for v in y.tolist()], dtype=bool)


def _check_aux_columns(X: ArrayLike, X_aux: ArrayLike) -> None:
    """``X_aux`` must describe the records as ``X`` does (checked before any query)."""
    if isinstance(X, pd.DataFrame) and isinstance(X_aux, pd.DataFrame):
        lacking = [c for c in X.columns if c not in X_aux.columns]
        if lacking:
            raise ConfigError(f"X_aux lacks column(s) {lacking[:5]} of X")
        return
    shape, aux_shape = np.shape(X)[1:], np.shape(X_aux)[1:]
    if shape != aux_shape:
        raise ConfigError(f"X_aux rows have shape {aux_shape} but X rows have {shape}")


def _budgeted_rows(
    tracker: BudgetTracker, is_member: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Every row, or a stratified random subset when the query budget is smaller."""
    n = len(is_member)
    allowed = tracker.allow(n)
    if allowed >= n:
        return np.arange(n)
    if allowed < 2:
        if tracker.exhausted_reason == "time budget":
            # the time was spent before the first query: not the query budget's fault
            raise TimeBudgetError(
                f"membership inference: the time budget (max_seconds "
                f"{tracker.budget.max_seconds:g}) was spent before any record was scored"
            )
        raise ConfigError(
            f"budget max_queries must allow at least 2 queries (one member, one non-member); "
            f"received {tracker.budget.max_queries}"
        )
    tracker.exhausted_reason = "query budget"
    members = np.flatnonzero(is_member)
    others = np.flatnonzero(~is_member)
    k = round(allowed * len(members) / n)
    k = min(max(k, 1), allowed - 1, len(members))
    picked = np.concatenate(
        [
            rng.choice(members, size=k, replace=False),
            rng.choice(others, size=allowed - k, replace=False),
        ]
    )
    return np.sort(picked)


def _classes(model: ModelAdapter, proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The label of each probability column; without declared classes, labels must be the
    column positions (a silent mismatch would score every record 0)."""
    if model.classes_ is not None:
        return np.asarray(model.classes_)
    positions = np.arange(proba.shape[1])
    if not np.isin(y, positions).all():
        raise ConfigError(
            f"model {model.info.name!r} declares no classes, so labels must be probability "
            f"column positions 0..{proba.shape[1] - 1}; received labels such as "
            f"{np.asarray(y)[~np.isin(y, positions)][:3].tolist()}"
        )
    return positions


def _take(X: ArrayLike, rows: np.ndarray) -> ArrayLike:
    if isinstance(X, pd.DataFrame):
        return X.iloc[rows].reset_index(drop=True)
    picked: np.ndarray = np.asarray(X)[rows]
    return picked


def _pool(
    X: ArrayLike, y: np.ndarray, X_aux: ArrayLike | None, y_aux: np.ndarray | None
) -> tuple[ArrayLike, np.ndarray]:
    """The shadows' pool: the evaluated records first, then the auxiliary rows."""
    if X_aux is None or y_aux is None:
        return X, y
    pool_y = np.concatenate([y, np.asarray(y_aux)])
    if isinstance(X, pd.DataFrame):
        aux = X_aux if isinstance(X_aux, pd.DataFrame) else pd.DataFrame(X_aux, columns=X.columns)
        return stack_rows([X, aux[list(X.columns)]]), pool_y
    return np.concatenate([np.asarray(X), np.asarray(X_aux)]), pool_y


def _row_groups(X: ArrayLike, n: int) -> np.ndarray:
    """Per row of ``X``, the number of the first row equal to it in every value, counted in
    order of first appearance (0, 1, 2 ... when no two rows are equal). Frames and arrays of
    objects (category columns) by row hash; numeric arrays, images too, by a 16-byte digest
    of each row in its own dtype (floats with -0.0 and every NaN made one value, as the
    hashes read them): the rows' float64 bytes as keys took 16 times an image pool."""
    arr = None if isinstance(X, pd.DataFrame) else np.asarray(X).reshape(n, -1)
    if arr is not None and arr.dtype.kind in "biufc":
        import hashlib

        if arr.dtype.kind in "fc":
            arr = arr + 0.0  # -0.0 -> 0.0, in a copy
            arr[np.isnan(arr)] = np.nan
        rows = np.ascontiguousarray(arr)
        keys: Any = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]
    else:
        from bastion.data.rowhash import row_hashes

        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(arr)
        try:
            (hashes,) = row_hashes([frame], list(frame.columns))
        except TypeError:
            # values that cannot be hashed (dicts for a DictVectorizer): every row its own
            # group, as before groups (twins are then drawn apart)
            return np.arange(n)
        keys = hashes.tolist()
    first: dict[Any, int] = {}
    return np.fromiter((first.setdefault(k, len(first)) for k in keys), np.intp, n)


def _without_copies(
    pool_X: ArrayLike, pool_y: np.ndarray, groups: np.ndarray, n_eval: int
) -> tuple[ArrayLike, np.ndarray, np.ndarray, int]:
    """The pool (and its rows' ``groups``) without the auxiliary rows (those after the first
    ``n_eval``) whose every value equals an evaluated record's, and how many were left out."""
    copy = np.isin(groups, groups[:n_eval])
    copy[:n_eval] = False
    if not copy.any():
        return pool_X, pool_y, groups, 0
    keep = np.flatnonzero(~copy)
    return _take(pool_X, keep), pool_y[keep], groups[keep], int(copy.sum())


def _grouped_keep(n_shadow: int, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`keep_matrix` drawn per group of equal rows (``groups`` numbered in order of
    first appearance), so that a shadow holds every copy of a record or none: one counted
    "out" for a record never trains on its twin (the draws are keep_matrix's own when no
    two rows are equal). A shadow drawn no group (likely when the groups are few: each
    joins half the shadows) takes one from a shadow that holds more, so that every group
    keeps its count of shadows and no shadow trains on nothing.

    Raises:
        ConfigError: too few distinct rows for every shadow to hold one.
    """
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    drawn = keep_matrix(n_shadow, len(first), rng)
    for shadow in np.flatnonzero(~drawn.any(axis=1)):
        donors = np.flatnonzero(drawn.sum(axis=1) > 1)
        if donors.size == 0:
            raise ConfigError(
                f"the shadows' pool holds {len(first)} distinct row(s): too few for each of "
                f"{n_shadow} shadow models to train on some"
            )
        donor = donors[0]
        group = np.flatnonzero(drawn[donor])[0]
        drawn[donor, group], drawn[shadow, group] = False, True
    out: np.ndarray = drawn[:, rank[inverse]]
    return out


def _inputs_of(model: ModelAdapter, X: Any) -> Any:
    """``X`` narrowed to the columns ``model`` names as its inputs (``feature_names_in_``),
    in that order, when it is a frame that holds them all; else as it is."""
    names = input_names(model)
    if not names or not isinstance(X, pd.DataFrame) or not set(names) <= set(X.columns):
        return X
    return X[names]


def stack_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The frames' rows one after another. A categorical column keeps a categorical dtype,
    with the union of the frames' categories: pandas turns a column whose categories differ
    between frames into plain objects, which a model reading its categories from the dtype
    cannot fit (a rare category missing from the test file made PRV001 an error).

    Example::

        >>> a = pd.DataFrame({"size": pd.Categorical(["s", "m"])})
        >>> b = pd.DataFrame({"size": pd.Categorical(["l"])})
        >>> list(stack_rows([a, b])["size"].cat.categories)
        ['m', 's', 'l']
    """
    union: dict[Any, tuple[list[Any], bool]] = {}
    for frame in frames:
        for column in frame.columns:
            dtype = frame[column].dtype
            if isinstance(dtype, pd.CategoricalDtype):
                seen, _ = union.setdefault(column, ([], bool(dtype.ordered)))
                seen.extend(c for c in dtype.categories if c not in seen)
    if union:
        frames = [
            frame.astype(
                {c: pd.CategoricalDtype(v, ordered=o) for c, (v, o) in union.items() if c in frame}
            )
            for frame in frames
        ]
    return pd.concat(list(frames), ignore_index=True)

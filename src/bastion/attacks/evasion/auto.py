"""auto: the AutoAttack-style ensemble (APGD-CE, APGD-DLR, Square), per-point worst case.

What it does
    Runs APGD with the cross-entropy loss; then APGD with the DLR loss (the margin loss on
    binary models) on the points still unbroken; then the Square attack (black-box,
    score-based, registered as ``square``) on the points still unbroken. A point is robust
    only if every attack failed on it: robust accuracy is the per-point worst case over the
    suite (:func:`~bastion.attacks.results.merge_worst_case`).
Why it matters
    Each attack covers another's blind spot: DLR is immune to logit scaling, Square needs no
    gradient and so sees through gradient masking. One attack alone overstates robustness.
References
    Croce and Hein (2020), "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", ICML (AutoAttack); Andriushchenko et al. (2020), "Square
    Attack", ECCV. MITRE ATLAS AML.T0015, AML.T0043; OWASP ML01.
Metrics
    The merged :class:`~bastion.attacks.results.EvasionResult`; a point's queries add up over
    the attacks that ran on it. ``extra``: ``attacks`` (the stages that ran), ``stages`` (per
    stage: points attacked, new successes, queries, seconds, why it stopped), ``square``
    (``ran``, ``disabled``, ``not registered`` or ``skipped: <reason>``), the first stage's
    ``zero_gradient_fraction``, ``nan_gradients`` (any white-box stage), ``restarts``,
    ``iterations``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.attacks.base import ATTACKS, Attack, AttackConfig, EvasionAttack
from bastion.attacks.budget import Budget, note_interrupt
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.evasion.apgd import APGD, APGDConfig
from bastion.attacks.evasion.pgd import WHITE_BOX_REQUIRES, WHITE_BOX_TAGS, WhiteBoxConfig
from bastion.attacks.results import EvasionResult, merge_worst_case
from bastion.exceptions import CapabilityError
from bastion.models.base import Capability, ModelAdapter, refuse_misordered_columns

__all__ = ["AutoAttack", "AutoConfig"]


class AutoConfig(WhiteBoxConfig):
    """The ensemble's options.

    Attributes
    ----------
    n_iter, restarts:
        Iterations and restarts of each APGD stage (paper: 100 and 1).
    square:
        Run the Square attack last (when an attack ``square`` is registered).
    square_options:
        Options for Square's own config (e.g. ``{"n_queries": 1000}``); its defaults
        otherwise (5,000 queries per point, as AutoAttack).
    """

    n_iter: int = Field(default=100, ge=1)
    restarts: int = Field(default=1, ge=1)
    square: bool = True
    square_options: dict[str, Any] = Field(default_factory=dict)


def _square_class() -> type[Attack] | None:
    """The registered Square attack, looked up at run time (None when there is none)."""
    if "square" not in ATTACKS:
        return None
    return ATTACKS.get("square")


@ATTACKS.register
class AutoAttack(EvasionAttack):
    """APGD-CE, then APGD-DLR (margin loss on binary models), then Square; worst case.

    Example::

        >>> result = AutoAttack().run(model, X, y, eps=0.3, constraints=box)  # doctest: +SKIP
        >>> result.metrics()["robust_accuracy"], result.extra["attacks"]  # doctest: +SKIP
    """

    id: ClassVar[str] = "auto"
    title: ClassVar[str] = "AutoAttack-style ensemble (APGD-CE, APGD-DLR, Square)"
    requires: ClassVar[frozenset[Capability]] = WHITE_BOX_REQUIRES
    tags: ClassVar[tuple[str, ...]] = WHITE_BOX_TAGS
    Config: ClassVar[type[AttackConfig]] = AutoConfig

    def run(
        self,
        model: ModelAdapter,
        X: np.ndarray,
        y: np.ndarray,
        *,
        eps: float,
        norm: Literal["inf", "2"] = "inf",
        constraints: FeatureConstraints | None = None,
        budget: Budget | None = None,
        seed: int = 0,
    ) -> EvasionResult:
        """Attack every row of ``X``; parameters as :meth:`bastion.attacks.evasion.pgd.PGD.run`.

        The budget covers the whole ensemble: each stage gets what the earlier ones left; a
        stage that cannot be paid for is skipped and the result says why it stopped.

        Returns
        -------
        EvasionResult
            The per-point worst case over the stages, named ``auto``.

        Raises
        ------
        CapabilityError
            The model has no torch module, logits or gradients.
        ConfigError
            ``eps`` / ``norm`` / budget / constraints do not fit the data.
        """
        self.check_model(model)
        cfg = self.options(AutoConfig)
        started = time.perf_counter()
        budget = budget or Budget()
        shared = {
            "batch_size": cfg.batch_size,
            "early_exit": cfg.early_exit,
            "precision": cfg.precision,
            "channels_last": cfg.channels_last,
            "cuda_graphs": cfg.cuda_graphs,
            "n_iter": cfg.n_iter,
            "restarts": cfg.restarts,
        }
        # before the rows become an array: the stages can no longer see a DataFrame's order
        refuse_misordered_columns(X, model)
        if constraints is not None:
            constraints.refuse_misordered(X)
        X = np.asarray(X)
        y = np.asarray(y)
        first = APGD(APGDConfig(loss="ce", **shared)).run(
            model, X, y, eps=eps, norm=norm, constraints=constraints, budget=budget, seed=seed
        )
        results = [first]
        stages = [_stage(first, first.clean_correct, np.zeros(len(y), dtype=bool))]
        stopped = first.stopped
        square_status = "disabled"
        plan: list[tuple[str, EvasionAttack]] = [
            ("apgd-dlr", APGD(APGDConfig(loss="dlr", **shared)))
        ]
        if cfg.square:
            square_cls = _square_class()
            if square_cls is None:
                square_status = "not registered"
            else:
                square_attack = square_cls(square_cls.Config.model_validate(cfg.square_options))
                if isinstance(square_attack, EvasionAttack):
                    plan.append(("square", square_attack))
                    square_status = "pending"
                else:  # pragma: no cover - a foreign plugin under the id
                    square_status = "skipped: 'square' is not an evasion attack"
        for label, attack in plan:
            merged = merge_worst_case(results)
            todo = merged.robust
            if stopped or not todo.any():
                continue
            left = _budget_left(budget, merged.queries, todo, time.perf_counter() - started)
            if isinstance(left, str):
                stopped = left
                continue
            try:
                attack.check_model(model)
            except CapabilityError as err:
                square_status = f"skipped: {err}"
                continue
            try:
                sub = attack.run(
                    model,
                    X[todo],
                    y[todo],
                    eps=eps,
                    norm=norm,
                    constraints=constraints,
                    budget=left,
                    seed=seed,
                )
            except KeyboardInterrupt:
                # Ctrl-C before the stage had a result (its clean predictions): the earlier
                # stages' verified points stand, and the run reports them as interrupted
                note_interrupt()
                stopped = "interrupted"
                continue
            results.append(_expand(sub, todo, first, X))
            stages.append(_stage(results[-1], todo, merged.success))
            stopped = stopped or sub.stopped
            if label == "square":
                square_status = "ran"
        if square_status == "pending":
            square_status = f"skipped: {stopped}" if stopped else "skipped: no point left"
        merged = merge_worst_case(results, name="auto")
        white = [r for r in results if r.attack.startswith("apgd")]
        extra: dict[str, Any] = {
            "attacks": [r.attack for r in results],
            "stages": stages,
            "square": square_status,
            "zero_gradient_fraction": first.extra.get("zero_gradient_fraction"),
            "nan_gradients": any(bool(r.extra.get("nan_gradients")) for r in white),
            "restarts": cfg.restarts,
            "iterations": cfg.n_iter,
            "eps_unit": first.extra.get("eps_unit"),
        }
        if "device" in first.extra:  # where the white-box stages ran the module
            extra["device"] = first.extra["device"]
        return replace(
            merged, elapsed_s=time.perf_counter() - started, stopped=stopped, extra=extra
        )


def _budget_left(
    budget: Budget, spent: np.ndarray, todo: np.ndarray, elapsed: float
) -> Budget | str:
    """What the later stages may still spend, or why nothing is left."""
    n = int(todo.sum())
    max_queries = None
    if budget.max_queries is not None:
        max_queries = budget.max_queries - int(spent.sum())
        if max_queries < 2 * n:  # a stage pays one clean prediction and one check per point
            return "query budget"
    per_sample = None
    if budget.max_queries_per_sample is not None:
        per_sample = budget.max_queries_per_sample - int(spent[todo].max())
        if per_sample < 2:
            return "query budget"
    max_seconds = None
    if budget.max_seconds is not None:
        max_seconds = budget.max_seconds - elapsed
        if max_seconds <= 0:
            return "time budget"
    return Budget(
        max_queries=max_queries, max_queries_per_sample=per_sample, max_seconds=max_seconds
    )


def _expand(
    sub: EvasionResult, todo: np.ndarray, base: EvasionResult, X: np.ndarray
) -> EvasionResult:
    """A stage's result on the points it attacked, widened to every point (others untouched)."""
    n = len(todo)
    x_adv = np.asarray(X, dtype=np.float64).copy()
    x_adv[todo] = sub.x_adv
    adv_pred = base.clean_pred.copy()
    adv_pred[todo] = sub.adv_pred
    success = np.zeros(n, dtype=bool)
    success[todo] = sub.success
    perturbation = np.full(n, np.nan)
    perturbation[todo] = sub.perturbation
    queries = np.zeros(n, dtype=np.int64)
    queries[todo] = sub.queries
    return replace(
        sub,
        x_adv=x_adv,
        y_true=base.y_true,
        clean_pred=base.clean_pred,
        adv_pred=adv_pred,
        success=success,
        perturbation=perturbation,
        queries=queries,
    )


def _stage(result: EvasionResult, attacked: np.ndarray, done_before: np.ndarray) -> dict[str, Any]:
    return {
        "attack": result.attack,
        "points": int(attacked.sum()),
        "new_successes": int((result.success & ~done_before).sum()),
        "queries": int(result.queries.sum()),
        "time_s": round(result.elapsed_s, 6),
        "stopped": result.stopped,
        "rejected_after_projection": int(result.extra.get("rejected_after_projection") or 0),
        # a black-box stage given no query to search with shows 0 (the gate counts it cut)
        "iterations": result.extra.get("iterations"),
    }

"""POI002 simulation: how much would poisoning a few training rows hurt this model?

What it detects
    A training recipe that an attacker with write access to a small share of the training
    data could subvert: flipping ``rate`` of the labels costs more than ``max_accuracy_drop``
    of test accuracy, or a backdoor trigger planted in ``rate`` of the rows sends more than
    ``max_backdoor_success`` of the triggered test inputs that the clean model keeps out of
    the attacker's class into it.
How
    The model is retrained with its own recipe on the poisoned training set: a clone of the
    scikit-learn estimator (``fit``), or a copy of a trainable torch module from fresh
    weights (Adam, ``epochs`` epochs). A clean copy is retrained the same way with the same
    seed (``retrain_clean``, default true), so the accuracy drop measures the poison and not
    a difference between training recipes; ``retrain_clean: false`` uses the model under
    test as the clean reference (cheaper, fair only when it was trained the same way). The
    label-issue detector of POI001 then runs on the poisoned training set, and its precision
    and recall against the rows actually poisoned tell whether POI001 would have caught the
    attack. For a backdoor on a torch module, POI003's detector (activation clustering with
    its presence test) also runs on the poisoned training set with the retrained poisoned
    model, and its precision and recall are reported beside the label detector's. Models
    that cannot be retrained (ONNX, remote endpoints, bare callables) are skipped. Backdoor
    triggers respect the dataset's feasibility constraints (bounds from the schema, else the
    training data).
Metrics
    ``clean_accuracy``, ``poisoned_accuracy``, ``accuracy_drop`` (clean - poisoned, test set);
    ``backdoor_success_rate`` = Pr[f(x + trigger) = target | y != target] on the test set,
    ``clean_trigger_rate`` (the same for the clean model) and ``backdoor_lift`` (the gate's
    figure, below), backdoor only; ``precision`` and ``recall`` of the label detector over
    training rows; ``activation_precision`` and
    ``activation_recall`` of activation clustering (backdoor on a torch module, else None);
    ``n_poisoned``, ``poison_rate``.
Gate
    Fails when ``accuracy_drop > max_accuracy_drop`` or, for a backdoor, when the poison's
    share of what the clean model left, ``(backdoor_success_rate - clean_trigger_rate) /
    (1 - clean_trigger_rate)``, exceeds ``max_backdoor_success`` (the success rate itself
    when the clean model sends no triggered row to the target). It fails closed where the
    limit cannot be judged: no test row to trigger, a trigger the clean model always obeys
    (no backdoor shows), a lift within the limit on fewer than ``ceil(3 / limit)`` of the
    rows the clean model kept from the target (no success in n rows bounds the rate below
    3 / n only, the rule of three; ``lift_rows`` in the evidence; a limit of 1 cannot be
    crossed), or a limit of 0, which no test set can show to hold. ``max_seconds``
    (default 600) bounds the detectors: the retrainings always run (the gate's figures need
    them), and once they have used up the time the detectors are skipped, or stopped between
    their stages (their figures null, the evidence says so); the gate is judged either way.
References
    Biggio, Nelson and Laskov, "Poisoning attacks against support vector machines" (ICML
    2012); Gu et al., "BadNets" (2017); MITRE ATLAS AML.T0020, AML.T0043.004; OWASP ML02.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from bastion._user_code import TrainFnReference
from bastion.attacks.budget import Budget, BudgetTracker, note_interrupt, wall_deadline
from bastion.attacks.checks._training import time_budget_text, train_lacks
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.poisoning._training import resolve_trainer
from bastion.attacks.poisoning.detect import find_label_issues, precision_recall
from bastion.attacks.poisoning.simulate import PoisoningSimulation, simulate_poisoning
from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope, config_as
from bastion.data.schema import FeatureSchema
from bastion.exceptions import CapabilityError, ConfigError, ModelError, TimeBudgetError
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.threats import (
    ATLAS_BACKDOOR_TRIGGER,
    ATLAS_POISON_TRAINING_DATA,
    OWASP_DATA_POISONING,
)

__all__ = ["PoisoningSimulationCheck", "PoisoningSimulationConfig"]

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Label = bool | int | float | str


class PoisoningSimulationConfig(CheckConfig):
    """The simulated attack, the gate limits and the detector."""

    kind: Literal["label_flip", "backdoor"] = "label_flip"
    rate: float = Field(default=0.05, gt=0.0, lt=1.0, description="share of rows poisoned")
    max_accuracy_drop: Fraction = 0.05
    max_backdoor_success: Fraction = Field(
        default=0.5,
        description=(
            "limit on backdoor_lift; a lift within it counts on at least ceil(3 / limit) rows "
            "(a limit of 1 cannot be crossed)"
        ),
    )
    # label flipping
    mode: Literal["random", "targeted"] = "random"
    source: Label | None = None
    target: Label | None = None
    # backdoor
    target_class: Label | None = None
    source_class: Label | None = None
    trigger: dict[str, float] | None = Field(
        default=None, description="feature name -> value; default: rare upper bounds"
    )
    n_trigger_features: int = Field(default=3, ge=1)
    # retraining
    # the clean reference is retrained with the same recipe as the poisoned copy, so the
    # accuracy drop measures the poison, not a difference between training recipes
    retrain_clean: bool = True
    epochs: int = Field(default=30, ge=1, le=10_000, description="torch modules only")
    train_fn: TrainFnReference | None = Field(
        default=None,
        description="'package.module:function' taking (X, y) and returning a fitted model "
        "with predict: the user's own training recipe, for models Bastion cannot retrain "
        "(ONNX, a remote endpoint) or to replace its default (fit on a clone, or Adam for a "
        "torch module). It is the user's code, imported like any Python import",
    )
    # detection (POI001's detector)
    detection_method: Literal["confident_learning", "knn"] = "confident_learning"
    cv: int = Field(default=5, ge=2, le=50)
    # the retrainings always run (the gate's figures need them); the detectors after them
    # run only while the check is under max_seconds
    max_seconds: float | None = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _options_of_the_attack_chosen(self) -> PoisoningSimulationConfig:
        """An option of another attack would be ignored: a policy that sets one means
        something the run would not do."""
        unused: list[str] = []
        if self.kind == "label_flip":
            unused += [n for n in ("target_class", "source_class", "trigger") if _set(self, n)]
            if "max_backdoor_success" in self.model_fields_set:  # a limit never judged
                unused.append("max_backdoor_success")
            if self.mode == "random":
                unused += [f"{n} (mode: targeted)" for n in ("source", "target") if _set(self, n)]
        else:
            unused += [n for n in ("source", "target") if _set(self, n)]
            if self.mode != "random":
                unused.append("mode")
        if self.kind == "label_flip" and self.mode == "targeted" and self.target is None:
            # found only at run time before, after every other check had run (a review)
            raise ValueError(
                "mode 'targeted' needs target, the class the labels are flipped to "
                "(and optionally source, the class flipped from)"
            )
        if unused:
            raise ValueError(
                f"kind {self.kind!r}"
                + (f", mode {self.mode!r}" if self.kind == "label_flip" else "")
                + f" does not use {', '.join(unused)}: remove it, or choose the attack that does "
                "(label flips: mode, source, target; backdoor: target_class, source_class, trigger)"
            )
        return self


def _set(config: PoisoningSimulationConfig, name: str) -> bool:
    return getattr(config, name) is not None


def backdoor_lift(success: float, clean: float | None, rows: int | None = None) -> float:
    """The poison's gain over the clean model relative to the room the clean model left:
    ``(success - clean) / (1 - clean)`` from the two rates (so the share of the rows the clean
    model kept from the target that the poison sent there, when the poison keeps the clean
    model's); 0 when the clean model sends every triggered row already. Near a clean rate of
    1 the room holds few rows and the figure rests on them. A plain difference never failed
    once the clean rate reached the limit (iris: success 1.0 over a clean rate 0.5 passed a
    limit of 0.5), and the success rate alone failed a trigger the clean model already obeys
    (0.98 over 1.0). With ``rows``, the rates' row count, the figure comes from the counts
    in one division: from the rates, 4 of the 8 rows left read 0.5000000000000001 and failed
    a limit of 0.5 (a review).

    Example::

        >>> backdoor_lift(1.0, 0.5), backdoor_lift(0.75, 0.5), backdoor_lift(0.98, 1.0)
        (1.0, 0.5, 0.0)
        >>> backdoor_lift(5 / 9, 1 / 9, rows=9)
        0.5
    """
    base = clean or 0.0
    if base >= 1.0:
        return 0.0
    if rows:
        hits, kept = round(success * rows), round(base * rows)
        # rates not of ``rows`` rows may round to every row kept: nothing left, as above
        return (hits - kept) / (rows - kept) if kept < rows else 0.0
    return (success - base) / (1.0 - base)


@CHECKS.register
class PoisoningSimulationCheck(Check):
    """Fail when simulated poisoning at ``rate`` hurts the retrained model beyond the limits.

    Example::

        check = PoisoningSimulationCheck(PoisoningSimulationConfig(kind="backdoor"))
        finding = check.execute(CheckContext(train=train, test=test, model=adapter))
    """

    id = "POI002"
    gate_limits = ("max_accuracy_drop", "max_backdoor_success")
    user_code = ("train_fn",)
    name = "simulation"
    title = "Poisoning sensitivity (simulated)"
    category = "poisoning"
    scope = Scope.MODEL
    severity = Severity.MEDIUM
    tags = (ATLAS_POISON_TRAINING_DATA, ATLAS_BACKDOOR_TRIGGER, OWASP_DATA_POISONING)
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    needs_target = True
    enabled_by_default = False
    Config = PoisoningSimulationConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, PoisoningSimulationConfig)
        model, train, test = ctx.model, ctx.train, ctx.test
        if model is None or test is None:
            return self.skip(ctx, "needs a model and a test dataset")
        if train is None:
            return self.skip(ctx, "needs the training dataset to poison: set data.train")
        if train.target is None or test.target is None:
            return self.skip(ctx, "needs the target column in train and test (set data.target)")
        seed = int(ctx.rng(self.id).integers(2**31 - 1))
        tracker = BudgetTracker(Budget(max_seconds=cfg.max_seconds))
        try:
            recipe: Any = model
            if cfg.train_fn is not None:
                from bastion._user_code import resolve_reference

                recipe = resolve_reference(cfg.train_fn, what="train_fn")
            trainer = resolve_trainer(recipe, seed=seed, epochs=cfg.epochs)
        except CapabilityError as err:
            return self.skip(ctx, str(err))
        # the columns the model reads, as the other attack checks take them: a column it
        # does not read (a record id) reached the clone's fit and the model's predict, which
        # refused it
        names = test.model_inputs(model)
        lacking = train_lacks(train, names)
        if lacking:
            return self.skip(ctx, lacking)
        keep_train = train.frame[train.target].notna().to_numpy()
        keep_test = test.frame[test.target].notna().to_numpy()
        X_train = train.features[names].loc[keep_train].reset_index(drop=True)
        y_train = train.labels[keep_train]
        X_test = test.features[names].loc[keep_test].reset_index(drop=True)
        y_test = test.labels[keep_test]
        if len(np.unique(y_train)) < 2:
            return self.skip(ctx, "the training labels hold fewer than 2 classes")
        names = list(X_train.columns.astype(str))
        constraints = None
        trigger: dict[int, float] | None = None
        if cfg.kind == "backdoor":
            schema = ctx.schema if ctx.schema is not None else FeatureSchema()
            constraints = FeatureConstraints.from_schema(schema, names, X_train)
            if cfg.trigger is not None:
                trigger = _trigger_positions(cfg.trigger, names)
        sim = simulate_poisoning(
            trainer,
            X_train,
            y_train,
            X_test,
            y_test,
            kind=cfg.kind,
            rate=cfg.rate,
            mode=cfg.mode,
            source=cfg.source,
            target=cfg.target,
            trigger=trigger,
            target_class=cfg.target_class,
            source_class=cfg.source_class,
            n_trigger_features=cfg.n_trigger_features,
            constraints=constraints,
            seed=seed,
            clean_model=None if cfg.retrain_clean else model,
        )
        precision = recall = None
        n_flagged: int | None = None
        activation: dict[str, Any] = {}
        # None: the detectors ran; else why they did not (or not to their end)
        detectors_stopped: str | None = (
            f"not run: {time_budget_text(cfg.max_seconds)} was reached by the retrainings"
            if tracker.out_of_time()
            else None
        )
        if detectors_stopped is None:
            try:
                # what the retrainings left of the budget bounds the detectors' own stages
                with wall_deadline(tracker.seconds_left()):
                    issues = find_label_issues(
                        sim.X_poisoned,
                        sim.y_poisoned,
                        method=cfg.detection_method,
                        cv=min(cfg.cv, len(y_train)),
                        seed=seed,
                    )
                    precision, recall = precision_recall(issues.flagged, sim.poisoned_indices)
                    n_flagged = issues.n_flagged
                    activation = _activation_detection(cfg, model, sim, seed)
            except (TimeBudgetError, KeyboardInterrupt) as err:
                # a detector cut short measured nothing: no partial precision or recall; the
                # simulation's figures stand and are judged (Ctrl-C lost them before)
                precision = recall = n_flagged = None
                activation = {}
                if isinstance(err, KeyboardInterrupt):
                    note_interrupt()
                    detectors_stopped = "stopped: interrupted (Ctrl-C)"
                else:
                    detectors_stopped = f"stopped: {err} ({time_budget_text(cfg.max_seconds)})"
        success_rate = sim.backdoor_success_rate
        metrics: dict[str, float | int | None] = {
            **sim.metrics(),
            # the figure the backdoor limit judges
            "backdoor_lift": (
                backdoor_lift(success_rate, sim.clean_trigger_rate, sim.n_triggered)
                if success_rate is not None
                else None
            ),
            "precision": precision,
            "recall": recall,
            "n_flagged": n_flagged,
            "activation_precision": activation.get("precision"),
            "activation_recall": activation.get("recall"),
        }
        threshold: dict[str, float | None] = {"max_accuracy_drop": cfg.max_accuracy_drop}
        violations: list[str] = []
        if sim.accuracy_drop > cfg.max_accuracy_drop:
            violations.append(
                f"accuracy drop {sim.accuracy_drop:.3f} > max_accuracy_drop "
                f"{cfg.max_accuracy_drop:g}"
            )
        success = sim.backdoor_success_rate
        if cfg.kind == "backdoor":
            threshold["max_backdoor_success"] = cfg.max_backdoor_success
            problem = _judge_backdoor(cfg, sim)
            if problem is not None:
                violations.append(problem)
        evidence: dict[str, Any] = {
            "kind": cfg.kind,
            "rate": sim.applied_rate,
            "requested_rate": cfg.rate,
            "n_poisoned": sim.n_poisoned,
            "retrained": (
                f"train_fn {cfg.train_fn}"
                if cfg.train_fn is not None
                else "torch module"
                if hasattr(model, "module")
                else "clone of the estimator"
            ),
            "clean_reference": "retrained" if cfg.retrain_clean else "the model under test",
            "detection_method": cfg.detection_method,
        }
        if detectors_stopped:
            evidence["detectors"] = detectors_stopped
        if activation:
            evidence["activation_detector"] = activation.get("evidence")
        if cfg.kind == "backdoor":
            evidence["target_class"] = sim.target_class
            # the rows the lift is a share of: those the clean model kept from the target
            evidence["lift_rows"] = _lift_rows(sim) if success is not None else 0
            # a synthetic trigger, not data: feature names and the values it sets
            evidence["trigger"] = {names[j]: v for j, v in sim.trigger.items()}
            evidence["constraints"] = constraints.describe() if constraints else None
        elif cfg.mode == "targeted":
            evidence["target"] = sim.target_class
        message = _summary(cfg, sim, success)
        if detectors_stopped:
            message += f" Detectors {detectors_stopped}."
        else:
            message += f" Detector ({cfg.detection_method}): {_detection(precision, recall)}."
        if "precision" in activation:
            found = _detection(activation["precision"], activation["recall"])
            message += f" Activation clustering: {found}."
        if violations:
            status = Status.FAIL
            message = "Sensitive to poisoning: " + "; ".join(violations) + ". " + message
        else:
            status = Status.PASS
        return self.finding(
            ctx, status, message, metrics=metrics, threshold=threshold, evidence=evidence
        )


def _activation_detection(
    cfg: PoisoningSimulationConfig, model: Any, sim: PoisoningSimulation, seed: int
) -> dict[str, Any]:
    """POI003's detector on the poisoned training set, for a backdoor on a torch module.

    Returns ``{}`` when it does not apply, ``{"evidence": why}`` when it cannot read the
    retrained model, else precision, recall and evidence.
    """
    if cfg.kind != "backdoor" or getattr(model, "module", None) is None:
        return {}
    from bastion.attacks.poisoning.spectral import activation_clustering

    try:
        found = activation_clustering(sim.poisoned_model, sim.X_poisoned, sim.y_poisoned, seed=seed)
    except ModelError as err:
        return {"evidence": {"skipped": str(err)}}
    precision, recall = precision_recall(found.flagged, sim.poisoned_indices)
    return {
        "precision": precision,
        "recall": recall,
        "evidence": {
            "presence": found.details["presence"],
            "suspect_classes": found.details["suspect_classes"],
            "n_flagged": found.n_flagged,
        },
    }


def _trigger_positions(trigger: dict[str, float], names: list[str]) -> dict[int, float]:
    position = {name: i for i, name in enumerate(names)}
    unknown = [name for name in trigger if name not in position]
    if unknown:
        raise ConfigError(
            f"trigger names feature(s) {unknown[:5]} that the training data lacks; "
            f"features are {names[:10]}{' ...' if len(names) > 10 else ''}"
        )
    return {position[name]: float(value) for name, value in trigger.items()}


def _summary(
    cfg: PoisoningSimulationConfig, sim: PoisoningSimulation, success: float | None
) -> str:
    what = f"{cfg.mode} label flips" if cfg.kind == "label_flip" else "a backdoor trigger"
    # the share actually poisoned: on small data the minimum of one row can exceed the rate
    # asked for (1 row of 40 read "1.0%" at rate 0.01)
    share = f"{sim.applied_rate:.1%}"
    if abs(sim.applied_rate - cfg.rate) > 0.0005:
        share += f", {cfg.rate:.1%} asked"
    text = (
        f"Retrained with {what} on {sim.n_poisoned} training rows ({share}): test accuracy "
        f"{sim.clean_accuracy:.3f} -> {sim.poisoned_accuracy:.3f}."
    )
    if success is not None:
        text += " Triggered test inputs sent to the target class: "
        text += f"{success:.1%} of {sim.n_triggered} rows"
        if sim.clean_trigger_rate is not None:
            # the limit judges the lift: 27.3% beside a limit of 0.2, with "pass", read as
            # an error without the clean model's share (a review)
            lift = backdoor_lift(success, sim.clean_trigger_rate, sim.n_triggered)
            text += (
                f" (the clean model's: {sim.clean_trigger_rate:.1%}; the poison's lift, which "
                f"max_backdoor_success judges: {lift:.1%})"
            )
        text += "."
    return text


def _judge_backdoor(cfg: PoisoningSimulationConfig, sim: PoisoningSimulation) -> str | None:
    """Why the backdoor fails the gate (its lift past ``max_backdoor_success``, or a limit
    that cannot be judged on this test set), or None."""
    success = sim.backdoor_success_rate
    if success is None:
        # no test row could carry the trigger to judge (none of the source class, or every
        # row already of the target class): a limit not judged fails closed
        victims = (
            f"class {cfg.source_class!r}"
            if cfg.source_class is not None
            else f"a class other than the target {sim.target_class!r}"
        )
        return (
            f"backdoor success is undefined (no test row of {victims} to stamp): "
            "max_backdoor_success not judged"
        )
    clean = sim.clean_trigger_rate or 0.0
    if clean >= 1.0:
        # the clean model already sends every stamped row to the target: nothing is left
        # for the poison to show, and a lift of 0 passed (a review: iris, the default
        # trigger virginica-like)
        return (
            "the clean model already sends every triggered test row to the target class "
            f"{sim.target_class!r} (clean trigger rate 1.0), so the poison's effect cannot be "
            "measured: max_backdoor_success not judged; choose another trigger or target_class"
        )
    lift = backdoor_lift(success, sim.clean_trigger_rate, sim.n_triggered)
    limit = cfg.max_backdoor_success
    if lift > limit:
        beside = f"; success {success:.3f} where the clean model's was {clean:.3f}" if clean else ""
        return (
            f"backdoor lift {lift:.3f} > max_backdoor_success {limit:g} (on {sim.n_triggered} "
            f"triggered test row(s){beside})"
        )
    if limit <= 0:
        return (
            "max_backdoor_success 0 cannot be shown to hold on any test set (a lift of "
            f"{lift:.3f} on {sim.n_triggered} triggered rows bounds the true lift only below "
            "3 / rows): set a small positive limit"
        )
    # a lift within the limit on too few rows shows nothing: no success in n rows bounds the
    # rate below 3 / n only (95%, the rule of three; a review saw 0 of 1 triggered row pass
    # a limit of 0.5); a limit of 1 cannot be crossed
    room = _lift_rows(sim)
    if limit < 1.0 and room < _rows_to_judge(limit):
        return (
            f"backdoor lift {lift:.3f} within max_backdoor_success {limit:g}, but on "
            f"{_rows_text(room, sim.n_triggered)}: fewer than the {_rows_to_judge(limit)} "
            "that can show a lift below it (the rule of three), so it is not judged; give a "
            "larger test set"
        )
    return None


def _lift_rows(sim: PoisoningSimulation) -> int:
    """The rows the lift is a share of: the triggered ones the clean model kept from the
    target, from the counts (from the rate, 17 * (1 - 11 / 17) was 5.999..., fewer than 6)."""
    return sim.n_triggered - round((sim.clean_trigger_rate or 0.0) * sim.n_triggered)


def _rows_to_judge(limit: float) -> int:
    """The fewest rows on which no success bounds the rate below ``limit`` (95%, the rule
    of three: 3 / n); ``limit`` > 0."""
    return math.ceil(3.0 / limit - 1e-9)


def _rows_text(room: int, triggered: int) -> str:
    """The rows a lift rests on: the triggered ones, less those the clean model already sent
    to the target."""
    if room >= triggered:
        return f"{triggered} triggered test row(s)"
    return f"{room} of {triggered} triggered test rows (the clean model sent the rest)"


def _detection(precision: float | None, recall: float | None) -> str:
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    return f"precision {fmt(precision)}, recall {fmt(recall)}"

"""ADV001 evasion: adversarial robustness of the model under a budgeted evasion attack.

What it detects
    A model whose decisions flip under small, feasible changes of its inputs: an attacker
    who controls part of an input (a loan applicant, a fraudster, a sensor) can choose the
    answer. The check attacks a seeded sample of test points (``n_points``) within a radius
    ``eps`` and measures how many keep their correct label.
How
    ``attack: auto`` runs the white-box ensemble ``auto`` (APGD-CE, APGD-DLR, Square) when
    the model gives input gradients, else the score-based Square attack, else (labels only)
    HopSkipJump; any registered evasion attack id can be named instead. Every candidate
    respects the feasibility constraints of the schema (immutable, integer and one-hot
    features, ranges; bounds the schema does not declare are inferred from the training data
    and reported as such). Tabular ``eps`` is in standard deviations of each feature (the
    training data's), tensor models' ``eps`` in input units (``eps_unit``: a model whose
    ``input_shape`` has two dimensions or more takes tensors; a flat ``(d,)`` shape, which a
    ``torch.export`` archive of a tabular model carries, is tabular). Without training data,
    bounds and std units come from the test data, and a sanity finding says so. Each point's
    bounds hold its own value, so a test point past the training range can still be
    attacked. The attack runs at every radius
    of ``eps_curve``; each curve point is the per-point worst case over the radii up to it
    (an adversarial example within a smaller ball lies within the larger one).
Default radius
    Tabular: 0.5 standard deviations (L-inf) or 1.0 (L2). Tensor models: 8/255 of the median
    feature range (declared bounds, else the training data's range without the inferred
    bounds' margin; L-inf, the CIFAR-10 standard) or 0.5 of it (L2). Set ``eps`` to the change
    an attacker can afford in your domain. ``eps_curve`` defaults to 0.25, 0.5, 1 and 2 times
    ``eps``.
Metrics
    The stable names of :meth:`~bastion.attacks.results.EvasionResult.metrics` at ``eps``:
    ``clean_accuracy``, ``robust_accuracy`` (correct and not broken, over all sampled
    points), ``attack_success_rate`` (broken over the points correct before the attack),
    ``median_perturbation`` / ``mean_perturbation`` (successful points, eps units),
    ``median_queries`` / ``max_queries`` (per point, every model call counted), ``n_points``,
    ``attacked_points``, ``eps``.
Sanity findings (status warn; false assurance is worse than no assurance)
    Zero gradients at most points or NaN gradients (white-box attacks), a black-box stage
    breaking points the white-box stages could not (gradient masking), attack success that
    falls as eps grows (below its best at a smaller radius: an unreliable attack),
    predictions that differ when the same rows are asked twice (randomised defences fool
    attacks), an attack cut short by the time or query budget (a black-box stage of ``auto``
    left no query to search with counts), bounds inferred from the test data, and features
    pinned by inferred bounds of no width (they never vary in the reference data).
Gate
    Fails when ``robust_accuracy < min_robust_accuracy`` or ``attack_success_rate >
    max_attack_success_rate``; a limit on a rate that is undefined (no correctly classified
    point) fails closed, and so do figures within the limits from an attack stopped by the
    time budget, or stopped before it attacked any point (the limits were not shown to hold;
    with no limit set, the run is a warning; after Ctrl-C the runner makes it an error).
Evidence
    ``robustness_curve``, ``constraints`` (counts), ``bounds_inferred``, ``eps`` and, in std
    units, ``eps_original_units`` (what eps allows each feature, in its own units), the mean
    change per feature in original units, ``sanity``; adversarial examples only under
    ``samples`` (tabular, a flat torch input included: the features that changed, by how
    much; tensors: original and adversarial arrays), which reports drop unless raw rows are
    allowed.
References
    MITRE ATLAS AML.T0015 (evade ML model), AML.T0043 (craft adversarial data); OWASP ML01
    (input manipulation). Croce and Hein, ICML 2020 (AutoAttack); Andriushchenko et al., ECCV
    2020 (Square); Chen et al., IEEE S&P 2020 (HopSkipJump); Carlini et al., "On evaluating
    adversarial robustness" (2019) for the sanity checks.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from bastion.attacks.base import ATTACKS, Attack, EvasionAttack
from bastion.attacks.budget import Budget
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.evasion._blackbox import change_report
from bastion.attacks.results import EvasionResult
from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope, config_as
from bastion.data.schema import FeatureSchema
from bastion.exceptions import CapabilityError, ConfigError, ModelOutputError, RemoteDeadlineError
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability, ModelAdapter, row_shape
from bastion.threats import ATLAS_CRAFT_ADVERSARIAL_DATA, ATLAS_EVASION, OWASP_INPUT_MANIPULATION

__all__ = ["EvasionCheck", "EvasionCheckConfig", "default_eps", "resolve_attack"]

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
_CURVE_FACTORS = (0.25, 0.5, 1.0, 2.0)
_BLACK_BOX = ("square", "hopskipjump")
_MAX_CHANGES_SHOWN = 10
# a black-box stage of auto with fewer search iterations than this was cut by the budget
_MIN_SEARCH_ITERATIONS = 10


class EvasionCheckConfig(CheckConfig):
    """Threat model, budgets and gate limits of the evasion check.

    Attributes:
        attack: ``auto`` (white-box ``auto`` with gradients, else ``square``, else
            ``hopskipjump``) or any registered evasion attack id.
        eps: radius (std units for tabular data, input units for tensor models); ``None``
            takes the default described in the module docstring.
        eps_unit: ``auto`` (input units for a model whose ``input_shape`` has two dimensions
            or more, else std units), ``std`` or ``input`` (a flat image model).
        norm: ``"inf"`` or ``"2"``.
        eps_curve: radii of the robustness curve (``eps`` is always added; empty: ``eps``
            alone).
        n_points: test points attacked (a seeded sample).
        max_queries_per_sample: per-point query cap of each run (each radius of the curve
            is a run; the evidence's queries are the run at ``eps``).
        max_seconds: wall-time budget of the whole check.
        min_robust_accuracy, max_attack_success_rate: the gate (off when ``None``).
        n_samples: adversarial examples shown under ``evidence["samples"]``.
    """

    attack: str = "auto"
    eps: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    eps_unit: Literal["auto", "std", "input"] = "auto"
    norm: Literal["inf", "2"] = "inf"
    eps_curve: tuple[float, ...] | None = None
    n_points: int = Field(default=200, ge=1)
    max_queries_per_sample: int = Field(default=1_000, ge=3)
    max_seconds: float = Field(default=120.0, gt=0.0)
    min_robust_accuracy: Fraction | None = None
    max_attack_success_rate: Fraction | None = None
    n_samples: int = Field(default=3, ge=0, le=50)
    steps: int | None = Field(default=None, ge=1)

    @field_validator("norm", mode="before")
    @classmethod
    def _norm_as_text(cls, value: Any) -> Any:
        """``norm: 2`` and ``norm: .inf`` in YAML are numbers: "expected one of inf, 2, got
        2" refused them."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value == 2:
                return "2"
            if value == float("inf"):
                return "inf"
        return value

    @field_validator("attack")
    @classmethod
    def _known_evasion_attack(cls, value: str) -> str:
        # a typo in the policy is a configuration error (exit 2), not a failed gate
        known = sorted(a.id for a in ATTACKS if a.family == "evasion")
        if value != "auto" and value not in known:
            # auto is an attack of the registry too: named once (it was listed twice)
            raise ValueError(f"expected one of {', '.join(known)}; got {value!r}")
        return value

    @field_validator("eps_curve")
    @classmethod
    def _positive_radii(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and not all(np.isfinite(v) and v > 0 for v in value):
            raise ValueError(f"every eps_curve radius must be a finite number > 0; got {value}")
        return value

    @model_validator(mode="after")
    def _steps_for_a_named_attack(self) -> EvasionCheckConfig:
        # a configuration error (exit 2), not an error finding at run time (exit 1): steps
        # on an attack that has no iteration count (square, fgsm) cannot be honoured
        if self.steps is not None and self.attack != "auto" and _step_knob(self.attack) is None:
            raise ValueError(
                f"steps: attack {self.attack!r} has no iteration count (its budget is "
                "max_queries_per_sample, or it takes one step)"
            )
        return self


def _configured(attack_id: str, steps: int | None, chosen: bool = False) -> Attack:
    """The attack with ``steps`` iterations where it has such a knob (PGD ``steps``, APGD
    and ``auto`` ``n_iter``, HopSkipJump ``max_iter``); others keep their paper defaults.
    An attack without one is an error when named, and runs as it is when ``chosen`` by
    ``attack: auto`` (Square for a model without gradients: the caller says so)."""
    cls = ATTACKS.get(attack_id)
    if steps is None:
        return cls()
    knob = _step_knob(attack_id)
    if knob is None:
        if chosen:
            return cls()
        raise ConfigError(
            f"checks.robustness.evasion.steps: attack {attack_id!r} has no iteration count"
        )
    return cls(cls.Config(**{knob: steps}))


def _step_knob(attack_id: str) -> str | None:
    """The name of the attack's iteration count, if it has one."""
    fields = ATTACKS.get(attack_id).Config.model_fields
    return next((k for k in ("steps", "n_iter", "max_iter") if k in fields), None)


def resolve_attack(requested: str, model: ModelAdapter) -> str:
    """The attack id that ``attack: auto`` means for ``model`` (other ids pass through)."""
    if requested != "auto":
        return requested
    if model.has(Capability.LOSS_GRADIENT) and "auto" in ATTACKS:
        return "auto"
    if model.has(Capability.PREDICT_PROBA):
        return "square"
    return "hopskipjump"


def default_eps(norm: str, tensor: bool, constraints: FeatureConstraints) -> float:
    """The documented default radius (see the module docstring); ``constraints`` give the
    feature ranges (for tensors, build them with ``margin=0``: the data's own range)."""
    if not tensor:
        return 0.5 if norm == "inf" else 1.0
    width = constraints.upper - constraints.lower
    width = width[np.isfinite(width) & (width > 0)]
    span = float(np.median(width)) if width.size else 1.0
    return span * (8 / 255 if norm == "inf" else 0.5)


@CHECKS.register
class EvasionCheck(Check):
    """Attack the model within ``eps`` and gate on robust accuracy / attack success rate.

    Example::

        check = EvasionCheck(EvasionCheckConfig(eps=0.5, min_robust_accuracy=0.7))
        finding = check.execute(CheckContext(model=adapter, train=train, test=test))
        finding.metrics["robust_accuracy"], finding.evidence["robustness_curve"]
    """

    id = "ADV001"
    gate_limits = ("min_robust_accuracy", "max_attack_success_rate")
    name = "evasion"
    title = "Adversarial robustness (evasion)"
    category = "robustness"
    scope = Scope.MODEL
    severity = Severity.HIGH
    tags: ClassVar[tuple[str, ...]] = (
        ATLAS_EVASION,
        ATLAS_CRAFT_ADVERSARIAL_DATA,
        OWASP_INPUT_MANIPULATION,
    )
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    needs_target = True
    enabled_by_default = False
    Config = EvasionCheckConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, EvasionCheckConfig)
        started = time.perf_counter()
        model, test = ctx.model, ctx.test
        if model is None or test is None or test.target is None:
            return self.skip(ctx, "needs a model and a labelled test set")
        names = test.model_inputs(model)
        frame = test.features[names]
        text = [c for c in names if not _numeric(frame[c])]
        if text:
            return self.skip(
                ctx,
                f"evasion attacks need numeric features; non-numeric: {text[:5]} (encode "
                "categories as one-hot columns and declare their one_hot_group in the schema)",
            )
        attack_id = resolve_attack(cfg.attack, model)
        chosen = cfg.attack == "auto"
        attack = _configured(attack_id, cfg.steps, chosen)
        if not isinstance(attack, EvasionAttack):
            raise ConfigError(
                f"checks.robustness.evasion.attack must name an evasion attack; {attack_id!r} "
                f"is a {attack.family} attack"
            )
        try:
            attack.check_model(model)
        except CapabilityError as err:
            return self.skip(ctx, str(err))

        tensor = _takes_tensors(cfg.eps_unit, model)
        reference = ctx.train.features if ctx.train is not None else frame
        if set(names) <= set(reference.columns):
            reference = reference[names]
        schema = ctx.schema or FeatureSchema()
        constraints = FeatureConstraints.from_schema(
            schema, names, reference, scale_by_std=not tensor
        )
        eps = cfg.eps
        if eps is None:
            # tensors: the data's own range (the inferred bounds add a margin)
            ranges = (
                FeatureConstraints.from_schema(schema, names, reference, margin=0.0)
                if tensor
                else constraints
            )
            eps = default_eps(cfg.norm, tensor, ranges)
        # an empty curve is eps alone (it read as "unset": the default four radii ran, and
        # the run at eps got half the time)
        default = [f * eps for f in _CURVE_FACTORS]
        radii = sorted({*(cfg.eps_curve if cfg.eps_curve is not None else default), eps})

        rng = ctx.rng(self.id)
        # a row without a label cannot be judged: it would count as misclassified
        has_label = test.frame[test.target].notna().to_numpy()
        unlabelled = int((~has_label).sum())
        if not has_label.any():
            return self.skip(ctx, f"the test set's {test.target!r} column holds no labels")
        # nor can a row with a missing feature value be attacked (a model that reads NaN as
        # missing predicts it, but no perturbation of NaN is defined): left out, counted
        values = frame.to_numpy(dtype=np.float64)
        complete = np.isfinite(values).all(axis=1)
        incomplete = int((has_label & ~complete).sum())
        # an integer kind the schema guessed from whole numbers in the training data, which
        # test rows contradict with fractions, is no constraint: those rows were left out as
        # breaking their own declared constraints, and the gate judged what remained (one
        # row of 171, from a review). A declared kind still holds, and still leaves them out
        guessed = _guessed_integers(constraints, schema, values[has_label & complete])
        if guessed.size:
            integer = np.asarray(constraints.integer, dtype=bool).copy()
            integer[guessed] = False
            constraints = replace(constraints, integer=integer)
        # nor a row that breaks its own constraints: an attack must repair it first, beyond
        # a small eps, and it read as robust (a review saw drop_first dummies declared a
        # one-hot group pass a model that fails with them declared immutable)
        checkable = np.where(complete[:, None], values, 0.0)
        invalid = constraints.invalid_rows(checkable)
        broken_rows = constraints.invalid_mask(checkable) & has_label & complete
        invalid_counts = {kind: int((mask & broken_rows).sum()) for kind, mask in invalid.items()}
        labelled = np.flatnonzero(has_label & complete & ~broken_rows)
        if len(labelled) == 0:
            if broken_rows.any():
                return self.skip(
                    ctx,
                    "every labelled test row breaks its own declared constraints "
                    f"({_invalid_text(invalid_counts)}): fix the schema or the data",
                )
            return self.skip(
                ctx,
                f"every labelled test row has a missing or infinite feature value ({incomplete})",
            )
        n = len(labelled)
        rows = labelled[np.sort(rng.choice(n, size=min(cfg.n_points, n), replace=False))]
        X = values[rows]
        y = np.asarray(test.labels)[rows]
        seed = int(rng.integers(2**31 - 1))

        sanity: list[str] = []
        inferred = any(source == "inferred" for source in constraints.bound_source)
        if ctx.train is None and (inferred or not tensor):
            sanity.append(
                "no training data: bounds and std units come from the test data (the points "
                "attacked among them), which can pin the attack; give data.train or declare "
                "the features' ranges in the schema"
            )
        if broken_rows.any():
            sanity.append(
                f"{int(broken_rows.sum())} test row(s) break their own declared constraints "
                f"({_invalid_text(invalid_counts)}) and were left out: no attack can keep them "
                "within eps. A one-hot group must hold exactly one 1 per row (declare "
                "drop_first dummies as plain binary features); an integer feature whole "
                "numbers"
            )
        if guessed.size:
            sanity.append(
                f"{guessed.size} feature(s) hold whole numbers in the "
                f"{'training' if ctx.train is not None else 'test'} data but fractions in "
                f"test rows ({_some_names(constraints, guessed)}): not held to whole numbers; "
                "declare their kind in the schema (integer, or numeric) to say which"
            )
        sanity += _pinned(constraints, "training" if ctx.train is not None else "test")
        sanity += _stuck_integers(constraints, eps)

        results = _run_curve(attack, model, X, y, eps, radii, cfg, constraints, seed, started)
        # after the attacks, in the time they left: asked first, four requests of every point
        # took a slow or rate-capped endpoint's whole budget (a review: at 1 request a
        # second, 4 s of 4, and the attack made one query a point)
        if any(r.stopped == "interrupted" for r in results.values()):
            # no query after Ctrl-C (a second one, during these, lost the partial result)
            sanity.append(
                "predictions were not asked twice (interrupted): non-determinism not checked"
            )
        elif time.perf_counter() < started + cfg.max_seconds:
            sanity += _asked_twice(model, X[:_ASKED_TWICE_ROWS])
        else:
            sanity.append(
                "predictions were not asked twice (no time left): non-determinism not checked"
            )
        main = results[eps]
        merged = _worst_case(results, eps)
        # for `bastion attack evasion --save-adv`: the same worst case the metrics report
        ctx.artifacts["evasion_result"] = merged
        ctx.artifacts["feature_names"] = list(names)
        ctx.artifacts["input_shape"] = row_shape(model)
        ctx.artifacts["rows"] = rows
        curve = _curve(results, main.clean_correct)
        sanity += _sanity(results, main, attack_id, constraints.rounds)
        sanity += _constant_predictions(main, y)

        metrics: dict[str, float | int | None] = {
            k: v for k, v in merged.metrics().items() if k != "time_s"
        }
        if metrics["clean_accuracy"] == 0:
            # nothing to attack: "robust" by default is no finding (labels written otherwise
            # than the model's classes, say)
            classes = getattr(model, "classes_", None)
            named = f" {list(classes)[:10]}" if classes is not None else " (none declared)"
            sanity.append(
                f"no sampled point is classified correctly, so none was attacked: check that "
                f"the labels ({sorted(map(str, set(y.tolist())))[:5]}) are the model's "
                f"classes{named}"
            )
        status, verdict, threshold = _judge(cfg, metrics)
        unproven = _unproven(main) if status is Status.PASS and threshold else None
        if unproven:
            # a limit set and not shown to hold fails closed, in every attack check (a review
            # saw a time budget spent before the first attack query pass min_robust_accuracy
            # at the clean accuracy, as a warn that the gate let through)
            status, verdict = Status.FAIL, f"Limits not shown to hold: {unproven}."
        if status is Status.PASS and sanity:
            status = Status.WARN
        unit = "std" if not tensor else "input units"
        ra, asr = metrics["robust_accuracy"], metrics["attack_success_rate"]
        message = (
            f"Robust accuracy {_fmt(ra)} at eps={eps:g} ({unit}, L{cfg.norm}) against "
            f"{attack_id}; attack success rate {_fmt(asr)} over "
            f"{metrics['attacked_points']} correctly classified of {len(X)} points. {verdict}"
        )
        if unlabelled:
            message += f" {unlabelled} test row(s) without a label left out."
        if incomplete:
            message += (
                f" {incomplete} test row(s) with a missing or infinite feature value left out."
            )
        if cfg.steps is not None and chosen and _step_knob(attack_id) is None:
            message += (
                f" steps={cfg.steps} does not apply to {attack_id} (chosen by auto for this "
                "model): it ran on its query budget."
            )
        if sanity:
            message += f" Sanity warning(s): {'; '.join(sanity)}."
        evidence: dict[str, Any] = {
            "unlabelled_rows_left_out": unlabelled,
            "incomplete_rows_left_out": incomplete,
            "constraint_violating_rows_left_out": int(broken_rows.sum()),
            "attack": attack_id,
            "attack_requested": cfg.attack,
            "norm": cfg.norm,
            "eps": eps,
            "eps_unit": "std" if not tensor else "input",
            "bounds_reference": "train" if ctx.train is not None else "test",
            "robustness_curve": curve,
            "curve_complete": len(results) == len(radii),
            "constraints": constraints.describe(),
            "bounds_inferred": "inferred" in constraints.bound_source,
            "perturbation_original_units": _changes(merged, X, constraints),
            "stopped": {f"{e:g}": r.stopped for e, r in results.items() if r.stopped},
            "sanity": sanity,
        }
        if not tensor:  # std units: what eps allows each feature, in its own units
            # none for a feature held fixed (immutable, or no spread in the training data)
            movable = ~constraints.fixed_columns()
            raw = (eps * np.asarray(constraints.scale) * movable).tolist()
            evidence["eps_original_units"] = dict(zip(names, raw, strict=True))
        if "device" in main.extra:  # white-box attacks run the torch module there
            evidence["device"] = main.extra["device"]
        stages = main.extra.get("stages")
        if isinstance(stages, list):
            evidence["stages"] = [
                {k: s.get(k) for k in ("attack", "points", "new_successes", "stopped")}
                for s in stages
                if isinstance(s, dict)
            ]
        samples = _samples(merged, X, rows, constraints, model, cfg.n_samples)
        if samples:
            evidence["samples"] = samples
        return self.finding(
            ctx, status, message, metrics=metrics, threshold=threshold, evidence=evidence
        )


def _numeric(column: pd.Series) -> bool:
    return bool(
        pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype)
    )


def _fmt(value: float | int | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# rows asked twice for the non-determinism note: randomised outputs show on a few
_ASKED_TWICE_ROWS = 100


def _asked_twice(model: ModelAdapter, X: np.ndarray) -> list[str]:
    """Sanity notes from predicting ``X`` twice: the labels (what the attacks' success checks
    read) and, where the model gives them, the probabilities, which dropout left on moves
    long before it moves a label (asking for labels only, such a model looked
    deterministic). Probabilities the adapter refuses (NaN, outside [0, 1]) are a note of
    their own; the labels are compared all the same."""
    n = len(X)
    changed: list[str] = []
    notes: list[str] = []
    relabelled = int(np.sum(np.asarray(model.predict(X)) != np.asarray(model.predict(X))))
    if relabelled:
        changed.append(f"{relabelled} of {n} rows got another label")
    if model.has(Capability.PREDICT_PROBA):
        try:
            first, second = (
                np.asarray(model.predict_proba(X), dtype=np.float64).reshape(n, -1)
                for _ in range(2)
            )
        except ModelOutputError as err:
            notes.append(f"unusable probabilities ({err}): score-based attacks cannot read them")
        else:
            if first.shape != second.shape:
                changed.append(f"probabilities in shapes {first.shape} and {second.shape}")
            elif first.size:
                moved = np.abs(first - second).max(axis=1)
                if (rows := int((moved > 1e-6).sum())) > 0:
                    changed.append(
                        f"{rows} of {n} rows got other probabilities (by up to {moved.max():.3g})"
                    )
    if changed:
        notes.insert(
            0,
            f"non-deterministic predictions: {'; '.join(changed)} when asked twice; randomised "
            "outputs mislead attacks, so robustness figures may be overstated",
        )
    return notes


def _run_curve(
    attack: EvasionAttack,
    model: ModelAdapter,
    X: np.ndarray,
    y: np.ndarray,
    eps: float,
    radii: list[float],
    cfg: EvasionCheckConfig,
    constraints: FeatureConstraints,
    seed: int,
    started: float,
) -> dict[float, EvasionResult]:
    """The attack at ``eps`` first (the gate's figure), then the other radii in the time left."""
    order = [eps, *[r for r in radii if r != eps]]
    deadline = started + cfg.max_seconds
    results: dict[float, EvasionResult] = {}
    for i, radius in enumerate(order):
        left = deadline - time.perf_counter()
        if i and left <= 0:
            break
        runs_left = len(order) - i
        # the gate's run may take half the time; the curve shares the rest
        share = left / 2 if i == 0 and runs_left > 1 else left / runs_left
        budget = Budget(
            max_queries_per_sample=cfg.max_queries_per_sample,
            max_seconds=max(share, 1e-3),
        )
        try:
            results[radius] = attack.run(
                model,
                X,
                y,
                eps=radius,
                norm=cfg.norm,
                constraints=constraints,
                budget=budget,
                seed=seed,
            )
        except RemoteDeadlineError:
            if i == 0:
                raise  # the gate's own run measured nothing
            # a remote model out of time before a radius's clean predictions came back: the
            # curve stops there (raising lost the gate's finished run to an error finding)
            break
        if results[radius].stopped == "interrupted":
            break  # Ctrl-C stops the check, not one radius of it
    return dict(sorted(results.items()))


def _worst_case(results: dict[float, EvasionResult], eps: float) -> EvasionResult:
    """The run at ``eps`` with every point broken within a smaller radius counted as broken."""
    main = results[eps]
    correct = main.clean_correct
    x_adv = main.x_adv.copy()
    adv_pred = main.adv_pred.copy()
    success = main.success.copy()
    perturbation = main.perturbation.copy()
    for radius, other in results.items():
        if radius >= eps:
            continue
        newly = other.success & correct & ~success
        if newly.any():
            x_adv[newly] = other.x_adv[newly]
            if adv_pred.dtype != other.adv_pred.dtype:
                adv_pred = adv_pred.astype(np.result_type(adv_pred.dtype, other.adv_pred.dtype))
            adv_pred[newly] = other.adv_pred[newly]
            perturbation[newly] = other.perturbation[newly]
            success |= newly
    return replace(main, x_adv=x_adv, adv_pred=adv_pred, success=success, perturbation=perturbation)


def _curve(results: dict[float, EvasionResult], correct: np.ndarray) -> list[dict[str, Any]]:
    """Robust accuracy and success rate per radius, worst case over the radii up to it."""
    broken = np.zeros(len(correct), dtype=bool)
    attacked = int(correct.sum())
    out: list[dict[str, Any]] = []
    for radius, result in results.items():
        broken |= result.success & correct
        out.append(
            {
                "eps": radius,
                "robust_accuracy": float((correct & ~broken).mean()) if len(correct) else None,
                "attack_success_rate": float(broken.sum() / attacked) if attacked else None,
            }
        )
    return out


def _pinned(constraints: FeatureConstraints, reference: str) -> list[str]:
    """Features that never vary in the reference data, which no attack moves, so that a
    robust verdict says nothing about them: mutable ones whose inferred bounds have no width
    (a pixel blank in every training image), and those held for want of spread (eps in std
    units of a constant is no move), each with its own remedy."""
    width = np.asarray(constraints.upper) - np.asarray(constraints.lower)
    inferred = np.array([s == "inferred" for s in constraints.bound_source], dtype=bool)
    held = np.isin(np.asarray(constraints.names, dtype=object), list(constraints.no_spread))
    bounded = np.flatnonzero(inferred & (width <= 0) & ~constraints.fixed_columns())
    notes = []
    if bounded.size:
        notes.append(
            f"{bounded.size} feature(s) never vary in the {reference} data "
            f"({_some_names(constraints, bounded)}): their inferred bounds hold them at "
            "that value, so the attack never moved them; declare their range in the schema "
            "to attack them"
        )
    if held.any():
        spread = np.flatnonzero(held)
        notes.append(
            f"{spread.size} feature(s) never vary in the {reference} data, or by less than "
            f"1e-9 of their size ({_some_names(constraints, spread)}): eps counts in their "
            "standard deviation, about 0, so the attack never moved them; declare their "
            "range and measure eps in input units (eps_unit: input) to attack them"
        )
    return notes


def _stuck_integers(constraints: FeatureConstraints, eps: float) -> list[str]:
    """Mutable integer features that eps cannot move by one whole unit (rounding takes a
    candidate back toward its original value): at the radius judged, none of them changes,
    and a robust verdict says nothing about them (the tensor default of 8/255 of the range
    left every pixel of 0..16 digits in place)."""
    reach = eps * np.asarray(constraints.scale, dtype=np.float64)
    integer = np.asarray(constraints.integer, dtype=bool) & ~constraints.fixed_columns()
    for group in constraints.one_hot_groups:
        # a category switch, not a whole unit: "declare them numeric" was wrong advice for
        # one-hot members (a review)
        integer[group] = False
    stuck = np.flatnonzero(integer & (reach < 1.0))
    if stuck.size == 0:
        return []
    return [
        f"{stuck.size} integer feature(s) cannot move a whole unit within eps={eps:g} "
        f"({_some_names(constraints, stuck)}): the attack never changed them; raise eps, or "
        "declare them numeric if their values need not be whole"
    ]


def _guessed_integers(
    constraints: FeatureConstraints, schema: FeatureSchema, rows: np.ndarray
) -> np.ndarray:
    """Columns whose integer kind was inferred, not declared, and that ``rows`` (the test
    rows judged) contradict with a fraction."""
    integer = np.asarray(constraints.integer, dtype=bool)
    guessed = []
    for j in np.flatnonzero(integer):
        if schema.is_declared(constraints.names[j]):
            continue
        # FeatureConstraints.invalid_rows's tolerance: what float32 roundings leave
        values = rows[:, j]
        tol = np.maximum(1e-4, 2.0**-23 * np.abs(values))
        if bool((np.abs(values - np.rint(values)) > tol).any()):
            guessed.append(j)
    return np.asarray(guessed, dtype=np.int64)


def _some_names(constraints: FeatureConstraints, columns: np.ndarray) -> str:
    """The first 5 features' names, and how many more."""
    shown = ", ".join(constraints.names[j] for j in columns[:5])
    return shown + (f" and {columns.size - 5} more" if columns.size > 5 else "")


def _invalid_text(counts: dict[str, int]) -> str:
    names = {"integer": "a fraction in an integer feature",
             "one_hot": "a one-hot group without exactly one 1"}  # fmt: skip
    return ", ".join(f"{names[kind]}: {n}" for kind, n in counts.items() if n)


def _constant_predictions(main: EvasionResult, y: np.ndarray) -> list[str]:
    """A model that answers one class for every point of several classes cannot be moved,
    and reads as robust: most often its outputs are misread (a torch model ending in a
    sigmoid, whose single output Bastion reads as a logit: every row lands above 0, class 1;
    a review saw one pass at attack success 0 where its logits gave 0.68)."""
    if bool(np.asarray(main.success).any()):
        return []  # the attack moved a point: the model is not constant where it looked
    predicted = np.unique(np.asarray(main.clean_pred).astype(str))
    if len(predicted) != 1 or len(np.unique(np.asarray(y).astype(str))) < 2:
        return []
    return [
        f"the model predicts class {predicted[0]} for every one of the {len(y)} points "
        "(of several classes): a constant model cannot be moved, so robustness says nothing; "
        "check how its outputs are read (a torch model with one output must return a logit, "
        "not a sigmoid's probability)"
    ]


def _beyond_noise(points: int, attacked: int) -> bool:
    """Whether ``points`` of the ``attacked`` are more than the gap between two runs of
    attacks: more than one, and more than 2%."""
    return points > max(1, 0.02 * attacked)


def _sanity(
    results: dict[float, EvasionResult], main: EvasionResult, attack_id: str, rounding: bool
) -> list[str]:
    """Signs that the attack, not the model, decided the result (``rounding``: the
    constraints hold integer features or one-hot groups)."""
    notes: list[str] = []
    for radius, result in results.items():
        zero = result.extra.get("zero_gradient_fraction")
        if isinstance(zero, int | float) and zero > 0.5:
            notes.append(
                f"zero input gradients at {zero:.0%} of points (eps={radius:g}): saturated "
                "outputs or gradient masking; white-box figures are not trustworthy"
            )
            break
    if any(bool(r.extra.get("nan_gradients")) for r in results.values()):
        notes.append("NaN input gradients: the white-box attack could not follow the loss")
    stages = main.extra.get("stages")
    if isinstance(stages, list):
        dicts = [s for s in stages if isinstance(s, dict)]
        # the points the ensemble attacked (its first stage's): one or two points that the
        # white-box stages miss and Square finds are the usual gap between two attacks, not
        # masking (from a review: an undefended digits MLP warned at 1 of 193), so, as for
        # a falling success below, more than 2% of them
        first = dicts[0].get("points") if dicts else None
        attacked = first if isinstance(first, int) else 0
        for stage in dicts:
            new = stage.get("new_successes")
            if (
                stage.get("attack") in _BLACK_BOX
                and isinstance(new, int)
                and _beyond_noise(new, attacked)
            ):
                notes.append(
                    f"the black-box {stage['attack']} attack broke {new} point(s) the "
                    f"white-box attacks of {attack_id} could not: gradient masking suspected"
                )
    # each radius's own success count (no worst-case merge): it should not fall below its
    # best at a smaller radius as eps grows (neighbours alone miss a steady decline). A run
    # cut by its share of the time (or by Ctrl-C) did not finish its search, so its count
    # says nothing of the attack's reliability: it read "the attack is unreliable here"
    best: tuple[float, int] | None = None
    for radius, result in results.items():
        if result.stopped in ("time budget", "interrupted"):
            continue
        count = int((result.success & result.clean_correct).sum())
        attacked = max(int(result.clean_correct.sum()), 1)
        if best is not None and _beyond_noise(best[1] - count, attacked):
            notes.append(
                f"attack success falls from {best[1]} points at eps={best[0]:g} to {count} at "
                f"eps={radius:g}: the attack is unreliable here (too few queries or a masked "
                "loss)"
            )
            break
        if best is None or count > best[1]:
            best = (radius, count)
    # candidates lost to integer / one-hot rounding: each radius's own count, or its stages'
    rejected = 0
    for result in results.values():
        counts = [result.extra.get("rejected_after_projection")]
        parts = result.extra.get("stages")
        if isinstance(parts, list):
            counts += [s.get("rejected_after_projection") for s in parts if isinstance(s, dict)]
        rejected += sum(c for c in counts if isinstance(c, int) and not isinstance(c, bool))
    if rejected > 0:
        # without integer features or one-hot groups nothing is rounded: the loop's
        # candidates failed the final verification in full precision (a non-finite
        # iterate, a verdict of the loop's precision, a model whose outputs vary)
        cause = (
            "rejected after rounding to the feature constraints"
            if rounding
            else "misclassified in the attack's loop but not at the final full-precision "
            "verification (non-finite values, a prediction at the precision's edge, or "
            "outputs that vary from call to call)"
        )
        notes.append(f"{rejected} candidates were {cause}; robust accuracy may be overstated")
    if main.stopped in ("time budget", "interrupted"):
        remedy = "raise max_seconds" if main.stopped == "time budget" else "run it to its end"
        notes.append(
            f"the attack at eps={main.eps:g} stopped early ({main.stopped}): robust accuracy "
            f"is an upper bound; {remedy}"
        )
    elif _cut_by_query_budget(main):
        notes.append(
            f"the attack at eps={main.eps:g} was cut by the query budget: robust accuracy "
            "is an upper bound; raise max_queries_per_sample (--budget)"
        )
    return notes


def _unproven(main: EvasionResult) -> str | None:
    """Why figures within the limits do not show them to hold (None: they do). An attack
    stopped before any work (no correctly classified point queried beyond its clean
    prediction and one check) measured nothing; one stopped by the time budget is
    unfinished, and its robust accuracy is the bound of a weaker attack than configured.
    An attack that spent the query budget it was given ran as the threat model says (the
    sanity note says when that budget cut it short). Ctrl-C is left to the runner, which
    makes any interrupted finding but a failure an error."""
    if main.stopped is None or main.stopped == "interrupted":
        return None
    attacked = main.clean_correct
    if attacked.any() and int(main.queries[attacked].max()) <= 2:
        return (
            f"the attack stopped ({main.stopped}) before any point was queried beyond its "
            "clean prediction and one check, so robust accuracy is the clean accuracy's"
        )
    if main.stopped == "time budget":
        return "the attack stopped early (time budget) and did not finish; raise max_seconds"
    return None


def _cut_by_query_budget(main: EvasionResult) -> bool:
    """Whether the query budget cut the attack short. A black-box search that spent its
    per-point cap on the points it could not break ran its course (every query-based
    attack ends so); a white-box loop stopped by the budget, or an auto stage skipped for
    lack of budget, did not."""
    if main.stopped != "query budget":
        return False
    stages = main.extra.get("stages")
    if isinstance(stages, list) and stages:
        cut = [s for s in stages if isinstance(s, dict) and s.get("stopped") == "query budget"]
        # no stage stopped on the budget: auto skipped a later stage for lack of it; a
        # black-box stage left too few queries to search with barely started
        return not cut or any(
            s.get("attack") not in _BLACK_BOX or _barely_searched(s.get("iterations")) for s in cut
        )
    # a black-box attack run alone under a tiny per-point cap (4 queries: 1 iteration) is
    # as cut as an auto stage left that little (a review saw it pass with no note)
    return main.attack not in _BLACK_BOX or _barely_searched(main.extra.get("iterations"))


def _barely_searched(iterations: Any) -> bool:
    """A black-box search (an ``auto`` stage, or the attack alone) left fewer than
    ``_MIN_SEARCH_ITERATIONS`` iterations did not run its course (1 iteration was seen
    with ``steps: 10`` and a 28-query cap)."""
    return isinstance(iterations, int) and iterations < _MIN_SEARCH_ITERATIONS


def _takes_tensors(eps_unit: str, model: ModelAdapter) -> bool:
    """Whether eps is in input units: asked for, or ``auto`` with an ``input_shape`` of two
    dimensions or more (a flat shape is what a tabular ``torch.export`` archive carries)."""
    if eps_unit != "auto":
        return eps_unit == "input"
    shape = row_shape(model)
    return shape is not None and len(shape) >= 2


def _judge(
    cfg: EvasionCheckConfig, metrics: dict[str, float | int | None]
) -> tuple[Status, str, dict[str, float | int | str | None]]:
    threshold: dict[str, float | int | str | None] = {}
    problems: list[str] = []
    limits = (
        ("min_robust_accuracy", "robust_accuracy", True),
        ("max_attack_success_rate", "attack_success_rate", False),
    )
    for field_name, metric, is_min in limits:
        limit = getattr(cfg, field_name)
        if limit is None:
            continue
        threshold[field_name] = limit
        value = metrics.get(metric)
        if value is None:
            problems.append(f"{metric} is undefined (no correctly classified point): not judged")
        elif (value < limit) if is_min else (value > limit):
            problems.append(f"{metric} {value:.4f} {'<' if is_min else '>'} {field_name} {limit:g}")
    if problems:
        return Status.FAIL, "Limits violated: " + "; ".join(problems) + ".", threshold
    if not threshold:
        return Status.PASS, "No limits configured (info only).", threshold
    return Status.PASS, f"All {len(threshold)} limit(s) met.", threshold


def _changes(
    result: EvasionResult, X: np.ndarray, constraints: FeatureConstraints
) -> dict[str, Any]:
    x_adv = result.x_adv.reshape(len(X), -1)
    report = change_report(x_adv, X, result.success, constraints.names)
    return {
        "mean_abs_change": report["mean_abs_change_original_units"],
        "aggregate": report["mean_abs_change_original_units_aggregate"],
        "median_changed_features": report["median_changed_features"],
    }


def _samples(
    result: EvasionResult,
    X: np.ndarray,
    rows: np.ndarray,
    constraints: FeatureConstraints,
    model: ModelAdapter,
    limit: int,
) -> list[dict[str, Any]]:
    """A few adversarial examples: changed features (tabular, a flat input_shape included:
    a torch model of features) or both arrays (tensors of 2 or more dimensions)."""
    shape = row_shape(model)
    if shape is not None and len(shape) < 2:
        shape = None
    x_adv = result.x_adv.reshape(len(X), -1)
    out: list[dict[str, Any]] = []
    for i in np.flatnonzero(result.success)[:limit]:
        sample: dict[str, Any] = {
            "row": int(rows[i]),
            "label": _json_label(result.y_true[i]),
            "adversarial_label": _json_label(result.adv_pred[i]),
            "perturbation": float(result.perturbation[i]),
        }
        if shape is not None:
            dims = [int(d) for d in shape]
            sample["shape"] = dims
            sample["original"] = X[i].reshape(dims).tolist()
            sample["adversarial"] = x_adv[i].reshape(dims).tolist()
        else:
            delta = x_adv[i] - X[i]
            changed = np.flatnonzero(np.abs(delta) > 1e-12 * np.maximum(1.0, np.abs(X[i])))
            order = changed[np.argsort(-np.abs(delta[changed] / constraints.scale[changed]))]
            # in std units only (eps in input units: the scale is 1, no std)
            std = not np.all(np.asarray(constraints.scale) == 1.0)
            sample["changes"] = [
                {
                    "feature": constraints.names[j],
                    "original": float(X[i, j]),
                    "adversarial": float(x_adv[i, j]),
                    "change": float(delta[j]),
                    **({"change_std": float(delta[j] / constraints.scale[j])} if std else {}),
                }
                for j in order[:_MAX_CHANGES_SHOWN]
            ]
            sample["n_changed"] = int(changed.size)
        out.append(sample)
    return out


def _json_label(label: Any) -> Any:
    item = getattr(label, "item", None)
    return item() if callable(item) else label

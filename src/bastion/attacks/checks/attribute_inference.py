"""PRV002 attribute_inference: does the model give away a sensitive attribute of its records?

What it detects
    A model whose outputs let an attacker who knows a training record's other features
    (and, by default, its label) infer the record's sensitive attribute (sex, ethnicity, a
    diagnosis) better than the same attacker could without querying the model: model
    inversion. An attribute the other features already reveal is not the model's leak;
    only the gain over a no-query baseline is.
How
    :class:`~bastion.attacks.privacy.inversion.AttributeInference` on (up to ``n_points``)
    training rows, cross-fitted over ``cv`` folds: an attack classifier learns the
    attribute from the other features plus the model's outputs, a baseline classifier from
    the other features alone; when the attribute is a model input, Fredrikson's inversion
    (try each value, keep the one whose output matches) runs too and the better method
    counts. The attribute is ``attribute`` or the first of ``data.sensitive_features``; the
    check is skipped when there is none, and when a non-numeric attribute (or one the
    schema declares categorical) has more than ``max_candidates`` distinct values. A numeric
    attribute with more (an age, a lab value) is inferred as one of ``bins`` quantile bins.
    Rows where the attribute is missing are left out.
Metrics
    ``attack_accuracy``, ``baseline_accuracy`` (the better of the no-query classifier and
    the majority value), ``advantage`` = attack_accuracy - baseline_accuracy, the accuracy
    of each method (``classifier_accuracy``, ``inversion_accuracy``), ``n_points``,
    ``queries``.
Gate
    Fails when ``advantage > max_advantage``. ``max_seconds`` (default 120) is checked between
    the attribute classifiers' cross-fit splits (a run stopped there is an ``error``: no
    accuracy was measured) and before the inversion's queries (a run stopped there and under
    the limit fails: the inversion method did not run, so the limit was not shown to hold).
    Evidence is aggregate: no
    attribute values.
References
    MITRE ATLAS AML.T0024.001 (invert AI model); OWASP ML03. Fredrikson et al. (USENIX
    Security 2014, CCS 2015); Yeom et al. (CSF 2018); Jayaraman and Evans (CCS 2022).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from bastion._names import known_names
from bastion.attacks.budget import Budget
from bastion.attacks.checks._training import not_shown_status, stopped_by_time
from bastion.attacks.privacy.inversion import (
    AttributeInference,
    AttributeInferenceConfig,
    AttributeInferenceResult,
)
from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope, config_as
from bastion.exceptions import ConfigError, TimeBudgetError
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.threats import ATLAS_MODEL_INVERSION, OWASP_MODEL_INVERSION

__all__ = ["AttributeInferenceCheck", "AttributeInferenceCheckConfig"]


class AttributeInferenceCheckConfig(CheckConfig):
    """The attribute, the gate limit and the attack's options."""

    attribute: str | None = None  # None: the first of data.sensitive_features
    max_advantage: float = Field(default=0.05, ge=0.0, le=1.0)
    n_points: int = Field(default=2000, ge=10)
    use_labels: bool = True
    classifier: Literal["gradient_boosting", "logistic"] = "gradient_boosting"
    cv: int = Field(default=5, ge=2, le=50)
    max_candidates: int = Field(default=20, ge=2, le=1000)
    bins: int = Field(default=5, ge=2, le=100)
    inversion: bool = True
    # checked before the inversion's queries (n_points x candidate values): a run stopped
    # there, under the limit, is a warn (the inversion method did not run)
    max_seconds: float | None = Field(default=120.0, gt=0)


@CHECKS.register
class AttributeInferenceCheck(Check):
    """Fail when querying the model improves inference of the sensitive attribute by more
    than ``max_advantage``.

    Example::

        check = AttributeInferenceCheck(AttributeInferenceCheckConfig(attribute="sex"))
        finding = check.execute(CheckContext(train=train, test=test, model=adapter))
    """

    id = "PRV002"
    gate_limits = ("max_advantage",)
    name = "attribute_inference"
    title = "Attribute inference (model inversion)"
    category = "privacy"
    scope = Scope.MODEL
    severity = Severity.MEDIUM
    tags = (ATLAS_MODEL_INVERSION, OWASP_MODEL_INVERSION)
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    enabled_by_default = False
    Config = AttributeInferenceCheckConfig

    def run(self, ctx: CheckContext) -> Finding:
        cfg = config_as(self.config, AttributeInferenceCheckConfig)
        attribute = cfg.attribute or next(iter(ctx.sensitive_features), None)
        if attribute is None:
            return self.skip(
                ctx, "no sensitive attribute (set attribute or data.sensitive_features)"
            )
        if ctx.model is None:
            return self.skip(ctx, "no model configured")
        ds = ctx.train if ctx.train is not None else ctx.test
        if ds is None:
            return self.skip(ctx, "needs the training dataset (set data.train)")
        if attribute not in ds.frame.columns:
            raise ConfigError(
                f"attribute {attribute!r} is not a column of dataset {ds.name!r}; "
                f"{known_names(attribute, ds.frame.columns)}"
            )
        values = ds.frame[attribute]
        present = np.flatnonzero(values.notna().to_numpy())
        n_values = int(values.iloc[present].nunique())
        if n_values < 2:
            return self.skip(ctx, f"attribute {attribute!r} takes a single value: nothing to infer")
        # a numeric column is binned unless the schema declares it categorical (region codes)
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if attribute in ds.schema and ds.schema.is_declared(attribute):
            numeric = numeric and ds.schema[attribute].kind.is_numeric
        if n_values > cfg.max_candidates and not numeric:
            return self.skip(
                ctx,
                f"attribute {attribute!r} has {n_values} distinct values; attribute inference "
                f"treats a non-numeric attribute as categorical (max_candidates "
                f"{cfg.max_candidates}): group its values first",
            )
        rng = ctx.rng(self.id)
        rows = present
        if len(rows) > cfg.n_points:
            rows = np.sort(rng.choice(rows, size=cfg.n_points, replace=False))
            if values.iloc[rows].nunique() < 2:
                return self.skip(
                    ctx,
                    f"attribute {attribute!r}: the {cfg.n_points} rows drawn (n_points) hold a "
                    "single value of it: nothing to infer (raise n_points)",
                )
        X = ds.features.iloc[rows].reset_index(drop=True)
        is_input = attribute in ds.feature_names
        y = ds.labels[rows] if cfg.use_labels and ds.target is not None else None
        attack = AttributeInference(
            AttributeInferenceConfig(
                classifier=cfg.classifier,
                cv=cfg.cv,
                max_candidates=cfg.max_candidates,
                bins=cfg.bins,
                inversion=cfg.inversion,
            )
        )
        try:
            result = attack.run(
                ctx.model,
                X,
                None if is_input else values.iloc[rows].reset_index(drop=True),
                attribute=attribute if is_input else None,
                y=y,
                seed=int(rng.integers(2**31 - 1)),
                budget=Budget(max_seconds=cfg.max_seconds),
            )
        except TimeBudgetError as err:
            return stopped_by_time(self, ctx, err, cfg.max_seconds)
        # wall time lives in the finding's duration_s: metrics stay reproducible under a seed
        metrics = {k: v for k, v in result.metrics().items() if k != "time_s"}
        binned = result.extra.get("bins")
        what = f"{attribute!r} ({binned['count']} quantile bins)" if binned else repr(attribute)
        summary = (
            f"Inferring {what} on {len(rows)} {ds.name} rows: attack accuracy "
            f"{result.attack_accuracy:.3f} ({result.method}) vs {result.baseline_accuracy:.3f} "
            f"without querying the model: advantage {result.advantage:+.3f}{_se(result)}."
        )
        if result.advantage > cfg.max_advantage:
            status = Status.FAIL
            message = (
                f"The model leaks {attribute!r}: advantage {result.advantage:.3f} > "
                f"max_advantage {cfg.max_advantage:g}. " + summary
            )
        elif result.stopped:
            status = not_shown_status(True, result.stopped)
            message = (
                f"Stopped ({result.stopped}) before the inversion method ran: under "
                f"max_advantage {cfg.max_advantage:g} without it, which does not show the "
                "limit holds (raise max_seconds). " + summary
            )
        else:
            status, message = Status.PASS, "Within limits. " + summary
        evidence = {
            "attribute": attribute,
            "attribute_is_model_input": is_input,
            "dataset": ds.name,
            "method": result.method,
            "n_values": n_values,
            # the number of bins only: their edges are quantiles of the sensitive attribute
            "bins": binned["count"] if binned else None,
            "labels_known": y is not None,
            "evaluation": result.extra.get("evaluation"),
            "classifier": cfg.classifier,
            "stopped": result.stopped,
            "advantage_se": result.extra.get("advantage_se"),
        }
        return self.finding(
            ctx,
            status,
            message,
            metrics=metrics,
            threshold={"max_advantage": cfg.max_advantage},
            evidence=evidence,
        )


def _se(result: AttributeInferenceResult) -> str:
    se = result.extra.get("advantage_se")
    return f" (standard error {se:.3f})" if isinstance(se, float) else ""

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
    counts. The attributes are ``attribute`` or every one of ``data.sensitive_features``,
    each judged, the largest advantage deciding; the check is skipped when there is none.
    No encoding of an attribute stays the attacker's: a column of a schema-declared
    ``one_hot_group``, or the group's name, is the group as a whole (a row's value is its hot
    column; the columns of it the model reads are hidden and inverted), unless a raw column
    of the group's name is what the model reads, which is then the attribute. A list of
    columns is a one-hot group without a schema; a list of one column outside any group is
    that column. A baseline that is always right leaves no advantage to measure: a
    warning, not a pass. An attribute is not judged
    (and the finding says so) when a non-numeric attribute (or one the schema declares
    categorical) has more than ``max_candidates`` distinct values. A numeric attribute with
    more (an age, a lab value) is inferred as one of ``bins`` quantile bins. Rows where the
    attribute is missing are left out.
Metrics
    ``attack_accuracy``, ``baseline_accuracy`` (the better of the no-query classifier and
    the majority value), ``advantage`` = attack_accuracy - baseline_accuracy, the accuracy
    of each method (``classifier_accuracy``, ``inversion_accuracy``), ``n_points``,
    ``queries``.
Gate
    Fails when ``advantage > max_advantage`` for any attribute. ``max_seconds`` (default
    120, shared by the attributes) is checked between the attribute classifiers' cross-fit
    splits (a run stopped there is an ``error``: no accuracy was measured, unless an
    attribute judged before it leaks, which fails) and before the inversion's queries (a run
    stopped there and under the limit fails: the inversion method did not run, so the limit
    was not shown to hold). Evidence is aggregate: no attribute values.
References
    MITRE ATLAS AML.T0024.001 (invert AI model); OWASP ML03. Fredrikson et al. (USENIX
    Security 2014, CCS 2015); Yeom et al. (CSF 2018); Jayaraman and Evans (CCS 2022).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from bastion._names import known_names
from bastion.attacks.budget import Budget
from bastion.attacks.checks._training import not_shown_status, stopped_by_time
from bastion.attacks.privacy.inversion import (
    AttributeInference,
    AttributeInferenceConfig,
    AttributeInferenceResult,
    one_hot_names,
)
from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope, config_as
from bastion.data.dataset import Dataset
from bastion.exceptions import ConfigError, TimeBudgetError
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.threats import ATLAS_MODEL_INVERSION, OWASP_MODEL_INVERSION

__all__ = ["AttributeInferenceCheck", "AttributeInferenceCheckConfig"]


class AttributeInferenceCheckConfig(CheckConfig):
    """The attribute, the gate limit and the attack's options."""

    # a column, a one-hot group the schema declares, or a list of one-hot columns; None:
    # every one of data.sensitive_features
    attribute: str | list[str] | None = None
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

    @field_validator("attribute")
    @classmethod
    def _named(cls, value: str | list[str] | None) -> str | list[str] | None:
        """An empty name or list names nothing (it read as "every sensitive feature")."""
        if value is not None and (
            not value
            or any(not str(v).strip() for v in ([value] if isinstance(value, str) else value))
        ):
            raise ValueError(
                "name a column, a declared one-hot group or its columns; leave attribute out "
                "to attack every one of data.sensitive_features"
            )
        return value


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
        requested: list[str | list[str]] = (
            [cfg.attribute] if cfg.attribute else list(ctx.sensitive_features)
        )
        if not requested:
            return self.skip(
                ctx, "no sensitive attribute (set attribute or data.sensitive_features)"
            )
        if ctx.model is None:
            return self.skip(ctx, "no model configured")
        ds = ctx.train if ctx.train is not None else ctx.test
        if ds is None:
            return self.skip(ctx, "needs the training dataset (set data.train)")
        rng = ctx.rng(self.id)
        started = time.perf_counter()
        judged: list[_Judged] = []
        skipped: dict[str, str] = {}
        out_of_time: TimeBudgetError | None = None
        # every sensitive attribute is judged (only the first was, and a leak of the second
        # passed unseen), each with the time the earlier ones left
        for name, members, grouped in _targets(ds, requested):
            if out_of_time is None:
                try:
                    left = None
                    if cfg.max_seconds is not None:
                        left = cfg.max_seconds - (time.perf_counter() - started)
                        if left <= 0:
                            raise TimeBudgetError(f"no time left for attribute {name!r}")
                    outcome = _judge(ds, ctx, cfg, name, members, grouped, rng, left)
                except TimeBudgetError as err:
                    out_of_time = err
            if out_of_time is not None:
                skipped[name] = f"{name!r}: out of time ({out_of_time})"
            elif isinstance(outcome, str):
                skipped[name] = outcome
            else:
                judged.append(outcome)
        leaks = [j for j in judged if j.result.advantage > cfg.max_advantage]
        if out_of_time is not None and not leaks:
            # an attribute not judged may leak: no pass, and no verdict either
            return stopped_by_time(self, ctx, out_of_time, cfg.max_seconds)
        if not judged:
            return self.skip(ctx, "; ".join(skipped.values()))
        worst = max(judged, key=lambda j: j.result.advantage)
        stopped = [j for j in judged if j.result.stopped]
        summary = " ".join(j.summary for j in judged)
        if skipped:
            summary += " Not judged: " + "; ".join(skipped.values()) + "."
        if leaks:
            status = Status.FAIL
            named = ", ".join(f"{j.name!r} (advantage {j.result.advantage:.3f})" for j in leaks)
            message = f"The model leaks {named} > max_advantage {cfg.max_advantage:g}. " + summary
        elif stopped:
            status = not_shown_status(True, stopped[0].result.stopped)
            names = ", ".join(repr(j.name) for j in stopped)
            message = (
                f"Stopped ({stopped[0].result.stopped}) before the inversion method ran for "
                f"{names}: under max_advantage {cfg.max_advantage:g} without it, which does "
                "not show the limit holds (raise max_seconds; --max-seconds with bastion "
                "attack). " + summary
            )
        elif exact := [j for j in judged if j.result.baseline_accuracy >= 1.0]:
            # nothing the model gives can show over a baseline that is always right: a
            # warning, so that an encoding of the attribute left to the attacker is seen
            status = Status.WARN
            names = ", ".join(repr(j.name) for j in exact)
            message = (
                f"Not measurable for {names}: the attacker's other features reveal it "
                "exactly, so no advantage can show. " + summary
            )
        else:
            status, message = Status.PASS, "Within limits. " + summary
        evidence = dict(worst.evidence)
        if len(judged) > 1 or skipped:
            evidence["attributes"] = {
                j.name: {
                    "advantage": j.result.advantage,
                    "attack_accuracy": j.result.attack_accuracy,
                    "baseline_accuracy": j.result.baseline_accuracy,
                    "method": j.result.method,
                    "stopped": j.result.stopped,
                }
                for j in judged
            }
            evidence["not_judged"] = skipped
        return self.finding(
            ctx,
            status,
            message,
            metrics=worst.metrics,
            threshold={"max_advantage": cfg.max_advantage},
            evidence=evidence,
        )


@dataclass(frozen=True)
class _Judged:
    """One attribute's attack: its result, sentence, metrics and evidence."""

    name: str
    result: AttributeInferenceResult
    summary: str
    metrics: dict[str, Any]
    evidence: dict[str, Any]


def _targets(ds: Dataset, requested: list[str | list[str]]) -> list[tuple[str, list[str], bool]]:
    """(name, columns, one-hot) per requested attribute. A column of a declared one-hot
    group, the group's name, or a list of columns stands for the whole group (every column
    of it in the dataset, also those a list leaves out): a sibling left among the attacker's
    features gave the attribute away to the no-query baseline, and no leak could fail the
    gate. A group's name that is also a raw column names the one the model reads. A list
    of one column outside any group is that column. The same columns named twice are
    judged once."""
    groups: dict[str, list[str]] = {}
    group_of: dict[str, str] = {}
    for column in ds.frame.columns:
        label = str(column)
        if label in ds.schema and ds.schema.is_declared(label):
            declared = ds.schema[label].one_hot_group
            if declared:
                groups.setdefault(declared, []).append(label)
                group_of[label] = declared
    inputs = set(ds.feature_names)
    out: list[tuple[str, list[str], bool]] = []
    seen: set[tuple[str, ...]] = set()
    for wanted in requested:
        names = list(dict.fromkeys(wanted)) if isinstance(wanted, list) else [wanted]
        columns: list[str] = []
        for item in names:
            # a column of a group, or the group's name, stands for the whole group
            group = item if item in groups else group_of.get(item)
            columns += [item] if group is None else _group_columns(ds, groups, group, inputs)
        for column in columns:
            if column not in ds.frame.columns:
                raise ConfigError(
                    f"attribute {column!r} is not a column of dataset {ds.name!r}"
                    + (" nor a one-hot group of its schema" if groups else "")
                    + f"; {known_names(column, ds.frame.columns)}"
                )
            if column == ds.target:
                # the attacker knows the label: the baseline reads it exactly, which measures
                # nothing (the datasets' sensitive features refused this; the CLI no longer
                # makes the attribute one)
                raise ConfigError(
                    f"attribute {column!r} is the target of dataset {ds.name!r}: attribute "
                    "inference infers a feature the attacker does not know, beside the label"
                )
        columns = list(dict.fromkeys(columns))
        owners = sorted({group_of[c] for c in columns if c in group_of})
        # exactly one declared group, however it was named, is named by the group; a raw
        # input that stands for its group, by its own name
        one_group = len(owners) == 1 and columns == groups[owners[0]]
        name = owners[0] if one_group else "+".join(names)
        if len(columns) == 1 and columns[0] in groups:
            name = columns[0]
        # one column outside any declared group is the column itself (a list of one
        # numeric column read as "nonzero or not" skipped a leaking attribute)
        grouped = len(columns) > 1 or bool(owners)
        if tuple(columns) not in seen:
            seen.add(tuple(columns))
            out.append((name, columns, grouped))
    return out


def _group_columns(
    ds: Dataset, groups: dict[str, list[str]], group: str, inputs: set[str]
) -> list[str]:
    """The columns that hold a declared group's attribute: its one-hot columns, or a raw
    column of the group's name where the model reads that one (the encoding then kept for
    reports only). Whichever lost stayed the attacker's, and a leaking model passed at
    baseline 1.0; a model that reads both is refused."""
    raw_input = group in ds.frame.columns and group in inputs
    if not raw_input:
        return list(groups[group])
    if inputs & set(groups[group]):
        # hiding one encoding leaves the other to the attacker (a pass at baseline 1.0), and
        # the inversion cannot set both consistently: refused, which fails the gate closed
        raise ConfigError(
            f"attribute {group!r}: the model reads both the column and its one-hot group "
            f"{groups[group]}, two encodings of one attribute; attribute inference cannot "
            "hide one from the attacker while the model reads the other. Judge a model that "
            "reads one of them"
        )
    return [group]


def _judge(
    ds: Dataset,
    ctx: CheckContext,
    cfg: AttributeInferenceCheckConfig,
    attribute: str,
    members: list[str],
    group: bool,
    rng: np.random.Generator,
    max_seconds: float | None,
) -> _Judged | str:
    """Attack one attribute (``members``: its column, or its one-hot group's columns), or
    say why it was not judged."""
    if group:
        complete = ds.frame[members].notna().all(axis=1).to_numpy()
        present = np.flatnonzero(complete)
        names = one_hot_names(ds.frame.iloc[present], list(members), f"dataset {ds.name!r}")
        values = pd.Series(index=ds.frame.index, dtype=object)
        values.iloc[present] = names
    else:
        values = ds.frame[attribute]
        present = np.flatnonzero(values.notna().to_numpy())
    unlabelled = 0
    if cfg.use_labels and ds.target is not None:
        # the attacker knows each row's label: a row without one is left out (its blank read
        # as a label of its own, a feature the baseline used: half the labels blank moved
        # the advantage from 0.07 to 0.28, from a review)
        known = ds.frame[ds.target].notna().to_numpy()[present]
        unlabelled = int((~known).sum())
        if unlabelled and values.iloc[present].nunique() < 2:
            unlabelled = 0  # a single value anyway: the labels are not why (below)
        present = present[known]
    n_values = int(values.iloc[present].nunique())
    if n_values < 2 and unlabelled:
        held = "no value" if n_values == 0 else "a single value"
        return (
            f"attribute {attribute!r}: the {len(present)} row(s) with a label (use_labels; "
            f"{unlabelled} without one left out) hold {held} of it: nothing to infer (give "
            "the rows' labels, or set use_labels false)"
        )
    if n_values < 2:
        return f"attribute {attribute!r} takes a single value: nothing to infer"
    # a numeric column is binned unless the schema declares it categorical (region codes)
    numeric = (
        not group
        and pd.api.types.is_numeric_dtype(values)
        and not pd.api.types.is_bool_dtype(values)
    )
    if not group and attribute in ds.schema and ds.schema.is_declared(attribute):
        numeric = numeric and ds.schema[attribute].kind.is_numeric
    if n_values > cfg.max_candidates and not numeric:
        return (
            f"attribute {attribute!r} has {n_values} distinct values; attribute inference "
            f"treats a non-numeric attribute as categorical (max_candidates "
            f"{cfg.max_candidates}): group its values first"
        )
    rows = present
    if len(rows) > cfg.n_points:
        rows = np.sort(rng.choice(rows, size=cfg.n_points, replace=False))
        if values.iloc[rows].nunique() < 2:
            return (
                f"attribute {attribute!r}: the {cfg.n_points} rows drawn (n_points) hold a "
                "single value of it: nothing to infer (raise n_points)"
            )
    X = ds.features.iloc[rows].reset_index(drop=True)
    # the group's columns the model reads are hidden from the attacker and set by the
    # inversion (a dropped reference column, kept in the file as a non-feature, is neither)
    inputs = [m for m in members if m in ds.feature_names]
    is_input = bool(inputs)
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
    truth = values.iloc[rows].reset_index(drop=True)
    result = attack.run(
        ctx.model,  # type: ignore[arg-type]
        X,
        truth if group or not is_input else None,
        attribute=(inputs if group else attribute) if is_input else None,
        y=y,
        seed=int(rng.integers(2**31 - 1)),
        budget=Budget(max_seconds=max_seconds),
    )
    # wall time lives in the finding's duration_s: metrics stay reproducible under a seed
    metrics = {k: v for k, v in result.metrics().items() if k != "time_s"}
    binned = result.extra.get("bins")
    what = f"{attribute!r} ({binned['count']} quantile bins)" if binned else repr(attribute)
    if group:
        what += f" (one-hot: {', '.join(members)})"
    summary = (
        f"Inferring {what} on {len(rows)} {ds.name} rows: attack accuracy "
        f"{result.attack_accuracy:.3f} ({result.method}) vs {result.baseline_accuracy:.3f} "
        f"without querying the model: advantage {result.advantage:+.3f}{_se(result)}."
    )
    if result.baseline_accuracy >= 1.0:
        summary += (
            " The other features reveal it exactly: if some encode it (a one-hot sibling), "
            "name them with it (attribute: [a, b], --attribute a,b) or declare their "
            "one_hot_group."
        )
    evidence = {
        "attribute": attribute,
        "one_hot_columns": list(members) if group else None,
        "attribute_is_model_input": is_input,
        "dataset": ds.name,
        "method": result.method,
        "n_values": n_values,
        # the number of bins only: their edges are quantiles of the sensitive attribute
        "bins": binned["count"] if binned else None,
        "labels_known": y is not None,
        "unlabelled_rows_left_out": unlabelled,
        "evaluation": result.extra.get("evaluation"),
        "classifier": cfg.classifier,
        "stopped": result.stopped,
        "advantage_se": result.extra.get("advantage_se"),
    }
    return _Judged(attribute, result, summary, metrics, evidence)


def _se(result: AttributeInferenceResult) -> str:
    se = result.extra.get("advantage_se")
    return f" (standard error {se:.3f})" if isinstance(se, float) else ""

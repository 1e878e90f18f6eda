"""Attribute inference (model inversion): recover a sensitive attribute from the model.

What it measures
    Whether the model's outputs help an attacker who knows a record's other features infer
    its sensitive attribute (sex, a diagnosis, ethnicity) better than the same attacker
    without access to the model. Only the *difference* is the model's leak: an attribute
    that the other features already predict is no secret the model gave away.
Methods
    ``classifier`` (Yeom et al. 2018; Jayaraman and Evans 2022): an attack classifier learns
    the attribute from the other features plus the model's outputs (probabilities, or the
    one-hot predicted label for a label-only model), and the true label when the attacker
    knows it, on records whose attribute the auditor knows.

    ``inversion`` (Fredrikson et al. 2014, 2015), when the attribute is itself a model input:
    for each candidate value, query the model with the record's attribute set to it and pick
    the value whose output best matches the output observed for the real record (L1
    distance between probability vectors, or label agreement); ties are broken by the
    baseline's posterior, i.e. by what the attacker knew without the model.

    ``baseline``: the same classifier on the other features (and label) only, with no model
    query; the baseline accuracy is the better of it and the majority value.
Evaluation
    With auxiliary rows (``X_aux`` and their attribute), the attack learns on them and is
    scored on the targets; without, it is cross-fitted over the targets (``cv`` folds: each
    fold is predicted by classifiers that learned on the others).
Metrics
    ``attack_accuracy`` (the better method's accuracy on the targets), ``baseline_accuracy``,
    ``advantage`` = attack_accuracy - baseline_accuracy; the per-method accuracies in
    ``method_accuracy``. Choosing the better of two methods on the same targets biases the
    figure up slightly: a gate errs on the side of caution.
References
    MITRE ATLAS AML.T0024.001; OWASP ML03. Fredrikson et al., "Privacy in Pharmacogenetics"
    (USENIX Security 2014) and "Model Inversion Attacks that Exploit Confidence Information"
    (CCS 2015); Yeom et al., "Privacy Risk in Machine Learning" (CSF 2018); Jayaraman and
    Evans, "Are Attribute Inference Attacks Just Imputation?" (CCS 2022).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from bastion._names import known_names
from bastion.attacks.base import ATTACKS, Attack, AttackConfig
from bastion.attacks.budget import Budget, BudgetTracker, report_stage, stop_at_deadline
from bastion.attacks.privacy._aux import aligned_aux, is_missing
from bastion.exceptions import ConfigError, DataError, ModelOutputError, TimeBudgetError
from bastion.executor import SMALL_DATA_ROWS, native_threads
from bastion.models.base import ArrayLike, Capability, ModelAdapter
from bastion.threats import ATLAS_MODEL_INVERSION, OWASP_MODEL_INVERSION

__all__ = [
    "AttributeInference",
    "AttributeInferenceConfig",
    "AttributeInferenceResult",
]

_TIE = 1e-9  # output distances this close count as equal matches

Attribute = str | int | list[str] | list[int] | tuple[str | int, ...]
"""A column (name or position), or the columns of its one-hot encoding."""


@dataclass(frozen=True)
class AttributeInferenceResult:
    """What attribute inference recovered, and how much of it the model gave away.

    Attributes
    ----------
    attack:
        ``attribute_inference``.
    attribute:
        The attribute's name (or column position).
    truth, predicted:
        Per target, the true value and the better method's inference; for a numeric
        attribute inferred by quantile bins (``extra["bins"]``), the bins' interval names.
    method:
        ``classifier`` or ``inversion``: the method with the higher accuracy.
    attack_accuracy, baseline_accuracy, advantage:
        See the module docstring.
    method_accuracy:
        Accuracy of each method that ran.
    queries:
        Rows sent to the model.
    elapsed_s:
        Wall time.
    stopped:
        ``query budget`` or ``time budget`` when the inversion method could not run within
        the budget.
    extra:
        Diagnostics (candidates, folds, classifier, ``advantage_se``: the advantage's
        standard error over the targets), JSON-compatible.
    """

    attack: str
    attribute: str
    truth: np.ndarray
    predicted: np.ndarray
    method: str
    attack_accuracy: float
    baseline_accuracy: float
    advantage: float
    method_accuracy: Mapping[str, float]
    queries: int
    elapsed_s: float
    stopped: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, float | int | None]:
        """The stable metric names for findings and JSON output."""
        out: dict[str, float | int | None] = {
            "attack_accuracy": self.attack_accuracy,
            "baseline_accuracy": self.baseline_accuracy,
            "advantage": self.advantage,
            "n_points": len(self.truth),
            "queries": self.queries,
            "time_s": round(self.elapsed_s, 6),
        }
        for name, value in self.method_accuracy.items():
            out[f"{name}_accuracy"] = value
        return out


class AttributeInferenceConfig(AttackConfig):
    """``classifier``: the attack (and baseline) learner; ``cv``: folds when no auxiliary
    rows are given; ``max_candidates``: most distinct values of a categorical attribute;
    ``bins``: a numeric attribute with more distinct values than ``max_candidates`` (an age,
    a lab value) is inferred as one of this many quantile bins of the attacker's known
    values instead (the inversion method tries each bin's median); ``inversion``: also run
    Fredrikson's inversion when the attribute is a model input."""

    classifier: Literal["gradient_boosting", "logistic"] = "gradient_boosting"
    cv: int = Field(default=5, ge=2, le=50)
    max_candidates: int = Field(default=20, ge=2, le=1000)
    bins: int = Field(default=5, ge=2, le=100)
    inversion: bool = True


@ATTACKS.register
class AttributeInference(Attack):
    """Infer a sensitive attribute from the model's outputs plus the other features.

    Example::

        attack = AttributeInference()
        result = attack.run(adapter, X_targets, sex_targets, attribute="sex",
                            y=y_targets, X_aux=X_known, sensitive_aux=sex_known, y_aux=y_known)
        result.advantage      # accuracy gained by querying the model
    """

    id = "attribute_inference"
    title = "Attribute inference (model inversion)"
    family: ClassVar[Literal["privacy"]] = "privacy"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    tags: ClassVar[tuple[str, ...]] = (ATLAS_MODEL_INVERSION, OWASP_MODEL_INVERSION)
    Config = AttributeInferenceConfig

    def run(
        self,
        model: ModelAdapter,
        X: ArrayLike,
        sensitive: np.ndarray | pd.Series | None = None,
        *,
        attribute: Attribute | None = None,
        y: np.ndarray | None = None,
        X_aux: ArrayLike | None = None,
        sensitive_aux: np.ndarray | pd.Series | None = None,
        y_aux: np.ndarray | None = None,
        budget: Budget | None = None,
        seed: int = 0,
    ) -> AttributeInferenceResult:
        """Infer the attribute of every row of ``X`` and compare with the no-query baseline.

        Parameters
        ----------
        model:
            The target; ``predict`` suffices, ``predict_proba`` is used when present.
        X:
            The targets' model inputs.
        sensitive:
            The targets' true attribute values (scoring only). May be omitted when
            ``attribute`` names a column of ``X``.
        attribute:
            When the attribute is a model input: its column name (frame) or position
            (array). It is hidden from the attacker's features and enables the inversion
            method. None when the attribute is not a model input. A list of columns is a
            one-hot encoding of it: a row's value is the name of its column that is not 0
            (``"(none)"`` where all are, as for a dropped reference category), the attacker
            knows none of them, and inversion sets them all (a sibling left among the
            attacker's features gave the attribute away to the baseline: accuracy 1.0, and
            no advantage could fail the gate).
        y:
            The targets' true labels, when the attacker knows them (a feature of both the
            attack and the baseline).
        X_aux, sensitive_aux, y_aux:
            Records whose attribute the attacker knows, to learn from; without them the
            attack is cross-fitted over the targets.
        budget:
            ``max_queries`` must cover one query per target and auxiliary row; the
            inversion method (one query per target and candidate) is skipped past it.
        seed:
            Seeds the folds and the classifiers.

        Returns
        -------
        AttributeInferenceResult

        Raises
        ------
        ConfigError
            Misaligned inputs, an unknown attribute column, an attribute with a single value
            or more than ``max_candidates`` values, or a budget below the base queries.
        TimeBudgetError
            ``budget.max_seconds`` (or a caller's deadline) ran out between the attribute
            classifiers' splits: their training spends no queries, and an accuracy over
            some of the targets is no result.
        """
        cfg = self.options(AttributeInferenceConfig)
        start = time.perf_counter()
        self.check_model(model)
        # the attribute's name in messages and in the result (a named series says it when
        # the attribute is not a model input)
        series_name = getattr(sensitive, "name", None) if attribute is None else None
        label = str(series_name) if series_name is not None else _name(attribute)
        if X_aux is not None:
            X_aux = aligned_aux(X, X_aux)
        truth = _attribute_values(X, sensitive, attribute, "X", "sensitive")
        n = len(truth)
        _check_labels(y, n, "y")
        if X_aux is None and (sensitive_aux is not None or y_aux is not None):
            raise ConfigError("sensitive_aux and y_aux describe X_aux; received them without X_aux")
        aux_truth = (
            _attribute_values(X_aux, sensitive_aux, attribute, "X_aux", "sensitive_aux")
            if X_aux is not None
            else None
        )
        if aux_truth is not None:
            _check_labels(y_aux, len(aux_truth), "y_aux")
            if (y is None) != (y_aux is None):
                raise ConfigError("pass y and y_aux together (the label is a feature of both)")
        _refuse_missing(truth, label, "sensitive" if attribute is None else "X")
        if aux_truth is not None:
            _refuse_missing(aux_truth, label, "sensitive_aux" if attribute is None else "X_aux")
        known_values = aux_truth if aux_truth is not None else truth
        binning: _Bins | None = None
        if _is_numeric(known_values) and len(np.unique(known_values)) > cfg.max_candidates:
            binning = _Bins.of(known_values, cfg.bins)
            truth = binning.names_of(truth)
            aux_truth = binning.names_of(aux_truth) if aux_truth is not None else None
            known_values = aux_truth if aux_truth is not None else truth
        candidates = np.unique(_value_names(known_values).astype(str))
        # what each candidate name stands for in the result, and in the model's input
        names = _value_names(known_values).tolist()
        values_by_name = dict(zip(names, known_values.tolist(), strict=True))
        plug = binning.medians if binning is not None else values_by_name
        if len(candidates) < 2:
            raise ConfigError(
                f"attribute {label!r} takes a single value in the attacker's data; nothing to infer"
            )
        if len(candidates) > cfg.max_candidates:
            raise ConfigError(
                f"attribute {label!r} has {len(candidates)} distinct values; "
                f"attribute inference treats a non-numeric attribute as categorical "
                f"(max_candidates {cfg.max_candidates}): group its values first or raise "
                "max_candidates"
            )

        tracker = BudgetTracker(budget or Budget())
        n_aux = 0 if aux_truth is None else len(aux_truth)
        if tracker.allow(n + n_aux) < n + n_aux:
            if tracker.exhausted_reason == "time budget":
                # out of time is no configuration error (as membership inference says it)
                raise TimeBudgetError(
                    f"budget max_seconds {tracker.budget.max_seconds} ran out before the "
                    f"{n + n_aux} queries attribute inference needs (one per target and "
                    "auxiliary row)"
                )
            raise ConfigError(
                f"budget max_queries {tracker.budget.max_queries} is below the {n + n_aux} "
                "queries attribute inference needs (one per target and auxiliary row)"
            )
        outputs, out_labels = _outputs(model, X, None)
        tracker.spend(n)
        aux_outputs = None
        if X_aux is not None:
            aux_outputs, _ = _outputs(model, X_aux, out_labels)
            tracker.spend(n_aux)

        # the attacker's features: everything but the attribute, plus the label if known
        frames = [_without(X, attribute)] + (
            [_without(X_aux, attribute)] if X_aux is not None else []
        )
        known = _encode(frames)
        labels = _encode_labels([y] + ([y_aux] if X_aux is not None else []))
        if labels is not None:
            known = np.hstack([known, labels])
        outs = np.vstack([outputs] + ([aux_outputs] if aux_outputs is not None else []))
        truth_s = _value_names(truth)
        aux_s = _value_names(aux_truth) if aux_truth is not None else None

        rng = np.random.default_rng(seed)
        splits = _splits(n, n_aux, truth_s, cfg.cv, rng)
        attack_pred = np.empty(n, dtype=object)
        base_pred = np.empty(n, dtype=object)
        base_post = np.zeros((n, len(candidates)))
        majority_right = np.zeros(n, dtype=bool)
        all_s = np.concatenate([truth_s, aux_s]) if aux_s is not None else truth_s
        with_out = np.hstack([known, outs])
        for k, (fit_rows, pred_rows) in enumerate(splits, start=1):
            stage = f"attribute classifiers: split {k} of {len(splits)}"
            # the classifiers' training spends no queries: the time budget is looked at here
            stop_at_deadline(stage)
            report_stage(stage)
            train_s = all_s[fit_rows]
            attack_pred[pred_rows], _ = _fit_predict(
                cfg.classifier, with_out[fit_rows], train_s, with_out[pred_rows], candidates, seed
            )
            base_pred[pred_rows], base_post[pred_rows] = _fit_predict(
                cfg.classifier, known[fit_rows], train_s, known[pred_rows], candidates, seed
            )
            values, counts = np.unique(train_s, return_counts=True)
            majority_right[pred_rows] = truth_s[pred_rows] == values[np.argmax(counts)]

        accuracy = {"classifier": float(np.mean(attack_pred == truth_s))}
        baseline_clf = float(np.mean(base_pred == truth_s))
        majority_hits = int(majority_right.sum())
        baseline = max(baseline_clf, majority_hits / n)
        stopped = None
        extra: dict[str, Any] = {
            "candidates": candidates.tolist(),
            "classifier": cfg.classifier,
            "evaluation": "auxiliary rows" if X_aux is not None else f"{cfg.cv}-fold cross-fit",
            "baseline_classifier_accuracy": baseline_clf,
            "majority_accuracy": majority_hits / n,
            "outputs": "predict_proba" if model.has(Capability.PREDICT_PROBA) else "predict",
        }
        if binning is not None:
            extra["bins"] = {"count": len(binning.medians), "edges": binning.edges.tolist()}
        predicted = attack_pred
        if attribute is not None and cfg.inversion:
            needed = n * len(candidates)
            if tracker.allow(needed) < needed:
                # allow() names what ran out: the queries, or the time
                stopped = tracker.exhausted_reason = tracker.exhausted_reason or "query budget"
            else:
                report_stage(f"inversion: {needed:,} queries")
                inverted = _invert(
                    model, X, attribute, candidates, plug, outputs, out_labels, base_post
                )
                tracker.spend(needed)
                accuracy["inversion"] = float(np.mean(inverted == truth_s))
                if accuracy["inversion"] > accuracy["classifier"]:
                    predicted = inverted
        method = max(accuracy, key=lambda k: accuracy[k])
        best = accuracy[method]
        # the advantage's standard error, from the per-target difference between the attack
        # and the baseline (paired: both judge the same targets)
        base_right = base_pred == truth_s if baseline_clf >= majority_hits / n else majority_right
        paired = (predicted == truth_s).astype(np.float64) - base_right.astype(np.float64)
        extra["advantage_se"] = float(paired.std(ddof=1) / np.sqrt(n)) if n > 1 else None
        return AttributeInferenceResult(
            attack=self.id,
            attribute=label,
            truth=truth,
            predicted=np.array([values_by_name.get(str(v), v) for v in predicted], dtype=object),
            method=method,
            attack_accuracy=best,
            baseline_accuracy=baseline,
            advantage=best - baseline,
            method_accuracy=accuracy,
            queries=tracker.queries,
            elapsed_s=time.perf_counter() - start,
            stopped=stopped,
            extra=extra,
        )


# -- helpers ----------------------------------------------------------------------------------
def _is_numeric(values: np.ndarray) -> bool:
    return bool(np.issubdtype(np.asarray(values).dtype, np.number)) and not np.issubdtype(
        np.asarray(values).dtype, np.bool_
    )


@dataclass(frozen=True)
class _Bins:
    """Quantile bins of a numeric attribute: inner ``edges``, the bins' interval names and
    the (lower) median of the known values in each (what the inversion method plugs in)."""

    edges: np.ndarray
    medians: dict[str, float]

    @classmethod
    def of(cls, known: np.ndarray, bins: int) -> _Bins:
        values = np.asarray(known, dtype=np.float64)
        quantiles = np.quantile(values, np.linspace(0.0, 1.0, bins + 1))
        # inner edges only; ties (a spike of one value) merge bins
        edges = np.unique(quantiles[1:-1])
        low = values.min()
        if edges.size and edges[0] <= low:
            # a spike at the minimum (most values 0, say) pulls the inner edges onto it, and a
            # value sits at or above an edge it equals: every value would share one bin.
            # The spike gets its own bin, [-inf, the next value)
            above = values[values > low]
            first = [above.min()] if above.size else []
            edges = np.unique(np.concatenate([first, edges[edges > low]]))
        index = np.searchsorted(edges, values, side="right")
        names = cls._names(edges)
        # the lower median: a value the attribute takes (an integer age stays an integer,
        # which an integer column or an integer-only model input accepts)
        medians = {
            names[k]: float(np.quantile(values[index == k], 0.5, method="lower"))
            for k in range(len(names))
            if np.any(index == k)
        }
        return cls(edges, medians)

    @staticmethod
    def _names(edges: np.ndarray) -> list[str]:
        shown = [f"{e:.6g}" for e in edges]
        if len(set(shown)) < len(shown):  # close edges of large values: every digit
            shown = [repr(float(e)) for e in edges]
        bounds = ["-inf", *shown, "inf"]
        return [f"[{lo}, {hi})" for lo, hi in itertools.pairwise(bounds)]

    def names_of(self, values: np.ndarray) -> np.ndarray:
        names = np.array(self._names(self.edges), dtype=object)
        index = np.searchsorted(self.edges, np.asarray(values, dtype=np.float64), side="right")
        out: np.ndarray = names[index]
        return out


def _value_names(values: np.ndarray) -> np.ndarray:
    """Each value's name, matched by value: a number's name is the same whatever its dtype
    (0, 0.0 and ``np.int8(0)`` are all "0", 0.5 is "0.5"), since the targets' and the
    auxiliary rows' columns may differ in dtype (a CSV column with a gap reads its integers
    as floats: compared as text, no prediction could match and the attack and the baseline
    both scored 0, a pass); anything else is its text."""
    return np.array([_value_name(v) for v in np.asarray(values).tolist()], dtype=object)


def _value_name(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if np.isfinite(value) and value == round(value) and abs(value) < 2**63:
        return str(int(value))
    return repr(float(value))  # np.float64 in an object array: "0.5", not "np.float64(0.5)"


def _name(attribute: Attribute | None) -> str:
    if attribute is None:
        return "sensitive"
    return "+".join(str(c) for c in _members(attribute))


def _is_group(attribute: Attribute | None) -> bool:
    return isinstance(attribute, list | tuple)


def _members(attribute: Attribute) -> list[str | int]:
    return list(attribute) if isinstance(attribute, list | tuple) else [attribute]


def _refuse_missing(values: np.ndarray, label: str, source: str) -> None:
    """A row whose attribute is missing has no truth to infer: scored, it was a value of its
    own, and in a numeric attribute it made every quantile edge NaN, one bin for all (from a
    review: 1% of ages missing took the advantage from 0.31 to 0.005, a pass)."""
    absent = is_missing(values)
    if absent.any():
        raise DataError(
            f"attribute {label!r} is missing in {int(absent.sum())} of {len(values)} rows of "
            f"{source} (the first at row {int(np.flatnonzero(absent)[0])}): leave those rows "
            "out, as PRV002 does"
        )


def _attribute_values(
    X: ArrayLike,
    values: np.ndarray | pd.Series | None,
    attribute: Attribute | None,
    x_name: str,
    v_name: str,
) -> np.ndarray:
    """The attribute's values: given explicitly, or read from ``X``'s attribute column."""
    n = int(X.shape[0])
    if attribute is not None:
        column = _column(X, attribute, x_name)
        if values is None:
            return column
    if values is None:
        raise ConfigError(
            f"{v_name} is required when attribute is not a column of {x_name} (received None)"
        )
    out = np.asarray(values)
    if out.ndim != 1 or len(out) != n:
        raise ConfigError(
            f"{v_name} must hold one value per row of {x_name} ({n}); got {out.shape}"
        )
    return out


def _column(X: ArrayLike, attribute: Attribute, x_name: str) -> np.ndarray:
    if _is_group(attribute):
        return one_hot_names(X, _members(attribute), x_name)
    return _one_column(X, attribute, x_name)  # type: ignore[arg-type]


_NONE_HOT = "(none)"


def one_hot_names(X: ArrayLike, members: list[str | int], x_name: str) -> np.ndarray:
    """Per row, the name of the one-hot group's column that is not 0 (``(none)``: none is)."""
    if not members or len(set(members)) < len(members):
        # one column is a binary attribute encoded with its reference dropped
        raise ConfigError(f"a one-hot attribute needs distinct columns; received {members!r}")
    columns = [np.asarray(_one_column(X, m, x_name)) for m in members]
    # pd.NA of a nullable column too, before the cast refuses it as no number (a review)
    absent = np.column_stack([is_missing(c) for c in columns])
    try:
        values = np.column_stack(
            [np.asarray(pd.Series(c, dtype=object).fillna(0), dtype=np.float64) for c in columns]
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"one-hot attribute columns {members!r} of {x_name} must hold numbers: {err}"
        ) from err
    # and a value that casts to NaN (the text "nan")
    missing = np.flatnonzero((absent | np.isnan(values)).any(axis=1))
    if len(missing):
        # NaN != 0 read as a column set: a row of [NaN, 0, 0] took the first member's name
        # (a review), and a row of NaN read as several columns set
        raise DataError(
            f"one-hot attribute columns {members!r} of {x_name} are missing in "
            f"{len(missing)} row(s) (the first at position {int(missing[0])}): leave those "
            "rows out, as PRV002 does"
        )
    hot = values != 0
    several = np.flatnonzero(hot.sum(axis=1) > 1)
    if len(several):
        raise ConfigError(
            f"one-hot attribute columns {members!r} of {x_name}: {len(several)} row(s) (the "
            f"first at position {int(several[0])}) have more than one column set"
        )
    names = np.array([str(m) for m in members] + [_NONE_HOT], dtype=object)
    index = np.where(hot.any(axis=1), hot.argmax(axis=1), len(members))
    out: np.ndarray = names[index]
    return out


def _one_column(X: ArrayLike, attribute: str | int, x_name: str) -> np.ndarray:
    if isinstance(X, pd.DataFrame):
        if attribute not in X.columns:
            raise ConfigError(
                f"attribute {attribute!r} is not a column of {x_name}; "
                f"{known_names(str(attribute), X.columns)}"
            )
        return X[attribute].to_numpy()
    arr = np.asarray(X)
    if not isinstance(attribute, int) or not -arr.shape[1] <= attribute < arr.shape[1]:
        raise ConfigError(
            f"attribute must be a column position in [0, {arr.shape[1]}) for an array "
            f"{x_name}; received {attribute!r}"
        )
    return arr[:, attribute]


def _check_labels(y: np.ndarray | None, n: int, name: str) -> None:
    if y is not None and len(y) != n:
        raise ConfigError(f"{name} must hold one label per row ({n}); received {len(y)}")


def _without(X: ArrayLike, attribute: Attribute | None) -> ArrayLike:
    if attribute is None:
        return X
    members = _members(attribute)
    if isinstance(X, pd.DataFrame):
        return X.drop(columns=members)
    positions = [m for m in members if isinstance(m, int)]
    if len(positions) < len(members):
        raise ConfigError(f"attribute must be a column position for an array; got {attribute!r}")
    return np.delete(np.asarray(X), positions, axis=1)


def _encode(frames: list[ArrayLike]) -> np.ndarray:
    """Numeric features for the attack learner; non-numeric columns become category codes
    shared across the frames (NaN stays NaN: the gradient-boosting learner handles it)."""
    parts = [f if isinstance(f, pd.DataFrame) else pd.DataFrame(np.asarray(f)) for f in frames]
    parts = [p.set_axis([str(c) for c in p.columns], axis=1) for p in parts]
    frame = pd.concat(parts, ignore_index=True)
    columns: list[np.ndarray] = []
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            columns.append(col.to_numpy(dtype=np.float64, na_value=np.nan))
        else:
            codes, _ = pd.factorize(col)
            columns.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
    if not columns:
        return np.zeros((len(frame), 0))
    return np.column_stack(columns)


def _encode_labels(labels: list[np.ndarray | None]) -> np.ndarray | None:
    if any(v is None for v in labels):
        return None
    joined = np.concatenate([_value_names(v) for v in labels if v is not None])
    codes, uniques = pd.factorize(joined)
    onehot: np.ndarray = (codes[:, None] == np.arange(len(uniques))[None, :]).astype(np.float64)
    return onehot


def _outputs(
    model: ModelAdapter, X: ArrayLike, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities, or the one-hot predicted label of a label-only model (with the label
    set, fixed by the first call so later calls line up)."""
    if model.has(Capability.PREDICT_PROBA):
        return model.predict_proba(X), None
    pred = np.asarray(model.predict(X))
    declared = model.classes_ is not None
    if labels is None:
        labels = np.asarray(model.classes_) if declared else np.unique(pred)
    column = _label_columns(pred, labels)
    if declared and (column < 0).any():
        raise ModelOutputError(
            f"model {model.info.name!r} predicted label(s) "
            f"{pd.unique(pred[column < 0])[:5].tolist()} that are not among its classes "
            f"{labels.tolist()}"
        )
    # without declared classes, a label the first call never saw has no column: a zero row
    onehot = np.zeros((len(pred), len(labels)), dtype=np.float64)
    seen = np.flatnonzero(column >= 0)
    onehot[seen, column[seen]] = 1.0
    return onehot, labels


def _label_columns(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each prediction's column in ``labels`` (-1: none), matched by value (a float label
    0.0 is the class 0, as an endpoint's FP64 output often is), else by its text."""
    column = np.asarray(pd.Index(labels).get_indexer(pred), dtype=np.int64)
    if (column < 0).any():
        text = pd.Index(labels.astype(object).astype(str))
        by_text = text.get_indexer(pred.astype(object).astype(str))
        column = np.where(column < 0, by_text, column)
    return column


def _splits(
    n: int, n_aux: int, truth: np.ndarray, cv: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows to learn from, target rows to predict): the auxiliary rows, or cross-fit folds
    (stratified by the attribute where every value has at least ``cv`` rows)."""
    if n_aux:
        return [(np.arange(n, n + n_aux), np.arange(n))]
    from sklearn.model_selection import KFold, StratifiedKFold

    folds = min(cv, n)
    if folds < 2:
        raise ConfigError(f"cross-fitting needs at least 2 targets; received {n}")
    _, counts = np.unique(truth, return_counts=True)
    state = int(rng.integers(2**31 - 1))
    splitter: Any = (
        StratifiedKFold(folds, shuffle=True, random_state=state)
        if counts.min() >= folds
        else KFold(folds, shuffle=True, random_state=state)
    )
    return [(np.asarray(a), np.asarray(b)) for a, b in splitter.split(np.zeros(n), truth)]


def _fit_predict(
    kind: str,
    X_fit: np.ndarray,
    s_fit: np.ndarray,
    X_pred: np.ndarray,
    candidates: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted values and posteriors over ``candidates`` (one learned value: constant)."""
    post = np.zeros((len(X_pred), len(candidates)))
    values = np.unique(s_fit)
    if len(values) == 1 or X_fit.shape[1] == 0:
        # nothing to learn from: the learner's best guess is the training distribution
        vals, counts = np.unique(s_fit, return_counts=True)
        for v, c in zip(vals, counts, strict=True):
            post[:, int(np.searchsorted(candidates, v))] = c / len(s_fit)
        return np.full(len(X_pred), vals[np.argmax(counts)], dtype=object), post
    with native_threads(1 if len(X_fit) < SMALL_DATA_ROWS else None):
        clf = _learner(kind, seed).fit(X_fit, s_fit)
        proba = clf.predict_proba(X_pred)
    for j, v in enumerate(clf.classes_):
        post[:, int(np.searchsorted(candidates, v))] = proba[:, j]
    return np.asarray(clf.classes_[np.argmax(proba, axis=1)], dtype=object), post


def _learner(kind: str, seed: int) -> Any:
    if kind == "logistic":
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=1000))
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed)


def _invert(
    model: ModelAdapter,
    X: ArrayLike,
    attribute: Attribute,
    candidates: np.ndarray,
    values_by_name: Mapping[str, Any],
    observed: np.ndarray,
    out_labels: np.ndarray | None,
    prior: np.ndarray,
) -> np.ndarray:
    """Fredrikson's inversion: per target, the candidate whose output matches best."""
    distance = np.empty((len(observed), len(candidates)))
    for j, name in enumerate(candidates.tolist()):
        trial = _with_value(X, attribute, values_by_name[name])
        outputs, _ = _outputs(model, trial, out_labels)
        distance[:, j] = np.abs(outputs - observed).sum(axis=1)
    best = distance.min(axis=1, keepdims=True)
    tied = distance <= best + _TIE
    # among the best matches, what the attacker believed before querying decides
    choice = np.argmax(np.where(tied, prior + 1.0, 0.0), axis=1)
    picked: np.ndarray = candidates[choice].astype(object)
    return picked


def _with_value(X: ArrayLike, attribute: Attribute, value: Any) -> ArrayLike:
    """A copy of ``X`` with the attribute set to ``value`` in every row: for a one-hot group,
    the candidate's column set to 1 and its siblings to 0 (all 0 for "(none)")."""
    members = _members(attribute)
    if _is_group(attribute):
        values = {m: 1 if str(m) == value else 0 for m in members}
    else:
        values = {members[0]: value}
    if isinstance(X, pd.DataFrame):
        out = X.copy()
        for column, v in values.items():
            out[column] = pd.Series([v] * len(out), index=out.index, dtype=X[column].dtype)
        return out
    arr = np.array(X, copy=True)
    for column, v in values.items():
        if not isinstance(column, int):
            raise ConfigError(f"attribute must be a column position for an array; got {column!r}")
        arr[:, column] = v
    return arr

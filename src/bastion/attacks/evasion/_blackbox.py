"""Machinery shared by the black-box evasion attacks (Square, HopSkipJump).

- :class:`Space`: the attacks work in scaled units ``z = x / constraints.scale`` (standard
  deviations for tabular data, input units for tensors), so one ``eps`` fits every feature.
  :meth:`Space.project` makes every point feasible *before* it is queried, so what the model
  answered about is exactly what the attack may return: immutable features keep their value,
  bounds hold, integer features are integers, one-hot groups have one active member, and
  (when an ``eps`` ball is given) rounding moves toward the original so the ball still holds.
- :class:`Ledger`: per-sample query counts, the per-sample cap and the total budget, with one
  query per attacked point held in reserve for the final success check.
- :func:`finalize`: the success check (``predict`` on each candidate within ``eps``; no
  success is ever claimed from scores alone) and the :class:`EvasionResult`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from bastion.attacks.budget import Budget, BudgetTracker
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.results import EvasionResult
from bastion.exceptions import ConfigError, DataError, RemoteDeadlineError
from bastion.models.base import Capability, ModelAdapter, refuse_misordered_columns

__all__ = [
    "Ledger",
    "Norm",
    "Space",
    "as_rows",
    "attack_inputs",
    "change_report",
    "check_threat_model",
    "clean_predictions",
    "finalize",
    "label_columns",
    "margin",
    "norms",
    "predict_rows",
    "score_rows",
    "uses_logits",
    "within_eps",
]

Norm = Literal["inf", "2"]
_RTOL = 1e-6  # float tolerance of the eps check (REFERENCE.md: norm checked after clipping)
_ATOL = 1e-9


def check_threat_model(eps: float, norm: str, *, eps_required: bool = True) -> None:
    """Raise :class:`ConfigError` for an unknown norm or a non-positive / non-finite eps."""
    if norm not in ("inf", "2"):
        raise ConfigError(f"norm must be 'inf' or '2'; received {norm!r}")
    if eps_required and not (np.isfinite(eps) and eps > 0):
        raise ConfigError(f"eps must be a finite number > 0; received {eps!r}")


def attack_inputs(
    X: Any, y: Any, constraints: FeatureConstraints | None, model: ModelAdapter | None = None
) -> tuple[np.ndarray, tuple[int, ...], np.ndarray, Space]:
    """Rows, their original shape, labels and the feasible space every black-box attack
    starts from; a label count that does not match the rows is a named error. The model
    receives rows in its ``input_shape`` when it declares one; a torch model without one,
    in X's own row shape (images stay images, as the white-box attacks send them); any
    other model (scikit-learn, ONNX, a callable), flat rows."""
    refuse_misordered_columns(X, model)
    if constraints is not None:
        constraints.refuse_misordered(X)
    x, shape = as_rows(X)
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:  # a column vector of labels
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"y must hold one label per row; received shape {labels.shape}")
    if len(labels) != len(x):
        raise DataError(f"y has {len(labels)} labels for {len(x)} rows of X")
    declared = getattr(model, "input_shape", None)
    if declared:
        row_shape = tuple(int(s) for s in declared)
    elif getattr(model, "module", None) is not None:
        row_shape = tuple(shape[1:])
    else:
        row_shape = ()
    return x, shape, labels, Space(constraints, x, row_shape)


def as_rows(X: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """``X`` as float64 rows ``(n, d)`` and its original shape (images come back reshaped)."""
    if isinstance(X, pd.DataFrame):
        try:
            arr = X.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as err:
            # the attacks move feature values: a pipeline that encodes text itself is attacked
            # on numbers only (from a review: numpy's "could not convert string" escaped)
            text = [str(c) for c in X.columns if not _converts(X[c])]
            raise DataError(
                f"X must be numeric; column(s) {', '.join(map(repr, text[:5]))} hold text "
                "or objects: encode them (one-hot columns, with a one_hot_group in the "
                "schema) before the attack"
            ) from err
    else:
        arr = np.asarray(X)
    if arr.ndim < 2:
        raise DataError(f"X must have one row per point (2-D or more); received shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError("X has no rows to attack")
    try:
        rows = np.asarray(arr, dtype=np.float64).reshape(arr.shape[0], -1)
    except (TypeError, ValueError) as err:
        raise DataError(f"X must be numeric; received dtype {arr.dtype}") from err
    if not np.isfinite(rows).all():
        raise DataError("X holds NaN or infinite values; evasion attacks need finite inputs")
    return rows.copy(), tuple(arr.shape)


def _converts(column: pd.Series) -> bool:
    try:
        column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        return False
    return True


def norms(delta: np.ndarray, norm: str) -> np.ndarray:
    """Per-row L-inf or L2 norm."""
    if delta.shape[1] == 0:
        return np.zeros(delta.shape[0])
    if norm == "inf":
        out: np.ndarray = np.abs(delta).max(axis=1)
    else:
        out = np.sqrt((delta**2).sum(axis=1))
    return out


def within_eps(distance: np.ndarray, eps: float) -> np.ndarray:
    out: np.ndarray = distance <= eps * (1 + _RTOL) + _ATOL
    return out


class Space:
    """Scaled working space around the originals ``x0`` and its feasibility projection.

    Parameters:
        constraints: the feasibility constraints (``None``: unconstrained, eps in input units).
        x0: the original rows ``(n, d)`` in input units.
        row_shape: the shape of one row as the model takes it (``()``: flat).

    Raises:
        ConfigError: the constraints describe another number of features, or their scale
            is not one value per feature.
    """

    def __init__(
        self,
        constraints: FeatureConstraints | None,
        x0: np.ndarray,
        row_shape: tuple[int, ...] = (),
    ) -> None:
        d = x0.shape[1]
        cons = constraints if constraints is not None else FeatureConstraints.unconstrained(d)
        if cons.n_features != d:
            raise ConfigError(
                f"constraints describe {cons.n_features} features but X has {d} per row"
            )
        if row_shape and int(np.prod(row_shape)) != d:
            raise ConfigError(
                f"model input_shape {row_shape} holds {int(np.prod(row_shape))} values but X "
                f"rows have {d}"
            )
        scale = np.asarray(cons.scale, dtype=np.float64)
        if scale.size == 0:  # not given: input units
            scale = np.ones(d)
        if scale.shape != (d,):
            # another shape would measure eps in units nobody asked for (the white-box
            # attacks refuse it too)
            raise ConfigError(
                f"constraints.scale must hold one value per feature ({d}); received shape "
                f"{scale.shape}"
            )
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ConfigError("constraints.scale must be finite and > 0 for every feature")
        self.constraints = cons
        self.x0 = x0
        self.row_shape = tuple(row_shape)
        self.scale = scale
        self.z0 = x0 / scale
        self.lower = cons.lower / scale
        self.upper = cons.upper / scale
        # features that never move: immutable ones, and one-hot groups holding one
        self.fixed = cons.fixed_columns()
        self.mutable = np.flatnonzero(~self.fixed)
        self._discrete = cons.integer.copy()
        for group in cons.one_hot_groups:
            self._discrete[group] = True

    @property
    def n_features(self) -> int:
        return int(self.x0.shape[1])

    @property
    def integer_mutable(self) -> np.ndarray:
        """Columns of the mutable integer features, one-hot members left out (switches)."""
        integer = np.asarray(self.constraints.integer, dtype=bool).copy()
        for group in self.constraints.one_hot_groups:
            integer[group] = False
        out: np.ndarray = self.mutable[integer[self.mutable]]
        return out

    def to_x(self, z: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Input units of scaled rows ``z`` (of the originals ``rows``), with the exact values
        that the float round trip would blur: immutable features, integers, one-hot members."""
        cons = self.constraints
        x: np.ndarray = z * self.scale
        if self._discrete.any():
            x[:, self._discrete] = np.rint(x[:, self._discrete])
        lower, upper = cons.row_bounds(self.x0[rows])
        np.clip(x, lower, upper, out=x)
        if cons.integer.any():
            # whole numbers inside fractional bounds (inferred ones carry a margin): rounded
            # past 12.6, a 12.55 was clipped back to 12.6, a category a pipeline's encoder
            # never saw
            cols = cons.integer
            lo, hi = np.ceil(lower[:, cols] - 1e-9), np.floor(upper[:, cols] + 1e-9)
            x[:, cols] = np.clip(x[:, cols], lo, hi)
        # last: a fixed feature keeps its value, in bounds or not
        x[:, self.fixed] = self.x0[rows][:, self.fixed]
        return x

    def relax(self, z: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``z`` inside the bounds, one-hot groups valid and fixed features in place, but
        integer features left fractional: for probes that only estimate a direction
        (HopSkipJump's gradient). :meth:`project` rounds integers toward the point a probe
        leaves, and a probe moves each of d features by far less than one unit, so every
        probe of an all-integer row was the row itself and the walk ended after its start.
        The model still sees whole numbers (:meth:`to_x` rounds to the nearest: a feature
        moves once its displacement passes half a unit); the direction is estimated from the
        unrounded displacement. Never an output: candidates go through
        :meth:`project`."""
        x0 = self.x0[rows]
        x = z * self.scale
        lower, upper = self.constraints.row_bounds(x0)
        np.clip(x, lower, upper, out=x)
        self.constraints.one_member_on(x, upper, x0)  # as project chooses
        x[:, self.fixed] = x0[:, self.fixed]
        out: np.ndarray = x / self.scale
        return out

    def model_rows(self, x: np.ndarray) -> np.ndarray:
        """Rows ``x`` (input units) in the shape the model takes."""
        if len(self.row_shape) < 2:
            return x
        out: np.ndarray = x.reshape(len(x), *self.row_shape)
        return out

    def finite_span(self) -> float:
        """Median width of the finite bounds of mutable features (scaled units; 1 when none)."""
        width = (self.upper - self.lower)[self.mutable]
        width = width[np.isfinite(width)]
        return float(np.median(width)) if width.size else 1.0

    def project(
        self,
        z: np.ndarray,
        rows: np.ndarray,
        eps: float | None = None,
        norm: str = "inf",
    ) -> np.ndarray:
        """Feasible version of ``z`` (scaled rows of the originals ``rows``), inside the
        ``eps`` ball around them when ``eps`` is given."""
        cons = self.constraints
        x0 = self.x0[rows]
        lower, upper = cons.row_bounds(x0)
        x = z * self.scale
        x[:, self.fixed] = x0[:, self.fixed]
        np.clip(x, lower, upper, out=x)
        if eps is not None:
            x = self._into_ball(x, x0, eps, norm, lower, upper)
        if cons.integer.any():
            cols = cons.integer
            if eps is None:
                vals = np.rint(x[:, cols])
            else:
                # toward the original: |change| never grows, so the ball still holds
                base = x0[:, cols]
                step = x[:, cols] - base
                vals = np.where(
                    np.abs(base - np.rint(base)) <= 1e-9,
                    base + np.trunc(step + np.copysign(1e-7, step)),
                    np.rint(x[:, cols]),
                )
            # whole numbers inside the bounds (a hair of tolerance for float bounds)
            lo, hi = np.ceil(lower[:, cols] - 1e-9), np.floor(upper[:, cols] + 1e-9)
            x[:, cols] = np.clip(vals, lo, hi)
        if cons.one_hot_groups:
            self._one_hot(x, x0, upper, eps, norm)
        out: np.ndarray = cons.project(x, x0) / self.scale  # the guarantee; idempotent here
        return out

    def _into_ball(
        self,
        x: np.ndarray,
        x0: np.ndarray,
        eps: float,
        norm: str,
        lower: np.ndarray,
        upper: np.ndarray,
    ) -> np.ndarray:
        radius = eps * self.scale
        if norm == "inf":
            x = np.clip(x, x0 - radius, x0 + radius)
        else:
            delta = (x - x0) / self.scale
            length = np.sqrt((delta**2).sum(axis=1, keepdims=True))
            factor = np.minimum(1.0, eps / np.maximum(length, 1e-300))
            x = x0 + delta * factor * self.scale
        out: np.ndarray = np.clip(x, lower, upper)
        return out

    def _one_hot(
        self, x: np.ndarray, x0: np.ndarray, upper: np.ndarray, eps: float | None, norm: str
    ) -> None:
        # as FeatureConstraints.project chooses: an immutable group is left as it is (from a
        # review: an all-zero immutable group, a dropped reference category, had a member
        # turned on, which left the ball and reverted the other groups' switches too)
        self.constraints.one_member_on(x, upper, x0)
        if eps is None:
            return
        # a category switch costs 1 / std per member: revert it where it leaves the ball
        movable = self.constraints.movable_groups()
        if not movable:
            return
        members = np.concatenate(movable)
        dist = norms((x - x0) / self.scale, norm)
        outside = ~within_eps(dist, eps)
        if outside.any():
            x[np.ix_(outside, members)] = x0[np.ix_(outside, members)]


class Ledger:
    """Per-sample query counts against a per-sample cap and a total budget.

    One query per attacked point is held in reserve (``pending``) for the final success check,
    so neither the per-sample cap nor ``max_queries`` is ever exceeded.
    """

    def __init__(self, n: int, cap: int | None, budget: Budget | None) -> None:
        self.used = np.zeros(n, dtype=np.int64)
        self.cap = cap
        self.tracker = BudgetTracker(budget or Budget())
        self.pending = np.zeros(n, dtype=bool)
        self.stopped: str | None = None

    def left(self, rows: np.ndarray) -> np.ndarray:
        """Queries each of ``rows`` may still spend on the search (reserve excluded)."""
        if self.cap is None:
            return np.full(len(rows), np.iinfo(np.int64).max // 4, dtype=np.int64)
        out: np.ndarray = self.cap - self.used[rows] - self.pending[rows]
        return out

    def allow(self, wanted: int) -> int:
        """How many of ``wanted`` rows the total budget allows now (0: stop)."""
        if wanted <= 0:
            return 0
        reserve = int(self.pending.sum())
        got = self.tracker.allow(wanted + reserve)
        if got == 0:
            self.stopped = self.tracker.exhausted_reason or "query budget"
            return 0
        got -= reserve
        if got <= 0:
            self.stopped = "query budget"
            return 0
        return min(wanted, got)

    def charge(self, owners: np.ndarray) -> None:
        """Count one query for each entry of ``owners`` (the point each row belongs to)."""
        if owners.size:
            self.used += np.bincount(owners, minlength=self.used.size)
            self.tracker.spend(int(owners.size))

    def interrupt(self) -> None:
        self.tracker.interrupt()
        self.stopped = "interrupted"

    def out_of_time(self) -> None:
        """A remote model's retries ran into the wall-time budget
        (:class:`~bastion.exceptions.RemoteDeadlineError`): the attack stops as on its time
        budget, with what it has (raising ended the check in an error and lost them)."""
        self.tracker.exhausted_reason = "time budget"
        self.stopped = "time budget"  # what cut the work, as "interrupted" is


def predict_rows(
    model: ModelAdapter,
    x: np.ndarray,
    owners: np.ndarray,
    ledger: Ledger,
    space: Space,
    chunk: int = 65_536,
) -> np.ndarray:
    """Labels for rows ``x`` (input units), charged to ``owners``; large batches in chunks."""
    parts = []
    for i in range(0, len(x), chunk):
        # each chunk before its call, as the adapter counts: an interrupted call was sent,
        # the chunks after it were not
        ledger.charge(owners[i : i + chunk])
        parts.append(np.asarray(model.predict(space.model_rows(x[i : i + chunk]))))
    if not parts:
        return np.zeros(0)
    return np.concatenate(parts)


def score_rows(
    model: ModelAdapter,
    x: np.ndarray,
    owners: np.ndarray,
    ledger: Ledger,
    use_logits: bool,
    space: Space,
) -> np.ndarray:
    """Logits (when the model declares them) or probabilities for rows ``x``."""
    ledger.charge(owners)
    rows = space.model_rows(x)
    out = model.logits(rows) if use_logits else model.predict_proba(rows)
    return np.asarray(out, dtype=np.float64)


def label_columns(model: ModelAdapter, y: np.ndarray, n_columns: int) -> np.ndarray:
    """Column of each label in the model's scores (-1 when the model has no such class)."""
    classes = model.classes_
    if classes is not None:
        lookup = {_key(c): i for i, c in enumerate(classes.tolist())}
        return np.array([lookup.get(_key(v), -1) for v in y.tolist()], dtype=np.intp)
    if y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        cols = y.astype(np.intp)
        k = max(n_columns, 2)
        outside = np.unique(y[(cols < 0) | (cols >= k)])
        if outside.size:
            # without classes_, a label is read as a score column; one that names no column
            # says the labels are something else (wine's 1..3, -1/+1), and reading them as
            # columns would attack the wrong class or none (those points counted robust)
            raise ConfigError(
                f"model {model.info.name!r} has no classes_, so labels are read as its score "
                f"columns 0..{k - 1}; labels {outside[:5].tolist()} are not: give the adapter "
                "its classes (classes=[...], in the order of its score columns)"
            )
        return cols
    raise ConfigError(
        f"model {model.info.name!r} has no classes_ and labels of dtype {y.dtype} are not "
        "column indices; give the adapter its classes"
    )


def _key(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def margin(scores: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Score of the true class minus the best other class (negative: misclassified)."""
    if scores.shape[1] == 1:  # a single logit: class 1 when positive
        s = scores[:, 0]
        out: np.ndarray = np.where(cols == 1, s, -s)
        return out
    rows = np.arange(len(scores))
    true = scores[rows, cols]
    others = scores.copy()
    others[rows, cols] = -np.inf
    out = true - others.max(axis=1)
    return out


def uses_logits(model: ModelAdapter) -> bool:
    return model.has(Capability.LOGITS)


def change_report(
    x_adv: np.ndarray, x: np.ndarray, success: np.ndarray, names: tuple[str, ...]
) -> dict[str, Any]:
    """How successful points changed, in the features' original units (aggregates only)."""
    if not success.any():
        return {
            "mean_abs_change_original_units": {},
            "mean_abs_change_original_units_aggregate": None,
            "median_changed_features": None,
        }
    diff = np.abs(x_adv[success] - x[success])
    changed = diff > 1e-12 * np.maximum(1.0, np.abs(x[success]))
    per_feature: dict[str, float] = {}
    for j in np.flatnonzero(changed.any(axis=0)):
        per_feature[names[j]] = float(diff[changed[:, j], j].mean())
    return {
        "mean_abs_change_original_units": per_feature,
        "mean_abs_change_original_units_aggregate": float(diff[changed].mean())
        if changed.any()
        else None,
        "median_changed_features": float(np.median(changed.sum(axis=1))),
    }


def finalize(
    *,
    name: str,
    model: ModelAdapter,
    space: Space,
    shape: tuple[int, ...],
    y: np.ndarray,
    clean_pred: np.ndarray,
    candidate: np.ndarray,
    x_candidate: np.ndarray,
    eps: float,
    norm: str,
    ledger: Ledger,
    started: float,
    extra: Mapping[str, Any],
    known: tuple[np.ndarray, np.ndarray] | None = None,
    probe: np.ndarray | None = None,
) -> EvasionResult:
    """Check each candidate within ``eps`` with ``predict`` and build the result.

    The check spends the reserved query of each candidate (whatever the time budget says:
    it is one batched call), so a success is always a verified misclassification.
    ``known``: (mask, labels) of candidates ``predict`` already judged at ``x_candidate``
    during the attack, taken as they are. ``probe``: points that are no candidate but whose
    ``x_candidate`` is checked too (with their reserved query): a success if ``predict``
    says so, never an unverified candidate.
    """
    x = space.x0
    distance = norms((x_candidate - x) / space.scale, norm)
    correct = np.asarray(clean_pred == y)
    inside = correct & within_eps(distance, eps)
    check = candidate & inside
    if probe is not None:
        check = check | (probe & inside)
    pred = clean_pred.copy()
    verified = np.zeros(len(x), dtype=bool)
    if known is not None:
        judged = check & known[0]
        if judged.any():
            # labels as predict gave them: widen the clean labels' dtype first (a string
            # label may be longer than every clean one)
            labels = np.asarray(known[1][judged].tolist())
            pred = pred.astype(np.result_type(pred.dtype, labels.dtype))
            pred[judged] = labels
            verified[judged] = True
        check_now = check & ~known[0]
    else:
        check_now = check
    idx = np.flatnonzero(check_now)
    if idx.size:
        try:
            pred_idx = predict_rows(model, x_candidate[idx], idx, ledger, space)
        except KeyboardInterrupt:
            # Ctrl-C during the check: nothing is verified, so nothing is a success
            ledger.interrupt()
        except RemoteDeadlineError:
            ledger.out_of_time()  # as Ctrl-C: the check's rows are not verified
        else:
            if pred.dtype != pred_idx.dtype:
                pred = pred.astype(np.result_type(pred.dtype, pred_idx.dtype))
            pred[idx] = pred_idx
            verified[idx] = True
    ledger.pending[:] = False
    success = check & verified & np.asarray(pred != y)
    x_adv = x.copy()
    x_adv[success] = x_candidate[success]
    perturbation = np.full(len(x), np.nan)
    perturbation[success] = distance[success]
    out_extra = dict(extra)
    out_extra.update(change_report(x_adv, x, success, space.constraints.names))
    # candidates (a negative margin, a decision-boundary point) that predict did not confirm:
    # refuted with no queries left to search on, or their check interrupted
    out_extra["unverified_candidates"] = int((candidate & inside & ~success).sum())
    # originals that break their own constraints (a one-hot group without exactly one 1, a
    # fraction in an integer feature): any candidate must repair them, usually beyond eps,
    # so they read as robust; ADV001 leaves them out, a caller of the attack can too
    out_extra["constraint_violating_points"] = space.constraints.count_invalid(x)
    # the unit of eps and the perturbations, as the white-box results say (a review)
    out_extra["eps_unit"] = "input" if bool(np.all(space.scale == 1.0)) else "std"
    return EvasionResult(
        attack=name,
        x_adv=x_adv.reshape(shape),
        y_true=y,
        clean_pred=clean_pred,
        adv_pred=pred,
        success=success,
        perturbation=perturbation,
        queries=ledger.used.copy(),
        eps=float(eps),
        norm=norm,
        elapsed_s=time.perf_counter() - started,
        stopped=ledger.stopped,
        extra=out_extra,
    )


def clean_predictions(
    model: ModelAdapter, x: np.ndarray, ledger: Ledger, space: Space
) -> np.ndarray:
    """One ``predict`` per point (counted): the clean labels that decide which points to attack.
    Ctrl-C here raises ``KeyboardInterrupt``: without clean labels there is nothing to report.

    Raises:
        ConfigError: the total budget cannot pay for one clean prediction per point.
    """
    n = len(x)
    if ledger.tracker.budget.max_queries is not None and ledger.tracker.budget.max_queries < n:
        raise ConfigError(
            f"budget max_queries={ledger.tracker.budget.max_queries} cannot pay for the {n} "
            "clean predictions the attack needs (one per point)"
        )
    return predict_rows(model, x, np.arange(n), ledger, space)

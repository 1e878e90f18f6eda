"""Group fairness metrics with Fairlearn's definitions, computed from one ``np.bincount``.

Every metric here depends only on the per-group confusion counts, so the whole computation is:
encode the groups once (intersectional groups are the observed combinations of several
sensitive features), map ``y_true`` / ``y_pred`` to 0/1, and count the ``(group, y, yhat)``
cells with ``np.bincount(group * 4 + 2 * y + yhat)``. On a million rows this is a few
milliseconds where Fairlearn's ``MetricFrame`` (a pandas ``groupby().apply`` that calls
scikit-learn's ``confusion_matrix`` per group) takes seconds; the values are identical
(``benchmarks/bench_fairness.py`` measures it, ``tests/fairness`` asserts it).

Definitions (Fairlearn 0.15, ``fairlearn.metrics``):

- selection rate of group *a*: ``P[h(X) = 1 | A = a]`` (predicted positive share);
- true positive rate ``TP / (TP + FN)`` and false positive rate ``FP / (FP + TN)``; a group
  with no actual positives has TPR 0 and one with no actual negatives FPR 0, as scikit-learn's
  ``confusion_matrix(normalize="true")`` (which Fairlearn calls) replaces 0/0 by 0;
- precision ``TP / (TP + FP)``, 0 when the group has no predicted positive (scikit-learn's
  ``zero_division`` default, without its warning);
- ``method="between_groups"``: difference = max - min over groups, ratio = min / max
  (0 / 0 gives NaN, as pandas does in Fairlearn);
- ``method="to_overall"``: difference = max over groups of ``|x_a - overall|``, ratio = min over
  groups of ``x_a / overall`` folded below 1 (``r > 1`` becomes ``1 / r``), NaN ratios skipped;
- ``demographic_parity_*`` use the selection rate, ``equal_opportunity_*`` the TPR;
  ``equalized_odds_difference`` is the larger of the TPR and FPR differences (``agg="mean"``:
  their mean) and ``equalized_odds_ratio`` the smaller of the two ratios. Like Fairlearn, which
  applies Python's ``max`` / ``min`` to the pair (TPR first), a NaN TPR value wins and a NaN
  FPR value is ignored; ``agg="mean"`` skips NaN like ``pandas.Series.mean``.

Binary labels: ``y_true`` and ``y_pred`` together may hold at most two labels. ``pos_label``
names the positive one; by default it is 1 when the labels lie in {0, 1} or {-1, 1}
(Fairlearn's rule) and otherwise the larger label (Bastion's ``Predictions.positive_label``
convention, where Fairlearn would raise). Fairlearn's ``selection_rate`` always counts
``y_pred == 1``; for labels outside {0, 1} / {-1, 1} pass the positive label explicitly to
Fairlearn's metric to compare.

Example::

    >>> import numpy as np
    >>> y_true = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    >>> y_pred = np.array([1, 1, 1, 1, 0, 1, 1, 0, 0, 0])
    >>> sex = np.array(["f"] * 5 + ["m"] * 5)
    >>> demographic_parity_difference(y_true, y_pred, sensitive_features=sex)
    0.4
    >>> demographic_parity_ratio(y_true, y_pred, sensitive_features=sex)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from bastion._numeric import safe_divide
from bastion.exceptions import ConfigError, DataError

__all__ = [
    "FAIRNESS_METRICS",
    "ConfidenceInterval",
    "GroupMetrics",
    "bootstrap_fairness_ci",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "group_metrics",
]

Method = Literal["between_groups", "to_overall"]
Agg = Literal["worst_case", "mean"]
RateName = Literal["selection_rate", "tpr", "fpr", "precision"]
FairnessMetric = Literal[
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
]
FAIRNESS_METRICS: tuple[str, ...] = get_args(FairnessMetric)
"""The fairness metric names, as Fairlearn names them."""

SensitiveFeatures = pd.Series | pd.DataFrame | np.ndarray | Mapping[str, Any] | Sequence[Any]

# Error messages, kept as constants so that tests assert them (Fairlearn's habit).
EMPTY_INPUT = "y_true is empty: fairness metrics need at least one row"
LENGTH_MISMATCH = (
    "{name} has {got} rows but y_true has {expected}; y_true, y_pred and every sensitive "
    "feature must have the same length"
)
NOT_1D = "{name} must be one-dimensional (one label per row); received shape {shape}"
LABEL_HAS_NAN = "{name} contains missing values (NaN/None); fairness metrics need a label per row"
NON_BINARY = (
    "y_true and y_pred hold {k} distinct labels ({labels}); fairness metrics need binary "
    "labels: binarise the target or pick a positive class"
)
POS_LABEL_UNKNOWN = (
    "pos_label {pos_label!r} is not one of the labels in y_true and y_pred: {labels}"
)
UNORDERABLE_LABELS = "y_true and y_pred labels {labels} cannot be ordered; pass pos_label"
NO_SENSITIVE = "sensitive_features is empty: name at least one sensitive feature"
SENSITIVE_MISSING = (
    "sensitive feature {name!r} has missing values (first at row {row}); remove or fill them "
    "before measuring fairness"
)
SENSITIVE_UNORDERABLE = "sensitive feature {name!r} mixes values that cannot be ordered: {err}"
SINGLE_GROUP = (
    "sensitive feature(s) {names} form a single group ({group}); fairness metrics compare at "
    "least two groups"
)
BAD_METHOD = "method must be 'between_groups' or 'to_overall'; received {value!r}"
BAD_AGG = "agg must be 'worst_case' or 'mean'; received {value!r}"
BAD_METRIC = "metric must be one of {allowed}; received {value!r}"
BAD_RATE = "rate must be one of {allowed}; received {value!r}"
BAD_RESAMPLES = "n_resamples must be a positive integer; received {value!r}"
BAD_CONFIDENCE = "confidence must be strictly between 0 and 1; received {value!r}"

# Beyond this many possible combinations of sensitive values, observed intersectional groups
# are found by hashing instead of a presence table, to bound memory.
_MAX_DENSE_COMBINATIONS = 1 << 22

# cell columns of the (group, 4) count table: index = 2 * y_true + y_pred
_TN, _FP, _FN, _TP = 0, 1, 2, 3


# -- encoding -----------------------------------------------------------------------------
def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:  # a column vector, as Fairlearn squeezes it
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(NOT_1D.format(name=name, shape=arr.shape))
    return arr


def _label_set(y_true: np.ndarray, y_pred: np.ndarray) -> list[Any]:
    """Sorted distinct labels of both arrays; a fast min/max path for numeric dtypes."""
    for arr, name in ((y_true, "y_true"), (y_pred, "y_pred")):
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise DataError(LABEL_HAS_NAN.format(name=name))
    if y_true.dtype.kind in "biuf" and y_pred.dtype.kind in "biuf":
        lo = min(y_true.min(), y_pred.min())
        hi = max(y_true.max(), y_pred.max())
        if lo == hi:
            return [lo.item()]
        if not (
            np.logical_or(y_true == lo, y_true == hi).all()
            and np.logical_or(y_pred == lo, y_pred == hi).all()
        ):
            distinct = np.union1d(np.unique(y_true), np.unique(y_pred))
            shown = ", ".join(map(repr, distinct[:6].tolist()))
            raise DataError(NON_BINARY.format(k=distinct.size, labels=shown))
        return [lo.item(), hi.item()]
    values: set[Any] = set()
    for arr, name in ((y_true, "y_true"), (y_pred, "y_pred")):
        uniques = pd.unique(pd.Series(arr, dtype=object) if arr.dtype.kind != "O" else arr)
        if pd.isna(uniques).any():
            raise DataError(LABEL_HAS_NAN.format(name=name))
        values.update(u.item() if isinstance(u, np.generic) else u for u in uniques)
    if len(values) > 2:
        shown = ", ".join(sorted(map(repr, values))[:6])
        raise DataError(NON_BINARY.format(k=len(values), labels=shown))
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)  # only a pos_label can say which is positive


def _resolve_pos_label(labels: list[Any], pos_label: Any) -> Any:
    if pos_label is None:
        # Fairlearn's rule for {0, 1} and {-1, 1}; otherwise the larger label (Bastion's).
        if set(labels) <= {0, 1} or set(labels) <= {-1, 1}:
            return 1
        try:
            return max(labels)
        except TypeError as err:
            raise DataError(UNORDERABLE_LABELS.format(labels=labels)) from err
    if len(labels) == 2 and pos_label not in labels:
        raise DataError(POS_LABEL_UNKNOWN.format(pos_label=pos_label, labels=labels))
    return pos_label


def _binarize(y_true: Any, y_pred: Any, pos_label: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    yt = _as_1d(y_true, "y_true")
    yp = _as_1d(y_pred, "y_pred")
    if yt.shape[0] == 0:
        raise DataError(EMPTY_INPUT)
    if yp.shape[0] != yt.shape[0]:
        raise DataError(
            LENGTH_MISMATCH.format(name="y_pred", got=yp.shape[0], expected=yt.shape[0])
        )
    labels = _label_set(yt, yp)
    pos = _resolve_pos_label(labels, pos_label)
    return np.asarray(yt == pos, dtype=bool), np.asarray(yp == pos, dtype=bool), pos


def _feature_columns(sensitive_features: SensitiveFeatures) -> list[tuple[str, Any]]:
    """(name, values) per sensitive feature, named the way Fairlearn names them."""
    if isinstance(sensitive_features, pd.DataFrame):
        return [(str(c), sensitive_features[c]) for c in sensitive_features.columns]
    if isinstance(sensitive_features, pd.Series):
        name = sensitive_features.name
        return [(str(name) if name is not None else "sensitive_feature_0", sensitive_features)]
    if isinstance(sensitive_features, Mapping):
        return [(str(k), v) for k, v in sensitive_features.items()]
    arr = np.asarray(sensitive_features)
    if arr.ndim == 2:
        return [(f"sensitive_feature_{i}", arr[:, i]) for i in range(arr.shape[1])]
    return [("sensitive_feature_0", arr)]


def _factorize(name: str, values: Any, n: int) -> tuple[np.ndarray, list[Any]]:
    """Codes 0..m-1 ordered by sorted value (Fairlearn's groupby order) and the values.

    Fast paths avoid creating a Python object per row: category codes, a presence table for
    small-range integers, and hashing of fixed-width numpy strings. Everything else goes
    through ``pandas.factorize``.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        values = values.array
    if isinstance(values, pd.Series) and isinstance(values.dtype, np.dtype):
        values = values.to_numpy()
    elif not isinstance(values, pd.Series | pd.Index | pd.api.extensions.ExtensionArray):
        values = _as_1d(values, f"sensitive feature {name!r}")
    if len(values) != n:
        raise DataError(
            LENGTH_MISMATCH.format(name=f"sensitive feature {name!r}", got=len(values), expected=n)
        )
    if isinstance(values, pd.Categorical):
        # Fairlearn turns features into plain lists, so groups sort by value, not category order
        return _dense_sorted(name, np.asarray(values.codes), list(values.categories))
    if isinstance(values, np.ndarray) and n:
        kind = values.dtype.kind
        if kind == "i" or (kind == "u" and values.itemsize < 8):
            lo, hi = values.min().item(), values.max().item()
            if hi - lo < _MAX_DENSE_COMBINATIONS:
                # small-range integers: a presence table is faster than hashing and sorted
                shifted = values.astype(np.intp, copy=False) - lo
                present = np.bincount(shifted, minlength=hi - lo + 1) > 0
                remap = np.cumsum(present) - 1
                return remap[shifted], (np.flatnonzero(present) + lo).tolist()
        elif kind in "US":
            found = _fixed_width_codes(values)
            if found is not None:
                return _dense_sorted(name, *found)
    try:
        codes, uniques = pd.factorize(values, sort=True, use_na_sentinel=True)
    except TypeError as err:
        raise DataError(SENSITIVE_UNORDERABLE.format(name=name, err=err)) from err
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        raise DataError(SENSITIVE_MISSING.format(name=name, row=int(missing[0])))
    keys = [u.item() if isinstance(u, np.generic) else u for u in list(uniques)]
    return np.asarray(codes, dtype=np.intp), keys


def _dense_sorted(name: str, codes: np.ndarray, keys: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """Renumber codes into 0..m-1 over the observed keys, in sorted key order."""
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        raise DataError(SENSITIVE_MISSING.format(name=name, row=int(missing[0])))
    observed = np.flatnonzero(np.bincount(codes, minlength=len(keys)))
    try:
        order = sorted(observed.tolist(), key=lambda i: keys[i])
    except TypeError as err:
        raise DataError(SENSITIVE_UNORDERABLE.format(name=name, err=err)) from err
    lookup = np.zeros(len(keys), dtype=np.intp)
    lookup[order] = np.arange(len(order))
    values = [keys[i] for i in order]
    return lookup[codes], [v.item() if isinstance(v, np.generic) else v for v in values]


_HASH_MULT = np.uint32(0x9E3779B1)  # Knuth's multiplicative constant


def _fixed_width_codes(values: np.ndarray) -> tuple[np.ndarray, list[Any]] | None:
    """Codes and keys of a numpy string array by hashing its raw bytes; None on a collision.

    A 32-bit hash is enough: every row is compared with its group's representative
    afterwards, so a collision costs a fallback to pandas, never a wrong group.
    """
    arr = np.ascontiguousarray(values)
    n = arr.shape[0]
    word = np.uint32 if arr.itemsize % 4 == 0 else np.uint8
    words = arr.view(word).reshape(n, -1)
    h = np.zeros(n, dtype=np.uint32)
    for j in range(words.shape[1]):
        np.bitwise_xor(h, words[:, j], out=h, casting="unsafe")
        h *= _HASH_MULT  # wraps modulo 2**32, as intended
    codes, hashes = pd.factorize(h)
    rep = np.zeros(len(hashes), dtype=np.intp)
    rep[codes] = np.arange(n)  # any row of each code will do
    keys = arr[rep]
    if not np.array_equal(keys[codes], arr):  # two strings shared a hash: let pandas decide
        return None
    return np.asarray(codes, dtype=np.intp), keys.tolist()


def _encode_groups(
    sensitive_features: SensitiveFeatures, n: int
) -> tuple[tuple[str, ...], np.ndarray, list[tuple[Any, ...]]]:
    """Group code per row and the sensitive values of each group, in Fairlearn's order."""
    columns = _feature_columns(sensitive_features)
    if not columns:
        raise DataError(NO_SENSITIVE)
    names = tuple(name for name, _ in columns)
    encoded = [_factorize(name, values, n) for name, values in columns]
    if len(encoded) == 1:
        codes, keys = encoded[0]
        return names, codes, [(k,) for k in keys]
    # Intersectional: fold the features in one at a time. code * len(keys) + next_code orders
    # combinations lexicographically, i.e. like the sorted value tuples of Fairlearn's
    # multi-column groupby; after each step the codes are renumbered over the observed
    # combinations, so they stay below n * len(keys) and never overflow.
    group, keys0 = encoded[0]
    values: list[tuple[Any, ...]] = [(k,) for k in keys0]
    for codes, keys in encoded[1:]:
        width = len(keys)
        combined = group.astype(np.int64) * width + codes
        total = len(values) * width
        if total <= _MAX_DENSE_COMBINATIONS:
            present = np.bincount(combined, minlength=total) > 0
            observed = np.flatnonzero(present)
            group = (np.cumsum(present) - 1)[combined]
        else:
            group, uniq = pd.factorize(combined, sort=True)
            observed = np.asarray(uniq, dtype=np.int64)
        prev, nxt = np.divmod(observed, width)
        values = [values[p] + (keys[k],) for p, k in zip(prev.tolist(), nxt.tolist(), strict=True)]
    return names, np.asarray(group, dtype=np.intp), values


def _group_label(names: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(names, values, strict=True))


# -- rates and aggregation (shared by point estimates and every bootstrap resample) -------
def _rates(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group rates from a (..., groups, 4) count table; absent groups (count 0) are NaN."""
    tn, fp, fn, tp = (cells[..., i] for i in (_TN, _FP, _FN, _TP))
    count = tn + fp + fn + tp
    absent = count == 0
    rates = {
        "selection_rate": safe_divide(fp + tp, count),
        "tpr": safe_divide(tp, tp + fn),
        "fpr": safe_divide(fp, fp + tn),
        "precision": safe_divide(tp, tp + fp),
    }
    if absent.any():  # only in bootstrap resamples, where a small group may not be drawn
        for arr in rates.values():
            arr[absent] = np.nan
    return rates


def _difference(by_group: np.ndarray, overall: np.ndarray, method: Method) -> np.ndarray:
    """Fairlearn's MetricFrame.difference over the last axis; NaN groups are skipped."""
    if method == "between_groups":
        # max_a |x_a - min| == max - min exactly: rounding is monotone
        return np.asarray(np.fmax.reduce(by_group, axis=-1) - np.fmin.reduce(by_group, axis=-1))
    return np.asarray(np.fmax.reduce(np.abs(by_group - overall[..., None]), axis=-1))


def _ratio(by_group: np.ndarray, overall: np.ndarray, method: Method) -> np.ndarray:
    """Fairlearn's MetricFrame.ratio over the last axis; 0 / 0 is NaN, NaN groups skipped."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "between_groups":
            lo = np.fmin.reduce(by_group, axis=-1)
            hi = np.fmax.reduce(by_group, axis=-1)
            return np.asarray(lo / hi)
        r = by_group / overall[..., None]
        r = np.where(r > 1, 1 / r, r)  # Fairlearn's ratio_sub_one, applied the same way
    return np.asarray(np.fmin.reduce(r, axis=-1))


def _builtin_max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Python's max(a, b) keeps a unless b > a: a NaN in a wins, a NaN in b is ignored.
    return np.where(b > a, b, a)


def _builtin_min(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(b < a, b, a)


def _mean_skipna(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # pandas Series.mean: NaN filled with 0 in the sum, divided by the count of the others
    na, nb = np.isnan(a), np.isnan(b)
    total = np.where(na, 0.0, a) + np.where(nb, 0.0, b)
    k = (~na).astype(np.int64) + (~nb).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(k > 0, total / k, np.nan)


def _check_method(method: str) -> None:
    if method not in get_args(Method):
        raise ConfigError(BAD_METHOD.format(value=method))


def _check_agg(agg: str) -> None:
    if agg not in get_args(Agg):
        raise ConfigError(BAD_AGG.format(value=agg))


def _fairness_from_cells(cells: np.ndarray, metric: str, method: Method, agg: Agg) -> np.ndarray:
    """One fairness metric for each leading index of a (..., groups, 4) count table."""
    by_group = _rates(cells)
    overall = _rates(cells.sum(axis=-2))
    family, _, kind = metric.rpartition("_")
    reduce = _difference if kind == "difference" else _ratio
    if family == "demographic_parity":
        return reduce(by_group["selection_rate"], overall["selection_rate"], method)
    if family == "equal_opportunity":
        return reduce(by_group["tpr"], overall["tpr"], method)
    tpr = reduce(by_group["tpr"], overall["tpr"], method)
    fpr = reduce(by_group["fpr"], overall["fpr"], method)
    if agg == "mean":
        return _mean_skipna(tpr, fpr)
    return _builtin_max(tpr, fpr) if kind == "difference" else _builtin_min(tpr, fpr)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


# -- public results -----------------------------------------------------------------------
@dataclass(frozen=True)
class ConfidenceInterval:
    """A percentile bootstrap confidence interval for one fairness metric.

    ``estimate`` is the metric on the data itself; ``low`` / ``high`` are the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled values
    (NaN resamples, e.g. a ratio whose groups all selected nobody, are left out).
    """

    metric: str
    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in ``[low, high]``."""
        return self.low <= value <= self.high


@dataclass(frozen=True, eq=False)
class GroupMetrics:
    """Confusion counts and rates per group, in Fairlearn's group order (sorted values).

    Arrays are read-only and aligned with ``groups``. Build one with :func:`group_metrics`.

    Attributes
    ----------
    features:
        Names of the sensitive features (several for intersectional groups).
    groups:
        One label per group, ``"sex=1, age_band=40-59"``.
    values:
        The sensitive values of each group, one tuple per group.
    count, tp, fp, fn, tn:
        Rows and confusion counts per group.
    selection_rate, tpr, fpr, precision:
        Rates per group (see the module docstring for the 0 / 0 conventions).
    pos_label:
        The label counted as positive.
    """

    features: tuple[str, ...]
    groups: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    cells: np.ndarray  # (groups, 4): TN, FP, FN, TP
    count: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    selection_rate: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    precision: np.ndarray
    pos_label: Any

    @classmethod
    def from_cells(
        cls,
        cells: np.ndarray | Sequence[Sequence[int]],
        *,
        features: Sequence[str],
        values: Sequence[tuple[Any, ...]],
        pos_label: Any = 1,
    ) -> GroupMetrics:
        """Build from a (groups, 4) table of TN, FP, FN, TP counts (internal and tests)."""
        table = _readonly(np.array(cells, dtype=np.int64).reshape(-1, 4))
        rates = _rates(table)
        return cls(
            features=tuple(features),
            groups=tuple(_group_label(features, v) for v in values),
            values=tuple(tuple(v) for v in values),
            cells=table,
            count=_readonly(table.sum(axis=1)),
            tp=table[:, _TP],
            fp=table[:, _FP],
            fn=table[:, _FN],
            tn=table[:, _TN],
            selection_rate=_readonly(rates["selection_rate"]),
            tpr=_readonly(rates["tpr"]),
            fpr=_readonly(rates["fpr"]),
            precision=_readonly(rates["precision"]),
            pos_label=pos_label,
        )

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def overall(self) -> dict[str, float]:
        """The rates over all rows (Fairlearn's ``MetricFrame.overall``)."""
        rates = _rates(self.cells.sum(axis=0))
        return {name: float(value) for name, value in rates.items()}

    def difference(self, rate: RateName, method: Method = "between_groups") -> float:
        """Difference of one per-group rate: max - min, or the largest gap to the overall rate."""
        _check_method(method)
        if rate not in get_args(RateName):
            raise ConfigError(BAD_RATE.format(allowed=list(get_args(RateName)), value=rate))
        overall = np.asarray(self.overall()[rate])
        return float(_difference(getattr(self, rate), overall, method))

    def ratio(self, rate: RateName, method: Method = "between_groups") -> float:
        """Ratio of one per-group rate: min / max, or the smallest ratio to the overall rate."""
        _check_method(method)
        if rate not in get_args(RateName):
            raise ConfigError(BAD_RATE.format(allowed=list(get_args(RateName)), value=rate))
        overall = np.asarray(self.overall()[rate])
        return float(_ratio(getattr(self, rate), overall, method))

    def metric(
        self,
        name: FairnessMetric | str,
        *,
        method: Method = "between_groups",
        agg: Agg = "worst_case",
    ) -> float:
        """One fairness metric by Fairlearn's name, e.g. ``"equalized_odds_difference"``.

        Raises
        ------
        ConfigError
            ``name``, ``method`` or ``agg`` is not one of the allowed values.
        """
        if name not in FAIRNESS_METRICS:
            raise ConfigError(BAD_METRIC.format(allowed=list(FAIRNESS_METRICS), value=name))
        _check_method(method)
        _check_agg(agg)
        return float(_fairness_from_cells(self.cells, name, method, agg))

    def small_groups(self, min_size: int) -> list[str]:
        """Labels of the groups with fewer than ``min_size`` rows."""
        return [g for g, c in zip(self.groups, self.count.tolist(), strict=True) if c < min_size]

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-compatible dict per group, for reports and plots.

        Example::

            [{"group": "sex=1", "features": {"sex": 1}, "count": 212, "selection_rate": 0.41,
              "tpr": 0.8, "fpr": 0.1, "precision": 0.77}, ...]
        """
        return [
            {
                "group": self.groups[i],
                "features": {
                    f: _json_value(v) for f, v in zip(self.features, self.values[i], strict=True)
                },
                "count": int(self.count[i]),
                "selection_rate": _json_value(float(self.selection_rate[i])),
                "tpr": _json_value(float(self.tpr[i])),
                "fpr": _json_value(float(self.fpr[i])),
                "precision": _json_value(float(self.precision[i])),
            }
            for i in range(self.n_groups)
        ]

    def bootstrap_ci(
        self,
        metrics: Sequence[FairnessMetric | str] = FAIRNESS_METRICS,
        *,
        n_resamples: int = 1000,
        confidence: float = 0.95,
        random_state: int | np.random.Generator | None = 0,
        method: Method = "between_groups",
        agg: Agg = "worst_case",
    ) -> dict[str, ConfidenceInterval]:
        """Percentile bootstrap intervals; see :func:`bootstrap_fairness_ci`."""
        if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
            raise ConfigError(BAD_RESAMPLES.format(value=n_resamples))
        if not 0.0 < confidence < 1.0:
            raise ConfigError(BAD_CONFIDENCE.format(value=confidence))
        _check_method(method)
        _check_agg(agg)
        for name in metrics:
            if name not in FAIRNESS_METRICS:
                raise ConfigError(BAD_METRIC.format(allowed=list(FAIRNESS_METRICS), value=name))
        rng = (
            random_state
            if isinstance(random_state, np.random.Generator)
            else np.random.default_rng(random_state)
        )
        flat = self.cells.reshape(-1)
        n = int(flat.sum())
        # Resampling n rows with replacement draws the cell counts from Multinomial(n, p);
        # the metrics depend on the rows only through those counts, so this is the ordinary
        # row bootstrap (as Fairlearn's MetricFrame does it) at O(resamples x cells) cost.
        draws = rng.multinomial(n, flat / n, size=n_resamples).reshape(n_resamples, -1, 4)
        alpha = (1.0 - confidence) / 2.0
        result: dict[str, ConfidenceInterval] = {}
        for name in metrics:
            samples = _fairness_from_cells(draws, name, method, agg)
            finite = samples[~np.isnan(samples)]
            if finite.size:
                lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
            else:
                lo = hi = np.nan
            result[name] = ConfidenceInterval(
                metric=name,
                estimate=self.metric(name, method=method, agg=agg),
                low=float(lo),
                high=float(hi),
                confidence=confidence,
                n_resamples=n_resamples,
            )
        return result


# -- public functions ---------------------------------------------------------------------
def group_metrics(
    y_true: Any,
    y_pred: Any,
    sensitive_features: SensitiveFeatures,
    *,
    pos_label: Any = None,
) -> GroupMetrics:
    """Confusion counts and rates per group (Fairlearn's ``MetricFrame`` by_group).

    Parameters
    ----------
    y_true, y_pred:
        Binary labels, one per row (any two values; see ``pos_label``).
    sensitive_features:
        One feature (array, list, ``Series``) or several (``DataFrame``, 2-D array, mapping
        name -> values); several give intersectional groups, one per observed combination.
    pos_label:
        The positive label. Default: 1 for labels in {0, 1} or {-1, 1}, else the larger label.

    Returns
    -------
    GroupMetrics
        Groups sorted by value, as Fairlearn orders them.

    Raises
    ------
    DataError
        Lengths differ, labels are not binary (or hold NaN), ``pos_label`` is not a label,
        a sensitive feature has missing values, or all rows fall in a single group.

    Example::

        >>> gm = group_metrics([1, 0, 1, 1], [1, 0, 0, 1], ["a", "a", "b", "b"])
        >>> gm.groups, gm.tpr.tolist()
        (('sensitive_feature_0=a', 'sensitive_feature_0=b'), [1.0, 0.5])
    """
    yt, yp, pos = _binarize(y_true, y_pred, pos_label)
    n = yt.shape[0]
    names, group, values = _encode_groups(sensitive_features, n)
    if len(values) < 2:
        raise DataError(
            SINGLE_GROUP.format(names=list(names), group=_group_label(names, values[0]))
        )
    # one pass: cell index = group * 4 + 2 * y_true + y_pred
    index = group * 4
    index += 2 * yt.view(np.int8) + yp.view(np.int8)
    cells = np.bincount(index, minlength=4 * len(values)).reshape(-1, 4)
    return GroupMetrics.from_cells(cells, features=names, values=values, pos_label=pos)


def demographic_parity_difference(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: SensitiveFeatures,
    method: Method = "between_groups",
    pos_label: Any = None,
) -> float:
    """Largest minus smallest group selection rate (Fairlearn's definition).

    Parameters
    ----------
    y_true, y_pred, sensitive_features, pos_label:
        As in :func:`group_metrics`.
    method:
        ``"between_groups"`` (max - min) or ``"to_overall"`` (largest gap to the overall rate).

    Returns
    -------
    float
        0 when every group has the same selection rate.

    Raises
    ------
    DataError
        As :func:`group_metrics`.
    ConfigError
        Unknown ``method``.

    Example::

        >>> demographic_parity_difference([0] * 4, [1, 1, 1, 0], sensitive_features=[0, 0, 1, 1])
        0.5
    """
    gm = group_metrics(y_true, y_pred, sensitive_features, pos_label=pos_label)
    return gm.metric("demographic_parity_difference", method=method)


def demographic_parity_ratio(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: SensitiveFeatures,
    method: Method = "between_groups",
    pos_label: Any = None,
) -> float:
    """Smallest over largest group selection rate; NaN when no group selects anyone.

    Below 0.8 this is the "four-fifths rule" violation of disparate impact.
    Parameters, errors: as :func:`demographic_parity_difference`.

    Example::

        >>> demographic_parity_ratio([0] * 4, [1, 1, 1, 0], sensitive_features=[0, 0, 1, 1])
        0.5
    """
    gm = group_metrics(y_true, y_pred, sensitive_features, pos_label=pos_label)
    return gm.metric("demographic_parity_ratio", method=method)


def equalized_odds_difference(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: SensitiveFeatures,
    method: Method = "between_groups",
    agg: Agg = "worst_case",
    pos_label: Any = None,
) -> float:
    """The larger (``agg="mean"``: the mean) of the TPR and FPR differences.

    Parameters, errors: as :func:`demographic_parity_difference`; ``agg`` must be
    ``"worst_case"`` or ``"mean"`` (``ConfigError`` otherwise).

    Example::

        >>> equalized_odds_difference([1, 0, 1, 0], [1, 0, 0, 0], sensitive_features=[0, 0, 1, 1])
        1.0
    """
    gm = group_metrics(y_true, y_pred, sensitive_features, pos_label=pos_label)
    return gm.metric("equalized_odds_difference", method=method, agg=agg)


def equalized_odds_ratio(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: SensitiveFeatures,
    method: Method = "between_groups",
    agg: Agg = "worst_case",
    pos_label: Any = None,
) -> float:
    """The smaller (``agg="mean"``: the mean) of the TPR and FPR ratios.

    Parameters, errors: as :func:`equalized_odds_difference`.

    Example::

        >>> equalized_odds_ratio([1, 0, 1, 0], [1, 0, 1, 1], sensitive_features=[0, 0, 1, 1])
        0.0
    """
    gm = group_metrics(y_true, y_pred, sensitive_features, pos_label=pos_label)
    return gm.metric("equalized_odds_ratio", method=method, agg=agg)


def equal_opportunity_difference(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: SensitiveFeatures,
    method: Method = "between_groups",
    pos_label: Any = None,
) -> float:
    """Largest minus smallest group true positive rate.

    Parameters, errors: as :func:`demographic_parity_difference`.

    Example::

        >>> y = [1, 1, 1, 1]
        >>> equal_opportunity_difference(y, [1, 1, 1, 0], sensitive_features=[0, 0, 1, 1])
        0.5
    """
    gm = group_metrics(y_true, y_pred, sensitive_features, pos_label=pos_label)
    return gm.metric("equal_opportunity_difference", method=method)


def equal_opportunity_ratio(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: SensitiveFeatures,
    method: Method = "between_groups",
    pos_label: Any = None,
) -> float:
    """Smallest over largest group true positive rate; NaN when every group's TPR is 0.

    Parameters, errors: as :func:`demographic_parity_difference`.

    Example::

        >>> equal_opportunity_ratio([1, 1, 1, 1], [1, 1, 1, 0], sensitive_features=[0, 0, 1, 1])
        0.5
    """
    gm = group_metrics(y_true, y_pred, sensitive_features, pos_label=pos_label)
    return gm.metric("equal_opportunity_ratio", method=method)


def bootstrap_fairness_ci(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: SensitiveFeatures,
    metrics: Sequence[FairnessMetric | str] = FAIRNESS_METRICS,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
    method: Method = "between_groups",
    agg: Agg = "worst_case",
    pos_label: Any = None,
) -> dict[str, ConfidenceInterval]:
    """Percentile bootstrap confidence intervals for fairness metrics.

    Rows are resampled with replacement (a group missing from a resample is left out of that
    resample's max / min, as in Fairlearn's ``MetricFrame(n_boot=...)``). The resampling is
    vectorised: the per-group confusion counts of a resample follow a multinomial law, so 1000
    resamples cost a few milliseconds whatever the number of rows.

    Parameters
    ----------
    y_true, y_pred, sensitive_features, pos_label:
        As in :func:`group_metrics`.
    metrics:
        Fairlearn metric names (default: all six).
    n_resamples:
        Number of bootstrap resamples (>= 1).
    confidence:
        Coverage of the interval, in (0, 1).
    random_state:
        Seed or ``numpy.random.Generator``; the default 0 makes reports reproducible, ``None``
        draws fresh entropy.
    method, agg:
        As in the metric functions.

    Returns
    -------
    dict[str, ConfidenceInterval]
        One interval per metric, with the point estimate.

    Raises
    ------
    DataError
        As :func:`group_metrics`.
    ConfigError
        Bad ``metrics``, ``n_resamples``, ``confidence``, ``method`` or ``agg``.

    Example::

        ci = bootstrap_fairness_ci(y_true, y_pred, sensitive_features=sex, random_state=7)
        ci["demographic_parity_difference"].low, ci["demographic_parity_difference"].high
    """
    gm = group_metrics(y_true, y_pred, sensitive_features, pos_label=pos_label)
    return gm.bootstrap_ci(
        metrics,
        n_resamples=n_resamples,
        confidence=confidence,
        random_state=random_state,
        method=method,
        agg=agg,
    )

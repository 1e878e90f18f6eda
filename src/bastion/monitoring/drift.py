"""Per-column drift between a reference and a current sample: PSI, KS, chi-square, JS, Wasserstein.

:func:`drift_report` compares every column of a reference frame with the same column of a
current frame and returns a frozen :class:`DriftReport` of :class:`ColumnDrift` rows, each
naming the statistic that decided it. Numeric columns are those of a numeric dtype other than
bool; every other column (strings, categories, bools, datetimes) is categorical and its values
are compared as they are (``pd.factorize`` equality).

Definitions (default mode; ``shared/REFERENCE.md``)
---------------------------------------------------
- ``psi``: ``sum_i (c_i - r_i) * ln(c_i / r_i)`` over shares of all rows. Numeric: 10 bins at
  the reference's deciles (``np.quantile``, linear) of its finite values, outer bins open so
  ``-inf`` / ``inf`` land in them, a value equal to an edge goes to the bin on its right,
  repeated edges are merged; NaN is its own bin. Categorical: one bin per reference category,
  one ``unseen`` bin pooling current categories absent from the reference, one null bin.
  Empty bins: every share is floored at ``PSI_EPSILON`` = 1e-4 (so a bin empty on both
  sides adds 0). Default threshold 0.1 (bands 0.1 moderate / 0.25 major).
- ``jensenshannon``: ``scipy.spatial.distance.jensenshannon(r, c, base=2)`` on PSI's
  histograms without the floor (JS is finite with empty bins); range [0, 1]; threshold 0.1.
- ``ks`` (numeric): ``scipy.stats.ks_2samp`` two-sided, method ``"auto"``, on the finite
  values; statistic D and p-value. Drift when p < threshold (0.05).
- ``wasserstein`` (numeric): ``scipy.stats.wasserstein_distance`` (W1) of the finite values
  divided by the reference's standard deviation (ddof 0) floored at 0.001, so the distance is
  in units of reference sigmas and a constant reference does not divide by zero; 0.1.
- ``chisquare`` (categorical): homogeneity test on the 2 x K contingency table of counts
  (reference row, current row; K = categories seen in either sample, nulls one category),
  exactly ``scipy.stats.chi2_contingency(table)`` (Yates' correction when K = 2, as scipy
  does). Drift when p < threshold (0.05).

NaN: numeric NaN (and None / ``pd.NA``) are left out of ``ks`` and ``wasserstein`` together
with ``inf`` and ``-inf``; PSI and JS count NaN in their own bin, so a jump in missing values
is drift. Categorical nulls are one category for every statistic. A column with no usable
value (no finite value for numeric, no non-null value for categorical) in either sample
raises :class:`~bastion.exceptions.EmptyDataError` naming the column and the sample.

``compatibility="evidently"`` reproduces Evidently 0.7's ``DataDriftPreset`` per column
(``evidently/legacy/calculations``): NaN and +-inf rows are dropped first; the default test
is, for a reference of at most 1,000 rows, KS (p <= 0.05) for numeric columns with more than
5 distinct values in reference and current together, else chi-square goodness of fit
(``scipy.stats.chisquare`` of the current counts against reference counts scaled by
n_cur / n_ref, p < 0.05) when more than 2 distinct values, else a two-proportion z-test
(p < 0.05); for a larger reference, normalised Wasserstein for numeric columns with more than
5 distinct values, else Jensen-Shannon, both >= 0.1. Its PSI and JS bin numeric columns with
more than 20 distinct reference values at ``np.histogram_bin_edges(ref + cur, "sturges")``
and count shares of the cleaned rows; other columns get one bin per value seen in either
sample. PSI floors empty shares, per sample, at 1e-4, or at (smallest non-zero share) / 1e6
when that share is at most 1e-4; JS uses no floor and the natural log.

Cost: each numeric column is sorted once per sample; KS, Wasserstein and the histograms read
the sorted arrays with ``searchsorted``; categorical columns are factorised once. Columns run
in a thread pool (numpy releases the GIL). ``benchmarks/bench_drift.py`` measures 100k x 20.

References: Yurdakul, "Statistical properties of population stability index", 2018;
Lin, "Divergence measures based on the Shannon entropy", 1991; Evidently's stattests sources.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from bastion.exceptions import ConfigError, DataError, EmptyDataError

__all__ = [
    "DEFAULT_STATTESTS",
    "DEFAULT_THRESHOLDS",
    "PSI_EPSILON",
    "STATTESTS",
    "ColumnDrift",
    "DriftReport",
    "drift_report",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Kind = Literal["numeric", "categorical"]

PSI_EPSILON = 1e-4
PSI_QUANTILES = np.linspace(0.1, 0.9, 9)
WASSERSTEIN_STD_FLOOR = 0.001
DATASET_DRIFT_SHARE = 0.5
# scipy.stats.ks_2samp's method="auto" is exact up to this sample size, asymptotic beyond.
_KS_EXACT_MAX_N = 10_000
# Evidently switches from tests to distances above this reference size.
_EVIDENTLY_SMALL_REFERENCE = 1000

STATTESTS: Mapping[str, frozenset[Kind]] = {
    "psi": frozenset({"numeric", "categorical"}),
    "jensenshannon": frozenset({"numeric", "categorical"}),
    "wasserstein": frozenset({"numeric"}),
    "ks": frozenset({"numeric"}),
    "chisquare": frozenset({"numeric", "categorical"}),
    "z": frozenset({"numeric", "categorical"}),
}
"""Stattest names and the column kinds each accepts (``z`` only in Evidently mode)."""

DEFAULT_STATTESTS: Mapping[Kind, str] = {"numeric": "psi", "categorical": "psi"}
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "psi": 0.1,
    "jensenshannon": 0.1,
    "wasserstein": 0.1,
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
}
_P_VALUE_TESTS = frozenset({"ks", "chisquare", "z"})
_COMPATIBILITY = (None, "evidently")


@dataclass(frozen=True)
class ColumnDrift:
    """Drift of one column.

    ``statistic`` is the test statistic or distance (KS D, chi-square, z, PSI, JS, normalised
    W1); ``p_value`` is set for ``ks``, ``chisquare`` and ``z``. ``drifted`` compares the
    p-value (below the threshold) or the distance (at or above it) with ``threshold``.
    """

    column: str
    kind: Kind
    stattest: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool

    @property
    def score(self) -> float:
        """The number compared with the threshold: the p-value for tests, else the statistic."""
        return self.statistic if self.p_value is None else self.p_value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of the fields."""
        return {
            "column": self.column,
            "kind": self.kind,
            "stattest": self.stattest,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift and the dataset verdict (share of drifted columns >= ``drift_share``)."""

    columns: tuple[ColumnDrift, ...]
    compatibility: str | None = None
    drift_share: float = DATASET_DRIFT_SHARE

    @property
    def n_drifted(self) -> int:
        """Number of drifted columns."""
        return sum(c.drifted for c in self.columns)

    @property
    def share_drifted(self) -> float:
        """Share of drifted columns (0.0 for a report without columns)."""
        return self.n_drifted / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        """True when at least ``drift_share`` of the columns drifted."""
        return bool(self.columns) and self.share_drifted >= self.drift_share

    def __getitem__(self, column: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == column:
                return c
        raise KeyError(column)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping: verdict, counts and one entry per column."""
        return {
            "compatibility": self.compatibility,
            "drift_share": self.drift_share,
            "n_columns": len(self.columns),
            "n_drifted": self.n_drifted,
            "share_drifted": self.share_drifted,
            "dataset_drift": self.dataset_drift,
            "columns": [c.to_dict() for c in self.columns],
        }


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    stattests: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    compatibility: str | None = None,
    drift_share: float = DATASET_DRIFT_SHARE,
) -> DriftReport:
    """Compare every column of ``reference`` with the same column of ``current``.

    Parameters
    ----------
    reference, current:
        Frames; every reference column must be in ``current`` (extra current columns are
        ignored). The kind (numeric / categorical) comes from the reference dtype.
    stattests:
        Column name -> stattest name (see :data:`STATTESTS`); others get
        :data:`DEFAULT_STATTESTS` by kind, or Evidently's choice in Evidently mode.
    thresholds:
        Column name -> threshold; others get :data:`DEFAULT_THRESHOLDS` of their stattest.
    compatibility:
        ``None`` (the definitions in the module docstring) or ``"evidently"``.
    drift_share:
        Share of drifted columns at which ``dataset_drift`` is true.

    Returns
    -------
    DriftReport
        One :class:`ColumnDrift` per reference column, in reference order.

    Raises
    ------
    ConfigError
        Unknown ``compatibility`` or stattest, a stattest not defined for the column's kind,
        a stattest or threshold for a column that is not in ``reference``.
    DataError
        A reference column missing from ``current``, or numeric in one and not the other.
    EmptyDataError
        A column with no usable value in either sample.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=1000)})
    >>> cur = pd.DataFrame({"x": rng.normal(1.0, size=1000)})
    >>> drift_report(ref, cur)["x"].drifted
    True
    """
    if compatibility not in _COMPATIBILITY:
        raise ConfigError(
            f"compatibility must be one of {_COMPATIBILITY}, received {compatibility!r}"
        )
    if not 0.0 < drift_share <= 1.0:
        raise ConfigError(f"drift_share must be in (0, 1], received {drift_share!r}")
    stattests = dict(stattests or {})
    thresholds = dict(thresholds or {})
    names = [str(c) for c in reference.columns]
    for label, mapping in (("stattests", stattests), ("thresholds", thresholds)):
        unknown = sorted(set(mapping) - set(names))
        if unknown:
            raise ConfigError(f"{label} names columns not in reference: {unknown}")
    for column, test in stattests.items():
        if test not in STATTESTS:
            raise ConfigError(
                f"stattests[{column!r}] must be one of {sorted(STATTESTS)}, received {test!r}"
            )
        if test == "z" and compatibility != "evidently":
            raise ConfigError(
                f"stattests[{column!r}]: 'z' exists only with compatibility='evidently'"
            )
    missing = [c for c in reference.columns if c not in current.columns]
    if missing:
        raise DataError(f"current lacks reference columns: {[str(c) for c in missing]}")

    def one(column: Any) -> ColumnDrift:
        return _column_drift(
            str(column),
            reference[column],
            current[column],
            stattests.get(str(column)),
            thresholds.get(str(column)),
            compatibility,
        )

    columns = list(reference.columns)
    workers = min(len(columns), os.cpu_count() or 1, 16)
    if workers > 1 and len(reference) + len(current) >= 20_000:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = tuple(pool.map(one, columns))
    else:
        results = tuple(one(c) for c in columns)
    return DriftReport(results, compatibility=compatibility, drift_share=drift_share)


# ---------------------------------------------------------------------------------------------
# Column preparation


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series.dtype)) and not bool(
        pd.api.types.is_bool_dtype(series.dtype)
    )


@dataclass(frozen=True)
class _NumericSample:
    """A numeric sample sorted once: NaN count, and the slice of finite values."""

    valid: FloatArray  # sorted, NaN removed, infinities kept at the ends
    finite: FloatArray  # sorted finite values (a view of ``valid``)
    n: int  # rows, NaN included
    n_nan: int


def _numeric_sample(series: pd.Series) -> _NumericSample:
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    ordered = np.sort(values)  # NaN sort last
    n_nan = _nan_tail(ordered)
    valid = ordered[: ordered.size - n_nan]
    lo = int(np.searchsorted(valid, -np.inf, side="right"))
    hi = int(np.searchsorted(valid, np.inf, side="left"))
    return _NumericSample(valid, valid[lo:hi], int(values.size), n_nan)


def _nan_tail(ordered: FloatArray) -> int:
    # NaNs sit at the end of a sorted array: count them by bisection instead of a full pass.
    lo, hi = 0, ordered.size
    while lo < hi:
        mid = (lo + hi) // 2
        if np.isnan(ordered[mid]):
            hi = mid
        else:
            lo = mid + 1
    return ordered.size - lo


def _require(column: str, which: str, size: int, what: str) -> None:
    if size == 0:
        raise EmptyDataError(f"column {column!r} has no {what} in the {which} sample")


def _merged(a: FloatArray, b: FloatArray) -> FloatArray:
    # Two sorted runs: the stable sort (timsort for floats) merges them in linear time.
    return np.sort(np.concatenate([a, b]), kind="stable")


def _ks(ref: FloatArray, cur: FloatArray, merged: FloatArray) -> tuple[float, float]:
    """Two-sided KS D and p exactly as scipy.stats.ks_2samp(method="auto") computes them."""
    from scipy import stats

    n1, n2 = ref.size, cur.size
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        res = stats.ks_2samp(ref, cur)
        return float(res.statistic), float(res.pvalue)
    cdf1 = np.searchsorted(ref, merged, side="right") / n1
    cdf2 = np.searchsorted(cur, merged, side="right") / n2
    diffs = cdf1 - cdf2
    d = max(float(np.clip(-diffs.min(), 0, 1)), float(diffs.max()))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    p = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))
    return d, p


def _wasserstein1(ref: FloatArray, cur: FloatArray, merged: FloatArray) -> float:
    """W1 as scipy.stats.wasserstein_distance computes it, from already sorted samples."""
    deltas = np.diff(merged)
    u = np.searchsorted(ref, merged[:-1], side="right") / ref.size
    v = np.searchsorted(cur, merged[:-1], side="right") / cur.size
    return float(np.dot(np.abs(u - v), deltas))


def _sorted_counts(ordered: FloatArray, edges: FloatArray) -> IntArray:
    """Counts in (-inf, e0), [e0, e1), ..., [e_last, inf] of a sorted array."""
    cuts = np.searchsorted(ordered, edges, side="left")
    return np.diff(np.concatenate([[0], cuts, [ordered.size]])).astype(np.int64)


def _psi(ref_share: FloatArray, cur_share: FloatArray) -> float:
    r = np.maximum(ref_share, PSI_EPSILON)
    c = np.maximum(cur_share, PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def _js(ref_share: FloatArray, cur_share: FloatArray, base: float | None) -> float:
    from scipy.spatial import distance

    return float(distance.jensenshannon(ref_share, cur_share, base=base))


def _decide(test: str, score: float, threshold: float, *, evidently: bool) -> bool:
    if test in _P_VALUE_TESTS:
        # Evidently's KS flags p <= threshold, its chi-square and z p < threshold.
        return score <= threshold if (evidently and test == "ks") else score < threshold
    return score >= threshold


def _column_drift(
    column: str,
    ref: pd.Series,
    cur: pd.Series,
    test: str | None,
    threshold: float | None,
    compatibility: str | None,
) -> ColumnDrift:
    numeric = _is_numeric(ref)
    if numeric != _is_numeric(cur):
        raise DataError(
            f"column {column!r} is {'numeric' if numeric else 'categorical'} in reference "
            f"but {cur.dtype} in current"
        )
    kind: Kind = "numeric" if numeric else "categorical"
    if test is not None and kind not in STATTESTS[test]:
        raise ConfigError(f"stattest {test!r} is not defined for {kind} column {column!r}")
    if compatibility == "evidently":
        name, stat, p = _evidently(column, kind, ref, cur, test)
    elif numeric:
        name, stat, p = _default_numeric(column, ref, cur, test or DEFAULT_STATTESTS["numeric"])
    else:
        name, stat, p = _default_categorical(
            column, ref, cur, test or DEFAULT_STATTESTS["categorical"]
        )
    thr = DEFAULT_THRESHOLDS[name] if threshold is None else float(threshold)
    score = stat if p is None else p
    drifted = _decide(name, score, thr, evidently=compatibility == "evidently")
    return ColumnDrift(column, kind, name, stat, p, thr, drifted)


# ---------------------------------------------------------------------------------------------
# Default definitions


def _default_numeric(
    column: str, ref_s: pd.Series, cur_s: pd.Series, test: str
) -> tuple[str, float, float | None]:
    if test == "chisquare":
        raise ConfigError(f"stattest 'chisquare' is not defined for numeric column {column!r}")
    ref, cur = _numeric_sample(ref_s), _numeric_sample(cur_s)
    _require(column, "reference", ref.finite.size, "finite value")
    _require(column, "current", cur.finite.size, "finite value")
    if test in ("ks", "wasserstein"):
        merged = _merged(ref.finite, cur.finite)
        if test == "ks":
            d, p = _ks(ref.finite, cur.finite, merged)
            return test, d, p
        std = max(float(np.std(ref.finite)), WASSERSTEIN_STD_FLOOR)
        return test, _wasserstein1(ref.finite, cur.finite, merged) / std, None
    edges = np.unique(np.quantile(ref.finite, PSI_QUANTILES))
    ref_share = np.append(_sorted_counts(ref.valid, edges), ref.n_nan) / ref.n
    cur_share = np.append(_sorted_counts(cur.valid, edges), cur.n_nan) / cur.n
    if test == "psi":
        return test, _psi(ref_share, cur_share), None
    return test, _js(ref_share, cur_share, 2.0), None


def _factorized(
    ref: pd.Series, cur: pd.Series, *, sort: bool = False
) -> tuple[IntArray, IntArray, int, int, int]:
    """Per-category counts (shared codes) and null counts of two samples."""
    both = pd.concat([ref, cur], ignore_index=True)
    codes, uniques = pd.factorize(both, sort=sort, use_na_sentinel=True)
    k = len(uniques)
    rc, cc = codes[: len(ref)], codes[len(ref) :]
    r_counts = np.bincount(rc[rc >= 0], minlength=k).astype(np.int64)
    c_counts = np.bincount(cc[cc >= 0], minlength=k).astype(np.int64)
    return r_counts, c_counts, int(np.count_nonzero(rc < 0)), int(np.count_nonzero(cc < 0)), k


def _default_categorical(
    column: str, ref_s: pd.Series, cur_s: pd.Series, test: str
) -> tuple[str, float, float | None]:
    r, c, r_null, c_null, _ = _factorized(ref_s, cur_s)
    _require(column, "reference", int(r.sum()), "non-null value")
    _require(column, "current", int(c.sum()), "non-null value")
    if test == "chisquare":
        from scipy import stats

        table = np.vstack([np.append(r, r_null), np.append(c, c_null)])
        table = table[:, table.sum(axis=0) > 0]
        res = stats.chi2_contingency(table)
        return test, float(res.statistic), float(res.pvalue)
    seen = r > 0
    ref_share = np.concatenate([r[seen], [0, r_null]]) / len(ref_s)
    cur_share = np.concatenate([c[seen], [c[~seen].sum(), c_null]]) / len(cur_s)
    if test == "psi":
        return test, _psi(ref_share, cur_share), None
    return test, _js(ref_share, cur_share, 2.0), None


# ---------------------------------------------------------------------------------------------
# Evidently 0.7 (legacy/calculations/stattests and data_drift.get_one_column_drift)


def _evidently_floor(share: FloatArray) -> FloatArray:
    nonzero = share[share != 0]
    smallest = float(nonzero.min())
    eps = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(share == 0, eps, share)


def _evidently(
    column: str, kind: Kind, ref_s: pd.Series, cur_s: pd.Series, test: str | None
) -> tuple[str, float, float | None]:
    if kind == "numeric":
        ref = _numeric_sample(ref_s).finite
        cur = _numeric_sample(cur_s).finite
        _require(column, "reference", ref.size, "finite value")
        _require(column, "current", cur.size, "finite value")
        merged = _merged(ref, cur)
        n_values = int(np.count_nonzero(np.diff(merged))) + 1
        n_ref, n_cur = ref.size, cur.size
        ref_values = int(np.count_nonzero(np.diff(ref))) + 1
        r_counts = c_counts = np.empty(0, dtype=np.int64)
        if ref_values <= 20 or n_values <= 5 or test in ("chisquare", "z"):
            # Per-value counts are only read by chi-square, z and the few-values histograms.
            keys = merged[np.concatenate([[True], merged[1:] != merged[:-1]])]
            r_counts = np.searchsorted(ref, keys, "right") - np.searchsorted(ref, keys, "left")
            c_counts = np.searchsorted(cur, keys, "right") - np.searchsorted(cur, keys, "left")
    else:
        ref_clean = ref_s.dropna()
        cur_clean = cur_s.dropna()
        _require(column, "reference", len(ref_clean), "non-null value")
        _require(column, "current", len(cur_clean), "non-null value")
        r_counts, c_counts, _, _, n_values = _factorized(ref_clean, cur_clean, sort=True)
        n_ref, n_cur = len(ref_clean), len(cur_clean)
        merged = ref = cur = np.empty(0)
        ref_values = 0
    if test is None:
        if n_ref <= _EVIDENTLY_SMALL_REFERENCE:
            if kind == "numeric" and n_values > 5:
                test = "ks"
            else:
                test = "chisquare" if n_values > 2 else "z"
        else:
            test = "wasserstein" if kind == "numeric" and n_values > 5 else "jensenshannon"
    if test == "ks":
        d, p = _ks(ref, cur, merged)
        return test, d, p
    if test == "wasserstein":
        std = max(float(np.std(ref)), WASSERSTEIN_STD_FLOOR)
        return test, _wasserstein1(ref, cur, merged) / std, None
    if test == "chisquare":
        from scipy import stats

        try:
            res = stats.chisquare(c_counts, r_counts * (n_cur / n_ref))
        except ValueError as err:
            raise DataError(f"column {column!r}: Evidently's chi-square fails: {err}") from err
        return test, float(res.statistic), float(res.pvalue)
    if test == "z":
        return ("z", *_evidently_z(r_counts, c_counts, n_ref, n_cur))
    # PSI / JS: Sturges bins for numeric columns with > 20 distinct reference values.
    if kind == "numeric" and ref_values > 20:
        edges = np.histogram_bin_edges(merged, bins="sturges")
        ref_share = _histogram(ref, edges) / n_ref
        cur_share = _histogram(cur, edges) / n_cur
    else:
        ref_share = r_counts / n_ref
        cur_share = c_counts / n_cur
    if test == "psi":
        r, c = _evidently_floor(ref_share), _evidently_floor(cur_share)
        return test, float(np.sum((r - c) * np.log(r / c))), None
    return test, _js(ref_share, cur_share, None), None


def _histogram(ordered: FloatArray, edges: FloatArray) -> IntArray:
    """``np.histogram(x, edges)[0]`` of a sorted array (numpy's own searchsorted path)."""
    cum = np.concatenate(
        [
            np.searchsorted(ordered, edges[:-1], side="left"),
            np.searchsorted(ordered, edges[-1:], side="right"),
        ]
    )
    return np.diff(cum).astype(np.int64)


def _evidently_z(
    r_counts: IntArray, c_counts: IntArray, n_ref: int, n_cur: int
) -> tuple[float, float]:
    """Evidently's two-proportion z-test: share of values other than the first (sorted) one."""
    from scipy.stats import norm

    r_present, c_present = r_counts > 0, c_counts > 0
    if r_present.sum() == 1 and c_present.sum() == 1 and np.array_equal(r_present, c_present):
        return 0.0, 1.0
    # Codes follow factorize / sorted order; Evidently's "first key" is the smallest value.
    p1 = float(n_ref - r_counts[0]) / n_ref
    p2 = float(n_cur - c_counts[0]) / n_cur
    pooled = (p1 * n_ref + p2 * n_cur) / (n_ref + n_cur)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1.0 / n_ref + 1.0 / n_cur))
    return z, float(2 * (1 - norm.cdf(abs(z))))

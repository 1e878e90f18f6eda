"""Mergeable per-column profiles: one pass per chunk serves every data check and drift monitor.

A :class:`Profile` holds, per column, statistics that merge exactly (count, nulls, infinities,
min, max, mean and population variance by Chan et al.'s parallel formula, category counts,
histogram counts against fixed bins) and sketches that merge within documented error bounds
(:mod:`bastion.data.sketches`: a uniform sample that is both the quantile sketch and the
reservoir for KS / Wasserstein, HyperLogLog for distinct counts, Misra-Gries for top
categories). Because ``Profile.from_frame(A).merge(Profile.from_frame(B))`` summarises
``A ∪ B``, the same code profiles a frame, a stream of chunks, partitions on a cluster and
time windows of live traffic.

Definitions
-----------
- ``count``: rows seen, nulls included. ``null_count``: NaN, None, NaT and ``pd.NA``.
- ``min`` / ``max``: over non-null values, infinities included (a range check must see them).
- ``mean`` / ``variance`` (ddof 0) / ``std``: over finite values only, so one infinity does
  not turn the moments into NaN; ``inf_count`` says how many were left out.
- Numeric columns: int, float, bool, and datetime / timedelta (as float seconds since the
  POSIX epoch / in seconds). Every other column is categorical; its values are compared as
  ``str(value)``.

Reference profiles (:meth:`Profile.reference`) also count every column into histogram bins
at its own deciles (PSI's bins) and at finer quantiles; profiles built with
``bins_from=reference`` count into the same bins, with categories unseen in the reference in
an ``unseen`` bucket. See ``shared/REFERENCE.md`` for the drift statistics that read them.

Cost: each numeric column is read once, in 64 Ki-value blocks that stay in the L2 cache; a
block whose sum is finite holds no NaN or infinity, so clean data needs no null mask. The
cheap level (``full=False``) does sum, min, max and the centred sum of squares per block;
``full=True`` adds a six-operation hash per value for HyperLogLog and draws the sample by
index. Columns run in a thread pool (numpy releases the GIL). On 10M rows x 20 float
columns the full profile takes about as long as a plain numpy min/max/mean/std/null pass,
and the cheap level about a third of it (``benchmarks/bench_profile.py``). Moments of values
beyond about 1e154 in magnitude overflow (their squares do not fit a float64).

References: T. F. Chan, G. H. Golub, R. J. LeVeque, "Updating formulae and a pairwise
algorithm for computing sample variances", 1979; the sketches' references are in
:mod:`bastion.data.sketches`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from bastion._names import known_names
from bastion.data.sketches import (
    FrequentItems,
    HyperLogLog,
    UniformSample,
    decode_array,
    encode_array,
    hash_float64,
    hash_strings,
)
from bastion.exceptions import ConfigError, DataError, EmptyDataError
from bastion.findings import json_number

__all__ = [
    "PROFILE_SCHEMA_ID",
    "ColumnProfile",
    "Histogram",
    "Profile",
    "profile_by_window",
]

PROFILE_SCHEMA_ID = "bastion.profile/v1"

DEFAULT_SAMPLE_SIZE = 10_000
DEFAULT_HLL_PRECISION = 12
DEFAULT_MAX_CATEGORIES = 1_000
# 64 Ki float64 = 512 KiB: a block and its scratch copies stay in the core's L2 cache
_BLOCK = 1 << 16
# below this many cells, a thread pool costs more than it saves
_PARALLEL_MIN_CELLS = 1 << 18
SUMMARY_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
SUMMARY_TOP = 10

Kind = Literal["numeric", "categorical"]


# --------------------------------------------------------------------------- histogram


@dataclass(frozen=True, eq=False)
class Histogram:
    """Counts of one column in fixed bins taken from a reference profile.

    Numeric: ``edges`` holds the sorted, strictly increasing interior cut points; bin ``i``
    holds values ``v`` with ``edges[i-1] <= v < edges[i]``, and the outer bins are open
    (bin 0: ``v < edges[0]``; last bin: ``v >= edges[-1]``), so ``len(counts) ==
    len(edges) + 1``. Infinities fall in the outer bins. Categorical: ``categories`` holds the
    reference's categories, ``counts[i]`` the rows equal to ``categories[i]`` and
    ``unseen_count`` the non-null rows equal to none of them. Nulls are counted apart in
    ``null_count`` in both cases.
    """

    kind: Kind
    counts: npt.NDArray[np.int64]
    null_count: int = 0
    unseen_count: int = 0
    edges: npt.NDArray[np.float64] | None = None
    categories: tuple[str, ...] | None = None

    @property
    def total(self) -> int:
        """Rows counted: binned, unseen and null."""
        return int(self.counts.sum()) + self.unseen_count + self.null_count

    def same_bins(self, other: Histogram) -> bool:
        """Whether both histograms count into identical bins."""
        if self.kind != other.kind:
            return False
        if self.kind == "numeric":
            a, b = self.edges, other.edges
            return a is not None and b is not None and np.array_equal(a, b)
        return self.categories == other.categories

    def all_counts(self) -> npt.NDArray[np.int64]:
        """Every bin PSI compares, in order: the bins, then (categorical) ``unseen``, then
        ``null`` (nulls are their own bin, per ``REFERENCE.md``). See :meth:`labels`."""
        tail = [self.unseen_count] if self.kind == "categorical" else []
        return np.concatenate([self.counts, np.array([*tail, self.null_count], dtype=np.int64)])

    def labels(self) -> list[str]:
        """Names of :meth:`all_counts`' bins: ``"[a, b)"`` intervals or categories, then
        ``"<unseen>"`` (categorical) and ``"<null>"``."""
        if self.kind == "categorical":
            return [*(self.categories or ()), "<unseen>", "<null>"]
        bounds = [-math.inf, *(self.edges if self.edges is not None else ()), math.inf]
        return [f"[{lo:g}, {hi:g})" for lo, hi in itertools.pairwise(bounds)] + ["<null>"]

    def empty_like(self) -> Histogram:
        """Same bins, zero counts."""
        return replace(self, counts=np.zeros_like(self.counts), null_count=0, unseen_count=0)

    def merge(self, other: Histogram, *, column: str = "?") -> Histogram:
        """Bin-wise sum.

        Raises
        ------
        DataError
            The bins differ (profiles built against different references).
        """
        if not self.same_bins(other):
            raise DataError(
                f"column {column!r}: cannot merge histograms with different bins; build "
                "both profiles with the same bins_from reference profile"
            )
        return replace(
            self,
            counts=self.counts + other.counts,
            null_count=self.null_count + other.null_count,
            unseen_count=self.unseen_count + other.unseen_count,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "counts": [int(c) for c in self.counts],
            "null_count": self.null_count,
            "unseen_count": self.unseen_count,
            "edges": None if self.edges is None else [_enc_float(e) for e in self.edges],
            "categories": None if self.categories is None else list(self.categories),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        kind = _kind(data["kind"])
        edges = data.get("edges")
        categories = data.get("categories")
        hist = cls(
            kind=kind,
            counts=np.asarray(data["counts"], dtype=np.int64),
            null_count=int(data["null_count"]),
            unseen_count=int(data["unseen_count"]),
            edges=None if edges is None else np.array([_dec_float(e) for e in edges]),
            categories=None if categories is None else tuple(str(c) for c in categories),
        )
        expected = (
            len(hist.edges) + 1
            if hist.edges is not None
            else len(hist.categories)
            if hist.categories is not None
            else -1
        )
        if len(hist.counts) != expected:
            raise DataError(
                f"histogram: {len(hist.counts)} counts stored, its bins need {expected}"
            )
        return hist


# --------------------------------------------------------------------------- column


@dataclass(frozen=True, eq=False)
class ColumnProfile:
    """Statistics and sketches of one column; see the module docstring for definitions.

    Exact and mergeable: ``count``, ``null_count``, ``inf_count``, ``min``, ``max``, ``mean``,
    ``variance``, ``category_counts`` (while exact) and histogram counts. Sketched: quantiles
    (:class:`~bastion.data.sketches.UniformSample`, rank error bound
    :meth:`quantile_rank_error`), distinct count
    (:class:`~bastion.data.sketches.HyperLogLog`, exact while the sample holds every value)
    and top categories (:class:`~bastion.data.sketches.FrequentItems`). Profiles computed
    with ``full=False`` carry no sketches.

    Example::

        col = Profile.from_frame(df).columns["age"]
        col.null_count, col.min, col.max, col.quantile(0.5), col.distinct_estimate()
    """

    name: str
    kind: Kind
    count: int
    null_count: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    variance: float | None = None
    inf_count: int = 0
    histogram: Histogram | None = None
    fine_histogram: Histogram | None = None
    quantile_sketch: UniformSample | None = None
    distinct_sketch: HyperLogLog | None = None
    frequent: FrequentItems | None = None
    full: bool = True

    @property
    def non_null_count(self) -> int:
        return self.count - self.null_count

    @property
    def finite_count(self) -> int:
        """Values the moments (mean, variance) are computed over."""
        return self.count - self.null_count - self.inf_count if self.kind == "numeric" else 0

    @property
    def std(self) -> float | None:
        """Population standard deviation (ddof 0)."""
        return None if self.variance is None else math.sqrt(max(self.variance, 0.0))

    @property
    def sample(self) -> np.ndarray:
        """Uniform sample without replacement of the non-null values (at most
        ``sample_size``; sorted when numeric, ``str`` values when categorical)."""
        if self.quantile_sketch is None:
            return np.empty(0, dtype=np.float64 if self.kind == "numeric" else object)
        return self.quantile_sketch.values

    @property
    def category_counts(self) -> Mapping[str, int] | None:
        """Exact counts per value while at most ``max_categories`` distinct values were seen,
        else ``None`` (then :meth:`top` is approximate)."""
        if self.frequent is None or not self.frequent.exact:
            return None
        return self.frequent.counts

    def _require_sketches(self, what: str) -> None:
        if not self.full:
            raise DataError(
                f"column {self.name!r}: {what} needs a profile computed with full=True; "
                "this one was computed with full=False"
            )

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile of the non-null values (linear interpolation, numpy's default),
        from the sample; ``None`` for categorical columns and columns without values.

        Exact while the sample holds every value; else within :meth:`quantile_rank_error`.

        Raises
        ------
        DataError
            ``q`` is outside [0, 1], or the profile was computed with ``full=False``.
        """
        values = self.quantiles([q])
        return values[0] if values else None

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Several quantiles at once (see :meth:`quantile`); ``[]`` when there are no values.

        Raises
        ------
        DataError
            A ``q`` is outside [0, 1], or the profile was computed with ``full=False``.
        """
        bad = [q for q in qs if not 0.0 <= float(q) <= 1.0]
        if bad:
            raise DataError(f"column {self.name!r}: quantiles must lie in [0, 1], got {bad[0]!r}")
        if self.kind != "numeric":
            return []
        self._require_sketches("quantile")
        values = self.sample
        if len(values) == 0:
            return []
        return [float(v) for v in np.quantile(values, [float(q) for q in qs])]

    def quantile_rank_error(self, delta: float = 0.01) -> float:
        """Bound on a quantile's rank error, holding with probability ``1 - delta`` (0.0 when
        exact); see :class:`~bastion.data.sketches.UniformSample`."""
        self._require_sketches("quantile_rank_error")
        if self.quantile_sketch is None:
            return 0.0
        return self.quantile_sketch.rank_error(delta)

    def distinct_estimate(self) -> float:
        """Number of distinct non-null values: exact while the category counts or the sample
        hold every value, else HyperLogLog's estimate (relative standard error
        ``1.04 / sqrt(2**hll_precision)``).

        Raises
        ------
        DataError
            The profile was computed with ``full=False``.
        """
        self._require_sketches("distinct_estimate")
        if self.frequent is not None and self.frequent.exact:
            return float(len(self.frequent.counts))
        sketch = self.quantile_sketch
        if sketch is not None and sketch.exact and self.kind == "numeric":
            # np.unique treats -0.0 and 0.0 as one value, as the hash does
            return float(len(np.unique(sketch.values)))
        if self.distinct_sketch is None:
            return 0.0
        return self.distinct_sketch.estimate()

    def top(self, k: int = 10) -> list[tuple[str, int]]:
        """The ``k`` most frequent values with their counts, most frequent first (``[]`` for
        numeric columns). Exact while :attr:`category_counts` is; else each count is low by
        at most ``frequent.max_error``."""
        if self.frequent is None:
            return []
        return self.frequent.top(k)

    # ----------------------------------------------------------------- merge

    def merge(self, other: ColumnProfile, *, seed: int = 0) -> ColumnProfile:
        """The profile of both columns' rows together.

        Raises
        ------
        DataError
            Different names or kinds (a column without values adopts the other's kind), or
            histograms with different bins.
        """
        if other.name != self.name:
            raise DataError(f"cannot merge column {self.name!r} with column {other.name!r}")
        a, b = self, other
        if a.kind != b.kind:
            if a.non_null_count == 0:
                a = _as_kind(a, b)
            elif b.non_null_count == 0:
                b = _as_kind(b, a)
            else:
                raise DataError(
                    f"column {a.name!r}: cannot merge a {a.kind} profile with a {b.kind} one; "
                    "the column's type changed between chunks (cast it before profiling)"
                )
        full = a.full and b.full
        rng = np.random.default_rng(
            [seed, _name_key(a.name), a.count, b.count, a.null_count, b.null_count, 1]
        )
        n1, n2 = a.finite_count, b.finite_count
        mean, variance = _chan(n1, a.mean, a.variance, n2, b.mean, b.variance)
        return ColumnProfile(
            name=a.name,
            kind=a.kind,
            count=a.count + b.count,
            null_count=a.null_count + b.null_count,
            min=_opt(min, a.min, b.min),
            max=_opt(max, a.max, b.max),
            mean=mean,
            variance=variance,
            inf_count=a.inf_count + b.inf_count,
            histogram=_merge_hist(a.histogram, b.histogram, a.name),
            fine_histogram=_merge_hist(a.fine_histogram, b.fine_histogram, a.name),
            quantile_sketch=_merge_opt(a.quantile_sketch, b.quantile_sketch, full, rng),
            distinct_sketch=(_hll_merge(a.distinct_sketch, b.distinct_sketch) if full else None),
            frequent=(
                _freq_merge(a.frequent, b.frequent) if full and a.kind == "categorical" else None
            ),
            full=full,
        )

    # ----------------------------------------------------------------- serialisation

    def summary(self, min_category_count: int = 1) -> dict[str, Any]:
        """JSON-able aggregates for reports: never the sample or other raw rows, except the
        (at most 10) top categories seen at least ``min_category_count`` times.

        Small-cell suppression: a value seen once or twice (an email, a name, an id) is a raw
        row in disguise, so reports pass ``min_category_count=5`` unless raw rows are allowed.
        """
        out: dict[str, Any] = {
            "kind": self.kind,
            "count": self.count,
            "null_count": self.null_count,
            "null_fraction": self.null_count / self.count if self.count else 0.0,
        }
        if self.kind == "numeric":
            out |= {
                "inf_count": self.inf_count,
                "min": json_number(self.min),
                "max": json_number(self.max),
                "mean": json_number(self.mean),
                "std": json_number(self.std),
            }
        if not self.full:
            return out
        out["distinct"] = round(self.distinct_estimate(), 1)
        out["distinct_exact"] = self._distinct_exact()
        if self.kind == "numeric":
            qs = self.quantiles(SUMMARY_QUANTILES)
            out["quantiles"] = {
                f"{q:g}": json_number(v) for q, v in zip(SUMMARY_QUANTILES, qs, strict=False)
            }
            out["quantile_rank_error"] = round(self.quantile_rank_error(), 6)
        else:
            top = self.top(SUMMARY_TOP)
            shown = [(v, c) for v, c in top if c >= min_category_count]
            out["top"] = [{"value": v, "count": c} for v, c in shown]
            out["top_suppressed"] = len(top) - len(shown)
            out["top_exact"] = self.category_counts is not None
        out["histogram"] = self._summary_histogram(min_category_count)
        return out

    def _distinct_exact(self) -> bool:
        if self.frequent is not None and self.frequent.exact:
            return True
        sketch = self.quantile_sketch
        return sketch is not None and sketch.exact and self.kind == "numeric"

    def _summary_histogram(self, min_category_count: int = 1) -> dict[str, Any] | None:
        hist = self.histogram
        if hist is not None:
            body: dict[str, Any] = {
                "source": "reference",
                "counts": [int(c) for c in hist.counts],
                "null_count": hist.null_count,
            }
            if hist.kind == "numeric" and hist.edges is not None:
                body["edges"] = [json_number(float(e)) for e in hist.edges]
            else:
                # at most 10 category names leave the profile; the rest are summed
                cats = hist.categories or ()
                order = sorted(range(len(cats)), key=lambda i: (-int(hist.counts[i]), cats[i]))
                shown = [i for i in order[:SUMMARY_TOP] if hist.counts[i] >= min_category_count]
                counts = [int(hist.counts[i]) for i in shown]
                body["categories"] = [cats[i] for i in shown]
                body["counts"] = counts
                body["other_count"] = int(hist.counts.sum()) - sum(counts)
                body["unseen_count"] = hist.unseen_count
            return body
        if self.kind != "numeric" or len(self.sample) == 0:
            return None
        # deciles of the sample, counts scaled from the sample (exact when the sample is)
        edges = _decile_edges(self.sample, 10)
        shares = np.bincount(
            np.searchsorted(edges, self.sample, side="right"), minlength=len(edges) + 1
        ) / len(self.sample)
        scaled = np.rint(shares * self.non_null_count).astype(np.int64)
        return {
            "source": "sample" if not self._sample_exact() else "exact",
            "edges": [json_number(float(e)) for e in edges],
            "counts": [int(c) for c in scaled],
            "null_count": self.null_count,
        }

    def _sample_exact(self) -> bool:
        return self.quantile_sketch is not None and self.quantile_sketch.exact

    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON form, sketches included (see :meth:`Profile.to_dict`)."""
        sample: dict[str, Any] | None = None
        if self.quantile_sketch is not None:
            qs = self.quantile_sketch
            values: Any = (
                encode_array(qs.values) if self.kind == "numeric" else [str(v) for v in qs.values]
            )
            sample = {"values": values, "population": qs.population, "capacity": qs.capacity}
        return {
            "name": self.name,
            "kind": self.kind,
            "count": self.count,
            "null_count": self.null_count,
            "min": _enc_opt(self.min),
            "max": _enc_opt(self.max),
            "mean": _enc_opt(self.mean),
            "variance": _enc_opt(self.variance),
            "inf_count": self.inf_count,
            "full": self.full,
            "histogram": None if self.histogram is None else self.histogram.to_dict(),
            "fine_histogram": (
                None if self.fine_histogram is None else self.fine_histogram.to_dict()
            ),
            "sample": sample,
            "hll": None if self.distinct_sketch is None else self.distinct_sketch.to_dict(),
            "frequent": None if self.frequent is None else self.frequent.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        DataError
            A field is missing or malformed.
        """
        try:
            kind = _kind(data["kind"])
            sample = data.get("sample")
            sketch: UniformSample | None = None
            if sample is not None:
                raw = sample["values"]
                values = (
                    decode_array(raw).astype(np.float64)
                    if kind == "numeric"
                    else np.array([str(v) for v in raw], dtype=object)
                )
                sketch = UniformSample(values, int(sample["population"]), int(sample["capacity"]))
            hist, fine, hll, freq = (
                data.get("histogram"),
                data.get("fine_histogram"),
                data.get("hll"),
                data.get("frequent"),
            )
            return cls(
                name=str(data["name"]),
                kind=kind,
                count=int(data["count"]),
                null_count=int(data["null_count"]),
                min=_dec_opt(data.get("min")),
                max=_dec_opt(data.get("max")),
                mean=_dec_opt(data.get("mean")),
                variance=_dec_opt(data.get("variance")),
                inf_count=int(data.get("inf_count", 0)),
                full=bool(data.get("full", True)),
                histogram=None if hist is None else Histogram.from_dict(hist),
                fine_histogram=None if fine is None else Histogram.from_dict(fine),
                quantile_sketch=sketch,
                distinct_sketch=None if hll is None else HyperLogLog.from_dict(hll),
                frequent=None if freq is None else FrequentItems.from_dict(freq),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, DataError):
                raise
            raise DataError(
                f"profile column {data.get('name', '?')!r}: malformed field ({err!r})"
            ) from err


# --------------------------------------------------------------------------- profile


@dataclass(frozen=True, eq=False)
class Profile:
    """Mergeable statistics of every column of a table (see the module docstring).

    Build one with :meth:`from_frame`, :meth:`from_chunks` or :meth:`reference`; combine with
    :meth:`merge` (or ``+``); store with :meth:`to_dict`; report with :meth:`summary`.

    Example::

        ref = Profile.reference(train_df)                      # deciles + fine bins
        live = Profile.from_frame(batch1, bins_from=ref) + Profile.from_frame(
            batch2, bins_from=ref)
        live.columns["age"].histogram.counts                   # PSI's numerator
        live.columns["age"].quantile(0.5), live.summary()
    """

    n_rows: int
    columns: Mapping[str, ColumnProfile] = field(default_factory=dict)
    window_start: str | None = None
    window_end: str | None = None
    seed: int = 0

    def __getitem__(self, name: str) -> ColumnProfile:
        try:
            return self.columns[name]
        except KeyError:
            raise DataError(
                f"profile has no column {name!r}; {known_names(name, self.columns)}"
            ) from None

    @property
    def full(self) -> bool:
        """Whether every column carries its sketches (computed with ``full=True``)."""
        return all(c.full for c in self.columns.values())

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        full: bool = True,
        bins_from: Profile | None = None,
        seed: int = 0,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        hll_precision: int = DEFAULT_HLL_PRECISION,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        workers: int | None = None,
        _chunk_index: int = 0,
    ) -> Profile:
        """Profile a frame in one pass per column (columns in parallel threads).

        Parameters
        ----------
        frame:
            The table. Column names are turned into ``str``.
        full:
            ``False`` computes only count, nulls, infinities, min, max, mean and variance
            (the cheap level the range and not-null checks use); ``True`` adds the sample
            (quantiles, reservoir), the distinct-count sketch and category counts / top items.
        bins_from:
            A reference profile (:meth:`reference`): also count every column it has bins
            for into those bins (``histogram`` and ``fine_histogram``).
        seed:
            Seeds the sample; equal inputs and seeds give equal profiles.
        sample_size:
            Capacity of each column's uniform sample (default 10,000: quantile rank error
            below 1.8 % with 99 % probability).
        hll_precision:
            HyperLogLog uses ``2**hll_precision`` registers (4..18; default 12: 1.6 %
            relative standard error).
        max_categories:
            Category counts stay exact up to this many distinct values per column, then
            become a Misra-Gries summary with this many counters.
        workers:
            Threads across columns (default: the CPU count; small frames use one).

        Returns
        -------
        Profile

        Raises
        ------
        DataError
            ``frame`` is not a DataFrame, has duplicate column names, or a column's type does
            not match its reference bins.
        ConfigError
            A sketch parameter is out of range.
        """
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
        params = _Params.make(sample_size, hll_precision, max_categories, workers)
        names = [str(c) for c in frame.columns]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise DataError(f"frame has duplicate column name {dup!r}; rename it before profiling")
        bins = _bins_of(bins_from) if bins_from is not None else {}
        n_rows = len(frame)

        # take the columns out here: the threads then touch only their own Series
        series = [frame.iloc[:, i] for i in range(len(names))]

        def work(i: int) -> ColumnProfile:
            name = names[i]
            seq = [seed, _name_key(name), n_rows, _chunk_index]
            return _profile_column(
                name, series[i], full, bins.get(name), params, np.random.default_rng(seq)
            )

        n_workers = params.workers or (os.cpu_count() or 1)
        n_workers = min(n_workers, len(names))
        if n_workers > 1 and n_rows * len(names) >= _PARALLEL_MIN_CELLS:
            with ThreadPoolExecutor(max_workers=n_workers) as pool:
                cols = list(pool.map(work, range(len(names))))
        else:
            cols = [work(i) for i in range(len(names))]
        return cls(n_rows=n_rows, columns={c.name: c for c in cols}, seed=seed)

    @classmethod
    def from_chunks(
        cls,
        chunks: Iterable[pd.DataFrame],
        *,
        full: bool = True,
        bins_from: Profile | None = None,
        seed: int = 0,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        hll_precision: int = DEFAULT_HLL_PRECISION,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        workers: int | None = None,
    ) -> Profile:
        """Profile a stream of frames one at a time and merge (peak memory: one chunk).

        Parameters are those of :meth:`from_frame`.

        Raises
        ------
        EmptyDataError
            ``chunks`` yields nothing.
        DataError
            As in :meth:`from_frame` and :meth:`merge`.

        Example::

            Profile.from_chunks(pd.read_csv("big.csv", chunksize=1_000_000))
        """
        result: Profile | None = None
        for index, chunk in enumerate(chunks):
            part = cls.from_frame(
                chunk,
                full=full,
                bins_from=bins_from,
                seed=seed,
                sample_size=sample_size,
                hll_precision=hll_precision,
                max_categories=max_categories,
                workers=workers,
                _chunk_index=index,
            )
            result = part if result is None else result.merge(part)
        if result is None:
            raise EmptyDataError("from_chunks: the chunk iterable yielded no frames")
        return result

    @classmethod
    def reference(
        cls,
        frame_or_chunks: pd.DataFrame
        | Iterable[pd.DataFrame]
        | Callable[[], Iterable[pd.DataFrame]],
        *,
        n_bins: int = 10,
        fine_bins: int = 100,
        seed: int = 0,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        hll_precision: int = DEFAULT_HLL_PRECISION,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        workers: int | None = None,
    ) -> Profile:
        """A full profile plus histogram counts at its own quantiles: the drift baseline.

        Two passes: the first profiles the data, the second counts every numeric column into
        ``n_bins`` bins at its quantiles ``1/n_bins, ..., (n_bins-1)/n_bins`` (deciles by
        default, open outer bins; ``histogram``) and into ``fine_bins`` finer quantile bins
        (``fine_histogram``), and every categorical column into one bin per category plus an
        ``unseen`` bucket. Quantiles come from the sample (exact up to ``sample_size``
        values); tied quantiles collapse into one edge. Profiles of live data built with
        ``bins_from=`` this profile count into the same bins.

        Parameters
        ----------
        frame_or_chunks:
            A DataFrame, a re-iterable of frames (a list), or a zero-argument callable that
            returns a fresh iterable (for out-of-core data read twice). A one-shot iterator
            is read into memory first.
        n_bins, fine_bins:
            Bins of ``histogram`` and ``fine_histogram`` (at least 2 each).
        seed, sample_size, hll_precision, max_categories, workers:
            As in :meth:`from_frame`.

        Raises
        ------
        ConfigError
            ``n_bins`` or ``fine_bins`` is below 2.
        EmptyDataError
            No frames were given.
        """
        for label, value in (("n_bins", n_bins), ("fine_bins", fine_bins)):
            if not isinstance(value, int) or value < 2:
                raise ConfigError(f"{label} must be an integer >= 2, got {value!r}")
        source = _replayable(frame_or_chunks)
        kw: dict[str, Any] = {
            "seed": seed,
            "sample_size": sample_size,
            "hll_precision": hll_precision,
            "max_categories": max_categories,
            "workers": workers,
        }
        base = cls.from_chunks(source(), full=True, **kw)
        skeleton = {
            name: replace(
                col,
                histogram=_reference_bins(col, n_bins),
                fine_histogram=_reference_bins(col, fine_bins),
            )
            for name, col in base.columns.items()
        }
        bins_profile = replace(base, columns=skeleton)
        counted = cls.from_chunks(source(), full=False, bins_from=bins_profile, **kw)
        columns = {
            name: replace(
                col,
                histogram=counted.columns[name].histogram,
                fine_histogram=counted.columns[name].fine_histogram,
            )
            for name, col in base.columns.items()
        }
        return replace(base, columns=columns)

    # ----------------------------------------------------------------- merge

    def merge(self, other: Profile) -> Profile:
        """The profile of both profiles' rows together; associative (sketches within bounds).

        The time window becomes the span of both windows.

        Raises
        ------
        DataError
            The profiles cover different columns, a column changed kind, or histograms were
            built against different bins.
        """
        if not isinstance(other, Profile):
            raise DataError(f"can only merge a Profile with a Profile, got {type(other).__name__}")
        if not other.columns and other.n_rows == 0:
            return self
        if not self.columns and self.n_rows == 0:
            return other
        if set(self.columns) != set(other.columns):
            only_a = sorted(set(self.columns) - set(other.columns))
            only_b = sorted(set(other.columns) - set(self.columns))
            raise DataError(
                "cannot merge profiles of different columns: "
                f"only in the first: {only_a[:10]}, only in the second: {only_b[:10]}"
            )
        columns = {
            name: col.merge(other.columns[name], seed=self.seed)
            for name, col in self.columns.items()
        }
        return Profile(
            n_rows=self.n_rows + other.n_rows,
            columns=columns,
            window_start=_opt(min, self.window_start, other.window_start),
            window_end=_opt(max, self.window_end, other.window_end),
            seed=self.seed,
        )

    def __add__(self, other: Profile) -> Profile:
        return self.merge(other)

    def __radd__(self, other: object) -> Profile:
        # lets sum(profiles) start from 0
        if other == 0:
            return self
        if isinstance(other, Profile):
            return other.merge(self)
        return NotImplemented

    # ----------------------------------------------------------------- output

    def summary(self, min_category_count: int = 1) -> dict[str, Any]:
        """JSON-able aggregates for reports: per column kind, count, nulls, min, max, mean,
        std, quantiles, distinct count, top categories (at most 10, each seen at least
        ``min_category_count`` times) and a histogram (the reference bins' counts, else
        decile-edged counts from the sample, marked with ``source``). Never the sample."""
        return {
            "n_rows": self.n_rows,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "columns": {
                name: col.summary(min_category_count) for name, col in self.columns.items()
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON form (sketches included), for storing a reference profile.

        Floats keep their exact value (Python's shortest repr; non-finite ones as the strings
        ``"inf"``, ``"-inf"``, ``"nan"``); arrays are base64 little-endian bytes.
        """
        return {
            "schema": PROFILE_SCHEMA_ID,
            "n_rows": self.n_rows,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "seed": self.seed,
            "columns": [col.to_dict() for col in self.columns.values()],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as strict JSON text."""
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        DataError
            Another schema, or a malformed field.
        """
        if not isinstance(data, Mapping) or data.get("schema") != PROFILE_SCHEMA_ID:
            got = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
            raise DataError(
                f"not a profile document: schema must be {PROFILE_SCHEMA_ID!r}, got {got!r}"
            )
        try:
            columns = [ColumnProfile.from_dict(c) for c in data["columns"]]
            return cls(
                n_rows=int(data["n_rows"]),
                columns={c.name: c for c in columns},
                window_start=data.get("window_start"),
                window_end=data.get("window_end"),
                seed=int(data.get("seed", 0)),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, DataError):
                raise
            raise DataError(f"profile document: malformed ({err!r})") from err

    @classmethod
    def from_json(cls, text: str) -> Profile:
        """Inverse of :meth:`to_json`.

        Raises
        ------
        DataError
            The text is not JSON or not a profile document.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"profile JSON: not valid JSON ({err})") from err
        return cls.from_dict(data)


def profile_by_window(
    frame: pd.DataFrame, time_column: str, freq: str = "1h", **kw: Any
) -> dict[str, Profile]:
    """Profiles of consecutive time windows, keyed by the window start (ISO 8601).

    Rows fall in the window ``[start, start + freq)`` that holds their timestamp; the time
    column itself is not profiled; empty windows are left out. Merging the windows'
    profiles gives the profile of all rows (up to the sample's randomness).

    Parameters
    ----------
    frame:
        The rows.
    time_column:
        A datetime column, or one that ``pd.to_datetime`` parses.
    freq:
        A fixed window length: ``"15min"``, ``"1h"``, ``"1D"``...
    **kw:
        Passed to :meth:`Profile.from_frame` (``full``, ``bins_from``, ``seed``...).

    Returns
    -------
    dict[str, Profile]
        In time order; each profile has ``window_start`` and ``window_end`` set.

    Raises
    ------
    DataError
        ``time_column`` is missing, unparseable or has missing values.
    ConfigError
        ``freq`` is not a fixed frequency.

    Example::

        hourly = profile_by_window(traffic, "ts", "1h", bins_from=ref)
        day = sum(hourly.values())
    """
    if time_column not in frame.columns:
        raise DataError(
            f"time_column {time_column!r} not found; {known_names(time_column, frame.columns)}"
        )
    try:
        step = pd.Timedelta(freq)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"freq must be a fixed window length such as '15min', '1h' or '1D', got {freq!r}"
        ) from err
    if step <= pd.Timedelta(0):
        raise ConfigError(f"freq must be a positive window length, got {freq!r}")
    try:
        times = pd.to_datetime(frame[time_column])
    except (ValueError, TypeError) as err:
        raise DataError(f"time_column {time_column!r}: cannot parse as datetimes ({err})") from err
    missing = int(times.isna().sum())
    if missing:
        raise DataError(
            f"time_column {time_column!r} has {missing} missing timestamps; "
            "drop or fill them before bucketing by time"
        )
    starts = times.dt.floor(step)
    rest = frame.drop(columns=[time_column])
    out: dict[str, Profile] = {}
    for start, part in rest.groupby(starts.to_numpy(), sort=True):
        ts = pd.Timestamp(cast(Any, start))
        if times.dt.tz is not None and ts.tzinfo is None:
            ts = ts.tz_localize(times.dt.tz)
        prof = Profile.from_frame(part, **kw)
        key = ts.isoformat()
        out[key] = replace(prof, window_start=key, window_end=(ts + step).isoformat())
    return out


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Params:
    sample_size: int
    hll_precision: int
    max_categories: int
    workers: int | None

    @classmethod
    def make(
        cls, sample_size: int, hll_precision: int, max_categories: int, workers: int | None
    ) -> _Params:
        checks = (
            ("sample_size", sample_size, 1),
            ("hll_precision", hll_precision, 4),
            ("max_categories", max_categories, 1),
        )
        for label, value, low in checks:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{label} must be an integer >= {low}, got {value!r}")
        if hll_precision > 18:
            raise ConfigError(f"hll_precision must be an integer in 4..18, got {hll_precision!r}")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"workers must be a positive integer or None, got {workers!r}")
        return cls(sample_size, hll_precision, max_categories, workers)


@dataclass
class _Bins:
    """The reference bins one column is counted into."""

    kind: Kind
    coarse: Histogram | None
    fine: Histogram | None


def _bins_of(profile: Profile) -> dict[str, _Bins]:
    bins = {
        name: _Bins(col.kind, col.histogram, col.fine_histogram)
        for name, col in profile.columns.items()
        if col.histogram is not None or col.fine_histogram is not None
    }
    if not bins and profile.columns:
        raise DataError(
            "bins_from must be a reference profile with histograms (Profile.reference(...)); "
            "the profile given has none"
        )
    return bins


def _reference_bins(col: ColumnProfile, n_bins: int) -> Histogram:
    if col.kind == "numeric":
        edges = _decile_edges(col.sample, n_bins)
        return Histogram("numeric", np.zeros(len(edges) + 1, dtype=np.int64), edges=edges)
    cats = tuple(k for k, _ in col.top(len(col.frequent.counts) if col.frequent else 0))
    return Histogram("categorical", np.zeros(len(cats), dtype=np.int64), categories=cats)


def _decile_edges(sample: np.ndarray, n_bins: int) -> npt.NDArray[np.float64]:
    if len(sample) == 0:
        return np.empty(0, dtype=np.float64)
    qs = np.arange(1, n_bins) / n_bins
    return np.unique(np.quantile(sample, qs)).astype(np.float64)


def _replayable(
    source: pd.DataFrame | Iterable[pd.DataFrame] | Callable[[], Iterable[pd.DataFrame]],
) -> Callable[[], Iterable[pd.DataFrame]]:
    if isinstance(source, pd.DataFrame):
        frame = source
        return lambda: [frame]
    if callable(source):
        return source
    if isinstance(source, Iterator):
        frames = list(source)  # one-shot iterators cannot be read twice
        return lambda: frames
    if isinstance(source, Iterable):
        frames_seq = source
        return lambda: frames_seq
    raise DataError(
        "frame_or_chunks must be a DataFrame, an iterable of DataFrames or a callable "
        f"returning one, got {type(source).__name__}"
    )


def _name_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _kind(value: Any) -> Kind:
    if value == "numeric":
        return "numeric"
    if value == "categorical":
        return "categorical"
    raise DataError(f"column kind must be 'numeric' or 'categorical', got {value!r}")


def _opt(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)


def _chan(
    n1: int, m1: float | None, v1: float | None, n2: int, m2: float | None, v2: float | None
) -> tuple[float | None, float | None]:
    """Chan et al.'s pairwise update of (mean, population variance)."""
    if n1 == 0 or m1 is None or v1 is None:
        return (m2, v2) if n2 else (None, None)
    if n2 == 0 or m2 is None or v2 is None:
        return m1, v1
    n = n1 + n2
    delta = m2 - m1
    mean = m1 + delta * (n2 / n)
    m2_sum = v1 * n1 + v2 * n2 + delta * delta * (n1 * n2 / n)
    return mean, m2_sum / n


def _merge_hist(a: Histogram | None, b: Histogram | None, column: str) -> Histogram | None:
    if a is None and b is None:
        return None
    if a is None or b is None:
        raise DataError(
            f"column {column!r}: cannot merge a profile with histograms and one without; "
            "build both with the same bins_from reference profile"
        )
    return a.merge(b, column=column)


def _merge_opt(
    a: UniformSample | None, b: UniformSample | None, full: bool, rng: np.random.Generator
) -> UniformSample | None:
    if not full or a is None or b is None:
        return None
    return a.merge(b, rng)


def _hll_merge(a: HyperLogLog | None, b: HyperLogLog | None) -> HyperLogLog | None:
    if a is None or b is None:
        return None
    return a.merge(b)


def _freq_merge(a: FrequentItems | None, b: FrequentItems | None) -> FrequentItems | None:
    if a is None or b is None:
        return a or b
    return a.merge(b)


def _as_kind(empty: ColumnProfile, like: ColumnProfile) -> ColumnProfile:
    """An all-null column profile re-typed as ``like``'s kind (its rows only add nulls)."""

    def nulls_only(h: Histogram | None) -> Histogram | None:
        if h is None:
            return None
        return replace(h.empty_like(), null_count=empty.null_count)

    sample = like.quantile_sketch
    return ColumnProfile(
        name=empty.name,
        kind=like.kind,
        count=empty.count,
        null_count=empty.null_count,
        histogram=nulls_only(like.histogram),
        fine_histogram=nulls_only(like.fine_histogram),
        quantile_sketch=(
            None if sample is None else UniformSample(sample.values[:0], 0, sample.capacity)
        ),
        distinct_sketch=(
            None
            if like.distinct_sketch is None
            else HyperLogLog.empty(like.distinct_sketch.precision)
        ),
        frequent=(
            None if like.frequent is None else FrequentItems({}, 0, like.frequent.capacity, True)
        ),
        full=empty.full,
    )


def _enc_float(value: float) -> float | str:
    v = float(value)
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _dec_float(value: Any) -> float:
    if isinstance(value, str):
        if value not in ("inf", "-inf", "nan"):
            raise DataError(f"expected a number or 'inf', '-inf', 'nan', got {value!r}")
        return float(value)
    return float(value)


def _enc_opt(value: float | None) -> float | str | None:
    return None if value is None else _enc_float(value)


def _dec_opt(value: Any) -> float | None:
    return None if value is None else _dec_float(value)


# --------------------------------------------------------------------------- column kernels


def _is_numeric(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return False
    return bool(
        pd.api.types.is_bool_dtype(dtype)
        or (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype))
        or pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
    )


def _numeric_array(series: pd.Series) -> np.ndarray:
    """The column as a numpy array the kernel can read block by block (no copy for plain
    float64; ints, uints, bools and float32 are cast per block)."""
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        if getattr(dtype, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        return _seconds(series.to_numpy())
    if pd.api.types.is_timedelta64_dtype(dtype):
        return _seconds(series.to_numpy())
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
        arr: np.ndarray = series.to_numpy()
        return arr
    out: np.ndarray = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _seconds(arr: np.ndarray) -> npt.NDArray[np.float64]:
    """datetime64 / timedelta64 in any unit as float seconds (since the epoch), NaT as NaN;
    reading the integer ticks avoids the overflow of converting far dates to nanoseconds."""
    unit, step = np.datetime_data(arr.dtype)
    per_tick = float(np.timedelta64(step, cast(Any, unit)) / np.timedelta64(1, "s"))
    secs = arr.view(np.int64).astype(np.float64) * per_tick
    secs[np.isnat(arr)] = np.nan
    return secs


def _profile_column(
    name: str,
    series: pd.Series,
    full: bool,
    bins: _Bins | None,
    params: _Params,
    rng: np.random.Generator,
) -> ColumnProfile:
    numeric = _is_numeric(series)
    if bins is not None and bins.kind == "numeric" and not numeric and series.notna().sum() == 0:
        numeric = True  # an all-null column (often object dtype) adopts its reference's kind
    if bins is not None and bins.kind == "categorical" and numeric and series.notna().sum() == 0:
        numeric = False
    kind: Kind = "numeric" if numeric else "categorical"
    if bins is not None and bins.kind != kind:
        raise DataError(
            f"column {name!r} is {kind} here but {bins.kind} in the bins_from reference; "
            "cast it to the reference's type"
        )
    if numeric:
        values = np.full(len(series), np.nan) if not _is_numeric(series) else _numeric_array(series)
        return _profile_numeric(name, values, full, bins, params, rng)
    return _profile_categorical(name, series, full, bins, params, rng)


def _profile_numeric(
    name: str,
    x: np.ndarray,
    full: bool,
    bins: _Bins | None,
    params: _Params,
    rng: np.random.Generator,
) -> ColumnProfile:
    # inf - inf in a block sum and overflow of huge values are expected and handled here
    with np.errstate(invalid="ignore", over="ignore"):
        return _profile_numeric_unguarded(name, x, full, bins, params, rng)


def _profile_numeric_unguarded(
    name: str,
    x: np.ndarray,
    full: bool,
    bins: _Bins | None,
    params: _Params,
    rng: np.random.Generator,
) -> ColumnProfile:
    n = len(x)
    coarse_edges = bins.coarse.edges if bins is not None and bins.coarse is not None else None
    fine_edges = bins.fine.edges if bins is not None and bins.fine is not None else None
    # the reference's deciles are among its percentiles: count the fine bins only and sum
    # them into the coarse ones afterwards
    derive_coarse = (
        coarse_edges is not None
        and fine_edges is not None
        and bool(np.isin(coarse_edges, fine_edges).all())
    )
    counters = [
        _BinCounter(e)
        for e in (None if derive_coarse else coarse_edges, fine_edges)
        if e is not None
    ]
    registers = np.zeros(1 << params.hll_precision, dtype=np.uint8) if full else None

    block = min(_BLOCK, max(n, 1))
    cast = x.dtype != np.float64
    fbuf = np.empty(block, dtype=np.float64)
    dbuf = np.empty(block, dtype=np.float64)
    hbuf = np.empty(block, dtype=np.uint64) if full else None
    tbuf = np.empty(block, dtype=np.uint64) if full else None

    nulls = infs = nfin = 0
    mean = m2 = 0.0
    lo, hi = math.inf, -math.inf
    seen = False
    for start in range(0, n, block):
        b = x[start : start + block]
        k = len(b)
        if cast:
            np.copyto(fbuf[:k], b, casting="unsafe")
            b = fbuf[:k]
        total = float(np.add.reduce(b))
        # a finite sum proves the block holds no NaN and no infinity: one pass, no mask
        if math.isfinite(total):
            vals = fin = b
        else:
            nan = np.isnan(b)
            n_nan = int(np.count_nonzero(nan))
            nulls += n_nan
            vals = b[~nan] if n_nan else b
            if len(vals) == 0:
                continue
            finite = np.isfinite(vals)
            n_fin = int(np.count_nonzero(finite))
            fin = vals if n_fin == len(vals) else vals[finite]
            infs += len(vals) - n_fin
            total = float(np.add.reduce(fin)) if n_fin else 0.0
        seen = True
        lo = min(lo, float(vals.min()))
        hi = max(hi, float(vals.max()))
        kf = len(fin)
        if kf:
            bmean = total / kf
            d = dbuf[:kf]
            np.subtract(fin, bmean, out=d)
            # square in place and reduce: np.dot would call OpenBLAS, whose thread start-up
            # costs ~1 ms per call on a busy machine, 30x the arithmetic
            np.multiply(d, d, out=d)
            bm2 = float(np.add.reduce(d))
            # Chan et al.: combine the running (n, mean, M2) with the block's
            tot_n = nfin + kf
            delta = bmean - mean
            mean += delta * (kf / tot_n)
            m2 += bm2 + delta * delta * (nfin * kf / tot_n)
            nfin = tot_n
        if registers is not None and hbuf is not None and tbuf is not None:
            kv = len(vals)
            HyperLogLog.update(registers, hash_float64(vals, hbuf[:kv], tbuf[:kv]))
        for counter in counters:
            counter.add(vals)

    histogram = fine_histogram = None
    if bins is not None:
        made = {id(c.edges): c.counts for c in counters}
        if fine_edges is not None and bins.fine is not None:
            fine_counts = made[id(fine_edges)]
            fine_histogram = replace(bins.fine.empty_like(), counts=fine_counts, null_count=nulls)
        if coarse_edges is not None and bins.coarse is not None:
            if derive_coarse and fine_edges is not None:
                coarse_counts = _coarsen(fine_counts, fine_edges, coarse_edges)
            else:
                coarse_counts = made[id(coarse_edges)]
            histogram = replace(bins.coarse.empty_like(), counts=coarse_counts, null_count=nulls)

    sketch = hll = None
    if full and registers is not None:
        hll = HyperLogLog(params.hll_precision, registers)
        sketch = UniformSample(
            _sample_numeric(x, n - nulls, params.sample_size, rng), n - nulls, params.sample_size
        )
    return ColumnProfile(
        name=name,
        kind="numeric",
        count=n,
        null_count=nulls,
        min=lo if seen else None,
        max=hi if seen else None,
        mean=mean if nfin else None,
        variance=m2 / nfin if nfin else None,
        inf_count=infs,
        histogram=histogram,
        fine_histogram=fine_histogram,
        quantile_sketch=sketch,
        distinct_sketch=hll,
        full=full,
    )


class _BinCounter:
    """Counts values into the bins of sorted edges (bin i: ``edges[i-1] <= v < edges[i]``).

    ``np.searchsorted`` costs a branchy binary search per value (~40 ns with 99 edges). A
    uniform grid of 16 Ki cells over the edges' range answers most values with two
    arithmetic passes and one table lookup: a cell maps to a bin when neither it nor its
    neighbours hold an edge (the neighbours absorb the grid arithmetic's rounding); values
    in the few cells near an edge fall back to ``searchsorted``. Results equal
    ``searchsorted``'s exactly.
    """

    _CELLS = 1 << 14

    def __init__(self, edges: npt.NDArray[np.float64]) -> None:
        self.edges = edges
        k = len(edges)
        self.counts = np.zeros(k + 1, dtype=np.int64)
        self.table: npt.NDArray[np.intp] | None = None
        self._pos = np.empty(0, dtype=np.float64)
        self._cell = np.empty(0, dtype=np.intp)
        self._idx = np.empty(0, dtype=np.intp)
        if k < 4 or not np.isfinite(edges).all():
            return
        g = self._CELLS
        span = float(edges[-1] - edges[0])
        cell = span / (g - 4)
        magnitude = max(abs(float(edges[0])), abs(float(edges[-1])))
        # the grid arithmetic must resolve a cell: its rounding stays far below one cell
        if not (cell > 0 and math.isfinite(cell) and cell > magnitude * 2.0**-30):
            return
        # cells 1..g cover [start, start + g * cell); index 0 is below, g + 1 above
        start = float(edges[0]) - 2 * cell
        lefts = start + np.arange(g) * cell
        lo_bin = np.searchsorted(edges, lefts, side="right")
        hi_bin = np.searchsorted(edges, lefts + cell, side="left")
        lo_ext = np.concatenate([[0], lo_bin[:-1]])
        hi_ext = np.concatenate([hi_bin[1:], [k]])
        inner = np.where(lo_ext == hi_ext, lo_bin, -1)
        self.table = np.concatenate([[0], inner, [k]]).astype(np.intp)
        self.origin = start - cell
        self.scale = 1.0 / cell

    def add(self, vals: npt.NDArray[np.float64]) -> None:
        n_bins = len(self.counts)
        k = len(vals)
        if self.table is None or k < 64:
            self.counts += np.bincount(
                np.searchsorted(self.edges, vals, side="right"), minlength=n_bins
            )
            return
        if len(self._pos) < k:  # scratch reused across blocks: no allocation per block
            self._pos = np.empty(k, dtype=np.float64)
            self._cell = np.empty(k, dtype=np.intp)
            self._idx = np.empty(k, dtype=np.intp)
        pos, cell, idx = self._pos[:k], self._cell[:k], self._idx[:k]
        with np.errstate(over="ignore", invalid="ignore"):  # +-inf and huge values clip
            np.subtract(vals, self.origin, out=pos)
            np.multiply(pos, self.scale, out=pos)
        np.clip(pos, 0, self._CELLS + 1, out=pos)
        np.copyto(cell, pos, casting="unsafe")
        np.take(self.table, cell, out=idx)
        if idx.min() < 0:
            unsure = idx < 0
            idx[unsure] = np.searchsorted(self.edges, vals[unsure], side="right")
        self.counts += np.bincount(idx, minlength=n_bins)


def _coarsen(
    fine_counts: npt.NDArray[np.int64],
    fine_edges: npt.NDArray[np.float64],
    coarse_edges: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """Sum fine bins into coarse ones whose edges are a subset of the fine edges."""
    lower = np.concatenate([[-np.inf], fine_edges])  # each fine bin's lower bound
    owner = np.searchsorted(coarse_edges, lower, side="right")
    return np.bincount(owner, weights=fine_counts, minlength=len(coarse_edges) + 1).astype(np.int64)


def _sample_numeric(
    x: np.ndarray, non_null: int, capacity: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """A uniform sample of ``min(capacity, non_null)`` non-null values of ``x``, sorted."""
    n = len(x)
    has_nan = x.dtype.kind == "f"
    if non_null <= capacity:
        xf = x.astype(np.float64, copy=False)
        picked = xf[~np.isnan(xf)] if has_nan and non_null < n else xf
    elif non_null == n:
        picked = x[rng.choice(n, capacity, replace=False, shuffle=False)]
    else:
        # random-order distinct positions; the first `capacity` non-null ones are a uniform
        # sample of the non-null values (by symmetry), without building a mask of the column
        over = min(n, int(capacity * n / non_null * 1.25) + 64)
        got = x[rng.choice(n, over, replace=False, shuffle=True)]
        got = got[~np.isnan(got)]
        if len(got) >= capacity:
            picked = got[:capacity]
        else:
            where = np.flatnonzero(~np.isnan(x))
            picked = x[rng.choice(where, capacity, replace=False, shuffle=False)]
    return np.sort(picked.astype(np.float64))


def _str_counts(series: pd.Series) -> tuple[dict[str, int], npt.NDArray[np.bool_]]:
    """Exact counts of the non-null values as strings, and the null mask."""
    isna = series.isna().to_numpy(dtype=bool)
    try:
        vc = series.value_counts(dropna=True, sort=False)
    except TypeError:  # unhashable objects (lists, dicts): count their text
        vc = series[~isna].map(str).value_counts(sort=False)
    counts: dict[str, int] = {}
    for key, value in zip(vc.index.tolist(), vc.to_numpy().tolist(), strict=True):
        if value > 0:
            skey = key if isinstance(key, str) else str(key)
            counts[skey] = counts.get(skey, 0) + int(value)
    return counts, isna


def _profile_categorical(
    name: str,
    series: pd.Series,
    full: bool,
    bins: _Bins | None,
    params: _Params,
    rng: np.random.Generator,
) -> ColumnProfile:
    n = len(series)
    if full or bins is not None:
        counts, isna = _str_counts(series)
    else:
        counts, isna = {}, series.isna().to_numpy(dtype=bool)
    nulls = int(np.count_nonzero(isna))
    non_null = n - nulls

    def count_into(h: Histogram | None) -> Histogram | None:
        if h is None or h.categories is None:
            return None
        binned = np.array([counts.get(c, 0) for c in h.categories], dtype=np.int64)
        return replace(
            h, counts=binned, null_count=nulls, unseen_count=non_null - int(binned.sum())
        )

    histogram = count_into(bins.coarse) if bins is not None else None
    fine_histogram = count_into(bins.fine) if bins is not None else None
    sketch = hll = freq = None
    if full:
        registers = np.zeros(1 << params.hll_precision, dtype=np.uint8)
        HyperLogLog.update(registers, hash_strings(list(counts)))
        hll = HyperLogLog(params.hll_precision, registers)
        freq = FrequentItems.from_counts(counts, params.max_categories)
        sketch = UniformSample(
            _sample_categorical(series, isna, non_null, params.sample_size, rng),
            non_null,
            params.sample_size,
        )
    return ColumnProfile(
        name=name,
        kind="categorical",
        count=n,
        null_count=nulls,
        histogram=histogram,
        fine_histogram=fine_histogram,
        quantile_sketch=sketch,
        distinct_sketch=hll,
        frequent=freq,
        full=full,
    )


def _sample_categorical(
    series: pd.Series,
    isna: npt.NDArray[np.bool_],
    non_null: int,
    capacity: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.object_]:
    where = np.flatnonzero(~isna)
    if non_null > capacity:
        where = np.sort(rng.choice(where, capacity, replace=False, shuffle=False))
    picked = series.take(where).tolist()
    return np.array([v if isinstance(v, str) else str(v) for v in picked], dtype=object)

"""Out-of-distribution and adversarial-input detection against the release's reference profile.

What it detects
    Inference rows unlike the data the model was judged on: values outside the range seen in
    training (a unit change, a broken upstream join, a probe of the model's extrapolation)
    and rows whose values are each plausible but jointly rare under the training marginals
    (noise-perturbed or crafted inputs, rows from another population).

Reference
    The signed gate report inside the release: ``report["profiles"][name]["columns"]`` holds
    per-column summaries (:meth:`bastion.data.profile.ColumnProfile.summary`: ``min``,
    ``max`` and a ``histogram`` with interior ``edges`` and ``len(edges) + 1`` ``counts``,
    the outer bins open), and ``report["datasets"][i]["features"]`` the model's input
    columns in order. The ``"train"`` profile is used when there is one. No raw rows are
    needed (the report carries none).

How
    - Range: a value outside ``[min - margin * (max - min), max + margin * (max - min)]``
      makes its row out of range; ``first_feature`` names the first such column (in the
      model's input order). NaN counts as out of range (the schema guard should have
      refused it first).
    - Density: each column's histogram becomes a piecewise-constant density. The open outer
      bins are closed at the reference ``min`` / ``max``; a bin narrower than
      ``1e-3 * (max - min)`` (a tied decile: a point mass such as a binary column's 0) is
      given that width. With ``N`` binned rows, ``B`` bins and add-``alpha`` smoothing
      (``alpha = 0.5``, so an empty bin keeps some mass), bin ``i`` has probability
      ``(c_i + alpha) / (N + alpha * B)``. The density is taken relative to the uniform
      density on the reference range (``p_i * range / width_i``), so a column's term does not
      depend on its units. Values outside ``[min, max]`` get the *floor density*: the
      smoothed mass of an empty bin spread over the whole range, ``alpha / (N + alpha * B)``,
      which is below every in-range bin's. A row's ``density`` score is the sum over columns
      of ``-log`` of these densities (higher = less like the reference).
    - Threshold: at construction ``n_calibration`` rows are drawn from the histograms
      (seeded): each column's value is its histogram's piecewise-uniform inverse CDF at
      ``u_j = Phi(sqrt(r) z + sqrt(1 - r) e_j)``, with ``z`` and ``e_j`` standard normal and
      ``r = dependence`` (a one-factor Gaussian copula), and the threshold is the draws'
      ``1 - density_quantile`` score quantile, so about ``density_quantile`` of rows drawn
      from the reference marginals with that coupling exceed it.
      ``anomalous = out_of_range | (density > threshold)``.

Why the coupling (measured on scikit-learn's breast-cancer set, 30 columns: reference profile
of a stratified 70 % split, ``random_state=0``; the other 30 % held out; margin 0.1,
density_quantile 0.001; ``tests/gateway/guards/test_ood.py`` asserts bounds around these)
    The histograms are marginals. Correlated columns (radius, perimeter and area move
    together) put a large real tumour in the outer bins of many columns at once, which
    independent draws almost never do, so with ``dependence=0`` 12.9 % of held-out rows and
    14.8 % of the training rows themselves exceed the threshold. With the default 0.3 the
    density test flags 0.3 % of the training rows and no held-out row beyond those the range
    check already flags (3.5 %: 398 training rows do not span the tails of 30 skewed
    columns). Against held-out rows with Gaussian noise of 3 training standard deviations
    added to 3 / 5 / 10 random columns, 67 % / 78 % / 98 % of rows are flagged (73 % / 82 %
    / 100 % with ``dependence=0``); rows drawn from independent normals with the training
    means and standard deviations, 35 %. Values just beyond the training min / max carry
    most of the power (their floor density); rows whose every value is typical but whose
    combination is not (columns shuffled independently) are invisible to marginals.
    ``dependence`` is a property of the data, not of the detector: where reference-like rows
    are at hand (the test split, a day of vetted traffic) :meth:`OODDetector.calibrate`
    sets the threshold from them instead.

Other limits
    - The report's histograms are deciles (10 bins per column), so within the range the
      density is coarse.
    - Columns that are categorical in the profile, or missing from it, are not checked
      (listed in :attr:`OODDetector.unchecked`).

Cost
    One ``np.searchsorted`` per column over the batch and a gather: O(rows x columns x
    log(bins)); 3,420 rows x 30 columns take about 3 ms on one CPU core.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from bastion.exceptions import ConfigError, DataError
from bastion.gateway.guards.auth import GuardRejectedError

__all__ = ["OODBurst", "OODBurstState", "OODDetector", "OODResult"]

Mode = Literal["flag", "block"]

SMOOTHING = 0.5  # add-alpha per bin: an empty decile bin is rare, not impossible
MIN_WIDTH_SHARE = 1e-3  # narrowest bin, as a share of the reference range (point masses)
_TOP_FEATURES = 3  # features named in a density rejection message


@dataclass(frozen=True)
class OODResult:
    """Per-row verdicts of :meth:`OODDetector.score`.

    Attributes
    ----------
    out_of_range:
        Whether any value of the row lies outside its column's widened reference range.
    first_feature:
        The first out-of-range column of the row (input order), ``None`` when in range.
    density:
        The row's score, sum over columns of ``-log`` relative reference density.
    anomalous:
        ``out_of_range | (density > threshold)``.
    threshold:
        The density threshold in force.
    """

    out_of_range: npt.NDArray[np.bool_]
    first_feature: list[str | None]
    density: npt.NDArray[np.float64]
    anomalous: npt.NDArray[np.bool_]
    threshold: float = math.inf

    @property
    def n_anomalous(self) -> int:
        return int(np.count_nonzero(self.anomalous))

    @property
    def share(self) -> float:
        """Share of anomalous rows (0 for an empty batch)."""
        n = len(self.anomalous)
        return self.n_anomalous / n if n else 0.0


@dataclass(frozen=True)
class _Column:
    """One checked column: bounds, edges and the ``-log`` density of each bin."""

    name: str
    index: int  # position in the model's input
    lo: float  # reference min
    hi: float  # reference max
    lo_wide: float
    hi_wide: float
    edges: npt.NDArray[np.float64]
    bounds: npt.NDArray[np.float64]  # len(edges) + 2: min, edges..., max (clipped)
    probs: npt.NDArray[np.float64]  # unsmoothed bin shares, for calibration draws
    neg_log: npt.NDArray[np.float64]  # -log relative density per bin
    floor: float  # -log floor density

    def score(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        bins = np.searchsorted(self.edges, x, side="right")
        out = self.neg_log[bins]
        # NaN fails both comparisons: give it the floor too
        return np.where((x >= self.lo) & (x <= self.hi), out, self.floor)


class OODDetector:
    """Per-feature range checks and a histogram density score against a reference profile.

    Example::

        >>> det = OODDetector.from_report(report, mode="block")        # doctest: +SKIP
        >>> det.score(X).anomalous                                     # doctest: +SKIP
        array([False, False,  True])
        >>> det.check(X)                                               # doctest: +SKIP
        GuardRejectedError(status=422, message="row 2: 'mean_radius' = 99.0 is outside ...")
    """

    def __init__(
        self,
        features: Sequence[str],
        columns: Mapping[str, Mapping[str, Any]],
        *,
        margin: float = 0.1,
        density_quantile: float = 0.001,
        mode: Mode = "flag",
        dependence: float = 0.3,
        n_calibration: int | None = None,
        seed: int = 0,
    ) -> None:
        """Build from the model's input columns and their profile summaries.

        Parameters
        ----------
        features:
            Input columns in the model's order.
        columns:
            ``profile_summary["columns"]``: per-column summaries with ``kind``, ``min``,
            ``max`` and ``histogram`` ``{"edges", "counts"}``.
        margin:
            Widening of each range, as a share of ``max - min``, before a value is out of range.
        density_quantile:
            Target share of reference-like rows whose density score exceeds the threshold.
        mode:
            ``"flag"``: :meth:`check` returns the result; ``"block"``: it raises 422.
        dependence:
            Correlation in [0, 1) of the one-factor Gaussian copula that couples the columns
            in the calibration draws (0: independent columns). See the module docstring.
        n_calibration:
            Rows drawn to calibrate the threshold; default ``max(20_000, 50 /
            density_quantile)``, capped at 1,000,000 (about 50 draws beyond the threshold).
        seed:
            Seed of the calibration draws.

        Raises
        ------
        ConfigError
            A parameter is out of range.
        DataError
            No input column has a usable numeric summary.
        """
        if not margin >= 0:
            raise ConfigError(f"margin must be >= 0, got {margin}")
        if not 0 < density_quantile < 1:
            raise ConfigError(f"density_quantile must be in (0, 1), got {density_quantile}")
        if not 0 <= dependence < 1:
            raise ConfigError(f"dependence must be in [0, 1), got {dependence}")
        if mode not in ("flag", "block"):
            raise ConfigError(f"mode must be 'flag' or 'block', got {mode!r}")
        self.features = tuple(str(f) for f in features)
        self.margin = margin
        self.density_quantile = density_quantile
        self.mode: Mode = mode
        self.dependence = dependence
        cols: list[_Column] = []
        unchecked: list[str] = []
        for i, name in enumerate(self.features):
            col = _column(name, i, columns.get(name), margin)
            if col is None:
                unchecked.append(name)
            else:
                cols.append(col)
        if not cols:
            raise DataError(
                "OOD detector: none of the input columns has a numeric profile with a histogram"
            )
        self._columns = tuple(cols)
        self.unchecked = tuple(unchecked)
        self._index = np.array([c.index for c in cols], dtype=np.intp)
        self._lo_wide = np.array([c.lo_wide for c in cols])
        self._hi_wide = np.array([c.hi_wide for c in cols])
        # every column's bins in one broadcast (the serving path scores small batches)
        from bastion.data.binning import ColumnEdges

        self._edges = ColumnEdges([c.edges for c in cols])
        width = max(len(c.neg_log) for c in cols)
        self._neg_log = np.zeros((len(cols), width))
        for j, c in enumerate(cols):
            self._neg_log[j, : len(c.neg_log)] = c.neg_log
        self._lo = np.array([c.lo for c in cols])
        self._hi = np.array([c.hi for c in cols])
        self._floor = np.array([c.floor for c in cols])
        if n_calibration is None:
            n_calibration = min(1_000_000, max(20_000, math.ceil(50 / density_quantile)))
        if n_calibration < 1:
            raise ConfigError(f"n_calibration must be >= 1, got {n_calibration}")
        self.threshold = self._threshold(self._draw(n_calibration, seed))

    @classmethod
    def from_report(
        cls,
        report: Mapping[str, Any],
        *,
        margin: float = 0.1,
        density_quantile: float = 0.001,
        mode: Mode = "flag",
        profile: str | None = None,
        dependence: float = 0.3,
        n_calibration: int | None = None,
        seed: int = 0,
    ) -> OODDetector:
        """The detector for a release's gate report (``report.json``, already verified).

        ``profile`` names the reference profile; by default ``"train"`` when the report has
        it, else the profile of the first dataset that lists its features.

        Raises
        ------
        DataError
            The report names no input features or holds no such profile (the message lists
            the profiles it holds).
        """
        datasets = list(report.get("datasets") or [])
        features: Sequence[str] | None = None
        first_with_features: str | None = None
        for ds in datasets:
            if ds.get("features"):
                features = ds["features"]
                first_with_features = str(ds.get("name"))
                break
        if not features:
            raise DataError("OOD detector: the report's datasets list no input features")
        profiles = report.get("profiles") or {}
        name = profile or ("train" if "train" in profiles else first_with_features)
        summary = profiles.get(name) if name is not None else None
        if not summary or not summary.get("columns"):
            available = sorted(str(k) for k, v in profiles.items() if v and v.get("columns"))
            raise DataError(
                f"OOD detector: the report holds no profile {name!r}; available: {available}"
            )
        return cls(
            features,
            summary["columns"],
            margin=margin,
            density_quantile=density_quantile,
            mode=mode,
            dependence=dependence,
            n_calibration=n_calibration,
            seed=seed,
        )

    # ------------------------------------------------------------------ scoring

    def score(self, X: npt.ArrayLike) -> OODResult:
        """Range verdicts and density scores for a batch ``X`` (rows x input columns).

        Raises
        ------
        DataError
            ``X`` is not 2-D with one column per input feature.
        """
        values = np.asarray(X, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.features):
            raise DataError(
                f"OOD detector: expected rows of {len(self.features)} columns, got shape "
                f"{list(values.shape)}"
            )
        checked = values[:, self._index]
        outside = ~((checked >= self._lo_wide) & (checked <= self._hi_wide))  # NaN: outside
        out_of_range: npt.NDArray[np.bool_] = np.asarray(outside.any(axis=1), dtype=bool)
        first = np.argmax(outside, axis=1)
        names = [c.name for c in self._columns]
        first_feature: list[str | None] = [
            names[j] if bad else None for j, bad in zip(first.tolist(), out_of_range, strict=True)
        ]
        density = self._scores(checked).sum(axis=1)
        anomalous = out_of_range | (density > self.threshold)
        return OODResult(out_of_range, first_feature, density, anomalous, self.threshold)

    def check(self, X: npt.ArrayLike) -> OODResult:
        """:meth:`score`, then in ``"block"`` mode raise on the first anomalous row.

        Raises
        ------
        GuardRejectedError
            422 in ``"block"`` mode, naming the row and the out-of-range feature (or the
            density score, the threshold and the most unusual features).
        """
        result = self.score(X)
        if self.mode == "block" and result.anomalous.any():
            row = int(np.argmax(result.anomalous))
            raise GuardRejectedError(
                422, self._explain(np.asarray(X, np.float64), result, row), guard="ood"
            )
        return result

    def calibrate(self, X: npt.ArrayLike) -> float:
        """Re-set the threshold to the ``1 - density_quantile`` quantile of the density
        scores of ``X``, rows known to be reference-like (the marginal draws ignore
        correlations between columns, see the module docstring). Returns the threshold.

        Raises
        ------
        DataError
            ``X`` has no rows or the wrong number of columns.
        """
        values = np.asarray(X, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.features) or len(values) == 0:
            raise DataError(
                f"OOD calibration needs rows of {len(self.features)} columns, got shape "
                f"{list(values.shape)}"
            )
        self.threshold = self._threshold(values[:, self._index])
        return self.threshold

    # ------------------------------------------------------------------ internals

    def _scores(self, checked: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Per-cell ``-log`` density, rows x checked columns (:meth:`_Column.score` of every
        column at once)."""
        bins = self._edges.bins(checked)
        out = self._neg_log[np.arange(len(self._columns)), np.minimum(bins, self._edges.n_edges)]
        # NaN fails both comparisons: give it the floor too
        inside = (checked >= self._lo) & (checked <= self._hi)
        return np.where(inside, out, self._floor)

    def _threshold(self, checked: npt.NDArray[np.float64]) -> float:
        scores = self._scores(checked).sum(axis=1)
        return float(np.quantile(scores, 1.0 - self.density_quantile))

    def _draw(self, n: int, seed: int) -> npt.NDArray[np.float64]:
        """``n`` rows drawn from the columns' histograms, coupled by a one-factor Gaussian
        copula of correlation ``dependence``: ``u_j = Phi(sqrt(r) z + sqrt(1 - r) e_j)``,
        then each column's piecewise-uniform inverse CDF at ``u_j``."""
        from scipy.special import ndtr  # lazy: scipy is heavy and only needed here

        rng = np.random.default_rng(seed)
        r = self.dependence
        z = rng.standard_normal((n, 1))
        u = ndtr(
            math.sqrt(r) * z + math.sqrt(1.0 - r) * rng.standard_normal((n, len(self._columns)))
        )
        out = np.empty((n, len(self._columns)), dtype=np.float64)
        for j, col in enumerate(self._columns):
            cdf = np.concatenate([[0.0], np.cumsum(col.probs)])
            cdf /= cdf[-1]
            bins = np.clip(np.searchsorted(cdf, u[:, j], side="right") - 1, 0, len(col.probs) - 1)
            mass = cdf[bins + 1] - cdf[bins]
            # an empty bin is never chosen (its mass is 0 and searchsorted skips it)
            frac = np.clip((u[:, j] - cdf[bins]) / np.where(mass > 0, mass, 1.0), 0.0, 1.0)
            left, right = col.bounds[bins], col.bounds[bins + 1]
            out[:, j] = left + frac * (right - left)
        return out

    def _explain(self, X: npt.NDArray[np.float64], result: OODResult, row: int) -> str:
        name = result.first_feature[row]
        if name is not None:
            col = next(c for c in self._columns if c.name == name)
            return (
                f"row {row}: {name!r} = {X[row, col.index]:g} is outside the reference range "
                f"[{col.lo_wide:g}, {col.hi_wide:g}] (training min/max widened by "
                f"{self.margin:g} x range)"
            )
        cells = self._scores(X[row : row + 1, self._index])[0]
        top = np.argsort(-cells, kind="stable")[:_TOP_FEATURES]
        worst = ", ".join(
            f"{self._columns[j].name!r} = {X[row, self._columns[j].index]:g}" for j in top
        )
        return (
            f"row {row}: density score {result.density[row]:.2f} is above the reference "
            f"threshold {self.threshold:.2f} (least typical: {worst})"
        )


def _column(
    name: str, index: int, summary: Mapping[str, Any] | None, margin: float
) -> _Column | None:
    """The checked column for a profile summary, ``None`` when it cannot be checked."""
    if not summary or summary.get("kind") != "numeric":
        return None
    hist = summary.get("histogram") or {}
    lo, hi = summary.get("min"), summary.get("max")
    if lo is None or hi is None or hist.get("counts") is None:
        return None
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        return None
    edges = np.asarray(hist.get("edges") or [], dtype=np.float64)
    counts = np.asarray(hist["counts"], dtype=np.float64)
    if len(counts) != len(edges) + 1 or counts.sum() <= 0:
        raise DataError(
            f"OOD detector: column {name!r}: histogram has {len(counts)} counts for "
            f"{len(edges)} edges"
        )
    span = hi - lo
    # a constant column: any width will do, the floor still separates other values
    unit = span if span > 0 else max(abs(lo), 1.0)
    bounds = np.clip(np.concatenate([[lo], edges, [hi]]), lo, hi)
    widths = np.maximum(np.diff(bounds), MIN_WIDTH_SHARE * unit)
    n, b = float(counts.sum()), len(counts)
    smoothed = (counts + SMOOTHING) / (n + SMOOTHING * b)
    neg_log = -np.log(smoothed * unit / widths)
    floor = -math.log(SMOOTHING / (n + SMOOTHING * b))
    return _Column(
        name=name,
        index=index,
        lo=lo,
        hi=hi,
        lo_wide=lo - margin * span,
        hi_wide=hi + margin * span,
        edges=edges,
        bounds=bounds,
        probs=counts / n,
        neg_log=neg_log,
        floor=max(floor, float(neg_log.max())),
    )


# --------------------------------------------------------------------------- bursts


@dataclass(frozen=True)
class OODBurstState:
    """What :meth:`OODBurst.record` concludes after a request.

    Attributes
    ----------
    active:
        The window's anomalous share is at or above the threshold (and the window holds at
        least ``min_requests`` requests).
    changed:
        ``active`` differs from its value before this request: the edge an alert fires on
        (``ood_burst`` raised when it turns on, resolved when it turns off).
    share:
        Anomalous rows / rows over the window (0 when the window holds no rows).
    requests, rows, anomalous:
        Totals over the window.
    """

    active: bool
    changed: bool
    share: float
    requests: int
    rows: int
    anomalous: int


class OODBurst:
    """Sliding-window share of anomalous rows across requests, for the ``ood_burst`` alert.

    A single odd row is the detector's business; many in a short time (a shifted upstream
    feed, an attacker probing) is an operator's. Each request records its row count and
    anomalous row count; the tracker is *active* while, over the last ``window_s`` seconds,
    at least ``min_requests`` requests arrived and anomalous rows make up at least
    ``threshold_share`` of their rows. Memory: one entry per request in the window.

    Example::

        >>> burst = OODBurst(window_s=60, threshold_share=0.2, min_requests=10)
        >>> state = burst.record(rows=len(X), anomalous=result.n_anomalous)  # doctest: +SKIP
        >>> if state.changed and state.active: alerter.fire("ood_burst", ...)  # doctest: +SKIP
    """

    def __init__(
        self,
        window_s: float,
        threshold_share: float,
        min_requests: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not window_s > 0:
            raise ConfigError(f"window_s must be > 0, got {window_s}")
        if not 0 < threshold_share <= 1:
            raise ConfigError(f"threshold_share must be in (0, 1], got {threshold_share}")
        if min_requests < 1:
            raise ConfigError(f"min_requests must be >= 1, got {min_requests}")
        self.window_s = window_s
        self.threshold_share = threshold_share
        self.min_requests = min_requests
        self._clock = clock
        self._events: deque[tuple[float, int, int]] = deque()
        self._rows = 0
        self._anomalous = 0
        self._active = False
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._active

    def record(self, rows: int, anomalous: int, *, now: float | None = None) -> OODBurstState:
        """Add one request (``rows`` rows, ``anomalous`` of them flagged) and re-evaluate."""
        if rows < 0 or not 0 <= anomalous <= rows:
            raise ConfigError(f"need 0 <= anomalous <= rows, got {anomalous} of {rows}")
        with self._lock:
            t = self._clock() if now is None else now
            self._events.append((t, rows, anomalous))
            self._rows += rows
            self._anomalous += anomalous
            return self._evaluate(t)

    def state(self, *, now: float | None = None) -> OODBurstState:
        """Re-evaluate without recording (lets a burst clear when traffic stops)."""
        with self._lock:
            return self._evaluate(self._clock() if now is None else now)

    def _evaluate(self, now: float) -> OODBurstState:
        cutoff = now - self.window_s
        while self._events and self._events[0][0] <= cutoff:
            _, rows, anomalous = self._events.popleft()
            self._rows -= rows
            self._anomalous -= anomalous
        share = self._anomalous / self._rows if self._rows else 0.0
        active = len(self._events) >= self.min_requests and share >= self.threshold_share
        changed = active != self._active
        self._active = active
        return OODBurstState(active, changed, share, len(self._events), self._rows, self._anomalous)

"""Live monitoring in the gateway: drift of recent traffic against the release's reference
profile, prediction drift, and performance from feedback labels.

The reference is the signed gate report's training profile: per numeric feature a histogram
(``edges`` are interior cut points; ``counts`` has one more cell, the outer ones open; a value
``v`` falls in cell ``searchsorted(edges, v, side="right")``, as the profile counts it). Recent
traffic is binned into the same cells as it arrives (per model version, in a ring of
fixed-size time buckets), so what is kept is counts, never raw inputs. Per feature:

- PSI = sum_i (c_i - r_i) ln(c_i / r_i), with shares floored at :data:`PSI_EPSILON`;
- Jensen-Shannon distance, base 2, between the two cell distributions (unfloored), as
  ``scipy.spatial.distance.jensenshannon(r, c, base=2)``.

Prediction drift is the same Jensen-Shannon distance between the predicted-label shares and the
reference's label shares (the target column's profile). Performance: predictions are kept by
request id (bounded, least recent dropped) until feedback names their true labels; accuracy
is over the feedback of the current window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bastion.exceptions import DataError

__all__ = ["PSI_EPSILON", "FeatureDrift", "LiveMonitor", "MonitorSnapshot", "reference_columns"]

PSI_EPSILON = 1e-4


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    jensenshannon: float
    n: int
    drifted: bool


@dataclass(frozen=True)
class MonitorSnapshot:
    """Drift and performance over the current window."""

    n_rows: int
    features: tuple[FeatureDrift, ...]
    prediction_js: float | None
    accuracy: float | None
    n_feedback: int
    drifted_features: tuple[str, ...] = field(default=())
    psi_threshold: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return {
            "psi_threshold": self.psi_threshold,
            "n_rows": self.n_rows,
            "features": [f.__dict__ for f in self.features],
            "prediction_js": self.prediction_js,
            "accuracy": self.accuracy,
            "n_feedback": self.n_feedback,
            "drifted_features": list(self.drifted_features),
        }


@dataclass
class _Bucket:
    start: float
    counts: np.ndarray  # (features, max cells)
    labels: dict[str, int] = field(default_factory=dict)
    n_rows: int = 0
    correct: int = 0
    feedback: int = 0


class LiveMonitor:
    """Counts of recent traffic against a reference profile, in a ring of time buckets.

    Parameters:
        report: the release's gate report (``datasets[*].features``, ``profiles``).
        window_s: how far back the window reaches.
        bucket_s: the window's granularity.
        psi_threshold: a feature drifts when its PSI exceeds this.
        max_pending: predictions kept while waiting for feedback.
    """

    def __init__(
        self,
        report: Mapping[str, Any],
        *,
        window_s: float = 3600.0,
        bucket_s: float = 60.0,
        psi_threshold: float = 0.2,
        max_pending: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        features, profile, target = _reference_parts(report)
        self.features = features
        self.psi_threshold = psi_threshold
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.max_pending = max_pending
        self._clock = clock
        self._edges: list[np.ndarray | None] = []
        self._reference: list[np.ndarray | None] = []
        for name in features:
            col = profile.get(name, {})
            hist = col.get("histogram") or {}
            edges, counts = hist.get("edges"), hist.get("counts")
            if col.get("kind") == "numeric" and edges is not None and counts is not None:
                e = np.asarray(edges, dtype=np.float64)
                c = np.asarray(counts, dtype=np.float64)
                if len(c) == len(e) + 1 and c.sum() > 0:
                    self._edges.append(e)
                    self._reference.append(c / c.sum())
                    continue
            self._edges.append(None)
            self._reference.append(None)
        self._cells = max((len(e) + 1 for e in self._edges if e is not None), default=1)
        self._label_reference = _label_shares(profile.get(target, {})) if target else None
        self._buckets: deque[_Bucket] = deque()
        self._pending: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    # -- recording -------------------------------------------------------------------------
    def observe(
        self, X: np.ndarray, predicted: Sequence[Any], request_id: str | None = None
    ) -> None:
        """Count one request's rows (binned, never stored) and predictions."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            return  # the schema guard answers such requests; nothing to count
        cells = np.zeros((len(self.features), self._cells))
        for j, edges in enumerate(self._edges):
            if edges is None:
                continue
            col = X[:, j]
            col = col[np.isfinite(col)]
            idx = np.searchsorted(edges, col, side="right")
            cells[j, : len(edges) + 1] += np.bincount(idx, minlength=len(edges) + 1)
        labels = [str(p) for p in predicted]
        with self._lock:
            bucket = self._bucket()
            bucket.counts += cells
            bucket.n_rows += X.shape[0]
            for label in labels:
                bucket.labels[label] = bucket.labels.get(label, 0) + 1
            if request_id is not None:
                self._pending[request_id] = np.asarray(labels, dtype=object)
                while len(self._pending) > self.max_pending:
                    self._pending.popitem(last=False)

    def observe_many(
        self, requests: Sequence[tuple[np.ndarray, Sequence[Any], str | None]]
    ) -> None:
        """:meth:`observe` for several requests at once (binned in one pass)."""
        usable = [
            (np.asarray(X, dtype=np.float64), labels, rid)
            for X, labels, rid in requests
            if np.ndim(X) == 2 and np.shape(X)[1] == len(self.features)
        ]
        if not usable:
            return
        rows = np.concatenate([X for X, _, _ in usable])
        self.observe(rows, [label for _, labels, _ in usable for label in labels])
        with self._lock:
            for _, labels, rid in usable:
                if rid is not None:
                    self._pending[rid] = np.asarray([str(v) for v in labels], dtype=object)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)

    def feedback(self, request_id: str, labels: Sequence[Any]) -> int:
        """True labels for an earlier request's rows; returns how many rows were matched.

        Raises:
            DataError: unknown (or expired) request id, or a wrong number of labels.
        """
        with self._lock:
            predicted = self._pending.pop(request_id, None)
            if predicted is None:
                raise DataError(f"no prediction is waiting for feedback under id {request_id!r}")
            if len(labels) != len(predicted):
                self._pending[request_id] = predicted
                raise DataError(
                    f"request {request_id!r} had {len(predicted)} rows; received "
                    f"{len(labels)} labels"
                )
            truth = np.asarray([str(v) for v in labels], dtype=object)
            bucket = self._bucket()
            bucket.correct += int((truth == predicted).sum())
            bucket.feedback += len(truth)
        return len(truth)

    def _bucket(self) -> _Bucket:
        now = self._clock()
        start = math.floor(now / self.bucket_s) * self.bucket_s
        if not self._buckets or self._buckets[-1].start != start:
            self._buckets.append(_Bucket(start, np.zeros((len(self.features), self._cells))))
        while self._buckets and self._buckets[0].start <= now - self.window_s:
            self._buckets.popleft()
        return self._buckets[-1]

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> MonitorSnapshot:
        with self._lock:
            self._bucket()  # drop expired buckets
            counts = sum(
                (b.counts for b in self._buckets), np.zeros((len(self.features), self._cells))
            )
            n_rows = sum(b.n_rows for b in self._buckets)
            labels: dict[str, int] = {}
            for b in self._buckets:
                for k, v in b.labels.items():
                    labels[k] = labels.get(k, 0) + v
            correct = sum(b.correct for b in self._buckets)
            fed = sum(b.feedback for b in self._buckets)
        drifts = []
        for j, name in enumerate(self.features):
            ref = self._reference[j]
            if ref is None:
                continue
            cur = counts[j, : len(ref)]
            total = float(cur.sum())
            if total == 0:
                continue
            share = cur / total
            psi = _psi(ref, share)
            js = _js(ref, share)
            drifts.append(FeatureDrift(name, psi, js, int(total), psi > self.psi_threshold))
        prediction_js = None
        if self._label_reference and labels:
            keys = sorted(set(self._label_reference) | set(labels))
            ref = np.array([self._label_reference.get(k, 0.0) for k in keys])
            cur = np.array([labels.get(k, 0) for k in keys], dtype=np.float64)
            prediction_js = _js(ref / ref.sum(), cur / cur.sum())
        return MonitorSnapshot(
            n_rows=n_rows,
            features=tuple(drifts),
            prediction_js=prediction_js,
            accuracy=(correct / fed) if fed else None,
            n_feedback=fed,
            drifted_features=tuple(d.feature for d in drifts if d.drifted),
            psi_threshold=self.psi_threshold,
        )


def _psi(reference: np.ndarray, current: np.ndarray) -> float:
    r = np.maximum(reference, PSI_EPSILON)
    c = np.maximum(current, PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def _js(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (scipy's definition)."""
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def _reference_parts(
    report: Mapping[str, Any],
) -> tuple[tuple[str, ...], Mapping[str, Any], str | None]:
    features: Sequence[str] | None = None
    target = None
    for ds in report.get("datasets") or []:
        if ds.get("name") == "train" or features is None:
            features = ds.get("features") or features
            target = ds.get("target") or target
    if not features:
        raise DataError("the release's report names no feature columns: nothing to monitor")
    return tuple(str(f) for f in features), reference_columns(report), target


def reference_columns(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """The per-column summaries of a report's reference profile: ``train``'s, else the
    first profile's (empty when the report has none)."""
    profiles: Mapping[str, Any] = report.get("profiles") or {}
    chosen: Mapping[str, Any] = profiles.get("train") or next(iter(profiles.values()), {})
    columns: Mapping[str, Any] = chosen.get("columns", {})
    return columns


def _label_shares(column: Mapping[str, Any]) -> dict[str, float] | None:
    """The target's class shares from its profile: categorical top values, or, for a numeric
    column with two values, the shares its mean implies."""
    top = column.get("top")
    if isinstance(top, list) and top:
        return {str(v): float(n) for v, n in top}
    low, high, mean = column.get("min"), column.get("max"), column.get("mean")
    if column.get("distinct") != 2 or low is None or high is None or mean is None:
        return None
    lo, hi = float(low), float(high)
    if hi == lo:
        return None
    share_high = (float(mean) - lo) / (hi - lo)
    return {_fmt(lo): 1.0 - share_high, _fmt(hi): share_high}


def _fmt(value: Any) -> str:
    f = float(value)
    return str(int(f)) if f.is_integer() else str(f)

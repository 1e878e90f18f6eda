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
request id until feedback names their true labels; accuracy is over the feedback of the
current window. At most ``max_pending`` ids are held, in two generations of
``max_pending // 2`` dropped whole (see :class:`PendingPredictions`): feedback is accepted
for at least the last ``max_pending // 2`` requests with an id, and never beyond the last
``max_pending``; feedback for an id no longer held is refused (``DataError``; the gateway
answers 404).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bastion.exceptions import ConfigError, DataError

__all__ = [
    "PSI_EPSILON",
    "FeatureDrift",
    "LiveMonitor",
    "MonitorSnapshot",
    "PendingPredictions",
    "reference_columns",
]

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


class PendingPredictions:
    """Predicted labels by request id, waiting for feedback; at most ``cap`` ids.

    Two generations (plain dicts) of at most ``cap // 2`` ids each: ids go into the newer one,
    and when it is full the older one is dropped whole and the newer one takes its place. So
    an id can be looked up while fewer than ``cap // 2`` ids have been added after it, and
    never once ``cap`` have (in between, depending on where its generation started). Labels
    are kept as interned strings: one string for a one-row request, else a tuple.

    Why not an ordered map trimmed one id at a time (the former ``OrderedDict``): under
    constant turnover a dict's table is rebuilt at the next power of two above three times
    its live ids (2**19 slots for 100,000), so it grows once more after it is full, and an
    ``OrderedDict`` adds a node per id and a pointer per slot. With each prediction held as a
    one-element object array that measured ~410 bytes an id (39 MiB RSS for 100,000 ids,
    45 MiB once the map had turned over), against ~150 bytes here (14 MiB): labels are shared
    strings, and a generation's table is built once, while it fills, and freed whole.
    """

    def __init__(self, cap: int) -> None:
        if int(cap) < 2:
            raise ConfigError(f"max_pending must be at least 2; received {cap!r}")
        self.cap = int(cap)
        self.generation = self.cap // 2
        self._new: dict[str, str | tuple[str, ...]] = {}
        self._old: dict[str, str | tuple[str, ...]] = {}

    def add(self, request_id: str, labels: Sequence[Any]) -> None:
        names = tuple(sys.intern(str(v)) for v in labels)
        if request_id in self._old:
            del self._old[request_id]  # a reused id: the latest prediction answers
        elif request_id not in self._new and len(self._new) >= self.generation:
            self._old, self._new = self._new, {}
        self._new[request_id] = names[0] if len(names) == 1 else names

    def get(self, request_id: str) -> np.ndarray | None:
        """The predicted labels of ``request_id`` (an object array of str), or None."""
        names = self._new.get(request_id)
        if names is None:
            names = self._old.get(request_id)
        if names is None:
            return None
        return np.asarray([names] if isinstance(names, str) else names, dtype=object)

    def discard(self, request_id: str) -> None:
        if self._new.pop(request_id, None) is None:
            self._old.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


class LiveMonitor:
    """Counts of recent traffic against a reference profile, in a ring of time buckets.

    Parameters:
        report: the release's gate report (``datasets[*].features``, ``profiles``).
        window_s: how far back the window reaches.
        bucket_s: the window's granularity.
        psi_threshold: a feature drifts when its PSI exceeds this.
        max_pending: predictions (request ids) kept while waiting for feedback, at most;
            feedback is accepted for at least the last ``max_pending // 2`` of them (see
            :class:`PendingPredictions`).
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
        from bastion.data.binning import ColumnEdges

        self._binned = np.array(
            [j for j, e in enumerate(self._edges) if e is not None], dtype=np.intp
        )
        self._column_edges = ColumnEdges([e for e in self._edges if e is not None])
        self._label_reference = _label_shares(profile.get(target, {})) if target else None
        self._buckets: deque[_Bucket] = deque()
        self._pending = PendingPredictions(max_pending)
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
        if len(self._binned):
            # every binned column at once: cell (j, bin) of a finite value, counted in one
            # bincount over flat indices; non-finite values are not counted
            values = X[:, self._binned]
            flat = self._column_edges.bins(values) + np.arange(len(self._binned)) * self._cells
            counts = np.bincount(
                flat[np.isfinite(values)], minlength=len(self._binned) * self._cells
            )
            cells[self._binned] = counts.reshape(len(self._binned), self._cells)
        labels = [str(p) for p in predicted]
        with self._lock:
            bucket = self._bucket()
            bucket.counts += cells
            bucket.n_rows += X.shape[0]
            for label in labels:
                bucket.labels[label] = bucket.labels.get(label, 0) + 1
            if request_id is not None:
                self._pending.add(request_id, labels)

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
                    self._pending.add(rid, labels)

    def feedback(self, request_id: str, labels: Sequence[Any]) -> int:
        """True labels for an earlier request's rows; returns how many rows were matched.

        Raises:
            DataError: unknown (or no longer held) request id, or a wrong number of labels
                (the prediction then stays waiting).
        """
        with self._lock:
            predicted = self._pending.get(request_id)
            if predicted is None:
                raise DataError(f"no prediction is waiting for feedback under id {request_id!r}")
            if len(labels) != len(predicted):
                raise DataError(
                    f"request {request_id!r} had {len(predicted)} rows; received "
                    f"{len(labels)} labels"
                )
            self._pending.discard(request_id)
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

"""Per-client model-extraction detection at serving time: PRADA plus query coverage.

What it detects
    Clients whose stream of queries looks like a model-extraction attack (MITRE ATLAS
    AML.T0024.002, "Extract ML Model"). Stealing a model through its prediction API takes many
    queries, and the cheapest ones are synthetic: a few seed rows and many small perturbations
    of them (Jacobian-based augmentation, Papernot et al. 2017; Juuti et al. 2019), or rows drawn
    from a noise distribution. Their spacing differs from the spacing of natural data.

How (PRADA, Juuti et al. 2019, "PRADA: Protecting against DNN Model Stealing Attacks")
    Per client and per predicted class ``c`` the detector keeps a growing set ``G_c`` and a
    threshold ``T_c`` (0 at first). For a query ``x`` answered ``c``:

    1. ``d = min ||x - g||_2`` over ``g`` in ``G_c``, on features divided by ``scale``; the
       first query of a class has no distance and just seeds ``G_c``.
    2. ``d`` is recorded in the class's distance window, unless it is 0: an exact repeat of
       a member teaches an attacker nothing, and recording it would flag clients that poll
       the same rows (a deviation from the paper, which has no such case).
    3. If ``d > T_c``: ``x`` joins ``G_c`` with ``d`` as its distance, and
       ``T_c = max(T_c, mean - std)`` of the distances of ``G_c``'s members.

    Every 10 queries of a client, the recorded distances of the classes holding at least 10
    values are pooled, values more than 3 standard deviations from the pool's mean dropped,
    and when more than 100 remain the Shapiro-Wilk statistic ``W`` (``scipy.stats.shapiro``)
    is computed; the client is flagged when ``W < delta`` (0.9, the authors' value). Distances
    between natural queries are close to normally distributed; a stream of seeds and tiny
    perturbations mixes many near-zero distances with a few large ones and is not.

Coverage (what PRADA misses)
    PRADA is blind to attackers who query with natural data (Orekondy et al. 2019's Knockoff
    Nets; the project's ``natural`` strategy) and to traffic split over many accounts. For the
    first, the detector reports ``coverage``: the standardised query is projected onto ``k``
    directions (the top principal components of ``reference``, else fixed random orthonormal
    directions) and each direction cut into ``bins`` quantile bins of the reference (of a
    standard normal without one), giving ``bins ** k`` cells. ``coverage`` is the share of the
    reference rows lying in cells the client has touched (without a reference, the share of
    cells). A client that serves one use case stays in a few cells; one that sweeps the data
    to copy the model covers most of them. Coverage flags only when ``coverage_limit`` is set,
    because a benign client sampling the whole population also covers it eventually: treat it
    as a signal to pair with per-client query budgets (rate limits), not as proof. Split
    traffic needs account-level controls outside this module.

Known limits (measured on scikit-learn's digits and breast-cancer sets, test halves)
    - Digits in pixel units (``scale`` ones, PRADA's image setting): 0 of 50 benign clients
      sending the test rows in random order were flagged; a T-RND attacker (10 seeds, then
      random-sign steps of 1.6 pixel units, Juuti et al.'s variant of Jacobian augmentation)
      was flagged after 110-150 queries in 20 of 20 runs.
    - Independent noise draws look normal to PRADA: the project's Gaussian
      ``SyntheticSource`` keeps W above 0.95, and 10 seeds jittered by Gaussian noise
      (``PoolSource``, jitter 0.1) were flagged in only 7 of 20 runs.
    - Skewed tabular features give skewed benign distances. On breast cancer (reference
      profile of a half split, ``random_state=0``; 50 benign clients each sending the other
      half in random order, 10 rows a request) features divided by their standard deviation
      flag 12 of 50 clients at ``delta`` 0.9 (7 of 50 after ``log1p``). With
      :class:`ReferenceScores` (the gateway's default, built from the profile, no tuning)
      none of the 50 is flagged. The price is sensitivity to attackers whose steps are
      uniform in the raw units: T-RND stepping 0.05 / 0.1 / 0.3 standard deviations per
      feature is flagged in 20 / 15 / 1 of 20 runs (20 / 20 / 12 with standard-deviation
      units), each at 110 queries; ranks stretch a step in dense regions and shrink it in
      the tails, which blurs the spike of equal distances PRADA keys on.
    - Per-feature standard deviations fail on images: on digits, 26 of 50 benign clients were
      flagged and 0 of 20 T-RND attackers (rarely-inked pixels have tiny deviations and
      dominate). :class:`ReferenceScores` keeps such level features (at most 32 distinct
      values) in their own units: 0 of 50 benign, 19 of 20 attackers, as in pixel units.
      (``benchmarks/bench_extraction_calibration.py`` prints these figures.)

Bounded state (every cap is a constructor argument)
    - ``G_c`` holds at most ``max_set`` rows; when full, a new member overwrites the oldest
      (ring buffer: the set tracks the client's recent region of input space, and ``T_c``,
      a running maximum, is kept).
    - Each class keeps its last ``window`` recorded distances (sliding window); the pooled
      sample given to Shapiro-Wilk is thinned evenly to at most ``max_test`` values.
    - A client has at most ``max_classes`` classes: the first ``max_classes - 1`` labels it
      is answered get their own, later ones share one overflow class.
    - At most ``max_clients`` clients; the least recently seen is evicted first, and clients
      idle for more than ``idle_s`` seconds are evicted on the next call. An evicted client
      starts again from nothing.

    Worst case memory: ``max_clients * max_classes * (max_set * (n_features + 1) + window)``
    floats plus ``bins ** k`` booleans per client. Per query the cost is one vectorised
    distance over at most ``max_set`` rows, plus one Shapiro-Wilk test on at most ``max_test``
    values every 10 queries: flat in the number of queries and clients.

Metrics
    ``w_statistic``: the last Shapiro-Wilk ``W`` of the client (``None`` before the first test);
    ``flagged``: sticky once raised, until :meth:`ExtractionDetector.forget`; ``flagged_at``:
    the client's query count when it was first flagged.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bastion.exceptions import ConfigError, DataError

__all__ = ["ClientStatus", "ExtractionDetector", "ReferenceScores", "StateSize"]

CHECK_EVERY = 10
MIN_CLASS_VALUES = 10
MIN_TEST_VALUES = 100
OUTLIER_SIGMAS = 3.0

_OVERFLOW = object()  # the class key shared by labels beyond max_classes
# a feature with at most this many distinct reference values (counted exactly) is a level
# (pixel intensity, rating, flag) and is measured in its own units, not by rank
MAX_LEVELS = 32


@dataclass(frozen=True)
class ClientStatus:
    """What the detector concludes about one client after its latest query.

    Attributes
    ----------
    flagged:
        True once a Shapiro-Wilk test gave ``W < delta`` or coverage reached
        ``coverage_limit`` (sticky until the client is forgotten or evicted).
    w_statistic:
        The latest Shapiro-Wilk statistic, ``None`` before the first test.
    n_queries:
        Rows this client has sent since it was (re)created.
    coverage:
        Share of the reference mass in the cells the client has touched, in [0, 1].
    flagged_at:
        ``n_queries`` when the client was first flagged, else ``None``.
    reasons:
        ``"distance-distribution"`` and/or ``"coverage"``: why it is flagged.
    """

    flagged: bool
    w_statistic: float | None
    n_queries: int
    coverage: float
    flagged_at: int | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class StateSize:
    """Elements the detector holds now (for tests, metrics and capacity planning)."""

    clients: int
    classes: int
    set_rows: int
    max_set_rows: int
    distances: int
    max_distances: int


class _ClassState:
    """``G_c`` (ring buffer), its members' distances, ``T_c`` and the distance window."""

    __slots__ = ("count", "dists", "members", "next", "recorded", "threshold")

    def __init__(self, n_features: int, window: int) -> None:
        self.members = np.empty((0, n_features))
        self.dists = np.empty(0)
        self.count = 0  # rows of members in use
        self.next = 0  # slot overwritten next once full
        self.threshold = 0.0
        self.recorded: deque[float] = deque(maxlen=window)

    def observe(self, x: np.ndarray, max_set: int) -> None:
        if self.count == 0:
            self._add(x, np.nan, max_set)  # seeds G_c; no distance to record
            return
        diff = self.members[: self.count] - x
        d = float(np.sqrt(np.min(np.einsum("ij,ij->i", diff, diff))))
        if d == 0.0:
            return  # an exact repeat of a member: no new information, and not recorded
        self.recorded.append(d)
        if d > self.threshold:
            self._add(x, d, max_set)
            member_d = self.dists[: self.count]
            member_d = member_d[np.isfinite(member_d)]
            if len(member_d):
                self.threshold = max(self.threshold, float(member_d.mean() - member_d.std()))

    def _add(self, x: np.ndarray, d: float, max_set: int) -> None:
        if self.count < max_set:
            if self.count == len(self.members):  # grow by doubling, up to max_set
                size = min(max_set, max(8, 2 * len(self.members)))
                members = np.empty((size, x.shape[0]))
                members[: self.count] = self.members[: self.count]
                dists = np.empty(size)
                dists[: self.count] = self.dists[: self.count]
                self.members, self.dists = members, dists
            slot = self.count
            self.count += 1
        else:
            slot = self.next
            self.next = (self.next + 1) % max_set
        self.members[slot] = x
        self.dists[slot] = d


class _ClientState:
    __slots__ = (
        "classes",
        "coverage",
        "flagged_at",
        "last_seen",
        "lock",
        "n_queries",
        "reasons",
        "touched",
        "w",
    )

    def __init__(self, n_cells: int, now: float) -> None:
        self.classes: dict[Hashable, _ClassState] = {}
        self.touched = np.zeros(n_cells, dtype=bool)
        self.coverage = 0.0
        self.n_queries = 0
        self.w: float | None = None
        self.flagged_at: int | None = None
        self.reasons: tuple[str, ...] = ()
        self.last_seen = now
        self.lock = threading.Lock()


class ExtractionDetector:
    """PRADA extraction detection and query coverage, per client, in bounded memory.

    Parameters
    ----------
    n_features:
        Columns of every query.
    delta:
        Flag when the Shapiro-Wilk ``W`` falls below it (0.9 in the PRADA authors' code).
    scale:
        Per-feature scale (the reference standard deviation): distances are measured on
        ``x / scale``. ``None``: the reference's standard deviation when ``reference`` is
        given without ``transform``, else ones. Zero or non-finite entries count as 1.
    reference:
        Rows of natural data (e.g. the training set) that define the coverage cells; optional.
    transform:
        Applied to every row (and to ``reference``) before ``scale``: distances and coverage
        are measured on ``transform(x) / scale``. The gateway passes
        :class:`ReferenceScores`, with ``scale`` left to ones.
    max_set:
        Rows kept per ``G_c``; the oldest member is overwritten when full.
    window:
        Recorded distances kept per class (sliding window).
    max_classes:
        Classes tracked per client; later labels share an overflow class.
    max_clients:
        Clients tracked; the least recently seen is evicted first.
    idle_s:
        Clients not seen for this many seconds are evicted.
    max_test:
        Most values given to one Shapiro-Wilk test (evenly thinned); scipy's p-values are
        unreliable above 5,000 and W needs far fewer.
    coverage_dims, coverage_bins:
        Projection directions and quantile bins per direction of the coverage grid.
    coverage_limit:
        Flag a client once its coverage reaches this share; ``None`` only reports it.
    clock:
        Seconds, monotonic; injected by tests.
    random_state:
        Seeds the random directions used for coverage when no reference is given.

    Raises
    ------
    ConfigError
        A cap is not positive, ``delta`` is outside (0, 1], or ``scale`` / ``reference`` have
        the wrong shape.

    Example::

        detector = ExtractionDetector(30, reference=X_train)
        status = detector.observe("client-42", X_batch, model.predict(X_batch))
        if status.flagged:
            ...  # throttle, alert, or require review
    """

    def __init__(
        self,
        n_features: int,
        *,
        delta: float = 0.9,
        scale: np.ndarray | None = None,
        reference: np.ndarray | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        max_set: int = 256,
        window: int = 1000,
        max_classes: int = 32,
        max_clients: int = 1024,
        idle_s: float = 3600.0,
        max_test: int = 2000,
        coverage_dims: int = 3,
        coverage_bins: int = 6,
        coverage_limit: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        random_state: int = 0,
    ) -> None:
        for name, value in (
            ("n_features", n_features),
            ("max_set", max_set),
            ("window", window),
            ("max_classes", max_classes),
            ("max_clients", max_clients),
            ("coverage_dims", coverage_dims),
            ("coverage_bins", coverage_bins),
        ):
            if int(value) < 1:
                raise ConfigError(f"{name} must be a positive integer; received {value!r}")
        if max_test <= MIN_TEST_VALUES:
            raise ConfigError(f"max_test must exceed {MIN_TEST_VALUES}; received {max_test!r}")
        if not 0.0 < delta <= 1.0:
            raise ConfigError(f"delta must be in (0, 1]; received {delta!r}")
        if not idle_s > 0:
            raise ConfigError(f"idle_s must be > 0; received {idle_s!r}")
        if coverage_limit is not None and not 0.0 < coverage_limit <= 1.0:
            raise ConfigError(f"coverage_limit must be in (0, 1]; received {coverage_limit!r}")
        self.n_features = int(n_features)
        self.delta = float(delta)
        self.max_set = int(max_set)
        self.window = int(window)
        self.max_classes = int(max_classes)
        self.max_clients = int(max_clients)
        self.idle_s = float(idle_s)
        self.max_test = int(max_test)
        self.coverage_limit = coverage_limit
        self._clock = clock
        self._transform = transform
        ref = None if reference is None else self._reference(reference)
        self._scale = self._scale_from(scale, ref)
        self._grid_setup(ref, int(coverage_dims), int(coverage_bins), random_state)
        self._clients: OrderedDict[str, _ClientState] = OrderedDict()
        self._lock = threading.Lock()

    # --- public API -------------------------------------------------------------------------

    def observe(self, client: str, x: np.ndarray, predicted: np.ndarray) -> ClientStatus:
        """Record the rows ``x`` a client sent and the labels it was answered, in order.

        Parameters
        ----------
        client:
            The client's identity (API key, account, address).
        x:
            Query rows, shape ``(rows, n_features)`` (one 1-D row is accepted).
        predicted:
            The label answered for each row, shape ``(rows,)``.

        Returns
        -------
        ClientStatus
            The client's state after these rows.

        Raises
        ------
        DataError
            ``x`` has the wrong shape or non-finite values, or ``predicted`` does not hold
            one label per row.
        """
        rows = self._rows(x)
        labels = np.asarray(predicted).reshape(-1) if np.ndim(predicted) <= 1 else None
        if labels is None or len(labels) != len(rows):
            raise DataError(
                f"predicted must hold one label per row ({len(rows)}); received shape "
                f"{np.shape(predicted)}"
            )
        z = (rows if self._transform is None else self._transform(rows)) / self._scale
        cells = self._cells(z)
        state = self._state(client)
        with state.lock:
            for i in range(len(z)):
                self._class(state, labels[i]).observe(z[i], self.max_set)
                state.n_queries += 1
                if state.n_queries % CHECK_EVERY == 0:
                    self._test(state)
            new = np.unique(cells[~state.touched[cells]])
            if len(new):
                state.touched[new] = True
                state.coverage = min(1.0, state.coverage + float(self._weights[new].sum()))
                if self.coverage_limit is not None and state.coverage >= self.coverage_limit:
                    self._flag(state, "coverage")
            return self._status(state)

    def status(self, client: str) -> ClientStatus | None:
        """The client's current status, or ``None`` if it is unknown (or was evicted)."""
        with self._lock:
            self._evict_idle(self._clock())
            state = self._clients.get(client)
        if state is None:
            return None
        with state.lock:
            return self._status(state)

    def forget(self, client: str) -> bool:
        """Drop everything held about a client; True if it was known."""
        with self._lock:
            return self._clients.pop(client, None) is not None

    def state_size(self) -> StateSize:
        """Elements held now, and the most the caps allow for the clients held."""
        with self._lock:
            states = list(self._clients.values())
        classes = set_rows = distances = 0
        for state in states:
            with state.lock:
                for cls in state.classes.values():
                    classes += 1
                    set_rows += cls.count
                    distances += len(cls.recorded)
        return StateSize(
            clients=len(states),
            classes=classes,
            set_rows=set_rows,
            max_set_rows=classes * self.max_set,
            distances=distances,
            max_distances=classes * self.window,
        )

    # --- internals --------------------------------------------------------------------------

    def _reference(self, reference: np.ndarray) -> np.ndarray:
        ref = np.asarray(reference, dtype=np.float64)
        if ref.ndim != 2 or ref.shape[1] != self.n_features or len(ref) < 2:
            raise ConfigError(
                f"reference must have shape (rows >= 2, {self.n_features}); received {ref.shape}"
            )
        if not np.isfinite(ref).all():
            raise ConfigError("reference holds NaN or infinite values")
        return ref if self._transform is None else self._transform(ref)

    def _scale_from(self, scale: np.ndarray | None, ref: np.ndarray | None) -> np.ndarray:
        if scale is None:
            use_std = ref is not None and self._transform is None
            s = ref.std(axis=0) if ref is not None and use_std else np.ones(self.n_features)
        else:
            s = np.asarray(scale, dtype=np.float64).reshape(-1)
            if s.shape != (self.n_features,):
                raise ConfigError(
                    f"scale must hold {self.n_features} values; received shape {s.shape}"
                )
        # a constant reference feature has no natural unit: leave it unscaled
        return np.where(np.isfinite(s) & (s > 1e-12), s, 1.0)

    def _grid_setup(self, ref: np.ndarray | None, dims: int, bins: int, seed: int) -> None:
        k = min(dims, self.n_features)
        if ref is not None:
            z = ref / self._scale
            self._center = z.mean(axis=0)
            # principal axes from the (features x features) covariance: cheaper than an SVD
            # of the rows, and the rows may be many
            zc = z - self._center
            _, vecs = np.linalg.eigh(zc.T @ zc)
            self._axes = vecs[:, ::-1][:, :k]
            proj = (z - self._center) @ self._axes
            qs = np.linspace(0, 1, bins + 1)[1:-1]
            self._edges = [np.quantile(proj[:, j], qs) for j in range(k)]
        else:
            from scipy.stats import norm

            rng = np.random.default_rng(seed)
            q, _ = np.linalg.qr(rng.normal(size=(self.n_features, k)))
            self._center = np.zeros(self.n_features)
            self._axes = q[:, :k]
            edges = norm.ppf(np.linspace(0, 1, bins + 1)[1:-1])
            self._edges = [edges for _ in range(k)]
        self._bins = bins
        n_cells = bins**k
        if ref is not None:
            counts = np.bincount(self._cells(ref / self._scale), minlength=n_cells)
            self._weights = counts / counts.sum()
        else:
            self._weights = np.full(n_cells, 1.0 / n_cells)

    def _cells(self, z: np.ndarray) -> np.ndarray:
        proj = (z - self._center) @ self._axes
        cell = np.zeros(len(z), dtype=np.int64)
        for j, edges in enumerate(self._edges):
            cell = cell * self._bins + np.searchsorted(edges, proj[:, j], side="right")
        return cell

    def _rows(self, x: np.ndarray) -> np.ndarray:
        try:
            rows = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"queries must be numeric; {err}") from err
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise DataError(
                f"queries must have shape (rows, {self.n_features}); received {np.shape(x)}"
            )
        if not np.isfinite(rows).all():
            raise DataError("queries hold NaN or infinite values")
        return rows

    def _state(self, client: str) -> _ClientState:
        now = self._clock()
        with self._lock:
            self._evict_idle(now)
            state = self._clients.get(client)
            if state is None:
                while len(self._clients) >= self.max_clients:
                    self._clients.popitem(last=False)  # least recently seen
                state = _ClientState(len(self._weights), now)
                self._clients[client] = state
            else:
                self._clients.move_to_end(client)
                state.last_seen = now
            return state

    def _evict_idle(self, now: float) -> None:
        # the map is in last-seen order, so idle clients sit at the front
        while self._clients:
            oldest = next(iter(self._clients.values()))
            if now - oldest.last_seen <= self.idle_s:
                break
            self._clients.popitem(last=False)

    def _class(self, state: _ClientState, label: object) -> _ClassState:
        key: Hashable = label.item() if isinstance(label, np.generic) else label
        cls = state.classes.get(key)
        if cls is None:
            # keep one slot for the overflow class so a client never holds more than the cap
            if len(state.classes) >= self.max_classes - 1:
                key = _OVERFLOW
                cls = state.classes.get(key)
            if cls is None:
                cls = _ClassState(self.n_features, self.window)
                state.classes[key] = cls
        return cls

    def _test(self, state: _ClientState) -> None:
        parts = [
            np.fromiter(c.recorded, dtype=np.float64, count=len(c.recorded))
            for c in state.classes.values()
            if len(c.recorded) >= MIN_CLASS_VALUES
        ]
        if not parts:
            return
        pooled = np.concatenate(parts)
        mean, std = pooled.mean(), pooled.std()
        if std > 0:
            pooled = pooled[np.abs(pooled - mean) <= OUTLIER_SIGMAS * std]
        if len(pooled) <= MIN_TEST_VALUES or np.ptp(pooled) == 0:
            return  # too few values, or identical ones (repeated queries): no shape to test
        if len(pooled) > self.max_test:
            pooled = pooled[np.linspace(0, len(pooled) - 1, self.max_test).astype(np.int64)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # p-value accuracy notes; only W is used
            state.w = float(_shapiro()(pooled).statistic)
        if state.w < self.delta:
            self._flag(state, "distance-distribution")

    def _flag(self, state: _ClientState, reason: str) -> None:
        if state.flagged_at is None:
            state.flagged_at = state.n_queries
        if reason not in state.reasons:
            state.reasons = (*state.reasons, reason)

    def _status(self, state: _ClientState) -> ClientStatus:
        return ClientStatus(
            flagged=state.flagged_at is not None,
            w_statistic=state.w,
            n_queries=state.n_queries,
            coverage=state.coverage,
            flagged_at=state.flagged_at,
            reasons=state.reasons,
        )


class ReferenceScores:
    """Per-feature transform that makes distances robust to skew: reference ranks as normal
    scores, built from a reference profile's summaries (no raw rows needed).

    Per feature, from its summary (:meth:`bastion.data.profile.ColumnProfile.summary`):

    - *Continuous* (numeric, more than :data:`MAX_LEVELS` distinct values): ``x`` becomes
      ``Phi^-1(F(x))``, ``F`` the reference CDF drawn piecewise linearly through the knots
      ``(min, 0)``, each histogram edge with the share of rows below it, each summary
      quantile at its level and ``(max, 1)``. A value on a knot that several levels share (a
      point mass) gets the middle of those levels (its mid-rank). ``F`` is clipped to
      ``[1 / 2n, 1 - 1 / 2n]``; beyond ``[min, max]`` the score goes on linearly in reference
      standard deviations, so a value far outside the reference stays far away.
    - *Level* (numeric, at most :data:`MAX_LEVELS` distinct values, counted exactly: pixel
      intensities, ratings, flags): kept in its own units. Ranks would make one step off a
      point mass (a pixel from 0 to 1 where 85 % of rows are 0) as long as crossing most of
      the population, and a stream of small perturbations would no longer look like one.
    - Anything else (categorical or missing in the profile): divided by its standard
      deviation when the profile has one, else kept as is.

    Cost: a handful of array operations per call, comparing each continuous value with its
    feature's knots (at most 20): about 0.05 ms for one row of 30 features.

    Parameters
    ----------
    columns:
        Column name -> summary (``reference_columns(report)``).
    features:
        The model's input columns, in order.

    Example::

        scores = ReferenceScores(reference_columns(release.report), schema.features)
        detector = ExtractionDetector(len(schema.features), transform=scores)
    """

    def __init__(self, columns: Mapping[str, Any], features: Sequence[str]) -> None:
        self.features = tuple(features)
        kinds: list[str] = []
        self._scale = np.ones(len(self.features))
        ranked: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, float]] = []
        for j, name in enumerate(self.features):
            summary = columns.get(name) or {}
            std = summary.get("std")
            if isinstance(std, int | float) and np.isfinite(std) and std > 0:
                self._scale[j] = float(std)
            knots = _knots(summary)
            if knots is None:
                kinds.append("scaled")
            elif summary.get("distinct_exact") and float(summary.get("distinct", 0)) <= MAX_LEVELS:
                kinds.append("level")
                self._scale[j] = 1.0
            else:
                kinds.append("rank")
                values, lo, hi = knots
                eps = 0.5 / max(float(summary.get("count") or 1), 1.0)
                ranked.append((j, values, lo, hi, eps))
        self.kinds: tuple[str, ...] = tuple(kinds)
        # the continuous features' knots as padded matrices (features x knots), so one call
        # is a few array operations whatever the number of features; padding repeats the last
        # knot's levels and puts +inf values, never below a query
        from scipy.special import ndtri

        width = max((len(r[1]) for r in ranked), default=1)
        self._index = np.array([r[0] for r in ranked], dtype=np.int64)
        self._n = np.array([len(r[1]) for r in ranked], dtype=np.int64)
        self._values = np.full((len(ranked), width), np.inf)
        self._lo = np.ones((len(ranked), width))
        self._hi = np.ones((len(ranked), width))
        for i, (_, values, lo, hi, _) in enumerate(ranked):
            self._values[i, : len(values)] = values
            self._lo[i, : len(values)], self._hi[i, : len(values)] = lo, hi
        self._eps = np.array([r[4] for r in ranked])
        self._z_lo, self._z_hi = ndtri(self._eps), ndtri(1.0 - self._eps)
        self._first = self._values[:, 0]
        self._last = self._values[np.arange(len(ranked)), self._n - 1]
        self._rank_std = self._scale[self._index]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The rows ``x`` (rows x features) in score units."""
        from scipy.special import ndtri

        x = np.asarray(x, dtype=np.float64)
        out = x / self._scale
        if not len(self._index):
            return out
        v = x[:, self._index]  # rows x continuous features
        rows = np.arange(len(self._index))[None, :]
        right = (v[:, :, None] > self._values[None, :, :]).sum(axis=2)  # knots below v
        at = np.minimum(right, self._n - 1)
        left = np.maximum(right - 1, 0)
        v_at, v_left = self._values[rows, at], self._values[rows, left]
        span = v_at - v_left
        frac = np.where(span > 0, (v - v_left) / np.where(span > 0, span, 1.0), 0.0)
        hi_left = self._hi[rows, left]
        p = hi_left + np.clip(frac, 0.0, 1.0) * (self._lo[rows, at] - hi_left)
        p = np.where(v_at == v, (self._lo[rows, at] + self._hi[rows, at]) / 2, p)
        z = ndtri(np.clip(p, self._eps, 1.0 - self._eps))
        z = np.where(v < self._first, self._z_lo + (v - self._first) / self._rank_std, z)
        z = np.where(v > self._last, self._z_hi + (v - self._last) / self._rank_std, z)
        out[:, self._index] = z
        return out


def _knots(summary: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A numeric summary's CDF knots: distinct values and, per value, the lowest and highest
    level seen there (equal unless it is a point mass); None without min and max."""
    if summary.get("kind") != "numeric":
        return None
    low, high = summary.get("min"), summary.get("max")
    if not isinstance(low, int | float) or not isinstance(high, int | float) or not low <= high:
        return None
    points: list[tuple[float, float]] = [(float(low), 0.0), (float(high), 1.0)]
    for level, value in (summary.get("quantiles") or {}).items():
        if isinstance(value, int | float):
            points.append((float(value), float(level)))
    hist = summary.get("histogram") or {}
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if len(counts) == len(edges) + 1 and sum(counts) > 0:
        below = np.cumsum(counts) / float(sum(counts))  # bins are [edge_i, edge_i+1)
        points += [(float(e), float(below[i])) for i, e in enumerate(edges)]
    pts = np.array([p for p in points if np.isfinite(p[0]) and low <= p[0] <= high])
    values, inverse = np.unique(pts[:, 0], return_inverse=True)
    lo = np.full(len(values), np.inf)
    hi = np.full(len(values), -np.inf)
    np.minimum.at(lo, inverse, pts[:, 1])
    np.maximum.at(hi, inverse, pts[:, 1])
    # sketch quantiles may disagree slightly with the histogram: keep the CDF monotone
    for k in range(1, len(values)):
        lo[k] = max(lo[k], hi[k - 1])
        hi[k] = max(hi[k], lo[k])
    return values, lo, hi


def _shapiro() -> Callable[[np.ndarray], Any]:
    """``scipy.stats.shapiro`` without its argument-checking wrapper when scipy exposes the
    undecorated function (``__wrapped__``): the wrapper (axis and NaN policy, signature
    inspection) costs ~90 us a call against ~10 us for the test itself, and the watch worker
    calls it every 10 queries of every client on 1-D, NaN-free samples. Same W (tested)."""
    from scipy.stats import shapiro

    inner: Callable[[np.ndarray], Any] | None = getattr(shapiro, "__wrapped__", None)
    return inner if callable(inner) else shapiro

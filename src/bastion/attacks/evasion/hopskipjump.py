"""HopSkipJump: decision-based black-box evasion (L2 and L-inf), vectorised across points.

What it does
    Needs only predicted labels. From an adversarial starting point it walks along the
    decision boundary toward the original: a binary search puts the point on the boundary,
    a Monte Carlo estimate of the boundary's normal (``init_evals * sqrt(t)`` random probes
    at iteration ``t``, at most ``max_evals``) gives a direction, and a geometric step
    (``dist / sqrt(t)``, halved until still adversarial) moves along it; a new binary search
    closes the iteration. The best (closest) adversarial found is kept per point. All
    unbroken points advance together: each stage is one batched model call.
Why it matters
    Labels are all that a hardened API may return, and tree ensembles (random forests,
    gradient boosting) have flat scores that starve score-based attacks; this attack needs
    neither scores nor gradients.
Minimal perturbations
    HopSkipJump looks for the smallest perturbation, not one within a radius: a point counts
    as a success only when its best adversarial lies within ``eps`` (measured after the
    feasibility projection) and ``predict`` confirms it. With ``early_stop`` (default) a point
    stops as soon as its best adversarial is within ``eps``. ``extra`` reports the median
    distance of every adversarial found, within ``eps`` or not.
Starting points
    First the nearest rows of ``X`` whose clean prediction differs from the point's label
    (natural, feasible inputs of another class; their labels are already paid for), made
    feasible for this point (its immutable features kept) and checked with one query each;
    then uniform draws inside the feature bounds (at most ``init_size``; where a feature is
    unbounded, within +- max(4, 2 eps) units of the original).
Constraints
    Every queried point is feasible (immutable, bounds, integers, one-hot groups); distances
    are in ``constraints.scale`` units (standard deviations for tabular data). Random probes
    never move immutable features.
Queries
    Per point: one clean prediction, the starting-point checks, binary searches, gradient
    probes and step-size checks, and one ``predict`` that verifies the success (none when
    the best point is, bit for bit, a row ``predict`` labelled adversarial during the walk,
    as a binary search's last point is; that label stands); the budget's
    ``max_queries_per_sample`` and ``max_queries`` are never exceeded (a point whose budget
    runs out keeps its best adversarial). Unbudgeted, 64 iterations cost about 35,000
    queries per point: pass a budget.
References
    Chen, Jordan, Wainwright, "HopSkipJumpAttack: a query-efficient decision-based attack",
    IEEE S&P 2020 (64 iterations, 100 initial and at most 10,000 probes per gradient
    estimate, gamma 1, geometric step size). MITRE ATLAS AML.T0015, AML.T0043.001 (black-box
    optimisation); OWASP ML01.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.attacks.base import ATTACKS, AttackConfig, EvasionAttack
from bastion.attacks.budget import Budget
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.evasion._blackbox import (
    Ledger,
    Space,
    attack_inputs,
    check_threat_model,
    clean_predictions,
    finalize,
    norms,
    predict_rows,
    within_eps,
)
from bastion.attacks.results import EvasionResult
from bastion.exceptions import RemoteDeadlineError
from bastion.models.base import Capability, ModelAdapter
from bastion.threats import (
    ATLAS_BLACK_BOX_OPTIMIZATION,
    ATLAS_CRAFT_ADVERSARIAL_DATA,
    ATLAS_EVASION,
    OWASP_INPUT_MANIPULATION,
)

__all__ = ["HopSkipJump", "HopSkipJumpConfig"]

_NEIGHBOURS = 5  # natural starting points tried per point
_RANDOM_ROUND = 10  # uniform draws per point per round
_MAX_HALVINGS = 30
# doublings of a gradient probe's size at most, for points whose probes round back to them
_MAX_WIDENINGS = 12
_MAX_BISECTIONS = 60
# the largest binary-search precision theta (relative: 7 bisections at least). The paper's
# formula exceeds it only with few mutable features (d <= 25 for L2, d <= 11 for L-inf);
# 1e-3 cost successes at d = 30 and 64 under a per-point budget (more bisection queries)
_MAX_THETA = 2.0**-7
_CHUNK_ELEMENTS = 1 << 22  # probe rows x features held in memory at once (32 MiB)


class HopSkipJumpConfig(AttackConfig):
    """HopSkipJump settings (the paper's defaults).

    Attributes:
        max_iter: boundary iterations.
        init_evals: gradient probes at the first iteration (``init_evals * sqrt(t)`` later).
        max_evals: cap on probes per gradient estimate.
        init_size: uniform draws tried per point to find a starting adversarial.
        gamma: binary-search precision (theta = gamma / d^1.5 for L2, gamma / d^2 for L-inf,
            d the mutable features; at most 2^-7).
        early_stop: stop a point once its best adversarial is within ``eps``.
        batch_rows: rows per model call.
    """

    max_iter: int = Field(default=64, ge=0)
    init_evals: int = Field(default=100, ge=2)  # the estimate needs two probes
    max_evals: int = Field(default=10_000, ge=2)  # a gradient estimate needs two probes
    init_size: int = Field(default=100, ge=0)
    gamma: float = Field(default=1.0, gt=0.0)
    early_stop: bool = True
    batch_rows: int = Field(default=65_536, ge=1)


@ATTACKS.register
class HopSkipJump(EvasionAttack):
    """HopSkipJump (decision-based black-box, L2 and L-inf); works on any adapter.

    Example::

        attack = HopSkipJump()
        result = attack.run(SklearnAdapter(forest), X, y, eps=1.0, norm="2",
                            budget=Budget(max_queries_per_sample=2_000))
        result.metrics()["attack_success_rate"], result.extra["median_min_distance"]
    """

    id = "hopskipjump"
    title = "HopSkipJump (decision-based black-box)"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    tags: ClassVar[tuple[str, ...]] = (
        ATLAS_EVASION,
        ATLAS_CRAFT_ADVERSARIAL_DATA,
        ATLAS_BLACK_BOX_OPTIMIZATION,
        OWASP_INPUT_MANIPULATION,
    )
    Config = HopSkipJumpConfig

    def run(
        self,
        model: ModelAdapter,
        X: np.ndarray,
        y: np.ndarray,
        *,
        eps: float,
        norm: Literal["inf", "2"] = "inf",
        constraints: FeatureConstraints | None = None,
        budget: Budget | None = None,
        seed: int = 0,
    ) -> EvasionResult:
        """Attack every row of ``X``; see the module docstring.

        Parameters:
            model: any adapter with ``predict``.
            X: rows ``(n, d)`` (or ``(n, c, h, w)``) in input units.
            y: true labels.
            eps: radius in ``constraints.scale`` units that decides success.
            norm: ``"inf"`` or ``"2"``.
            constraints: feasibility constraints (``None``: unconstrained, input units).
            budget: query and time limits (recommended: the default run is long).
            seed: seeds every random choice.

        Returns:
            The per-point :class:`EvasionResult`.

        Raises:
            ConfigError: bad eps / norm, constraints of another width, a budget that cannot
                pay for the clean predictions.
            DataError: ``X`` is not finite numeric rows or ``y`` has another length.
        """
        self.check_model(model)
        check_threat_model(eps, norm)
        cfg = self.options(HopSkipJumpConfig)
        started = time.perf_counter()
        x, shape, y, space = attack_inputs(X, y, constraints, model)
        budget = budget or Budget()
        ledger = Ledger(len(x), budget.max_queries_per_sample, budget)
        clean = clean_predictions(model, x, ledger, space)
        attacked = np.flatnonzero(np.asarray(clean == y))
        search = _Walk(model, space, attacked, y, clean, eps, norm, ledger, cfg, seed)
        if attacked.size and space.mutable.size:
            ledger.pending[attacked] = True
            try:
                search.run()
            except KeyboardInterrupt:
                ledger.interrupt()
            except RemoteDeadlineError:
                ledger.out_of_time()
        candidate = np.zeros(len(x), dtype=bool)
        x_cand = x.copy()
        found = np.isfinite(search.best_dist)
        candidate[attacked[found]] = True
        x_cand[attacked] = space.to_x(search.best, attacked)
        # best points predict judged during the walk need no second query (and stay
        # verified when Ctrl-C cuts the final check)
        judged = np.zeros(len(x), dtype=bool)
        judged[attacked] = search.best_known
        verdicts = np.empty(len(x), dtype=object)
        verdicts[attacked] = search.best_label
        extra = {
            "iterations": search.iterations,
            "found_adversarial": int(found.sum()),
            "median_min_distance": float(np.median(search.best_dist[found]))
            if found.any()
            else None,
            "starting_points": dict(search.starts),
            # candidates whose best point predict labelled during the walk (no final query)
            "verified_in_walk": int((judged & candidate).sum()),
        }
        return finalize(
            name=self.id,
            model=model,
            space=space,
            shape=shape,
            y=y,
            clean_pred=clean,
            candidate=candidate,
            x_candidate=x_cand,
            eps=eps,
            norm=norm,
            ledger=ledger,
            started=started,
            extra=extra,
            known=(judged, verdicts),
        )


class _Walk:
    """HopSkipJump's state for the attacked points (indices ``rows`` of X), vectorised."""

    def __init__(
        self,
        model: ModelAdapter,
        space: Space,
        rows: np.ndarray,
        y: np.ndarray,
        clean: np.ndarray,
        eps: float,
        norm: str,
        ledger: Ledger,
        cfg: HopSkipJumpConfig,
        seed: int,
    ) -> None:
        self.model, self.space, self.rows = model, space, rows
        self.y_all, self.clean_all, self.y = y, clean, y[rows]
        self.eps, self.norm, self.ledger, self.cfg = eps, norm, ledger, cfg
        self.rng = np.random.default_rng(seed)
        m, d = len(rows), space.n_features
        self.z0 = space.z0[rows]
        self.cur = self.z0.copy()
        self.has = np.zeros(m, dtype=bool)
        self.best = self.z0.copy()
        self.best_dist = np.full(m, np.inf)
        # the last row predict labelled adversarial for each point (input units) and that
        # label; a best point equal to it bit for bit is verified already (finalize's known)
        self.last_x = np.full((m, d), np.nan)
        self.last_label = np.empty(m, dtype=object)
        self.best_known = np.zeros(m, dtype=bool)
        self.best_label = np.empty(m, dtype=object)
        self.dist_post = np.zeros(m)
        self.alive = np.ones(m, dtype=bool)
        self.d_eff = max(int(space.mutable.size), 1)
        self.span = space.finite_span()  # the largest gradient probe (scaled units)
        gamma = cfg.gamma
        if norm == "2":
            theta = gamma / (self.d_eff * math.sqrt(self.d_eff))
        else:
            theta = gamma / self.d_eff**2
        # the paper's theta is sized for images (d in the thousands); with a few mutable
        # features it spans the whole search interval (1 at d = 1: no bisection at all, and
        # points breakable within eps were reported robust), so it is capped
        self.theta = min(theta, _MAX_THETA)
        # queries held back from a gradient estimate for the step and the binary search
        self.step_reserve = 1 + min(
            math.ceil(math.log2(1.0 / min(self.theta, 0.5))), _MAX_BISECTIONS
        )
        self.iterations = 0
        self.starts = {"natural": 0, "random": 0}
        self.immutable = space.fixed  # immutable features, and one-hot groups holding one

    # -- model access -----------------------------------------------------------------------
    def _adversarial(self, z: np.ndarray, idx: np.ndarray, record: bool = True) -> np.ndarray:
        """Whether each row of ``z`` (scaled, belonging to points ``idx``) is misclassified;
        ``record`` keeps each point's last adversarial row and label (not for the gradient
        probes: they never become a best point, and there are thousands of them)."""
        owners = self.rows[idx]
        x = self.space.to_x(z, owners)
        labels = predict_rows(self.model, x, owners, self.ledger, self.space, self.cfg.batch_rows)
        out: np.ndarray = np.asarray(labels != self.y[idx])
        if record:
            self.last_x[idx[out]] = x[out]
            self.last_label[idx[out]] = np.asarray(labels, dtype=object)[out]
        return out

    def _afford(self, idx: np.ndarray, cost: np.ndarray | int) -> np.ndarray:
        """The points of ``idx`` that can pay ``cost`` queries each now; points over their
        own cap leave the walk, and a short total budget stops it."""
        costs = np.broadcast_to(np.asarray(cost, dtype=np.int64), idx.shape)
        ok = self.ledger.left(self.rows[idx]) >= costs
        if not ok.all():
            # a point's own query cap ended its search: the finding must say so
            self.ledger.stopped = self.ledger.stopped or "query budget"
        self.alive[idx[~ok]] = False
        idx, costs = idx[ok], costs[ok]
        if idx.size == 0:
            return idx
        total = int(costs.sum())
        allowed = self.ledger.allow(total)
        if allowed < total:
            self.alive[:] = False  # the total budget or the clock ran out: finish now
            self.ledger.stopped = self.ledger.stopped or "query budget"
            if allowed == 0:
                return idx[:0]
            idx = idx[np.cumsum(costs) <= allowed]
        return idx

    def _distance(self, z: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return norms(z - self.z0[idx], self.norm)

    # -- the attack ---------------------------------------------------------------------------
    def run(self) -> None:
        classes = self.model.classes_
        if classes is not None and len(classes) < 2:
            return  # one class answered everywhere: no start exists, none is drawn
        self._init_natural()
        self._init_random()
        idx = np.flatnonzero(self.has)
        self.alive &= self.has
        if idx.size == 0:
            return
        self.cur[idx], self.dist_post[idx] = self._bisect(idx, self.cur[idx])
        self._keep_best(idx)
        for t in range(1, self.cfg.max_iter + 1):
            if self.cfg.early_stop:
                self.alive &= ~within_eps(self.best_dist, self.eps)
            idx = np.flatnonzero(self.alive)
            if idx.size == 0:
                break
            update = self._gradient_direction(idx, t)
            idx = idx[np.isfinite(update).all(axis=1)]
            update = update[np.isfinite(update).all(axis=1)]
            if idx.size == 0:
                break
            stepped = self._step(idx, update, t)
            self.cur[idx], self.dist_post[idx] = self._bisect(idx, stepped)
            self._keep_best(idx)
            self.iterations = t

    def _keep_best(self, idx: np.ndarray) -> None:
        dist = self._distance(self.cur[idx], idx)
        better = dist < self.best_dist[idx]
        upd = idx[better]
        # first: a Ctrl-C below leaves no verdict on a point that changed
        self.best_known[upd] = False
        # usually the binary search's last adversarial row, as predict judged it
        same = np.all(self.space.to_x(self.cur[upd], self.rows[upd]) == self.last_x[upd], axis=1)
        self.best[upd] = self.cur[upd]
        self.best_dist[upd] = dist[better]
        self.best_label[upd] = np.where(same, self.last_label[upd], None)
        self.best_known[upd] = same

    def _init_natural(self) -> None:
        """Nearest rows of X predicted as another class, made feasible for each point."""
        pool = np.arange(len(self.clean_all))
        if pool.size > 2_000:
            pool = np.sort(self.rng.choice(pool, size=2_000, replace=False))
        z_pool = self.space.z0[pool]
        labels = self.clean_all[pool]
        m = len(self.rows)
        cands = np.full((m, _NEIGHBOURS), -1, dtype=np.intp)
        for i in range(m):
            other = np.flatnonzero(labels != self.y[i])
            if other.size == 0:
                continue
            dist = norms(z_pool[other] - self.z0[i], self.norm)
            order = np.argsort(dist, kind="stable")[:_NEIGHBOURS]
            cands[i, : order.size] = pool[other[order]]
        for k in range(_NEIGHBOURS):
            idx = np.flatnonzero(~self.has & (cands[:, k] >= 0))
            idx = self._afford(idx, 1)
            if idx.size == 0:
                continue
            z = self.space.project(self.space.z0[cands[idx, k]], self.rows[idx])
            adv = self._adversarial(z, idx)
            self.cur[idx[adv]] = z[adv]
            self.has[idx[adv]] = True
            self._keep_best(idx[adv])  # a start is an adversarial too (Ctrl-C before bisecting)
            self.starts["natural"] += int(adv.sum())

    def _init_random(self) -> None:
        """Uniform draws inside the bounds; where a feature is unbounded, within the original's
        value +- 4 units, or +- 2 eps when larger (a point that only a change past 4 units
        breaks had no start, and was reported robust at such an eps)."""
        lower, upper = self.space.lower, self.space.upper
        reach = max(4.0, 2.0 * self.eps)
        draws = 0
        while draws < self.cfg.init_size:
            idx = np.flatnonzero(~self.has & self.alive)
            k = min(_RANDOM_ROUND, self.cfg.init_size - draws)
            idx = self._afford(idx, k)
            if idx.size == 0:
                return
            z0 = np.repeat(self.z0[idx], k, axis=0)
            lo = np.where(np.isfinite(lower), lower, z0 - reach)
            hi = np.where(np.isfinite(upper), upper, z0 + reach)
            z = lo + (hi - lo) * self.rng.random(z0.shape)
            owners = np.repeat(idx, k)
            z = self.space.project(z, self.rows[owners])
            adv = self._adversarial(z, owners).reshape(len(idx), k)
            first = np.argmax(adv, axis=1)
            hit = adv.any(axis=1)
            self.cur[idx[hit]] = z.reshape(len(idx), k, -1)[hit, first[hit]]
            self.has[idx[hit]] = True
            self._keep_best(idx[hit])
            self.starts["random"] += int(hit.sum())
            draws += k

    def _interpolate(self, idx: np.ndarray, pts: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        z0 = self.z0[idx]
        a = alpha[:, None]
        z = (1 - a) * z0 + a * pts if self.norm == "2" else np.clip(pts, z0 - a, z0 + a)
        out: np.ndarray = self.space.project(z, self.rows[idx])
        return out

    def _bisect(self, idx: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Binary search between the originals and adversarial ``pts``: the boundary point
        on the adversarial side, and its distance."""
        n = len(idx)
        if self.norm == "2":
            high = np.ones(n)
            threshold = np.full(n, self.theta)
        else:
            high = self._distance(pts, idx)
            threshold = np.minimum(high * self.theta, self.theta)
        low = np.zeros(n)
        going = np.ones(n, dtype=bool)
        for _ in range(_MAX_BISECTIONS):
            local = np.flatnonzero(going & ((high - low) > threshold))
            if local.size == 0:
                break
            paid = self._afford(idx[local], 1)
            if paid.size < local.size:
                kept = np.isin(idx[local], paid)
                going[local[~kept]] = False
                local = local[kept]
                if local.size == 0:
                    break
            mid = (high[local] + low[local]) / 2
            z = self._interpolate(idx[local], pts[local], mid)
            adv = self._adversarial(z, idx[local])
            high[local] = np.where(adv, mid, high[local])
            low[local] = np.where(adv, low[local], mid)
        out = self._interpolate(idx, pts, high)
        return out, self._distance(out, idx)

    def _gradient_direction(self, idx: np.ndarray, t: int) -> np.ndarray:
        """Monte Carlo estimate of the boundary normal at the current points (sign for L-inf)."""
        cfg, d = self.cfg, self.space.n_features
        if t == 1:
            delta = np.full(len(idx), 0.1 * self.span)
        elif self.norm == "2":
            delta = math.sqrt(self.d_eff) * self.theta * self.dist_post[idx]
        else:
            delta = self.d_eff * self.theta * self.dist_post[idx]
        delta = np.maximum(delta, 1e-12)
        wanted = min(int(cfg.init_evals * math.sqrt(t)), cfg.max_evals)
        # what the estimate leaves must pay for the step it serves (a check, and the binary
        # search back to the boundary): an estimate that takes a point's last queries is
        # thrown away when the point then retires unable to step
        left = self.ledger.left(self.rows[idx]) - self.step_reserve
        evals = np.minimum(wanted, left)
        usable = evals >= 2
        if not usable.all():
            self.ledger.stopped = self.ledger.stopped or "query budget"
        self.alive[idx[~usable]] = False
        grads = np.full((len(idx), d), np.nan)
        per_chunk = max(1, _CHUNK_ELEMENTS // max(wanted * d, 1))
        for start in range(0, len(idx), per_chunk):
            part = np.arange(start, min(start + per_chunk, len(idx)))
            part = part[usable[part]]
            paid = self._afford(idx[part], evals[part])
            if paid.size < part.size:
                part = part[np.isin(idx[part], paid)]
            if part.size:
                grads[part] = self._estimate(idx[part], evals[part], delta[part])
        if self.norm == "inf":
            signs: np.ndarray = np.sign(grads)
            return signs
        return grads

    def _estimate(self, idx: np.ndarray, evals: np.ndarray, delta: np.ndarray) -> np.ndarray:
        p, e, d = len(idx), int(evals.max()), self.space.n_features
        if self.norm == "2":
            rv = self.rng.standard_normal((p, e, d))
        else:
            rv = self.rng.uniform(-1.0, 1.0, size=(p, e, d))
        rv[:, :, self.immutable] = 0.0
        rv /= np.sqrt((rv**2).sum(axis=2, keepdims=True)) + 1e-12
        valid = np.arange(e)[None, :] < evals[:, None]
        owners = np.repeat(np.arange(p), evals)
        base = self.cur[idx]
        rows = self.rows[idx[owners]]
        directions = rv[valid]
        # a probe that moves no integer feature by half a unit reaches the model with those
        # features as the point's, and says nothing about them: past the first estimate,
        # delta shrinks with the distance to the boundary, and on integer rows every probe
        # was the point (the walk stalled; breakable points read robust). Before anything is
        # sent, delta doubles for the points whose probes mostly leave their integer
        # features in place, judged on those strictly inside the whole numbers to_x keeps
        # them in: one continuous feature made every probe differ (no point widened), and
        # one at a bound (a binary flag, a pixel at 0; inferred bounds add a margin, so a
        # flag at 1 sits under 1.05) moves only for the probes that point inwards, half of
        # them, which widened every point of mostly continuous data (probed too coarsely:
        # 26 of 60 broken became 21 on 10 continuous features and one flag). A one-hot
        # member is a switch, never judged
        cons = self.space.constraints
        columns = self.space.integer_mutable
        judged: np.ndarray | None = None
        if columns.size:
            here = self.space.to_x(base, self.rows[idx])[:, columns]
            lower, upper = cons.row_bounds(self.space.x0[self.rows[idx]])
            low = np.ceil(lower[:, columns] - 1e-9)
            high = np.floor(upper[:, columns] + 1e-9)
            inside = (here > low) & (here < high)
            points: np.ndarray = np.asarray(inside.any(axis=1))
            if points.any():  # else nothing to judge: no to_x of the probes
                judged = points
        for attempt in range(_MAX_WIDENINGS + 1):
            probes = base[owners] + delta[owners, None] * directions
            # relaxed, not projected: rounded toward the point, probes of delta < 0.5 unit
            # were the point itself; the model sees them rounded to the nearest (Space.relax)
            probes = self.space.relax(probes, rows)
            if judged is None or attempt == _MAX_WIDENINGS:
                break
            sent = self.space.to_x(probes, rows)[:, columns]
            moved = (sent != here[owners]) & inside[owners]
            same = ~moved.any(axis=1)
            stuck = np.bincount(owners, weights=same, minlength=p) / evals > 0.5
            stuck &= judged & (delta < self.span)
            if not stuck.any():
                break
            delta = np.where(stuck, np.minimum(2.0 * delta, self.span), delta)
        steps = (probes - base[owners]) / delta[owners, None]
        adv = self._adversarial(probes, idx[owners], record=False)
        fval = np.where(adv, 1.0, -1.0)
        mean = np.bincount(owners, weights=fval, minlength=p) / evals
        # the paper's baseline: subtract the mean decision unless every probe agreed
        centred = np.where(np.abs(mean[owners]) == 1.0, fval, fval - mean[owners])
        grad = np.zeros((p, d))
        np.add.at(grad, owners, centred[:, None] * steps)
        grad /= evals[:, None]
        length = np.sqrt((grad**2).sum(axis=1, keepdims=True))
        out: np.ndarray = np.where(length > 0, grad / np.maximum(length, 1e-300), np.nan)
        return out

    def _step(self, idx: np.ndarray, update: np.ndarray, t: int) -> np.ndarray:
        """Geometric step size: ``dist / sqrt(t)``, halved until the point stays adversarial."""
        cur = self.cur[idx]
        step = self._distance(cur, idx) / math.sqrt(t)
        out: np.ndarray = cur.copy()
        searching = np.ones(len(idx), dtype=bool)
        for _ in range(_MAX_HALVINGS):
            local = np.flatnonzero(searching)
            if local.size == 0:
                break
            paid = self._afford(idx[local], 1)
            if paid.size < local.size:
                kept = np.isin(idx[local], paid)
                searching[local[~kept]] = False
                local = local[kept]
                if local.size == 0:
                    break
            z = cur[local] + step[local, None] * update[local]
            z = self.space.project(z, self.rows[idx[local]])
            adv = self._adversarial(z, idx[local])
            out[local[adv]] = z[adv]
            searching[local[adv]] = False
            step[local[~adv]] /= 2.0
        return out

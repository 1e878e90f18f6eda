"""Where an extraction attacker's queries come from, and how fast they may be sent.

Query sources
    :class:`PoolSource` sends rows of natural data the attacker holds, in a seeded random
    order; once they are spent it sends pool rows jittered by Gaussian noise (``jitter``
    feature standard deviations) rather than paying for the same answers twice.
    :class:`SyntheticSource` draws rows from a per-feature Gaussian (the default) or uniformly
    inside each feature's bounds. Every synthetic row is projected onto the feature
    constraints (bounds, integer features, one-hot groups).

Why Gaussian and not uniform
    Measured on a breast-cancer gradient-boosting victim: rows drawn uniformly inside each
    feature's range were answered class 1 (benign) only 1-2% of the time, because benign
    tumours sit in a small corner of a 30-dimensional box; a surrogate trained on such answers
    agreed with the victim on 38-66% of real rows. A Gaussian with the features' mean and
    standard deviation lands near real data: 32% class 1, fidelity 86-98% at 100-1,000
    queries. A Gaussian centred on the middle of the box fails like the uniform one, so the
    centre must come from statistics of real data (``FeatureStats``), not from the bounds.

Rate cap
    :class:`~bastion._pacing.RateLimiter` (re-exported here) spaces requests so that neither
    ``requests_per_second`` nor ``queries_per_second`` (rows) is exceeded; a remote victim
    paces each of its HTTP attempts with it, retries included.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bastion._pacing import RateLimiter
from bastion.attacks.constraints import FeatureConstraints
from bastion.exceptions import ConfigError, DataError

__all__ = ["FeatureStats", "PoolSource", "RateLimiter", "SyntheticSource"]

Distribution = Literal["gaussian", "uniform"]


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature mean and standard deviation that synthetic queries are drawn around.

    The attacker may know them from a data sheet, a paper or a sample of real data; the gate
    check uses the training data's. Without them, :meth:`from_constraints` centres on the
    middle of each feature's bounds, which is far weaker (see the module docstring).

    Example::

        stats = FeatureStats.from_data(X_reference)
    """

    mean: np.ndarray
    std: np.ndarray
    source: str = "data"

    def __post_init__(self) -> None:
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise DataError(
                f"feature stats need 1-D mean and std of equal length; received shapes "
                f"{self.mean.shape} and {self.std.shape}"
            )
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()):
            raise DataError("feature stats hold NaN or infinite values")
        if (self.std < 0).any():
            raise DataError("feature stats: std must be >= 0")

    @classmethod
    def from_data(cls, X: np.ndarray) -> FeatureStats:
        """Mean and standard deviation (ddof 0) of each column of ``X``, ignoring NaN."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) == 0:
            raise DataError(f"feature stats need a non-empty 2-D array; received {X.shape}")
        return cls(np.nanmean(X, axis=0), np.nanstd(X, axis=0), source="data")

    @classmethod
    def from_constraints(cls, constraints: FeatureConstraints) -> FeatureStats:
        """Centre of the bounds (0 where unbounded); std a quarter of the range, else ``scale``."""
        lo, hi = constraints.lower, constraints.upper
        finite = np.isfinite(lo) & np.isfinite(hi)
        mean = np.where(finite, (np.where(finite, lo, 0) + np.where(finite, hi, 0)) / 2, 0.0)
        mean = np.where(~finite & np.isfinite(lo), lo, mean)
        mean = np.where(~finite & np.isfinite(hi), hi, mean)
        std = np.where(finite, (np.where(finite, hi - lo, 0)) / 4, constraints.scale)
        return cls(np.asarray(mean, dtype=float), np.asarray(std, dtype=float), "bounds")


def _project(rows: np.ndarray, constraints: FeatureConstraints) -> np.ndarray:
    """Made-up rows made feasible: inside the bounds first (a row is its own original, and
    :meth:`FeatureConstraints.project` widens the bounds to hold the original: a review
    found 237 of 300 synthetic queries outside them), then integers and one-hot groups,
    immutable features included."""
    inside = np.clip(rows, constraints.lower, constraints.upper)
    # immutability means nothing for a row with no original: kept, it put the raw draw back
    # into every immutable feature (and every one-hot group holding one), fractional integers
    # and broken groups included
    # (nor what the attacks hold for want of spread: a fraction stayed in such an integer
    # feature, from a review)
    movable = dataclasses.replace(
        constraints, immutable=np.zeros_like(constraints.immutable), no_spread=()
    )
    return movable.project(inside, inside)


class SyntheticSource:
    """Rows drawn from a per-feature Gaussian (``stats``) or uniformly inside the bounds."""

    def __init__(
        self,
        constraints: FeatureConstraints,
        stats: FeatureStats,
        rng: np.random.Generator,
        distribution: Distribution = "gaussian",
    ) -> None:
        if distribution == "uniform":
            unbounded = ~(np.isfinite(constraints.lower) & np.isfinite(constraints.upper))
            if unbounded.any():
                names = [n for n, u in zip(constraints.names, unbounded, strict=True) if u]
                raise ConfigError(
                    f"uniform synthetic queries need finite bounds; feature(s) {names[:5]} "
                    "have none (use the gaussian distribution)"
                )
        self.constraints = constraints
        self.stats = stats
        self.rng = rng
        self.distribution = distribution

    def draw(self, n: int) -> np.ndarray:
        """``n`` new query rows."""
        c = self.constraints
        if self.distribution == "uniform":
            rows = self.rng.uniform(c.lower, c.upper, size=(n, c.n_features))
        else:
            rows = self.rng.normal(self.stats.mean, self.stats.std, size=(n, c.n_features))
        return _project(rows, c)

    def candidates(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` candidate rows for active learning (ids are -1: nothing to mark as used)."""
        return self.draw(n), np.full(n, -1)

    def consume(self, ids: np.ndarray) -> None:
        """Nothing to do: synthetic candidates are never re-offered."""


class PoolSource:
    """The attacker's own rows in a random order, then jittered copies of them."""

    def __init__(
        self,
        pool: np.ndarray,
        constraints: FeatureConstraints,
        rng: np.random.Generator,
        jitter: float,
        std: np.ndarray,
    ) -> None:
        if len(pool) == 0:
            raise DataError("attacker_data is empty; give rows or use the synthetic strategy")
        self.pool = pool
        self.constraints = constraints
        self.rng = rng
        self.jitter = jitter
        self.std = std
        self.unused = rng.permutation(len(pool))

    @property
    def n_unused(self) -> int:
        return len(self.unused)

    def _jittered(self, n: int) -> np.ndarray:
        base = self.pool[self.rng.integers(0, len(self.pool), size=n)]
        noise = self.rng.normal(0.0, 1.0, size=base.shape) * (self.jitter * self.std)
        return _project(base + noise, self.constraints)

    def draw(self, n: int) -> np.ndarray:
        """The next ``n`` rows: unused pool rows first, jittered ones after."""
        take, self.unused = self.unused[:n], self.unused[n:]
        rows = self.pool[take]
        if len(rows) < n:
            rows = np.vstack([rows, self._jittered(n - len(rows))])
        return rows

    def candidates(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` unused pool rows (ids = pool indices), or jittered rows (ids -1)."""
        if self.n_unused:
            pick = self.unused[: min(n, self.n_unused)]
            return self.pool[pick], pick
        return self._jittered(n), np.full(n, -1)

    def consume(self, ids: np.ndarray) -> None:
        """Mark pool rows as sent so they are not offered again."""
        used = ids[ids >= 0]
        if used.size:
            self.unused = self.unused[~np.isin(self.unused, used)]

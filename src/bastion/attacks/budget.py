"""Query and wall-time budgets that every attack enforces (the controlled environment).

A budget is checked before each model call: an attack asks :meth:`BudgetTracker.allow` how
many more queries it may spend and stops cleanly, keeping its best results so far, when the
answer is zero or time is up. Interrupting a long attack (Ctrl-C) stops it the same way, so a
partial report is still written.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bastion.exceptions import ConfigError

__all__ = ["Budget", "BudgetTracker"]


@dataclass(frozen=True)
class Budget:
    """Limits for one attack run: model queries (rows sent) and wall-clock seconds.

    ``None`` means unlimited. ``max_queries_per_sample`` caps each attacked point separately
    (black-box attacks report per-sample query counts against it).
    """

    max_queries: int | None = None
    max_queries_per_sample: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_queries", "max_queries_per_sample"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"budget {name} must be >= 1 or None; received {value}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(
                f"budget max_seconds must be > 0 or None; received {self.max_seconds}"
            )


class BudgetTracker:
    """Counts what an attack spends and says when it must stop.

    Example::

        tracker = BudgetTracker(Budget(max_queries=10_000, max_seconds=60))
        while tracker.allow(len(batch)):
            scores = model.predict_proba(batch)
            tracker.spend(len(batch))
        tracker.exhausted_reason   # "query budget" / "time budget" / None
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.queries = 0
        self.started = time.perf_counter()
        self.exhausted_reason: str | None = None
        self.interrupted = False

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def remaining_queries(self) -> float:
        if self.budget.max_queries is None:
            return math.inf
        return max(0, self.budget.max_queries - self.queries)

    def allow(self, wanted: int = 1) -> int:
        """How many of ``wanted`` queries may be spent now (0 means stop)."""
        if self.interrupted:
            return 0
        if self.budget.max_seconds is not None and self.elapsed_s >= self.budget.max_seconds:
            self.exhausted_reason = "time budget"
            return 0
        left = self.remaining_queries()
        if left <= 0:
            self.exhausted_reason = "query budget"
            return 0
        return int(min(wanted, left))

    def spend(self, queries: int) -> None:
        self.queries += int(queries)

    def interrupt(self) -> None:
        """Called on Ctrl-C: the attack stops at its next check and returns what it has."""
        self.interrupted = True
        self.exhausted_reason = "interrupted"

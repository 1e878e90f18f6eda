"""Query and wall-time budgets that every attack enforces (the controlled environment).

A budget is checked before each model call: an attack asks :meth:`BudgetTracker.allow` how
many more queries it may spend and stops cleanly, keeping its best results so far, when the
answer is zero or time is up. Interrupting a long attack (Ctrl-C) stops it the same way, so a
partial report is still written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from bastion._deadline import request_deadline, stop_at_deadline, wall_deadline
from bastion.exceptions import ConfigError

__all__ = [
    "Budget",
    "BudgetTracker",
    "interrupt_count",
    "note_interrupt",
    "report_progress",
    "report_stage",
    "request_deadline",
    "stop_at_deadline",
    "wall_deadline",
]

# Ctrl-C presses that attacks caught and stopped on (see interrupt_count)
_INTERRUPTS = 0
# where a long attack tells its progress (the CLI's progress bar); None: nobody listens
_REPORTER: ContextVar[Callable[[str], None] | None] = ContextVar(
    "bastion_attack_progress", default=None
)
_REPORT_EVERY_S = 0.25


@contextmanager
def report_progress(callback: Callable[[str], None]) -> Iterator[None]:
    """Send every budgeted attack's progress (queries spent, time) to ``callback`` meanwhile.

    Example::

        with report_progress(lambda text: print(text)):
            result = Square().run(model, X, y, eps=0.5)
    """
    token = _REPORTER.set(callback)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def report_stage(text: str) -> None:
    """Tell whoever listens (:func:`report_progress`: the CLI's progress bar) what a long
    piece of work that spends no queries is doing now, e.g. ``retraining on the poisoned
    data`` or ``shadow model 3 of 8``; nothing happens when nobody listens."""
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter(text)


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
        self._reported_at = 0.0

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def remaining_queries(self) -> float:
        if self.budget.max_queries is None:
            return math.inf
        return max(0, self.budget.max_queries - self.queries)

    def seconds_left(self) -> float | None:
        """Wall time left (None: no time budget)."""
        if self.budget.max_seconds is None:
            return None
        return max(0.0, self.budget.max_seconds - self.elapsed_s)

    def out_of_time(self) -> bool:
        """Whether the time budget is spent (work that costs time, not queries, asks this:
        surrogate or shadow training); says so in ``exhausted_reason``."""
        left = self.seconds_left()
        if left is None or left > 0:
            return False
        self.exhausted_reason = self.exhausted_reason or "time budget"
        return True

    def allow(self, wanted: int = 1) -> int:
        """How many of ``wanted`` queries may be spent now (0 means stop)."""
        if self.interrupted:
            return 0
        if self.out_of_time():
            self.exhausted_reason = "time budget"
            return 0
        left = self.remaining_queries()
        if left <= 0:
            self.exhausted_reason = "query budget"
            return 0
        return int(min(wanted, left))

    def spend(self, queries: int) -> None:
        self.queries += int(queries)
        reporter = _REPORTER.get()
        if reporter is not None:
            now = time.perf_counter()
            if now - self._reported_at >= _REPORT_EVERY_S:
                self._reported_at = now
                reporter(self.describe())

    def describe(self) -> str:
        """``12,345 of 200,000 queries, 14 s of 120 s``: what a progress line shows."""
        b = self.budget
        text = f"{self.queries:,}" + (f" of {b.max_queries:,}" if b.max_queries else "")
        text += f" queries, {self.elapsed_s:.0f} s"
        return text + (f" of {b.max_seconds:.0f} s" if b.max_seconds else "")

    def interrupt(self) -> None:
        """Called on Ctrl-C: the attack stops at its next check and returns what it has (the
        caller that ran it sees the Ctrl-C in :func:`interrupt_count`)."""
        self.interrupted = True
        self.exhausted_reason = "interrupted"
        note_interrupt()


def note_interrupt() -> None:
    """Count a Ctrl-C that an attack (or an ensemble of them) caught and stopped on, so that
    the caller that ran it sees it in :func:`interrupt_count`."""
    global _INTERRUPTS
    _INTERRUPTS += 1


def interrupt_count() -> int:
    """How many attacks Ctrl-C has stopped in this process: a runner compares it before and
    after a check, since an attack that stops cleanly on Ctrl-C swallows the interrupt."""
    return _INTERRUPTS

"""How long model requests may keep retrying: a deadline set by whoever budgets the time.

A check's attack stops at its wall-time budget between queries; a remote endpoint that fails
could hold one request, with its retries, for ``retries + 1`` timeouts plus the waits
between them (41 s with the defaults). :func:`wall_deadline` sets a deadline for the requests
made in its block (the runner opens one per attack check, from the check's ``max_seconds``,
and every attack's ``run`` one from its ``budget.max_seconds``);
:class:`~bastion.models.remote.RemoteAdapter` runs no retry past it. A module of its own,
importing nothing heavy: the models read it and :mod:`bastion.attacks.budget` re-exports it.

Work that sends no queries (a detector's cross-validation, its clustering) cannot be bounded
by a query loop: it asks :func:`stop_at_deadline` between its stages, which raises once the
deadline has passed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from bastion.exceptions import TimeBudgetError

__all__ = ["request_deadline", "stop_at_deadline", "wall_deadline"]

# when model requests must give up waiting (time.monotonic()); None: no limit
_DEADLINE: ContextVar[float | None] = ContextVar("bastion_request_deadline", default=None)


@contextmanager
def wall_deadline(seconds: float | None) -> Iterator[None]:
    """Model requests made in the block (a remote endpoint's) start no retry, wait for none
    and let none run past ``seconds`` from now (a retry's timeout is cut there): a check's
    wall-time budget holds even while an endpoint fails (a request and its retries could
    take ``retries + 1`` timeouts plus the waits, 41 s with the defaults, past the budget).
    A request's first attempt always runs, with its own timeout: the attacks' verification
    queries, reserved by their budgets, still reach the model when the time is up. Nested
    blocks keep the earlier deadline. None: no limit.

    Example::

        with wall_deadline(60):
            result = Square().run(remote_model, X, y, eps=0.5)
    """
    if seconds is None:
        yield
        return
    deadline = time.monotonic() + float(seconds)
    outer = _DEADLINE.get()
    token = _DEADLINE.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def request_deadline() -> float | None:
    """The deadline (``time.monotonic()``) of the innermost :func:`wall_deadline` block, if
    any: where a model's retries stop."""
    return _DEADLINE.get()


def stop_at_deadline(stage: str) -> None:
    """Raise :class:`~bastion.exceptions.TimeBudgetError` naming ``stage`` (what was about to
    start) when the innermost :func:`wall_deadline` has passed; nothing happens without one.

    Example::

        for k, fold in enumerate(folds, start=1):
            stop_at_deadline(f"cross-validation fold {k} of {len(folds)}")
            ...
    """
    deadline = _DEADLINE.get()
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeBudgetError(f"the wall-time budget ran out before {stage}")

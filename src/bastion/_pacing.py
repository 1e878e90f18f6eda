"""Pacing of requests under a cap on requests and on rows per second.

One :class:`RateLimiter` spaces the requests of whoever shares it: an extraction attack
(``requests_per_second`` / ``queries_per_second`` in its config), and a remote model's own
cap (``RemoteEndpoint.requests_per_second`` / ``queries_per_second``), which paces every HTTP
attempt it sends, retries and 429 re-sends included, whichever check asked. Each request is
spaced from the one before it: after a request of ``q`` rows at time ``t``, the next goes
no earlier than ``t + 1 / requests_per_second`` nor ``t + q / queries_per_second``. Time
spent elsewhere (a slow answer, a surrogate's fit) earns no credit.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence

from bastion.exceptions import ConfigError

__all__ = ["RateLimiter", "wait_for_all"]


class RateLimiter:
    """Space requests to respect a cap on requests and on rows per second (see module doc).

    Example::

        limiter = RateLimiter(requests_per_second=5)
        for batch in batches:
            limiter.wait(len(batch))
            model.predict(batch)
    """

    def __init__(
        self,
        requests_per_second: float | None = None,
        queries_per_second: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for name, value in (
            ("requests_per_second", requests_per_second),
            ("queries_per_second", queries_per_second),
        ):
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0 or None; received {value}")
        self.requests_per_second = requests_per_second
        self.queries_per_second = queries_per_second
        self._clock = clock
        self._sleep = sleep
        # when the next request may go, by each cap: spaced from the previous request, so that
        # time the attack spent elsewhere (a slow answer, a surrogate's fit) earns no credit
        # (spaced from the first request, a 10 s stall let 8 requests go at once at 1/s)
        self._due_request = -math.inf
        self._due_rows = -math.inf
        # held from the look at the caps to the record: two threads that shared an adapter
        # both read "no wait" and sent at once, two requests under a cap of one
        self._turn = threading.Lock()
        self.requests = 0
        self.rows = 0
        self.slept_s = 0.0

    def delay(self) -> float:
        """Seconds to wait before the next request may go (0 when it may go now)."""
        due = max(self._due_request, self._due_rows)
        if due == -math.inf:
            return 0.0
        return max(0.0, due - self._clock())

    def wait(self, rows: int) -> None:
        """Sleep as long as the caps require, then record a request of ``rows`` rows."""
        wait_for_all((self,), rows)

    def record(self, rows: int, slept_s: float = 0.0) -> None:
        """Record a request of ``rows`` rows sent now, after ``slept_s`` seconds of waiting."""
        now = self._clock()
        if self.requests_per_second is not None:
            self._due_request = now + 1.0 / self.requests_per_second
        if self.queries_per_second is not None:
            self._due_rows = now + int(rows) / self.queries_per_second
        self.requests += 1
        self.rows += int(rows)
        self.slept_s += slept_s


def wait_for_all(limiters: Sequence[RateLimiter], rows: int) -> None:
    """One request under several caps (an endpoint's own and an attack's): one sleep, as
    long as the furthest cap requires, then every limiter records the request at the moment
    it goes, with that sleep. Waiting for each in turn let the first record a send time
    earlier than the real one, and its next request go early (two requests 10 ms apart at
    a cap of 5 a second); the second reported only the rest of the wait."""
    if not limiters:
        return
    # one at a time through every cap: each limiter's turn, taken in one global order (by
    # id) so that two callers holding the same caps in other orders cannot deadlock; the
    # sleep happens inside the turn, as the next request must wait for this one anyway
    held = sorted({id(limiter): limiter for limiter in limiters}.values(), key=id)
    with contextlib.ExitStack() as turns:
        for limiter in held:
            turns.enter_context(limiter._turn)
        pause = max(limiter.delay() for limiter in limiters)
        if pause > 0:
            limiters[0]._sleep(pause)
        for limiter in held:
            limiter.record(rows, pause)

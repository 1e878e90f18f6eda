"""The request pacer shared by extraction attacks and remote models (:mod:`bastion._pacing`)."""

from __future__ import annotations

import threading
import time

from bastion._pacing import RateLimiter, wait_for_all


class _Stamped(RateLimiter):
    """Records when each request was let through (inside the pacer's turn)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[float] = []

    def record(self, rows: int, slept_s: float = 0.0) -> None:
        self.sent.append(time.monotonic())
        super().record(rows, slept_s)


def _race(limiters: list[list[RateLimiter]], per_thread: int) -> None:
    start = threading.Barrier(len(limiters))

    def worker(caps: list[RateLimiter]) -> None:
        start.wait()
        for _ in range(per_thread):
            wait_for_all(caps, 1)

    threads = [threading.Thread(target=worker, args=(caps,)) for caps in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a pacer deadlocked"


def test_threads_sharing_a_cap_are_spaced_by_it() -> None:
    # before the pacer took turns, the threads released together all read "no wait" and
    # sent at once: four requests within a millisecond under a cap of 25 a second
    cap = _Stamped(requests_per_second=25)
    _race([[cap]] * 4, per_thread=3)
    gaps = [b - a for a, b in zip(cap.sent, cap.sent[1:], strict=False)]
    assert len(cap.sent) == cap.requests == 12
    assert min(gaps) >= 1 / 25 - 0.004, gaps


def test_shared_caps_taken_in_any_order_do_not_deadlock() -> None:
    # an endpoint's own cap and an attack's, listed in opposite orders by two callers
    own = _Stamped(requests_per_second=200)
    attack = _Stamped(queries_per_second=2_000)
    _race([[own, attack], [attack, own]], per_thread=10)
    assert own.requests == attack.requests == 20
    gaps = [b - a for a, b in zip(own.sent, own.sent[1:], strict=False)]
    assert min(gaps) >= 1 / 200 - 0.002, gaps


def test_one_limiter_listed_twice_records_one_request() -> None:
    cap = RateLimiter(requests_per_second=1_000)
    wait_for_all([cap, cap], 5)
    assert (cap.requests, cap.rows) == (1, 5)

"""Token-bucket rate limits: bucket math, bounds, threads, X-Forwarded-For, and real Redis."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bastion.exceptions import ConfigError
from bastion.gateway.guards.rate_limit import (
    InMemoryLimiter,
    Limiter,
    RateLimit,
    RateLimiterUnavailableError,
    RedisLimiter,
    client_address,
    limiter_from_env,
)

REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL")
# A port nothing listens on: connecting is refused at once (a real failure, not a mock).
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- bucket math (in-memory backend, fake clock) -------------------------------------------


def test_burst_then_refused_with_exact_retry_after() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(RateLimit(rate_per_s=4.0, burst=3), clock=clock)
    decisions = [limiter.hit("a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2.0, 1.0, 0.0]
    assert decisions[3].retry_after_s == pytest.approx(0.25)
    clock.advance(0.2)
    refused = limiter.hit("a")
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(0.05)
    clock.advance(0.05)
    assert limiter.hit("a").allowed
    assert limiter.hit("b").allowed  # keys are independent


def test_steady_rate_after_burst() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(RateLimit(rate_per_s=5.0, burst=10), clock=clock)
    allowed = 0
    for _ in range(1000):  # 100 requests per second for 10 s
        allowed += limiter.hit("k").allowed
        clock.advance(0.01)
    # burst + rate * elapsed, elapsed = 999 * 0.01 s; the last fractional token is unspent.
    assert allowed == 10 + math.floor(5.0 * 9.99)


def test_bucket_never_exceeds_burst() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(RateLimit(rate_per_s=100.0, burst=2), clock=clock)
    limiter.hit("k")
    clock.advance(3600)
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]


def test_fractional_costs() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(RateLimit(rate_per_s=1.0, burst=1), clock=clock)
    assert [limiter.hit("k", cost=0.1).allowed for _ in range(11)] == [True] * 10 + [False]
    clock.advance(0.25)
    assert limiter.hit("k", cost=0.2).allowed
    d = limiter.hit("k", cost=0.1)
    assert not d.allowed
    assert d.remaining == pytest.approx(0.05)
    assert d.retry_after_s == pytest.approx(0.05)
    heavy = InMemoryLimiter(RateLimit(rate_per_s=2.0, burst=4), clock=clock)
    assert heavy.hit("k", cost=2.5).allowed
    refused = heavy.hit("k", cost=2.5)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(0.5)


@pytest.mark.parametrize("cost", [0, -1.0, 5.0, math.nan, math.inf])
def test_cost_outside_zero_to_burst_is_a_config_error(cost: float) -> None:
    limiter = InMemoryLimiter(RateLimit(rate_per_s=1.0, burst=4))
    with pytest.raises(ConfigError, match="cost"):
        limiter.hit("k", cost=cost)


@pytest.mark.parametrize(
    ("rate", "burst", "match"),
    [
        (0.0, 1, "rate_per_s"),
        (-1.0, 1, "rate_per_s"),
        (math.inf, 1, "rate_per_s"),
        (1.0, 0, "burst"),
        (1.0, 2.5, "burst"),
        (1.0, True, "burst"),
    ],
)
def test_rate_limit_validates(rate: float, burst: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RateLimit(rate_per_s=rate, burst=burst)


def test_retry_after_is_accurate_on_the_real_clock() -> None:
    limiter = InMemoryLimiter(RateLimit(rate_per_s=20.0, burst=1))
    assert limiter.hit("k").allowed
    refused = limiter.hit("k")
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(0.05, abs=0.01)
    time.sleep(refused.retry_after_s + 0.005)
    assert limiter.hit("k").allowed


# --- memory bounds --------------------------------------------------------------------------


def test_key_cap_holds_and_drops_least_recently_used() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(RateLimit(rate_per_s=0.001, burst=1), max_keys=100, clock=clock)
    assert limiter.hit("keep").allowed
    for i in range(1000):
        limiter.hit(f"spray-{i}")
        if i % 10 == 0:
            assert not limiter.hit("keep").allowed  # recently used: its empty bucket stays
        assert len(limiter) <= 100
    assert len(limiter) == 100
    assert not limiter.hit("keep").allowed
    assert limiter.hit("spray-0").allowed  # long evicted: starts with a full bucket again


def test_idle_buckets_are_dropped_once_full_again() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(RateLimit(rate_per_s=2.0, burst=4), clock=clock)  # refill 2 s
    for i in range(50):
        limiter.hit(f"old-{i}")
    clock.advance(1.0)
    limiter.hit("fresh")
    assert len(limiter) == 51  # not yet full: kept, they still limit
    clock.advance(1.0)
    limiter.hit("fresh")
    assert len(limiter) == 1  # the 50 idle buckets are full again: forgotten


def test_max_keys_validated() -> None:
    with pytest.raises(ConfigError, match="max_keys"):
        InMemoryLimiter(RateLimit(1.0, 1), max_keys=0)


# --- threads --------------------------------------------------------------------------------


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    # Switch threads as often as possible so an unlocked read-modify-write would race.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


@pytest.mark.usefixtures("tiny_switch_interval")
def test_threads_get_exactly_burst_between_them() -> None:
    clock = FakeClock()  # frozen: no refill, so exactly `burst` hits may pass
    limiter = InMemoryLimiter(RateLimit(rate_per_s=1.0, burst=1000), clock=clock)
    counts = [0] * 16
    start = threading.Barrier(len(counts))

    def worker(i: int) -> None:
        start.wait()
        for _ in range(250):
            counts[i] += limiter.hit("shared").allowed
            limiter.hit(f"own-{i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(counts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 1000
    assert len(limiter) == 17


# --- client address behind proxies ----------------------------------------------------------

TRUSTED = ["10.0.0.0/8", "192.168.1.5", "fd00::/8"]


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        # No proxy in front, or an untrusted peer: its header is ignored (spoofing).
        ("203.0.113.7", None, "203.0.113.7"),
        ("203.0.113.7", "1.1.1.1", "203.0.113.7"),
        ("203.0.113.7", "10.0.0.1", "203.0.113.7"),
        # One trusted proxy: the hop it wrote is the client.
        ("10.0.0.2", "203.0.113.7", "203.0.113.7"),
        # The client prepends forged hops: only the right-most untrusted hop counts.
        ("10.0.0.2", "1.1.1.1, 2.2.2.2, 203.0.113.7", "203.0.113.7"),
        # A chain of trusted proxies, with several headers joined and odd spacing.
        ("10.0.0.2", "6.6.6.6,203.0.113.7 , 192.168.1.5,10.1.2.3", "203.0.113.7"),
        # A forged "trusted" hop on the left is still passed over by the untrusted one.
        ("10.0.0.2", "10.9.9.9, 203.0.113.7, 10.0.0.3", "203.0.113.7"),
        # Every hop trusted: the left-most one.
        ("10.0.0.2", "10.0.0.9, 10.0.0.3", "10.0.0.9"),
        # Trusted peer, no header: the peer itself.
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "", "10.0.0.2"),
        # Garbage written by a trusted proxy stops at that proxy.
        ("10.0.0.2", "203.0.113.7, unknown", "10.0.0.2"),
        ("10.0.0.2", "203.0.113.7, unknown, 10.0.0.3", "10.0.0.3"),
        # Ports, IPv6, and IPv4-mapped IPv6 peers.
        ("10.0.0.2", "203.0.113.7:5555", "203.0.113.7"),
        ("fd00::1", "[2001:DB8::1]:443, fd00::2", "2001:db8::1"),
        ("::ffff:10.0.0.2", "203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "1.1.1.1", "203.0.113.7"),
        # Not an IP peer (e.g. a Unix socket): returned as is.
        ("unix:/run/bastion.sock", "1.1.1.1", "unix:/run/bastion.sock"),
    ],
)
def test_client_address(peer: str, xff: str | None, expected: str) -> None:
    assert client_address(peer, xff, TRUSTED) == expected


def test_client_address_without_trusted_proxies_ignores_the_header() -> None:
    assert client_address("10.0.0.2", "203.0.113.7", []) == "10.0.0.2"


def test_client_address_rejects_bad_cidr() -> None:
    with pytest.raises(ConfigError, match="trusted proxies"):
        client_address("10.0.0.2", "1.1.1.1", ["10.0.0.0/33"])


# --- choosing a backend ---------------------------------------------------------------------


def test_limiter_from_env_defaults_to_memory() -> None:
    limiter = limiter_from_env(5.0, 10, environ={})
    assert isinstance(limiter, InMemoryLimiter)
    assert limiter.limit == RateLimit(5.0, 10)
    overridden = limiter_from_env(5.0, 10, environ={"BASTION_RATE_LIMIT_PER_S": "2.5"})
    assert overridden.limit == RateLimit(2.5, 10)
    with pytest.raises(ConfigError, match="BASTION_RATE_LIMIT_PER_S"):
        limiter_from_env(5.0, 10, environ={"BASTION_RATE_LIMIT_PER_S": "fast"})


def test_unreachable_redis_fails_closed() -> None:
    pytest.importorskip("redis")
    with pytest.raises(RateLimiterUnavailableError, match="cannot reach Redis"):
        limiter_from_env(5.0, 10, environ={"BASTION_REDIS_URL": DEAD_REDIS_URL})
    limiter = RedisLimiter.from_url(DEAD_REDIS_URL, RateLimit(5.0, 10))
    with pytest.raises(RateLimiterUnavailableError, match="fail closed"):
        limiter.hit("k")
    with pytest.raises(ConfigError, match="BASTION_REDIS_URL"):
        limiter_from_env(5.0, 10, environ={"BASTION_REDIS_URL": "http://not-redis"})


# --- real Redis -----------------------------------------------------------------------------

needs_redis = pytest.mark.skipif(not REDIS_URL, reason="BASTION_TEST_REDIS_URL is not set")


@pytest.mark.redis
@needs_redis
def test_redis_bucket_math_and_expiry(redis_prefix: str) -> None:
    assert REDIS_URL is not None
    limit = RateLimit(rate_per_s=10.0, burst=3)
    limiter = limiter_from_env(
        1.0, 3, environ={"BASTION_REDIS_URL": REDIS_URL, "BASTION_RATE_LIMIT_PER_S": "10"}
    )
    assert isinstance(limiter, RedisLimiter)
    assert limiter.limit == limit
    limiter = RedisLimiter.from_url(REDIS_URL, limit, prefix=redis_prefix)
    decisions = [limiter.hit("a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[0].remaining == pytest.approx(2.0, abs=0.05)
    assert decisions[3].retry_after_s == pytest.approx(0.1, abs=0.02)
    time.sleep(decisions[3].retry_after_s + 0.005)
    assert limiter.hit("a").allowed
    # fractional cost, and a refusal that names the shortfall
    half = [limiter.hit("b", cost=1.5) for _ in range(3)]
    assert [d.allowed for d in half] == [True, True, False]
    assert half[2].retry_after_s == pytest.approx(0.15, abs=0.02)
    # the key lives only until the bucket would be full again (refill 0.3 s + 1 s margin)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    ttl_ms = client.pttl(redis_prefix + "a")
    client.close()
    assert 0 < ttl_ms <= 1300


@pytest.mark.redis
@needs_redis
def test_the_redis_key_prefix_comes_from_the_environment(redis_prefix: str) -> None:
    assert REDIS_URL is not None
    redis = pytest.importorskip("redis")

    def from_env(prefix: str) -> Limiter:
        env = {"BASTION_REDIS_URL": REDIS_URL or "", "BASTION_REDIS_PREFIX": prefix}
        return limiter_from_env(1.0, 2, environ=env)

    one, two = from_env(redis_prefix + "a:"), from_env(redis_prefix + "a:")
    other = from_env(redis_prefix + "b:")
    # one prefix, one deployment: burst 2 between the two limiters
    assert [limiter.hit("k").allowed for limiter in (one, two, one)] == [True, True, False]
    assert other.hit("k").allowed  # another prefix, another deployment: its own bucket
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(match=redis_prefix + "*"))
    finally:
        client.close()
    assert keys == [redis_prefix + "a:k", redis_prefix + "b:k"]


_HAMMER = textwrap.dedent(
    """
    import sys, time
    from bastion.gateway.guards.rate_limit import RateLimit, RedisLimiter

    url, prefix, rate, burst, duration = sys.argv[1:6]
    limiter = RedisLimiter.from_url(url, RateLimit(float(rate), int(burst)), prefix=prefix)
    limiter.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    allowed = hits = 0
    first = time.time()
    deadline = first + float(duration)
    while time.time() < deadline:
        allowed += limiter.hit("shared").allowed
        hits += 1
    print(allowed, hits, first, time.time(), flush=True)
    """
)


@pytest.mark.redis
@needs_redis
def test_two_processes_share_one_limit(redis_prefix: str) -> None:
    assert REDIS_URL is not None
    rate, burst, duration = 40.0, 20, 1.5
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _HAMMER,
                REDIS_URL,
                redis_prefix,
                str(rate),
                str(burst),
                str(duration),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=30)[0].split() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs)
    allowed = [int(r[0]) for r in results]
    hits = [int(r[1]) for r in results]
    elapsed = max(float(r[3]) for r in results) - min(float(r[2]) for r in results)
    expected = burst + rate * elapsed
    # Both processes really hammered (far more hits than the limit lets through) ...
    assert min(hits) > 2 * expected
    # ... and together got one limit's worth, not two (which would be ~2 * expected).
    assert sum(allowed) == pytest.approx(expected, abs=0.1 * expected)


def test_backends_satisfy_the_protocol() -> None:
    limiters: list[Limiter] = [InMemoryLimiter(RateLimit(1.0, 1))]
    assert all(isinstance(lim.limit, RateLimit) for lim in limiters)

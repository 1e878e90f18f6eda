"""Token-bucket rate limits per client, in-process or shared by gateway replicas through Redis.

What it guards against: a client that sends requests faster than the model should answer
them, whether to exhaust the server (denial of service) or to harvest predictions in bulk
(model extraction and membership inference need many queries; MITRE ATLAS AML.T0024,
AML.T0029, AML.M0004 "Restrict Number of ML Model Queries").

How: each key (a client address, a token digest) owns a bucket of at most ``burst`` tokens
that refills at ``rate_per_s`` tokens per second. A request of cost ``c`` passes when the
bucket holds at least ``c`` tokens and takes them; otherwise it is refused and
``retry_after_s = (c - tokens) / rate_per_s`` says when it would pass. Over any window of
``T`` seconds a key gets at most ``burst + rate_per_s * T`` tokens' worth of requests.

Two interchangeable backends implement the :class:`Limiter` protocol:

- :class:`InMemoryLimiter`: one process; a thread-safe, bounded dict of buckets.
- :class:`RedisLimiter`: shared by every process that talks to the same Redis; one Lua
  script refills and takes atomically, timed by the Redis server's clock (``TIME``) so that
  replicas with skewed clocks still agree on one limit.

:func:`limiter_from_env` picks Redis when ``BASTION_REDIS_URL`` is set, its keys under
``BASTION_REDIS_PREFIX`` (default ``bastion:ratelimit:``) so that separate deployments, or test
runs, can share one Redis without sharing buckets. When Redis cannot be
reached the limiter raises :class:`RateLimiterUnavailableError` instead of answering: the
gateway fails *closed* (HTTP 503) because a limiter that silently lets everything through
when its store is down is exactly the gap an attacker would aim for.

:func:`client_address` finds the address to key on behind reverse proxies: it believes
``X-Forwarded-For`` only as far as the hops are trusted proxies, so a client cannot spoof
its way into someone else's bucket (or a fresh one) with a forged header.
"""

from __future__ import annotations

import ipaddress
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from bastion._optional import require
from bastion.exceptions import ConfigError, RateLimiterUnavailableError

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "RATE_ENV",
    "REDIS_PREFIX_ENV",
    "REDIS_URL_ENV",
    "Decision",
    "InMemoryLimiter",
    "Limiter",
    "RateLimit",
    "RateLimiterUnavailableError",
    "RedisLimiter",
    "client_address",
    "enforce",
    "limiter_from_env",
]

REDIS_URL_ENV = "BASTION_REDIS_URL"
REDIS_PREFIX_ENV = "BASTION_REDIS_PREFIX"
RATE_ENV = "BASTION_RATE_LIMIT_PER_S"
DEFAULT_PREFIX = "bastion:ratelimit:"
# Float noise must not refuse a request that exactly fits (e.g. ten 0.1-cost hits in 1.0).
_EPS = 1e-9


@dataclass(frozen=True)
class RateLimit:
    """A token-bucket limit: ``burst`` requests at once, then ``rate_per_s`` per second.

    Parameters
    ----------
    rate_per_s:
        Refill rate in tokens per second (finite, > 0).
    burst:
        Bucket capacity in tokens (>= 1): how many unit-cost requests pass back to back.

    Raises
    ------
    ConfigError
        When either value is out of range.

    Example::

        >>> RateLimit(rate_per_s=5.0, burst=10).refill_s
        2.0
    """

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (isinstance(self.rate_per_s, int | float) and math.isfinite(self.rate_per_s)):
            raise ConfigError(f"rate_per_s must be a finite number, got {self.rate_per_s!r}")
        if self.rate_per_s <= 0:
            raise ConfigError(f"rate_per_s must be > 0, got {self.rate_per_s!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ConfigError(f"burst must be an integer >= 1, got {self.burst!r}")

    @property
    def refill_s(self) -> float:
        """Seconds an empty bucket takes to fill: after that long idle a bucket is as new."""
        return self.burst / self.rate_per_s

    def check_cost(self, cost: float) -> float:
        """``cost`` as a float, or :class:`ConfigError` unless ``0 < cost <= burst``."""
        if not (isinstance(cost, int | float) and math.isfinite(cost)) or isinstance(cost, bool):
            raise ConfigError(f"cost must be a finite number, got {cost!r}")
        if not 0 < cost <= self.burst:
            # A cost above burst could never pass: refusing forever is a bug, not a limit.
            raise ConfigError(f"cost must be in (0, burst={self.burst}], got {cost!r}")
        return float(cost)


@dataclass(frozen=True)
class Decision:
    """The answer for one request.

    ``allowed``: whether it may pass. ``retry_after_s``: 0 when allowed, else the seconds until
    the same request would pass (for the ``Retry-After`` header, rounded up). ``remaining``:
    tokens left in the bucket after this request (for ``RateLimit-Remaining``).
    """

    allowed: bool
    retry_after_s: float
    remaining: float


class Limiter(Protocol):
    """What the gateway needs from a rate limiter; both backends implement it."""

    @property
    def limit(self) -> RateLimit:
        """The limit every key is held to."""
        ...

    def hit(self, key: str, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them.

        Raises :class:`ConfigError` for a cost outside ``(0, burst]`` and
        :class:`RateLimiterUnavailableError` when the backing store cannot be reached.
        """
        ...


def _take(tokens: float, elapsed: float, limit: RateLimit, cost: float) -> tuple[float, Decision]:
    """Refill a bucket by ``elapsed`` seconds, then take ``cost``: (new tokens, decision).

    The Redis backend runs the same arithmetic in Lua (``_LUA_TAKE``); keep the two in step.
    """
    tokens = min(float(limit.burst), tokens + max(elapsed, 0.0) * limit.rate_per_s)
    if tokens + _EPS >= cost:
        tokens = max(tokens - cost, 0.0)
        return tokens, Decision(allowed=True, retry_after_s=0.0, remaining=tokens)
    return tokens, Decision(
        allowed=False, retry_after_s=(cost - tokens) / limit.rate_per_s, remaining=tokens
    )


class InMemoryLimiter:
    """Token buckets in a dict, for one gateway process (any number of threads).

    Memory is bounded two ways. A bucket idle for ``limit.refill_s`` is full again, so
    forgetting it changes no answer: such buckets are dropped as later hits pass by. And at
    most ``max_keys`` buckets are kept: when a new key arrives at the cap, the least recently
    used bucket is dropped even if not yet full. That lets its owner start afresh (at most
    ``burst`` extra tokens), the price of refusing to grow without bound when a client
    sprays keys (e.g. many IPv6 addresses); refusing *new* keys instead would lock out every
    new client.

    Parameters
    ----------
    limit:
        The limit each key is held to.
    max_keys:
        The most buckets kept at once (>= 1).
    clock:
        Monotonic seconds; tests pass a fake one.

    Example::

        >>> limiter = InMemoryLimiter(RateLimit(rate_per_s=1.0, burst=2))
        >>> [limiter.hit("10.0.0.1").allowed for _ in range(3)]
        [True, True, False]
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigError(f"max_keys must be an integer >= 1, got {max_keys!r}")
        self._limit = limit
        self._max_keys = max_keys
        self._clock = clock
        # key -> [tokens, last hit]; ordered by last hit, oldest first (move_to_end on hit).
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def limit(self) -> RateLimit:
        """The limit every key is held to."""
        return self._limit

    def __len__(self) -> int:
        """How many buckets are held now."""
        with self._lock:
            return len(self._buckets)

    def hit(self, key: str, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them (see :class:`Limiter`)."""
        cost = self._limit.check_cost(cost)
        with self._lock:
            now = self._clock()
            self._evict_idle(now)
            bucket = self._buckets.get(key)
            if bucket is None:
                while len(self._buckets) >= self._max_keys:
                    self._buckets.popitem(last=False)
                bucket = [float(self._limit.burst), now]
                self._buckets[key] = bucket
            else:
                self._buckets.move_to_end(key)
            bucket[0], decision = _take(bucket[0], now - bucket[1], self._limit, cost)
            bucket[1] = now
            return decision

    def _evict_idle(self, now: float) -> None:
        # Oldest first, so stop at the first bucket that is still refilling: amortised O(1).
        while self._buckets:
            last = next(iter(self._buckets.values()))[1]
            if now - last < self._limit.refill_s:
                return
            self._buckets.popitem(last=False)


# KEYS[1]: bucket; ARGV: rate_per_s, burst, cost, eps. Returns {allowed, tokens, retry_after},
# numbers as strings because Redis truncates Lua numbers to integers in replies. The clock is
# the server's (TIME, allowed in scripts since Redis 5 replicates effects, not scripts), so
# every replica measures elapsed time on the same clock. The timestamp is kept in whole
# microseconds: %.17g of epoch seconds would round it.
_LUA_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local eps = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = (now - ts) / 1000000
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
local retry = 0
if tokens + eps >= cost then
  tokens = math.max(tokens - cost, 0)
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, string.format('%.17g', tokens), string.format('%.17g', retry)}
"""


class RedisLimiter:
    """Token buckets in Redis, one limit shared by every gateway process using that Redis.

    Each bucket is a hash ``{tokens, ts}`` under ``prefix + key``, updated by one Lua script
    (atomic: no two processes can both take the last token). A key expires once idle for
    ``limit.refill_s`` plus a second, when it would be full anyway. Keys are stored as given:
    pass a digest, not the credential, when keying by API token.

    Parameters
    ----------
    limit:
        The limit each key is held to.
    client:
        A ``redis.Redis`` client; give it short socket timeouts, as :meth:`from_url` does,
        so a stalled Redis turns into a quick 503 rather than hung requests.
    prefix:
        Prepended to every key, to share one Redis database with other users.

    Raises
    ------
    RateLimiterUnavailableError
        From :meth:`hit` (and :meth:`ping`) when Redis cannot be reached or fails.

    Example::

        >>> limiter = RedisLimiter.from_url("redis://localhost:6379/0", RateLimit(5.0, 10))
        ... # doctest: +SKIP
    """

    def __init__(self, limit: RateLimit, client: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._limit = limit
        self._client = client
        self._prefix = prefix
        # register_script runs EVALSHA and reloads the script if Redis restarted and lost it.
        self._script = client.register_script(_LUA_TAKE)

    @classmethod
    def from_url(
        cls,
        url: str,
        limit: RateLimit,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 0.5,
    ) -> RedisLimiter:
        """A limiter over a new client for ``url`` with ``timeout_s`` connect/read timeouts."""
        redis = require("redis", "the shared (Redis) rate limiter")
        try:
            client = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        except ValueError as err:
            raise ConfigError(f"{REDIS_URL_ENV} is not a valid Redis URL: {err}") from err
        return cls(limit, client, prefix=prefix)

    @property
    def limit(self) -> RateLimit:
        """The limit every key is held to."""
        return self._limit

    def ping(self) -> None:
        """Check that Redis answers; :class:`RateLimiterUnavailableError` if not."""
        self._call(self._client.ping)

    def hit(self, key: str, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them (see :class:`Limiter`)."""
        cost = self._limit.check_cost(cost)
        args = [repr(float(self._limit.rate_per_s)), str(self._limit.burst), repr(cost), repr(_EPS)]
        reply = self._call(lambda: self._script(keys=[self._prefix + key], args=args))
        try:
            allowed, tokens, retry = reply
            return Decision(
                allowed=int(allowed) == 1, retry_after_s=float(retry), remaining=float(tokens)
            )
        except (TypeError, ValueError) as err:
            raise RateLimiterUnavailableError(
                f"Redis rate limiter returned an unexpected reply: {reply!r}"
            ) from err

    def _call(self, fn: Callable[[], Any]) -> Any:
        redis = require("redis", "the shared (Redis) rate limiter")
        try:
            return fn()
        except redis.exceptions.RedisError as err:
            raise RateLimiterUnavailableError(
                f"rate limiter cannot reach Redis ({type(err).__name__}: {err}); "
                "refusing requests (fail closed) until it is back"
            ) from err


def enforce(limiter: Limiter, key: str, guard: str) -> None:
    """Take one token from ``key``'s bucket or refuse the request.

    Raises :class:`~bastion.gateway.guards.auth.GuardRejectedError` (guard ``guard``): 429
    with ``Retry-After`` (whole seconds, rounded up) when the bucket is empty, 503 when the
    limiter's store cannot be reached (fail closed).
    """
    from bastion.gateway.guards.auth import GuardRejectedError

    try:
        decision = limiter.hit(key)
    except RateLimiterUnavailableError as err:
        raise GuardRejectedError(503, f"rate limiter unavailable: {err}", guard=guard) from err
    if not decision.allowed:
        wait = max(1, math.ceil(decision.retry_after_s))
        raise GuardRejectedError(
            429, "too many requests", (("Retry-After", str(wait)),), guard=guard
        )


def limiter_from_env(
    default_rate: float,
    burst: int,
    *,
    environ: Mapping[str, str] | None = None,
    max_keys: int = 100_000,
    rate_env: str | None = RATE_ENV,
) -> Limiter:
    """The limiter the environment asks for: Redis when ``BASTION_REDIS_URL`` is set.

    ``BASTION_RATE_LIMIT_PER_S``, when set, overrides ``default_rate``. With Redis, bucket keys
    start with ``BASTION_REDIS_PREFIX`` (default ``bastion:ratelimit:``): replicas that must
    share one limit use the same prefix, deployments that must not use different ones. The
    server is pinged once here so a wrong URL fails at start-up, not on the first request.

    Parameters
    ----------
    default_rate, burst:
        The :class:`RateLimit` to use.
    environ:
        Where to read the variables (default ``os.environ``).
    max_keys:
        Bucket cap for the in-memory backend.
    rate_env:
        The variable that may override ``default_rate``; None: nothing overrides it (the
        extraction throttle, whose rate must not follow the general limit).

    Raises
    ------
    ConfigError
        A rate, burst or URL is invalid.
    RateLimiterUnavailableError
        ``BASTION_REDIS_URL`` is set but Redis does not answer.
    MissingExtraError
        ``BASTION_REDIS_URL`` is set but the redis client is not installed.

    Example::

        >>> limiter_from_env(5.0, 10, environ={}).limit
        RateLimit(rate_per_s=5.0, burst=10)
    """
    env = os.environ if environ is None else environ
    rate = default_rate
    if rate_env is not None and (raw_rate := env.get(rate_env, "").strip()):
        try:
            rate = float(raw_rate)
        except ValueError as err:
            raise ConfigError(f"{rate_env} must be a number, got {raw_rate!r}") from err
    limit = RateLimit(rate_per_s=rate, burst=burst)
    url = env.get(REDIS_URL_ENV, "").strip()
    if not url:
        return InMemoryLimiter(limit, max_keys=max_keys)
    prefix = env.get(REDIS_PREFIX_ENV, "") or DEFAULT_PREFIX
    limiter = RedisLimiter.from_url(url, limit, prefix=prefix)
    limiter.ping()
    return limiter


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=32)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    nets = []
    for cidr in trusted:
        try:
            nets.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as err:
            raise ConfigError(
                f"trusted proxies must be IP addresses or CIDRs, got {cidr!r}"
            ) from err
    return tuple(nets)


def _parse_ip(text: str) -> _Address | None:
    """An address from a hop, accepting ``a.b.c.d:port`` and ``[v6]:port``; None if garbage."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # ::ffff:1.2.3.4 is 1.2.3.4 (dual-stack sockets): one client, one bucket, one CIDR match.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: _Address, nets: tuple[_Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in nets)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address: the socket peer, or the right-most untrusted ``X-Forwarded-For`` hop.

    Every proxy appends the address it received the request from, so the header reads
    ``client, proxy1, proxy2`` and the socket peer is the last proxy. Only hops added by
    trusted proxies can be believed; anything to their left may be written by the client.
    So: if the peer is not a trusted proxy the header is ignored; otherwise hops are read
    right to left and the first one that is not a trusted proxy is the client. If every hop
    is trusted, the left-most is returned. A hop that is not an address (a misconfigured
    proxy) stops the walk at the trusted proxy that wrote it.

    Parameters
    ----------
    peer:
        The socket peer's address (ASGI ``scope["client"][0]``).
    forwarded_for:
        The ``X-Forwarded-For`` value, several headers joined with ``,``; None if absent.
    trusted:
        Addresses or CIDRs of the reverse proxies in front of the gateway.

    Returns
    -------
    str
        The address in canonical form (IPv4-mapped IPv6 as IPv4), or ``peer`` unchanged when
        it is not an IP address (e.g. a Unix socket).

    Raises
    ------
    ConfigError
        An entry of ``trusted`` is not an address or CIDR.

    Example::

        >>> client_address("10.0.0.2", "6.6.6.6, 203.0.113.7", ["10.0.0.0/8"])
        '203.0.113.7'
        >>> client_address("198.51.100.1", "203.0.113.7", ["10.0.0.0/8"])
        '198.51.100.1'
    """
    nets = _networks(tuple(trusted))
    current = _parse_ip(peer)
    if current is None:
        return peer
    if not forwarded_for or not _is_trusted(current, nets):
        return str(current)
    for hop in reversed(forwarded_for.split(",")):
        address = _parse_ip(hop)
        if address is None:
            return str(current)
        current = address
        if not _is_trusted(current, nets):
            return str(current)
    return str(current)

"""Mergeable sketches behind :class:`bastion.data.profile.Profile`.

Each sketch summarises one column in bounded memory, merges with another sketch of the same
kind so that the merge summarises the union of both inputs, and documents its error bound;
``tests/data/test_sketches.py`` checks every bound.

- :class:`HyperLogLog`: distinct count. Relative standard error ``1.04 / sqrt(2**p)``
  (Flajolet et al. 2007), estimated with Ertl's improved raw estimator (Ertl 2017), which
  needs no empirical bias tables and stays unbiased from tiny to huge cardinalities.
- :class:`UniformSample`: a uniform sample without replacement of the non-null values, kept
  mergeable through a hypergeometric split. It doubles as the quantile sketch: by the
  Dvoretzky-Kiefer-Wolfowitz inequality (Massart's constant) the rank error of every quantile
  is at most ``sqrt(ln(2 / delta) / (2 k))`` with probability ``1 - delta``, for all
  quantiles at once; sampling without replacement only tightens it (Serfling 1974).
- :class:`FrequentItems`: exact counts while at most ``capacity`` distinct values were seen,
  then a Misra-Gries summary, merged as in Agarwal et al. 2012 ("Mergeable summaries"):
  each stored count under-estimates the true count by at most
  ``(n - sum(stored counts)) / (capacity + 1)`` and never over-estimates it.

References: P. Flajolet, É. Fusy, O. Gandouet, F. Meunier, "HyperLogLog: the analysis of a
near-optimal cardinality estimation algorithm", AofA 2007. O. Ertl, "New cardinality
estimation algorithms for HyperLogLog sketches", arXiv:1702.01284, 2017. P. Massart, "The
tight constant in the Dvoretzky-Kiefer-Wolfowitz inequality", Ann. Probab. 1990.
P. K. Agarwal et al., "Mergeable summaries", PODS 2012.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bastion.exceptions import DataError

__all__ = [
    "FrequentItems",
    "HyperLogLog",
    "UniformSample",
    "decode_array",
    "dkw_epsilon",
    "encode_array",
    "hash_float64",
    "hash_strings",
]

_U64 = np.uint64
# splitmix64's multipliers (Steele, Lea, Flood 2014): good avalanche for a two-multiply mixer
_C1 = _U64(0xBF58476D1CE4E5B9)
_C2 = _U64(0x94D049BB133111EB)
_S27 = _U64(27)
_S30 = _U64(30)
# Fibonacci hashing's multiplier, for the register index
_C3 = _U64(0x9E3779B97F4A7C15)
# ranks run 1..65 over the whole 64-bit hash
_Q = 64

MIN_PRECISION = 4
MAX_PRECISION = 18


def encode_array(values: np.ndarray) -> dict[str, Any]:
    """Lossless JSON form of a numeric array: dtype, length and little-endian base64 bytes."""
    arr = np.ascontiguousarray(values)
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": little.dtype.str,
        "n": len(arr),
        "b64": base64.b64encode(little.tobytes()).decode("ascii"),
    }


def decode_array(data: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_array` (returns a writable native-endian copy)."""
    try:
        raw = base64.b64decode(str(data["b64"]), validate=True)
        arr = np.frombuffer(raw, dtype=np.dtype(str(data["dtype"])))
        n = int(data["n"])
    except (KeyError, ValueError, TypeError) as err:
        raise DataError(f"encoded array: malformed ({err}); expected dtype, n and b64") from err
    if len(arr) != n:
        raise DataError(f"encoded array: holds {len(arr)} values, its header says {n}")
    return arr.astype(arr.dtype.newbyteorder("="))


def hash_float64(
    values: npt.NDArray[np.float64], out: npt.NDArray[np.uint64], tmp: npt.NDArray[np.uint64]
) -> npt.NDArray[np.uint64]:
    """64-bit hashes of float64 values, written into ``out`` (same length); ``tmp`` is scratch.

    The mixer is splitmix64's finaliser without its last xor-shift (two multiplies around
    xor-shifts): :class:`HyperLogLog` ranks a hash by its leading zeros, and the top bits of
    a product depend on every input bit. It is a bijection, so only ``0.0`` hashes to 0;
    :meth:`HyperLogLog.update` maps that 0 to the hash of ``-0.0``, so both zeros count once.
    """
    bits = values.view(np.uint64)
    np.right_shift(bits, _S30, out=tmp)
    np.bitwise_xor(bits, tmp, out=out)
    np.multiply(out, _C1, out=out)
    np.right_shift(out, _S27, out=tmp)
    np.bitwise_xor(out, tmp, out=out)
    np.multiply(out, _C2, out=out)
    return out


_NEG_ZERO_HASH = hash_float64(
    np.array([-0.0]), np.empty(1, dtype=np.uint64), np.empty(1, dtype=np.uint64)
)[0]


def hash_strings(values: Sequence[str] | npt.NDArray[np.object_]) -> npt.NDArray[np.uint64]:
    """Stable 64-bit hashes of strings (SipHash with pandas' fixed key), for HyperLogLog."""
    import pandas as pd

    arr = np.asarray(values, dtype=object)
    if len(arr) == 0:
        return np.empty(0, dtype=np.uint64)
    hashed: npt.NDArray[np.uint64] = pd.util.hash_array(arr, categorize=False)
    return hashed


# --------------------------------------------------------------------------- HyperLogLog


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        z_old = z
        z += x * y
        y += y
        if z == z_old:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y = 1.0
    z = 1.0 - x
    while True:
        x = math.sqrt(x)
        z_old = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == z_old:
            return z / 3.0


@dataclass(frozen=True, eq=False)
class HyperLogLog:
    """HyperLogLog distinct-count sketch with ``2**precision`` one-byte registers.

    Error bound: the estimate's relative standard error is ``1.04 / sqrt(2**precision)``
    (1.6 % at the default precision 12, 4 KiB per column); tests hold it to three standard
    errors. Below about ``2**precision / 10`` distinct values the estimate is almost exact
    (hash collisions are the only error). Merging takes the register-wise maximum, so
    ``merge(sketch(A), sketch(B)) == sketch(A ∪ B)`` exactly, in any order.

    A register holds the largest rank (position of the first 1-bit, 1..65) of the hashes it
    was given (see :meth:`update`).

    Example::

        hll = HyperLogLog.empty(12)
        regs = hll.registers.copy()
        HyperLogLog.update(regs, hash_strings(["a", "b", "a"]))
        HyperLogLog(12, regs).estimate()  # ~2.0
    """

    precision: int
    registers: npt.NDArray[np.uint8]

    @classmethod
    def empty(cls, precision: int = 12) -> HyperLogLog:
        """A sketch of nothing.

        Raises
        ------
        DataError
            ``precision`` lies outside 4..18.
        """
        if not MIN_PRECISION <= precision <= MAX_PRECISION:
            raise DataError(
                f"hll_precision must be an integer in {MIN_PRECISION}..{MAX_PRECISION}, "
                f"got {precision!r}"
            )
        return cls(precision, np.zeros(1 << precision, dtype=np.uint8))

    @property
    def relative_standard_error(self) -> float:
        """``1.04 / sqrt(m)``: one standard error of the estimate, relative to the truth."""
        return 1.04 / math.sqrt(1 << self.precision)

    @staticmethod
    def update(registers: npt.NDArray[np.uint8], hashes: npt.NDArray[np.uint64]) -> None:
        """Fold 64-bit hashes into ``registers`` (``2**p`` of them) in place.

        A hash ``h`` has rank ``clz(h) + 1`` (65 for 0) and goes to the register named by the
        top ``p`` bits of ``h * C3``, a bijective re-mix that leaves the register independent
        of the rank. Only a hash whose rank exceeds the smallest register ``t`` can raise
        one, and that holds exactly when ``h < 2**(64 - t)``: one comparison discards almost
        every hash of a long column before any per-register work.
        """
        p = int(registers.size).bit_length() - 1
        t = int(registers.min())
        if t > _Q:
            return
        cand = hashes if t == 0 else hashes[hashes < _U64(1 << (64 - t))]
        if cand.size == 0:
            return
        # 0 is the hash of 0.0 alone: give it -0.0's hash, so that the zeros count once and
        # no value sits at the fixed point 0 (rank 65) of the mixer
        cand = np.where(cand == 0, _NEG_ZERO_HASH, cand)
        idx = ((cand * _C3) >> _U64(64 - p)).astype(np.intp)
        # frexp's exponent e is floor(log2(h)) + 1 (0 for h == 0), so rank = 65 - e
        _, exponent = np.frexp(cand.astype(np.float64))
        rank = (_Q + 1 - exponent).astype(np.uint8)
        np.maximum.at(registers, idx, rank)

    def merge(self, other: HyperLogLog) -> HyperLogLog:
        """The sketch of the union (register-wise maximum).

        Raises
        ------
        DataError
            The sketches have different precisions.
        """
        if other.precision != self.precision:
            raise DataError(
                f"cannot merge HyperLogLog sketches of precision {self.precision} and "
                f"{other.precision}; build both profiles with the same hll_precision"
            )
        return HyperLogLog(self.precision, np.maximum(self.registers, other.registers))

    def estimate(self) -> float:
        """Estimated number of distinct values (Ertl's improved raw estimator)."""
        m = 1 << self.precision
        q = _Q
        counts = np.bincount(self.registers, minlength=q + 2).astype(np.float64)
        z = m * _tau(1.0 - counts[q + 1] / m)
        for k in range(q, 0, -1):
            z = 0.5 * (z + counts[k])
        z += m * _sigma(counts[0] / m)
        if math.isinf(z):
            return 0.0
        return float(m * m / (2.0 * math.log(2.0)) / z)

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "registers": encode_array(self.registers)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HyperLogLog:
        precision = int(data["precision"])
        registers = decode_array(data["registers"]).astype(np.uint8)
        if registers.size != 1 << precision:
            raise DataError(
                f"HyperLogLog: {registers.size} registers stored, precision {precision} "
                f"needs {1 << precision}"
            )
        return cls(precision, registers)


# --------------------------------------------------------------------------- sample


def dkw_epsilon(k: int, delta: float = 0.01) -> float:
    """Rank error a ``k``-point uniform sample guarantees with probability ``1 - delta``.

    ``sqrt(ln(2 / delta) / (2 k))`` (Dvoretzky-Kiefer-Wolfowitz with Massart's constant);
    0.0163 for ``k = 10_000`` and ``delta = 0.01``.

    Raises
    ------
    DataError
        ``delta`` is not in (0, 1) or ``k`` is negative.
    """
    if not 0.0 < delta < 1.0:
        raise DataError(f"delta must lie in (0, 1), got {delta!r}")
    if k < 0:
        raise DataError(f"k must be >= 0, got {k!r}")
    if k == 0:
        return 1.0
    return math.sqrt(math.log(2.0 / delta) / (2.0 * k))


@dataclass(frozen=True, eq=False)
class UniformSample:
    """A uniform sample without replacement of ``min(capacity, population)`` values.

    ``population`` counts the values sampled from; when it is at most ``capacity`` the sample
    holds every value and quantiles are exact. Numeric samples are kept sorted.

    Error bound (quantiles): with probability ``1 - delta`` every sample quantile's rank in
    the population is within :func:`dkw_epsilon` ``(len(values), delta)`` of the asked rank
    (plus ``1 / len(values)`` for interpolating between two sample points).

    Merging draws how many of the merged sample come from each side from the hypergeometric
    distribution, then subsamples each side uniformly: the result is again a uniform sample
    of the union, so the bound holds after any number of merges.
    """

    values: np.ndarray
    population: int
    capacity: int

    @classmethod
    def empty(cls, capacity: int, *, numeric: bool = True) -> UniformSample:
        dtype = np.float64 if numeric else object
        return cls(np.empty(0, dtype=dtype), 0, capacity)

    @property
    def exact(self) -> bool:
        """Whether the sample holds every value of its population."""
        return len(self.values) == self.population

    def rank_error(self, delta: float = 0.01) -> float:
        """Quantile rank error bound at confidence ``1 - delta`` (0.0 when exact)."""
        if self.exact:
            return 0.0
        n = len(self.values)
        return dkw_epsilon(n, delta) + 1.0 / n

    def merge(self, other: UniformSample, rng: np.random.Generator) -> UniformSample:
        """A uniform sample of the union of both populations (capacity: the smaller one)."""
        capacity = min(self.capacity, other.capacity)
        population = self.population + other.population
        numeric = self.values.dtype != object or other.values.dtype != object
        size = min(capacity, population)
        if self.exact and other.exact and population <= capacity:
            merged = np.concatenate([self.values, other.values])
        else:
            if self.population == 0:
                take_a = 0
            elif other.population == 0:
                take_a = size
            else:
                take_a = int(rng.hypergeometric(self.population, other.population, size))
            take_b = size - take_a
            merged = np.concatenate(
                [_subsample(self.values, take_a, rng), _subsample(other.values, take_b, rng)]
            )
        if numeric and merged.dtype != object:
            merged = np.sort(merged.astype(np.float64, copy=False))
        return UniformSample(merged, population, capacity)


def _subsample(values: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if size >= len(values):
        return values
    return values[rng.choice(len(values), size, replace=False, shuffle=False)]


# --------------------------------------------------------------------------- frequent items


@dataclass(frozen=True, eq=False)
class FrequentItems:
    """Counts of the most frequent values: exact while few, then Misra-Gries.

    ``counts`` is exact while at most ``capacity`` distinct values have been seen
    (``exact`` is True). After that it is a Misra-Gries summary of at most ``capacity``
    counters, and for every value ``v`` with true count ``c``::

        c - max_error <= counts.get(v, 0) <= c,   max_error = (total - sum(counts)) / (capacity + 1)

    so every value more frequent than ``max_error`` is kept, and the ``k`` most frequent
    values are reported correctly whenever their counts are separated by more than
    ``max_error``. ``total`` counts the non-null values summarised.
    """

    counts: Mapping[str, int]
    total: int
    capacity: int
    exact: bool = True

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], capacity: int) -> FrequentItems:
        """Summarise exact counts, reducing them to ``capacity`` counters if there are more.

        Raises
        ------
        DataError
            ``capacity`` is below 1.
        """
        if capacity < 1:
            raise DataError(f"max_categories must be >= 1, got {capacity!r}")
        total = int(sum(counts.values()))
        items = {k: int(v) for k, v in counts.items() if v > 0}
        if len(items) <= capacity:
            return cls(items, total, capacity, True)
        return cls(_reduce(items, capacity), total, capacity, False)

    @property
    def max_error(self) -> float:
        """Largest possible under-count of any value (0.0 while exact)."""
        if self.exact:
            return 0.0
        return (self.total - sum(self.counts.values())) / (self.capacity + 1)

    def top(self, k: int = 10) -> list[tuple[str, int]]:
        """The ``k`` largest counters, largest first (ties by value, for determinism)."""
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return ordered[: max(k, 0)]

    def merge(self, other: FrequentItems) -> FrequentItems:
        """The summary of the union (Agarwal et al.'s merge: add, then subtract the
        ``(capacity + 1)``-th largest counter)."""
        capacity = min(self.capacity, other.capacity)
        summed = dict(self.counts)
        for key, value in other.counts.items():
            summed[key] = summed.get(key, 0) + value
        total = self.total + other.total
        if self.exact and other.exact and len(summed) <= capacity:
            return FrequentItems(summed, total, capacity, True)
        return FrequentItems(_reduce(summed, capacity), total, capacity, False)

    def to_dict(self) -> dict[str, Any]:
        keys = sorted(self.counts)
        return {
            "keys": keys,
            "counts": [self.counts[k] for k in keys],
            "total": self.total,
            "capacity": self.capacity,
            "exact": self.exact,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrequentItems:
        keys = [str(k) for k in data["keys"]]
        counts = [int(c) for c in data["counts"]]
        if len(keys) != len(counts):
            raise DataError(f"frequent items: {len(keys)} keys but {len(counts)} counts stored")
        return cls(
            dict(zip(keys, counts, strict=True)),
            int(data["total"]),
            int(data["capacity"]),
            bool(data["exact"]),
        )


def _reduce(items: Mapping[str, int], capacity: int) -> dict[str, int]:
    if len(items) <= capacity:
        return dict(items)
    values = np.fromiter(items.values(), dtype=np.int64, count=len(items))
    # the (capacity+1)-th largest counter is subtracted from all: Misra-Gries' decrement step
    cut = int(np.partition(values, len(values) - capacity - 1)[len(values) - capacity - 1])
    # at most `capacity` counters exceed the (capacity+1)-th largest, so the result fits
    return {k: v - cut for k, v in items.items() if v > cut}

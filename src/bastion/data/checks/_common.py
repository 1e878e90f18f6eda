"""Helpers shared by the data-quality checks: threat tags, configs, profiles, row hashing.

Row hashing is the one code path behind duplicates (DQ005), conflicting labels (DQ006) and
train/test leakage (DQ007). A 64-bit hash per row finds *candidate* matches in one vectorised
pass; candidates are then confirmed exactly with pandas (``duplicated`` / ``groupby(dropna=
False)``), so a hash collision costs a little time and never a wrong count. Per-column hashes
follow pandas' equality: NaN equals NaN, ``0.0`` equals ``-0.0``, and integer, boolean and float
columns compare by numeric value (``1 == 1.0``), which is what a concatenation of train and
test does when a NaN turns an integer column into floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, TypeVar

import numpy as np
import pandas as pd
from pydantic import Field

from bastion.checks import Check, CheckConfig, CheckContext, config_as
from bastion.data.dataset import Dataset
from bastion.data.sketches import hash_float64

if TYPE_CHECKING:
    from bastion.data.profile import Profile

__all__ = [
    "ATLAS_DATASET_PROVENANCE",
    "ATLAS_POISON_TRAINING_DATA",
    "OWASP_DATA_POISONING",
    "Fraction",
    "config_of",
    "dataset_columns",
    "fraction",
    "full_profile_of",
    "hash_candidates",
    "jsonable",
    "numeric_values",
    "profile_of",
    "reference_profile_of",
    "row_hashes",
]

C = TypeVar("C", bound=CheckConfig)

Fraction = Annotated[float, Field(ge=0, le=1)]
"""A share in [0, 1], as every ``mostly`` and ``max_fraction`` threshold is."""

# Threat ids live in bastion.threats, shared by every pillar; re-exported for the checks.
from bastion.threats import (  # noqa: E402
    ATLAS_DATASET_PROVENANCE,
    ATLAS_POISON_TRAINING_DATA,
    OWASP_DATA_POISONING,
)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0x2545F4914F6CDD1D)
_SIX = np.uint64(6)
_TWO = np.uint64(2)
_BLOCK = 1 << 16


def fraction(part: float, whole: float) -> float:
    """``part / whole``, and 0.0 for an empty whole (nothing measured, nothing wrong)."""
    return float(part) / float(whole) if whole else 0.0


def dataset_columns(ds: Dataset) -> list[str]:
    """The columns a row-level check compares: the model's features plus the target.

    ``non_features`` (row ids, derived fairness columns) are left out: a row id alone would
    make every row unique.
    """
    cols = list(ds.feature_names)
    if ds.target is not None:
        cols.append(ds.target)
    return cols


def _numeric_source(series: pd.Series) -> np.ndarray | None:
    """The column's numbers without a copy where possible (plain numpy bool, int, float
    columns), as float64 with NaN for nullable extension columns, else None (not numeric)."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return None
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        values: np.ndarray = series.to_numpy()
        return values
    if pd.api.types.is_bool_dtype(dtype) and series.hasnans:
        return None  # nullable booleans with NA: factorize them instead
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        out: np.ndarray = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return out
    return None


def _column_sources(parts: Sequence[pd.Series]) -> list[np.ndarray]:
    """Per part, an array whose float64 value says what the cell is: numbers compare by
    value; anything else by pandas' factorize codes over all parts together (NA is -1)."""
    numeric = [_numeric_source(p) for p in parts]
    numeric_parts = [v for v in numeric if v is not None]
    if len(numeric_parts) == len(parts):
        return numeric_parts
    joined = pd.concat(list(parts), ignore_index=True) if len(parts) > 1 else parts[0]
    codes, _ = pd.factorize(joined, use_na_sentinel=True)
    out: list[np.ndarray] = []
    start = 0
    for part in parts:
        out.append(codes[start : start + len(part)])
        start += len(part)
    return out


class _Scratch:
    """Reusable block buffers, so hashing a column allocates nothing per block."""

    def __init__(self, size: int) -> None:
        self.values = np.empty(size, dtype=np.float64)
        self.nan = np.empty(size, dtype=bool)
        self.hashed = np.empty(size, dtype=np.uint64)
        self.tmp = np.empty(size, dtype=np.uint64)
        self.mix = np.empty(size, dtype=np.uint64)


def _mix_block(h: np.ndarray, block: np.ndarray, scratch: _Scratch) -> None:
    """Fold one block of a column into the row hashes ``h`` (a view), in place."""
    k = len(block)
    values = scratch.values[:k]
    # + 0.0 turns -0.0 into 0.0; every NaN becomes one bit pattern: equal values hash alike
    np.add(block, 0.0, out=values, casting="unsafe")
    nan = scratch.nan[:k]
    np.isnan(values, out=nan)
    if nan.any():
        values[nan] = np.nan
    hashed = hash_float64(values, scratch.hashed[:k], scratch.tmp[:k])
    # boost::hash_combine: h ^= v + golden + (h << 6) + (h >> 2); uint64 wraps, as intended
    mix, tmp = scratch.mix[:k], scratch.tmp[:k]
    np.left_shift(h, _SIX, out=mix)
    np.right_shift(h, _TWO, out=tmp)
    np.add(mix, tmp, out=mix)
    np.add(mix, hashed, out=mix)
    np.add(mix, _GOLDEN, out=mix)
    np.bitwise_xor(h, mix, out=h)


def row_hashes(frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> list[np.ndarray]:
    """A uint64 hash per row of each frame over ``columns``, comparable across the frames.

    Columns are read block by block (64 Ki rows) into reusable buffers, so the only large
    allocation is the result: 8 bytes per row.
    """
    hashes = [np.full(len(f), _SEED, dtype=np.uint64) for f in frames]
    scratch = _Scratch(min(_BLOCK, max((len(f) for f in frames), default=1)) or 1)
    for col in columns:
        sources = _column_sources([f[col] for f in frames])
        for h, source in zip(hashes, sources, strict=True):
            for start in range(0, len(source), _BLOCK):
                stop = start + _BLOCK
                _mix_block(h[start:stop], source[start:stop], scratch)
    return hashes


def hash_candidates(hashes: np.ndarray) -> np.ndarray:
    """Boolean mask of rows whose hash occurs more than once (possible duplicates).

    A sort finds the repeated hashes (one 8-byte copy per row; a hash table over all rows
    takes about three times that), then a small hash table marks their rows.
    """
    mask = np.zeros(len(hashes), dtype=bool)
    if len(hashes) < 2:
        return mask
    ordered = np.sort(hashes)
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return mask
    repeated = np.unique(ordered[1:][same])
    del ordered, same
    found: np.ndarray = pd.Series(hashes, copy=False).isin(repeated).to_numpy()
    return found


def config_of(check: Check, cls: type[C]) -> C:
    """The check's config as its own ``Config`` class (a base ``CheckConfig`` is upgraded)."""
    return config_as(check.config, cls)


def jsonable(value: object) -> object:
    """A JSON-friendly scalar: numpy scalars become Python ones, NaN None, infinity "inf"."""
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)  # JSON has no NaN or infinity
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def profile_of(ctx: CheckContext, ds: Dataset) -> Profile:
    """The dataset's profile: ``ctx.profile`` when the runner computed one, else one full
    profile computed here once and shared through the context's cache."""
    if ctx.profile is not None and ctx.dataset is ds:
        return ctx.profile
    return _cached_profile(ctx, ds)


def full_profile_of(ctx: CheckContext, ds: Dataset) -> Profile:
    """Like :func:`profile_of`, but with sketches (quantiles, samples): a profile computed
    with ``full=False`` is replaced by a full one, computed once."""
    profile = profile_of(ctx, ds)
    return profile if profile.full else _cached_profile(ctx, ds)


def numeric_values(series: pd.Series) -> np.ndarray:
    """A column as float64 (NaN for nulls), without a copy for plain float64 columns."""
    if series.dtype == np.float64:
        values: np.ndarray = series.to_numpy()
        return values
    out: np.ndarray = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def reference_profile_of(ctx: CheckContext) -> Profile | None:
    """The reference (train) profile, computed once when the context lacks it."""
    if ctx.reference_profile is not None:
        return ctx.reference_profile
    if ctx.reference is None:
        return None
    if ctx.reference is ctx.dataset and ctx.profile is not None:
        return ctx.profile
    return _cached_profile(ctx, ctx.reference)


def _cached_profile(ctx: CheckContext, ds: Dataset) -> Profile:
    from bastion.data.profile import Profile

    key = f"profile:{id(ds)}"
    if key not in ctx._cache:
        ctx._cache[key] = Profile.from_frame(ds.frame, seed=ctx.seed)
    profile: Profile = ctx._cache[key]
    return profile

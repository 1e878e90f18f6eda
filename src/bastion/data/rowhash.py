"""Row hashing: a 64-bit hash per row that finds candidate equal rows in one vectorised pass.

The one code path behind duplicates (DQ005), conflicting labels (DQ006), train/test leakage
(DQ007) and the content hash of an in-memory dataset. Candidates are confirmed exactly with
pandas by the checks, so a collision costs a little time and never a wrong count. Per-column
hashes follow pandas' equality: NaN equals NaN, ``0.0`` equals ``-0.0``, and integer, boolean
and float columns compare by numeric value (``1 == 1.0``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bastion.data.sketches import hash_float64

__all__ = ["hash_candidates", "row_hashes"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0x2545F4914F6CDD1D)
_SIX = np.uint64(6)
_TWO = np.uint64(2)
_BLOCK = 1 << 16


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

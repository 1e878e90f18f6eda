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
from typing import TYPE_CHECKING, Annotated, TypeVar

import numpy as np
import pandas as pd
from pydantic import Field

from bastion.checks import Check, CheckConfig, CheckContext, config_as
from bastion.data.dataset import Dataset
from bastion.data.rowhash import hash_candidates, row_hashes

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


def fraction(part: float, whole: float) -> float:
    """``part / whole``, and 0.0 for an empty whole (nothing measured, nothing wrong)."""
    return float(part) / float(whole) if whole else 0.0


def dataset_columns(ds: Dataset) -> list[str]:
    """The columns a row-level check compares: the model's features plus the target.

    ``non_features`` (row ids, derived fairness columns) are left out: a row id alone would
    make every row unique.
    """
    return ds.row_columns


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

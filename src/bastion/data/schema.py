"""Feature schema: each column's type, range, categories and whether it may change.

A schema is declared in the policy or inferred from a reference dataset. Data checks compare
datasets with it; later the attack pillar reads it for tabular constraints (immutable and
integer features, ranges, one-hot groups) and the gateway validates requests against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ColumnKind", "ColumnSpec", "FeatureSchema"]

# a column with at most this many distinct values and a non-float dtype is inferred categorical
_MAX_INFERRED_CATEGORIES = 50


class ColumnKind(StrEnum):
    NUMERIC = "numeric"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    CATEGORICAL = "categorical"
    TEXT = "text"
    DATETIME = "datetime"

    @property
    def is_numeric(self) -> bool:
        return self in (ColumnKind.NUMERIC, ColumnKind.INTEGER)


@dataclass(frozen=True)
class ColumnSpec:
    """What one column may hold. ``None`` bounds mean unbounded."""

    name: str
    kind: ColumnKind
    required: bool = True
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    immutable: bool = False
    one_hot_group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "required": self.required,
            "nullable": self.nullable,
            "min": self.min,
            "max": self.max,
            "categories": list(self.categories) if self.categories is not None else None,
            "immutable": self.immutable,
            "one_hot_group": self.one_hot_group,
        }


@dataclass(frozen=True)
class FeatureSchema:
    """Column specs by name, and whether they were declared or inferred (reports say which)."""

    columns: Mapping[str, ColumnSpec] = field(default_factory=dict)
    inferred: bool = False
    # which columns a person declared, when the schema mixes declared and inferred specs;
    # None: all of them, unless the whole schema is inferred
    declared_columns: frozenset[str] | None = None

    def is_declared(self, name: str) -> bool:
        """Whether ``name``'s spec was declared (bounds from it are facts, not estimates)."""
        if self.declared_columns is not None:
            return name in self.declared_columns
        return not self.inferred and name in self.columns

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> ColumnSpec:
        return self.columns[name]

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inferred": self.inferred,
            "columns": {name: spec.to_dict() for name, spec in self.columns.items()},
        }

    @classmethod
    def infer(cls, frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> FeatureSchema:
        """Infer kinds, ranges and categories from a reference frame (for example, train)."""
        specs: dict[str, ColumnSpec] = {}
        for name in frame.columns:
            if name in exclude:
                continue
            specs[str(name)] = _infer_column(str(name), frame[name])
        return cls(columns=specs, inferred=True)

    def merged_over(self, inferred: FeatureSchema) -> FeatureSchema:
        """Declared specs win; columns the declaration omits come from ``inferred``."""
        columns = dict(inferred.columns)
        columns.update(self.columns)
        return FeatureSchema(
            columns=columns,
            inferred=inferred.inferred and not self.columns,
            declared_columns=frozenset(self.columns),
        )


def kind_of(series: pd.Series) -> ColumnKind:
    """The column kind that a pandas dtype (and, for objects, the values) suggests."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return ColumnKind.BOOLEAN
    if pd.api.types.is_integer_dtype(dtype):
        return ColumnKind.INTEGER
    if pd.api.types.is_float_dtype(dtype):
        values = series.dropna().to_numpy()
        # an infinity is no whole number (tested first: np.mod of one warns)
        if values.size and np.isfinite(values).all() and np.all(np.mod(values, 1) == 0):
            return ColumnKind.INTEGER
        return ColumnKind.NUMERIC
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return ColumnKind.DATETIME
    if series.nunique(dropna=True) <= _MAX_INFERRED_CATEGORIES:
        return ColumnKind.CATEGORICAL
    return ColumnKind.TEXT


def _infer_column(name: str, series: pd.Series) -> ColumnSpec:
    kind = kind_of(series)
    nullable = bool(series.isna().any())
    if kind.is_numeric:
        values = series.dropna()
        if len(values):
            # bounds from the finite values: an infinity (a ratio over zero) made the bound
            # infinite, and a report holding it could not be written as JSON
            values = values[np.isfinite(values.to_numpy(dtype=np.float64))]
        lo = float(values.min()) if len(values) else None
        hi = float(values.max()) if len(values) else None
        return ColumnSpec(name, kind, nullable=nullable, min=lo, max=hi)
    if kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        cats = tuple(sorted(str(v) for v in series.dropna().unique()))
        return ColumnSpec(name, kind, nullable=nullable, categories=cats)
    return ColumnSpec(name, kind, nullable=nullable)

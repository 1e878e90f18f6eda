"""Schema validation of inference inputs against the release's signed feature schema.

The gate report inside a release names the model's input columns in order and the feature
schema the data was judged by (:attr:`bastion.report.Report.feature_schema`). A request is
refused with 422, naming the column and the row, when it has the wrong number of columns,
a value that is not finite, a non-whole value in an integer or boolean column, or a value
outside the bounds a person *declared* for that column. Bounds inferred from the training
data are not a contract: values beyond them are the out-of-distribution detector's business,
not a schema error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bastion.gateway.guards.auth import GuardRejectedError

__all__ = ["InputSchema"]

_WHOLE_KINDS = frozenset({"integer", "boolean"})


@dataclass(frozen=True)
class InputSchema:
    """What a request's rows must satisfy.

    Attributes:
        features: column names in the model's input order.
        lower, upper: declared bounds per column (-inf / +inf where none was declared).
        whole: whether each column must hold whole numbers.
    """

    features: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    whole: np.ndarray

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> InputSchema | None:
        """The schema a release's ``report.json`` carries; None when it carries none."""
        features: Sequence[str] | None = None
        for ds in report.get("datasets") or []:
            if ds.get("features"):
                features = ds["features"]
                break
        spec = report.get("feature_schema") or {}
        if not features:
            return None
        columns = spec.get("columns", {})
        declared = set(spec.get("declared") or [])
        n = len(features)
        lower, upper = np.full(n, -math.inf), np.full(n, math.inf)
        whole = np.zeros(n, dtype=bool)
        for i, name in enumerate(features):
            col = columns.get(name, {})
            whole[i] = col.get("kind") in _WHOLE_KINDS
            if name in declared:
                if col.get("min") is not None:
                    lower[i] = float(col["min"])
                if col.get("max") is not None:
                    upper[i] = float(col["max"])
        return cls(tuple(str(f) for f in features), lower, upper, whole)

    def check(self, X: np.ndarray) -> None:
        """Raise :class:`GuardRejectedError` (422) naming the first bad column and row."""
        if X.ndim != 2 or X.shape[1] != len(self.features):
            got = X.shape[1] if X.ndim == 2 else f"shape {list(X.shape)}"
            raise GuardRejectedError(
                422, f"expected {len(self.features)} columns ({', '.join(self.features[:5])}"
                f"{', ...' if len(self.features) > 5 else ''}); received {got}",
            )  # fmt: skip
        values = X.astype(np.float64, copy=False)
        finite = np.isfinite(values)
        if not finite.all():
            row, col = (int(i) for i in np.argwhere(~finite)[0])
            raise GuardRejectedError(
                422, f"column {self.features[col]!r}, row {row}: {values[row, col]} is not finite"
            )
        if self.whole.any():
            fractional = (values != np.round(values)) & self.whole
            if fractional.any():
                row, col = (int(i) for i in np.argwhere(fractional)[0])
                raise GuardRejectedError(
                    422,
                    f"column {self.features[col]!r}, row {row}: {values[row, col]} is not a "
                    "whole number",
                )
        outside = (values < self.lower) | (values > self.upper)
        if outside.any():
            row, col = (int(i) for i in np.argwhere(outside)[0])
            raise GuardRejectedError(
                422,
                f"column {self.features[col]!r}, row {row}: {values[row, col]} is outside the "
                f"declared range [{self.lower[col]}, {self.upper[col]}]",
            )

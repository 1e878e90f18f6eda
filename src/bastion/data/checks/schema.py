"""DQ001 schema: required columns are present and each column holds the declared kind.

Why it matters: a renamed, dropped or retyped column silently changes what the model sees
(a string where a number was expected becomes NaN or an encoder error in production), and a
mismatched schema is the first sign that a dataset is not the one the policy describes.

The schema is ``ctx.schema``: the policy's declared columns merged over kinds, ranges and
categories inferred from train (:class:`bastion.data.schema.FeatureSchema`). Ranges,
categories and nullability are judged by DQ003, DQ004 and DQ002; this check judges presence
and kind only.

Kinds are compatible as follows (found -> accepted for a declared kind):

- ``numeric``: integer or float columns.
- ``integer``: integer columns, or floats whose non-null values are all whole numbers (an
  integer column with a NaN is read as floats).
- ``boolean``: boolean columns, or numbers that are all 0 or 1.
- ``categorical``: text, categorical, boolean, integer, or whole-number float columns.
- ``text``: text or categorical columns.
- ``datetime``: datetime columns.

Metrics: ``missing_columns`` (required columns absent), ``kind_mismatches``,
``extra_columns`` (present, not in the schema; counted against the gate only when
``allow_extra_columns`` is false) and ``columns_checked``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import config_of
from bastion.data.schema import ColumnKind
from bastion.findings import Finding, Severity, Status

__all__ = ["SchemaCheck", "SchemaConfig", "found_kind", "kind_matches"]

_MAX_LISTED = 20


class SchemaConfig(CheckConfig):
    """Options of DQ001."""

    allow_extra_columns: bool = Field(
        default=True, description="columns that the schema does not name are fine"
    )


def found_kind(series: pd.Series) -> ColumnKind:
    """The kind a column's dtype shows, without reading its values (object -> text)."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return ColumnKind.CATEGORICAL
    if pd.api.types.is_bool_dtype(dtype):
        return ColumnKind.BOOLEAN
    if pd.api.types.is_integer_dtype(dtype):
        return ColumnKind.INTEGER
    if pd.api.types.is_float_dtype(dtype):
        return ColumnKind.NUMERIC
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return ColumnKind.DATETIME
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("integer", "mixed-integer-float", "floating", "decimal"):
            return ColumnKind.NUMERIC if inferred != "integer" else ColumnKind.INTEGER
        if inferred == "boolean":
            return ColumnKind.BOOLEAN
        if inferred in ("datetime64", "datetime", "date"):
            return ColumnKind.DATETIME
    return ColumnKind.TEXT


def _numbers(series: pd.Series) -> np.ndarray:
    values: np.ndarray = pd.to_numeric(series, errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    kept: np.ndarray = values[~np.isnan(values)]
    return kept


def _whole(series: pd.Series) -> bool:
    values = _numbers(series)
    return bool(np.all(np.isfinite(values)) and np.all(np.mod(values, 1) == 0))


def _zero_one(series: pd.Series) -> bool:
    values = _numbers(series)
    return bool(np.all((values == 0) | (values == 1)))


def kind_matches(expected: ColumnKind, series: pd.Series) -> tuple[bool, ColumnKind]:
    """Whether ``series`` may hold the ``expected`` kind, and the kind its dtype shows."""
    found = found_kind(series)
    numeric = found in (ColumnKind.NUMERIC, ColumnKind.INTEGER)
    if expected is ColumnKind.NUMERIC:
        ok = numeric
    elif expected is ColumnKind.INTEGER:
        ok = found is ColumnKind.INTEGER or (found is ColumnKind.NUMERIC and _whole(series))
    elif expected is ColumnKind.BOOLEAN:
        ok = found is ColumnKind.BOOLEAN or (numeric and _zero_one(series))
    elif expected is ColumnKind.CATEGORICAL:
        ok = found in (
            ColumnKind.CATEGORICAL,
            ColumnKind.TEXT,
            ColumnKind.BOOLEAN,
            ColumnKind.INTEGER,
        ) or (found is ColumnKind.NUMERIC and _whole(series))
    elif expected is ColumnKind.TEXT:
        ok = found in (ColumnKind.TEXT, ColumnKind.CATEGORICAL)
    else:
        ok = found is ColumnKind.DATETIME
    return ok, found


@CHECKS.register
class SchemaCheck(Check):
    """Check that required columns exist and hold their declared kinds.

    Example::

        ctx = CheckContext(dataset=test, schema=FeatureSchema.infer(train.frame))
        SchemaCheck().run(ctx).metrics["missing_columns"]
    """

    id = "DQ001"
    name = "schema"
    title = "Schema: required columns and kinds"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.HIGH
    tags = ()
    Config: ClassVar[type[CheckConfig]] = SchemaConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, SchemaConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        schema = ctx.schema if ctx.schema is not None else ds.schema
        if not schema.columns:
            return self.skip(ctx, "no schema declared or inferred")
        frame = ds.frame
        present = {str(c) for c in frame.columns}
        missing = [n for n, spec in schema.columns.items() if spec.required and n not in present]
        mismatched: dict[str, dict[str, str]] = {}
        checked = 0
        for name, spec in schema.columns.items():
            if name not in present:
                continue
            checked += 1
            ok, found = kind_matches(spec.kind, frame[name])
            if not ok:
                mismatched[name] = {
                    "expected": spec.kind.value,
                    "found": found.value,
                    "dtype": str(frame[name].dtype),
                }
        ignored = {ds.target, *ds.non_features}
        extra = [str(c) for c in frame.columns if str(c) not in schema.columns and c not in ignored]
        problems: list[str] = []
        if missing:
            problems.append(f"missing required column(s) {_listing(missing)}")
        if mismatched:
            problems.append(
                "wrong kind: "
                + _listing(
                    [f"{n} ({m['found']}, expected {m['expected']})" for n, m in mismatched.items()]
                )
            )
        if extra and not config.allow_extra_columns:
            problems.append(f"column(s) not in the schema: {_listing(extra)}")
        status = Status.FAIL if problems else Status.PASS
        message = (
            "; ".join(problems)
            if problems
            else f"{checked} column(s) present with the expected kinds"
            + (f"; {len(extra)} column(s) not in the schema" if extra else "")
        )
        return self.finding(
            ctx,
            status,
            message,
            metrics={
                "missing_columns": len(missing),
                "kind_mismatches": len(mismatched),
                "extra_columns": len(extra),
                "columns_checked": checked,
            },
            threshold={
                "missing_columns": 0,
                "kind_mismatches": 0,
                "extra_columns": None if config.allow_extra_columns else 0,
            },
            evidence={
                "missing": missing,
                "mismatched": mismatched,
                "extra": extra,
                "schema_inferred": schema.inferred,
            },
        )


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")

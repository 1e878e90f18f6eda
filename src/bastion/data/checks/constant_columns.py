"""DQ009 constant_columns: feature columns that hold a single distinct value.

Why it matters: a constant feature carries no information for the model, and a column that
was informative in train but is constant in a new batch usually means a broken upstream
source (a default value written everywhere, a failed join filled with one code).

Metric definitions (over the model's features; nulls aside):

- A column is *constant* when its non-null values take exactly one distinct value, and
  *empty* when it holds no non-null value at all (also no information; reported apart).
- ``constant_columns``: constant plus empty columns; compared with
  ``max_constant_columns``.

Read from the profile alone: a numeric column is constant when its exact ``min`` equals its
``max``; a categorical column when its exact category counts hold one value (a column with
more distinct values than the profile counts exactly is not constant). Only a profile computed
with ``full=False``, which counts no categories, sends categorical columns to the data.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import config_of, jsonable, profile_of
from bastion.data.profile import ColumnProfile
from bastion.findings import Finding, Severity, Status

__all__ = ["ConstantColumns", "ConstantColumnsConfig"]

_MAX_LISTED = 20


class ConstantColumnsConfig(CheckConfig):
    """Thresholds of DQ009."""

    max_constant_columns: int = Field(
        default=0, ge=0, description="largest allowed number of constant or empty features"
    )


def _distinct_at_most_one(col: ColumnProfile) -> bool | None:
    """True: one distinct non-null value; None: no value at all; False: more."""
    if col.non_null_count == 0:
        return None
    if col.kind == "numeric":
        return col.min == col.max
    counts = col.category_counts
    if counts is not None:
        return len(counts) <= 1
    # a full profile without exact counts saw more distinct values than it counts exactly
    return False


@CHECKS.register
class ConstantColumns(Check):
    """Flag features with a single distinct value (nulls aside) or no value at all.

    Example::

        ConstantColumns().run(ctx).evidence["constant"]
    """

    id = "DQ009"
    name = "constant_columns"
    title = "Constant columns"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.LOW
    tags = ()
    Config: ClassVar[type[CheckConfig]] = ConstantColumnsConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, ConstantColumnsConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        profile = profile_of(ctx, ds)
        constant: dict[str, object] = {}
        empty: list[str] = []
        checked = 0
        for name in ds.feature_names:
            col = profile.columns.get(name)
            if col is None:
                continue
            checked += 1
            if col.kind == "categorical" and not col.full:
                # a profile computed with full=False counts no categories: ask the column
                distinct = ds.frame[name].nunique(dropna=True)
                verdict: bool | None = None if distinct == 0 else distinct == 1
            else:
                verdict = _distinct_at_most_one(col)
            if verdict is None:
                empty.append(name)
            elif verdict:
                if col.kind == "numeric":
                    constant[name] = jsonable(col.min)
                else:
                    constant[name] = jsonable(ds.frame[name].dropna().iloc[0])
        n_bad = len(constant) + len(empty)
        names = [*constant, *empty]
        if n_bad:
            listed = ", ".join(names[:_MAX_LISTED])
            if len(names) > _MAX_LISTED:
                listed += f" and {len(names) - _MAX_LISTED} more"
            message = f"{n_bad} of {checked} feature(s) carry no information: {listed}"
        else:
            message = f"none of {checked} feature(s) is constant"
        status = Status.FAIL if n_bad > config.max_constant_columns else Status.PASS
        evidence: dict[str, object] = {"constant": sorted(constant), "empty": empty}
        if constant:
            # the single value of a column can be a raw value (a name, an id): samples only
            evidence["samples"] = constant
        return self.finding(
            ctx,
            status,
            message,
            metrics={
                "columns_checked": checked,
                "constant_columns": n_bad,
                "empty_columns": len(empty),
            },
            threshold={"max_constant_columns": config.max_constant_columns},
            evidence=evidence,
        )

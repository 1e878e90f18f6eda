"""DQ004 categories: values of categorical columns within the allowed categories.

Why it matters: a category the model never saw in training (a new ward code, a misspelt
"femal", a value injected to probe the model) is encoded as all-zeros or raises in the
encoder; the prediction for that row is then arbitrary.

Allowed categories: ``categories`` of the column's spec in ``ctx.schema`` (declared, or
inferred from train for text and boolean columns with at most 50 distinct values). A
categorical spec without categories takes the values seen in the reference (train).

Values compare as text, as the profile stores them; numbers are normalised first, so that an
integer column read as floats because of a NaN still matches (``"1.0"`` equals ``"1"``).

Metric definitions:

- ``unseen_fraction`` of a column = non-null values outside the allowed set / non-null
  values (Great Expectations' ``expect_column_values_to_be_in_set`` with ``mostly = 1 -
  max_unseen_fraction``). Nulls are left out; an all-null column passes vacuously.
- A column fails when ``unseen_fraction > max_unseen_fraction`` (``columns`` overrides it
  per column). ``unseen_values`` sums the unseen values over columns; ``max_unseen_fraction``
  in the metrics is the largest fraction over columns.

Counts come from the profile's exact category counts when it has them; otherwise the column
is counted once from the data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import ClassVar

import pandas as pd
from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import (
    Fraction,
    config_of,
    fraction,
    profile_of,
    reference_profile_of,
)
from bastion.data.dataset import Dataset
from bastion.data.schema import ColumnKind
from bastion.findings import Finding, Severity, Status

__all__ = ["CategoriesConfig", "CategoryCheck", "category_key"]

_MAX_LISTED = 10
_SAMPLES_PER_COLUMN = 5
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


class CategoriesConfig(CheckConfig):
    """Thresholds of DQ004."""

    max_unseen_fraction: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="largest allowed share of non-null values outside the allowed categories",
    )
    columns: dict[str, Fraction] = Field(
        default_factory=dict, description="per-column max_unseen_fraction"
    )


def category_key(value: object) -> str:
    """The text a category compares as: numbers normalised (``1.0`` -> ``"1"``)."""
    text = value if isinstance(value, str) else str(value)
    if _NUMBER.match(text):
        number = float(text)
        if math.isfinite(number) and number.is_integer():
            return str(int(number))
        return repr(number)
    return text


def _counts_from_frame(series: pd.Series) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key, count in series.dropna().value_counts(sort=False).items():
        counts[str(key)] = counts.get(str(key), 0) + int(count)
    return counts


@CHECKS.register
class CategoryCheck(Check):
    """Flag categorical columns with values outside their allowed categories.

    Example::

        spec = ColumnSpec("sex", ColumnKind.CATEGORICAL, categories=("F", "M"))
        CategoryCheck().run(CheckContext(dataset=ds, schema=FeatureSchema({"sex": spec})))
    """

    id = "DQ004"
    name = "categories"
    title = "Allowed categories"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.MEDIUM
    tags = ()
    Config: ClassVar[type[CheckConfig]] = CategoriesConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, CategoriesConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        profile = profile_of(ctx, ds)
        allowed_sets = _allowed(ctx, ds)
        failing: dict[str, dict[str, object]] = {}
        unseen_of: dict[str, float] = {}
        samples: dict[str, list[str]] = {}
        unseen_total = 0
        worst = 0.0
        checked = 0
        for name, (allowed, source) in allowed_sets.items():
            col = profile.columns.get(name)
            if col is None:
                continue  # a missing column is DQ001's finding
            checked += 1
            counts: Mapping[str, int] | None = col.category_counts
            if counts is None:
                counts = _counts_from_frame(ds.frame[name])
            unseen = {k: c for k, c in counts.items() if category_key(k) not in allowed}
            n_unseen = sum(unseen.values())
            share = fraction(n_unseen, col.non_null_count)
            unseen_total += n_unseen
            worst = max(worst, share)
            limit = config.columns.get(name, config.max_unseen_fraction)
            if share > limit:
                unseen_of[name] = share
                failing[name] = {
                    "unseen_count": n_unseen,
                    "unseen_fraction": share,
                    "distinct_unseen": len(unseen),
                    "allowed_categories": len(allowed),
                    "categories": source,
                    "max_unseen_fraction": limit,
                }
                top = sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0]))
                samples[name] = [k for k, _ in top[:_SAMPLES_PER_COLUMN]]
        if not checked:
            return self.skip(ctx, "no categorical column with declared or inferable categories")
        if failing:
            status = Status.FAIL
            ordered = sorted(failing, key=lambda c: -unseen_of[c])
            shown = ", ".join(
                f"{c} ({unseen_of[c]:.2%} unseen, {failing[c]['distinct_unseen']} new value(s))"
                for c in ordered[:_MAX_LISTED]
            )
            more = f" and {len(ordered) - _MAX_LISTED} more" if len(ordered) > _MAX_LISTED else ""
            message = (
                f"{len(failing)} of {checked} categorical column(s) hold unseen values: "
                f"{shown}{more}"
            )
        else:
            status = Status.PASS
            message = f"{checked} categorical column(s) hold only allowed values"
            if unseen_total:
                message += f" ({unseen_total} unseen value(s), within tolerance)"
        evidence: dict[str, object] = {"failing": failing}
        if samples:
            evidence["samples"] = samples
        return self.finding(
            ctx,
            status,
            message,
            metrics={
                "columns_checked": checked,
                "failing_columns": len(failing),
                "unseen_values": unseen_total,
                "max_unseen_fraction": worst,
            },
            threshold={"max_unseen_fraction": config.max_unseen_fraction},
            evidence=evidence,
        )


def _allowed(ctx: CheckContext, ds: Dataset) -> dict[str, tuple[frozenset[str], str]]:
    """Normalised allowed categories per column and where they came from."""
    schema = ctx.schema if ctx.schema is not None else ds.schema
    out: dict[str, tuple[frozenset[str], str]] = {}
    for name, spec in schema.columns.items():
        if spec.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            continue
        if spec.categories is not None:
            source = "inferred" if schema.inferred else "declared"
            out[name] = (frozenset(category_key(c) for c in spec.categories), source)
            continue
        seen = _reference_categories(ctx, name)
        if seen is not None:
            out[name] = (seen, "inferred")
    return out


def _reference_categories(ctx: CheckContext, name: str) -> frozenset[str] | None:
    ref = reference_profile_of(ctx)
    col = ref.columns.get(name) if ref is not None else None
    if col is not None and col.category_counts is not None:
        return frozenset(category_key(k) for k in col.category_counts)
    if ctx.reference is not None and name in ctx.reference.frame.columns:
        if col is not None and col.kind == "categorical" and col.full:
            return None  # more distinct values than the profile counts: not a category set
        return frozenset(category_key(k) for k in _counts_from_frame(ctx.reference.frame[name]))
    return None

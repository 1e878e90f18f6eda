"""DQ003 ranges: numeric values within their declared or train-inferred bounds.

Why it matters: values outside the range a model was trained on (a negative age, a lab value
in the wrong unit, an infinity) are extrapolated silently; a sudden block of them is a broken
pipeline or crafted input (OWASP ML01 input manipulation when it reaches serving).

Bounds: ``min`` / ``max`` of the column's spec in ``ctx.schema`` (the policy's declared
schema merged over one inferred from train). A spec with neither bound takes train's observed
min and max from ``ctx.reference_profile``. Bounds equal to train's observed min and max, or
from an inferred schema, count as *inferred* and are judged with ``inferred_mostly`` (a test
set legitimately strays a little beyond what train happened to contain); declared bounds are
judged with ``mostly``. ``columns`` overrides either per column. (A test set drawn from the
train distribution puts on average 2 / (n_train + 1) of a column's values outside train's
min and max, and much more in small samples: 3% in some columns of a 400 / 169 split of
breast cancer; hence the looser default of ``inferred_mostly``, 0.95.)

Metric definitions (Great Expectations' ``expect_column_values_to_be_between``):

- ``in_range_fraction`` of a column = values within [lower, upper] / non-null values. Nulls
  are left out (DQ002 judges them); an all-null column passes vacuously. Infinities are
  values and fall outside any finite bound.
- A column fails when ``in_range_fraction < mostly``. ``failing_columns`` counts them;
  ``out_of_range_values`` sums the values outside over all columns; ``min_in_range_fraction``
  is the lowest fraction.

Cost: the profile's exact min and max settle most columns without reading the data; only a
column whose min or max lies outside its bounds is read once to count the exact values.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import (
    Fraction,
    config_of,
    fraction,
    jsonable,
    numeric_values,
    profile_of,
    reference_profile_of,
)
from bastion.data.dataset import Dataset
from bastion.data.schema import ColumnSpec
from bastion.findings import Finding, Severity, Status

__all__ = ["RangeCheck", "RangesConfig"]

_MAX_LISTED = 10
_SAMPLES_PER_COLUMN = 5


class RangesConfig(CheckConfig):
    """Thresholds of DQ003."""

    mostly: float = Field(
        default=1.0, ge=0, le=1, description="minimum in-range share under declared bounds"
    )
    inferred_mostly: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="minimum in-range share under bounds inferred from train",
    )
    columns: dict[str, Fraction] = Field(
        default_factory=dict, description="per-column 'mostly', overriding both defaults"
    )


@CHECKS.register
class RangeCheck(Check):
    """Flag numeric columns with too many values outside their bounds.

    Example::

        schema = FeatureSchema({"age": ColumnSpec("age", ColumnKind.INTEGER, min=0, max=120)})
        RangeCheck().run(CheckContext(dataset=ds, schema=schema)).metrics["failing_columns"]
    """

    id = "DQ003"
    name = "ranges"
    title = "Numeric ranges"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.MEDIUM
    tags = ()
    Config: ClassVar[type[CheckConfig]] = RangesConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, RangesConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        profile = profile_of(ctx, ds)
        bounds = _bounds(ctx, ds)
        failing: dict[str, dict[str, object]] = {}
        in_range_of: dict[str, float] = {}
        samples: dict[str, list[object]] = {}
        checked = 0
        out_total = 0
        lowest = 1.0
        for name, (lower, upper, source) in bounds.items():
            col = profile.columns.get(name)
            if col is None or col.kind != "numeric":
                continue  # missing or non-numeric columns are DQ001's findings
            checked += 1
            non_null = col.non_null_count
            outside = 0
            inside_profile = (lower is None or col.min is None or col.min >= lower) and (
                upper is None or col.max is None or col.max <= upper
            )
            if not inside_profile:
                values = numeric_values(ds.frame[name])
                mask = np.zeros(len(values), dtype=bool)
                if lower is not None:
                    mask |= values < lower
                if upper is not None:
                    mask |= values > upper
                outside = int(np.count_nonzero(mask))
                if outside:
                    samples[name] = [jsonable(v) for v in values[mask][:_SAMPLES_PER_COLUMN]]
            in_range = 1.0 - fraction(outside, non_null) if non_null else 1.0
            lowest = min(lowest, in_range)
            in_range_of[name] = in_range
            out_total += outside
            mostly = config.columns.get(
                name, config.inferred_mostly if source == "inferred" else config.mostly
            )
            if in_range < mostly:
                failing[name] = {
                    "lower": lower,
                    "upper": upper,
                    "bounds": source,
                    "min": jsonable(col.min),
                    "max": jsonable(col.max),
                    "out_of_range": outside,
                    "in_range_fraction": in_range,
                    "mostly": mostly,
                }
        if not checked:
            return self.skip(ctx, "no numeric column with declared or inferable bounds")
        failed_samples = {c: v for c, v in samples.items() if c in failing}
        if failing:
            status = Status.FAIL
            worst = sorted(failing, key=in_range_of.__getitem__)
            shown = ", ".join(
                f"{c} ({failing[c]['out_of_range']} outside [{failing[c]['lower']}, "
                f"{failing[c]['upper']}], {failing[c]['bounds']})"
                for c in worst[:_MAX_LISTED]
            )
            more = f" and {len(worst) - _MAX_LISTED} more" if len(worst) > _MAX_LISTED else ""
            message = f"{len(failing)} of {checked} numeric column(s) out of range: {shown}{more}"
        else:
            status = Status.PASS
            message = (
                f"{checked} numeric column(s) within their bounds "
                f"({out_total} value(s) outside, within tolerance)"
            )
        evidence: dict[str, object] = {
            "failing": failing,
            "bounds": {
                c: {"lower": lo, "upper": hi, "source": s} for c, (lo, hi, s) in bounds.items()
            },
        }
        if failed_samples:
            evidence["samples"] = failed_samples
        return self.finding(
            ctx,
            status,
            message,
            metrics={
                "columns_checked": checked,
                "failing_columns": len(failing),
                "out_of_range_values": out_total,
                "min_in_range_fraction": lowest,
            },
            threshold={"mostly": config.mostly, "inferred_mostly": config.inferred_mostly},
            evidence=evidence,
        )


def _bounds(ctx: CheckContext, ds: Dataset) -> dict[str, tuple[float | None, float | None, str]]:
    """(lower, upper, "declared" | "inferred") per numeric column with at least one bound."""
    schema = ctx.schema if ctx.schema is not None else ds.schema
    ref = reference_profile_of(ctx)
    specs: dict[str, ColumnSpec | None] = {
        name: spec for name, spec in schema.columns.items() if spec.kind.is_numeric
    }
    if not schema.columns and ref is not None:
        excluded = {ds.target, *ds.non_features}
        specs = {
            n: None for n, c in ref.columns.items() if c.kind == "numeric" and n not in excluded
        }
    out: dict[str, tuple[float | None, float | None, str]] = {}
    for name, spec in specs.items():
        ref_col = ref.columns.get(name) if ref is not None else None
        ref_lo = ref_col.min if ref_col is not None and ref_col.kind == "numeric" else None
        ref_hi = ref_col.max if ref_col is not None and ref_col.kind == "numeric" else None
        lower = spec.min if spec is not None else None
        upper = spec.max if spec is not None else None
        if lower is None and upper is None:
            lower, upper, source = ref_lo, ref_hi, "inferred"
        elif schema.inferred or (lower == ref_lo and upper == ref_hi):
            source = "inferred"
        else:
            source = "declared"
        if lower is not None or upper is not None:
            out[name] = (lower, upper, source)
    return out

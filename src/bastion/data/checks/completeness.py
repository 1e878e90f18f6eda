"""DQ002 completeness: the share of non-null values of each column.

Why it matters: a column that is suddenly half empty means a broken join or extract upstream;
imputation then fills it with a constant, and the model quietly sees a different feature.

Metric definitions (Great Expectations' ``expect_column_values_to_not_be_null``):

- ``non_null_fraction`` of a column = non-null rows / all rows. Unlike the other ``mostly``
  checks, nulls are the subject here, so the fraction is measured over *all* rows, and an
  all-null column has a fraction of 0 and fails (any ``mostly`` above 0). Null means NaN,
  None, NaT or ``pd.NA``; infinities are values (DQ003 judges them).
- A column passes when ``non_null_fraction >= mostly``; ``columns`` sets ``mostly`` per
  column, and with ``schema_nullable`` a column whose schema says ``nullable: false`` needs
  1.0 (unless ``columns`` names it).
- ``failing_columns``: columns below their ``mostly``; ``min_non_null_fraction``: the lowest
  fraction over columns; ``null_cells_fraction``: nulls / cells over the whole table.

Every number comes from the dataset's profile (``null_count``), so this check does not read
the data. References: Great Expectations, "mostly" (docs.greatexpectations.io).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import Fraction, config_of, fraction, profile_of
from bastion.findings import Finding, Severity, Status

__all__ = ["Completeness", "CompletenessConfig"]

_MAX_LISTED = 10


class CompletenessConfig(CheckConfig):
    """Thresholds of DQ002."""

    mostly: float = Field(
        default=0.95, ge=0, le=1, description="minimum share of non-null rows of each column"
    )
    columns: dict[str, Fraction] = Field(
        default_factory=dict, description="per-column 'mostly', overriding the default"
    )
    schema_nullable: bool = Field(
        default=False,
        description="require 1.0 for columns whose schema says nullable: false "
        "(an inferred schema says so for every column without nulls in train)",
    )


@CHECKS.register
class Completeness(Check):
    """Flag columns whose share of non-null values is below ``mostly``.

    Example::

        check = Completeness(CompletenessConfig(mostly=0.99, columns={"comment": 0.2}))
        check.run(ctx).evidence["failing"]
    """

    id = "DQ002"
    name = "completeness"
    title = "Completeness (non-null share per column)"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.MEDIUM
    tags = ()
    Config: ClassVar[type[CheckConfig]] = CompletenessConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, CompletenessConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        profile = profile_of(ctx, ds)
        schema = ctx.schema if ctx.schema is not None else ds.schema
        n_rows = profile.n_rows
        failing: dict[str, dict[str, float | int]] = {}
        null_fractions: dict[str, float] = {}
        lowest = 1.0
        nulls_total = 0
        for name, col in profile.columns.items():
            mostly = config.mostly
            if name in config.columns:
                mostly = config.columns[name]
            elif config.schema_nullable and name in schema and not schema[name].nullable:
                mostly = 1.0
            non_null = fraction(col.non_null_count, col.count) if col.count else 1.0
            lowest = min(lowest, non_null)
            nulls_total += col.null_count
            if col.null_count:
                null_fractions[name] = 1.0 - non_null
            if non_null < mostly:
                failing[name] = {
                    "null_count": col.null_count,
                    "non_null_fraction": non_null,
                    "mostly": mostly,
                }
        n_cols = len(profile.columns)
        if failing:
            worst = sorted(failing, key=lambda c: failing[c]["non_null_fraction"])
            shown = ", ".join(
                f"{c} ({failing[c]['non_null_fraction']:.1%} non-null, needs "
                f"{failing[c]['mostly']:.1%})"
                for c in worst[:_MAX_LISTED]
            )
            more = f" and {len(worst) - _MAX_LISTED} more" if len(worst) > _MAX_LISTED else ""
            message = f"{len(failing)} of {n_cols} column(s) too incomplete: {shown}{more}"
            status = Status.FAIL
        else:
            message = (
                f"every column of {n_cols} is complete enough "
                f"(lowest non-null share {lowest:.1%}, needs {config.mostly:.1%})"
            )
            status = Status.PASS
        return self.finding(
            ctx,
            status,
            message,
            metrics={
                "columns_checked": n_cols,
                "failing_columns": len(failing),
                "min_non_null_fraction": lowest,
                "null_cells_fraction": fraction(nulls_total, n_rows * n_cols),
            },
            threshold={"mostly": config.mostly},
            evidence={"failing": failing, "null_fraction": null_fractions},
        )

"""DQ010 outliers: numeric values far from the bulk of their column.

Why it matters: outliers are typos, unit mix-ups and sensor faults, and a cluster of them in
the training data is one of the few visible traces of injected poison points (Steinhardt et
al. 2017 bound what outlier removal can and cannot stop; MITRE ATLAS AML.T0020).

Methods (per numeric feature with at least ``min_distinct`` distinct values):

- ``robust_z`` (default): the modified z-score of Iglewicz and Hoaglin (1993),
  ``M = 0.6745 (x - median) / MAD`` with ``MAD = median(|x - median|)``; an outlier has
  ``|M| > z_threshold`` (3.5, their recommendation). When MAD is 0 (more than half the
  values equal), ``M = (x - median) / (1.253314 * MeanAD)`` with the mean absolute
  deviation around the median; a column whose MeanAD is also 0 has no outlier.
- ``iqr``: Tukey's fences; an outlier lies below ``Q1 - iqr_k * IQR`` or above
  ``Q3 + iqr_k * IQR`` (``iqr_k`` 1.5).

Metric definitions:

- ``outlier_fraction`` of a column = outliers / non-null values (infinities are outliers).
- A column fails when ``outlier_fraction > max_fraction``; ``failing_columns`` counts them,
  ``max_outlier_fraction`` is the largest fraction and ``outlier_values`` the total count.

The median, MAD and quartiles come from the profile's uniform sample (exact while the column
has at most ``sample_size`` values, else within the profile's quantile rank error). Counting
reads the data only where the profile cannot answer: no outlier when the profile's min and
max lie inside the fences; the exact count from the sample when it holds every value; a
sample estimate (listed in ``evidence["estimated"]``) when a 99.9 % Wilson upper bound on
the sample's outlier share is below ``max_fraction``, so the column passes either way; else
one read of the column counts exactly.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import (
    ATLAS_POISON_TRAINING_DATA,
    config_of,
    fraction,
    full_profile_of,
    jsonable,
    numeric_values,
)
from bastion.data.profile import ColumnProfile
from bastion.findings import Finding, Severity, Status

__all__ = ["Outliers", "OutliersConfig", "fences"]

_MAD_SCALE = 0.6745  # the 0.75 quantile of the standard normal: MAD / 0.6745 estimates sigma
_MEANAD_SCALE = 1.253314  # sqrt(pi / 2): MeanAD * 1.2533 estimates sigma
_MAX_LISTED = 10
_Z_999 = 3.2905  # two-sided 99.9 % normal quantile
_SAMPLES_PER_COLUMN = 5


class OutliersConfig(CheckConfig):
    """Thresholds of DQ010."""

    method: Literal["robust_z", "iqr"] = Field(default="robust_z", description="outlier rule")
    z_threshold: float = Field(default=3.5, gt=0, le=1_000, description="|modified z| limit")
    iqr_k: float = Field(default=1.5, gt=0, le=1_000, description="Tukey fence multiplier")
    max_fraction: float = Field(
        default=0.05, ge=0, le=1, description="largest allowed share of outliers per column"
    )
    min_distinct: int = Field(
        default=5, ge=1, description="columns with fewer distinct values are not judged"
    )


def fences(sample: np.ndarray, config: OutliersConfig) -> tuple[float, float] | None:
    """The fences outside which a value is an outlier.

    Parameters
    ----------
    sample:
        The column's non-null values, or a uniform sample of them (infinities are ignored).
    config:
        The method and its threshold.

    Returns
    -------
    (lower, upper), or None when the values have no spread (no value can be an outlier).

    Example::

        fences(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), OutliersConfig())
        # (-2.189, 8.189): median 3, MAD 1, 3 +- 3.5 / 0.6745
    """
    finite = sample[np.isfinite(sample)]
    if len(finite) == 0:
        return None
    if config.method == "iqr":
        q1, q3 = np.quantile(finite, [0.25, 0.75])
        spread = config.iqr_k * (q3 - q1)
        return float(q1 - spread), float(q3 + spread)
    median = float(np.median(finite))
    deviation = np.abs(finite - median)
    mad = float(np.median(deviation))
    if mad > 0:
        half_width = config.z_threshold * mad / _MAD_SCALE
    else:
        mean_ad = float(np.mean(deviation))
        if mean_ad == 0:
            return None
        half_width = config.z_threshold * _MEANAD_SCALE * mean_ad
    return median - half_width, median + half_width


@CHECKS.register
class Outliers(Check):
    """Flag numeric features with too many robust-z or IQR outliers.

    Example::

        Outliers(OutliersConfig(method="iqr", max_fraction=0.02)).run(ctx).evidence["failing"]
    """

    id = "DQ010"
    name = "outliers"
    title = "Outliers"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.LOW
    tags = (ATLAS_POISON_TRAINING_DATA,)
    Config: ClassVar[type[CheckConfig]] = OutliersConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, OutliersConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        profile = full_profile_of(ctx, ds)
        failing: dict[str, dict[str, object]] = {}
        share_of: dict[str, float] = {}
        samples: dict[str, list[object]] = {}
        not_judged: list[str] = []
        estimated: list[str] = []
        checked = 0
        total = 0
        worst = 0.0
        for name in ds.feature_names:
            col = profile.columns.get(name)
            if col is None or col.kind != "numeric" or col.non_null_count == 0:
                continue
            limits = self._fences(col, config)
            if limits is None:
                not_judged.append(name)
                continue
            checked += 1
            lower, upper = limits
            count, exact, found = _count(col, lower, upper, config.max_fraction, ds.frame[name])
            if not exact:
                estimated.append(name)
            if found:
                samples[name] = found
            share = fraction(count, col.non_null_count)
            total += count
            worst = max(worst, share)
            if share > config.max_fraction:
                share_of[name] = share
                failing[name] = {
                    "outliers": count,
                    "outlier_fraction": share,
                    "lower": lower,
                    "upper": upper,
                }
        if not checked:
            return self.skip(ctx, "no numeric feature with enough distinct values to judge")
        if failing:
            status = Status.FAIL
            ordered = sorted(failing, key=lambda c: -share_of[c])
            shown = ", ".join(f"{c} ({share_of[c]:.1%})" for c in ordered[:_MAX_LISTED])
            more = f" and {len(ordered) - _MAX_LISTED} more" if len(ordered) > _MAX_LISTED else ""
            message = (
                f"{len(failing)} of {checked} numeric feature(s) have more than "
                f"{config.max_fraction:.1%} {config.method} outliers: {shown}{more}"
            )
        else:
            status = Status.PASS
            message = (
                f"{checked} numeric feature(s) within {config.max_fraction:.1%} "
                f"{config.method} outliers (largest share {worst:.2%})"
            )
        evidence: dict[str, object] = {
            "method": config.method,
            "failing": failing,
            "not_judged": not_judged,
            "estimated": estimated,
        }
        failed_samples = {c: v for c, v in samples.items() if c in failing}
        if failed_samples:
            evidence["samples"] = failed_samples
        return self.finding(
            ctx,
            status,
            message,
            metrics={
                "columns_checked": checked,
                "failing_columns": len(failing),
                "outlier_values": total,
                "max_outlier_fraction": worst,
            },
            threshold=(
                {"max_fraction": config.max_fraction, "z_threshold": config.z_threshold}
                if config.method == "robust_z"
                else {"max_fraction": config.max_fraction, "iqr_k": config.iqr_k}
            ),
            evidence=evidence,
        )

    @staticmethod
    def _fences(col: ColumnProfile, config: OutliersConfig) -> tuple[float, float] | None:
        if col.distinct_estimate() < config.min_distinct:
            return None
        return fences(col.sample, config)


def _count(
    col: ColumnProfile, lower: float, upper: float, max_fraction: float, series: pd.Series
) -> tuple[int, bool, list[object]]:
    """(outliers, whether the count is exact, a few outlier values) for one column.

    The profile answers when it can: no outlier when its min and max lie inside the fences;
    the exact count when its sample holds every value; and a sample estimate when even a
    99.9 % Wilson upper bound on the sample's outlier share stays below ``max_fraction`` (the
    column passes whatever the exact count). Otherwise the column is read once and counted.
    """
    if (col.min is None or col.min >= lower) and (col.max is None or col.max <= upper):
        return 0, True, []
    sample = col.sample
    in_sample = (sample < lower) | (sample > upper)
    hits = int(np.count_nonzero(in_sample))
    examples = [jsonable(v) for v in sample[in_sample][:_SAMPLES_PER_COLUMN]]
    if len(sample) == col.non_null_count:
        return hits, True, examples
    if len(sample) and _wilson_upper(hits, len(sample)) < max_fraction:
        return round(hits / len(sample) * col.non_null_count), False, examples
    values = numeric_values(series)
    mask = values < lower
    mask |= values > upper
    return (
        int(np.count_nonzero(mask)),
        True,
        [jsonable(v) for v in values[mask][:_SAMPLES_PER_COLUMN]],
    )


def _wilson_upper(hits: int, n: int, z: float = _Z_999) -> float:
    """Upper end of the Wilson score interval for a binomial share (Wilson 1927)."""
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + spread) / (1 + z * z / n)

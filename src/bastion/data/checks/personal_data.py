"""DQ011 personal_data: columns that look like they hold personal data.

Why it matters: a model trained on direct identifiers can memorise and leak them through
membership-inference or model-inversion attacks (OWASP ML03, ML04; MITRE ATLAS
AML.T0024), and shipping such data to a training pipeline may breach data-protection law
(GDPR art. 5(1)(c), data minimisation). Identifiers rarely help a model generalise anyway.

How: every text-like column (object, string or categorical dtype) is scanned on a seeded
sample of up to ``max_values`` values for e-mail addresses, phone numbers, US social
security numbers, IBANs (mod-97 checked) and payment-card numbers (Luhn checked); see
:mod:`bastion.data.patterns`. Numeric columns are not scanned (a float cannot hold an e-mail,
and Luhn-valid digit runs are too common among numeric ids). Every column's name is also
matched against hints such as ``email``, ``phone``, ``ssn``, ``first_name``, ``dob``.

Metrics:

- ``match_fraction`` of a column and kind: sampled non-null values holding at least one
  validated match / sampled non-null values. A column is flagged when any kind reaches
  ``min_match_fraction``.
- ``pii_columns``: columns flagged by their values; ``name_hint_columns``: columns flagged
  only by their name; ``max_match_fraction``: the largest fraction over columns and kinds;
  ``values_scanned``: sampled non-null values over all scanned columns.

Status: fail when a column's values look personal, warn when only a name does, pass else.
Columns listed in ``allow_columns`` (approved, e.g. already pseudonymised) are not flagged.
Evidence holds aggregates only; redacted examples (``j***@***.org``, ``***-**-6789``) go
under ``evidence["samples"]``, which reports drop unless the policy allows raw rows.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.checks._common import config_of, fraction
from bastion.data.patterns import find_personal_data, name_hint, redact
from bastion.findings import Finding, Severity, Status
from bastion.threats import OWASP_MEMBERSHIP_INFERENCE, OWASP_MODEL_INVERSION

__all__ = ["PersonalData", "PersonalDataConfig"]

ATLAS_INFERENCE_API_EXFILTRATION = "AML.T0024"
_SAMPLES_PER_COLUMN = 3


class PersonalDataConfig(CheckConfig):
    """Thresholds of DQ011."""

    min_match_fraction: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="share of sampled values with a match from which a column is flagged",
    )
    max_values: int = Field(
        default=10_000, ge=1, le=10_000_000, description="values sampled per column"
    )
    name_hints: bool = Field(default=True, description="also flag columns by their names")
    allow_columns: list[str] = Field(
        default_factory=list, description="columns approved to hold personal data"
    )


@CHECKS.register
class PersonalData(Check):
    """Flag columns whose values or names look like personal data.

    Example::

        finding = PersonalData(PersonalDataConfig(allow_columns=["patient_pseudonym"])).run(ctx)
        finding.evidence["columns"]
    """

    id = "DQ011"
    name = "personal_data"
    title = "Personal data in the dataset"
    category = "data"
    scope = Scope.DATASET
    severity = Severity.HIGH
    tags = (ATLAS_INFERENCE_API_EXFILTRATION, OWASP_MODEL_INVERSION, OWASP_MEMBERSHIP_INFERENCE)
    Config: ClassVar[type[CheckConfig]] = PersonalDataConfig

    def run(self, ctx: CheckContext) -> Finding:
        config = config_of(self, PersonalDataConfig)
        ds = ctx.dataset
        if ds is None:
            return self.skip(ctx, "no dataset in the context")
        frame = ds.frame
        allowed = set(config.allow_columns)
        rng = ctx.rng(self.id)
        n_rows = len(frame)
        positions = (
            np.sort(rng.choice(n_rows, size=config.max_values, replace=False))
            if n_rows > config.max_values
            else None
        )
        flagged: dict[str, dict[str, object]] = {}
        hinted: dict[str, str] = {}
        kinds_of: dict[str, list[str]] = {}
        samples: dict[str, list[str]] = {}
        scanned_total = 0
        max_share = 0.0
        text_columns = 0
        for col in frame.columns:
            name = str(col)
            if name in allowed:
                continue
            series = frame[col]
            if _is_text(series):
                text_columns += 1
                values = series if positions is None else series.iloc[positions]
                values = values.dropna()
                shares, examples = _scan(values)
                scanned_total += len(values)
                if shares:
                    max_share = max(max_share, *shares.values())
                hits = {k: v for k, v in shares.items() if v >= config.min_match_fraction and v > 0}
                if hits:
                    kinds_of[name] = sorted(hits)
                    flagged[name] = {
                        "kinds": sorted(hits),
                        "match_fraction": {k: round(v, 6) for k, v in sorted(hits.items())},
                        "values_scanned": len(values),
                    }
                    samples[name] = examples[:_SAMPLES_PER_COLUMN]
                    continue
            if config.name_hints:
                hint = name_hint(name)
                if hint is not None:
                    hinted[name] = hint
        if flagged:
            status = Status.FAIL
            message = (
                f"{len(flagged)} column(s) hold values that look like personal data: "
                + ", ".join(f"{c} ({', '.join(k)})" for c, k in kinds_of.items())
            )
        elif hinted:
            status = Status.WARN
            message = "column names suggest personal data: " + ", ".join(
                f"{c} ({k})" for c, k in hinted.items()
            )
        else:
            status = Status.PASS
            message = (
                f"no personal data found in {text_columns} text column(s) "
                f"and {frame.shape[1]} column name(s)"
            )
        if hinted and flagged:
            message += "; names also suggest it for " + ", ".join(hinted)
        evidence: dict[str, object] = {"columns": flagged, "name_hints": hinted}
        if samples:
            evidence["samples"] = samples
        return self.finding(
            ctx,
            status,
            message,
            metrics={
                "pii_columns": len(flagged),
                "name_hint_columns": len(hinted),
                "max_match_fraction": max_share,
                "values_scanned": scanned_total,
                "text_columns": text_columns,
            },
            threshold={"min_match_fraction": config.min_match_fraction},
            evidence=evidence,
        )


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def _scan(values: pd.Series) -> tuple[dict[str, float], list[str]]:
    """Per kind, the share of values with a match; plus a few redacted examples."""
    counts: Counter[str] = Counter()
    examples: list[str] = []
    # categorical and repetitive columns: scan each distinct value once, weigh by its count
    for value, count in values.astype(str).value_counts(sort=False).items():
        kinds = set()
        for m in find_personal_data(str(value)):
            kinds.add(m.kind)
            if len(examples) < _SAMPLES_PER_COLUMN:
                examples.append(redact(m.kind, m.text))
        for kind in kinds:
            counts[kind] += int(count)
    n = len(values)
    return {k: fraction(c, n) for k, c in counts.items()}, examples

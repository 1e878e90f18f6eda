"""The data-quality checks (Test pillar), one module per check.

Importing this package registers every check with :data:`bastion.checks.CHECKS`:

=====  ==================  ===========================================================
id     policy name         detects
=====  ==================  ===========================================================
DQ001  schema              missing required columns, columns of the wrong kind
DQ002  completeness        columns with too many nulls
DQ003  ranges              numbers outside declared or train-inferred ranges
DQ004  categories          values outside the declared or train-seen categories
DQ005  duplicates          repeated rows
DQ006  conflicting_labels  identical features with different labels
DQ007  leakage             test rows found verbatim in train
DQ008  label_balance       a minority class below its minimum share
DQ009  constant_columns    columns with a single value
DQ010  outliers            robust z-score or IQR outliers
DQ011  personal_data       e-mails, phone numbers, SSNs, IBANs, card numbers
DQ012  integrity           a dataset whose sha256 differs from the pinned one
=====  ==================  ===========================================================
"""

from bastion.data.checks import (
    categories,
    completeness,
    conflicting_labels,
    constant_columns,
    duplicates,
    integrity,
    label_balance,
    leakage,
    outliers,
    personal_data,
    ranges,
    schema,
)

__all__ = [
    "categories",
    "completeness",
    "conflicting_labels",
    "constant_columns",
    "duplicates",
    "integrity",
    "label_balance",
    "leakage",
    "outliers",
    "personal_data",
    "ranges",
    "schema",
]

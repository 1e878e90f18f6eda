"""``report.json``: the ``bastion.report/v1`` document, the machine-readable record of a run.

The document is :meth:`bastion.report.Report.to_dict` made strictly JSON-safe (numpy scalars
and arrays become numbers and lists, NaN and infinities become ``null``, tuples become
lists) and is validated against the schema shipped in ``bastion/schemas/report.v1.json``
before it is returned, so a written report always follows its schema.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from bastion.exceptions import BastionError
from bastion.reporting.writers import REPORTERS, ReportWriter

if TYPE_CHECKING:
    from bastion.report import Report

__all__ = ["JsonWriter", "jsonable", "render_json"]


def jsonable(value: Any, where: str = "report") -> Any:
    """``value`` as plain JSON data: dicts with string keys, lists, str, int, float, bool, None.

    Parameters
    ----------
    value:
        Any nesting of mappings, sequences, numbers (numpy included), strings, dates, paths
        and enums.
    where:
        Where ``value`` sits, for the error message.

    Returns
    -------
    Any
        The converted value; non-finite floats become ``None``.

    Raises
    ------
    BastionError
        A value has a type JSON cannot carry; the message names its place.

    Example::

        jsonable({"x": np.float32(0.5), "y": float("nan")})  # {'x': 0.5, 'y': None}
    """
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(items)]
    if isinstance(value, enum.Enum):
        return jsonable(value.value, where)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    # numpy scalars and arrays (and anything else with the same protocol) without importing
    # numpy here: .tolist() turns an array into nested lists and a scalar into a Python number.
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and type(value).__module__ == "numpy":
        return jsonable(tolist(), where)
    raise BastionError(
        f"{where} holds a {type(value).__name__}, which a report cannot carry; "
        "use numbers, strings, booleans, lists or mappings"
    )


def render_json(report: Report, indent: int | None = 2) -> str:
    """The ``bastion.report/v1`` JSON text of ``report``, redacted and validated.

    Raw rows (``evidence["samples"]``) are dropped unless ``report.raw_rows_allowed``.

    Raises
    ------
    BastionError
        The report holds a value JSON cannot carry, or the document does not follow the
        schema (the message names the offending place).

    Example::

        text = render_json(report)
        Report.from_dict(json.loads(text)) == report  # True for JSON-native reports
    """
    import jsonschema

    from bastion.report import validate_report_dict
    from bastion.reporting.writers import redact

    doc = jsonable(redact(report).to_dict())
    try:
        validate_report_dict(doc)
    except jsonschema.ValidationError as err:
        place = "/".join(str(p) for p in err.absolute_path) or "(document)"
        # jsonschema quotes the offending value; a long one may be evidence, so name the rule.
        detail = err.message
        if len(detail) > 200:
            rule = json.dumps(err.validator_value, default=str)[:200]
            detail = f"fails the {err.validator!r} rule {rule}"
        raise BastionError(
            f"the report does not follow bastion.report/v1 at {place}: {detail}"
        ) from err
    return json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


@REPORTERS.register
class JsonWriter(ReportWriter):
    """``report.json``: the schema'd record of the run."""

    id = "json"
    filename = "report.json"
    media_type = "application/json"

    def render(self, report: Report) -> str:
        return render_json(report)

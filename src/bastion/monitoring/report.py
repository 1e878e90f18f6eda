"""Offline drift reports: two datasets, or a snapshot saved from the gateway, as JSON or HTML.

``bastion monitor report`` is built on this module. Two inputs are supported:

- **Two datasets** (:func:`report_from_files`): a reference file (the training data) and a
  current file (a batch of production inputs), CSV or Parquet, read by
  :func:`bastion.data.dataset.read_table`. The numbers are exactly
  :func:`bastion.monitoring.drift.drift_report`'s on the selected columns (same stattests,
  thresholds, compatibility mode and dataset verdict); nothing is recomputed here. A
  ``target`` column is left out of the feature columns and reported on its own as target drift,
  which does not count toward the dataset verdict (a label shift is a different question from
  an input shift, and the gateway sees no labels until feedback arrives).
- **A gateway snapshot** (:func:`report_from_snapshot`): the JSON body of
  ``GET /v2/models/{name}/monitor``, saved to a file (``curl -H "Authorization: Bearer $TOKEN"
  $GATEWAY/v2/models/NAME/monitor > snapshot.json``). The gateway keeps binned counts of recent
  traffic, never raw inputs, so there is no current dataset to recompute from: the report shows
  the PSI and Jensen-Shannon distance the gateway computed per feature against the release's
  reference profile (:class:`bastion.monitoring.live.LiveMonitor`). Each feature is decided on
  PSI (or on ``jensenshannon`` where a stattest says so) against its threshold: the given one,
  else the snapshot's ``psi_threshold`` when it records one, else the gateway's default
  :data:`GATEWAY_PSI_THRESHOLD`; JS defaults to 0.1. A feature drifts when its statistic is at
  or above the threshold, as in :class:`~bastion.monitoring.drift.ColumnDrift` (the gateway's
  own flag uses ``>``; the two differ only at exact equality).

- **The gateway's prediction log** (:func:`report_from_log`): a reference file and the JSON
  lines ``bastion serve --log-inputs DIR`` wrote (opt-in; see
  :mod:`bastion.monitoring.prediction_log`). The logged rows of one model (optionally within
  ``since`` / ``until``) are rebuilt into the current frame and compared exactly as two datasets
  are; the columns default to the logged features that the reference holds. With a ``target``,
  the logged *predicted* labels stand in for it, so target drift is prediction drift.

Whichever the input, the result is a :class:`MonitorReport`: a :class:`DriftReport` plus
metadata (input files with their SHA-256 and row counts, creation time, Bastion version). JSON
is ``DriftReport.to_dict()`` with ``target_drift``, ``metadata`` (and ``snapshot`` or
``prediction_log``) keys added.
HTML is one self-contained page (no script, no external resource, a Content-Security-Policy
that forbids both; every value autoescaped) with an inline SVG bar per column: the bar is the
column's score in units of its threshold, so the threshold line sits at the same place on
every row and a bar past it means drift. For p-value tests (KS, chi-square, z) the bar is
``-log10(p)`` against ``-log10(threshold)``, so "past the line" means drift there too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bastion.exceptions import ConfigError, DataError
from bastion.monitoring.drift import (
    DATASET_DRIFT_SHARE,
    DEFAULT_THRESHOLDS,
    ColumnDrift,
    DriftReport,
    drift_report,
)

if TYPE_CHECKING:
    import jinja2
    import pandas as pd

__all__ = [
    "GATEWAY_PSI_THRESHOLD",
    "InputFile",
    "MonitorReport",
    "render_html",
    "render_json",
    "report_from_files",
    "report_from_frames",
    "report_from_log",
    "report_from_snapshot",
]

GATEWAY_PSI_THRESHOLD = 0.2
"""The gateway's default PSI threshold (``WatchOptions.psi_threshold``, ``LiveMonitor``)."""

_SNAPSHOT_STATTESTS = ("psi", "jensenshannon")
_P_VALUE_TESTS = frozenset({"ks", "chisquare", "z"})
# SVG geometry: the threshold line sits at _LINE_X of _BAR_W; bars are clipped at _BAR_W.
_BAR_W, _LINE_X = 300.0, 150.0


@dataclass(frozen=True)
class InputFile:
    """A file the report read: its role, path, SHA-256 and row count."""

    role: Literal["reference", "current", "snapshot", "prediction-log"]
    path: str
    sha256: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of the fields."""
        return {"role": self.role, "path": self.path, "sha256": self.sha256, "rows": self.rows}


@dataclass(frozen=True)
class MonitorReport:
    """A drift report with the provenance needed to reproduce it.

    ``source`` is ``"datasets"`` (two files compared by :func:`drift_report`),
    ``"prediction-log"`` (a reference file against the rows of the gateway's prediction log,
    compared the same way) or ``"gateway-snapshot"`` (statistics the gateway computed).
    ``target`` is the target column's drift (datasets and logs only, when a target was named);
    it is not part of ``drift``'s verdict. ``snapshot`` keeps the snapshot's other fields
    (release, rows, prediction drift, accuracy, per-feature PSI / JS / counts);
    ``prediction_log`` what was read from the log (model, releases, requests, rows, time span,
    filters, skipped lines).
    """

    drift: DriftReport
    source: Literal["datasets", "gateway-snapshot", "prediction-log"]
    inputs: tuple[InputFile, ...]
    created_at: str
    bastion_version: str
    target: ColumnDrift | None = None
    snapshot: Mapping[str, Any] | None = field(default=None)
    prediction_log: Mapping[str, Any] | None = field(default=None)

    @property
    def dataset_drift(self) -> bool:
        """The dataset verdict: share of drifted columns >= ``drift.drift_share``."""
        return self.drift.dataset_drift

    def to_dict(self) -> dict[str, Any]:
        """``DriftReport.to_dict()`` plus ``target_drift``, ``metadata`` and ``snapshot``."""
        out = self.drift.to_dict()
        out["target_drift"] = None if self.target is None else self.target.to_dict()
        out["metadata"] = {
            "source": self.source,
            "inputs": [f.to_dict() for f in self.inputs],
            "created_at": self.created_at,
            "bastion_version": self.bastion_version,
        }
        if self.snapshot is not None:
            out["snapshot"] = dict(self.snapshot)
        if self.prediction_log is not None:
            out["prediction_log"] = dict(self.prediction_log)
        return out


# ---------------------------------------------------------------------------------------------
# Building


def report_from_frames(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    target: str | None = None,
    columns: Sequence[str] | None = None,
    stattests: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    compatibility: str | None = None,
    drift_share: float = DATASET_DRIFT_SHARE,
    inputs: Sequence[InputFile] = (),
) -> MonitorReport:
    """Compare two frames with :func:`drift_report` and wrap the result with metadata.

    Parameters
    ----------
    reference, current:
        The frames; the selected columns must be in both.
    target:
        A label column: left out of the features, reported as ``target`` drift.
    columns:
        The feature columns to compare (default: every reference column but ``target``).
    stattests, thresholds, compatibility, drift_share:
        As for :func:`drift_report`; keys may name the target column too.
    inputs:
        The files the frames came from, for the metadata.

    Returns
    -------
    MonitorReport

    Raises
    ------
    DataError
        A named column (``columns``, ``target``, a stattest or threshold key) is not in the
        reference or current frame; and whatever :func:`drift_report` raises.
    ConfigError
        As :func:`drift_report`; ``target`` also listed in ``columns``; no column to compare.
    """
    stattests = dict(stattests or {})
    thresholds = dict(thresholds or {})
    names = [str(c) for c in reference.columns]
    if target is not None and target not in names:
        raise DataError(f"--target {target!r} is not a reference column; columns: {names}")
    if columns is None:
        selected = [c for c in names if c != target]
    else:
        selected = list(dict.fromkeys(columns))
        unknown = [c for c in selected if c not in names]
        if unknown:
            raise DataError(f"--columns names columns not in the reference: {unknown}")
        if target is not None and target in selected:
            raise ConfigError(f"--target {target!r} is also in --columns; name it once")
    if not selected:
        raise ConfigError("no feature column to compare")
    wanted = set(selected) | ({target} if target else set())
    for label, mapping in (("--stattest", stattests), ("--threshold", thresholds)):
        stray = sorted(set(mapping) - wanted)
        if stray:
            raise DataError(f"{label} names columns that are not compared: {stray}")
    missing = [c for c in sorted(wanted) if c not in set(map(str, current.columns))]
    if missing:
        raise DataError(f"the current data lacks columns: {missing}")

    def part(cols: list[str]) -> DriftReport:
        return drift_report(
            reference[cols],
            current[cols],
            stattests={c: stattests[c] for c in cols if c in stattests},
            thresholds={c: thresholds[c] for c in cols if c in thresholds},
            compatibility=compatibility,
            drift_share=drift_share,
        )

    drift = part(selected)
    target_drift = part([target]).columns[0] if target is not None else None
    return MonitorReport(
        drift=drift,
        source="datasets",
        inputs=tuple(inputs),
        created_at=_now(),
        bastion_version=_version(),
        target=target_drift,
    )


def report_from_files(
    reference: Path,
    current: Path,
    *,
    target: str | None = None,
    columns: Sequence[str] | None = None,
    stattests: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    compatibility: str | None = None,
    drift_share: float = DATASET_DRIFT_SHARE,
) -> MonitorReport:
    """Read two CSV / Parquet files and compare them (see :func:`report_from_frames`).

    Raises
    ------
    DataError
        A file is missing, unreadable or empty (the message names it); see
        :func:`report_from_frames` for the rest.

    Example
    -------
    >>> report = report_from_files(Path("train.csv"), Path("batch.csv"))  # doctest: +SKIP
    >>> report.dataset_drift, [c.column for c in report.drift.columns if c.drifted]
    """
    from bastion.data.dataset import read_table, sha256_file

    ref = read_table(reference)
    cur = read_table(current)
    inputs = (
        InputFile("reference", str(reference), sha256_file(reference), len(ref)),
        InputFile("current", str(current), sha256_file(current), len(cur)),
    )
    return report_from_frames(
        ref,
        cur,
        target=target,
        columns=columns,
        stattests=stattests,
        thresholds=thresholds,
        compatibility=compatibility,
        drift_share=drift_share,
        inputs=inputs,
    )


def report_from_log(
    reference: Path,
    logs: Sequence[Path],
    *,
    model: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    skip_bad_lines: bool = False,
    target: str | None = None,
    columns: Sequence[str] | None = None,
    stattests: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    compatibility: str | None = None,
    drift_share: float = DATASET_DRIFT_SHARE,
) -> MonitorReport:
    """Compare a reference file with the rows of the gateway's prediction log.

    Parameters
    ----------
    reference:
        The reference data, CSV or Parquet.
    logs:
        Prediction-log files, or folders of them (see
        :func:`bastion.monitoring.prediction_log.read_prediction_log`).
    model, since, until, skip_bad_lines:
        Which lines to read: one model (default: the only one logged), ``since <= ts <
        until``, and whether a malformed line is skipped (counted) rather than an error.
    target:
        The reference's label column; the logged predicted labels are compared with it.
    columns:
        Feature columns (default: the logged features the reference holds, minus ``target``).
    stattests, thresholds, compatibility, drift_share:
        As for :func:`report_from_frames`.

    Raises
    ------
    DataError
        A file is missing or unreadable, a log line is malformed (naming the file and line)
        and not skipped, the logs hold no request that passes the filters, or several models
        and no ``model``; no logged feature is a reference column; as
        :func:`report_from_frames`.
    ConfigError
        As :func:`report_from_frames`.

    Example
    -------
    >>> logs = [Path("logs")]
    >>> report = report_from_log(Path("train.csv"), logs, model="cancer")  # doctest: +SKIP
    """
    from bastion.data.dataset import read_table, sha256_file
    from bastion.monitoring.prediction_log import read_prediction_log

    ref = read_table(reference)
    log = read_prediction_log(
        logs, model=model, since=since, until=until, skip_bad_lines=skip_bad_lines
    )
    current = log.frame
    if target is not None:
        if target in current.columns:
            raise DataError(f"--target {target!r} is a logged input feature, not a label")
        current = current.assign(**{target: log.labels})
    if columns is None:
        logged = set(map(str, log.frame.columns))
        columns = [c for c in map(str, ref.columns) if c in logged and c != target]
        if not columns:
            raise DataError(
                f"none of the logged features {sorted(logged)[:10]} is a column of {reference}"
            )
    inputs = (
        InputFile("reference", str(reference), sha256_file(reference), len(ref)),
        *(InputFile("prediction-log", str(f.path), f.sha256, f.rows) for f in log.files),
    )
    report = report_from_frames(
        ref,
        current,
        target=target,
        columns=columns,
        stattests=stattests,
        thresholds=thresholds,
        compatibility=compatibility,
        drift_share=drift_share,
        inputs=inputs,
    )
    return dataclasses.replace(report, source="prediction-log", prediction_log=log.summary())


def report_from_snapshot(
    path: Path,
    *,
    columns: Sequence[str] | None = None,
    stattests: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    drift_share: float = DATASET_DRIFT_SHARE,
) -> MonitorReport:
    """Report the drift a gateway computed: a saved ``GET /v2/models/{name}/monitor`` body.

    Parameters
    ----------
    path:
        The JSON file (``{"release": ..., "n_rows": ..., "features": [{"feature", "psi",
        "jensenshannon", "n", "drifted"}, ...], ...}``).
    columns:
        Features to report (default: every feature in the snapshot).
    stattests:
        Feature -> ``"psi"`` (default) or ``"jensenshannon"``: the statistic that decides it.
    thresholds:
        Feature -> threshold; default the snapshot's ``psi_threshold`` when present, else
        :data:`GATEWAY_PSI_THRESHOLD`, for PSI, and 0.1 for Jensen-Shannon.
    drift_share:
        Share of drifted features at which the dataset verdict is drift.

    Raises
    ------
    DataError
        The file is missing, not JSON, not a monitor snapshot, from a model served without
        monitoring, or holds no feature; a named feature is not in it.
    ConfigError
        A stattest other than psi / jensenshannon; a bad ``drift_share``.
    """
    from bastion.data.dataset import sha256_file

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a JSON file ({err})") from err
    if not isinstance(body, dict):
        raise DataError(f"{path}: expected a JSON object from GET /v2/models/NAME/monitor")
    if body.get("monitoring") is False:
        raise DataError(f"{path}: the model is served without monitoring (no reference profile)")
    features = _snapshot_features(path, body.get("features"))
    names = [f["feature"] for f in features]
    if columns is not None:
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise DataError(f"--columns names features not in the snapshot: {unknown}")
        keep = set(columns)
        features = [f for f in features if f["feature"] in keep]
    stattests = dict(stattests or {})
    thresholds = dict(thresholds or {})
    chosen = {f["feature"] for f in features}
    for label, mapping in (("--stattest", stattests), ("--threshold", thresholds)):
        stray = sorted(set(mapping) - chosen)
        if stray:
            raise DataError(f"{label} names features not in the report: {stray}")
    for feature, test in stattests.items():
        if test not in _SNAPSHOT_STATTESTS:
            raise ConfigError(
                f"--stattest {feature}={test}: a gateway snapshot holds only "
                f"{list(_SNAPSHOT_STATTESTS)}"
            )
    if not 0.0 < drift_share <= 1.0:
        raise ConfigError(f"drift_share must be in (0, 1], received {drift_share!r}")
    psi_default = _number(body.get("psi_threshold"), GATEWAY_PSI_THRESHOLD)
    rows = []
    for f in features:
        name = f["feature"]
        test = stattests.get(name, "psi")
        default = psi_default if test == "psi" else DEFAULT_THRESHOLDS[test]
        threshold = float(thresholds.get(name, default))
        statistic = float(f[test])
        rows.append(
            ColumnDrift(name, "numeric", test, statistic, None, threshold, statistic >= threshold)
        )
    extra = {k: v for k, v in body.items() if k != "features"}
    extra["features"] = features
    n_rows = body.get("n_rows")
    return MonitorReport(
        drift=DriftReport(tuple(rows), compatibility=None, drift_share=drift_share),
        source="gateway-snapshot",
        inputs=(
            InputFile(
                "snapshot", str(path), sha256_file(path), int(n_rows) if n_rows is not None else 0
            ),
        ),
        created_at=_now(),
        bastion_version=_version(),
        snapshot=extra,
    )


def _snapshot_features(path: Path, raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise DataError(f"{path}: not a monitor snapshot: no 'features' list")
    if not raw:
        raise DataError(f"{path}: the snapshot holds no feature drift (no traffic in the window?)")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(
                {
                    "feature": str(item["feature"]),
                    "psi": float(item["psi"]),
                    "jensenshannon": float(item["jensenshannon"]),
                    "n": int(item.get("n", 0)),
                    "drifted": bool(item.get("drifted", False)),
                }
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"{path}: features[{i}] needs 'feature', 'psi' and 'jensenshannon' ({err!r})"
            ) from err
    return out


def _number(value: Any, default: float) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _version() -> str:
    from bastion import __version__

    return __version__


# ---------------------------------------------------------------------------------------------
# Rendering


def render_json(report: MonitorReport) -> str:
    """``report.to_dict()`` as indented JSON (non-finite numbers as ``null``)."""
    return json.dumps(_finite(report.to_dict()), indent=2, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    # A p-value or distance can be inf / NaN; strict JSON has neither.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def _bar(column: ColumnDrift) -> dict[str, Any]:
    """Geometry of one column's bar: score in units of its threshold, line at _LINE_X."""
    if column.p_value is not None:
        # -log10 turns "p below threshold" into "bar past the line", as for distances.
        value = math.inf if column.p_value <= 0 else -math.log10(column.p_value)
        limit = -math.log10(column.threshold) if 0 < column.threshold < 1 else math.inf
        measure = "-log10 p"
    else:
        value, limit, measure = column.statistic, column.threshold, column.stattest
    if math.isnan(value):
        ratio = 0.0
    elif limit <= 0 or math.isinf(limit):
        ratio = 0.0 if math.isinf(limit) else (math.inf if value > 0 else 0.0)
    else:
        ratio = value / limit
    width = min(max(ratio, 0.0) * _LINE_X, _BAR_W)
    return {
        "width": f"{width:.1f}",
        "clipped": width >= _BAR_W,
        "line_x": f"{_LINE_X:.0f}",
        "total": f"{_BAR_W:.0f}",
        "title": (
            f"{column.column}: {measure} {_fmt(value)}, threshold {_fmt(limit)}"
            f" ({'drift' if column.drifted else 'no drift'})"
        ),
    }


def _row(column: ColumnDrift, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "column": column.column,
        "kind": column.kind,
        "stattest": column.stattest,
        "statistic": _fmt(column.statistic),
        "p_value": _fmt(column.p_value),
        "threshold": _fmt(column.threshold),
        "rule": "p-value below" if column.stattest in _P_VALUE_TESTS else "at or above",
        "drifted": column.drifted,
        "bar": _bar(column),
        "psi": _fmt(extra["psi"]) if extra else None,
        "js": _fmt(extra["jensenshannon"]) if extra else None,
        "n": extra["n"] if extra else None,
    }


def _context(report: MonitorReport) -> dict[str, Any]:
    drift = report.drift
    snap = report.snapshot or {}
    per_feature = {f["feature"]: f for f in snap.get("features", [])}
    rows = [_row(c, per_feature.get(c.column)) for c in drift.columns]
    snapshot_facts = []
    if report.snapshot is not None:
        for key, label in (
            ("release", "Release"),
            ("n_rows", "Rows in the window"),
            ("prediction_js", "Prediction drift (Jensen-Shannon)"),
            ("accuracy", "Accuracy (feedback)"),
            ("n_feedback", "Feedback labels"),
            ("psi_threshold", "Gateway PSI threshold"),
        ):
            if key in snap:
                value = snap[key]
                text = _fmt(value) if isinstance(value, float) else str(value)
                snapshot_facts.append((label, "—" if value is None else text))
    log_facts = []
    if report.prediction_log is not None:
        log = report.prediction_log
        for key, label in (
            ("model", "Model"),
            ("releases", "Releases"),
            ("requests", "Requests"),
            ("rows", "Rows"),
            ("first_ts", "First request"),
            ("last_ts", "Last request"),
            ("since", "Since (filter)"),
            ("until", "Until (filter)"),
            ("skipped_lines", "Malformed lines skipped"),
        ):
            value = log.get(key)
            if value is not None:
                text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
                log_facts.append((label, text))
    return {
        "bastion_version": report.bastion_version,
        "created_at": report.created_at,
        "source": report.source,
        "source_label": {
            "datasets": "two datasets",
            "gateway-snapshot": "gateway snapshot",
            "prediction-log": "reference vs prediction log",
        }[report.source],
        "log_facts": log_facts,
        "compatibility": drift.compatibility or "default",
        "dataset_drift": drift.dataset_drift,
        "n_columns": len(drift.columns),
        "n_drifted": drift.n_drifted,
        "share": f"{drift.share_drifted:.0%}",
        "drift_share": f"{drift.drift_share:.0%}",
        "drifted_columns": [c.column for c in drift.columns if c.drifted],
        "rows": rows,
        "target": _row(report.target, None) if report.target is not None else None,
        "inputs": [f.to_dict() for f in report.inputs],
        "snapshot_facts": snapshot_facts,
        "is_snapshot": report.snapshot is not None,
    }


@cache
def _template() -> jinja2.Template:
    from importlib import resources

    import jinja2

    text = resources.files("bastion").joinpath("templates/monitor_report.html.j2")
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a typo in the template fails loudly in tests
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.from_string(text.read_text("utf-8"))


def render_html(report: MonitorReport) -> str:
    """The self-contained HTML page of ``report`` (inline CSS and SVG, no script)."""
    return _template().render(**_context(report))

"""``bastion monitor``: offline drift reports (see :mod:`bastion.monitoring.report`).

``bastion monitor report`` compares a reference dataset with a current one or with the rows
of the gateway's opt-in prediction log, or renders a snapshot saved from the gateway's
``GET /v2/models/{name}/monitor``, as HTML or JSON.
Exit codes: 0 no dataset drift, 1 dataset drift, 2 a usage or input error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bastion.exceptions import BastionError, ConfigError

__all__ = ["app", "report_command", "run_report"]

EXIT_OK, EXIT_DRIFT, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    help=(
        "Watch production data offline: drift reports from two datasets, from the gateway's "
        "prediction log or from a gateway snapshot. Exit codes: 0 no dataset drift, 1 dataset "
        "drift, 2 usage or input error."
    ),
    no_args_is_help=True,
)


class ReportFormat(StrEnum):
    html = "html"
    json = "json"


class Compatibility(StrEnum):
    evidently = "evidently"


@app.command("report")
def report_command(
    reference: Annotated[
        Path | None,
        typer.Option("--reference", "-r", help="Reference data (training set), CSV or Parquet."),
    ] = None,
    current: Annotated[
        Path | None,
        typer.Option("--current", "-c", help="Current data (a production batch), CSV or Parquet."),
    ] = None,
    current_snapshot: Annotated[
        Path | None,
        typer.Option(
            "--current-snapshot",
            help=(
                "Instead of two datasets: a JSON file saved from the gateway's "
                "GET /v2/models/NAME/monitor. Its per-feature PSI and Jensen-Shannon values "
                "(computed against the release's reference profile) are reported; no "
                "--reference is needed."
            ),
        ),
    ] = None,
    current_log: Annotated[
        list[Path] | None,
        typer.Option(
            "--current-log",
            help=(
                "Instead of --current: the gateway's prediction log (bastion serve "
                "--log-inputs DIR), a file or a folder of its rotated files; repeat the option "
                "for more. The logged rows become the current data and are compared with "
                "--reference as --current would be."
            ),
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="With --current-log: the model whose requests to read (needed when the log "
            "holds several).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="With --current-log: only requests at or after this ISO 8601 time (UTC when "
            "it names no offset), e.g. 2025-01-31T00:00:00Z.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="With --current-log: only requests before this ISO time."),
    ] = None,
    skip_bad_lines: Annotated[
        bool,
        typer.Option(
            "--skip-bad-lines",
            help=(
                "With --current-log: skip malformed lines (a write cut short by a crash), "
                "counting them in the report. Default: a malformed line is an error (exit 2) "
                "naming the file and the line."
            ),
        ),
    ] = False,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="Label column: reported as target drift, not a feature (with --current-log: "
            "the predicted labels are compared with it).",
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option("--columns", help="Comma-separated columns to compare (default: all)."),
    ] = None,
    stattest: Annotated[
        list[str] | None,
        typer.Option(
            "--stattest",
            help=(
                "COLUMN=TEST (repeatable): psi, jensenshannon, wasserstein, ks, chisquare, "
                "z (evidently only). A snapshot holds psi and jensenshannon."
            ),
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="COLUMN=VALUE (repeatable): the column's threshold."),
    ] = None,
    compatibility: Annotated[
        Compatibility | None,
        typer.Option("--compatibility", help="Reproduce Evidently 0.7's DataDriftPreset."),
    ] = None,
    drift_share: Annotated[
        float,
        typer.Option("--drift-share", help="Share of drifted columns that makes dataset drift."),
    ] = 0.5,
    output_format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="html or json.")
    ] = ReportFormat.html,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Build a drift report offline, from two datasets, from the gateway's prediction log, or
    from a gateway snapshot.

    Exit 0: no dataset drift; 1: dataset drift (share of drifted columns >= --drift-share);
    2: usage or input error (a malformed log line too, unless --skip-bad-lines).
    """
    try:
        code = run_report(
            reference=reference,
            current=current,
            current_snapshot=current_snapshot,
            current_log=current_log or [],
            model=model,
            since=since,
            until=until,
            skip_bad_lines=skip_bad_lines,
            target=target,
            columns=columns.split(",") if columns is not None else None,
            stattests=stattest or [],
            thresholds=threshold or [],
            compatibility=compatibility.value if compatibility is not None else None,
            drift_share=drift_share,
            output_format=output_format.value,
            out=out,
        )
    except BastionError as err:
        # exit 2 with a one-line message however the sub-app is mounted
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_USAGE) from err
    raise typer.Exit(code)


def run_report(
    *,
    reference: Path | None,
    current: Path | None,
    current_snapshot: Path | None = None,
    current_log: Sequence[Path] = (),
    model: str | None = None,
    since: str | None = None,
    until: str | None = None,
    skip_bad_lines: bool = False,
    target: str | None = None,
    columns: Sequence[str] | None = None,
    stattests: Sequence[str] = (),
    thresholds: Sequence[str] = (),
    compatibility: str | None = None,
    drift_share: float = 0.5,
    output_format: str = "html",
    out: Path | None = None,
) -> int:
    """Build, write and summarise the report; return the exit code (0 or 1).

    Raises:
        ConfigError: inconsistent options or a malformed ``COLUMN=VALUE``.
        DataError: a missing or unreadable file, an unknown column.
    """
    from bastion.monitoring.report import (
        render_html,
        render_json,
        report_from_files,
        report_from_log,
        report_from_snapshot,
    )

    tests = _assignments(stattests, "--stattest")
    limits = {
        k: _float(v, f"--threshold {k}") for k, v in _assignments(thresholds, "--threshold").items()
    }
    cols = [c.strip() for c in columns if c.strip()] if columns is not None else None
    if columns is not None and not cols:
        raise ConfigError("--columns is empty; name at least one column")
    log_options = [
        flag
        for flag, value in (
            ("--model", model),
            ("--since", since),
            ("--until", until),
            ("--skip-bad-lines", skip_bad_lines or None),
        )
        if value is not None
    ]
    if log_options and not current_log:
        raise ConfigError(f"{', '.join(log_options)} need --current-log")
    if current_log:
        if current is not None or current_snapshot is not None:
            raise ConfigError(
                "--current-log replaces --current and --current-snapshot; pass one of them"
            )
        if reference is None:
            raise ConfigError("--current-log needs --reference (the data to compare with)")
        from bastion.monitoring.prediction_log import parse_timestamp

        start = parse_timestamp(since, "--since") if since is not None else None
        end = parse_timestamp(until, "--until") if until is not None else None
        if start is not None and end is not None and start >= end:
            raise ConfigError(f"--since {since} is not before --until {until}")
        report = report_from_log(
            reference,
            list(current_log),
            model=model,
            since=start,
            until=end,
            skip_bad_lines=skip_bad_lines,
            target=target,
            columns=cols,
            stattests=tests,
            thresholds=limits,
            compatibility=compatibility,
            drift_share=drift_share,
        )
        log = report.prediction_log or {}
        if log.get("skipped_lines"):
            typer.echo(
                f"skipped {log['skipped_lines']} malformed log line(s): "
                + "; ".join(log.get("skipped_examples", [])),
                err=True,
            )
    elif current_snapshot is not None:
        if reference is not None or current is not None:
            raise ConfigError(
                "--current-snapshot replaces --reference and --current (the gateway compared "
                "against the release's reference profile already); pass one or the other"
            )
        if target is not None or compatibility is not None:
            raise ConfigError("--target and --compatibility need two datasets, not a snapshot")
        report = report_from_snapshot(
            current_snapshot,
            columns=cols,
            stattests=tests,
            thresholds=limits,
            drift_share=drift_share,
        )
    else:
        if reference is None or current is None:
            raise ConfigError(
                "pass --reference and --current (or --current-log), or --current-snapshot"
            )
        report = report_from_files(
            reference,
            current,
            target=target,
            columns=cols,
            stattests=tests,
            thresholds=limits,
            compatibility=compatibility,
            drift_share=drift_share,
        )
    text = render_json(report) if output_format == "json" else render_html(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    drift = report.drift
    drifted = [c.column for c in drift.columns if c.drifted]
    verdict = "dataset drift" if drift.dataset_drift else "no dataset drift"
    typer.echo(
        f"{verdict}: {drift.n_drifted}/{len(drift.columns)} columns drifted"
        + (f" ({', '.join(drifted)})" if drifted else "")
        + (f"; wrote {out}" if out is not None else ""),
        err=True,
    )
    return EXIT_DRIFT if report.dataset_drift else EXIT_OK


def _assignments(values: Sequence[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        column, sep, setting = value.partition("=")
        if not sep or not column.strip() or not setting.strip():
            raise ConfigError(f"{option} expects COLUMN=VALUE, received {value!r}")
        out[column.strip()] = setting.strip()
    return out


def _float(value: str, option: str) -> float:
    try:
        return float(value)
    except ValueError as err:
        raise ConfigError(f"{option} expects a number, received {value!r}") from err

"""Terminal output shared by the commands: progress bars and the findings table."""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from bastion.report import Report


def _make_console(stderr: bool = False) -> Console:
    # CI logs are not terminals; rich would then wrap tables at 80 columns and fold names
    probe = Console(stderr=stderr)
    if probe.is_terminal or "COLUMNS" in os.environ:
        return probe
    return Console(stderr=stderr, width=200)


console = _make_console()
err_console = _make_console(stderr=True)

_STATUS_STYLE = {
    "pass": "green",
    "warn": "yellow",
    "fail": "bold red",
    "error": "bold magenta",
    "skipped": "dim",
}


class ProgressBar:
    """A rich progress bar on stderr; silent when stderr is not a terminal."""

    def __init__(self, total: int, description: str = "checks") -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[label]}", markup=False),  # stages name features
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        )
        self._task = self._progress.add_task(description, total=total, label="")
        self._progress.start()

    def advance(self, label: str = "") -> None:
        self._progress.update(self._task, advance=1, label=label)

    def detail(self, label: str) -> None:
        """Show what the running step is doing (an attack's queries and time so far)."""
        self._progress.update(self._task, label=label)

    def close(self) -> None:
        self._progress.stop()


def findings_table(
    report: Report,
    show_passed: bool = True,
    title: str | None = None,
    passes_shown_of: Collection[str] = (),
) -> Table:
    """A compact table: one row per finding, the key metric beside its limit, under ``title``
    (default: ``bastion check: <project>``). Without ``show_passed``, passes are left out
    but those of the report sections named in ``passes_shown_of``."""
    from bastion.reporting.writers import category_of

    heading = title if title is not None else f"bastion check: {report.project}"
    table = Table(title=Text(heading, style="table.title"), title_justify="left")
    table.add_column("check")
    table.add_column("subject", overflow="fold")
    table.add_column("status")
    table.add_column("severity")
    table.add_column("metric", overflow="fold")
    table.add_column("message", overflow="fold", max_width=70)
    for f in report.findings:
        if (
            not show_passed
            and f.status.value == "pass"
            and category_of(f.check_id) not in passes_shown_of
        ):
            continue
        status = f.status.value + (" (waived)" if f.waived else "")
        style = "yellow" if f.waived else _STATUS_STYLE.get(f.status.value, "")
        # Text, not markup: subjects and messages quote feature names and file paths, where
        # "radius[/mm]" broke the table (and the exit code) and "[bold red]" restyled it
        table.add_row(
            Text(f.check_id),
            Text(f.subject),
            Text(status, style=style),
            f.severity.value,
            Text(_key_metric(f.metrics, f.threshold)),
            Text(f.message),
        )
    return table


# a finding's headline figure where no limit names one (an attack run report-only)
_HEADLINE = ("robust_accuracy", "fidelity", "auc", "advantage", "accuracy_drop", "precision")


# limits that judge a metric named otherwise: the name's prefix showed the raw success rate
# beside max_backdoor_success, marked pass above its limit (the lift is judged; a review)
_JUDGED_BY = {"max_backdoor_success": "backdoor_lift"}

# settings a threshold records beside its limits (EXT001's query budget, at which its fidelity
# is judged): no limit, and with max_fidelity off the table showed budget=100 (a review)
_NOT_LIMITS = frozenset({"budget"})


def _key_metric(metrics: object, threshold: object) -> str:
    """The metric of the finding's limit that was crossed, else of its first limit, else its
    headline figure (a substring match took the first metric near any limit's name: POI002
    failed on backdoor success showed the accuracy drop, within its limit)."""
    if not isinstance(metrics, dict) or not metrics:
        return ""
    limits = threshold if isinstance(threshold, dict) else {}
    judged: list[tuple[bool, str]] = []
    for key, limit in limits.items():
        if isinstance(limit, bool) or not isinstance(limit, int | float) or key in _NOT_LIMITS:
            continue  # no limit set (None), not a number, or a setting
        base = str(key).removeprefix("max_").removeprefix("min_")
        name = _JUDGED_BY.get(str(key))
        if name not in metrics:
            name = (
                base if base in metrics else next((m for m in metrics if m.startswith(base)), None)
            )
        if name is None:  # "max_fraction" over "duplicate_fraction", "min_ratio" over a ratio
            name = next((m for m in metrics if m.endswith("_" + base)), None)
        if name is None:  # a limit named otherwise ("psi_limit" over "psi")
            name = next((m for m in metrics if m in str(key) or str(key) in m), None)
        if name is None:
            continue
        value = metrics[name]
        crossed = isinstance(value, int | float) and (
            (str(key).startswith("max_") and value > limit)
            or (str(key).startswith("min_") and value < limit)
        )
        judged.append((crossed, name))
    if judged:
        name = next((n for crossed, n in judged if crossed), judged[0][1])
    else:
        name = next((m for m in _HEADLINE if m in metrics), next(iter(metrics)))
    value = metrics[name]
    text = f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
    return text


def verdict_line(report: Report) -> str:
    v = report.verdict
    counts = ", ".join(f"{n} {k}" for k, n in v.counts.items() if n)
    if v.passed:
        return f"[bold green]PASSED[/] (fail-on {v.fail_on.value}): {counts}"
    return f"[bold red]FAILED[/] (fail-on {v.fail_on.value}): {counts}"

"""What the CLI commands do, kept out of ``main.py`` so ``bastion --help`` stays light."""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.cli._console import ProgressBar, console, err_console, findings_table, verdict_line
from bastion.exceptions import ConfigError
from bastion.findings import Severity

if TYPE_CHECKING:
    from bastion.report import Report

__all__ = ["profile_file", "run_check", "validate_file", "write_starter_policy"]


def write_starter_policy(path: Path, *, force: bool = False) -> None:
    """Write the commented starter policy shipped with the package."""
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists (use --force to overwrite)")
    text = resources.files("bastion").joinpath("templates/bastion.yaml").read_text("utf-8")
    path.write_text(text, encoding="utf-8")
    console.print(
        f"wrote {path}: edit data.train, data.test and model.path, then run "
        f"'bastion check -c {path}'",
        markup=False,
    )


def run_check(
    config: Path,
    out: Path,
    *,
    fail_on: str | None = None,
    formats: list[str] | None = None,
    show_passed: bool = True,
    passes_shown_of: Collection[str] = (),
) -> int:
    """Run the gate for ``config``, write the reports, print the summary; return the exit code.
    Without ``show_passed``, the summary leaves passes out but those of the report sections
    named in ``passes_shown_of``."""
    from bastion.config import load_policy
    from bastion.reporting.writers import write_reports
    from bastion.runner import run_gate

    policy = load_policy(config)
    chosen = formats or list(policy.spec.report.formats)
    report = run_gate(
        policy,
        fail_on=Severity(fail_on) if fail_on else None,
        progress=lambda total: ProgressBar(total, "bastion check"),
    )
    written = write_reports(report, out, chosen)
    console.print(findings_table(report, show_passed=show_passed, passes_shown_of=passes_shown_of))
    console.print(verdict_line(report))
    for reason in report.verdict.reasons:
        console.print(f"  - {reason}", markup=False)
    console.print(f"reports: {', '.join(str(p) for p in written.values())}", markup=False)
    _append_step_summary(report)
    return report.exit_code


def _append_step_summary(report: Report) -> None:
    """Append the Markdown summary to the CI job summary where the CI provides one (GitHub
    Actions), whether or not summary.md was among the formats written."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    from bastion.reporting.writers import render

    with Path(target).open("a", encoding="utf-8") as fh:
        fh.write(render(report, "markdown"))
        fh.write("\n")


def profile_file(file: Path, json_out: Path | None) -> None:
    """Print a one-pass profile of ``file``; optionally write its summary as JSON."""
    from rich.table import Table
    from rich.text import Text

    from bastion.data.dataset import Dataset
    from bastion.data.profile import Profile

    ds = Dataset.from_file(file)
    profile = Profile.from_frame(ds.frame)
    summary = profile.summary()
    # Text, not markup: column names and values are the user's data ("a[/b]" broke it)
    title = f"{file} ({profile.n_rows} rows, sha256 {ds.content_hash[:12]})"
    table = Table(title=Text(title, style="table.title"))
    for header in ("column", "kind", "nulls", "min", "max", "mean", "std", "distinct", "top"):
        table.add_column(header, overflow="fold")
    for column, col in profile.columns.items():
        top = ", ".join(f"{v} ({n})" for v, n in col.top(3)) if col.kind != "numeric" else ""
        table.add_row(
            Text(str(column)),
            col.kind,
            f"{col.null_count}",
            _fmt(col.min),
            _fmt(col.max),
            _fmt(col.mean),
            _fmt(col.std),
            f"{col.distinct_estimate():.0f}",
            Text(top),
        )
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
        err_console.print(f"wrote {json_out}", markup=False)


def validate_file(file: Path, config: Path, fail_on: str | None) -> int:
    """Run the policy's data checks on one file, judged against the policy's train data."""
    from bastion.config import load_policy
    from bastion.data.dataset import Dataset
    from bastion.runner import load_inputs, run_gate

    policy = load_policy(config)
    data = policy.spec.data
    # named by file name, so it never shares a name (and a profile) with the reference "train"
    candidate = Dataset.from_file(
        file,
        name=file.name,
        target=(data.test.target if data.test and data.test.target else None) or data.target,
        sensitive=data.sensitive_features,
        non_features=data.non_features,
    )
    # the policy's train set, when it has one, is the reference for inferred ranges and
    # categories; the file under validation takes the place of the test set
    reference = None
    if data.train is not None and policy.resolve(data.train.path).resolve() != file.resolve():
        reference = Dataset.from_file(
            policy.resolve(data.train.path),
            name="train",
            target=data.train.target or data.target,
            sensitive=data.sensitive_features,
            non_features=data.non_features,
        )
    inputs = load_inputs(policy, train=reference, test=candidate, from_policy=False)
    report = run_gate(
        policy,
        inputs=inputs,
        fail_on=Severity(fail_on) if fail_on else None,
        categories=("data",),
        progress=lambda total: ProgressBar(total, "bastion data validate"),
    )
    console.print(findings_table(report))
    console.print(verdict_line(report))
    for reason in report.verdict.reasons:
        console.print(f"  - {reason}", markup=False)
    return report.exit_code


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"

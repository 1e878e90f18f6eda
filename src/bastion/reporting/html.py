"""``report.html``: one self-contained page for people.

Everything is inline: CSS in a ``<style>`` element and plots as inline SVG. The page loads
nothing (no scripts, stylesheets, fonts or images from elsewhere) and declares a
Content-Security-Policy that forbids it, so it can be archived, mailed or opened offline and
never calls out. The Jinja2 template (``bastion/templates/report.html.j2``) autoescapes
every value; only the SVG produced by :mod:`bastion.reporting.plots` is inserted verbatim.

Plots are drawn from the findings' aggregate evidence, recognised by shape:

- confusion matrix (MV003): ``{"labels": [...], "matrix": [[...]]}``;
- calibration curve (MV002): ``{"bins": [{"lower", "upper", "count", "mean_predicted",
  "fraction_positive"}]}``;
- per-group fairness bars (FA*): ``{"sensitive_features": [...], "by_group": [{"group",
  "count", "selection_rate", "tpr", "fpr", "precision"}]}``;
- histograms from ``report.profiles`` (``Profile.summary()`` per dataset): a column's
  ``histogram`` ``{"edges", "counts"}`` or, for categories, its ``top`` values; the first
  :data:`MAX_HISTOGRAMS` plottable columns per dataset.

Malformed or missing evidence never breaks the page: the plot is left out. Raw data rows
(``evidence["samples"]``) are shown only when the policy allowed them and they are present.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from bastion.findings import Finding, Status
from bastion.reporting import plots
from bastion.reporting.writers import (
    CATEGORIES,
    REPORTERS,
    ReportWriter,
    category_of,
    waiver_text,
)

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

    from bastion.report import Report

__all__ = ["MAX_HISTOGRAMS", "HtmlWriter", "format_number", "render_html"]

MAX_HISTOGRAMS = 12
"""Histogram panels drawn per dataset; the statistics table still lists every column."""

_GROUP_METRICS = ("selection_rate", "tpr", "fpr", "precision")
_EVIDENCE_CHARS = 6_000  # evidence shown as JSON is cut here: the page stays readable
_SAMPLE_ROWS = 50
_STATUS_ORDER = {s: i for i, s in enumerate(("error", "fail", "warn", "skipped", "pass"))}


# -- small formatting helpers -----------------------------------------------------------------


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None for anything else (bools, strings, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def format_number(value: Any) -> str:
    """A metric as reports and model cards show it: integers with separators, floats with 4
    significant digits, None and non-finite floats as ``n/a``.

    Example::

        format_number(0.9298245614035088)  # '0.9298'
        format_number(1234)                # '1,234'
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    return str(value)


def _fmt(value: Any) -> str:
    """:func:`format_number`, with containers as JSON."""
    if value is None or isinstance(value, bool | int | float | str):
        return format_number(value)
    return json.dumps(value, default=str)


def _cell(column: Any, value: Any) -> str:
    """A sample table's cell: an adversarial example's feature changes as
    ``name: original -> adversarial (+change[, +z std])``, one per line, with 6 significant
    digits (4 hid a change of 2 on 50,000); else :func:`_fmt`."""
    if column != "changes" or not isinstance(value, list) or not value:
        return _fmt(value)
    lines = []
    for change in value:
        numbers = (
            [change.get(k) for k in ("original", "adversarial", "change")]
            if isinstance(change, Mapping)
            else []
        )
        if len(numbers) != 3 or not all(_is_number(v) for v in numbers):
            return _fmt(value)
        original, adversarial, shift = numbers
        text = f"{shift:+.4g}"
        if _is_number(change.get("change_std")):
            text += f", {change['change_std']:+.3g} std"
        lines.append(f"{change.get('feature')}: {original:.6g} \u2192 {adversarial:.6g} ({text})")
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _pretty_json(value: Any, limit: int = _EVIDENCE_CHARS) -> str:
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more characters in report.json)"


# -- evidence -> plot data (validated; None when the shape does not fit) --------------------


def _confusion(evidence: Mapping[str, Any]) -> tuple[list[str], list[list[float]]] | None:
    labels, matrix = evidence.get("labels"), evidence.get("matrix")
    if not isinstance(labels, list) or not isinstance(matrix, list) or not labels:
        return None
    n = len(labels)
    if len(matrix) != n or not all(isinstance(r, list) and len(r) == n for r in matrix):
        return None
    values = [[_number(v) for v in row] for row in matrix]
    if any(v is None for row in values for v in row):
        return None
    return [str(label) for label in labels], [[v or 0.0 for v in row] for row in values]


def _calibration(evidence: Mapping[str, Any]) -> list[dict[str, float]] | None:
    bins = evidence.get("bins")
    if not isinstance(bins, list) or not bins:
        return None
    out = []
    for b in bins:
        if not isinstance(b, Mapping):
            return None
        lower, upper, count = (
            _number(b.get("lower")),
            _number(b.get("upper")),
            _number(b.get("count")),
        )
        if lower is None or upper is None or count is None or upper < lower:
            return None
        if "mean_predicted" not in b or "fraction_positive" not in b:
            return None
        mean, frac = _number(b.get("mean_predicted")), _number(b.get("fraction_positive"))
        out.append(
            {
                "lower": lower,
                "upper": upper,
                "count": count,
                "mean_predicted": math.nan if mean is None else mean,
                "fraction_positive": math.nan if frac is None else frac,
            }
        )
    return out if any(b["count"] > 0 for b in out) else None


def _group_series(
    evidence: Mapping[str, Any],
) -> tuple[list[str], dict[str, list[float | None]]] | None:
    rows = evidence.get("by_group")
    if not isinstance(rows, list) or not rows:
        return None
    if not all(isinstance(r, Mapping) and "group" in r for r in rows):
        return None
    groups = [str(r["group"]) for r in rows]
    series = {m: [_number(r.get(m)) for r in rows] for m in _GROUP_METRICS}
    series = {m: vs for m, vs in series.items() if any(v is not None for v in vs)}
    return (groups, series) if series else None


def _top_pairs(top: Any) -> list[tuple[str, float]]:
    """Top categories in any of the shapes a profile may use: mapping, pairs or records."""
    pairs: list[tuple[Any, Any]] = []
    if isinstance(top, Mapping):
        pairs = list(top.items())
    elif isinstance(top, list):
        for item in top:
            if isinstance(item, list | tuple) and len(item) == 2:
                pairs.append((item[0], item[1]))
            elif isinstance(item, Mapping):
                value = next((item[k] for k in ("value", "category", "name") if k in item), None)
                pairs.append((value, item.get("count")))
    out = [(str(v), c) for v, c in ((v, _number(c)) for v, c in pairs) if c is not None]
    return out[:10]


def _numeric_panel(
    edges: list[Any], counts: list[Any], low: float | None, high: float | None
) -> dict[str, Any] | None:
    """Closed, increasing bin edges and counts, or None when the histogram does not fit.

    Two layouts are accepted: ``len(edges) == len(counts) + 1`` (every edge; infinite ends
    may be ``None``) and ``len(counts) == len(edges) + 1`` (interior cut points with open
    outer bins, as ``Profile.summary()`` writes them). Open ends are closed at the column's
    observed ``min`` / ``max``; bins of zero width are dropped.
    """
    e, c = [_number(x) for x in edges], [_number(x) for x in counts]
    if not c or any(x is None for x in c):
        return None
    if len(c) == len(e) + 1:
        e = [low, *e, high]
    elif len(c) == len(e) - 1:
        e[0] = low if e[0] is None else e[0]
        e[-1] = high if e[-1] is None else e[-1]
    else:
        return None
    closed = [x for x in e if x is not None]
    if len(closed) != len(e) or any(b < a for a, b in itertools.pairwise(closed)):
        return None
    keep = [i for i in range(len(c)) if closed[i + 1] > closed[i]]
    if not keep:
        return None
    return {
        "edges": [closed[keep[0]]] + [closed[i + 1] for i in keep],
        "counts": [c[i] for i in keep],
    }


def _histogram_panel(stats: Mapping[str, Any]) -> dict[str, Any] | None:
    hist = stats.get("histogram")
    hist = hist if isinstance(hist, Mapping) else {}
    edges, counts = hist.get("edges"), hist.get("counts")
    if isinstance(edges, list) and isinstance(counts, list):
        panel = _numeric_panel(edges, counts, _number(stats.get("min")), _number(stats.get("max")))
        if panel is not None:
            return panel
    pairs = _top_pairs(stats.get("top"))
    categories = hist.get("categories")
    if (
        not pairs
        and isinstance(categories, list)
        and isinstance(counts, list)
        and len(categories) == len(counts)
    ):
        pairs = _top_pairs(sorted(zip(categories, counts, strict=True), key=_by_count))
    if pairs:
        return {"categories": [p[0] for p in pairs], "counts": [p[1] for p in pairs]}
    return None


def _by_count(pair: tuple[Any, Any]) -> float:
    count = _number(pair[1])
    return -count if count is not None else 0.0


# -- view model ---------------------------------------------------------------------------------


def _markup(svg: str) -> Markup:
    from markupsafe import Markup

    return Markup(svg)  # trusted: produced by matplotlib, which escapes every text it draws


def _finding_row(f: Finding, raw_rows_allowed: bool) -> dict[str, Any]:
    evidence = dict(f.evidence)
    samples = evidence.pop("samples", None) if raw_rows_allowed else None
    evidence.pop("samples", None)
    sample_table = None
    if isinstance(samples, list) and samples and all(isinstance(r, Mapping) for r in samples):
        columns = list(dict.fromkeys(k for r in samples[:_SAMPLE_ROWS] for k in r))
        sample_table = {
            "columns": [str(c) for c in columns],
            "rows": [[_cell(c, r.get(c)) for c in columns] for r in samples[:_SAMPLE_ROWS]],
            "more": max(0, len(samples) - _SAMPLE_ROWS),
        }
    return {
        "check_id": f.check_id,
        "title": f.title,
        "subject": f.subject,
        "status": f.status.value,
        "severity": f.severity.value,
        "message": f.message,
        "metrics": [(k, _fmt(v)) for k, v in f.metrics.items()],
        "threshold": [(k, _fmt(v)) for k, v in f.threshold.items()],
        "tags": list(f.tags),
        "duration": f"{f.duration_s:.3g} s",
        "waiver": waiver_text(f),
        "evidence": _pretty_json(evidence) if evidence else "",
        "samples_table": sample_table,
        "samples_text": (
            _pretty_json(samples) if samples is not None and sample_table is None else ""
        ),
    }


def _sort_key(f: Finding) -> tuple[int, int, str, str]:
    return (_STATUS_ORDER.get(f.status.value, 9), 1 if f.waived else 0, f.check_id, f.subject)


def _robustness_plots(f: Finding, where: str, index: int) -> list[dict[str, Any]]:
    """ADV001: the robustness curve, the mean change per feature (tabular, aggregate), and
    adversarial images when the report carries samples (raw rows allowed); EXT001: the
    fidelity-vs-budget curve."""
    out: list[dict[str, Any]] = []
    curve = f.evidence.get("robustness_curve")
    if isinstance(curve, list) and curve and all(isinstance(p, dict) for p in curve):
        _append_plot(
            out,
            "Robustness curve",
            f"{where}: share of all points still classified correctly, and share of correct "
            "points broken, as the attack radius grows.",
            lambda: plots.robustness_curve_svg(
                curve, str(f.evidence.get("eps_unit", "")), key=f"rob{index}"
            ),
        )
    units = f.evidence.get("perturbation_original_units")
    changes = units.get("mean_abs_change") if isinstance(units, dict) else None
    # tabular only: on images every pixel moves by about eps and the chart says nothing
    if isinstance(changes, dict) and changes and f.evidence.get("eps_unit") == "std":
        out.append(
            {
                "title": "What the attack changed",
                "caption": f"{where}: mean absolute change per feature over the successful "
                "adversarial examples, in each feature's own units (aggregate).",
                "svg": _markup(
                    plots.feature_changes_svg(changes, "mean |change|", key=f"chg{index}")
                ),
            }
        )
    fidelity = f.evidence.get("fidelity_curve")
    if isinstance(fidelity, list) and fidelity and all(isinstance(p, dict) for p in fidelity):
        _append_plot(
            out,
            "Model extraction: fidelity against queries",
            f"{where}: how often a copy trained on the model's answers agrees with it, as the "
            "attacker's query budget grows.",
            lambda: plots.fidelity_curve_svg(fidelity, key=f"ext{index}"),
        )
    samples = f.evidence.get("samples")
    # images only: a sample of one flat row (a model with input_shape (d,)) is no picture
    images = [
        s
        for s in (samples if isinstance(samples, list) else [])
        if isinstance(s, dict) and "original" in s and _depth(s["original"]) >= 2
    ]
    if images:
        _append_plot(
            out,
            "Adversarial examples",
            f"{where}: originals (top) and adversarial versions (bottom) with the model's labels.",
            lambda: plots.adversarial_images_svg(images, key=f"img{index}"),
        )
    return out


def _append_plot(
    out: list[dict[str, Any]], title: str, caption: str, draw: Callable[[], str]
) -> None:
    """Add one plot; evidence a drawing cannot read leaves it out, never breaks the page."""
    try:
        svg = draw()
    except (KeyError, TypeError, ValueError):
        return
    out.append({"title": title, "caption": caption, "svg": _markup(svg)})


def _depth(value: Any) -> int:
    """How many levels of lists ``value`` nests (2 for an image of rows)."""
    depth = 0
    while isinstance(value, list | tuple) and value:
        value, depth = value[0], depth + 1
    return depth


def _finding_plots(report: Report) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen_groups: dict[str, dict[str, Any]] = {}
    for index, f in enumerate(report.findings):
        where = f"{f.check_id} · {f.subject}" if f.subject else f.check_id
        cm = _confusion(f.evidence)
        if cm is not None:
            out.append(
                {
                    "title": "Confusion matrix",
                    "caption": f"{where}: rows are the true class, columns the prediction.",
                    "svg": _markup(plots.confusion_matrix_svg(*cm, key=f"cm{index}")),
                }
            )
        bins = _calibration(f.evidence)
        if bins is not None:
            out.append(
                {
                    "title": "Calibration curve",
                    "caption": f"{where}: observed fraction of positives per bin of predicted "
                    "probability; the dashed diagonal is perfect calibration.",
                    "svg": _markup(plots.calibration_svg(bins, key=f"cal{index}")),
                }
            )
        out.extend(_robustness_plots(f, where, index))
        grouped = _group_series(f.evidence)
        if grouped is not None:
            features = f.evidence.get("sensitive_features")
            names = ", ".join(map(str, features)) if isinstance(features, list) else ""
            # Several fairness checks share one per-group table: draw it once, credit all.
            signature = json.dumps([names, grouped], sort_keys=True, default=str)
            if signature in seen_groups:
                seen_groups[signature]["checks"].append(f.check_id)
                continue
            plot = {
                "title": f"Per-group metrics{': ' + names if names else ''}",
                "checks": [f.check_id],
                "subject": f.subject,
                "svg": _markup(plots.group_metrics_svg(*grouped, key=f"grp{index}")),
            }
            seen_groups[signature] = plot
            out.append(plot)
    for plot in out:
        if "checks" in plot:
            subject = f" · {plot['subject']}" if plot["subject"] else ""
            plot["caption"] = (
                f"{', '.join(dict.fromkeys(plot['checks']))}{subject}: selection rate, true and "
                "false positive rates and precision for each group of the sensitive features."
            )
    return out


def _profiles(report: Report) -> list[dict[str, Any]]:
    out = []
    for index, (name, summary) in enumerate(report.profiles.items()):
        if not isinstance(summary, Mapping):
            continue
        columns = summary.get("columns")
        columns = columns if isinstance(columns, Mapping) else {}
        table = []
        panels: list[tuple[str, dict[str, Any]]] = []
        for column, stats in columns.items():
            if not isinstance(stats, Mapping):
                continue
            table.append(
                [str(column)]
                + [
                    _fmt(stats[k]) if k in stats else "—"
                    for k in (
                        "kind",
                        "count",
                        _nulls_key(stats),
                        "min",
                        "max",
                        "mean",
                        "std",
                        "distinct",
                    )
                ]
            )
            if len(panels) < MAX_HISTOGRAMS:
                panel = _histogram_panel(stats)
                if panel is not None:
                    panels.append((str(column), panel))
        plottable = sum(
            1
            for s in columns.values()
            if isinstance(s, Mapping) and _histogram_panel(s) is not None
        )
        out.append(
            {
                "name": str(name),
                "n_rows": _fmt(summary.get("n_rows")),
                "n_columns": len(columns),
                "table": table,
                "svg": _markup(plots.histograms_svg(panels, key=f"prof{index}"))
                if panels
                else None,
                "omitted": max(0, plottable - len(panels)),
            }
        )
    return out


def _nulls_key(stats: Mapping[str, Any]) -> str:
    return "null_count" if "null_count" in stats else "nulls"


def _model_view(model: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not model:
        return None
    known = ("name", "format", "path", "sha256")
    rest = {k: v for k, v in model.items() if k not in (*known, "trusted_override")}
    return {
        "fields": [(k, _fmt(model.get(k))) for k in known if model.get(k) is not None],
        "extra": _pretty_json(rest) if rest else "",
        "trusted_override": bool(model.get("trusted_override")),
    }


def _context(report: Report) -> dict[str, Any]:
    verdict = report.verdict
    counts = dict(verdict.counts)
    categories = []
    for category in CATEGORIES:
        members = sorted(
            (f for f in report.findings if category_of(f.check_id) == category), key=_sort_key
        )
        if members:
            categories.append(
                {
                    "name": category,
                    "rows": [_finding_row(f, report.raw_rows_allowed) for f in members],
                    "problems": sum(
                        1
                        for f in members
                        if f.status in (Status.FAIL, Status.ERROR) and not f.waived
                    ),
                }
            )
    count_cards = [("findings", len(report.findings), "total")] + [
        (label, counts.get(label, 0), label)
        for label in ("pass", "warn", "fail", "error", "skipped", "waived")
    ]
    return {
        "project": report.project,
        "created_at": report.created_at,
        "bastion_version": report.bastion_version,
        "seed": report.seed,
        "policy_path": report.policy_path,
        "raw_rows_allowed": report.raw_rows_allowed,
        "passed": verdict.passed,
        "fail_on": verdict.fail_on.value,
        "reasons": list(verdict.reasons),
        "counts": count_cards,
        "categories": categories,
        "plots": _finding_plots(report),
        "profiles": _profiles(report),
        "datasets": [
            {
                "name": d.name,
                "path": d.path or "(in memory)",
                "sha256": d.sha256,
                "rows": _fmt(d.n_rows),
                "columns": _fmt(d.n_columns),
                "target": d.target or "",
                "sensitive": ", ".join(d.sensitive),
            }
            for d in report.datasets
        ],
        "model": _model_view(report.model),
        "baseline": _model_view(report.baseline),
        "environment": [(str(k), _fmt(v)) for k, v in report.environment.items()],
        "timings": [(str(k), f"{float(v):.3f} s") for k, v in report.timings.items()],
        "total_time": f"{sum(float(v) for v in report.timings.values()):.3f} s",
        "waivers": [
            {
                "check_id": str(w.get("check_id", "")),
                "subject": str(w.get("subject") or "every subject"),
                "owner": str(w.get("owner", "")),
                "expires": str(w.get("expires", "")),
                "reason": str(w.get("reason", "")),
                "active": w.get("active"),
                "applied_to": ", ".join(map(str, w.get("applied_to", ()))),
            }
            for w in report.waivers
        ],
    }


@cache
def _template() -> jinja2.Template:
    import jinja2

    text = resources.files("bastion").joinpath("templates/report.html.j2").read_text("utf-8")
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a typo in the template fails loudly in tests
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.from_string(text)


def render_html(report: Report) -> str:
    """The self-contained HTML page of ``report``.

    Parameters
    ----------
    report:
        The report to show; pass it through :func:`bastion.reporting.writers.redact` first
        unless it comes from :func:`~bastion.reporting.writers.render`, which does.

    Returns
    -------
    str
        A complete HTML5 document with inline CSS and SVG plots.

    Example::

        Path("report.html").write_text(render_html(report), encoding="utf-8")
    """
    return _template().render(**_context(report))


@REPORTERS.register
class HtmlWriter(ReportWriter):
    """``report.html``: the page people read."""

    id = "html"
    filename = "report.html"
    media_type = "text/html"

    def render(self, report: Report) -> str:
        return render_html(report)

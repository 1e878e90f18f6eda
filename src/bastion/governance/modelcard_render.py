"""Markdown and HTML renderings of a :class:`~bastion.governance.modelcard.ModelCard`.

Both come from Jinja2 templates shipped in ``bastion/templates`` (``modelcard.md.j2`` and
``modelcard.html.j2``) fed the same view model. Escaping, because every text that comes from
users or data (owners' fields, check messages, column and group names) is untrusted:

- HTML: Jinja2's autoescape on every value; the only markup inserted verbatim is the
  stylesheet of ``report.html.j2``, shared so that cards and reports look alike. The page
  loads nothing and runs no script (a Content-Security-Policy forbids both).
- Markdown: values pass through :func:`md_text` (inert inline text: HTML characters become
  entities; emphasis, links, images, pipes and leading block markers are backslash-escaped)
  or :func:`md_code` (an inline code span).

Numbers are shown with 4 significant digits (:func:`format_number`); the card's
:meth:`~bastion.governance.modelcard.ModelCard.to_dict` keeps full precision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from bastion.governance.modelcard import AREAS
from bastion.reporting.html import format_number  # one number format for reports and cards

if TYPE_CHECKING:
    import jinja2

    from bastion.governance.explanation import PermutationImportance, ShapSummary
    from bastion.governance.modelcard import CheckResult, MetricRow, ModelCard

__all__ = ["format_number", "md_code", "md_text", "render_html", "render_markdown"]

_MAX_FEATURES_SHOWN = 20  # rows of the importance tables; the rest are in the card's JSON


def render_markdown(card: ModelCard) -> str:
    """The card as GitHub-flavoured Markdown.

    Example::

        Path("MODEL_CARD.md").write_text(render_markdown(card), encoding="utf-8")
    """
    return _template("modelcard.md.j2", markdown=True).render(**_view(card))


def render_html(card: ModelCard) -> str:
    """The card as one self-contained HTML page (inline CSS, no script, strict CSP).

    Example::

        Path("model_card.html").write_text(render_html(card), encoding="utf-8")
    """
    from markupsafe import Markup

    css = Markup(_report_css())  # trusted: the package's own stylesheet
    return _template("modelcard.html.j2", markdown=False).render(**_view(card), css=css)


_MD_ESCAPE = re.compile(r"([\\`*_\[\]|~!])")
# block markers that only count at the start of a line: headings, list items, rules
_MD_LEADING_MARK = re.compile(r"^[#+\-=]")
_MD_LEADING_NUMBER = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")


def md_text(value: Any) -> str:
    """``value`` as inert inline Markdown: one line, HTML and Markdown syntax escaped.

    ``<``, ``>`` and ``&`` become entities (no raw HTML); backslashes, backticks, emphasis,
    brackets (so no link or image), pipes (tables) and tildes are backslash-escaped; so is a
    leading heading, list or rule marker.

    Example::

        print(md_text("<b>hi</b> ![x](u)"))   # &lt;b&gt;hi&lt;/b&gt; \\!\\[x\\](u)
        print(md_text("1. first"))            # 1\\. first
    """
    one = " ".join(str(value).split())
    one = one.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    one = _MD_ESCAPE.sub(r"\\\1", one)
    one = _MD_LEADING_MARK.sub(lambda m: "\\" + m.group(0), one)
    return _MD_LEADING_NUMBER.sub(r"\1\\\2", one)


def md_code(value: Any) -> str:
    """``value`` as an inline code span (pipes escaped for tables), or escaped text."""
    one = " ".join(str(value).split())
    if not one or "`" in one:
        return md_text(one)
    return "`" + one.replace("|", "\\|") + "`"


def _paragraphs(text: str) -> list[str]:
    return [p for p in (" ".join(b.split()) for b in re.split(r"\n\s*\n", text)) if p]


def _metric_cell(row: MetricRow) -> dict[str, str]:
    ci = ""
    if row.ci_low is not None and row.ci_high is not None:
        ci = f"[{format_number(row.ci_low)}, {format_number(row.ci_high)}]"
    return {"name": row.name, "value": format_number(row.value), "ci": ci}


def _check_view(c: CheckResult) -> dict[str, Any]:
    return {
        "check_id": c.check_id,
        "title": c.title,
        "subject": c.subject,
        "status": "fail (waived)" if c.waiver else c.status,
        # severity matters only for what did not pass
        "status_label": (
            f"{'fail (waived)' if c.waiver else c.status} ({c.severity})"
            if c.status in ("fail", "error", "warn")
            else c.status
        ),
        "css": "waived" if c.waiver else c.status,
        "severity": c.severity,
        "message": c.message,
        "waiver": c.waiver,
        "metrics": [_metric_cell(r) for r in c.metric_rows()],
        "threshold": [(k, format_number(v)) for k, v in c.threshold],
    }


def _importance_view(p: PermutationImportance) -> dict[str, Any]:
    ranked = p.ranked()
    top = max((abs(f.mean) for f in ranked), default=0.0) or 1.0
    return {
        "scoring": p.scoring.replace("_", " "),
        "baseline": format_number(p.baseline_score),
        "n_repeats": p.n_repeats,
        "seed": p.seed,
        "dataset": p.dataset,
        "n_rows": format_number(p.n_rows),
        "rows": [
            {
                "rank": i + 1,
                "feature": f.feature,
                "mean": format_number(f.mean),
                "std": format_number(f.std),
                "pct": f"{max(0.0, f.mean) / top * 100:.1f}",
            }
            for i, f in enumerate(ranked[:_MAX_FEATURES_SHOWN])
        ],
        "more": max(0, len(ranked) - _MAX_FEATURES_SHOWN),
    }


def _shap_view(s: ShapSummary) -> dict[str, Any]:
    ranked = s.ranked()
    top = max((v for _, v in ranked), default=0.0) or 1.0
    return {
        "output": s.output,
        "n_rows": format_number(s.n_rows),
        "n_background": format_number(s.n_background),
        "version": s.shap_version,
        "rows": [
            {"rank": i + 1, "feature": f, "value": format_number(v), "pct": f"{v / top * 100:.1f}"}
            for i, (f, v) in enumerate(ranked[:_MAX_FEATURES_SHOWN])
        ],
        "more": max(0, len(ranked) - _MAX_FEATURES_SHOWN),
    }


def _view(card: ModelCard) -> dict[str, Any]:
    m, prov, verdict = card.model, card.provenance, card.verdict
    details: list[tuple[str, str, bool]] = [
        ("Name", m.name, False),
        ("Version", m.version or "not set", False),
        ("Project", card.project, False),
        ("Format", m.format, False),
        ("Task", m.task, False),
        ("Architecture family", m.architecture_family or "not stated", False),
        ("Architecture", m.model_architecture or "not stated", False),
        ("Input", m.input_format or "not recorded", False),
        ("Output", m.output_format or "not recorded", False),
        ("Owners", ", ".join(m.owners) or "not stated", False),
        ("License", m.license or "not stated", False),
        ("sha256", m.sha256 or "not recorded (in-memory model)", bool(m.sha256)),
    ]
    areas = []
    for area in AREAS:
        if area == "data":
            continue
        checks = card.checks_in(area)
        if checks:
            areas.append(
                {"key": area, "title": AREAS[area], "checks": [_check_view(c) for c in checks]}
            )
    data_checks = [_check_view(c) for c in card.checks_in("data")]
    counts = [
        (label, verdict.counts.get(label, 0))
        for label in ("pass", "warn", "fail", "error", "skipped", "waived")
    ]
    ex = card.explanation
    provenance = [
        ("Gate report sha256", prov.report_sha256, True),
        (
            "Model sha256",
            prov.model_sha256 or "not recorded (in-memory model)",
            bool(prov.model_sha256),
        ),
        ("Report created", prov.report_created_at, False),
        ("Report made by", f"bastion {prov.report_bastion_version}", False),
        ("Card generated", prov.generated_at, False),
        ("Card made by", f"bastion {prov.bastion_version}", False),
        ("Seed", str(prov.seed), False),
    ]
    if prov.policy_path:
        provenance.append(("Policy", prov.policy_path, True))
    env = prov.environment
    for key in ("python", "platform"):
        if key in env:
            provenance.append((f"Environment: {key}", str(env[key]), False))
    packages = env.get("packages")
    if isinstance(packages, Mapping) and packages:
        text = ", ".join(f"{k} {v}" for k, v in packages.items())
        provenance.append(("Environment: packages", text, False))
    return {
        "title": f"{m.name}{' ' + m.version if m.version else ''}",
        "project": card.project,
        "generated_at": prov.generated_at,
        "bastion_version": prov.bastion_version,
        "report_sha256": prov.report_sha256,
        "details": details,
        "trusted_override": m.trusted_override,
        "intended_use": _paragraphs(card.intended_use),
        "users": list(card.users),
        "out_of_scope": list(card.out_of_scope_uses),
        "datasets": [
            {
                "name": d.name,
                "path": d.path or "(in memory)",
                "rows": format_number(d.n_rows),
                "columns": format_number(d.n_columns),
                "target": d.target or "",
                "sensitive": ", ".join(d.sensitive),
                "sha256": d.sha256,
                "evaluation": d.name == card.evaluation_dataset,
            }
            for d in card.datasets
        ],
        "passed": verdict.passed,
        "fail_on": verdict.fail_on.value,
        "reasons": list(verdict.reasons),
        "counts": counts,
        "n_findings": len(card.checks),
        "areas": areas,
        "data_checks": data_checks,
        "evaluation_dataset": card.evaluation_dataset,
        "permutation": _importance_view(ex.permutation) if ex.permutation else None,
        "permutation_note": ex.permutation_note,
        "shap": _shap_view(ex.shap) if ex.shap else None,
        "shap_note": ex.shap_note,
        "limitations": [
            {"source": lim.source, "text": lim.text, "status": lim.status or ""}
            for lim in card.limitations
        ],
        "ethics": [(e.name, e.mitigation_strategy) for e in card.ethical_considerations],
        "provenance": provenance,
    }


@cache
def _template(name: str, *, markdown: bool) -> jinja2.Template:
    import jinja2

    text = resources.files("bastion").joinpath(f"templates/{name}").read_text("utf-8")
    env = jinja2.Environment(
        # HTML: every value escaped. Markdown: values pass through the md / code filters,
        # which escape them; autoescape would put HTML entities into code spans.
        autoescape=not markdown,
        undefined=jinja2.StrictUndefined,  # a typo in the template fails loudly in tests
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_text
    env.filters["code"] = md_code
    return env.from_string(text)


@cache
def _report_css() -> str:
    """The stylesheet of ``report.html``, so that cards and reports look alike."""
    text = resources.files("bastion").joinpath("templates/report.html.j2").read_text("utf-8")
    found = re.search(r"<style>(.*?)</style>", text, re.DOTALL)
    if found is None:  # the report template changed shape: fail in tests, not silently
        raise RuntimeError("report.html.j2 has no <style> block to share with model cards")
    return re.sub(r"\{#.*?#\}", "", found.group(1), flags=re.DOTALL)

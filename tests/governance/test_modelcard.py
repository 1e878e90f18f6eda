"""Model cards built from a real gate run: every section, the report's numbers unchanged,
limitations derived from failing and skipped checks, permutation importance equal to
scikit-learn's, escaping of everything users or data control, and refusal of mismatched
evidence."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import importlib.util
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from sklearn.inspection import permutation_importance

from bastion.data.dataset import Dataset
from bastion.exceptions import ConfigError, DataError
from bastion.findings import Severity, Status
from bastion.governance.modelcard import (
    CardFields,
    EthicalConsideration,
    ModelCard,
    area_of,
    build_model_card,
    report_sha256,
)
from bastion.governance.modelcard_render import format_number, md_code, md_text
from bastion.models.base import ModelInfo
from bastion.models.callable import CallableAdapter
from bastion.models.formats import sha256_file
from bastion.models.sklearn import SklearnAdapter
from bastion.report import Report
from bastion.reporting.writers import write_reports
from bastion.verdict import Verdict

_spec = importlib.util.spec_from_file_location(
    "_card_gate", Path(__file__).with_name("_card_gate.py")
)
assert _spec is not None
assert _spec.loader is not None
G = sys.modules.get("_card_gate") or importlib.util.module_from_spec(_spec)
if "_card_gate" not in sys.modules:
    sys.modules["_card_gate"] = G
    _spec.loader.exec_module(G)

WHEN = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
FIELDS = CardFields(
    version="1.4.0",
    intended_use="Second reader for radiologists triaging fine-needle aspirates.\n\n"
    "Never the sole basis of a diagnosis.",
    users=("radiologists",),
    out_of_scope_uses=("screening of the general population",),
    owners=("ml-platform@hospital.example",),
    license="Apache-2.0",
    limitations=("Trained on a single hospital's data from the 1990s.",),
    ethical_considerations=(EthicalConsideration("missed malignancy", "human review"),),
)
SECTIONS = (
    "Model details",
    "Intended use",
    "Data",
    "Metrics",
    "Explanation",
    "Limitations",
    "Provenance",
)


@pytest.fixture(scope="module")
def card() -> ModelCard:
    g = G.gate()
    return build_model_card(g.report, g.model, g.test, fields=FIELDS, generated_at=WHEN)


@pytest.fixture(scope="module")
def markdown(card: ModelCard) -> str:
    return card.to_markdown()


@pytest.fixture(scope="module")
def page(card: ModelCard) -> str:
    return card.to_html()


def _section(markdown: str, title: str) -> str:
    """The text of one ``## title`` section."""
    start = markdown.index(f"\n## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def test_sections_in_order(markdown: str, page: str) -> None:
    positions = [markdown.index(f"\n## {s}\n") for s in SECTIONS]
    assert positions == sorted(positions)
    html_positions = [page.index(f"<h2>{s}</h2>") for s in SECTIONS]
    assert html_positions == sorted(html_positions)
    name = (G.gate().report.model or {})["name"]
    assert markdown.startswith(f"# Model card: {name} 1.4.0\n")


def test_model_details_and_data(card: ModelCard, markdown: str, page: str) -> None:
    g = G.gate()
    assert card.model.architecture_family == "linear model"
    assert card.model.model_architecture == "StandardScaler -> LogisticRegression"
    assert card.model.classes == ("0", "1")
    assert card.model.input_format == "table of 30 features (30 numeric)"
    details = _section(markdown, "Model details")
    assert "| License | Apache-2.0 |" in details
    assert "| Owners | ml-platform@hospital.example |" in details
    data = _section(markdown, "Data")
    for ref in g.report.datasets:  # every dataset with its full hash and shape
        assert f"`{ref.sha256}`" in data
        assert ref.sha256 in page
        assert f"| {ref.n_rows} | {ref.n_columns} |" in data
    assert "| test (evaluation) |" in data


def test_metrics_carry_the_reports_numbers(card: ModelCard, markdown: str, page: str) -> None:
    report = G.gate().report
    metrics = _section(markdown, "Metrics")
    shown = 0
    for f in report.findings:
        if area_of(f.check_id) == "data":
            continue
        for name, value in f.metrics.items():
            if name.endswith(("_ci_low", "_ci_high")):
                continue
            text = format_number(value)
            assert f"{md_code(name)} | {text} |" in metrics, (f.check_id, name)
            cell = rf"<code>{re.escape(html.escape(name))}</code></td>\s*"
            pattern = cell + rf"<td class=\"num\">{re.escape(text)}</td>"
            assert re.search(pattern, page), (f.check_id, name)
            shown += 1
    assert shown > 40  # validation, fairness, robustness, privacy and extraction numbers
    # exact numbers in the JSON form
    by_key = {(c["check_id"], c["subject"]): c for c in card.to_dict()["checks"]}
    for f in report.findings:
        assert by_key[(f.check_id, f.subject)]["metrics"] == f.to_dict()["metrics"]
    # confidence intervals folded into their metric
    fa001 = next(f for f in report.findings if f.check_id == "FA001")
    low = format_number(fa001.metrics["demographic_parity_difference_ci_low"])
    high = format_number(fa001.metrics["demographic_parity_difference_ci_high"])
    value = format_number(fa001.metrics["demographic_parity_difference"])
    assert f"`demographic_parity_difference` | {value} | [{low}, {high}] |" in metrics
    # the gate verdict, with its reasons
    assert "### Gate verdict: FAILED" in metrics
    assert not report.verdict.passed
    for reason in report.verdict.reasons:
        assert md_text(reason) in metrics
    for area in ("Validation", "Fairness", "Robustness", "Privacy", "Extraction", "Data quality"):
        assert f"### {area}\n" in metrics
        assert f"<h3>{area}</h3>" in page


def test_limitations_list_failing_and_skipped_checks(card: ModelCard, markdown: str) -> None:
    report = G.gate().report
    failing = {f.check_id for f in report.findings if f.status is Status.FAIL}
    assert {"MV001", "FA001"} <= failing
    derived = {(lim.check_id, lim.status) for lim in card.limitations if lim.source == "finding"}
    for f in report.findings:
        assert ((f.check_id, f.status.value) in derived) is (f.status is not Status.PASS)
    section = _section(markdown, "Limitations")
    mv001 = next(f for f in report.findings if f.check_id == "MV001")
    assert f"- MV001 Model performance failed on model (high): {md_text(mv001.message)}" in section
    assert "- MV005 Comparison with the baseline model was not run on model: " in section
    ext = next(lim for lim in card.limitations if lim.check_id == "EXT001")
    assert "waived by ml-platform@hospital.example until 2027-06-30" in ext.text
    # the gate never ran a poisoning check: the card says it makes no claim
    coverage = [lim.text for lim in card.limitations if lim.source == "coverage"]
    assert coverage == [
        "Not assessed: the gate report holds no finding on training-data poisoning (POI checks, "
        "enable checks.poisoning); the card makes no claim about it."
    ]
    assert card.limitations[-1].source == "owner"
    assert md_text(FIELDS.limitations[0]) in section
    assert "- **missed malignancy**: human review" in section
    # failures first, most severe first
    order = [lim.status for lim in card.limitations if lim.source == "finding"]
    assert order == sorted(order, key=["error", "fail", "warn", "skipped"].index)


def test_permutation_importance_equals_sklearn(card: ModelCard, markdown: str) -> None:
    g = G.gate()
    ours = card.explanation.permutation
    assert ours is not None
    ref = permutation_importance(
        g.estimator, g.test.features, g.test.labels, n_repeats=5, random_state=g.report.seed
    )
    np.testing.assert_array_equal(ours.importances, ref.importances)
    np.testing.assert_array_equal(ours.importances_mean, ref.importances_mean)
    np.testing.assert_array_equal(ours.importances_std, ref.importances_std)
    top = ours.ranked()[0]
    section = _section(markdown, "Explanation")
    assert (
        f"| 1 | {md_code(top.feature)} | {format_number(top.mean)} | {format_number(top.std)} |"
        in section
    )
    assert "_10 more features with smaller importance are in the card's JSON._" in section


def test_shap_is_skipped_with_a_reason_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    g = G.gate()
    monkeypatch.setitem(sys.modules, "shap", None)
    card = build_model_card(g.report, g.model, g.test, n_repeats=1, generated_at=WHEN)
    assert card.explanation.shap is None
    assert "shap package is not installed" in card.explanation.shap_note
    md = card.to_markdown()
    assert "Not computed: the optional shap package is not installed" in _section(md, "Explanation")
    assert "Not computed: the optional shap package is not installed" in card.to_html()
    off = build_model_card(g.report, g.model, g.test, n_repeats=1, shap=False)
    assert off.explanation.shap_note == "Not computed: SHAP was turned off for this card."


def test_without_test_dataset_the_card_says_why(markdown: str) -> None:
    g = G.gate()
    card = build_model_card(g.report, g.model, None, generated_at=WHEN)
    assert card.explanation.permutation is None
    assert "no test dataset was given" in _section(card.to_markdown(), "Explanation")


def test_user_and_data_text_is_escaped() -> None:
    g = G.gate()
    evil = (
        "<script>alert(1)</script> ![pixel](http://evil.example/p.png) [click](javascript:x) | # h"
    )
    findings = tuple(
        f.with_updates(message=evil) if f.check_id == "MV001" else f for f in g.report.findings
    )
    report = dataclasses.replace(g.report, findings=findings)
    fields = CardFields(
        intended_use=evil,
        owners=(evil,),
        limitations=(evil,),
        out_of_scope_uses=("# heading\n1. list",),
        ethical_considerations=(EthicalConsideration(evil, evil),),
    )
    card = build_model_card(report, g.model, g.test, fields=fields, n_repeats=1, shap=False)
    md, page = card.to_markdown(), card.to_html()
    for text in (md, page):
        assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'src="http' not in page
    assert 'href="http' not in page
    assert 'javascript:x"' not in page
    # in Markdown no image, link or raw HTML survives, and no cell is split by a pipe
    assert "![pixel](" not in md
    assert "[click](" not in md
    assert "\\!\\[pixel\\](http://evil.example/p.png)" in md
    assert "&lt;script&gt;" in md
    assert "\\| # h" in md  # a pipe cannot end the table cell
    assert "- \\# heading 1. list" in md


def test_html_is_self_contained_and_well_formed(page: str) -> None:
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page
    assert "<script" not in page
    assert "<link" not in page
    assert ":root {" in page  # the report's stylesheet is shared

    class Balance(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []

        def handle_starttag(self, tag: str, attrs: object) -> None:
            if tag not in {"meta", "br", "img", "input", "link", "hr"}:
                self.open.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.open, tag
            assert self.open[-1] == tag, (tag, self.open[-3:])
            self.open.pop()

    parser = Balance()
    parser.feed(page)
    assert parser.open == []


def test_provenance_hashes(card: ModelCard, markdown: str, tmp_path: Path) -> None:
    report = G.gate().report
    written = write_reports(report, tmp_path, ["json"])["json"]
    assert card.provenance.report_sha256 == sha256_file(written) == report_sha256(report)
    section = _section(markdown, "Provenance")
    assert f"| Gate report sha256 | `{sha256_file(written)}` |" in section
    assert f"| Seed | {report.seed} |" in section
    assert card.provenance.generated_at == "2026-11-26T12:00:00+00:00"


def test_same_inputs_same_card(card: ModelCard) -> None:
    g = G.gate()
    again = build_model_card(g.report, g.model, g.test, fields=FIELDS, generated_at=WHEN)
    assert again.to_markdown() == card.to_markdown()
    assert again.to_html() == card.to_html()
    doc = json.loads(json.dumps(card.to_dict(), allow_nan=False))
    assert doc["schema"] == "bastion.modelcard/v1"
    assert doc["model"]["version"] == "1.4.0"


def test_mismatched_evidence_is_refused() -> None:
    g = G.gate()
    other = Dataset.from_frame(g.test.frame.iloc[:-1], name="test", target="target")
    with pytest.raises(DataError, match=r"test_dataset 'test' has sha256 .* but the gate report"):
        build_model_card(g.report, g.model, other)
    renamed = Dataset.from_frame(g.test.frame, name="holdout", target="target")
    with pytest.raises(DataError, match="'holdout' is not a dataset of the gate report"):
        build_model_card(g.report, g.model, renamed)
    tested = dataclasses.replace(g.report, model={**dict(g.report.model or {}), "sha256": "a" * 64})
    impostor = SklearnAdapter(g.estimator, info=ModelInfo("m", "sklearn", sha256="b" * 64))
    with pytest.raises(ConfigError, match=r"has sha256 b{64} but the gate report tested a{64}"):
        build_model_card(tested, impostor, g.test)
    with pytest.raises(ConfigError, match="the report has no model"):
        build_model_card(dataclasses.replace(g.report, model=None), g.model, g.test)


def test_card_fields_from_mapping() -> None:
    fields = CardFields.from_mapping(
        {
            "version": 2,
            "intended_use": "triage",
            "owners": "team@example.com",
            "ethical_considerations": ["bias", {"name": "harm", "mitigation_strategy": "review"}],
        }
    )
    assert fields.version == "2"
    assert fields.owners == ("team@example.com",)
    assert fields.ethical_considerations == (
        EthicalConsideration("bias"),
        EthicalConsideration("harm", "review"),
    )
    with pytest.raises(ConfigError, match="card: unknown key 'intended_uses'"):
        CardFields.from_mapping({"intended_uses": "x"})
    with pytest.raises(ConfigError, match=r"card\.owners must be a string or a list of strings"):
        CardFields.from_mapping({"owners": [1, 2]})
    with pytest.raises(ConfigError, match=r"ethical_considerations\[0\] needs a name"):
        CardFields.from_mapping({"ethical_considerations": [{"mitigation_strategy": "x"}]})


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain text", "plain text"),
        ("a <b> & c", "a &lt;b&gt; &amp; c"),
        ("![i](u) [l](u)", "\\!\\[i\\](u) \\[l\\](u)"),
        ("x | y `z` *w* _v_", "x \\| y \\`z\\` \\*w\\* \\_v\\_"),
        ("# title", "\\# title"),
        ("- item", "\\- item"),
        ("1. item", "1\\. item"),
        ("0.9298", "0.9298"),
        ("line\n\nbreaks", "line breaks"),
    ],
)
def test_md_text(raw: str, escaped: str) -> None:
    assert md_text(raw) == escaped


def test_a_bare_report_renders_and_claims_nothing() -> None:
    # no dataset, no finding, an in-memory callable: every area is listed as not assessed
    report = Report(
        project="bare",
        findings=(),
        verdict=Verdict(passed=True, fail_on=Severity.MEDIUM, reasons=(), counts={}),
        created_at="2026-11-26T00:00:00+00:00",
        bastion_version="0.1.0",
        seed=0,
        model={"name": "scorer", "format": "callable"},
    )
    model = CallableAdapter(predict=lambda X: np.zeros(len(X), dtype=int), name="scorer")
    card = build_model_card(report, model, generated_at=WHEN)
    assert [lim.source for lim in card.limitations] == ["coverage"] * 6
    md = card.to_markdown()
    assert "_The gate read no dataset._" in md
    assert "_No model check ran._" in md
    assert "| sha256 | not recorded (in-memory model) |" in md
    assert '<p class="empty">The gate read no dataset.</p>' in card.to_html()

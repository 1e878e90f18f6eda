"""report.html is self-contained, escapes what it shows and draws the plots."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest

from bastion.findings import Finding, Severity, Status
from bastion.reporting import render
from bastion.reporting.html import MAX_HISTOGRAMS, render_html

from .conftest import EVIL, make_report, profile_summary

EXTERNAL = [
    re.compile(
        r"""\b(?:src|href|xlink:href|action|poster|srcset)\s*=\s*["']?\s*(?:https?:)?//""", re.I
    ),
    re.compile(r"@import", re.I),
    re.compile(r"url\(\s*['\"]?\s*(?:https?:)?//", re.I),
    re.compile(r"<script\b", re.I),
    re.compile(r"<link\b", re.I),
    re.compile(r"<iframe\b|<object\b|<embed\b", re.I),
]


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, re.DOTALL)


class _TagBalance(HTMLParser):
    """Counts unclosed elements among those that must be closed."""

    CHECKED = frozenset(
        {
            "html",
            "body",
            "main",
            "section",
            "table",
            "tr",
            "td",
            "th",
            "div",
            "ul",
            "li",
            "figure",
            "details",
            "svg",
            "g",
            "pre",
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.CHECKED:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in self.CHECKED:
            if not self.stack or self.stack[-1] != tag:
                self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            else:
                self.stack.pop()


@pytest.fixture(scope="module")
def page() -> str:
    return render(make_report(), "html")


def test_page_is_self_contained(page: str) -> None:
    for pattern in EXTERNAL:
        assert not pattern.search(page), pattern.pattern
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page
    # the SVG prolog (with its DOCTYPE URL) is stripped before inlining
    assert "<!DOCTYPE svg" not in page
    assert "<?xml" not in page


def test_external_reference_detector_detects() -> None:
    """The patterns above are not vacuous."""
    for bad in (
        '<img src="https://x/y.png">',
        "<style>@import 'a.css'</style>",
        "background: url(http://x)",
        '<script src="a.js"></script>',
        '<link href="//cdn/x.css" rel="stylesheet">',
    ):
        assert any(p.search(bad) for p in EXTERNAL), bad


def test_page_is_well_formed(page: str) -> None:
    parser = _TagBalance()
    parser.feed(page)
    assert parser.errors == []
    assert parser.stack == []


def test_page_contains_the_plots(page: str) -> None:
    svgs = _svgs(page)
    # calibration, confusion matrix, per-group bars, profile histograms
    assert len(svgs) == 4
    assert "Calibration curve" in page
    assert "Confusion matrix" in page
    assert "Per-group metrics: sex" in page
    assert "Distribution of train" in page
    # each SVG is salted: no id is defined twice on the page
    ids = re.findall(r'\bid="([^"]+)"', "".join(svgs))
    assert len(ids) == len(set(ids))
    # the confusion-matrix numbers are drawn as text
    assert ">50<" in page or "50\n" in page or ">50" in page


def test_messages_are_escaped(page: str) -> None:
    assert EVIL not in page
    assert "&lt;script&gt;alert(" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page


def test_labels_are_escaped_inside_plots() -> None:
    finding = Finding(
        "MV003",
        "Confusion matrix",
        Status.PASS,
        Severity.INFO,
        evidence={"labels": ["<b>a</b>", "$x$ & y"], "matrix": [[1, 2], [3, 4]]},
    )
    page = render(make_report(findings=(finding,), profiles={}), "html")
    svg = _svgs(page)[0]
    assert "<b>" not in svg
    assert "&lt;b&gt;a&lt;/b&gt;" in svg
    assert "$x$ &amp; y" in svg  # math mode disabled: dollars shown literally


def test_verdict_counts_waiver_and_override_are_visible(page: str) -> None:
    assert "FAILED" in page
    assert "DQ009 is required but did not run" in page
    assert (
        "waived by data-team until 2030-01-31 (subject dataset:train): "
        "known duplicates in the 2019 extract"
    ) in page
    assert "Trust override" in page
    for section in ("Data", "Validation", "Fairness", "Other"):
        assert f'<span class="cap">{section.lower()}</span>' in page
    assert "data/train.csv" in page
    assert "LogisticRegression" in page  # model details
    assert "3.12.1" in page  # environment
    assert "1.250 s" in page  # timings


def test_passed_report_shows_passed() -> None:
    findings = (Finding("DQ002", "Completeness", Status.PASS, Severity.MEDIUM),)
    page = render(make_report(findings=findings, model=None, required=()), "html")
    assert ">PASSED<" in page
    assert "Trust override" not in page


def test_samples_shown_only_when_allowed() -> None:
    hidden = render(make_report(), "html")
    assert "data samples" not in hidden
    shown = render(make_report(raw_rows_allowed=True), "html")
    assert "data samples" in shown
    assert "Raw data:" in shown


def test_direct_render_html_still_hides_samples() -> None:
    page = render_html(make_report())  # not redacted by a writer
    assert "data samples" not in page
    assert "&#34;samples&#34;" not in page
    assert '"samples"' not in page


def test_fairness_plot_drawn_once_for_shared_group_table() -> None:
    base = make_report().findings
    fa001 = next(f for f in base if f.check_id == "FA001")
    fa003 = fa001.with_updates(check_id="FA003", title="Equal opportunity")
    page = render(make_report(findings=(fa001, fa003), profiles={}), "html")
    assert len(_svgs(page)) == 1
    assert "FA001, FA003" in page


@pytest.mark.parametrize(
    "evidence",
    [
        {"labels": ["a", "b"], "matrix": [[1, 2]]},  # not square
        {"labels": ["a"], "matrix": [["x"]]},  # not numbers
        {"labels": "ab", "matrix": None},
        {"bins": [{"lower": 0, "upper": 1}]},  # keys missing
        {"bins": "nope"},
        {
            "bins": [
                {
                    "lower": 0,
                    "upper": 1,
                    "count": 0,
                    "mean_predicted": None,
                    "fraction_positive": None,
                }
            ]
        },  # every bin empty
        {"by_group": [{"count": 3}]},  # no group
        {"by_group": [{"group": "a", "selection_rate": "high"}]},  # no numeric metric
    ],
)
def test_malformed_evidence_is_left_out(evidence: dict[str, Any]) -> None:
    finding = Finding("MV003", "Odd", Status.PASS, Severity.INFO, evidence=evidence)
    page = render(make_report(findings=(finding,), profiles={}), "html")
    assert _svgs(page) == []
    assert "Odd" in page


def test_profiles_tolerate_missing_keys_and_limit_histograms() -> None:
    columns = {f"c{i}": {"histogram": {"edges": [0, 1, 2], "counts": [i, 1]}} for i in range(20)}
    columns["bad"] = {"histogram": {"edges": [0, 1], "counts": [1, 2, 3]}}
    columns["reversed"] = {"histogram": {"edges": [2, 1, 0], "counts": [1, 1]}}
    columns["records"] = {"top": [{"value": "x", "count": 3}, {"value": "y", "count": 1}]}
    columns["mapping"] = {"top": {"u": 2, "v": 1}}
    profiles = {
        "wide": {"columns": columns},  # no n_rows
        "empty": {},
        "junk": "not a summary",
        "train": profile_summary(),
    }
    page = render(make_report(findings=(), profiles=profiles), "html")
    svgs = _svgs(page)
    assert len(svgs) == 2  # wide and train; empty and junk draw nothing
    wide = svgs[0]
    assert "c11" in wide
    assert "c12" not in wide
    assert MAX_HISTOGRAMS == 12
    assert "10 more columns not drawn" in page  # 20 + 2 plottable tops - 12
    assert "<code>bad</code>" in page  # listed in the statistics table all the same


def test_many_classes_confusion_matrix_renders() -> None:
    labels = [str(i) for i in range(25)]
    matrix = [[float(i == j) for j in range(25)] for i in range(25)]
    finding = Finding(
        "MV003",
        "Confusion matrix",
        Status.PASS,
        Severity.INFO,
        evidence={"labels": labels, "matrix": matrix},
    )
    page = render(make_report(findings=(finding,), profiles={}), "html")
    assert len(_svgs(page)) == 1


def test_rendering_is_deterministic() -> None:
    assert render(make_report(), "html") == render(make_report(), "html")


def test_unequal_bins_are_drawn_as_densities() -> None:
    from bastion.reporting.html import _histogram_panel

    stats = profile_summary()["columns"]["mean radius"]
    panel = _histogram_panel(stats)
    assert panel is not None
    # open outer bins closed at min and max
    assert panel["edges"][0] == 6.98
    assert panel["edges"][-1] == 28.1
    assert len(panel["edges"]) == len(panel["counts"]) + 1 == 11
    open_bins = _histogram_panel(profile_summary()["columns"]["open bins"])
    assert open_bins == {"edges": [-1.0, 0.0, 5.0, 9.0], "counts": [5, 150, 42]}
    # a zero-width outer bin (min equals the first cut point) is dropped
    flat = _histogram_panel(
        {"min": 1.0, "max": 3.0, "histogram": {"edges": [1.0, 2.0], "counts": [0, 4, 5]}}
    )
    assert flat == {"edges": [1.0, 2.0, 3.0], "counts": [4, 5]}
    # categorical histogram without top: most frequent first
    cats = _histogram_panel({"histogram": {"categories": ["a", "b"], "counts": [1, 7]}})
    assert cats == {"categories": ["b", "a"], "counts": [7, 1]}


def test_real_profile_summary_renders() -> None:
    """The summary Profile writes, end to end (breast cancer data shipped with scikit-learn)."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    from bastion.data.profile import Profile

    frame = load_breast_cancer(as_frame=True).frame.iloc[:, :14].copy()
    frame.insert(0, "grade", np.where(frame["mean radius"] > 14, "high", "low"))
    profiles = {
        "train": Profile.from_frame(frame).summary(),
        "reference": Profile.reference(frame).summary(),
    }
    page = render(make_report(findings=(), profiles=profiles), "html")
    svgs = _svgs(page)
    assert len(svgs) == 2
    assert "mean radius" in svgs[0]
    assert ">high<" in svgs[0]  # the categorical column's top values
    assert "3 more columns not drawn" in page  # 15 plottable columns, 12 drawn
    assert "<code>grade</code>" in page


def test_robustness_curve_changes_and_adversarial_images_are_drawn() -> None:
    import dataclasses

    evidence = {
        "eps_unit": "std",
        "robustness_curve": [
            {"eps": 0.5, "robust_accuracy": 0.8, "attack_success_rate": 0.1},
            {"eps": 1.0, "robust_accuracy": 0.4, "attack_success_rate": 0.55},
        ],
        "perturbation_original_units": {"mean_abs_change": {"pixel_1": 1.5, "pixel_2": 0.5}},
        "samples": [
            {
                "label": 3,
                "adversarial_label": 8,
                "original": [[0.0, 1.0], [2.0, 3.0]],
                "adversarial": [[0.5, 1.0], [2.0, 2.5]],
            }
        ],
    }
    adv = Finding("ADV001", "Adversarial robustness", Status.FAIL, Severity.HIGH,
                  subject="model", evidence=evidence)  # fmt: skip
    base = make_report()
    with_samples = dataclasses.replace(base, findings=(adv,), raw_rows_allowed=True)
    page = render_html(with_samples)
    for title in ("Robustness curve", "What the attack changed", "Adversarial examples"):
        assert title in page
    without = render(dataclasses.replace(with_samples, raw_rows_allowed=False), "html")
    assert "Robustness curve" in without
    assert "Adversarial examples" not in without  # samples are raw rows: dropped by default


def test_extraction_fidelity_curve_is_drawn() -> None:
    import dataclasses

    curve = [
        {"budget": 50, "queries": 50, "fidelity": 0.9, "surrogate_accuracy": 0.88},
        {"budget": 100, "queries": 100, "fidelity": 0.97, "surrogate_accuracy": 0.93},
    ]
    ext = Finding("EXT001", "Model extraction", Status.FAIL, Severity.HIGH,
                  subject="model", evidence={"fidelity_curve": curve})  # fmt: skip
    page = render(dataclasses.replace(make_report(), findings=(ext,)), "html")
    assert "Model extraction: fidelity against queries" in page
    assert "<svg" in page.split("Model extraction: fidelity against queries")[1][:3000]


def test_a_fidelity_point_is_drawn_at_the_queries_it_trained_on() -> None:
    """A run stopped at 150 of 200 queries: its last point was drawn at 200 under the axis
    "queries spent", which made the copy look dearer than it was."""
    from bastion.reporting.plots import fidelity_curve_svg

    def curve(last_budget: int, last_queries: int) -> list[dict[str, float]]:
        return [
            {"budget": 100, "queries": 100, "fidelity": 0.9, "surrogate_accuracy": 0.88},
            {"budget": last_budget, "queries": last_queries, "fidelity": 0.95,
             "surrogate_accuracy": 0.9},
        ]  # fmt: skip

    stopped = fidelity_curve_svg(curve(200, 150), key="a")
    assert stopped == fidelity_curve_svg(curve(150, 150), key="a")
    assert stopped != fidelity_curve_svg(curve(200, 200), key="a")


@pytest.mark.parametrize(
    ("shape", "drawn"),
    [((1, 8, 8), (8, 8)), ((8, 8, 1), (8, 8)), ((8, 8, 3), (8, 8)), ((3, 6, 5), (6, 5))],
)
def test_adversarial_pictures_keep_their_height_and_width(
    shape: tuple[int, ...], drawn: tuple[int, int]
) -> None:
    """From a review: a channels-last image, (8, 8, 1) or (32, 32, 3), was averaged over its
    first axis and drew as an 8 x 1 strip; channels are read as Square reads them."""
    from bastion.reporting.plots import _as_image

    assert _as_image(np.arange(np.prod(shape), dtype=float).reshape(shape)).shape == drawn

"""Fairness checks FA001-FA004: planted bias fails, fair models pass, numbers match Fairlearn."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

import fairlearn.metrics as flm
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from bastion.checks import CHECKS, CheckConfig, CheckContext, Scope
from bastion.data.dataset import Dataset
from bastion.fairness.checks.demographic_parity import DemographicParity, DemographicParityConfig
from bastion.fairness.checks.disparate_impact import DisparateImpact, DisparateImpactConfig
from bastion.fairness.checks.equal_opportunity import EqualOpportunity, EqualOpportunityConfig
from bastion.fairness.checks.equalized_odds import EqualizedOdds, EqualizedOddsConfig
from bastion.findings import Finding, Severity, Status
from bastion.models.base import ModelAdapter

CHECK_CLASSES = {
    "FA001": DemographicParity,
    "FA002": EqualizedOdds,
    "FA003": EqualOpportunity,
    "FA004": DisparateImpact,
}
HEADLINE = {
    "FA001": "demographic_parity_difference",
    "FA002": "equalized_odds_difference",
    "FA003": "equal_opportunity_difference",
    "FA004": "demographic_parity_ratio",
}
Builder = Callable[..., tuple[Dataset, ModelAdapter]]


def context(
    test: Dataset, model: ModelAdapter, sensitive: tuple[str, ...] = ("group",), **kw: Any
) -> CheckContext:
    return CheckContext(
        seed=kw.pop("seed", 0),
        subject="model",
        test=test,
        model=model,
        sensitive_features=sensitive,
        **kw,
    )


def run(check_id: str, ctx: CheckContext, **options: Any) -> Finding:
    cls = CHECK_CLASSES[check_id]
    return cls(cls.Config(**options)).execute(ctx)


# -- registry ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("check_id", "name"),
    [
        ("FA001", "demographic_parity"),
        ("FA002", "equalized_odds"),
        ("FA003", "equal_opportunity"),
        ("FA004", "disparate_impact"),
    ],
)
def test_registered_with_ids_and_policy_names(check_id: str, name: str) -> None:
    cls = CHECKS.get(check_id)
    assert cls is CHECK_CLASSES[check_id]
    assert cls.name == name
    assert cls.category == "fairness"
    assert cls.scope is Scope.MODEL
    assert cls.severity is Severity.HIGH
    assert cls.needs_target
    assert cls.needs_sensitive
    assert cls.tags == ()
    assert cls.Config.model_config.get("extra") == "forbid"
    doc = sys.modules[cls.__module__].__doc__
    assert doc
    assert "Metrics" in doc
    assert "References" in doc
    assert [c.id for c in CHECKS if c.category == "fairness"] == list(CHECK_CLASSES)


# -- planted bias fails, a fair model passes ---------------------------------------------
@pytest.mark.parametrize("check_id", list(CHECK_CLASSES))
def test_fair_model_passes(check_id: str, make_biased: Builder) -> None:
    test, model = make_biased(bias=0.0)
    finding = run(check_id, context(test, model))
    assert finding.status is Status.PASS, finding.message
    assert finding.message.startswith("Within limits across 2 groups of group")


@pytest.mark.parametrize("check_id", list(CHECK_CLASSES))
def test_planted_bias_fails(check_id: str, make_biased: Builder) -> None:
    test, model = make_biased(bias=1.0)
    finding = run(check_id, context(test, model))
    assert finding.status is Status.FAIL, finding.message
    assert finding.severity is Severity.HIGH
    assert finding.message.startswith("Unfair across 2 groups of group")
    assert "group=b" in finding.message  # the disadvantaged group is named


@pytest.mark.parametrize(
    ("check_id", "options", "bias"),
    [
        ("FA001", {"max_difference": 0.5}, 0.5),  # difference ~0.19 passes at 0.5 ...
        ("FA002", {"max_difference": 0.5}, 0.5),
        ("FA003", {"max_difference": 0.5}, 0.5),
        ("FA004", {"min_ratio": 0.5}, 0.5),  # ratio ~0.62 passes at 0.5
    ],
)
def test_thresholds_come_from_the_config(
    check_id: str, options: dict[str, float], bias: float, make_biased: Builder
) -> None:
    test, model = make_biased(bias=bias)
    ctx = context(test, model)
    assert run(check_id, ctx, **options).status is Status.PASS
    assert run(check_id, context(test, model)).status is Status.FAIL  # ... and fails by default


def test_optional_min_ratio_fails_a_small_difference(make_biased: Builder) -> None:
    # selection rates ~0.5 vs ~0.42: difference below 0.1, ratio below 0.9
    test, model = make_biased(bias=0.2)
    assert run("FA001", context(test, model)).status is Status.PASS
    finding = run("FA001", context(test, model), min_ratio=0.9)
    assert finding.status is Status.FAIL
    assert "demographic_parity_ratio" in finding.message
    assert "below min_ratio 0.9" in finding.message
    assert finding.threshold == {"max_difference": 0.1, "min_ratio": 0.9, "min_group_size": 30}


# -- numbers, evidence ---------------------------------------------------------------------
@pytest.mark.parametrize("check_id", list(CHECK_CLASSES))
def test_evidence_and_intervals(check_id: str, make_biased: Builder) -> None:
    test, model = make_biased(bias=1.0)
    finding = run(check_id, context(test, model, seed=3))
    ev = finding.evidence
    assert set(ev) == {"sensitive_features", "by_group", "confidence_intervals", "small_groups"}
    assert ev["sensitive_features"] == ["group"]
    assert [r["group"] for r in ev["by_group"]] == ["group=a", "group=b"]
    assert sum(r["count"] for r in ev["by_group"]) == test.n_rows
    headline = HEADLINE[check_id]
    low, high = ev["confidence_intervals"][headline]
    assert finding.metrics[f"{headline}_ci_low"] == low
    assert finding.metrics[f"{headline}_ci_high"] == high
    assert low <= finding.metrics[headline] <= high
    assert finding.metrics["n_groups"] == 2
    json.dumps(finding.to_dict(), allow_nan=False)
    again = run(check_id, context(test, model, seed=3))
    assert again.metrics == finding.metrics
    assert again.message == finding.message


def test_metrics_equal_fairlearn_on_diabetes(
    diabetes: dict[str, Any], fn_model: Callable[..., ModelAdapter]
) -> None:
    frame = diabetes["frame"]
    test = Dataset.from_frame(
        frame,
        name="diabetes",
        target="target",
        sensitive=["sex", "age_band"],
        non_features=["age_band"],
    )
    estimator, features = diabetes["estimator"], diabetes["features"]
    model = fn_model(lambda x: estimator.predict(x[features]), classes=[0, 1])
    ctx = context(test, model, sensitive=("sex", "age_band"))
    y_true, y_pred, sf = diabetes["y_true"], diabetes["y_pred"], frame[["sex", "age_band"]]
    findings = {cid: run(cid, ctx) for cid in CHECK_CLASSES}
    findings["FA002-mean"] = run("FA002", ctx, agg="mean")
    expected = {
        "FA001": ["demographic_parity_difference", "demographic_parity_ratio"],
        "FA002": ["equalized_odds_difference", "equalized_odds_ratio"],
        "FA003": ["equal_opportunity_difference", "equal_opportunity_ratio"],
        "FA004": ["demographic_parity_ratio", "demographic_parity_difference"],
        "FA002-mean": ["equalized_odds_difference", "equalized_odds_ratio"],
    }
    for key, names in expected.items():
        kw = {"agg": "mean"} if key == "FA002-mean" else {}
        for name in names:
            theirs = getattr(flm, name)(y_true, y_pred, sensitive_features=sf, **kw)
            assert findings[key].metrics[name] == pytest.approx(theirs, abs=1e-12, rel=0), name
    eo = findings["FA002"].metrics
    assert eo["true_positive_rate_difference"] == pytest.approx(
        flm.MetricFrame(
            metrics=flm.true_positive_rate, y_true=y_true, y_pred=y_pred, sensitive_features=sf
        ).difference(),
        abs=1e-12,
    )
    assert [r["group"] for r in findings["FA001"].evidence["by_group"]][:2] == [
        "sex=1.0, age_band=40-59",
        "sex=1.0, age_band=60+",
    ]


# -- options and edge cases ----------------------------------------------------------------
def test_skipped_without_sensitive_features(make_biased: Builder) -> None:
    test, model = make_biased()
    for check_id in CHECK_CLASSES:
        finding = run(check_id, context(test, model, sensitive=()))
        assert finding.status is Status.SKIPPED
        assert "No sensitive features configured" in finding.message


def test_config_can_name_the_sensitive_features(make_biased: Builder) -> None:
    test, model = make_biased(bias=1.0)
    finding = run("FA001", context(test, model, sensitive=()), sensitive_features=["group"])
    assert finding.status is Status.FAIL
    assert DemographicParityConfig(sensitive_features="group").sensitive_features == ("group",)


def test_missing_sensitive_column_is_an_error_finding(make_biased: Builder) -> None:
    test, model = make_biased()
    finding = run("FA001", context(test, model, sensitive=("sex",)))
    assert finding.status is Status.ERROR
    assert "DataError: sensitive feature column(s) ['sex'] not found in test dataset 'test'" in (
        finding.message
    )
    assert "; columns are " in finding.message  # and what the dataset has instead


def test_small_groups_turn_a_pass_into_a_warning(make_biased: Builder) -> None:
    test, model = make_biased(small_group=12)
    finding = run("FA004", context(test, model), min_ratio=0.0)
    assert finding.status is Status.WARN
    assert finding.evidence["small_groups"] == ["group=c"]
    assert "1 group(s) have fewer than 30 rows (group=c)" in finding.message
    # the small group still counts in the metric, as in Fairlearn
    assert finding.metrics["n_groups"] == 3
    assert run("FA004", context(test, model), min_ratio=0.0, min_group_size=5).status is (
        Status.PASS
    )


def test_bootstrap_can_be_disabled_or_resized(make_biased: Builder) -> None:
    test, model = make_biased(bias=1.0)
    off = run("FA002", context(test, model), bootstrap={"n_resamples": 0})
    assert off.evidence["confidence_intervals"] == {}
    assert not any(k.endswith(("_ci_low", "_ci_high")) for k in off.metrics)
    assert EqualizedOddsConfig(bootstrap=False).bootstrap.n_resamples == 0
    assert EqualizedOddsConfig(bootstrap=200).bootstrap.n_resamples == 200
    narrow = run("FA002", context(test, model), bootstrap={"confidence": 0.5})
    wide = run("FA002", context(test, model), bootstrap={"confidence": 0.99})
    ci = "equalized_odds_difference_ci"
    width = [
        float(f.metrics[f"{ci}_high"] or 0) - float(f.metrics[f"{ci}_low"] or 0)
        for f in (narrow, wide)
    ]
    assert width[0] < width[1]
    assert "50% CI" in narrow.message


def test_configs_reject_bad_values() -> None:
    with pytest.raises(ValidationError):
        DemographicParityConfig(max_difference=-0.1)
    with pytest.raises(ValidationError):
        DisparateImpactConfig(min_ratio=1.5)
    with pytest.raises(ValidationError):
        EqualizedOddsConfig(agg="max")
    with pytest.raises(ValidationError):
        EqualOpportunityConfig(max_diference=0.2)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        DemographicParityConfig(bootstrap={"confidence": 1.0})
    assert DisparateImpactConfig().min_ratio == 0.8
    assert EqualOpportunityConfig().max_difference == 0.1


def test_a_bare_check_config_gets_the_defaults(make_biased: Builder) -> None:
    test, model = make_biased(bias=1.0)
    finding = DisparateImpact(CheckConfig()).execute(context(test, model))
    assert finding.status is Status.FAIL
    assert finding.threshold["min_ratio"] == 0.8


def test_severity_override(make_biased: Builder) -> None:
    test, model = make_biased(bias=1.0)
    finding = run("FA003", context(test, model), severity="low")
    assert finding.severity is Severity.LOW


def test_string_labels_use_the_positive_label(fn_model: Callable[..., ModelAdapter]) -> None:
    rng = np.random.default_rng(21)
    n = 2000
    group = np.where(rng.random(n) < 0.5, "a", "b")
    sick = rng.random(n) < 0.4
    frame = pd.DataFrame(
        {"x": rng.normal(size=n), "group": group, "target": np.where(sick, "sick", "healthy")}
    )
    test = Dataset.from_frame(frame, target="target", sensitive=["group"], non_features=["group"])
    flagged = np.where(group == "b", rng.random(n) < 0.2, rng.random(n) < 0.6)
    labels = np.where(flagged, "sick", "healthy")
    model = fn_model(lambda x: labels[: len(x)], classes=["healthy", "sick"])
    finding = run("FA001", context(test, model))
    theirs = flm.demographic_parity_difference(
        sick.astype(int), flagged.astype(int), sensitive_features=group
    )
    assert finding.metrics["demographic_parity_difference"] == pytest.approx(theirs, abs=1e-12)
    assert finding.status is Status.FAIL


def test_multiclass_needs_a_positive_label(fn_model: Callable[..., ModelAdapter]) -> None:
    rng = np.random.default_rng(22)
    n = 900
    group = np.where(rng.random(n) < 0.5, "a", "b")
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    frame = pd.DataFrame({"x": rng.normal(size=n), "group": group, "target": y})
    test = Dataset.from_frame(frame, target="target", sensitive=["group"], non_features=["group"])
    model = fn_model(lambda x: pred[: len(x)], classes=[0, 1, 2])
    skipped = run("FA001", context(test, model))
    assert skipped.status is Status.SKIPPED
    assert "set positive_label" in skipped.message
    finding = run("FA001", context(test, model, positive_label=2))
    theirs = flm.demographic_parity_difference(
        (y == 2).astype(int), (pred == 2).astype(int), sensitive_features=group
    )
    assert finding.metrics["demographic_parity_difference"] == pytest.approx(theirs, abs=1e-12)


def test_undefined_ratio_fails_closed(
    fn_model: Callable[..., ModelAdapter], make_biased: Builder
) -> None:
    # a model that selects nobody has no defined ratio: the four-fifths rule cannot be shown
    # to hold, so the gate must not pass it
    test, _ = make_biased()
    nobody = fn_model(lambda x: np.zeros(len(x), dtype=int), classes=[0, 1])
    finding = run("FA004", context(test, nobody))
    assert math.isnan(finding.metrics["demographic_parity_ratio"])  # type: ignore[arg-type]
    assert finding.status is Status.FAIL
    assert finding.message.startswith("Cannot judge fairness")
    assert "demographic_parity_ratio undefined so min_ratio 0.8 cannot be shown" in finding.message
    json.dumps(finding.to_dict(), allow_nan=False)

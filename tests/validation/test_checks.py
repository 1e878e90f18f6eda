"""MV001-MV005: registration, and a passing and a failing fixture for each check."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn import metrics as skm
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.dataset import Dataset
from bastion.findings import Severity, Status
from bastion.validation.checks.baseline_comparison import (
    BaselineComparison,
    BaselineComparisonConfig,
)
from bastion.validation.checks.calibration import Calibration, CalibrationConfig
from bastion.validation.checks.confusion_matrix import ConfusionMatrix, ConfusionMatrixConfig
from bastion.validation.checks.performance import Performance, PerformanceConfig
from bastion.validation.checks.slices import SliceConfig, SlicePerformance
from bastion.validation.metrics import compute_metrics

MakeCtx = Callable[..., CheckContext]

EXPECTED = {
    "MV001": (Performance, "performance", Severity.HIGH),
    "MV002": (Calibration, "calibration", Severity.MEDIUM),
    "MV003": (ConfusionMatrix, "confusion_matrix", Severity.MEDIUM),
    "MV004": (SlicePerformance, "slices", Severity.MEDIUM),
    "MV005": (BaselineComparison, "baseline_comparison", Severity.HIGH),
}


@pytest.mark.parametrize("check_id", sorted(EXPECTED))
def test_registered_with_contract(check_id: str) -> None:
    import bastion.validation.checks  # noqa: F401  (registers the package's checks)

    cls, name, severity = EXPECTED[check_id]
    # the registry's own loader also imports the data and fairness packages (other owners);
    # read the table directly so this test depends on this package only
    assert CHECKS._by_id[check_id] is cls
    assert (cls.name, cls.severity, cls.category, cls.scope) == (
        name,
        severity,
        "validation",
        Scope.MODEL,
    )
    assert cls.needs_target
    assert issubclass(cls.Config, CheckConfig)
    assert cls.__module__.startswith("bastion.validation.checks.")
    assert cls.__doc__
    assert "What it detects" in (sys.modules[cls.__module__].__doc__ or "")


def _run(check: Check, ctx: CheckContext) -> Any:
    finding = check.execute(ctx)
    assert finding.status is not Status.ERROR, finding.message
    return finding


# -- MV001 -------------------------------------------------------------------------------
def test_performance_pass(make_ctx: MakeCtx, cancer_test: Dataset, cancer_model: Any) -> None:
    ctx = make_ctx(cancer_test, cancer_model)
    cfg = PerformanceConfig(min_accuracy=0.9, min_roc_auc=0.95, max_log_loss=0.3, max_brier=0.1)
    f = _run(Performance(cfg), ctx)
    assert f.status is Status.PASS
    assert f.severity is Severity.HIGH
    assert dict(f.metrics) == compute_metrics(ctx.predictions())
    assert f.threshold == {
        "min_accuracy": 0.9,
        "min_roc_auc": 0.95,
        "max_log_loss": 0.3,
        "max_brier": 0.1,
    }


def test_performance_fail_names_each_violation(
    make_ctx: MakeCtx, cancer_test: Dataset, cancer_dummy: Any
) -> None:
    cfg = PerformanceConfig(min_accuracy=0.9, min_f1=0.5, max_brier=0.1, min_recall=0.5)
    f = _run(Performance(cfg), make_ctx(cancer_test, cancer_dummy))
    assert f.status is Status.FAIL
    assert "accuracy" in f.message
    assert "max_brier" in f.message
    assert "min_recall" not in f.message  # always predicting the positive class: recall 1
    assert f.metrics["accuracy"] == pytest.approx(np.mean(cancer_test.labels == 1))


def test_performance_without_limits_is_info_and_unjudged_limit_fails(
    make_ctx: MakeCtx, cancer_test: Dataset, cancer_model: Any
) -> None:
    info = _run(Performance(), make_ctx(cancer_test, cancer_model))
    assert info.status is Status.PASS
    assert "No limits" in info.message
    ctx = make_ctx(cancer_test, cancer_model, with_proba=False)
    f = _run(Performance(PerformanceConfig(min_roc_auc=0.9)), ctx)
    assert f.status is Status.FAIL  # fail closed: the limit cannot be shown to hold
    assert "roc_auc" not in f.metrics
    assert "Not judged: roc_auc" in f.message


@pytest.mark.parametrize(
    "kwargs", [{"min_accuracy": 1.5}, {"min_recall": -0.1}, {"max_log_loss": -1.0}, {"x": 1}]
)
def test_performance_config_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        PerformanceConfig(**kwargs)


# -- MV002 -------------------------------------------------------------------------------
def test_calibration_pass_with_bins(
    make_ctx: MakeCtx, cancer_test: Dataset, cancer_model: Any
) -> None:
    ctx = make_ctx(cancer_test, cancer_model)
    f = _run(Calibration(), ctx)
    assert f.status is Status.PASS
    assert f.metrics["ece"] == compute_metrics(ctx.predictions())["ece"] < 0.1
    bins = f.evidence["bins"]
    assert sum(b["count"] for b in bins) == cancer_test.n_rows
    assert set(bins[0]) == {"lower", "upper", "count", "mean_predicted", "fraction_positive"}
    assert bins[-1]["upper"] == 1.0


def test_calibration_fail_on_underconfident_model(
    make_ctx: MakeCtx, cancer_test: Dataset, cancer_model: Any
) -> None:
    def squash(p: np.ndarray) -> np.ndarray:  # pull every probability towards 0.5
        return 0.5 + (p - 0.5) * 0.3

    f = _run(
        Calibration(CalibrationConfig(max_ece=0.1)),
        make_ctx(cancer_test, cancer_model, proba_map=squash),
    )
    assert f.status is Status.FAIL
    assert f.metrics["ece"] > 0.25
    assert all(0.3 < b["mean_predicted"] < 0.7 for b in f.evidence["bins"])


def test_calibration_skipped_without_proba(
    make_ctx: MakeCtx, cancer_test: Dataset, cancer_model: Any
) -> None:
    f = _run(Calibration(), make_ctx(cancer_test, cancer_model, with_proba=False))
    assert f.status is Status.SKIPPED
    assert "predict_proba" in f.message


# -- MV003 -------------------------------------------------------------------------------
def test_confusion_matrix_pass_and_evidence(
    make_ctx: MakeCtx, cancer_test: Dataset, cancer_model: Any
) -> None:
    ctx = make_ctx(cancer_test, cancer_model)
    cfg = ConfusionMatrixConfig(min_class_recall=0.8, max_false_negative_rate=0.2)
    f = _run(ConfusionMatrix(cfg), ctx)
    pred = ctx.predictions()
    assert f.status is Status.PASS
    assert f.evidence["labels"] == [0, 1]
    assert f.evidence["matrix"] == skm.confusion_matrix(pred.y_true, pred.y_pred).tolist()
    per_class = skm.recall_score(pred.y_true, pred.y_pred, average=None)
    assert f.metrics["recall[0]"] == pytest.approx(per_class[0])
    assert f.metrics["recall[1]"] == pytest.approx(per_class[1])
    assert f.metrics["min_class_recall"] == pytest.approx(per_class.min())
    assert f.metrics["false_negative_rate"] == pytest.approx(1 - per_class[1])
    info = _run(ConfusionMatrix(), ctx)
    assert info.status is Status.PASS
    assert info.threshold == {}


def test_confusion_matrix_fail_on_missed_positives(
    make_ctx: MakeCtx, cancer_test: Dataset, cancer_dummy: Any
) -> None:
    # diagnostic story: malignant (0) is the positive class; the dummy never predicts it
    ctx = make_ctx(cancer_test, cancer_dummy, positive_label=0)
    cfg = ConfusionMatrixConfig(max_false_negative_rate=0.1)
    f = _run(ConfusionMatrix(cfg), ctx)
    assert f.status is Status.FAIL
    assert f.metrics["false_negative_rate"] == 1.0
    assert f.metrics["min_class_recall"] == 0.0
    assert "false-negative rate of class 0" in f.message
    f2 = _run(ConfusionMatrix(ConfusionMatrixConfig(min_class_recall=0.5)), ctx)
    assert f2.status is Status.FAIL
    assert "0 (0.0000)" in f2.message


def test_confusion_matrix_multiclass_fnr_only_with_positive_label(
    make_ctx: MakeCtx,
) -> None:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    model = LogisticRegression(max_iter=1000).fit(frame.drop(columns="target"), frame["target"])
    test = Dataset.from_frame(frame, target="target")
    plain = _run(ConfusionMatrix(), make_ctx(test, model))
    assert "false_negative_rate" not in plain.metrics
    assert len(plain.evidence["matrix"]) == 3
    cfg = ConfusionMatrixConfig(max_false_negative_rate=0.5)
    named = _run(ConfusionMatrix(cfg), make_ctx(test, model, positive_label=2))
    assert named.metrics["false_negative_rate"] == pytest.approx(1 - named.metrics["recall[2]"])
    unjudged = _run(ConfusionMatrix(cfg), make_ctx(test, model))
    assert unjudged.status is Status.FAIL


# -- MV004 -------------------------------------------------------------------------------
def _sites(bad_site: bool) -> tuple[Dataset, Any]:
    """x decides the label everywhere except (optionally) at site C, where it is inverted."""
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "site": rng.choice(["A", "B", "C"], size=n, p=[0.45, 0.4, 0.15]),
            "age": rng.integers(20, 90, size=n),
        }
    )
    frame.loc[:5, "site"] = "D"  # a tiny site: reported, not judged
    y = (frame["x"] > 0).to_numpy().astype(int)
    if bad_site:
        y = np.where(frame["site"].isin(["C", "D"]).to_numpy(), 1 - y, y)
    frame["y"] = y
    model = LogisticRegression().fit(frame[["x", "noise"]], (frame["x"] > 0).astype(int))
    data = Dataset.from_frame(frame, target="y", sensitive=["site"], non_features=["site", "age"])
    return data, model


def test_slices_pass(make_ctx: MakeCtx) -> None:
    data, model = _sites(bad_site=False)
    ctx = make_ctx(data, model, sensitive_features=("site",))
    f = _run(SlicePerformance(SliceConfig(columns=["site", "age"])), ctx)
    assert f.status is Status.PASS, f.message
    slices = f.evidence["slices"]
    assert [s["slice"] for s in slices if s["column"] == "site"] == ["A", "B", "C", "D"]
    assert sum(s["column"] == "age" for s in slices) == 4  # quantile bins
    assert sum(s["size"] for s in slices if s["column"] == "age") == data.n_rows
    assert f.tags == ("ML08",)


def test_slices_fail_on_bad_site(make_ctx: MakeCtx) -> None:
    data, model = _sites(bad_site=True)
    ctx = make_ctx(data, model, sensitive_features=("site",))
    f = _run(SlicePerformance(), ctx)  # default columns: the sensitive features
    assert f.status is Status.FAIL
    assert "site=C" in f.message
    by_slice = {s["slice"]: s for s in f.evidence["slices"]}
    assert by_slice["D"]["judged"] is False
    assert by_slice["D"]["size"] == 6
    mask = (data.frame["site"] == "C").to_numpy()
    pred = ctx.predictions()
    assert by_slice["C"]["metric"] == pytest.approx(
        skm.accuracy_score(pred.y_true[mask], pred.y_pred[mask])
    )
    assert f.metrics["gap"] == pytest.approx(f.metrics["overall"] - f.metrics["worst_slice"])
    # lower-is-better metric: the worst slice has the largest log-loss
    ll = _run(SlicePerformance(SliceConfig(metric="log_loss", max_gap=0.5)), ctx)
    assert ll.status is Status.FAIL
    assert ll.metrics["worst_slice"] > ll.metrics["overall"]


def test_slices_skip_and_errors(make_ctx: MakeCtx) -> None:
    data, model = _sites(bad_site=False)
    data_plain = Dataset.from_frame(data.frame, target="y", non_features=["site", "age"])
    assert _run(SlicePerformance(), make_ctx(data_plain, model)).status is Status.SKIPPED
    bad = SlicePerformance(SliceConfig(columns=["hospital"])).execute(make_ctx(data, model))
    assert bad.status is Status.ERROR
    assert "'hospital'" in bad.message
    big = SliceConfig(columns=["site"], min_slice_size=10_000)
    assert _run(SlicePerformance(big), make_ctx(data, model)).status is Status.SKIPPED
    with pytest.raises(ValidationError, match="metric must be one of"):
        SliceConfig(metric="auc")


# -- MV005 -------------------------------------------------------------------------------
def test_baseline_comparison_pass(
    make_ctx: MakeCtx, cancer_test: Dataset, cancer_model: Any, cancer_dummy: Any
) -> None:
    ctx = make_ctx(cancer_test, cancer_model, baseline=cancer_dummy, seed=3)
    f = _run(BaselineComparison(), ctx)
    assert f.status is Status.PASS
    assert set(f.metrics) == {"new", "baseline", "difference", "ci_low", "ci_high"}
    assert f.metrics["ci_low"] > 0
    again = _run(
        BaselineComparison(), make_ctx(cancer_test, cancer_model, baseline=cancer_dummy, seed=3)
    )
    assert again.metrics == f.metrics  # seeded by the run


def test_baseline_comparison_fail_when_significantly_worse(
    make_ctx: MakeCtx, cancer_test: Dataset, cancer_model: Any, cancer_dummy: Any
) -> None:
    ctx = make_ctx(cancer_test, cancer_dummy, baseline=cancer_model)
    f = _run(BaselineComparison(), ctx)
    assert f.status is Status.FAIL
    assert f.severity is Severity.HIGH
    assert f.metrics["ci_high"] < 0
    assert f.metrics["difference"] == pytest.approx(f.metrics["new"] - f.metrics["baseline"])
    # a margin wider than the shortfall tolerates it
    wide = BaselineComparisonConfig(margin=0.6)
    assert _run(BaselineComparison(wide), ctx).status is Status.PASS
    # lower-is-better metric: larger log-loss is worse
    ll = _run(BaselineComparison(BaselineComparisonConfig(metric="log_loss")), ctx)
    assert ll.status is Status.FAIL
    assert ll.metrics["ci_low"] > 0


def test_baseline_comparison_skipped_without_baseline_and_fails_when_unjudgeable(
    make_ctx: MakeCtx, cancer_test: Dataset, cancer_model: Any
) -> None:
    f = _run(BaselineComparison(), make_ctx(cancer_test, cancer_model))
    assert f.status is Status.SKIPPED
    assert "baseline" in f.message
    no_proba = make_ctx(cancer_test, cancer_model, baseline=cancer_model, with_proba=False)
    g = _run(BaselineComparison(BaselineComparisonConfig(metric="roc_auc")), no_proba)
    assert g.status is Status.FAIL
    assert "Cannot compare" in g.message
    assert "predict_proba" in g.message
    with pytest.raises(ValidationError):
        BaselineComparisonConfig(confidence=1.0)


def test_dummy_is_not_flagged_against_itself(make_ctx: MakeCtx, cancer_test: Dataset) -> None:
    x = cancer_test.features
    a = DummyClassifier(strategy="prior").fit(x, cancer_test.labels)
    f = _run(BaselineComparison(), make_ctx(cancer_test, a, baseline=a))
    assert f.status is Status.PASS
    assert f.metrics["ci_low"] == f.metrics["ci_high"] == 0.0

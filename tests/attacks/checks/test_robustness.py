"""ADV001: the evasion gate check, end to end on breast cancer."""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from bastion.attacks.checks.robustness import (
    EvasionCheck,
    EvasionCheckConfig,
    _sanity,
    resolve_attack,
)
from bastion.attacks.results import EvasionResult
from bastion.checks import CHECKS, CheckContext
from bastion.config import parse_policy
from bastion.data.dataset import Dataset
from bastion.data.schema import FeatureSchema
from bastion.exceptions import ConfigError
from bastion.findings import Status
from bastion.models.callable import CallableAdapter
from bastion.models.sklearn import SklearnAdapter


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=0)
    frame = frame.reset_index(drop=True)
    train = Dataset.from_frame(
        frame.iloc[:400].reset_index(drop=True), name="train", target="target"
    )
    test = Dataset.from_frame(frame.iloc[400:].reset_index(drop=True), name="test", target="target")
    X = train.features.to_numpy()
    return {
        "train": train,
        "test": test,
        "schema": FeatureSchema.infer(train.frame, exclude=("target",)),
        "lr": LogisticRegression(max_iter=5000).fit(X, train.labels),
        "gb": GradientBoostingClassifier(n_estimators=50, random_state=0).fit(X, train.labels),
    }


def _ctx(data: dict[str, Any], model: Any, seed: int = 0) -> CheckContext:
    return CheckContext(
        seed=seed,
        subject="model",
        train=data["train"],
        test=data["test"],
        schema=data["schema"],
        model=model,
    )


def _run(data: dict[str, Any], model: Any, **options: Any) -> Any:
    options.setdefault("n_points", 60)
    options.setdefault("max_queries_per_sample", 300)
    return EvasionCheck(EvasionCheckConfig(**options)).execute(_ctx(data, model))


def test_a_limit_never_judged_because_the_attack_never_started_fails(
    data: dict[str, Any],
) -> None:
    """From a review: a time budget spent before the first attack query left robust
    accuracy at the clean accuracy, and min_robust_accuracy passed as a warn (exit 0, a
    required check included). With no limit set it stays a report-only warning."""
    model = SklearnAdapter(data["gb"])
    limited = _run(data, model, attack="square", max_seconds=1e-4, min_robust_accuracy=0.5)
    assert limited.status is Status.FAIL
    assert "Limits not shown to hold: the attack stopped" in limited.message
    assert "raise max_seconds" in limited.message
    report_only = _run(data, model, attack="square", max_seconds=1e-4)
    assert report_only.status is Status.WARN
    # an attack that ran is judged on its figure as before
    ran = _run(data, model, attack="square", min_robust_accuracy=0.01)
    assert ran.status is Status.PASS


def test_unproven_names_an_attack_that_never_started_and_one_unfinished() -> None:
    from dataclasses import replace

    from bastion.attacks.checks.robustness import _unproven

    fine = _result([True, False, True], 0.2)
    assert _unproven(fine) is None
    never = replace(fine, stopped="query budget", queries=np.array([2, 1, 2]))
    assert "before any point was queried beyond" in str(_unproven(never))
    worked = replace(never, queries=np.array([40, 1, 2]))
    assert _unproven(worked) is None  # the budget given is the threat model
    assert "raise max_seconds" in str(_unproven(replace(worked, stopped="time budget")))
    # Ctrl-C is the runner's: any interrupted finding but a failure becomes an error
    assert _unproven(replace(worked, stopped="interrupted")) is None


def test_a_column_the_model_does_not_read_is_left_out_of_the_attack(
    data: dict[str, Any],
) -> None:
    """From a review: a record id beside the inputs of a model fitted on a frame (its
    predict leaves the id out, and the Test pillar's checks pass) made the attack hand the
    model 31 values for 30 inputs, an error finding that exited as a failed gate."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = data["train"], data["test"]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model = SklearnAdapter(clf.fit(train.features, train.labels))

    def with_id(ds: Dataset) -> Dataset:
        frame = ds.frame.assign(record_id=np.arange(ds.n_rows) * 7.0)
        return Dataset.from_frame(frame, name=ds.name, target="target")

    options = EvasionCheckConfig(n_points=40, max_queries_per_sample=100, attack="square")
    plain = EvasionCheck(options).execute(_ctx(data, model))
    ctx = CheckContext(
        seed=0, subject="model", train=with_id(train), test=with_id(test),
        schema=data["schema"], model=model,
    )  # fmt: skip
    extra = EvasionCheck(options).execute(ctx)
    assert extra.status is plain.status is Status.PASS, extra.message
    assert extra.metrics == plain.metrics


def test_identity_and_registration() -> None:
    assert CHECKS.get("ADV001") is EvasionCheck
    assert EvasionCheck.name == "evasion"
    assert EvasionCheck.category == "robustness"
    assert EvasionCheck.enabled_by_default is False
    assert EvasionCheck.tags == ("AML.T0015", "AML.T0043", "ML01")
    policy = parse_policy({"checks": {"robustness": {"evasion": {"eps": 0.3}}}})
    enabled = {c.id: c for c in policy.enabled_checks()}
    assert enabled["ADV001"].config.eps == 0.3  # type: ignore[attr-defined]
    assert "ADV001" not in {c.id for c in parse_policy({}).enabled_checks()}


def test_passes_at_a_small_eps_and_fails_at_a_large_one(data: dict[str, Any]) -> None:
    model = SklearnAdapter(data["lr"])
    passing = _run(data, model, eps=0.02, min_robust_accuracy=0.8)
    failing = _run(data, model, eps=1.0, min_robust_accuracy=0.8)
    assert passing.status is Status.PASS, passing.message
    assert passing.metrics["robust_accuracy"] >= 0.8
    assert failing.status is Status.FAIL
    assert failing.metrics["robust_accuracy"] < 0.8
    assert "robust_accuracy" in failing.message
    assert failing.threshold == {"min_robust_accuracy": 0.8}
    assert failing.evidence["attack"] == "square"
    by_rate = _run(data, model, eps=1.0, max_attack_success_rate=0.1)
    assert by_rate.status is Status.FAIL
    assert by_rate.metrics["attack_success_rate"] > 0.1
    for name in ("clean_accuracy", "robust_accuracy", "attack_success_rate", "median_queries"):
        assert name in failing.metrics
    assert "time_s" not in failing.metrics  # wall time lives in duration_s


def test_an_empty_curve_is_eps_alone(data: dict[str, Any]) -> None:
    """``eps_curve: []`` ran the default four radii (and gave the run at eps half the
    time)."""
    finding = _run(data, SklearnAdapter(data["lr"]), eps=0.5, eps_curve=(), n_points=10)
    assert [p["eps"] for p in finding.evidence["robustness_curve"]] == [0.5]


def test_the_row_shape_of_torch_and_onnx_models() -> None:
    """``--save-adv`` shapes images by it: an ONNX graph's rows stayed flat (it keeps the
    shape as ``row_shape``)."""
    from types import SimpleNamespace

    from bastion.attacks.checks.robustness import row_shape

    assert row_shape(SimpleNamespace(input_shape=[1, 8, 8])) == (1, 8, 8)
    assert row_shape(SimpleNamespace(input_shape=None, row_shape=(3, 4))) == (3, 4)
    assert row_shape(SimpleNamespace()) is None
    # and eps is in input units for both (an ONNX image model's eps read as std units)
    from bastion.attacks.checks.robustness import _takes_tensors

    assert _takes_tensors("auto", SimpleNamespace(row_shape=(1, 8, 8)))  # type: ignore[arg-type]
    assert not _takes_tensors("auto", SimpleNamespace(input_shape=(30,)))  # type: ignore[arg-type]


def test_robustness_curve_is_monotone_on_a_real_model(data: dict[str, Any]) -> None:
    finding = _run(data, SklearnAdapter(data["gb"]), eps=0.5, eps_curve=(0.1, 0.25, 1.0, 2.0))
    curve = finding.evidence["robustness_curve"]
    assert [p["eps"] for p in curve] == [0.1, 0.25, 0.5, 1.0, 2.0]
    robust = [p["robust_accuracy"] for p in curve]
    rates = [p["attack_success_rate"] for p in curve]
    assert all(a >= b for a, b in itertools.pairwise(robust))
    assert all(a <= b for a, b in itertools.pairwise(rates))
    assert robust[0] > robust[-1]  # the curve says something
    at_eps = next(p for p in curve if p["eps"] == 0.5)
    assert at_eps["robust_accuracy"] == finding.metrics["robust_accuracy"]
    assert finding.evidence["bounds_inferred"] is True
    assert finding.evidence["constraints"]["n_features"] == 30
    assert finding.evidence["curve_complete"] is True


def test_outputs_that_move_without_changing_a_label_are_non_deterministic(
    data: dict[str, Any],
) -> None:
    """Noise that never flips a label (dropout left on, say): asking for labels only, the
    model looked deterministic; its probabilities tell."""
    rng = np.random.default_rng(0)
    lr = data["lr"]

    def jittered(X: np.ndarray) -> np.ndarray:
        p = lr.predict_proba(X)[:, 1]
        p = np.clip(p + rng.uniform(-0.01, 0.01, len(X)), 0.0, 1.0)
        return np.stack([1 - p, p], axis=1)

    model = CallableAdapter(predict_proba=jittered, classes=[0, 1], name="jittered")
    X = data["test"].features.to_numpy()[:40]
    assert (model.predict(X) == model.predict(X)).mean() > 0.9  # labels mostly hold
    finding = _run(data, model, eps=0.5, n_points=40, max_queries_per_sample=50)
    note = next(n for n in finding.evidence["sanity"] if "non-deterministic" in n)
    assert "rows got other probabilities (by up to 0.0" in note
    assert finding.status is Status.WARN, finding.message


def test_a_slow_model_gives_its_time_to_the_attack_not_to_the_sanity_requests(
    data: dict[str, Any],
) -> None:
    """From a review: the non-determinism note asked for every point four times before the
    attack; at one request a second and max_seconds 4, the attack then made one query a
    point (the clean prediction). It now asks after the attacks, in the time they left."""
    import time as clock

    lr = data["lr"]

    def slow(fn: Any) -> Any:
        def answer(X: Any) -> Any:
            clock.sleep(0.25)
            return fn(X)

        return answer

    model = CallableAdapter(
        predict=slow(lr.predict), predict_proba=slow(lr.predict_proba), classes=[0, 1]
    )
    finding = _run(
        data, model, attack="square", eps=0.5, eps_curve=(), n_points=10, max_seconds=1.5
    )
    assert finding.metrics["max_queries"] > 1  # the attack searched
    assert any("not asked twice (no time left)" in n for n in finding.evidence["sanity"])


def test_random_labels_beside_steady_probabilities_are_non_deterministic(
    data: dict[str, Any],
) -> None:
    """From a review: comparing probabilities only, a model whose labels are random but whose
    probabilities are steady passed; the attacks' success checks read the labels."""
    rng = np.random.default_rng(0)
    lr = data["lr"]

    def predict(X: np.ndarray) -> np.ndarray:
        labels = lr.predict(X)
        flip = rng.random(len(X)) < 0.3
        return np.where(flip, 1 - labels, labels)

    model = CallableAdapter(predict=predict, predict_proba=lr.predict_proba, classes=[0, 1])
    finding = _run(data, model, eps=0.5, n_points=40, max_queries_per_sample=50)
    note = next(n for n in finding.evidence["sanity"] if "non-deterministic" in n)
    assert "rows got another label" in note
    assert "other probabilities" not in note


def test_probabilities_the_adapter_refuses_do_not_stop_a_label_attack(
    data: dict[str, Any],
) -> None:
    """From a review: NaN scores made the check an error before any attack, even for
    HopSkipJump, which reads labels only; now a sanity note."""
    lr = data["lr"]

    def proba(X: np.ndarray) -> np.ndarray:
        out = lr.predict_proba(X)
        out[::7] = np.nan
        return out

    model = CallableAdapter(predict=lr.predict, predict_proba=proba, classes=[0, 1])
    finding = _run(data, model, attack="hopskipjump", eps=0.5, n_points=30)
    assert finding.status is not Status.ERROR, finding.message
    assert any("unusable probabilities" in n for n in finding.evidence["sanity"])
    assert not any("non-deterministic" in n for n in finding.evidence["sanity"])


def test_non_deterministic_predictions_raise_a_sanity_warning(data: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)

    def noisy(X: np.ndarray) -> np.ndarray:
        p = rng.random(len(X))
        return np.stack([p, 1 - p], axis=1)

    model = CallableAdapter(predict_proba=noisy, classes=[0, 1], name="randomised")
    finding = _run(data, model, eps=0.5, n_points=40, max_queries_per_sample=50)
    assert finding.status is Status.WARN, finding.message
    assert any("non-deterministic" in note for note in finding.evidence["sanity"])
    assert "non-deterministic" in finding.message
    # a deterministic model at the same settings: no warning
    clean = _run(data, SklearnAdapter(data["lr"]), eps=0.5, n_points=40)
    assert clean.evidence["sanity"] == []
    assert clean.status is Status.PASS


def test_a_gate_failure_beats_a_sanity_warning(data: dict[str, Any]) -> None:
    rng = np.random.default_rng(1)
    model = CallableAdapter(
        predict=lambda X: rng.integers(0, 2, len(X)),
        name="coin",
    )
    finding = _run(data, model, eps=0.5, n_points=30, min_robust_accuracy=0.99)
    assert finding.status is Status.FAIL
    assert finding.evidence["attack"] == "hopskipjump"  # labels only
    assert finding.evidence["sanity"]


def test_samples_only_under_samples(data: dict[str, Any]) -> None:
    finding = _run(data, SklearnAdapter(data["lr"]), eps=1.0, n_samples=2)
    samples = finding.evidence["samples"]
    assert len(samples) == 2
    first = samples[0]
    assert first["label"] != first["adversarial_label"]
    assert first["changes"]
    assert {"feature", "original", "adversarial", "change", "change_std"} <= set(
        first["changes"][0]
    )
    # no raw value outside samples (integers aside: a count of 0 is no data)
    raw_values = {c[k] for s in samples for c in s["changes"] for k in ("original", "adversarial")}
    rest = _numbers({k: v for k, v in finding.evidence.items() if k != "samples"})
    assert not {v for v in raw_values if not float(v).is_integer()} & rest
    json.dumps(finding.to_dict(), allow_nan=False)
    none = _run(data, SklearnAdapter(data["lr"]), eps=1.0, n_samples=0)
    assert "samples" not in none.evidence


def _numbers(value: Any) -> set[float]:
    """Every number in a JSON-like value."""
    if isinstance(value, dict):
        return set().union(*(_numbers(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(_numbers(v) for v in value)) if value else set()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {float(value)}
    return set()


def test_test_rows_without_a_label_are_left_out(data: dict[str, Any]) -> None:
    """A missing label used to count its row as misclassified (clean accuracy too low)."""
    frame = data["test"].frame.copy()
    frame["target"] = frame["target"].astype(float)
    frame.loc[:9, "target"] = np.nan
    partial = {**data, "test": Dataset.from_frame(frame, name="test", target="target")}
    finding = _run(partial, SklearnAdapter(data["lr"]), n_points=500, eps=0.05)
    assert finding.evidence["unlabelled_rows_left_out"] == 10
    assert finding.metrics["n_points"] == len(frame) - 10
    assert "10 test row(s) without a label left out" in finding.message
    labelled = frame["target"].notna().to_numpy()
    right = data["lr"].predict(frame.drop(columns="target").to_numpy()[labelled])
    expected = np.mean(right == frame["target"].to_numpy()[labelled])
    assert finding.metrics["clean_accuracy"] == pytest.approx(expected)


def test_capabilities_decide_the_attack_or_skip(data: dict[str, Any]) -> None:
    labels_only = SklearnAdapter(data["lr"])
    labels_only.capabilities = frozenset(
        c for c in labels_only.capabilities if c.value == "predict"
    )
    assert resolve_attack("auto", labels_only) == "hopskipjump"
    assert resolve_attack("auto", SklearnAdapter(data["lr"])) == "square"
    assert resolve_attack("pgd", labels_only) == "pgd"
    skipped = _run(data, labels_only, attack="square")
    assert skipped.status is Status.SKIPPED
    assert "predict_proba" in skipped.message
    # a wrong attack name is a policy error (exit 2), named with the known attacks
    with pytest.raises(ValidationError, match=r"expected one of .*auto.*square.*got 'nope'"):
        EvasionCheckConfig(attack="nope")
    with pytest.raises(ValidationError, match="membership_threshold"):
        EvasionCheckConfig(attack="membership_threshold")


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        EvasionCheckConfig(eps_curve=(0.1, -1.0))
    with pytest.raises(ValidationError):
        EvasionCheckConfig(eps=0)
    with pytest.raises(ValidationError):
        EvasionCheckConfig(eps=float("inf"))
    with pytest.raises(ValidationError):
        EvasionCheckConfig(norm="1")  # type: ignore[arg-type]
    assert EvasionCheckConfig(eps_curve=[0.1, 0.2]).eps_curve == (0.1, 0.2)  # type: ignore[arg-type]


def _result(success: list[bool], eps: float, **extra: Any) -> EvasionResult:
    n = len(success)
    ok = np.array(success)
    return EvasionResult(
        attack="x",
        x_adv=np.zeros((n, 2)),
        y_true=np.zeros(n, dtype=int),
        clean_pred=np.zeros(n, dtype=int),
        adv_pred=ok.astype(int),
        success=ok,
        perturbation=np.where(ok, eps, np.nan),
        queries=np.ones(n, dtype=np.int64),
        eps=eps,
        norm="inf",
        elapsed_s=0.0,
        extra=extra,
    )


def test_sanity_notes_against_false_assurance() -> None:
    fine = {
        0.1: _result([True, False, False, False], 0.1),
        0.2: _result([True, True, False, False], 0.2),
    }
    assert _sanity(fine, fine[0.2], "square", False) == []
    falling = {
        0.1: _result([True, True, True, False], 0.1),
        0.2: _result([True, False, False, False], 0.2),
    }
    notes = _sanity(falling, falling[0.2], "square", False)
    assert any("falls" in n for n in notes)
    masked = _result([False] * 4, 0.2, zero_gradient_fraction=0.9, nan_gradients=True)
    notes = _sanity({0.2: masked}, masked, "auto", False)
    assert any("zero input gradients" in n for n in notes)
    assert any("NaN" in n for n in notes)
    stages = [
        {"attack": "apgd-ce", "points": 4, "new_successes": 3},
        {"attack": "apgd-dlr", "points": 1, "new_successes": 0},
        {"attack": "square", "points": 1, "new_successes": 2},
    ]
    ensemble = _result([True] * 4, 0.2, stages=stages)
    notes = _sanity({0.2: ensemble}, ensemble, "auto", False)
    assert any("black-box square" in n and "gradient masking" in n for n in notes)


@pytest.mark.parametrize(
    ("attacked", "new", "warned"),
    [(193, 1, False), (193, 3, False), (193, 4, True), (50, 2, True), (10, 1, False)],
)
def test_square_finding_a_few_points_more_is_no_masking(
    attacked: int, new: int, warned: bool
) -> None:
    """From a review: Square breaking 1 of the 193 points auto attacked (the white-box
    stages had left 56) warned of gradient masking on an undefended digits MLP; more than
    2% of the points (and more than one) is the sign, as for a falling success."""
    stages = [
        {"attack": "apgd-ce", "points": attacked, "new_successes": attacked // 2},
        {"attack": "apgd-dlr", "points": attacked - attacked // 2, "new_successes": 0},
        {"attack": "square", "points": attacked - attacked // 2, "new_successes": new},
    ]
    ensemble = _result([True] * 4, 0.2, stages=stages)
    notes = _sanity({0.2: ensemble}, ensemble, "auto", False)
    assert any("gradient masking" in n for n in notes) is warned


def test_sanity_notes_on_rounding_rejections_and_the_query_budget() -> None:
    from dataclasses import replace

    fine = _result([True, False], 0.2, rejected_after_projection=0)
    assert _sanity({0.2: fine}, fine, "pgd", False) == []
    rejected = _result([True, False], 0.2, rejected_after_projection=3)
    notes = _sanity({0.2: rejected}, rejected, "pgd", True)
    assert any(n.startswith("3 candidates were rejected after rounding") for n in notes)
    # nothing rounded (box constraints only): the verification refuted them, and the note
    # says so instead of sending the user to integer and one-hot declarations (a review)
    notes = _sanity({0.2: rejected}, rejected, "pgd", False)
    assert any(
        n.startswith("3 candidates were misclassified in the attack's loop but not at the final")
        for n in notes
    )
    assert not any("rounding" in n for n in notes)
    # auto reports its stages' rejections
    stages = [
        {"attack": "apgd-ce", "new_successes": 1, "rejected_after_projection": 2},
        {"attack": "apgd-dlr", "new_successes": 0, "rejected_after_projection": 1},
    ]
    ensemble = _result([True, False], 0.2, stages=stages)
    notes = _sanity({0.2: ensemble}, ensemble, "auto", True)
    assert any(n.startswith("3 candidates were rejected after rounding") for n in notes)
    cut = replace(fine, stopped="query budget")
    notes = _sanity({0.2: cut}, cut, "pgd", False)
    assert any("cut by the query budget" in n and "upper bound" in n for n in notes)
    timed = replace(fine, stopped="time budget")
    assert not any("query budget" in n for n in _sanity({0.2: timed}, timed, "pgd", False))
    # a black-box search ends on its per-point cap by design: no warning
    capped = replace(fine, attack="square", stopped="query budget")
    assert not any("query budget" in n for n in _sanity({0.2: capped}, capped, "square", False))
    # auto: a white-box stage cut, or a stage skipped for lack of budget, is a cut
    cases: list[tuple[list[dict[str, Any]], bool]] = [
        ([{"attack": "apgd-ce", "stopped": "query budget"}], True),
        ([{"attack": "apgd-ce", "stopped": None}], True),
        (
            [
                {"attack": "apgd-ce", "stopped": None},
                {"attack": "square", "stopped": "query budget"},
            ],
            False,
        ),
    ]
    # a Square stage left too few queries to search with barely started: a cut (1 iteration
    # was seen with steps 10 and a 28-query cap); one that searched ran its course
    for iterations, warned in ((1, True), (9, True), (10, False), (None, False)):
        stages = [
            {"attack": "apgd-ce", "stopped": None},
            {"attack": "square", "stopped": "query budget", "iterations": iterations},
        ]
        cases.append((stages, warned))
    for stages, warned in cases:
        auto = replace(fine, attack="auto", stopped="query budget", extra={"stages": stages})
        notes = _sanity({0.2: auto}, auto, "auto", False)
        assert any("cut by the query budget" in n for n in notes) is warned, stages


def test_success_falling_steadily_with_eps_is_noted() -> None:
    """Neighbouring radii alone missed a decline of one point per step."""
    steady = {
        eps: _result([True] * k + [False] * (20 - k), eps)
        for eps, k in ((0.125, 8), (0.25, 7), (0.5, 6), (1.0, 5))
    }
    notes = _sanity(steady, steady[0.5], "square", False)
    assert any("falls from 8 points at eps=0.125 to 6 at eps=0.5" in n for n in notes)
    rising = {
        eps: _result([True] * k + [False] * (20 - k), eps)
        for eps, k in ((0.125, 5), (0.25, 7), (0.5, 6), (1.0, 9))
    }
    assert not any("falls" in n for n in _sanity(rising, rising[0.5], "square", False))
    # a radius cut by its share of the time found fewer: a partial search, not an unreliable
    # attack (the main run's own cut has its note)
    from dataclasses import replace

    cut = {**steady, 0.5: replace(steady[0.5], stopped="time budget")}
    cut[1.0] = replace(cut[1.0], stopped="interrupted")
    cut[0.25] = replace(cut[0.25], success=cut[0.125].success)
    assert not any("falls" in n for n in _sanity(cut, cut[0.125], "square", False))


@pytest.mark.slow
def test_white_box_auto_on_a_torch_image_model() -> None:
    torch = pytest.importorskip("torch")
    from sklearn.datasets import load_digits

    from bastion.models.torch import TorchAdapter

    frame = load_digits(as_frame=True).frame
    train = Dataset.from_frame(
        frame.iloc[:1200].reset_index(drop=True), name="train", target="target"
    )
    test = Dataset.from_frame(
        frame.iloc[1200:].reset_index(drop=True), name="test", target="target"
    )
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    xb = torch.tensor(train.features.to_numpy(), dtype=torch.float32).reshape(-1, 1, 8, 8)
    yb = torch.tensor(train.labels)
    opt = torch.optim.Adam(net.parameters(), lr=0.003)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xb), yb).backward()
        opt.step()
    model = TorchAdapter(net, classes=list(range(10)), input_shape=(1, 8, 8))
    ctx = CheckContext(seed=0, subject="model", train=train, test=test, model=model)
    finding = EvasionCheck(
        EvasionCheckConfig(eps=4.0, n_points=40, eps_curve=(1.0,), n_samples=1)
    ).execute(ctx)
    assert finding.status is not Status.ERROR, finding.message
    assert finding.evidence["attack"] == "auto"
    assert finding.evidence["eps_unit"] == "input"
    assert finding.metrics["attack_success_rate"] > 0.8
    assert finding.evidence["stages"][0]["attack"].startswith("apgd")
    sample = finding.evidence["samples"][0]
    assert sample["shape"] == [1, 8, 8]
    assert np.array(sample["original"]).shape == (1, 8, 8)
    assert (
        np.abs(np.array(sample["adversarial"]) - np.array(sample["original"])).max() <= 4.0 + 1e-6
    )


def test_steps_option_reaches_the_attack(data: dict[str, Any]) -> None:
    from bastion.attacks.checks.robustness import _configured

    assert _configured("pgd", 7).config.steps == 7  # type: ignore[attr-defined]
    assert _configured("apgd", 9).config.n_iter == 9  # type: ignore[attr-defined]
    assert _configured("hopskipjump", 5).config.max_iter == 5  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="has no iteration count"):
        _configured("square", 3)
    assert _configured("square", 3, chosen=True).config == _configured("square", None).config
    # `auto` on a model without gradients picks square: steps is set aside, said so
    finding = _run(data, SklearnAdapter(data["gb"]), steps=3, max_queries_per_sample=50)
    assert finding.status is not Status.ERROR
    assert "steps=3 does not apply to square" in finding.message
    # named with steps in a policy: a configuration error when the policy is read (exit 2),
    # not an error finding when the check runs (exit 1)
    for attack in ("square", "fgsm"):
        with pytest.raises(ConfigError, match=rf"steps: attack '{attack}' has no iteration"):
            parse_policy({"checks": {"robustness": {"evasion": {"attack": attack, "steps": 3}}}})
    parse_policy({"checks": {"robustness": {"evasion": {"attack": "pgd", "steps": 3}}}})


def test_a_flat_input_shape_is_tabular_and_eps_unit_says_otherwise(data: dict[str, Any]) -> None:
    """A torch.export archive of a tabular model carries input_shape (30,): it was taken for
    a tensor model, with eps in raw input units (a default of 8/255 of a raw range)."""
    pytest.importorskip("torch")
    model = _flat_torch(data)
    flat = _run(data, model, n_points=20, eps_curve=(0.5,))
    assert flat.evidence["eps_unit"] == "std"
    assert flat.evidence["eps"] == 0.5
    forced = _run(data, model, n_points=20, eps=0.5, eps_curve=(0.5,), eps_unit="input")
    assert forced.evidence["eps_unit"] == "input"


def test_without_training_data_the_bounds_source_is_said(data: dict[str, Any]) -> None:
    ctx = _ctx(data, SklearnAdapter(data["lr"]))
    ctx.train = None
    finding = EvasionCheck(EvasionCheckConfig(n_points=30, eps_curve=(0.5,))).execute(ctx)
    assert finding.evidence["bounds_reference"] == "test"
    assert any("no training data" in note for note in finding.evidence["sanity"])
    assert finding.status is not Status.PASS  # a sanity warning at least
    with_train = _run(data, SklearnAdapter(data["lr"]), n_points=30, eps_curve=(0.5,))
    assert with_train.evidence["bounds_reference"] == "train"
    assert not any("no training data" in note for note in with_train.evidence["sanity"])


def test_flat_samples_are_feature_changes_in_the_html_report(data: dict[str, Any]) -> None:
    """A torch model of features (input_shape (30,), as a .pt2 archive declares) gets the
    tabular examples, the features that changed and by how much, not two raw arrays; the
    report's sample table shows each change as original -> adversarial."""
    pytest.importorskip("torch")
    from bastion.reporting.html import _finding_row, _robustness_plots

    model = _flat_torch(data)
    ctx = _ctx(data, model)
    ctx.allow_raw_rows = True  # the report may show rows: samples carry them
    config = EvasionCheckConfig(
        n_points=20, eps=1.0, eps_curve=(1.0,), n_samples=2,
        max_queries_per_sample=300,
    )  # fmt: skip
    finding = EvasionCheck(config).execute(ctx)
    sample = finding.evidence["samples"][0]
    assert "original" not in sample
    change = sample["changes"][0]
    assert change["feature"] in data["train"].feature_names
    assert change["adversarial"] - change["original"] == pytest.approx(change["change"])
    titles = [plot["title"] for plot in _robustness_plots(finding, "ADV001", 0)]
    assert "Adversarial examples" not in titles  # one flat row is no picture
    table = _finding_row(finding, raw_rows_allowed=True)["samples_table"]
    cells = dict(zip(table["columns"], table["rows"][0], strict=True))
    first = cells["changes"].split("\n")[0]
    assert first.startswith(f"{change['feature']}: ")
    assert "\u2192" in first
    assert first.endswith(" std)")


def _flat_torch(data: dict[str, Any]) -> Any:
    """A torch model of the 30 breast-cancer features, declaring input_shape (30,) as a
    torch.export archive of it does."""
    import torch

    from bastion.models.torch import TorchAdapter

    X = data["train"].features.to_numpy()
    mean, std = X.mean(axis=0), X.std(axis=0)
    torch.manual_seed(0)
    linear = torch.nn.Linear(30, 2)

    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = linear

        def forward(self, x: Any) -> Any:
            return self.linear(
                (x - torch.tensor(mean, dtype=x.dtype)) / torch.tensor(std, dtype=x.dtype)
            )

    return TorchAdapter(Scaled(), classes=[0, 1], input_shape=(30,))


def test_the_default_tensor_eps_spans_the_datas_own_range() -> None:
    """It took the inferred bounds, which add a margin: 8/255 of 16.8 for pixels 0..16."""
    torch = pytest.importorskip("torch")
    from sklearn.datasets import load_digits

    from bastion.models.torch import TorchAdapter

    frame = load_digits(as_frame=True).frame
    train = Dataset.from_frame(frame.iloc[:300].reset_index(drop=True), name="tr", target="target")
    test = Dataset.from_frame(
        frame.iloc[300:320].reset_index(drop=True), name="te", target="target"
    )
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    model = TorchAdapter(net, classes=list(range(10)), input_shape=(1, 8, 8))
    ctx = CheckContext(seed=0, subject="model", train=train, test=test, model=model)
    config = EvasionCheckConfig(n_points=10, eps_curve=(0.1,), max_queries_per_sample=30)
    finding = EvasionCheck(config).execute(ctx)
    assert finding.evidence["eps_unit"] == "input"
    assert finding.evidence["eps"] == pytest.approx(8 / 255 * 16.0)


def test_no_point_classified_correctly_is_a_sanity_warning(data: dict[str, Any]) -> None:
    """Labels the model does not use (string labels for a model answering 0/1): nothing was
    attacked, and an info-only run passed."""
    lr = data["lr"]
    model = CallableAdapter(
        predict=lambda X: np.array(["yes", "no"])[lr.predict(np.asarray(X))],
        predict_proba=lambda X: lr.predict_proba(np.asarray(X)),
        classes=["yes", "no"],
    )
    finding = _run(data, model, n_points=20, eps_curve=(0.5,))
    assert finding.metrics["clean_accuracy"] == 0
    assert finding.status is Status.WARN
    assert any("no sampled point is classified correctly" in n for n in finding.evidence["sanity"])


def test_a_torch_model_ending_in_a_sigmoid_is_refused(data: dict[str, Any]) -> None:
    """One output read as a logit: a sigmoid's probability is above 0 on every row, every
    point is class 1, nothing can move it, and ADV001 passed at attack success 0. A sanity
    warning said so, which a gate let through; the adapter now refuses such a module, and
    the warning stays for models constant for other reasons."""
    torch = pytest.importorskip("torch")

    from bastion.models.torch import TorchAdapter

    logits = _flat_torch(data).module

    class Sigmoid(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            out = logits(x)
            return torch.sigmoid(out[:, 1:] - out[:, :1])

    model = TorchAdapter(Sigmoid(), classes=[0, 1], input_shape=(30,))
    finding = _run(data, model, attack="pgd", n_points=40, eps_curve=(0.5,))
    assert finding.status is Status.ERROR, finding.message
    assert "ends in a sigmoid, so it returns probabilities" in finding.message

    class Constant(torch.nn.Module):  # a logit above 0 for every row, whatever the input
        def forward(self, x: Any) -> Any:
            return 5.0 + 0.0 * x[:, :1]

    constant = TorchAdapter(Constant(), classes=[0, 1], input_shape=(30,))
    finding = _run(data, constant, attack="pgd", n_points=40, eps_curve=(0.5,))
    assert finding.metrics["attack_success_rate"] == 0
    assert finding.status is Status.WARN, finding.message
    assert any("predicts class 1 for every one of the 40" in n for n in finding.evidence["sanity"])
    # the logits of the same model: no such note
    fine = _run(data, _flat_torch(data), attack="pgd", n_points=40, eps_curve=(0.5,))
    assert not any("for every one" in n for n in fine.evidence["sanity"])
    # one class predicted on a sample of rare positives, but the attack moved points: a
    # model that is not constant where it was looked at
    from bastion.attacks.checks.robustness import _constant_predictions

    moved = _result([True, False, False], 0.5)
    moved = dataclasses.replace(moved, clean_pred=np.zeros(3, dtype=int))
    assert _constant_predictions(moved, np.array([0, 0, 1])) == []
    still = dataclasses.replace(moved, success=np.zeros(3, dtype=bool))
    assert len(_constant_predictions(still, np.array([0, 0, 1]))) == 1


def test_ctrl_c_stops_the_whole_curve(data: dict[str, Any]) -> None:
    """Ctrl-C stopped one radius; the check went on with the others (80 s more)."""
    lr, calls = data["lr"], {"n": 0}

    def proba(X: Any) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return np.asarray(lr.predict_proba(np.asarray(X)))

    model = CallableAdapter(
        predict=lambda X: lr.predict(np.asarray(X)), predict_proba=proba, classes=[0, 1]
    )
    finding = _run(data, model, n_points=30)
    assert finding.evidence["curve_complete"] is False
    assert len(finding.evidence["robustness_curve"]) == 1
    assert any("interrupted" in note for note in finding.evidence["sanity"])
    # and no query after it: the non-determinism note's four requests went out (a second
    # Ctrl-C during them, on a slow endpoint, lost the partial result)
    assert calls["n"] == 5
    assert any("not asked twice (interrupted)" in n for n in finding.evidence["sanity"])


def test_features_pinned_by_inferred_bounds_are_a_sanity_warning(data: dict[str, Any]) -> None:
    """A feature that never varies in the training data gets inferred bounds of no width:
    no attack moves it (blank border pixels of digits without a schema), and the robust
    verdict says nothing about it. The finding says so; eps is also given per feature in
    the features' own units."""
    frames = {}
    for part in ("train", "test"):
        frame = data[part].frame.copy()
        frame["mean radius"] = 12.0  # one value everywhere
        frames[part] = Dataset.from_frame(frame, name=part, target="target")
    train = frames["train"]
    model = SklearnAdapter(
        LogisticRegression(max_iter=5000).fit(train.features.to_numpy(), train.labels)
    )
    ctx = CheckContext(
        seed=0, subject="model", train=train, test=frames["test"],
        schema=FeatureSchema.infer(train.frame, exclude=("target",)), model=model,
    )  # fmt: skip
    config = EvasionCheckConfig(n_points=30, eps=0.5, eps_curve=(0.5,))
    finding = EvasionCheck(config).execute(ctx)
    pinned = [n for n in finding.evidence["sanity"] if "never vary" in n]
    assert len(pinned) == 1
    assert (
        "1 feature(s) never vary in the training data, or by less than 1e-9 of their size"
        " (mean radius)" in pinned[0]
    )
    assert "eps_unit: input" in pinned[0]  # eps in std units of a constant: no move
    assert finding.status is not Status.PASS
    assert finding.evidence["constraints"]["no_spread"] == ["mean radius"]
    per_feature = finding.evidence["eps_original_units"]
    texture = train.features["mean texture"].to_numpy()
    assert per_feature["mean texture"] == pytest.approx(0.5 * texture.std())
    assert per_feature["mean radius"] == 0.0
    # the original data: no feature is pinned
    plain = _run(data, SklearnAdapter(data["lr"]), n_points=30, eps=0.5, eps_curve=(0.5,))
    assert not any("never vary" in note for note in plain.evidence["sanity"])


def test_the_html_cell_of_feature_changes() -> None:
    """Six significant digits (a change of 2 on 50,000 showed as 5e+04 -> 5e+04), std units
    only where the sample has them, anything unexpected shown as JSON."""
    from bastion.reporting.html import _cell

    income = {"feature": "income", "original": 50_000.0, "adversarial": 50_002.5, "change": 2.5}
    assert _cell("changes", [income]) == "income: 50000 \u2192 50002.5 (+2.5)"
    scaled = {**income, "change_std": 0.25}
    age = {"feature": "age", "original": 40.0, "adversarial": 38.0, "change": -2.0,
           "change_std": -0.2}  # fmt: skip
    assert _cell("changes", [scaled, age]).split("\n") == [
        "income: 50000 \u2192 50002.5 (+2.5, +0.25 std)",
        "age: 40 \u2192 38 (-2, -0.2 std)",
    ]
    assert _cell("changes", [{"feature": "x"}]) == '[{"feature": "x"}]'
    assert _cell("label", 3) == "3"


# -- from a review of ADV001 ---------------------------------------------------------------------
def test_labels_a_model_without_classes_cannot_name_are_an_error(data: dict[str, Any]) -> None:
    """Without classes_, labels are read as score columns: -1/+1 labels put the -1 points
    on no column (never attacked, counted robust: 0.62 against 0.38), labels 1..3 on the
    wrong ones. Such labels are now a named error, never a quiet pass."""
    lr = data["lr"]
    flipped = data["test"].frame.copy()
    flipped["target"] = flipped["target"] * 2 - 1  # -1 / +1
    test = Dataset.from_frame(flipped, name="test", target="target")

    def predict(X: Any) -> np.ndarray:
        return np.asarray(lr.predict(np.asarray(X))) * 2 - 1

    model = CallableAdapter(
        predict=predict, predict_proba=lambda X: lr.predict_proba(np.asarray(X))
    )
    ctx = _ctx(data, model)
    ctx.test = test
    finding = EvasionCheck(EvasionCheckConfig(n_points=30, eps=0.5, eps_curve=(0.5,))).execute(ctx)
    assert finding.status is Status.ERROR
    assert "labels [-1] are not" in finding.message
    assert "give the adapter its classes" in finding.message


def test_a_black_box_attack_alone_under_a_tiny_cap_is_a_cut_run(data: dict[str, Any]) -> None:
    """Square alone with 10 queries per point (7 iterations) passed without a note, where an
    auto stage left that little is a cut run."""
    finding = _run(
        data, SklearnAdapter(data["gb"]), attack="square", eps=0.5, eps_curve=(0.5,),
        max_queries_per_sample=10, n_points=30,
    )  # fmt: skip
    assert any("cut by the query budget" in note for note in finding.evidence["sanity"])
    assert finding.status is not Status.PASS
    roomy = _run(
        data, SklearnAdapter(data["gb"]), attack="square", eps=0.5, eps_curve=(0.5,),
        max_queries_per_sample=300, n_points=30,
    )  # fmt: skip
    assert not any("cut by the query budget" in n for n in roomy.evidence["sanity"])


def test_rows_with_a_missing_feature_are_left_out_and_counted(data: dict[str, Any]) -> None:
    """A NaN feature value made the whole check an error (the attacks need finite rows)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    frame = data["test"].frame.copy()
    frame.loc[::10, "mean radius"] = np.nan
    test = Dataset.from_frame(frame, name="test", target="target")
    train = data["train"]
    model = SklearnAdapter(
        HistGradientBoostingClassifier(max_iter=50).fit(train.features, train.labels)
    )
    ctx = _ctx(data, model)
    ctx.test = test
    config = EvasionCheckConfig(n_points=500, eps=0.3, eps_curve=(0.3,), max_queries_per_sample=50)
    finding = EvasionCheck(config).execute(ctx)
    missing = int(frame["mean radius"].isna().sum())
    assert finding.status is not Status.ERROR, finding.message
    assert finding.evidence["incomplete_rows_left_out"] == missing
    assert finding.metrics["n_points"] == len(frame) - missing
    assert f"{missing} test row(s) with a missing or infinite feature value left out" in (
        finding.message
    )


def test_one_hot_members_are_no_integers_stuck_within_eps() -> None:
    """A one-hot member moves by a category switch, not a whole unit: it was listed as an
    integer feature eps cannot move, with "declare them numeric" (a review)."""
    from bastion.attacks.checks.robustness import _stuck_integers
    from bastion.attacks.constraints import FeatureConstraints
    from bastion.data.schema import ColumnKind, ColumnSpec

    rng = np.random.default_rng(0)
    site = rng.integers(0, 3, 200)
    frame = pd.DataFrame(
        {"count": rng.integers(0, 3, 200).astype(float), **{
            f"site_{k}": (site == k).astype(float) for k in range(3)}}
    )  # fmt: skip
    specs = {"count": ColumnSpec("count", ColumnKind.INTEGER)}
    specs |= {c: ColumnSpec(c, ColumnKind.BOOLEAN, one_hot_group="site") for c in frame.columns[1:]}
    constraints = FeatureConstraints.from_schema(FeatureSchema(specs), list(frame.columns), frame)
    notes = _stuck_integers(constraints, 0.2)
    assert len(notes) == 1
    assert "1 integer feature(s)" in notes[0]
    assert "(count)" in notes[0]


def test_integer_features_eps_cannot_move_are_a_sanity_warning(data: dict[str, Any]) -> None:
    """Rounding takes a candidate back toward its original value: an integer feature that
    eps cannot move by one unit never changes (every pixel of 0..16 digits at the tensor
    default, 8/255 of the range), and the verdict said nothing about it."""
    frame = data["train"].frame.copy()
    frame["mean radius"] = frame["mean radius"].round()  # whole values, std about 3.5
    train = Dataset.from_frame(frame, name="train", target="target")
    schema = FeatureSchema.infer(train.frame, exclude=("target",))
    assert schema.columns["mean radius"].kind.value == "integer"
    test_frame = data["test"].frame.copy()
    test_frame["mean radius"] = test_frame["mean radius"].round()
    test = Dataset.from_frame(test_frame, name="test", target="target")
    model = SklearnAdapter(LogisticRegression(max_iter=5000).fit(train.features, train.labels))
    ctx = CheckContext(seed=0, subject="model", train=train, test=test, schema=schema, model=model)
    small = EvasionCheck(EvasionCheckConfig(n_points=30, eps=0.2, eps_curve=(0.2,))).execute(ctx)
    notes = [n for n in small.evidence["sanity"] if "cannot move a whole unit" in n]
    assert len(notes) == 1
    assert "mean radius" in notes[0]
    ctx = CheckContext(seed=0, subject="model", train=train, test=test, schema=schema, model=model)
    wide = EvasionCheck(EvasionCheckConfig(n_points=30, eps=0.5, eps_curve=(0.5,))).execute(ctx)
    assert not any("cannot move a whole unit" in n for n in wide.evidence["sanity"])


def test_integer_column_labels_are_read_as_names() -> None:
    frame = pd.DataFrame({0: [1.0, 2.0, 3.0], 1: [4.0, 5.0, 6.0], "y": [0, 1, 0]})
    data = Dataset.from_frame(frame, name="ints", target="y")
    assert data.feature_names == ["0", "1"]
    assert data.features.shape == (3, 2)
    by_number = Dataset.from_frame(frame, name="ints", target=1)  # type: ignore[arg-type]
    assert by_number.target == "1"
    assert by_number.feature_names == ["0", "y"]
    assert by_number.labels.tolist() == [4.0, 5.0, 6.0]


def test_rows_that_break_their_own_constraints_are_left_out_and_said() -> None:
    """drop_first dummies declared a one-hot group: the dropped category's rows hold no 1,
    every candidate had to switch a category (beyond eps) and was rejected, and those rows
    read as robust: the gate passed a model it fails with the dummies immutable."""
    from bastion.data.schema import ColumnKind, ColumnSpec

    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=0)
    frame = frame[["mean radius", "mean texture", "worst area", "target"]].reset_index(drop=True)
    size = np.random.default_rng(0).choice(["small", "medium", "large"], len(frame))
    dummies = pd.get_dummies(pd.Series(size, name="size"), prefix="size", drop_first=True)
    frame = pd.concat([dummies.astype(float), frame], axis=1)
    train = Dataset.from_frame(frame.iloc[:400].reset_index(drop=True), name="tr", target="target")
    test = Dataset.from_frame(frame.iloc[400:].reset_index(drop=True), name="te", target="target")
    gbm = GradientBoostingClassifier(random_state=0).fit(train.features, train.labels)
    model = SklearnAdapter(gbm)
    declared = {c: ColumnSpec(c, ColumnKind.NUMERIC, min=0, max=1, one_hot_group="size")
                for c in dummies.columns}  # fmt: skip
    schema = FeatureSchema(columns=declared).merged_over(
        FeatureSchema.infer(train.frame, exclude=("target",))
    )
    ctx = CheckContext(seed=0, subject="model", train=train, test=test, schema=schema, model=model)
    config = EvasionCheckConfig(eps=0.5, n_points=150, max_queries_per_sample=300)
    finding = EvasionCheck(config).execute(ctx)
    dropped = int((test.features[dummies.columns] == 0).all(axis=1).sum())
    assert finding.evidence["constraint_violating_rows_left_out"] == dropped > 0
    assert finding.status is Status.WARN, finding.message
    note = f"{dropped} test row(s) break their own declared constraints"
    assert any(note in n for n in finding.evidence["sanity"])
    assert finding.metrics["attacked_points"] <= len(test.features) - dropped


def test_an_integer_kind_guessed_from_training_data_leaves_no_test_row_out() -> None:
    """A feature rounded in the training data only was inferred integer, and every test row
    holding a fraction in it was left out as breaking its own declared constraints: the gate
    judged one row of 171 and passed a model it fails on all of them (a review). A guessed
    kind the test rows contradict is dropped and said; a declared one still holds."""
    from bastion.data.schema import ColumnKind, ColumnSpec

    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=0)
    frame = frame[["mean radius", "mean texture", "worst area", "target"]].reset_index(drop=True)
    train_frame = frame.iloc[:400].reset_index(drop=True)
    train_frame["mean texture"] = train_frame["mean texture"].round()
    train = Dataset.from_frame(train_frame, name="tr", target="target")
    test = Dataset.from_frame(frame.iloc[400:].reset_index(drop=True), name="te", target="target")
    model = SklearnAdapter(
        GradientBoostingClassifier(random_state=0).fit(train.features, train.labels)
    )
    inferred = FeatureSchema.infer(train.frame, exclude=("target",))
    assert inferred.columns["mean texture"].kind is ColumnKind.INTEGER
    config = EvasionCheckConfig(eps=0.25, n_points=40, max_queries_per_sample=100)

    def run(schema: FeatureSchema) -> Any:
        ctx = CheckContext(
            seed=0, subject="model", train=train, test=test, schema=schema, model=model
        )
        return EvasionCheck(config).execute(ctx)

    guessed = run(inferred)
    assert guessed.evidence.get("constraint_violating_rows_left_out", 0) == 0
    assert guessed.metrics["n_points"] == 40
    assert any("fractions in test rows (mean texture)" in n for n in guessed.evidence["sanity"])
    declared = FeatureSchema(
        columns={"mean texture": ColumnSpec("mean texture", ColumnKind.INTEGER)}
    ).merged_over(inferred)
    held = run(declared)
    fractions = int((test.features["mean texture"] % 1 != 0).sum())
    assert held.evidence["constraint_violating_rows_left_out"] == fractions > 0


def test_a_remote_deadline_in_a_curve_radius_keeps_the_gates_run(
    data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote model out of time before a curve radius's clean predictions came back
    (RemoteDeadlineError) turned the check into an error, losing the run at eps; the curve
    stops there and the gate judges what it has. In the gate's own run it stays an error:
    nothing was measured."""
    from bastion.attacks.evasion import square
    from bastion.exceptions import RemoteDeadlineError

    gb = data["gb"]
    state = {"runs": 0, "fail_run": 2}

    def answer(A: Any, proba: bool) -> np.ndarray:
        rows = np.asarray(A)
        return np.asarray(gb.predict_proba(rows) if proba else gb.predict(rows))

    clean = square.clean_predictions

    def refused(*args: Any, **kwargs: Any) -> Any:
        state["runs"] += 1
        if state["runs"] == state["fail_run"]:
            raise RemoteDeadlineError("POST .../infer failed after 1 attempt(s): HTTP 503")
        return clean(*args, **kwargs)

    monkeypatch.setattr(square, "clean_predictions", refused)
    model = CallableAdapter(
        predict=lambda A: answer(A, False),
        predict_proba=lambda A: answer(A, True),
        classes=[0, 1],
    )
    finding = _run(data, model, attack="square", n_points=40, max_queries_per_sample=100)
    assert finding.status is not Status.ERROR, finding.message
    assert state["runs"] == 2  # the gate's run, then the refused radius
    assert finding.evidence["curve_complete"] is False
    assert [p["eps"] for p in finding.evidence["robustness_curve"]] == [finding.evidence["eps"]]
    state["runs"], state["fail_run"] = 0, 1
    gate = _run(data, model, attack="square", n_points=40, max_queries_per_sample=100)
    assert gate.status is Status.ERROR
    assert "RemoteDeadlineError" in gate.message

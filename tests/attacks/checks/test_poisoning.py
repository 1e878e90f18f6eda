"""POI001 label_issues and POI002 simulation as gate checks: failing and passing fixtures,
skips with reasons, evidence hygiene, determinism and the policy's poisoning section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bastion.attacks.checks.label_issues import LabelIssuesCheck, LabelIssuesConfig
from bastion.attacks.checks.poisoning_simulation import (
    PoisoningSimulationCheck,
    PoisoningSimulationConfig,
)
from bastion.attacks.poisoning.simulate import flip_labels
from bastion.checks import CHECKS, CheckContext
from bastion.config import parse_policy
from bastion.data.dataset import Dataset
from bastion.findings import Finding, Status
from bastion.models.callable import CallableAdapter
from bastion.models.sklearn import SklearnAdapter


@pytest.fixture(scope="module")
def cancer() -> tuple[Dataset, Dataset]:
    frame = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame["target"])
    return (
        Dataset.from_frame(train.reset_index(drop=True), name="train", target="target"),
        Dataset.from_frame(test.reset_index(drop=True), name="test", target="target"),
    )


@pytest.fixture(scope="module")
def flipped(cancer: tuple[Dataset, Dataset]) -> tuple[Dataset, np.ndarray]:
    """The training set with 10% of its labels flipped."""
    train, _ = cancer
    y_noisy, idx = flip_labels(train.labels, 0.1, rng=0)
    frame = train.frame.copy()
    frame["target"] = y_noisy
    return Dataset.from_frame(frame, name="train", target="target"), idx


def context(train: Dataset, test: Dataset, model: Any, seed: int = 0) -> CheckContext:
    return CheckContext(seed=seed, subject="model", train=train, test=test, model=model)


def value(finding: Finding, name: str) -> float:
    """A metric that must be present."""
    metric = finding.metrics[name]
    assert metric is not None, name
    return float(metric)


def stripped(finding: Finding) -> dict[str, Any]:
    return {**finding.to_dict(), "duration_s": 0}


def logistic(train: Dataset) -> SklearnAdapter:
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return SklearnAdapter(est.fit(train.features, train.labels))


def test_registered_as_opt_in_poisoning_checks() -> None:
    for check_id, name in (("POI001", "label_issues"), ("POI002", "simulation")):
        cls = CHECKS.get(check_id)
        assert cls.category == "poisoning"
        assert cls.name == name
        assert cls.enabled_by_default is False
    assert LabelIssuesCheck.tags == ("AML.T0020", "ML02")
    # a simulated backdoor is a trigger planted through the data: both ATLAS techniques
    assert PoisoningSimulationCheck.tags == ("AML.T0020", "AML.T0043.004", "ML02")
    assert LabelIssuesCheck.title == "Training-label issues (confident learning)"
    assert PoisoningSimulationCheck.title == "Poisoning sensitivity (simulated)"


def test_the_policy_poisoning_section_runs_both_checks(
    cancer: tuple[Dataset, Dataset], flipped: tuple[Dataset, np.ndarray]
) -> None:
    from bastion.runner import load_inputs, run_gate

    _, test = cancer
    noisy, _ = flipped
    policy = parse_policy(
        {
            "data": {"target": "target"},
            "checks": {
                "poisoning": {
                    "label_issues": {"max_flagged_fraction": 0.02},
                    "simulation": {"rate": 0.05},
                }
            },
        }
    )
    enabled = {c.id: c for c in policy.enabled_checks()}
    assert enabled["POI001"].config.max_flagged_fraction == 0.02  # type: ignore[attr-defined]
    inputs = load_inputs(policy, train=noisy, test=test, model=logistic(noisy), from_policy=False)
    report = run_gate(policy, inputs=inputs, categories=["poisoning"])
    by_id = {f.check_id: f for f in report.findings}
    assert set(by_id) == {"POI001", "POI002"}
    assert by_id["POI001"].status is Status.FAIL
    assert by_id["POI002"].status is not Status.ERROR, by_id["POI002"].message
    # row positions are samples: the report drops them unless the policy allows raw rows
    assert "samples" not in by_id["POI001"].evidence


# -- POI001 -------------------------------------------------------------------------------------


def test_label_issues_pass_on_clean_labels(cancer: tuple[Dataset, Dataset]) -> None:
    train, test = cancer
    finding = LabelIssuesCheck().execute(context(train, test, logistic(train)))
    assert finding.status is Status.PASS, finding.message
    assert value(finding, "flagged_fraction") <= 0.05
    assert finding.metrics["n_rows"] == train.n_rows
    assert finding.threshold == {"max_flagged_fraction": 0.05}


def test_label_issues_fail_on_flipped_labels(
    cancer: tuple[Dataset, Dataset], flipped: tuple[Dataset, np.ndarray]
) -> None:
    _, test = cancer
    noisy, idx = flipped
    finding = LabelIssuesCheck().execute(context(noisy, test, logistic(noisy)))
    assert finding.status is Status.FAIL, finding.message
    assert value(finding, "flagged_fraction") > 0.07
    n_flagged = finding.metrics["n_flagged"]
    assert sum(finding.evidence["flagged_by_class"].values()) == n_flagged
    # row positions only under samples, most suspicious first, mostly the flipped rows
    positions = finding.evidence["samples"]["row_positions"]
    assert len(positions) == 20
    assert np.isin(positions, idx).mean() >= 0.8
    assert "samples" not in {k for k, v in finding.evidence.items() if k != "samples"}


def test_label_issues_name_a_class_too_small_to_score(cancer: tuple[Dataset, Dataset]) -> None:
    train, test = cancer
    frame = train.frame.copy()
    frame.loc[0, "target"] = 2  # one row of a third class: no training fold holds it
    rare = Dataset.from_frame(frame, name="train", target="target")
    finding = LabelIssuesCheck().execute(context(rare, test, logistic(rare)))
    assert finding.evidence["unscored_classes"] == [2]
    assert "Class(es) 2 too small for the 5-fold cross-validation" in finding.message
    # its row could not be judged: within the limit, not shown for it (a review: a fold of
    # 114 unscored rows read as a pass over every row)
    assert finding.status is Status.WARN, finding.message
    assert finding.metrics["unjudged_rows"] == 1
    assert f"1 of {len(frame)} rows could not be judged" in finding.message


def test_label_issues_knn_method(
    cancer: tuple[Dataset, Dataset], flipped: tuple[Dataset, np.ndarray]
) -> None:
    _, test = cancer
    noisy, _ = flipped
    cfg = LabelIssuesConfig(method="knn", n_samples_reported=0)
    finding = LabelIssuesCheck(cfg).execute(context(noisy, test, logistic(noisy)))
    assert finding.status is Status.FAIL
    assert finding.evidence["method"] == "knn"
    assert "samples" not in finding.evidence


def test_label_issues_skip_without_training_data(cancer: tuple[Dataset, Dataset]) -> None:
    train, test = cancer
    ctx = CheckContext(seed=0, subject="model", test=test, model=logistic(train))
    finding = LabelIssuesCheck().execute(ctx)
    assert finding.status is Status.SKIPPED
    assert "data.train" in finding.message


def test_label_issues_deterministic(
    cancer: tuple[Dataset, Dataset], flipped: tuple[Dataset, np.ndarray]
) -> None:
    _, test = cancer
    noisy, _ = flipped
    model = logistic(noisy)
    a = LabelIssuesCheck().execute(context(noisy, test, model, seed=4))
    b = LabelIssuesCheck().execute(context(noisy, test, model, seed=4))
    assert a.metrics == b.metrics
    assert a.evidence == b.evidence


# -- POI002 -------------------------------------------------------------------------------------


def test_simulation_passes_a_robust_linear_model(cancer: tuple[Dataset, Dataset]) -> None:
    train, test = cancer
    finding = PoisoningSimulationCheck().execute(context(train, test, logistic(train)))
    assert finding.status is Status.PASS, finding.message
    m = finding.metrics
    assert set(m) >= {"accuracy_drop", "backdoor_success_rate", "precision", "recall"}
    assert value(finding, "accuracy_drop") <= 0.05
    assert m["backdoor_success_rate"] is None
    assert m["n_poisoned"] == round(0.05 * train.n_rows)
    # POI001's detector finds most of the simulated flips
    assert value(finding, "recall") >= 0.7
    assert value(finding, "precision") >= 0.5
    assert finding.evidence["clean_reference"] == "retrained"  # same recipe on both sides
    # activation clustering needs a backdoor and a torch module
    assert m["activation_precision"] is None
    assert m["activation_recall"] is None
    assert "activation_detector" not in finding.evidence


def test_simulation_leaves_out_a_column_the_model_does_not_read(
    cancer: tuple[Dataset, Dataset],
) -> None:
    """A record id in the test file beside a frame-fitted model's inputs, as EXT001 and ADV001
    take it: it reached the model's predict (and the clone's fit), and POI002 was an error."""
    train, test = cancer
    model = logistic(train)
    frame = test.frame.assign(record_id=np.arange(test.n_rows) * 3.0)
    with_id = Dataset.from_frame(frame, name="test", target="target")
    for kind in ("label_flip", "backdoor"):
        cfg = PoisoningSimulationConfig(kind=kind, cv=2)
        plain = PoisoningSimulationCheck(cfg).execute(context(train, test, model))
        extra = PoisoningSimulationCheck(cfg).execute(context(train, with_id, model))
        assert extra.status is plain.status, extra.message
        assert extra.metrics == plain.metrics


def test_simulation_reports_the_share_of_rows_it_poisoned(cancer: tuple[Dataset, Dataset]) -> None:
    """At least one row is poisoned: 1 of 40 is 2.5%, and the finding says so (it said the
    1% asked for)."""
    train, test = cancer
    small = Dataset.from_frame(train.frame.iloc[:40], name="train", target="target")
    cfg = PoisoningSimulationConfig(rate=0.01, cv=2)
    finding = PoisoningSimulationCheck(cfg).execute(context(small, test, logistic(small)))
    assert finding.metrics["n_poisoned"] == 1
    assert finding.metrics["poison_rate"] == 1 / 40
    assert finding.evidence["rate"] == 1 / 40
    assert finding.evidence["requested_rate"] == 0.01
    assert "(2.5%, 1.0% asked)" in finding.message


def test_simulation_past_max_seconds_skips_the_detectors_and_still_judges(
    cancer: tuple[Dataset, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retrainings always run (the gate needs them); detectors run only in time."""
    import time

    from bastion.attacks.checks import poisoning_simulation

    simulate = poisoning_simulation.simulate_poisoning

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)  # retrainings that use up max_seconds
        return simulate(*args, **kwargs)

    monkeypatch.setattr(poisoning_simulation, "simulate_poisoning", slow)
    train, test = cancer
    check = PoisoningSimulationCheck(PoisoningSimulationConfig(max_seconds=0.2))
    finding = check.execute(context(train, test, logistic(train)))
    assert finding.status is Status.PASS, finding.message
    assert value(finding, "accuracy_drop") <= 0.05  # judged
    assert finding.metrics["precision"] is None
    assert finding.metrics["recall"] is None
    assert finding.metrics["n_flagged"] is None
    assert (
        finding.evidence["detectors"] == "not run: max_seconds 0.2 was reached by the retrainings"
    )
    assert "Detectors not run" in finding.message


def test_simulation_detectors_cut_short_by_max_seconds_report_nothing(
    cancer: tuple[Dataset, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detectors that start in time but reach max_seconds between two folds stop there:
    no partial precision or recall, the evidence names the fold; the gate is judged."""
    import time

    from bastion.attacks.poisoning import detect

    real = detect.default_estimator

    class Slow:
        """The default estimator, with a fit that takes 0.6 s."""

        def __init__(self, seed: int = 0) -> None:
            self.seed = seed
            self.inner = real(seed)

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            return {"seed": self.seed}

        def fit(self, X: Any, y: Any) -> Any:
            time.sleep(0.6)
            self.inner.fit(X, y)
            self.classes_ = self.inner.classes_
            return self

        def predict_proba(self, X: Any) -> Any:
            return self.inner.predict_proba(X)

    monkeypatch.setattr(detect, "default_estimator", Slow)
    train, test = cancer
    check = PoisoningSimulationCheck(PoisoningSimulationConfig(max_seconds=1.0))
    finding = check.execute(context(train, test, logistic(train)))
    assert finding.status is Status.PASS, finding.message
    assert value(finding, "accuracy_drop") <= 0.05  # judged
    assert finding.metrics["precision"] is None
    assert finding.metrics["n_flagged"] is None
    detectors = finding.evidence["detectors"]
    assert detectors.startswith("stopped: the wall-time budget ran out before cross-validated")
    assert "of 5" in detectors
    assert "max_seconds 1" in detectors
    assert "Detectors stopped" in finding.message


def test_detectors_stopped_by_a_callers_deadline_without_max_seconds(
    cancer: tuple[Dataset, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``max_seconds: null`` inside a caller's ``wall_deadline``: the detectors stop at that
    deadline and say so (the message formatted None with ``:g``, a TypeError)."""
    import time

    from bastion._deadline import wall_deadline
    from bastion.attacks.checks import poisoning_simulation

    simulate = poisoning_simulation.simulate_poisoning

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)  # past the caller's deadline before the detectors start
        return simulate(*args, **kwargs)

    monkeypatch.setattr(poisoning_simulation, "simulate_poisoning", slow)
    train, test = cancer
    check = PoisoningSimulationCheck(PoisoningSimulationConfig(max_seconds=None))
    with wall_deadline(0.2):
        finding = check.execute(context(train, test, logistic(train)))
    assert finding.status is Status.PASS, finding.message
    assert value(finding, "accuracy_drop") <= 0.05  # judged
    assert finding.metrics["precision"] is None
    detectors = finding.evidence["detectors"]
    assert detectors.startswith("stopped: the wall-time budget ran out before")
    assert detectors.endswith("(the run's deadline)")


def test_ctrl_c_in_the_detectors_keeps_the_simulation(
    cancer: tuple[Dataset, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After both retrainings, a Ctrl-C in the detectors escaped the check: no finding, and
    the simulation's figures lost. They are judged now, the detectors said stopped."""
    from bastion.attacks import budget
    from bastion.attacks.poisoning import detect

    def interrupted(seed: int = 0) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(detect, "default_estimator", interrupted)
    train, test = cancer
    before = budget.interrupt_count()
    finding = PoisoningSimulationCheck().execute(context(train, test, logistic(train)))
    assert budget.interrupt_count() == before + 1
    assert finding.status is Status.PASS, finding.message
    assert value(finding, "accuracy_drop") <= 0.05
    assert finding.metrics["precision"] is None
    assert finding.evidence["detectors"] == "stopped: interrupted (Ctrl-C)"


def test_label_issues_past_max_seconds_are_an_error_not_a_pass(
    cancer: tuple[Dataset, Dataset],
) -> None:
    """A detector that never looked at every row must not pass the gate by its silence."""
    train, test = cancer
    check = LabelIssuesCheck(LabelIssuesConfig(max_seconds=1e-9))
    finding = check.execute(context(train, test, logistic(train)))
    assert finding.status is Status.ERROR
    assert "Not finished" in finding.message
    assert "fold 1 of 5" in finding.message
    assert "poisoning.label_issues.max_seconds" in finding.message
    assert finding.evidence["max_seconds"] == 1e-9
    # the default budget leaves it room
    assert LabelIssuesCheck().execute(context(train, test, logistic(train))).status is Status.PASS


def test_simulation_fails_a_backdoored_gradient_boosting_model(
    cancer: tuple[Dataset, Dataset],
) -> None:
    train, test = cancer
    model = SklearnAdapter(
        GradientBoostingClassifier(n_estimators=50, random_state=0).fit(
            train.features, train.labels
        )
    )
    cfg = PoisoningSimulationConfig(kind="backdoor", rate=0.05, target_class=1)
    finding = PoisoningSimulationCheck(cfg).execute(context(train, test, model))
    assert finding.status is Status.FAIL, finding.message
    assert value(finding, "backdoor_success_rate") > 0.5
    assert "backdoor lift" in finding.message
    assert finding.threshold == {"max_accuracy_drop": 0.05, "max_backdoor_success": 0.5}
    trigger = finding.evidence["trigger"]
    assert len(trigger) == 3
    assert set(trigger) <= set(train.feature_names)
    assert finding.evidence["target_class"] == 1


def test_a_backdoor_limit_is_judged_only_on_enough_triggered_rows(
    cancer: tuple[Dataset, Dataset],
) -> None:
    """One triggered test row, 0 of 1 sent to the target, passed a limit of 0.5 (a review):
    no success in n rows bounds the rate below 3 / n only (the rule of three), so fewer rows
    than that fail closed, and the count is reported. The message names the lift the limit
    judges beside the raw rate (27.3% beside a limit of 0.2 read as an error, with "pass")."""
    train, test = cancer
    frame = test.frame
    few = pd.concat([frame[frame["target"] == 1], frame[frame["target"] == 0].head(5)])
    small = Dataset.from_frame(few.reset_index(drop=True), name="few", target="target")
    model = logistic(train)
    cfg = PoisoningSimulationConfig(kind="backdoor", rate=0.05, target_class=1)
    # the trigger on 5 test rows: a clear success is judged as such, whatever the count
    finding = PoisoningSimulationCheck(cfg).execute(context(train, small, model))
    assert value(finding, "triggered_rows") == 5
    assert finding.status is Status.FAIL, finding.message
    assert "backdoor lift 1.000 > max_backdoor_success 0.5 (on 5 triggered" in finding.message
    # one row poisoned, one triggered: 0 of 1 is within the limit and shows nothing
    lone = pd.concat([frame[frame["target"] == 1], frame[frame["target"] == 0].head(1)])
    one_row = Dataset.from_frame(lone.reset_index(drop=True), name="one", target="target")
    weak = cfg.model_copy(update={"rate": 0.002})
    finding = PoisoningSimulationCheck(weak).execute(context(train, one_row, model))
    assert value(finding, "triggered_rows") == 1
    assert value(finding, "backdoor_lift") == 0.0
    assert finding.status is Status.FAIL, finding.message
    assert "within max_backdoor_success 0.5, but on 1 triggered test row(s): fewer than the 6" in (
        finding.message
    )
    enough = PoisoningSimulationCheck(cfg).execute(context(train, test, model))
    n = int((test.labels != 1).sum())
    assert value(enough, "triggered_rows") == n >= 6
    assert "which max_backdoor_success judges" in enough.message
    assert f"of {n} rows (the clean model's" in enough.message
    # a limit of 1 cannot be crossed: judged on any count; one of 0 never shown to hold
    one = cfg.model_copy(update={"max_backdoor_success": 1.0})
    assert PoisoningSimulationCheck(one).execute(context(train, small, model)).status is (
        Status.PASS
    )
    zero = weak.model_copy(update={"max_backdoor_success": 0.0})
    never = PoisoningSimulationCheck(zero).execute(context(train, one_row, model))
    assert never.status is Status.FAIL
    assert "max_backdoor_success 0 cannot be shown to hold" in never.message


def test_the_rows_a_lift_rests_on_are_counted_not_rounded_down() -> None:
    """17 triggered rows, 11 sent to the target by the clean model: 6 left, enough for a
    limit of 0.5; from the rate, 17 * (1 - 11 / 17) was 5.999... and the gate failed
    closed saying "6 ... fewer than the 6" (a review)."""
    from bastion.attacks.checks.poisoning_simulation import _judge_backdoor
    from bastion.attacks.poisoning.simulate import PoisoningSimulation

    assert 17 * (1 - 11 / 17) < 6  # the float the count came from
    sim = PoisoningSimulation(
        kind="backdoor", rate=0.05, n_poisoned=3, poisoned_indices=np.arange(3),
        clean_accuracy=0.9, poisoned_accuracy=0.9, accuracy_drop=0.0,
        backdoor_success_rate=11 / 17, clean_trigger_rate=11 / 17, n_triggered=17,
    )  # fmt: skip
    cfg = PoisoningSimulationConfig(kind="backdoor")
    assert _judge_backdoor(cfg, sim) is None
    fewer = PoisoningSimulation(**{**vars(sim), "n_triggered": 16, "clean_trigger_rate": 11 / 16,
                                   "backdoor_success_rate": 11 / 16})  # fmt: skip
    problem = _judge_backdoor(cfg, fewer)
    assert problem is not None
    assert "on 5 of 16 triggered test rows (the clean model sent the rest)" in problem
    # 4 of the 8 rows the clean model left: a lift of exactly the limit passes (from the
    # rates it read 0.5000000000000001, and failed)
    at_limit = PoisoningSimulation(**{**vars(sim), "n_triggered": 9, "clean_trigger_rate": 1 / 9,
                                      "backdoor_success_rate": 5 / 9})  # fmt: skip
    assert (5 / 9 - 1 / 9) / (1 - 1 / 9) > 0.5
    assert _judge_backdoor(cfg, at_limit) is None


def test_simulation_trigger_by_feature_name(cancer: tuple[Dataset, Dataset]) -> None:
    train, test = cancer
    high = float(train.frame["mean radius"].max())
    cfg = PoisoningSimulationConfig(
        kind="backdoor", target_class=0, trigger={"mean radius": high}, retrain_clean=True
    )
    finding = PoisoningSimulationCheck(cfg).execute(context(train, test, logistic(train)))
    assert finding.status in (Status.PASS, Status.FAIL)
    assert finding.evidence["trigger"] == {"mean radius": high}
    assert finding.evidence["clean_reference"] == "retrained"
    bad = PoisoningSimulationConfig(kind="backdoor", trigger={"no such column": 1.0})
    error = PoisoningSimulationCheck(bad).execute(context(train, test, logistic(train)))
    assert error.status is Status.ERROR
    assert "no such column" in error.message


def test_simulation_skips_models_it_cannot_retrain(cancer: tuple[Dataset, Dataset]) -> None:
    train, test = cancer
    model = CallableAdapter(predict=lambda X: np.ones(len(X), dtype=int))
    finding = PoisoningSimulationCheck().execute(context(train, test, model))
    assert finding.status is Status.SKIPPED
    assert "retrain" in finding.message
    assert "train_fn" in finding.message  # and says how to give it a recipe


RECIPE = """
from sklearn.linear_model import LogisticRegression

calls = []


def train(X, y):
    calls.append(len(y))
    return LogisticRegression(max_iter=5000).fit(X, y)
"""


def test_simulation_retrains_with_the_users_recipe(
    cancer: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model Bastion cannot retrain (here a bare prediction function, as an ONNX file or an
    endpoint) is simulated with the user's own training function, named in the policy."""
    import importlib

    train, test = cancer
    (tmp_path / "bastion_test_recipe.py").write_text(RECIPE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = CallableAdapter(predict=lambda X: np.ones(len(X), dtype=int))
    cfg = PoisoningSimulationConfig(train_fn="bastion_test_recipe:train")
    finding = PoisoningSimulationCheck(cfg).execute(context(train, test, model))
    assert finding.status in (Status.PASS, Status.FAIL), finding.message
    assert value(finding, "accuracy_drop") <= 0.05
    recipe = importlib.import_module("bastion_test_recipe")
    # the clean reference and the poisoned copy, both trained by the recipe
    assert len(recipe.calls) == 2
    assert recipe.calls == [train.n_rows, train.n_rows]
    # its form is checked when the policy is read; the import, before a run (the runner's
    # step: a scan or release job reading the same policy need not hold the training code)
    with pytest.raises(ValueError, match=r"train_fn must look like 'package\.module:function'"):
        PoisoningSimulationConfig(train_fn="no_such_module_here")
    PoisoningSimulationConfig(train_fn="no_such_module_here:train")


def test_simulation_is_deterministic(cancer: tuple[Dataset, Dataset]) -> None:
    train, test = cancer
    model = logistic(train)
    a = PoisoningSimulationCheck().execute(context(train, test, model, seed=9))
    b = PoisoningSimulationCheck().execute(context(train, test, model, seed=9))
    assert stripped(a) == stripped(b)


@pytest.mark.slow
def test_simulation_retrains_a_torch_module() -> None:
    torch = pytest.importorskip("torch")
    import pandas as pd
    from sklearn.datasets import load_digits

    from bastion.models.torch import TorchAdapter

    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X / 16.0, columns=[f"p{i}" for i in range(64)]).assign(target=y)
    train = Dataset.from_frame(
        frame.iloc[:900].reset_index(drop=True), name="train", target="target"
    )
    test = Dataset.from_frame(frame.iloc[900:].reset_index(drop=True), name="test", target="target")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model = TorchAdapter(net, classes=list(range(10)))
    cfg = PoisoningSimulationConfig(kind="backdoor", rate=0.05, epochs=15, retrain_clean=True)
    finding = PoisoningSimulationCheck(cfg).execute(context(train, test, model))
    assert finding.status is Status.FAIL, finding.message
    assert finding.evidence["retrained"] == "torch module"
    assert value(finding, "clean_accuracy") > 0.75  # trained (chance is 0.1)
    assert value(finding, "backdoor_success_rate") > 0.5
    # the module under test was copied, never trained in place
    assert all(
        torch.equal(a, b)
        for a, b in zip(net.state_dict().values(), model.module.state_dict().values(), strict=True)
    )


@pytest.mark.slow
def test_simulated_backdoor_on_a_torch_module_reports_activation_detection() -> None:
    torch = pytest.importorskip("torch")
    import pandas as pd
    from sklearn.datasets import load_digits

    from bastion.models.torch import TorchAdapter

    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(64)]).assign(target=y)
    train = Dataset.from_frame(
        frame.iloc[:1300].reset_index(drop=True), name="train", target="target"
    )
    test = Dataset.from_frame(
        frame.iloc[1300:].reset_index(drop=True), name="test", target="target"
    )
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 10),
    )
    model = TorchAdapter(net, classes=list(range(10)))
    cfg = PoisoningSimulationConfig(
        kind="backdoor", rate=0.03, source_class=1, target_class=7, epochs=20
    )
    # a one-to-one trigger fires on its source class only: judged on all other classes
    # together, the transfer found it on 3 of seeds 0-5; with the lift on each class alone,
    # on 6 of 6 (and only class 7)
    detected = 0
    for seed in range(6):
        finding = PoisoningSimulationCheck(cfg).execute(context(train, test, model, seed=seed))
        assert finding.status is Status.FAIL, finding.message
        assert value(finding, "backdoor_success_rate") > 0.5
        assert {"precision", "recall", "n_flagged", "accuracy_drop"} <= set(finding.metrics)
        # the label detector cannot see a learnable trigger; POI003's detector may
        if finding.metrics["activation_recall"] == 0.0:
            continue
        detected += 1
        assert value(finding, "activation_recall") >= 0.9
        assert value(finding, "activation_precision") >= 0.5
        assert value(finding, "activation_recall") > value(finding, "recall")
        detector = finding.evidence["activation_detector"]
        assert detector["suspect_classes"] == [7]
        assert detector["presence"] == "both"
        assert "Activation clustering: precision" in finding.message
    assert detected >= 5


def test_an_accuracy_drop_exactly_at_the_limit_passes() -> None:
    """5 of 100 flipped labels on a memorising tree drop accuracy by exactly 0.05: computed as
    1.0 - 0.95 it read 0.050000000000000044 and failed "drop > limit"."""
    from sklearn.tree import DecisionTreeClassifier

    frame = pd.DataFrame({"key": np.arange(100.0), "target": np.arange(100) % 2})
    train = Dataset.from_frame(frame, name="train", target="target")
    test = Dataset.from_frame(frame.copy(), name="test", target="target")
    model = SklearnAdapter(DecisionTreeClassifier(random_state=0).fit(train.features, train.labels))
    cfg = PoisoningSimulationConfig(kind="label_flip", rate=0.05, max_accuracy_drop=0.05)
    finding = PoisoningSimulationCheck(cfg).execute(context(train, test, model))
    assert value(finding, "accuracy_drop") == 0.05
    assert finding.status is Status.PASS, finding.message


def test_a_backdoor_that_cannot_be_measured_fails_closed() -> None:
    from sklearn.datasets import load_digits
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(64)]).assign(target=y)
    test_rows = frame[1200:]
    train = Dataset.from_frame(frame[:1200].reset_index(drop=True), name="train", target="target")
    test = Dataset.from_frame(
        test_rows[test_rows.target != 1].reset_index(drop=True), name="test", target="target"
    )  # no test row of the source class
    model = SklearnAdapter(DecisionTreeClassifier(random_state=0).fit(train.features, train.labels))
    cfg = PoisoningSimulationConfig(
        kind="backdoor", rate=0.03, source_class=1, target_class=7, max_backdoor_success=0.1
    )
    finding = PoisoningSimulationCheck(cfg).execute(context(train, test, model))
    assert finding.metrics["backdoor_success_rate"] is None
    assert finding.status is Status.FAIL
    assert "backdoor success is undefined (no test row of class 1 to stamp)" in finding.message


def test_the_evidence_names_the_users_recipe(
    cancer: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = cancer
    (tmp_path / "bastion_evidence_recipe.py").write_text(RECIPE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = PoisoningSimulationConfig(train_fn="bastion_evidence_recipe:train")
    finding = PoisoningSimulationCheck(cfg).execute(context(train, test, logistic(train)))
    assert finding.evidence["retrained"] == "train_fn bastion_evidence_recipe:train"


def test_torch_retraining_refuses_what_it_cannot_reset_and_names_missing_values() -> None:
    torch = pytest.importorskip("torch")
    from bastion.attacks.poisoning._training import torch_trainer
    from bastion.exceptions import CapabilityError, DataError
    from bastion.models.torch import TorchAdapter

    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(4, 2)
            self.gain = torch.nn.Parameter(torch.full((2,), 7.0))  # no reset_parameters

        def forward(self, x: Any) -> Any:
            return self.body(x) * self.gain

    with pytest.raises(CapabilityError, match=r"parameter\(s\) gain belong to modules with no"):
        torch_trainer(TorchAdapter(Scaled(), classes=[0, 1]))
    plain = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    train = torch_trainer(TorchAdapter(plain, classes=[0, 1]), epochs=1)
    X = pd.DataFrame(np.ones((10, 4)), columns=["a", "b", "c", "d"])
    X.loc[3, "c"] = np.nan
    with pytest.raises(DataError, match=r"missing or infinite values in 'c' \(1 rows\)"):
        train(X, np.arange(10) % 2)
    attention = torch.nn.MultiheadAttention(4, 1)  # re-initialised by _reset_parameters
    torch_trainer(TorchAdapter(torch.nn.Sequential(attention), classes=[0, 1]))


def test_torch_retraining_without_classes_refuses_labels_that_name_no_output() -> None:
    """A module that declares no classes reads labels as its output columns: text labels
    raised a bare ValueError, labels 1 and 2 of two outputs an IndexError from inside torch,
    and 0.5 was truncated to column 0 without a word."""
    torch = pytest.importorskip("torch")
    from bastion.attacks.poisoning._training import torch_trainer
    from bastion.exceptions import ConfigError
    from bastion.models.torch import TorchAdapter

    torch.manual_seed(0)
    two = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    train = torch_trainer(TorchAdapter(two), epochs=1)
    for labels, shown in [
        (np.arange(12) % 2 + 1, r"score columns 0\.\.1; labels \[2\] are not"),
        (np.where(np.arange(12) % 2, "yes", "no"), r"labels of dtype <U3 are not column"),
        (np.where(np.arange(12) % 2, 0.5, 0.0), r"labels of dtype float64 are not column"),
    ]:
        with pytest.raises(ConfigError, match=shown):
            train(X, labels)
    assert train(X, np.arange(12) % 2).classes_ is None  # columns 0 and 1: trains
    # a single logit: labels 0 and 1
    one = torch.nn.Sequential(torch.nn.Linear(4, 1))
    train_one = torch_trainer(TorchAdapter(one), epochs=1)
    train_one(X, np.arange(12) % 2)
    with pytest.raises(ConfigError, match=r"labels \[2\] are not"):
        train_one(X, np.arange(12) % 3)


@pytest.mark.parametrize(
    ("options", "unused"),
    [
        ({"source": 1}, "does not use source (mode: targeted)"),
        ({"target_class": 2}, "does not use target_class"),
        ({"kind": "backdoor", "mode": "targeted"}, "kind 'backdoor' does not use mode"),
        ({"kind": "backdoor", "target": 0}, "kind 'backdoor' does not use target"),
        ({"max_backdoor_success": 0.1}, "does not use max_backdoor_success"),
        # at the policy's load, not after every other check ran (a review)
        ({"mode": "targeted"}, "mode 'targeted' needs target"),
        ({"mode": "targeted", "source": 1}, "mode 'targeted' needs target"),
    ],
)
def test_options_the_chosen_attack_ignores_are_refused(
    options: dict[str, Any], unused: str
) -> None:
    with pytest.raises(ValueError, match=unused.replace("(", r"\(").replace(")", r"\)")):
        PoisoningSimulationConfig(**options)
    PoisoningSimulationConfig(mode="targeted", source=1, target=0)  # each where it belongs
    PoisoningSimulationConfig(kind="backdoor", target_class=1, source_class=0)


def test_a_train_fn_is_imported_before_the_run_and_only_when_it_runs(
    cancer: tuple[Dataset, Dataset],
) -> None:
    from bastion.exceptions import ConfigError
    from bastion.runner import load_inputs, run_gate

    train, test = cancer

    def gate(simulation: dict[str, Any]) -> Any:
        policy = parse_policy(
            {"data": {"target": "target"}, "checks": {"poisoning": {"simulation": simulation}}}
        )  # reading it imports nothing
        inputs = load_inputs(
            policy, train=train, test=test, model=logistic(train), from_policy=False
        )
        return run_gate(policy, inputs=inputs, categories=["poisoning"])

    with pytest.raises(
        ConfigError, match=r"checks\.poisoning\.simulation\.train_fn 'no_such_mod:fit': cannot"
    ):
        gate({"train_fn": "no_such_mod:fit"})
    # disabled: the option is never used, and said so before any import
    with pytest.raises(ConfigError, match=r"simulation\.train_fn: an option of a disabled check"):
        gate({"train_fn": "no_such_mod:fit", "enabled": False})
    report = gate({"enabled": False})
    assert "POI002" not in {f.check_id for f in report.findings}


def test_a_trigger_the_clean_model_already_obeys_measures_nothing(
    cancer: tuple[Dataset, Dataset],
) -> None:
    """The default trigger sends triggered breast-cancer rows to class 0 whether or not the
    model was poisoned (clean rate 1.0). The check once said "sensitive to poisoning" at
    success 0.98, which the poison did not add; then it passed at a lift of 0, which
    measured nothing (a review). A limit not judged fails closed, naming the remedy."""
    train, test = cancer
    config = PoisoningSimulationConfig(kind="backdoor", target_class=0)
    finding = PoisoningSimulationCheck(config).execute(context(train, test, logistic(train)))
    assert value(finding, "backdoor_success_rate") > 0.9
    assert value(finding, "clean_trigger_rate") == 1.0
    assert finding.status is Status.FAIL, finding.message
    assert "max_backdoor_success not judged; choose another trigger" in finding.message
    # the other class as the target: the clean model does not obey the trigger, and the
    # poison's share is judged
    other = PoisoningSimulationCheck(PoisoningSimulationConfig(kind="backdoor", target_class=1))
    judged = other.execute(context(train, test, logistic(train)))
    assert value(judged, "clean_trigger_rate") < 1.0
    assert "not judged" not in judged.message


def test_the_backdoor_gate_reads_the_poisons_share_of_what_the_clean_model_left() -> None:
    """Iris, backdoor to class 2: the clean model already sends the triggered class-1 rows
    there (0.5), none of class 0; the poison sends every row (1.0). A plain difference (0.5)
    never exceeds a limit the clean rate has reached, and the check passed."""
    from sklearn.datasets import load_iris

    from bastion.attacks.checks.poisoning_simulation import backdoor_lift

    frame = load_iris(as_frame=True).frame
    tr, te = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame["target"])
    train = Dataset.from_frame(tr.reset_index(drop=True), name="train", target="target")
    test = Dataset.from_frame(te.reset_index(drop=True), name="test", target="target")
    config = PoisoningSimulationConfig(kind="backdoor", target_class=2)
    finding = PoisoningSimulationCheck(config).execute(context(train, test, logistic(train)))
    success, clean = value(finding, "backdoor_success_rate"), value(finding, "clean_trigger_rate")
    assert 0.3 < clean < 0.7 < success
    assert finding.status is Status.FAIL, finding.message
    assert f"where the clean model's was {clean:.3f}" in finding.message
    assert finding.metrics["backdoor_lift"] == backdoor_lift(success, clean)
    assert backdoor_lift(success, clean) == (success - clean) / (1 - clean)
    assert backdoor_lift(0.98, 1.0) == 0.0
    assert backdoor_lift(1.0, 0.95, rows=10) == 0.0  # rates not of 10 rows: no division by 0

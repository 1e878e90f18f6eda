"""POI003 backdoor_activations: fails on a backdoored torch model's training data, passes on
clean data, skips models it cannot read, and reads its policy section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from bastion.attacks.checks.backdoor_activations import (
    BackdoorActivationsCheck,
    BackdoorActivationsConfig,
)
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.poisoning._training import torch_trainer
from bastion.attacks.poisoning.detect import precision_recall
from bastion.attacks.poisoning.simulate import add_backdoor
from bastion.checks import CHECKS, CheckContext
from bastion.config import parse_policy
from bastion.data.dataset import Dataset
from bastion.findings import Status
from bastion.models.sklearn import SklearnAdapter

SOURCE, TARGET = 1, 7
NAMES = [f"p{i}" for i in range(64)]
# training MLPs and importing torch take several seconds on a shared CPU
slow = pytest.mark.slow


def _digits(X: np.ndarray, y: np.ndarray) -> Dataset:
    frame = pd.DataFrame(X, columns=NAMES).assign(target=y)
    return Dataset.from_frame(frame, name="train", target="target")


def _train(X: np.ndarray, y: np.ndarray) -> Any:
    torch = pytest.importorskip("torch")
    from bastion.models.torch import TorchAdapter

    net = torch.nn.Sequential(
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 10),
    )
    template = TorchAdapter(net, classes=list(range(10)))
    return torch_trainer(template, epochs=20, batch_size=128, learning_rate=3e-3, seed=1)(X, y)


@pytest.fixture(scope="module")
def backdoored() -> dict[str, Any]:
    """A one-to-one backdoor (1 -> 7, 3% of the rows, three corner pixels) in a digits MLP."""
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X_p, y_p, idx = add_backdoor(
        X,
        y,
        0.03,
        trigger={0: 16.0, 7: 16.0, 63: 16.0},
        target_class=TARGET,
        source_class=SOURCE,
        rng=1,
        constraints=FeatureConstraints.box(64, 0, 16),
    )
    return {"train": _digits(X_p, y_p), "model": _train(X_p, y_p), "idx": idx}


@pytest.fixture(scope="module")
def clean() -> dict[str, Any]:
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    return {"train": _digits(X, y), "model": _train(X, y)}


def context(train: Dataset | None, model: Any, seed: int = 0) -> CheckContext:
    return CheckContext(seed=seed, subject="model", train=train, model=model)


def test_registered_as_an_opt_in_poisoning_check() -> None:
    cls = CHECKS.get("POI003")
    assert cls is BackdoorActivationsCheck
    assert (cls.category, cls.name) == ("poisoning", "backdoor_activations")
    assert cls.enabled_by_default is False
    assert cls.tags == ("AML.T0020", "AML.T0043.004", "ML02")


def test_the_policy_section_configures_it() -> None:
    policy = parse_policy(
        {"checks": {"poisoning": {"backdoor_activations": {"max_suspect_classes": 1}}}}
    )
    enabled = {c.id: c for c in policy.enabled_checks()}
    assert enabled["POI003"].config.max_suspect_classes == 1  # type: ignore[attr-defined]
    assert enabled["POI003"].config.presence == "both"  # type: ignore[attr-defined]


def test_skips_models_without_torch_layers() -> None:
    X, y = load_digits(return_X_y=True)
    train = _digits(X[:300], y[:300])
    model = SklearnAdapter(LogisticRegression(max_iter=200).fit(X[:300] / 16, y[:300]))
    finding = BackdoorActivationsCheck().execute(context(train, model))
    assert finding.status is Status.SKIPPED
    assert "torch model" in finding.message
    assert "sklearn" in finding.message


@slow
def test_skips_an_exported_program_whose_layers_never_run(
    clean: dict[str, Any], tmp_path: Path
) -> None:
    import torch

    from bastion.models.torch import TorchAdapter, load_torch_export

    module = clean["model"].module.eval()
    program = torch.export.export(
        module, (torch.zeros(4, 64),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, tmp_path / "model.pt2")
    exported = TorchAdapter(load_torch_export(tmp_path / "model.pt2"), classes=list(range(10)))
    layer = BackdoorActivationsConfig(layer="4")  # a Linear's parameter holder, never called
    for cfg in (BackdoorActivationsConfig(), layer):
        finding = BackdoorActivationsCheck(cfg).execute(context(clean["train"], exported))
        assert finding.status is Status.SKIPPED, finding.message
        assert "activations" in finding.message


@slow
def test_skips_without_training_data(clean: dict[str, Any]) -> None:
    finding = BackdoorActivationsCheck().execute(context(None, clean["model"]))
    assert finding.status is Status.SKIPPED
    assert "data.train" in finding.message


@slow
def test_fails_on_backdoored_training_data(backdoored: dict[str, Any]) -> None:
    from bastion.attacks.poisoning.spectral import activation_clustering

    d = backdoored
    finding = BackdoorActivationsCheck().execute(context(d["train"], d["model"]))
    assert finding.status is Status.FAIL, finding.message
    m = finding.metrics
    assert m["n_suspect_classes"] == 1
    assert m["n_rows"] == d["train"].n_rows
    assert m["flagged_fraction"] == m["n_flagged"] / m["n_rows"]  # type: ignore[operator]
    assert finding.threshold["max_suspect_classes"] == 0
    evidence = finding.evidence
    assert evidence["suspect_classes"] == [TARGET]
    target = evidence["classes"][str(TARGET)]
    assert target["poisoned"] is True
    assert {"p0", "p7", "p63"} <= set(target["transfer_features"])  # the trigger, by name
    assert target["reclassified_to"] == SOURCE
    assert target["spectral_gap"] > 0
    assert sum(evidence["flagged_by_class"].values()) == m["n_flagged"]
    assert str(TARGET) in finding.message
    # flagged row positions are samples, most suspicious first: poisoned rows
    positions = evidence["samples"]["row_positions"]
    assert len(positions) == 20
    assert np.isin(positions, d["idx"]).mean() >= 0.8
    # the same numbers as the library function with the check's seed
    seed = int(context(d["train"], d["model"]).rng("POI003").integers(2**31 - 1))
    peer = activation_clustering(d["model"], d["train"].features, d["train"].labels, seed=seed)
    assert peer.n_flagged == m["n_flagged"]
    precision, recall = precision_recall(peer.flagged, d["idx"])
    assert recall is not None
    assert recall >= 0.9
    assert precision is not None
    assert precision >= 0.75


@slow
def test_passes_on_clean_training_data(clean: dict[str, Any]) -> None:
    d = clean
    finding = BackdoorActivationsCheck().execute(context(d["train"], d["model"]))
    assert finding.status is Status.PASS, finding.message
    assert finding.metrics["n_suspect_classes"] == 0
    assert finding.metrics["n_flagged"] == 0
    # the clusters are there (natural modes of digits); the presence test clears them
    assert finding.metrics["n_candidate_classes"] >= 1  # type: ignore[operator]
    assert "samples" not in finding.evidence
    # without a presence test the same data fails: the size / silhouette rule over-flags
    cfg = BackdoorActivationsConfig(presence="none")
    rule = BackdoorActivationsCheck(cfg).execute(context(d["train"], d["model"]))
    assert rule.status is Status.FAIL
    assert rule.threshold["min_presence"] is None


@slow
def test_limit_and_determinism(backdoored: dict[str, Any]) -> None:
    d = backdoored
    cfg = BackdoorActivationsConfig(max_suspect_classes=1, n_samples_reported=0)
    a = BackdoorActivationsCheck(cfg).execute(context(d["train"], d["model"], seed=3))
    b = BackdoorActivationsCheck(cfg).execute(context(d["train"], d["model"], seed=3))
    assert a.status is Status.PASS  # one suspect class is allowed
    assert "samples" not in a.evidence
    assert {**a.to_dict(), "duration_s": 0} == {**b.to_dict(), "duration_s": 0}


@slow
def test_past_max_seconds_is_an_error_not_a_pass(clean: dict[str, Any]) -> None:
    """Stopped between two classes, the detector has not looked at every class: an error
    that names the class it stopped before and the policy key to raise."""
    cfg = BackdoorActivationsConfig(max_seconds=1e-9)
    finding = BackdoorActivationsCheck(cfg).execute(context(clean["train"], clean["model"]))
    assert finding.status is Status.ERROR
    assert "activation clustering: class 1 of 10" in finding.message
    assert "poisoning.backdoor_activations.max_seconds" in finding.message


@slow
def test_labels_the_model_never_answers_are_an_error_not_a_pass(
    backdoored: dict[str, Any],
) -> None:
    """A torch model that declares no classes answers its output columns 0..9: string
    labels matched none of its answers, the presence test found no lift, and the backdoored
    model passed."""
    from bastion.models.torch import TorchAdapter

    words = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    frame = backdoored["train"].frame
    named = _digits(frame[NAMES].to_numpy(), words[frame["target"].to_numpy()])
    undeclared = TorchAdapter(backdoored["model"].module)
    finding = BackdoorActivationsCheck().execute(context(named, undeclared))
    assert finding.status is Status.ERROR, finding.message
    assert "none of its answers" in finding.message
    declared = TorchAdapter(backdoored["model"].module, classes=list(words))
    assert BackdoorActivationsCheck().execute(context(named, declared)).status is Status.FAIL
    # the reclassification test never reads the model's answers: no reason to refuse
    config = BackdoorActivationsConfig(presence="reclassification")
    alone = BackdoorActivationsCheck(config).execute(context(named, undeclared))
    assert alone.status is not Status.ERROR, alone.message


def test_the_summary_gives_the_figures_of_the_presence_tests_that_ran() -> None:
    """Under the reclassification test alone the message printed a transfer lift, a figure
    nothing judged (a review)."""
    from bastion.attacks.checks.backdoor_activations import _summary

    entry = {"transfer_lift": 0.41, "reclassified_own_share": 0.25, "reclassified_to": 0}
    classes = {"1": entry}
    both = _summary("both", ["1"], [1], classes, 30, 300)
    assert "transfer lift 0.41" in both
    assert "25% kept its label when reclassified, most went to 0" in both
    alone = _summary("reclassification", ["1"], [1], classes, 30, 300)
    assert "transfer lift" not in alone
    assert "25% kept its label" in alone
    transfer = _summary("transfer", ["1"], [1], classes, 30, 300)
    assert "transfer lift 0.41" in transfer
    assert "kept its label" not in transfer

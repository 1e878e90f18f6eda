"""Spectral signatures and activation clustering find a backdoor planted in a digits MLP."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.poisoning._training import torch_trainer
from bastion.attacks.poisoning.detect import precision_recall
from bastion.attacks.poisoning.simulate import add_backdoor, apply_trigger
from bastion.attacks.poisoning.spectral import (
    activation_clustering,
    penultimate_activations,
    spectral_signatures,
)
from bastion.exceptions import ConfigError, ModelError

torch = pytest.importorskip("torch")
# training the MLP and importing torch take several seconds on a shared CPU
slow = pytest.mark.slow

SOURCE, TARGET = 1, 7


@pytest.fixture(scope="module")
def backdoored() -> dict[str, Any]:
    """A one-to-one backdoor (1 -> 7, 3% of the rows) learned by a small MLP."""
    from bastion.models.torch import TorchAdapter

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    constraints = FeatureConstraints.box(64, 0, 16)
    trigger = {0: 16.0, 7: 16.0, 63: 16.0}  # three corner pixels, blank in every digit
    X_p, y_p, idx = add_backdoor(
        X,
        y,
        0.03,
        trigger=trigger,
        target_class=TARGET,
        source_class=SOURCE,
        rng=1,
        constraints=constraints,
    )
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 10),
    )
    template = TorchAdapter(net, classes=list(range(10)))
    model = torch_trainer(template, epochs=20, batch_size=128, learning_rate=3e-3, seed=1)(X_p, y_p)
    return {"X": X, "y": y, "X_p": X_p, "y_p": y_p, "idx": idx, "model": model, "trigger": trigger}


@slow
def test_the_planted_backdoor_works(backdoored: dict[str, Any]) -> None:
    d = backdoored
    sources = d["X"][d["y"] == SOURCE]
    assert (d["model"].predict(apply_trigger(sources, d["trigger"])) == TARGET).mean() > 0.9
    assert (d["model"].predict(d["X"]) == d["y"]).mean() > 0.95


@slow
def test_penultimate_activations_read_the_last_linear_input(backdoored: dict[str, Any]) -> None:
    d = backdoored
    acts = penultimate_activations(d["model"], d["X_p"][:10])
    assert acts.shape == (10, 32)
    assert (acts >= 0).all()  # after the ReLU
    # a named layer: the input of the second Linear has 64 features
    assert penultimate_activations(d["model"].module, d["X_p"][:5], layer="2").shape == (5, 64)
    with pytest.raises(ModelError, match="not a submodule"):
        penultimate_activations(d["model"], d["X_p"][:5], layer="nope")
    with pytest.raises(ModelError, match="torch model"):
        penultimate_activations(object(), d["X_p"][:5])


@slow
def test_spectral_signatures_rank_the_poison_high(backdoored: dict[str, Any]) -> None:
    d = backdoored
    issues = spectral_signatures(d["model"], d["X_p"], d["y_p"], rate=0.25)
    assert issues.method == "spectral_signatures"
    rows = np.flatnonzero(d["y_p"] == TARGET)
    poisoned = np.isin(rows, d["idx"])
    top_auc = roc_auc_score(poisoned, issues.scores[rows])
    assert top_auc > 0.8
    # the paper's rule flags 1.5 * rate of every class; inside the target class it finds most
    in_target = issues.flagged[d["y_p"][issues.flagged] == TARGET]
    assert len(in_target) == int(np.ceil(1.5 * 0.25 * len(rows)))
    _, recall = precision_recall(in_target, d["idx"])
    assert recall is not None
    assert recall >= 0.75
    # all directions (distance to the class centroid) rank at least as well here
    wide = spectral_signatures(d["model"], d["X_p"], d["y_p"], rate=0.25, n_directions=None)
    assert roc_auc_score(poisoned, wide.scores[rows]) >= top_auc


@slow
def test_activation_clustering_isolates_the_poison(backdoored: dict[str, Any]) -> None:
    d = backdoored
    issues = activation_clustering(d["model"], d["X_p"], d["y_p"])
    assert issues.details["classes"][str(TARGET)]["flagged"] is True
    _, recall = precision_recall(issues.flagged, d["idx"])
    assert recall is not None
    assert recall >= 0.9


@slow
def test_detectors_are_deterministic(backdoored: dict[str, Any]) -> None:
    d = backdoored
    acts = penultimate_activations(d["model"], d["X_p"])
    a = activation_clustering(None, None, d["y_p"], activations=acts, seed=3)
    b = activation_clustering(None, None, d["y_p"], activations=acts, seed=3)
    np.testing.assert_array_equal(a.flagged, b.flagged)
    s1 = spectral_signatures(None, None, d["y_p"], activations=acts)
    s2 = spectral_signatures(d["model"], d["X_p"], d["y_p"])
    np.testing.assert_array_equal(s1.flagged, s2.flagged)


def test_planted_direction_in_synthetic_activations() -> None:
    # class 1 holds 20 rows shifted along one axis: a poison signature by construction
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(300, 8))
    y = np.repeat([0, 1], 150)
    poison = np.arange(150, 170)
    acts[poison, 3] += 6.0
    issues = spectral_signatures(None, None, y, rate=0.1, activations=acts)
    in_class = issues.flagged[y[issues.flagged] == 1]
    assert len(in_class) == 23  # ceil(1.5 * 0.1 * 150)
    assert set(poison) <= set(in_class.tolist())
    assert (
        issues.details["classes"]["1"]["spectral_gap"]
        > issues.details["classes"]["0"]["spectral_gap"]
    )
    clusters = activation_clustering(None, None, y, activations=acts)
    assert clusters.details["classes"]["1"]["flagged"] is True
    assert set(clusters.flagged.tolist()) == set(poison.tolist())


def test_bad_options() -> None:
    acts = np.random.default_rng(0).normal(size=(20, 4))
    y = np.repeat([0, 1], 10)
    with pytest.raises(ConfigError):
        spectral_signatures(None, None, y, rate=1.5, activations=acts)
    with pytest.raises(ConfigError):
        spectral_signatures(None, None, y, n_directions=0, activations=acts)
    with pytest.raises(ConfigError):
        activation_clustering(None, None, y, size_threshold=0.9, activations=acts)

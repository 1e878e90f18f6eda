"""Spectral signatures and activation clustering find a backdoor planted in a digits MLP,
and activation clustering's presence test leaves a clean model's classes alone."""

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
    Presence,
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
    # an exported program keeps plain modules for its weights: it said "no Linear layer,
    # name one with layer=", which the command line cannot (a review)
    module = d["model"].module.eval()
    exported = torch.export.export(module, (torch.as_tensor(d["X_p"][:2], dtype=torch.float32),))
    with pytest.raises(ModelError, match="load it as module:factory with safetensors"):
        penultimate_activations(exported.module(), d["X_p"][:5])


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


@pytest.fixture(scope="module")
def clean() -> dict[str, Any]:
    """The same MLP and recipe trained on clean digits."""
    from bastion.models.torch import TorchAdapter

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 10),
    )
    template = TorchAdapter(net, classes=list(range(10)))
    model = torch_trainer(template, epochs=20, batch_size=128, learning_rate=3e-3, seed=1)(X, y)
    return {"X": X, "y": y, "model": model}


@slow
def test_activation_clustering_isolates_the_poison(backdoored: dict[str, Any]) -> None:
    d = backdoored
    issues = activation_clustering(d["model"], d["X_p"], d["y_p"])
    assert issues.details["presence"] == "both"
    # the presence test keeps the poisoned class and only it
    assert issues.details["suspect_classes"] == [TARGET]
    target = issues.details["classes"][str(TARGET)]
    assert target["flagged"] is True
    # the trigger transfers: the corner pixels send other digits to 7
    assert target["transfer_lift"] >= 0.5
    assert set(d["trigger"]) <= set(target["transfer_features"])
    # reclassified without the cluster, the poisoned rows go back to their source class
    assert target["reclassified_own_share"] < 0.5
    assert target["reclassified_to"] == SOURCE
    precision, recall = precision_recall(issues.flagged, d["idx"])
    assert recall is not None
    assert recall >= 0.9
    assert precision is not None
    assert precision >= 0.75
    # clean classes split too, but fail the presence test
    assert sum(1 for e in issues.details["classes"].values() if e["candidate"]) > 1


@slow
def test_without_a_presence_test_clean_modes_are_flagged(backdoored: dict[str, Any]) -> None:
    d = backdoored
    acts = penultimate_activations(d["model"], d["X_p"])
    tested = activation_clustering(d["model"], d["X_p"], d["y_p"], activations=acts)
    rule = activation_clustering(None, None, d["y_p"], presence=None, activations=acts)
    assert rule.details["size_threshold"] == 0.35  # the paper's rule, 2-means
    assert rule.details["max_clusters"] == 2
    flagged = [c for c, e in rule.details["classes"].items() if e["flagged"]]
    assert str(TARGET) in flagged
    assert len(flagged) > 1
    rule_precision, _ = precision_recall(rule.flagged, d["idx"])
    tested_precision, _ = precision_recall(tested.flagged, d["idx"])
    assert rule_precision is not None
    assert tested_precision is not None
    assert tested_precision > rule_precision


@slow
def test_presence_test_flags_no_class_of_a_clean_model(clean: dict[str, Any]) -> None:
    d = clean
    issues = activation_clustering(d["model"], d["X"], d["y"])
    assert issues.details["suspect_classes"] == []
    assert issues.n_flagged == 0
    classes = issues.details["classes"]
    candidates = [c for c, e in classes.items() if e["candidate"]]
    assert candidates  # the clusters exist; the presence test rejects them
    for label in candidates:
        entry = classes[label]
        assert entry["flagged"] is False
        assert entry["transfer_lift"] < 0.5 or entry["reclassified_own_share"] >= 0.5
    # the paper's rule alone flags clean classes of the same model
    rule = activation_clustering(d["model"], d["X"], d["y"], presence=None)
    assert any(e["flagged"] for e in rule.details["classes"].values())


@slow
def test_each_presence_test_alone(backdoored: dict[str, Any]) -> None:
    d = backdoored
    acts = penultimate_activations(d["model"], d["X_p"])
    tests: tuple[Presence, ...] = ("transfer", "reclassification")
    for presence in tests:
        issues = activation_clustering(
            d["model"], d["X_p"], d["y_p"], presence=presence, activations=acts
        )
        assert TARGET in issues.details["suspect_classes"], presence
        _, recall = precision_recall(issues.flagged, d["idx"])
        assert recall is not None
        assert recall >= 0.9


@slow
def test_reclassifier_can_retrain_the_network(backdoored: dict[str, Any]) -> None:
    # the paper retrains the network without the cluster; any train(X, y) -> model works
    d = backdoored
    acts = penultimate_activations(d["model"], d["X_p"])
    calls: list[int] = []

    def retrain(X: Any, y: Any) -> Any:
        calls.append(len(y))
        return torch_trainer(d["model"], epochs=20, batch_size=128, learning_rate=3e-3, seed=1)(
            X, y
        )

    issues = activation_clustering(
        d["model"], d["X_p"], d["y_p"], activations=acts, reclassifier=retrain
    )
    assert calls
    assert all(n < len(d["y_p"]) for n in calls)
    assert issues.details["suspect_classes"] == [TARGET]
    assert issues.details["classes"][str(TARGET)]["reclassified_to"] == SOURCE


@slow
def test_detectors_are_deterministic(backdoored: dict[str, Any]) -> None:
    d = backdoored
    acts = penultimate_activations(d["model"], d["X_p"])
    a = activation_clustering(d["model"], d["X_p"], d["y_p"], activations=acts, seed=3)
    b = activation_clustering(d["model"], d["X_p"], d["y_p"], activations=acts, seed=3)
    np.testing.assert_array_equal(a.flagged, b.flagged)
    assert a.details == b.details
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
    clusters = activation_clustering(None, None, y, presence=None, activations=acts)
    assert clusters.details["classes"]["1"]["flagged"] is True
    assert set(clusters.flagged.tolist()) == set(poison.tolist())


@pytest.mark.parametrize(("rows", "features"), [(40, 300), (300, 20), (2, 9), (6, 1)])
def test_top_directions_are_the_svds(rows: int, features: int) -> None:
    """The top singular values and each row's projections, from the smaller Gram matrix's
    top eigenpairs, equal a full SVD's (a full SVD of 3,000 x 8,192 activations took 33 s;
    from a review)."""
    from bastion.attacks.poisoning.spectral import _top_directions

    a = np.random.default_rng(rows).normal(size=(rows, features))
    a -= a.mean(axis=0)
    singular, projections = _top_directions(a, 3)
    _, full, vt = np.linalg.svd(a, full_matrices=False)
    k = min(3, rows, features)
    np.testing.assert_allclose(singular, full[:k], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.abs(projections), np.abs(a @ vt[:k].T), rtol=1e-7, atol=1e-9)


def test_spectral_signatures_stop_at_the_wall_deadline() -> None:
    """No queries, so the time budget: checked between classes (POI003 computed its gaps
    after its budget's block, from a review)."""
    import time

    from bastion._deadline import wall_deadline
    from bastion.exceptions import TimeBudgetError

    acts = np.random.default_rng(0).normal(size=(40, 5))
    with wall_deadline(1e-9):
        time.sleep(0.001)
        with pytest.raises(TimeBudgetError, match="spectral signatures"):
            spectral_signatures(None, None, np.arange(40) % 2, activations=acts)


def test_the_flag_count_is_rounded_before_its_ceiling() -> None:
    # 1.5 * 0.1 * 20 is 3.0000000000000004 in floats: ceil flagged 4 rows of 20, not 3
    acts = np.random.default_rng(0).normal(size=(40, 4))
    y = np.repeat([0, 1], 20)
    issues = spectral_signatures(None, None, y, rate=0.1, activations=acts)
    assert issues.details["classes"]["0"]["flagged"] == 3
    assert issues.n_flagged == 6


def test_non_finite_activations_are_a_data_error() -> None:
    # a NaN activation (a diverged training run) gave numpy's "SVD did not converge" and
    # scikit-learn's "Input X contains NaN"
    from bastion.exceptions import DataError

    acts = np.random.default_rng(0).normal(size=(40, 4))
    acts[3, 1] = np.nan
    y = np.repeat([0, 1], 20)
    with pytest.raises(DataError, match=r"NaN or infinite values in 1 of 40 rows .*row 3"):
        spectral_signatures(None, None, y, activations=acts)
    with pytest.raises(DataError, match="row 3"):
        activation_clustering(None, None, y, presence=None, activations=acts)


def test_bad_options() -> None:
    acts = np.random.default_rng(0).normal(size=(20, 4))
    y = np.repeat([0, 1], 10)
    with pytest.raises(ConfigError):
        spectral_signatures(None, None, y, rate=1.5, activations=acts)
    with pytest.raises(ConfigError):
        spectral_signatures(None, None, y, n_directions=0, activations=acts)
    with pytest.raises(ConfigError):
        activation_clustering(None, None, y, size_threshold=0.9, presence=None, activations=acts)
    with pytest.raises(ConfigError, match="presence must be one of"):
        activation_clustering(None, None, y, presence="nope", activations=acts)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="min_presence"):
        activation_clustering(None, None, y, presence=None, min_presence=0, activations=acts)
    with pytest.raises(ConfigError, match="max_clusters"):
        activation_clustering(None, None, y, presence=None, max_clusters=1, activations=acts)
    # the presence test asks the model: activations alone are not enough
    with pytest.raises(ConfigError, match="needs the model"):
        activation_clustering(None, None, y, activations=acts)


def test_a_bare_conv_module_on_images_and_missing_values_named() -> None:
    """A bare module over image-shaped rows: the presence test sent it flat rows (a conv2d
    error). Missing values in the rows are named, not a PCA error."""
    torch = pytest.importorskip("torch")
    from sklearn.datasets import load_digits

    from bastion.attacks.poisoning.spectral import activation_clustering, penultimate_activations
    from bastion.exceptions import DataError

    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X = (X[:400] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 10)
    )
    result = activation_clustering(net, X, y[:400], min_silhouette=-1.0, presence="transfer")
    assert result.n_flagged >= 0
    from bastion.models.torch import TorchAdapter

    adapter = TorchAdapter(net)  # no input_shape: it takes the rows as X holds them
    activation_clustering(adapter, X, y[:400], min_silhouette=-1.0, presence="transfer")
    holes = X.copy()
    holes[5, 0, 2, 3] = np.nan
    with pytest.raises(DataError, match=r"missing or infinite values in 19 \(1 rows\)"):
        penultimate_activations(net, holes)


def test_the_source_class_is_named_by_its_label() -> None:
    """A trigger that fires on one class ('dog') only: the per-class lift named the class by
    its encoded index."""
    from bastion.attacks.poisoning.spectral import activation_clustering

    rng = np.random.default_rng(0)

    def rows(n: int, x1: float, x23: float) -> np.ndarray:
        X = rng.normal(0, 0.3, size=(n, 10))
        X[:, 1] += x1
        X[:, 2] += x23
        X[:, 3] += x23
        return X

    poison = rows(20, -3, -3)
    poison[:, 0] = 10.0  # 'dog' rows with the trigger, labelled 'emu'
    X = np.vstack([rows(60, 3, -3), rows(60, -3, -3), rows(60, 0, 3), poison])
    y = np.array(["cat"] * 60 + ["dog"] * 60 + ["emu"] * 80)

    class OneToOne:  # the backdoor fires on 'dog' rows only
        def predict(self, Z: Any) -> np.ndarray:
            Z = np.asarray(Z)
            out = np.where(
                (Z[:, 2] > 0) & (Z[:, 3] > 0), "emu", np.where(Z[:, 1] > 0, "cat", "dog")
            )
            return np.where((Z[:, 0] > 5) & (Z[:, 1] < 0), "emu", out)

    found = activation_clustering(
        OneToOne(), X, y, activations=X, presence="transfer", n_transfer_features=1, seed=0
    )
    emu = found.details["classes"]["emu"]
    assert found.details["suspect_classes"] == ["emu"]
    assert emu["source_class"] == "dog"
    assert emu["source_lift"] == 1.0


def test_large_classes_get_a_sampled_silhouette_close_to_the_full_one() -> None:
    """Past 5,000 rows a split's silhouette is estimated on a seeded sample: the full score
    costs time in the square of the rows (seconds per class at 20,000). The estimate stays
    close to the exact one and repeats under the seed."""
    from sklearn.metrics import silhouette_score

    from bastion.attacks.poisoning.spectral import _splits

    rng = np.random.default_rng(0)
    reduced = rng.normal(size=(12_000, 4))
    reduced[:1_200] += 4.0  # a 10% cluster, as poison would form
    splits = _splits(reduced, max_clusters=2, seed=3)
    assign, estimate = splits[0]
    assert abs(np.bincount(assign).min() - 1_200) <= 12  # the cluster, give or take its edge
    exact_large = silhouette_score(reduced, assign)
    assert 0 < abs(estimate - exact_large) < 0.02  # estimated (not exact), and close
    assert _splits(reduced, max_clusters=2, seed=3)[0][1] == estimate
    small = reduced[:4_000]  # at most 5,000 rows: the exact score
    assign_small, exact = _splits(small, max_clusters=2, seed=3)[0]
    assert exact == pytest.approx(silhouette_score(small, assign_small), abs=1e-12)


def test_a_cluster_of_a_few_rows_keeps_its_silhouette_in_a_large_class() -> None:
    """A backdoor's cluster can be a handful of rows in a large class: a uniform sample of
    5,000 rows missed it and left one cluster, which has no silhouette (sklearn raised
    "Number of labels is 1" and POI003 was an error). Its rows now join the sample."""
    from bastion.attacks.poisoning.spectral import _splits

    rng = np.random.default_rng(0)
    reduced = rng.normal(size=(20_000, 4))
    reduced[:5] += 50.0  # five planted rows, far from the rest
    for seed in range(6):
        splits = _splits(reduced, max_clusters=2, seed=seed)
        assign, quality = splits[0]
        assert sorted(np.bincount(assign).tolist()) == [5, 19_995]
        assert quality > 0.9  # the five rows are a cluster of their own


def test_activation_clustering_reports_each_class() -> None:
    """The per-class stages show on a progress bar (and are where max_seconds is looked at)."""
    from bastion.attacks.budget import report_progress

    rng = np.random.default_rng(0)
    acts = rng.normal(size=(90, 5))
    labels = np.repeat([0, 1, 2], 30)
    seen: list[str] = []
    with report_progress(seen.append):
        activation_clustering(None, None, labels, activations=acts, presence=None)
    assert [s for s in seen if s.startswith("activation clustering")] == [
        f"activation clustering: class {c} of 3" for c in (1, 2, 3)
    ]


def test_labels_the_model_never_answers_are_refused_not_read_as_clean() -> None:
    """From a review: with labels shifted by 10 (a bare module answering 0..9), no stamped
    row ever read as the target, and a backdoored MLP's every class looked clean."""
    from sklearn.linear_model import LogisticRegression

    from bastion.exceptions import DataError

    X, y = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=200).fit(X[:300], y[:300])
    acts = X[:300]
    found = activation_clustering(model, X[:300], y[:300], activations=acts, seed=0)
    assert found.method == "activation_clustering"
    with pytest.raises(DataError, match=r"none of its answers on the first 300 rows"):
        activation_clustering(model, X[:300], y[:300] + 10, activations=acts, seed=0)
    # images to a model of flat rows: the check sends rows as the test does (X's own
    # shape went to the model, which refused it; a review)
    images = X[:300].reshape(300, 8, 8)
    found = activation_clustering(model, images, y[:300], activations=acts, seed=0)
    assert found.method == "activation_clustering"

"""Simulated poisoning: label flips, backdoors, retraining with the user's procedure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from bastion.attacks.base import ATTACKS
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.poisoning.backdoor import Backdoor, BackdoorConfig
from bastion.attacks.poisoning.label_flip import LabelFlip, LabelFlipConfig
from bastion.attacks.poisoning.simulate import (
    add_backdoor,
    apply_trigger,
    default_trigger,
    flip_labels,
    simulate_poisoning,
)
from bastion.data.schema import FeatureSchema
from bastion.exceptions import CapabilityError, ConfigError, DataError
from bastion.models.callable import CallableAdapter
from bastion.models.sklearn import SklearnAdapter


@pytest.fixture(scope="module")
def cancer() -> dict[str, Any]:
    data = load_breast_cancer(as_frame=True)
    X_tr, X_te, y_tr, y_te = train_test_split(
        data.data, data.target.to_numpy(), test_size=0.3, random_state=0, stratify=data.target
    )
    X_tr, X_te = X_tr.reset_index(drop=True), X_te.reset_index(drop=True)
    schema = FeatureSchema.infer(X_tr)
    constraints = FeatureConstraints.from_schema(schema, list(X_tr.columns), X_tr)
    return {"X_tr": X_tr, "X_te": X_te, "y_tr": y_tr, "y_te": y_te, "constraints": constraints}


# -- label flipping ------------------------------------------------------------------------------


def test_random_flips_change_exactly_the_chosen_rows() -> None:
    y = np.repeat([0, 1, 2], 100)
    y_p, idx = flip_labels(y, 0.1, rng=0)
    assert len(idx) == 30
    assert np.all(np.diff(idx) > 0)
    changed = np.flatnonzero(y_p != y)
    np.testing.assert_array_equal(changed, idx)
    assert set(np.unique(y_p[idx])) <= {0, 1, 2}
    # every other class is reachable (uniform choice among the others)
    assert len(np.unique(y_p[idx])) == 3


@pytest.mark.parametrize(("n", "expected"), [(30, 2), (50, 3), (70, 4), (90, 5), (10, 1)])
def test_the_poisoned_count_rounds_half_up(n: int, expected: int) -> None:
    """rate x n of 1.5, 2.5, 3.5, 4.5: Python's round gave 2, 2, 4, 4 (half to even), one
    rate moving up or down with n; 0.5 gives one row, the minimum anyway."""
    y = np.array([0, 1] * (n // 2))
    assert len(flip_labels(y, 0.05, rng=0)[1]) == expected
    _, _, idx = add_backdoor(np.zeros((n, 2)), y, 0.05, trigger={0: 1.0}, target_class=1, rng=0)
    assert len(idx) == expected


def test_the_reported_poison_rate_is_the_share_actually_poisoned(
    cancer: dict[str, Any],
) -> None:
    """The minimum of one row: 1 of 40 rows is 2.5% poisoned, whatever the 1% asked."""
    X, y = cancer["X_tr"].iloc[:40], cancer["y_tr"][:40]
    sim = simulate_poisoning(
        DecisionTreeClassifier(max_depth=2), X, y, cancer["X_te"], cancer["y_te"], rate=0.01
    )
    assert (sim.n_poisoned, sim.n_train) == (1, 40)
    m = sim.metrics()
    assert m["poison_rate"] == 1 / 40
    assert m["requested_rate"] == 0.01


def test_a_backdoor_takes_plain_lists_of_rows() -> None:
    """Label flips took lists; the trigger read ``X.shape`` of a list (AttributeError)."""
    X = [[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]] * 5
    y = [0, 1, 0, 1] * 5
    X_p, y_p, idx = add_backdoor(X, y, 0.2, trigger={1: 2.0}, target_class=1, rng=0)
    assert isinstance(X_p, np.ndarray)
    assert X_p[idx, 1].tolist() == [2.0] * len(idx)
    assert y_p[idx].tolist() == [1] * len(idx)
    assert np.delete(X_p, idx, axis=0).max() == 1.0
    assert apply_trigger([[0.0, 0.0]], {0: 3.0}).tolist() == [[3.0, 0.0]]
    with pytest.raises(DataError, match="one row per point"):
        apply_trigger([1.0, 2.0], {0: 3.0})


def test_flips_are_deterministic_under_a_seed_and_keep_string_labels() -> None:
    y = np.array(["a", "b", "c"] * 40)
    a = flip_labels(y, 0.2, rng=7)
    b = flip_labels(y, 0.2, rng=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].dtype == y.dtype
    c = flip_labels(y, 0.2, rng=8)
    assert not np.array_equal(a[1], c[1])


def test_targeted_flips_move_only_the_source_class() -> None:
    y = np.repeat([0, 1, 2], 50)
    y_p, idx = flip_labels(y, 0.1, mode="targeted", source=2, target=0, rng=0)
    assert len(idx) == 15
    assert (y[idx] == 2).all()
    assert (y_p[idx] == 0).all()
    assert (y_p[np.setdiff1d(np.arange(150), idx)] == y[np.setdiff1d(np.arange(150), idx)]).all()
    # without a source: any row not already of the target
    y_p, idx = flip_labels(y, 0.1, mode="targeted", target=1, rng=0)
    assert (y[idx] != 1).all()
    assert (y_p[idx] == 1).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 0.0}, "rate"),
        ({"rate": 1.0}, "rate"),
        ({"mode": "targeted"}, "target="),
        ({"mode": "targeted", "target": 9}, "not one of the classes"),
        ({"mode": "targeted", "target": 1, "source": 1}, "differ"),
        ({"mode": "targeted", "target": 1, "source": 0, "rate": 0.6}, "eligible"),
        ({"mode": "sideways"}, "mode"),
    ],
)
def test_flip_errors(kwargs: dict[str, Any], match: str) -> None:
    y = np.repeat([0, 1], 10)
    args = {"rate": 0.1, **kwargs}
    with pytest.raises(ConfigError, match=match):
        flip_labels(y, **args)


def test_one_class_cannot_be_flipped() -> None:
    with pytest.raises(ConfigError, match="two classes"):
        flip_labels(np.zeros(10), 0.1)


# -- backdoor ------------------------------------------------------------------------------------


def test_backdoor_stamps_trigger_and_relabels(cancer: dict[str, Any]) -> None:
    X, y, cons = cancer["X_tr"], cancer["y_tr"], cancer["constraints"]
    X_p, y_p, idx = add_backdoor(X, y, 0.05, target_class=1, rng=0, constraints=cons)
    assert isinstance(X_p, pd.DataFrame)
    assert list(X_p.columns) == list(X.columns)
    assert len(idx) == round(0.05 * len(y))
    assert (y[idx] == 0).all()
    assert (y_p[idx] == 1).all()
    changed_rows = np.flatnonzero((X_p.to_numpy() != X.to_numpy()).any(axis=1))
    np.testing.assert_array_equal(changed_rows, idx)
    # the trigger respects every constraint
    assert cons.violations(X_p.to_numpy(), X.to_numpy()) == 0
    # the original is untouched
    assert not X.equals(X_p)


def test_default_trigger_prefers_rare_large_values_inside_bounds() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    X[:, 2] = rng.exponential(size=400)  # a long right tail: its maximum is far out
    X[:, 5] = rng.normal(scale=1e-3, size=400)  # far out in its own std, but a tiny change
    trigger = default_trigger(X, n_features=1, rng=0)
    assert list(trigger) == [2]
    assert trigger[2] == pytest.approx(X[:, 2].max())
    # declared bounds win over the data, immutable features are never used, integer
    # features get an integral value
    base = FeatureConstraints.box(6, -5, 9.5)
    cons = FeatureConstraints(
        names=base.names,
        lower=base.lower,
        upper=base.upper,
        bound_source=base.bound_source,
        immutable=np.array([False, False, True, False, False, False]),
        integer=np.ones(6, dtype=bool),
        scale=base.scale,
    )
    trigger = default_trigger(X, cons, n_features=3, rng=0)
    assert 2 not in trigger
    assert len(trigger) == 3
    assert set(trigger.values()) == {9.0}
    with pytest.raises(ConfigError, match="n_trigger_features"):
        default_trigger(X, cons, n_features=6)


def test_a_pixel_blank_in_every_training_image_can_carry_the_trigger() -> None:
    """A feature with no spread is held by the evasion attacks (eps std units of it is no
    move), not immutable: the classic blank-corner trigger stays the default and may be
    given (from a review: refused as immutable)."""
    from bastion.data.schema import ColumnKind, ColumnSpec

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.integers(0, 256, size=(200, 16)).astype(float),
                     columns=[f"p{i}" for i in range(16)])  # fmt: skip
    X["p15"] = 0.0
    y = rng.integers(0, 2, 200)
    schema = FeatureSchema({c: ColumnSpec(c, ColumnKind.INTEGER, min=0, max=255) for c in X})
    cons = FeatureConstraints.from_schema(schema, list(X.columns), X)
    assert cons.no_spread == ("p15",)
    assert default_trigger(X.to_numpy(), cons, n_features=1, rng=0) == {15: 255.0}
    X_p, _, rows = add_backdoor(
        X.to_numpy(), y, 0.1, trigger={15: 255.0}, target_class=1, rng=0, constraints=cons
    )
    assert np.all(X_p[rows, 15] == 255.0)


def test_default_trigger_takes_values_real_inputs_take() -> None:
    """Inferred bounds are the data's range widened by a margin: a trigger there (pixel 267
    when pixels end at 255) measured the backdoor with inputs no one can send, and broke a
    uint8 column. Only declared bounds are used; otherwise the data's maximum."""
    from bastion.data.schema import ColumnKind, ColumnSpec

    rng = np.random.default_rng(0)
    pixels = np.where(rng.random((300, 8)) < 0.9, 0, rng.integers(1, 256, (300, 8)))
    frame = pd.DataFrame(pixels.astype(np.uint8), columns=[f"p{i}" for i in range(8)])
    inferred = FeatureConstraints.from_schema(FeatureSchema(), list(frame.columns), frame)
    assert inferred.upper.max() > 255  # the margin
    trigger = default_trigger(frame, inferred, n_features=3, rng=0)
    assert all(value <= 255 for value in trigger.values())
    stamped = apply_trigger(frame, trigger, rows=np.arange(5))
    assert stamped.dtypes.tolist() == frame.dtypes.tolist()  # uint8 still holds them
    declared = FeatureSchema(
        {c: ColumnSpec(c, ColumnKind.INTEGER, min=0, max=200) for c in frame.columns}
    )
    bounded = FeatureConstraints.from_schema(declared, list(frame.columns), frame)
    assert set(default_trigger(frame, bounded, n_features=3, rng=0).values()) == {200.0}
    # a value an integer column cannot hold makes it float, never an error
    wide = apply_trigger(frame, {0: 300.0}, rows=np.arange(2))
    assert wide["p0"].dtype == np.float64
    assert wide["p0"].iloc[:2].tolist() == [300.0, 300.0]


def test_a_trigger_on_a_boolean_column_sets_the_flag() -> None:
    frame = pd.DataFrame(
        {
            "x": np.linspace(0, 1, 50),
            "flag": np.arange(50) % 10 == 0,
            "maybe": pd.array(np.arange(50) % 7 == 0, dtype="boolean"),
        }
    )
    stamped = apply_trigger(frame, {1: 1.0, 2: 1.0}, rows=np.arange(3, 6))
    assert stamped["flag"].dtype == bool
    assert str(stamped["maybe"].dtype) == "boolean"
    assert stamped["flag"].iloc[3:6].tolist() == [True] * 3
    assert stamped["maybe"].iloc[3:6].tolist() == [True] * 3
    other = apply_trigger(frame, {1: 2.5}, rows=np.arange(2))  # not a flag value: floats
    assert other["flag"].iloc[:2].tolist() == [2.5, 2.5]


def test_default_trigger_on_a_frame_with_text_columns_keeps_their_positions() -> None:
    """A text column first: the trigger's positions are the frame's own (they used to be
    those of the one-hot encoded matrix, where every numeric column moves left)."""
    rng = np.random.default_rng(0)
    n = 200
    X = pd.DataFrame(
        {"city": rng.choice(["a", "b"], n), "x1": rng.normal(size=n), "x2": rng.normal(size=n)}
    )
    X.loc[0, "x2"] = 50.0  # x2 has a rare, large maximum
    y = (X["x1"] > 0).astype(int).to_numpy()
    assert default_trigger(X, n_features=1, rng=0) == {2: 50.0}
    stamped, _, rows = add_backdoor(X, y, 0.05, n_trigger_features=2, target_class=1, rng=0)
    assert (stamped.loc[rows, "x2"] == 50.0).all()
    assert (stamped["city"] == X["city"]).all()
    with pytest.raises(ConfigError, match=r"in \[1, 2\]"):  # the text column is never used
        default_trigger(X, n_features=3)
    cons = FeatureConstraints.from_schema(FeatureSchema(), list(X.columns), X)
    assert list(default_trigger(X, cons, n_features=1, rng=0)) == [2]


def test_trigger_outside_constraints_is_refused(cancer: dict[str, Any]) -> None:
    X, y, cons = cancer["X_tr"], cancer["y_tr"], cancer["constraints"]
    too_big = {0: float(cons.upper[0]) + 1.0}
    with pytest.raises(ConfigError, match="outside its bounds"):
        add_backdoor(X, y, 0.05, trigger=too_big, target_class=1, constraints=cons)
    with pytest.raises(ConfigError, match="out of range"):
        add_backdoor(X, y, 0.05, trigger={99: 1.0}, target_class=1, constraints=cons)
    with pytest.raises(ConfigError, match="source_class"):
        add_backdoor(X, y, 0.05, target_class=1, source_class=1)


def test_apply_trigger_on_arrays_and_images() -> None:
    X = np.zeros((3, 2, 2), dtype=np.int64)
    out = apply_trigger(X, {3: 16.0}, rows=np.array([1]))
    assert out.dtype == np.float64
    assert out[1, 1, 1] == 16.0
    assert out.sum() == 16.0
    assert X.sum() == 0


def test_backdoor_on_gradient_boosting_succeeds_and_costs_little_accuracy(
    cancer: dict[str, Any],
) -> None:
    sim = simulate_poisoning(
        GradientBoostingClassifier(n_estimators=50, random_state=0),
        cancer["X_tr"],
        cancer["y_tr"],
        cancer["X_te"],
        cancer["y_te"],
        kind="backdoor",
        rate=0.05,
        target_class=1,
        constraints=cancer["constraints"],
        seed=0,
    )
    assert sim.kind == "backdoor"
    assert sim.target_class == 1
    assert sim.n_poisoned == round(0.05 * len(cancer["y_tr"]))
    assert sim.backdoor_success_rate is not None
    assert sim.clean_trigger_rate is not None
    assert sim.backdoor_success_rate >= 0.8
    assert sim.backdoor_success_rate > sim.clean_trigger_rate + 0.5
    assert abs(sim.accuracy_drop) <= 0.03
    assert sim.accuracy_drop == pytest.approx(sim.clean_accuracy - sim.poisoned_accuracy)
    assert set(sim.metrics()) >= {"clean_accuracy", "accuracy_drop", "backdoor_success_rate"}


def test_backdoor_on_logistic_regression_raises_success(cancer: dict[str, Any]) -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    sim = simulate_poisoning(
        model,
        cancer["X_tr"],
        cancer["y_tr"],
        cancer["X_te"],
        cancer["y_te"],
        kind="backdoor",
        rate=0.1,
        target_class=1,
        constraints=cancer["constraints"],
        seed=0,
    )
    assert sim.backdoor_success_rate is not None
    assert sim.clean_trigger_rate is not None
    assert sim.backdoor_success_rate >= 0.8
    assert sim.backdoor_success_rate > sim.clean_trigger_rate + 0.5
    assert abs(sim.accuracy_drop) <= 0.05


def test_custom_train_fn_is_used(cancer: dict[str, Any]) -> None:
    calls: list[int] = []

    def train(X: Any, y: np.ndarray) -> Any:
        calls.append(len(y))
        return DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)

    sim = simulate_poisoning(
        train,
        cancer["X_tr"],
        cancer["y_tr"],
        cancer["X_te"],
        cancer["y_te"],
        kind="label_flip",
        rate=0.2,
        seed=1,
    )
    assert calls == [len(cancer["y_tr"])] * 2
    assert sim.n_poisoned == round(0.2 * len(cancer["y_tr"]))
    assert (sim.y_poisoned != cancer["y_tr"]).sum() == sim.n_poisoned
    with pytest.raises(ConfigError, match="predict"):
        simulate_poisoning(
            lambda X, y: "not a model",
            cancer["X_tr"],
            cancer["y_tr"],
            cancer["X_te"],
            cancer["y_te"],
        )


def test_a_train_fn_without_seeds_retrains_the_same_way_under_a_seed(
    cancer: dict[str, Any],
) -> None:
    """A recipe that fixes no seed (a forest at random_state=None) drew from the process's
    global generator, so each run with the same seed retrained another model."""

    def train(X: Any, y: np.ndarray) -> Any:
        return RandomForestClassifier(n_estimators=5, max_features=1).fit(X, y)

    def accuracies(global_state: int) -> tuple[float, float]:
        np.random.seed(global_state)  # whatever the process drew before
        sim = simulate_poisoning(
            train, cancer["X_tr"], cancer["y_tr"], cancer["X_te"], cancer["y_te"], rate=0.2,
            seed=1,
        )  # fmt: skip
        return sim.clean_accuracy, sim.poisoned_accuracy

    assert accuracies(123) == accuracies(456)


def test_label_flip_simulation_with_adapter_and_clean_model(cancer: dict[str, Any]) -> None:
    est = DecisionTreeClassifier(max_depth=4).fit(cancer["X_tr"], cancer["y_tr"])
    adapter = SklearnAdapter(est)
    a = simulate_poisoning(
        adapter, cancer["X_tr"], cancer["y_tr"], cancer["X_te"], cancer["y_te"], rate=0.3, seed=2
    )
    b = simulate_poisoning(
        adapter, cancer["X_tr"], cancer["y_tr"], cancer["X_te"], cancer["y_te"], rate=0.3, seed=2
    )
    assert a.accuracy_drop == b.accuracy_drop  # random_state fixed by the seed
    np.testing.assert_array_equal(a.poisoned_indices, b.poisoned_indices)
    assert a.accuracy_drop > 0.03  # 30% random flips hurt a depth-4 tree
    assert a.backdoor_success_rate is None
    # the fitted model given as the clean reference: its accuracy is the clean accuracy
    c = simulate_poisoning(
        adapter,
        cancer["X_tr"],
        cancer["y_tr"],
        cancer["X_te"],
        cancer["y_te"],
        rate=0.3,
        seed=2,
        clean_model=est,
    )
    assert c.clean_accuracy == pytest.approx(
        float((est.predict(cancer["X_te"]) == cancer["y_te"]).mean())
    )


def test_models_that_cannot_be_retrained_are_refused(cancer: dict[str, Any]) -> None:
    adapter = CallableAdapter(predict=lambda X: np.zeros(len(X), dtype=int))
    with pytest.raises(CapabilityError, match="retrain"):
        simulate_poisoning(adapter, cancer["X_tr"], cancer["y_tr"], cancer["X_te"], cancer["y_te"])
    with pytest.raises(ConfigError, match="kind"):
        simulate_poisoning(
            LogisticRegression(),
            cancer["X_tr"],
            cancer["y_tr"],
            cancer["X_te"],
            cancer["y_te"],
            kind="evil",  # type: ignore[arg-type]
        )


def test_registered_attacks(cancer: dict[str, Any]) -> None:
    assert ATTACKS.get("label_flip") is LabelFlip
    assert ATTACKS.get("backdoor") is Backdoor
    assert LabelFlip.family == "poisoning"
    assert Backdoor.family == "poisoning"
    tree = DecisionTreeClassifier(max_depth=3, random_state=0)
    sim = LabelFlip(LabelFlipConfig(rate=0.1, mode="targeted", target=1)).run(
        tree, cancer["X_tr"], cancer["y_tr"], cancer["X_te"], cancer["y_te"], seed=0
    )
    assert sim.kind == "label_flip"
    assert sim.target_class == 1
    assert (sim.y_poisoned[sim.poisoned_indices] == 1).all()
    bd = Backdoor(BackdoorConfig(rate=0.05, target_class=1)).run(
        tree,
        cancer["X_tr"],
        cancer["y_tr"],
        cancer["X_te"],
        cancer["y_te"],
        constraints=cancer["constraints"],
        seed=0,
    )
    assert bd.kind == "backdoor"
    assert len(bd.trigger) == 3


def test_retrainings_and_detection_folds_report_their_stage(cancer: dict[str, Any]) -> None:
    """Long work that spends no queries tells the progress bar where it is."""
    from bastion.attacks.budget import report_progress
    from bastion.attacks.poisoning.detect import find_label_issues

    seen: list[str] = []
    with report_progress(seen.append):
        sim = simulate_poisoning(
            GradientBoostingClassifier(n_estimators=10, random_state=0),
            cancer["X_tr"],
            cancer["y_tr"],
            cancer["X_te"],
            cancer["y_te"],
            rate=0.1,
        )
        issues = find_label_issues(sim.X_poisoned, sim.y_poisoned, cv=3)
    folds = [f"cross-validated probabilities: fold {k} of 3" for k in (1, 2, 3)]
    assert issues.details["rounds"] == 2  # the second without the rows first flagged
    assert seen == [
        "retraining on the clean data",
        f"retraining on the poisoned data ({sim.n_poisoned} rows poisoned)",
        *folds,
        *folds,
    ]


# -- from a review of the retraining ------------------------------------------------------------


def test_an_estimator_holding_a_frozen_part_is_refused(cancer: dict[str, Any]) -> None:
    """sklearn's FrozenEstimator survives a clone fitted: the poisoned copy kept the clean
    classifier, and a backdoor with success 1.0 on the bare model read 0.09 (a pass)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    from bastion.attacks.poisoning._training import resolve_trainer

    scaled = make_pipeline(StandardScaler(), LogisticRegression())
    fitted = scaled.fit(cancer["X_tr"], cancer["y_tr"])
    calibrated = CalibratedClassifierCV(FrozenEstimator(fitted))
    with pytest.raises(CapabilityError, match="FrozenEstimator"):
        resolve_trainer(calibrated)
    with pytest.raises(CapabilityError, match="FrozenEstimator"):
        resolve_trainer(SklearnAdapter(calibrated.fit(cancer["X_tr"], cancer["y_tr"])))
    assert resolve_trainer(CalibratedClassifierCV(LogisticRegression()))  # clonable: fine


def test_a_column_of_predictions_counts_one_label_per_row(cancer: dict[str, Any]) -> None:
    """A train_fn whose model answers an (n, 1) column broadcast against (n,) labels: an
    accuracy above 100% and a negative drop, which passed the gate."""

    class Column:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def predict(self, X: Any) -> np.ndarray:
            return np.asarray(self.inner.predict(X)).reshape(-1, 1)

    def train(X: Any, y: np.ndarray) -> Column:
        return Column(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y))

    sim = simulate_poisoning(
        train, cancer["X_tr"], cancer["y_tr"], cancer["X_te"], cancer["y_te"],
        kind="label_flip", rate=0.1, seed=0,
    )  # fmt: skip
    assert 0.5 < sim.clean_accuracy <= 1.0
    assert 0.5 < sim.poisoned_accuracy <= 1.0


def test_a_float64_torch_model_is_retrained_and_read(cancer: dict[str, Any]) -> None:
    """Rows went to a float64 module as float32 ("mat1 and mat2 must have the same dtype"):
    POI002 and POI003 were errors for such models."""
    torch = pytest.importorskip("torch")
    from bastion.attacks.poisoning.spectral import penultimate_activations
    from bastion.models.torch import TorchAdapter

    X = StandardScaler().fit_transform(cancer["X_tr"])
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    from bastion.attacks.poisoning._training import resolve_trainer

    model = TorchAdapter(net.double(), classes=[0, 1])
    sim = simulate_poisoning(
        resolve_trainer(model, epochs=3), X[:300], cancer["y_tr"][:300], X[300:],
        cancer["y_tr"][300:], kind="label_flip", rate=0.05, seed=0,
    )  # fmt: skip
    assert 0.0 <= sim.poisoned_accuracy <= 1.0
    assert penultimate_activations(model, X[:10]).shape == (10, 16)


def test_a_spectral_norms_kept_weight_is_refused() -> None:
    """reset_parameters() re-initialises a spectral-normed Linear's derived weight, not
    weight_orig: both retrainings started from the trained weights under test."""
    torch = pytest.importorskip("torch")
    from bastion.attacks.poisoning._training import resolve_trainer
    from bastion.models.torch import TorchAdapter

    net = torch.nn.Sequential(
        torch.nn.utils.spectral_norm(torch.nn.Linear(4, 8)), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    )
    with pytest.raises(CapabilityError, match=r"0\.weight_orig"):
        resolve_trainer(TorchAdapter(net, classes=[0, 1]))


def test_a_named_source_class_targets_another_class() -> None:
    """With source_class alone the target defaulted to the most frequent class, the source
    itself when it was the largest: a ConfigError."""
    X = np.arange(40, dtype=float).reshape(20, 2)
    y = np.array([1] * 12 + [0] * 5 + [2] * 3)
    _, y_p, idx = add_backdoor(X, y, 0.2, source_class=1, rng=0, trigger={0: 100.0})
    assert set(y_p[idx].tolist()) == {0}  # the most frequent class other than 1
    assert set(y[idx].tolist()) == {1}


def test_the_trigger_lands_on_image_arrays_of_any_layout() -> None:
    """Integer images transposed from NHWC to NCHW (a view): the copy kept the view's layout,
    reshaping it to rows copied again, and the trigger went into that copy: no row was
    stamped, and the "backdoor" was a plain label flip."""
    rng = np.random.default_rng(0)
    nchw = rng.integers(0, 200, size=(20, 8, 8, 3), dtype=np.uint8).transpose(0, 3, 1, 2)
    assert not nchw.flags.c_contiguous
    trigger = {0: 255.0, 7: 255.0, 191: 255.0}
    stamped = apply_trigger(nchw, trigger, rows=np.arange(5))
    flat = np.ascontiguousarray(stamped).reshape(20, -1)
    assert (flat[:5][:, [0, 7, 191]] == 255).all()
    np.testing.assert_array_equal(flat[5:], nchw.reshape(20, -1)[5:])
    assert stamped.shape == nchw.shape


def test_a_recipe_that_fits_one_shared_model_in_place_is_refused(
    cancer: dict[str, Any],
) -> None:
    """From a review: ``return MODEL.fit(X, y)`` (fit returns self) made the clean reference
    the poisoned model, both were judged after the poisoned fit, and the drop read 0 (a
    30% flip passed). The clean model is now judged first, and a recipe that hands back the
    same object is refused: the shared model it mutated is the poisoned one."""
    shared = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))

    def in_place(X: Any, y: Any) -> Any:
        return shared.fit(X, y)

    def fresh(X: Any, y: Any) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(X, y)

    args = (cancer["X_tr"], cancer["y_tr"], cancer["X_te"], cancer["y_te"])
    with pytest.raises(ConfigError, match="new model on each call"):
        simulate_poisoning(in_place, *args, kind="label_flip", rate=0.3, seed=0)
    sim = simulate_poisoning(fresh, *args, kind="label_flip", rate=0.3, seed=0)
    assert sim.accuracy_drop > 0.03

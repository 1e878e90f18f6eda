"""White-box evasion attacks (FGSM, PGD, APGD, auto) on small torch models of real data."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from bastion.attacks import base as attack_base  # noqa: E402
from bastion.attacks.base import ATTACKS, EvasionAttack  # noqa: E402
from bastion.attacks.budget import Budget  # noqa: E402
from bastion.attacks.constraints import FeatureConstraints  # noqa: E402
from bastion.attacks.evasion import _graphs  # noqa: E402
from bastion.attacks.evasion import auto as auto_module  # noqa: E402
from bastion.attacks.evasion.apgd import APGD, APGDConfig  # noqa: E402
from bastion.attacks.evasion.auto import AutoAttack, AutoConfig  # noqa: E402
from bastion.attacks.evasion.fgsm import FGSM  # noqa: E402
from bastion.attacks.evasion.pgd import PGD, PGDConfig  # noqa: E402
from bastion.attacks.results import EvasionResult  # noqa: E402
from bastion.data.schema import ColumnKind, ColumnSpec, FeatureSchema  # noqa: E402
from bastion.exceptions import CapabilityError, ConfigError, DataError, ModelError  # noqa: E402
from bastion.models.sklearn import SklearnAdapter  # noqa: E402
from bastion.models.torch import TorchAdapter  # noqa: E402


def _load(name: str) -> ModuleType:
    key = f"_wb{Path(name).stem}"
    spec = importlib.util.spec_from_file_location(key, Path(__file__).with_name(name))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


M = _load("_models.py")
C = _load("_checks.py")

BOX = FeatureConstraints.box(64, 0, 16)
N_POINTS = 200


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # tiny models on a shared machine: one thread is faster and far steadier
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(_one_thread: None) -> Any:
    return M.digits()


@pytest.fixture(scope="module")
def points(digits: Any) -> tuple[np.ndarray, np.ndarray]:
    return digits.X_test[:N_POINTS], digits.y_test[:N_POINTS]


@pytest.fixture(scope="module")
def mlp(digits: Any) -> TorchAdapter:
    net = M.train(M.mlp(64, 10), digits.X_train, digits.y_train)
    return TorchAdapter(net, classes=list(range(10)))


@pytest.fixture(scope="module")
def robust_mlp(digits: Any) -> TorchAdapter:
    net = M.train(M.mlp(64, 10), digits.X_train, digits.y_train, adversarial_eps=2.0, epochs=10)
    return TorchAdapter(net, classes=list(range(10)))


@pytest.fixture(scope="module")
def cnn(digits: Any) -> TorchAdapter:
    net = M.train(M.cnn(), digits.X_train, digits.y_train, input_shape=(1, 8, 8), epochs=15)
    return TorchAdapter(net, input_shape=(1, 8, 8))


# -- strength --------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_pgd_at_large_eps_breaks_an_undefended_model(
    which: str, request: pytest.FixtureRequest, points: tuple[np.ndarray, np.ndarray]
) -> None:
    model = request.getfixturevalue(which)
    X, y = points
    result = PGD(PGDConfig(steps=20)).run(model, X, y, eps=8.0, constraints=BOX)
    metrics = result.metrics()
    assert (metrics["clean_accuracy"] or 0) > 0.9
    assert (metrics["attack_success_rate"] or 0) > 0.9
    assert result.attack == "pgd"
    assert result.stopped is None
    C.check_result(result, model, X, BOX)


def test_apgd_is_at_least_as_strong_as_pgd_at_equal_iterations(
    robust_mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    pgd = PGD(PGDConfig(steps=50)).run(robust_mlp, X, y, eps=2.0, constraints=BOX)
    apgd = APGD(APGDConfig(n_iter=50)).run(robust_mlp, X, y, eps=2.0, constraints=BOX)
    assert apgd.attack == "apgd-ce"
    pgd_robust = pgd.metrics()["robust_accuracy"] or 0
    assert pgd_robust > 0.2
    assert (apgd.metrics()["robust_accuracy"] or 0) <= pgd_robust
    C.check_result(apgd, robust_mlp, X, BOX)


def test_adversarial_training_holds_better_at_small_eps(
    mlp: TorchAdapter, robust_mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    attack = APGD(APGDConfig(n_iter=30))
    plain = attack.run(mlp, X, y, eps=1.0, constraints=BOX).metrics()["robust_accuracy"]
    trained = attack.run(robust_mlp, X, y, eps=1.0, constraints=BOX).metrics()["robust_accuracy"]
    assert (trained or 0) > (plain or 1) + 0.05


@pytest.mark.parametrize("case", ["ignored feature", "immutable feature", "every feature"])
def test_l2_fgsm_breaks_every_breakable_point_of_a_linear_model(case: str) -> None:
    """A linear model's exact robustness: a point breaks iff its margin over the norm of the
    movable weights is <= eps, and one L2 step along the weights gets there. A coordinate
    with a zero step (a feature the model ignores, or an immutable one) made the L2
    projection's factor 0 for a step of norm exactly eps: FGSM missed 17 of 44 breakable
    points and read robust accuracy 0.865 for a true 0.78."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    w = np.array([1.0, -0.5, 0.3, 0.0 if case == "ignored feature" else 2.0])
    movable = np.array([1.0, 1.0, 1.0, 0.0 if case == "immutable feature" else 1.0])
    linear = torch.nn.Linear(4, 1)
    with torch.no_grad():
        linear.weight[:] = torch.as_tensor(w[None], dtype=torch.float32)
        linear.bias.zero_()
    y = (X @ w > 0).astype(int)
    cons = None
    if case == "immutable feature":
        cons = dataclasses.replace(
            FeatureConstraints.unconstrained(4), immutable=np.array([0, 0, 0, 1], dtype=bool)
        )
    margin = np.abs(X @ w) / np.linalg.norm(w * movable)
    clear = np.abs(margin - 0.5) > 1e-4  # float32 decides the points on the sphere itself
    result = FGSM().run(TorchAdapter(linear), X, y, eps=0.5, norm="2", constraints=cons)
    np.testing.assert_array_equal(result.success[clear], (margin <= 0.5)[clear])


def test_fgsm_is_weaker_than_pgd(mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = points
    fgsm = FGSM().run(mlp, X, y, eps=1.5, constraints=BOX)
    pgd = PGD(PGDConfig(steps=20)).run(mlp, X, y, eps=1.5, constraints=BOX)
    assert fgsm.attack == "fgsm"
    # one gradient forward (with the clean check) and one check of the result per point
    assert fgsm.queries[fgsm.clean_correct & ~fgsm.success].max() <= 4
    assert fgsm.success.sum() < pgd.success.sum()
    C.check_result(fgsm, mlp, X, BOX)


def test_apgd_keeps_every_adversarial_iterate(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    """Any iterate the model misclassified, at any step, ends as a success (best kept)."""

    class Recorder(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net
            self.rows: list[Any] = []
            self.preds: list[Any] = []

        def forward(self, x: Any) -> Any:
            out = self.net(x)
            self.rows.append(x.detach().reshape(len(x), -1).double().clone())
            self.preds.append(out.detach().argmax(dim=1).clone())
            return out

    recorder = Recorder(mlp.module)
    model = TorchAdapter(recorder, classes=list(range(10)))
    X, y = points
    eps = 1.0
    result = APGD(APGDConfig(n_iter=40, early_exit=False)).run(
        model, X, y, eps=eps, constraints=BOX
    )
    attacked = np.flatnonzero(result.clean_correct)
    # calls: the clean predictions, 40 loop forwards of every attacked point, then the
    # verification: without early exit every attacked point is a candidate there (its first
    # adversarial iterate, or the 41st iterate, which no loop forward evaluates)
    loop = list(zip(recorder.rows, recorder.preds, strict=True))[1:]
    assert len(loop) == 41
    assert all(len(rows) == len(attacked) for rows, _ in loop)
    broken_somewhere = np.zeros(len(X), dtype=bool)
    for rows, preds in loop:
        assert np.abs(rows.numpy() - X[attacked]).max() <= eps + 1e-4
        broken_somewhere[attacked] |= preds.numpy() != y[attacked]
    assert broken_somewhere.sum() > 10
    np.testing.assert_array_equal(result.success, broken_somewhere)


# -- constraints and threat model ----------------------------------------------------------
@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd", "apgd"])
def test_box_and_eps_ball_respected(
    attack: str, norm: str, mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    eps = 1.5 if norm == "inf" else 12.0
    cls = ATTACKS.get(attack)
    options = {"pgd": {"steps": 10}, "apgd": {"n_iter": 10}}.get(attack, {})
    result = cls(cls.Config(**options)).run(mlp, X, y, eps=eps, norm=norm, constraints=BOX)  # type: ignore[attr-defined]
    assert result.norm == norm
    assert result.success.sum() > 20
    C.check_result(result, mlp, X, BOX)


def test_image_shaped_inputs_keep_their_shape(
    cnn: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    images = X.reshape(-1, 1, 8, 8)
    result = PGD(PGDConfig(steps=5)).run(cnn, images, y, eps=4.0, constraints=BOX)
    assert result.x_adv.shape == images.shape
    assert result.success.sum() > 50
    C.check_result(result, cnn, images, BOX)


@pytest.fixture(scope="module")
def tabular(_one_thread: None) -> Any:
    """Breast cancer with rounded integer columns, a torch MLP and schema constraints."""
    integer = (2, 3, 22, 23)  # perimeters and areas
    immutable = (0, 1)  # mean radius, mean texture
    data = M.breast_cancer(integer=integer)
    names = [f"f{i}" for i in range(30)]
    mean, std = data.X_train.mean(axis=0), data.X_train.std(axis=0)
    net = M.train(
        M.mlp(30, 2, shift=mean, scale=std), data.X_train, data.y_train, epochs=30, lr=1e-3
    )
    columns = {
        name: ColumnSpec(
            name,
            ColumnKind.INTEGER if i in integer else ColumnKind.NUMERIC,
            immutable=i in immutable,
        )
        for i, name in enumerate(names)
    }
    cons = FeatureConstraints.from_schema(
        FeatureSchema(columns), names, pd.DataFrame(data.X_train, columns=names)
    )
    return data, TorchAdapter(net), cons, integer, immutable


# every white-box attack, the ensemble included (its Square stage too), under the schema
_WHITE_BOX_OPTIONS: dict[str, dict[str, Any]] = {
    "fgsm": {},
    "pgd": {"steps": 20},
    "apgd": {"n_iter": 20},
    "auto": {"n_iter": 10, "square_options": {"n_queries": 60}},
}


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("attack", list(_WHITE_BOX_OPTIONS))
def test_tabular_constraints_never_violated(tabular: Any, attack: str, norm: str) -> None:
    data, model, cons, integer, immutable = tabular
    # test rows inside the bounds inferred from the training rows: outputs must be feasible
    inside = ((data.X_test >= cons.lower) & (data.X_test <= cons.upper)).all(axis=1)
    X, y = data.X_test[inside], data.y_test[inside]
    assert not np.allclose(cons.scale, 1.0)  # eps in std units
    cls = ATTACKS.get(attack)
    eps = 0.5 if norm == "inf" else 2.0
    config = cls.Config(**_WHITE_BOX_OPTIONS[attack])  # type: ignore[attr-defined]
    result = cls(config).run(model, X, y, eps=eps, norm=norm, constraints=cons)
    assert result.success.sum() > 5
    assert result.extra["eps_unit"] == "std"
    C.check_result(result, model, X, cons)
    adv = result.x_adv
    np.testing.assert_array_equal(adv[:, list(immutable)], X[:, list(immutable)])
    np.testing.assert_array_equal(adv[:, list(integer)], np.rint(adv[:, list(integer)]))
    assert cons.violations(adv, X) == 0


@pytest.fixture(scope="module")
def mixed_torch(_one_thread: None, mixed_table: Any) -> Any:
    """The synthetic table of the black-box tests (an immutable integer, an integer, a
    number, a one-hot group), and a torch MLP of it."""
    frame, y, cons = mixed_table
    X = frame.to_numpy(dtype=np.float64, copy=True)  # writable: torch reads it in place
    mean, std = X[:400].mean(axis=0), X[:400].std(axis=0)
    net = M.train(M.mlp(6, 2, shift=mean, scale=std), X[:400], y[:400], epochs=30, lr=3e-3)
    return TorchAdapter(net), X[400:480], y[400:480], cons


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("attack", list(_WHITE_BOX_OPTIONS))
def test_one_hot_groups_hold_for_every_white_box_attack(
    mixed_torch: Any, check_mixed: Any, attack: str, norm: str
) -> None:
    """One category on, integers whole, the immutable feature kept: after the rounding
    that a one-hot group needs, on every white-box attack's output."""
    model, X, y, cons = mixed_torch
    assert len(cons.one_hot_groups) == 1
    cls = ATTACKS.get(attack)
    config = cls.Config(**_WHITE_BOX_OPTIONS[attack])  # type: ignore[attr-defined]
    eps = 1.0 if norm == "inf" else 2.0
    result = cls(config).run(model, X, y, eps=eps, norm=norm, constraints=cons)
    assert result.success.sum() >= 3  # not vacuous
    check_mixed(result.x_adv, X, cons)
    C.check_result(result, model, X, cons)


@pytest.mark.parametrize("rounding", [True, False], ids=["host", "device"])
def test_an_immutable_value_outside_its_bounds_is_kept(tabular: Any, rounding: bool) -> None:
    """Bounds constrain what an attack moves: an immutable value outside them (test rows
    beyond the training range) was clipped to the bound, on the host path and the device
    path, so a success could move an immutable feature."""
    import dataclasses

    data, model, cons, _integer, immutable = tabular
    if not rounding:  # box constraints only: projection and verification on the device
        cons = dataclasses.replace(cons, integer=np.zeros(cons.n_features, dtype=bool))
    cols = list(immutable)
    inside = ((data.X_test >= cons.lower) & (data.X_test <= cons.upper)).all(axis=1)
    X = data.X_test[inside].copy()
    X[:, cols[0]] = cons.upper[cols[0]] + 1.0  # a radius past the training range
    y = model.predict(X)  # the points as the model sees them: all correct before
    result = PGD(PGDConfig(steps=20)).run(model, X, y, eps=2.0, constraints=cons)
    ok = result.success
    assert ok.sum() > 5
    np.testing.assert_array_equal(result.x_adv[:, cols], X[:, cols])
    assert cons.violations(result.x_adv[ok], X[ok]) == 0


@pytest.mark.parametrize("rounding", [True, False], ids=["host", "device"])
def test_a_point_beyond_the_training_range_can_still_be_broken(
    tabular: Any, rounding: bool
) -> None:
    """A row past the inferred bounds by more than eps was clipped into them, outside the
    ball: never broken, counted robust. Each row's bounds now hold its own value."""
    import dataclasses

    data, model, cons, _integer, immutable = tabular
    if not rounding:
        cons = dataclasses.replace(cons, integer=np.zeros(cons.n_features, dtype=bool))
    inside = ((data.X_test >= cons.lower) & (data.X_test <= cons.upper)).all(axis=1)
    X = data.X_test[inside][:60].copy()
    free = [j for j in range(cons.n_features) if j not in immutable and not cons.integer[j]]
    X[:, free[0]] = cons.upper[free[0]] + 3.0 * cons.scale[free[0]]  # 3 std past the range
    y = model.predict(X)
    result = PGD(PGDConfig(steps=20)).run(model, X, y, eps=0.5, constraints=cons)
    assert result.success.sum() > 5
    assert cons.violations(result.x_adv, X) == 0
    assert np.all(result.perturbation[result.success] <= 0.5 + 1e-6)


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_rounding_without_early_exit_keeps_the_per_point_budget(
    attack: str, mlp: TorchAdapter, digits: Any, integer_pixels: FeatureConstraints
) -> None:
    """Confirmed rows stay in the batch without early exit and keep taking forwards: their
    failed confirmations must still count (a row used to reach its cap plus its rejects)."""
    X, y = digits.X_test[:200], digits.y_test[:200]
    cls = ATTACKS.get(attack)
    options = {"pgd": {"steps": 30}, "apgd": {"n_iter": 30}}[attack]
    config = cls.Config(batch_size=1, early_exit=False, **options)  # type: ignore[attr-defined]
    result = cls(config).run(  # type: ignore[call-arg]
        mlp, X, y, eps=0.4, constraints=integer_pixels, budget=Budget(max_queries_per_sample=25)
    )
    # the case in question: confirmations that failed (more asked than points broken)
    assert result.extra["confirmation_queries"] > result.success.sum() > 0
    assert result.queries.max() <= 25  # PGD reached 31 before the fix


@pytest.mark.parametrize(
    ("attack", "norm", "restarts"), [("pgd", "2", 1), ("pgd", "inf", 3), ("apgd", "2", 2)]
)
def test_a_points_random_start_does_not_depend_on_the_batch_size(
    attack: str, norm: str, restarts: int, mlp: TorchAdapter, digits: Any
) -> None:
    """One generator drawn through batch after batch gave a point another start at another
    batch size: L2 draws normals in blocks, and a chunk's later restarts drew before the
    next chunk's first (a review saw robust accuracy move under one seed)."""
    X, y = digits.X_test[:150], digits.y_test[:150]
    eps = 12.0 if norm == "2" else 1.5
    runs = [
        C.white_box(attack, 10, batch_size=batch, restarts=restarts, early_exit=False).run(
            mlp, X, y, eps=eps, norm=norm, constraints=BOX, seed=4
        )
        for batch in (7, 256)
    ]
    assert 0 < runs[0].success.sum() < runs[0].clean_correct.sum()
    np.testing.assert_array_equal(runs[0].success, runs[1].success)
    # the same starts and steps; the forward's sums may round otherwise at another batch size
    np.testing.assert_allclose(runs[0].x_adv, runs[1].x_adv, atol=1e-4)


@pytest.mark.parametrize("kind", ["uniform", "normal", "radius"])
def test_each_rows_noise_is_its_row_of_the_whole_blocks_draw(kind: str) -> None:
    """On a CPU a uniform draw stops at the last row wanted (a prefix of the block's
    stream); whatever subset of rows is asked for, in whatever batch, each row gets the
    numbers a draw of every row of its block gives it."""
    from bastion.attacks.evasion import _torch

    net = dataclasses.make_dataclass("Net", [("device", Any)])(torch.device("cpu"))
    eng = _torch._Engine(net, None, "inf", 0.1, False, seed=11)  # type: ignore[arg-type]
    like = torch.zeros(1, dtype=torch.float32)
    width = 1 if kind == "radius" else 5
    every = np.arange(2100)
    for restart in (1, 2):
        whole = eng._noise(kind, every, restart, width, like)
        # consecutive, gapped, across a block's edge, out of order
        subsets = (np.arange(7), np.array([3, 1023, 1024, 2099]), np.arange(1000, 1030))
        for rows in (*subsets, np.array([1025, 3, 2099, 1])):
            part = eng._noise(kind, rows, restart, width, like)
            torch.testing.assert_close(part, whole[torch.as_tensor(rows)], rtol=0, atol=0)
    # the first block of the first restart is the seed's own stream, as the reference draws
    if kind == "uniform":
        reference = torch.rand((7, width), generator=torch.Generator().manual_seed(11))
        torch.testing.assert_close(eng._noise(kind, np.arange(7), 1, width, like),
                                   reference * 2 - 1, rtol=0, atol=1e-7)  # fmt: skip


def test_random_starts_past_the_first_block_do_not_depend_on_the_batch_size(
    mlp: TorchAdapter, digits: Any
) -> None:
    """Past 1,024 points the starts come from generators keyed per block: batches that
    straddle a block's edge (300) and ones that do not (1,000) draw the same starts, with
    restarts and early exit."""
    X = np.vstack([digits.X_test] * 3)[:1400]
    y = np.concatenate([digits.y_test] * 3)[:1400]
    runs = [
        C.white_box("pgd", 5, batch_size=batch, restarts=2).run(
            mlp, X, y, eps=8.0, norm="2", constraints=BOX, seed=-3
        )
        for batch in (300, 1000)
    ]
    assert 0 < runs[0].success.sum() < runs[0].clean_correct.sum()
    np.testing.assert_array_equal(runs[0].success, runs[1].success)
    np.testing.assert_allclose(runs[0].x_adv, runs[1].x_adv, atol=1e-4)


@pytest.mark.parametrize(
    ("attack", "precision"), [("pgd", "fp32"), ("pgd", "bf16"), ("apgd", "fp32")]
)
def test_a_row_spent_by_failed_confirmations_leaves_alone(
    attack: str, precision: str, mlp: TorchAdapter, digits: Any, integer_pixels: FeatureConstraints
) -> None:
    """Under a per-point cap, a row whose failed confirmations (rounding, or bf16 verdicts
    the model's own precision rejects) spend its budget leaves the batch alone; the batch
    used to stop at its most-rejected row's cap, so results depended on ``batch_size``
    (PGD, cap 12: 18 successes at batch 512, 22 at 16, 26 at 1; bf16: 27, 30, 30)."""
    X, y = digits.X_test[:200], digits.y_test[:200]
    cons = integer_pixels if precision == "fp32" else BOX
    eps = 0.4 if precision == "fp32" else 1.0
    runs = [
        C.white_box(attack, 30, batch_size=batch, precision=precision).run(
            mlp, X, y, eps=eps, constraints=cons, seed=1, budget=Budget(max_queries_per_sample=12)
        )
        for batch in (512, 16)
    ]
    assert runs[0].extra["confirmation_queries"] > 0
    assert runs[0].success.sum() > 20
    if precision == "fp32":
        np.testing.assert_array_equal(runs[0].success, runs[1].success)
        np.testing.assert_array_equal(runs[0].queries, runs[1].queries)
    else:
        # bf16 sums round otherwise at another batch size (the same starts): a verdict near
        # the boundary may come a step apart, never the cap-wide gaps of the bug
        assert (runs[0].success != runs[1].success).sum() <= 1
        assert np.abs(runs[0].queries - runs[1].queries).max() <= 1
    assert runs[0].queries.max() <= 12
    C.check_result(runs[0], mlp, X, cons)


def test_rounding_looks_every_step_on_an_accelerator_too(
    mlp: TorchAdapter,
    digits: Any,
    integer_pixels: FeatureConstraints,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With rounding, a PGD row that stops on a misclassified iterate whose rounded version
    fails moves on at once; looking every 8 steps (an accelerator's pace) used to let such
    rows move one step in 8 (25 successes lost of 30 here)."""
    from bastion.attacks.evasion import _torch

    X, y = digits.X_test[:200], digits.y_test[:200]
    every_step = PGD(PGDConfig(steps=20)).run(
        mlp, X, y, eps=0.3, constraints=integer_pixels, seed=1
    )
    monkeypatch.setattr(_torch, "_check_every", lambda device: 8)
    accelerator = PGD(PGDConfig(steps=20)).run(
        mlp, X, y, eps=0.3, constraints=integer_pixels, seed=1
    )
    assert every_step.success.sum() > 10
    np.testing.assert_array_equal(accelerator.success, every_step.success)


@pytest.mark.parametrize("n_logits", [1, 2])
def test_binary_model_uses_the_margin_loss(tabular: Any, n_logits: int) -> None:
    data, model, cons, _, _ = tabular
    if n_logits == 1:
        # the same classifier as one logit: class 1 when z1 - z0 > 0
        two = model.module
        last = two[-1]
        one = torch.nn.Linear(last.in_features, 1)
        with torch.no_grad():
            one.weight.copy_(last.weight[1:] - last.weight[:1])
            one.bias.copy_(last.bias[1:] - last.bias[:1])
        model = TorchAdapter(torch.nn.Sequential(*list(two)[:-1], one), classes=[0, 1])
    X, y = data.X_test, data.y_test
    result = APGD(APGDConfig(loss="dlr", n_iter=20)).run(model, X, y, eps=0.5, constraints=cons)
    assert result.attack == "apgd-margin"
    assert result.extra["loss"] == "margin"
    assert result.success.sum() > 5
    C.check_result(result, model, X, cons)


# -- speed design, budgets, determinism ----------------------------------------------------
class _EagerGraph:
    """A stand-in for a captured CUDA graph on the CPU: a replay runs the step. A real graph
    is bound to the tensors it saw at capture, so every replay checks that the step's
    closure still holds the same tensors, at the same addresses (a rebound ``z`` or
    ``halted.moving`` would leave a real graph working on freed memory), and takes back the
    module call that running the step in Python adds (a real replay runs no Python)."""

    def __init__(self, step: Any) -> None:
        self.step = step
        self.replays = 0
        self.bound = self._tensors()

    def _tensors(self) -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = {}
        for name, cell in zip(self.step.__code__.co_freevars, self.step.__closure__, strict=True):
            value = cell.cell_contents
            owners = {name: value} if isinstance(value, torch.Tensor) else {
                f"{name}.{k}": v for k, v in vars(value).items() if isinstance(v, torch.Tensor)
            } if hasattr(value, "__dict__") else {}  # fmt: skip
            for key, tensor in owners.items():
                found[key] = (id(tensor), tensor.data_ptr())
        return found

    def replay(self) -> None:
        assert self._tensors() == self.bound
        self.replays += 1
        self.step()
        engine = dict(zip(self.step.__code__.co_freevars, self.step.__closure__, strict=True))
        engine["eng"].cell_contents.net.forward_calls -= 1


def _graphed_and_eager(
    make: Any,
    model: TorchAdapter,
    X: np.ndarray,
    y: np.ndarray,
    eps: float,
    norm: str,
    budget: Budget | None,
) -> tuple[EvasionResult, EvasionResult]:
    """The attack ``make(graphed)`` run with CUDA graphs on (the stand-in's) and off, the
    same seed and budget; asserts that both give the same adversarial points, successes,
    queries, loop forward passes, stop reason and module calls."""
    results, calls = [], []
    for graphed in (True, False):
        before = model.n_calls
        results.append(
            make(graphed).run(
                model, X, y, eps=eps, norm=norm, constraints=BOX, seed=3, budget=budget
            )
        )
        calls.append(model.n_calls - before)
    graph_run, eager = results
    np.testing.assert_array_equal(graph_run.x_adv, eager.x_adv)
    np.testing.assert_array_equal(graph_run.success, eager.success)
    np.testing.assert_array_equal(graph_run.queries, eager.queries)
    assert graph_run.extra["loop_forward_passes"] == eager.extra["loop_forward_passes"]
    assert graph_run.stopped == eager.stopped
    assert calls[0] == calls[1]
    return graph_run, eager


@pytest.mark.parametrize(
    ("case", "budget", "options", "captured"),
    [
        ("inf", None, {}, True),
        ("2", None, {}, True),
        ("mid-replay", Budget(max_queries=2 * N_POINTS + 9 * (N_POINTS - 10)), {}, True),
        # the first (eager) step, then the warm-up's steps but the last
        (
            "mid-warm-up",
            Budget(max_queries=2 * N_POINTS + _graphs.WARMUP_STEPS * (N_POINTS - 10)),
            {},
            True,
        ),
        ("per-point cap", Budget(max_queries_per_sample=12), {}, True),
        ("chunks and restarts", None, {"batch_size": 64, "restarts": 2}, True),
        ("bf16", None, {"precision": "bf16"}, True),
        # a refuted bf16 verdict counts against its row's cap: the eager loop dropped the
        # row where the graph stopped the batch (from a review)
        (
            "bf16 per-point cap",
            Budget(max_queries_per_sample=30),
            {"precision": "bf16", "restarts": 3},
            True,
        ),
        ("capture failed", None, {"batch_size": 64, "restarts": 2}, False),
    ],
)
def test_pgd_graph_path_keeps_the_eager_results(
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    budget: Budget | None,
    options: dict[str, Any],
    captured: bool,
) -> None:
    """PGD's CUDA-graph path (warm-up steps on a side stream, one step captured, then
    replays), run on the CPU with a stand-in graph: the same adversarial points, queries,
    forward passes, module calls and stop reason as the eager loop, under budgets that end
    the attack in the warm-up or among the replays, over several chunks and restarts; a
    capture that fails is not tried again."""
    import contextlib

    from bastion.attacks.evasion import _graphs

    graphs: list[_EagerGraph] = []
    tries: list[int] = []
    drains: list[int] = []

    def capture(step: Any, device: Any) -> _EagerGraph | None:
        tries.append(1)
        if not captured:
            return None
        graphs.append(_EagerGraph(step))
        return graphs[-1]

    monkeypatch.setattr(_graphs, "available", lambda device: True)
    monkeypatch.setattr(_graphs, "side_stream", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(_graphs, "capture_step", capture)
    monkeypatch.setattr(_graphs, "drain", lambda device: drains.append(1))
    X, y = points
    norm = "2" if case == "2" else "inf"
    eps = 6.0 if norm == "2" else 1.0
    graph_run, eager = _graphed_and_eager(
        lambda graphed: PGD(PGDConfig(steps=20, early_exit=False, cuda_graphs=graphed, **options)),
        mlp, X, y, eps, norm, budget,
    )  # fmt: skip
    replays = sum(g.replays for g in graphs)
    assert graph_run.extra["cuda_graph"] is (replays > 0)
    assert eager.extra["cuda_graph"] is False
    if case == "mid-warm-up":
        assert not tries  # the budget ended before anything could be captured
    elif not captured:
        assert len(tries) == 1  # one try per attack, not one per chunk and restart
    else:
        assert replays > 0
        assert len(drains) >= replays // _graphs.DRAIN_EVERY
    if budget is None and captured and not options.get("restarts"):
        assert replays == 20 - 1 - _graphs.WARMUP_STEPS
    assert graph_run.success.sum() > (20 if budget is None else 0)
    C.check_result(graph_run, mlp, X, BOX)


@pytest.mark.parametrize(
    ("case", "budget", "options"),
    [
        ("inf", None, {}),
        ("2", None, {}),
        ("dlr", None, {"loss": "dlr"}),
        ("mid-replay", Budget(max_queries=2 * N_POINTS + 20 * (N_POINTS - 10)), {}),
        ("per-point cap", Budget(max_queries_per_sample=25), {}),
        ("chunks and restarts", None, {"batch_size": 64, "restarts": 2}),
        ("bf16", None, {"precision": "bf16"}),
    ],
)
def test_apgd_graph_path_keeps_the_eager_results(
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    stand_in_graphs: list[_EagerGraph],
    case: str,
    budget: Budget | None,
    options: dict[str, Any],
) -> None:
    """APGD's iterations after the first, captured and replayed (early exit off), run on the
    CPU with a stand-in graph: checkpoints between replays (and between the warm-up steps),
    the same iterates at every forward pass, the same adversarial points, queries, forward
    passes, module calls and stop reason as the eager loop, the graph's tensors the same at
    every replay."""
    from bastion.attacks.evasion import _graphs, _torch

    seen: list[list[torch.Tensor]] = []
    forward = _torch._Net.forward

    def recording(self: Any, z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen[-1].append(z.detach().clone())
        return forward(self, z, *args, **kwargs)

    monkeypatch.setattr(_torch._Net, "forward", recording)
    X, y = points
    norm = "2" if case == "2" else "inf"
    eps = 3.0 if norm == "2" else 0.5

    def apgd(graphed: bool) -> APGD:
        seen.append([])
        return APGD(APGDConfig(n_iter=40, early_exit=False, cuda_graphs=graphed, **options))

    graph_run, eager = _graphed_and_eager(apgd, mlp, X, y, eps, norm, budget)
    replays = sum(g.replays for g in stand_in_graphs)
    assert replays > 0
    assert graph_run.extra["cuda_graph"] is True
    assert eager.extra["cuda_graph"] is False
    if budget is None and not options.get("restarts"):
        # the first iteration (no momentum), the warm-up and the last one are eager
        assert replays == 40 - 2 - _graphs.WARMUP_STEPS
    # the same iterate at every forward pass (a checkpoint that halves the step or returns
    # to the best point at another iteration would change them)
    assert len(seen[0]) == len(seen[1])
    assert all(torch.equal(a, b) for a, b in zip(*seen, strict=True))
    # a small eps, where points break late, after checkpoints that moved them
    assert graph_run.success.sum() > 10
    C.check_result(graph_run, mlp, X, BOX)


@pytest.mark.parametrize("early_exit", [False, True])
@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_a_graph_is_captured_once_for_chunks_of_equal_size(
    attack: str,
    early_exit: bool,
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    stand_in_graphs: list[_EagerGraph],
) -> None:
    """Chunks of 64, 64, 64 and 8 rows: the first chunk's graph stays valid to its round's
    end and the next two replay it with their own values loaded into its tensors (a capture
    is ~10 ms on an H100); the last chunk, smaller, captures its own. Results as eager."""
    _accelerator_pace(monkeypatch, recapture=False)
    X, y = points

    def make(graphed: bool) -> Any:
        return C.white_box(attack, 24, batch_size=64, early_exit=early_exit, cuda_graphs=graphed)

    if early_exit:  # rows leave at the looks: compare as the in-place test does
        with C.rows_seen(mlp.module) as seen:
            graph_run = make(True).run(mlp, X, y, eps=0.5, constraints=BOX, seed=3)
        assert seen[0] == graph_run.queries.sum()
        eager = make(False).run(mlp, X, y, eps=0.5, constraints=BOX, seed=3)
        np.testing.assert_array_equal(graph_run.success, eager.success)
    else:
        graph_run, eager = _graphed_and_eager(make, mlp, X, y, 0.5, "inf", None)
    assert len(stand_in_graphs) == 2
    assert stand_in_graphs[0].bound != stand_in_graphs[1].bound
    # every chunk replayed: three of 64 rows on the first graph, the last on its own
    assert stand_in_graphs[0].replays > 2 * stand_in_graphs[1].replays > 0
    assert graph_run.success.sum() > 10
    C.check_result(graph_run, mlp, X, BOX)


def test_restarts_do_not_push_a_chunks_graph_out(
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    stand_in_graphs: list[_EagerGraph],
) -> None:
    """From a review: one kept graph per attack, replaced by each restart's smaller one, so
    with restarts the next chunk of 64 rows captured again (6 captures instead of 2). A slot
    per batch size: every chunk of 64 rows after the first replays the first's graph."""
    from bastion.attacks.evasion import _torch

    asked: list[tuple[int, bool]] = []
    reusable = _torch._Engine.reusable

    def recording(self: Any, kind: str, rows: int) -> Any:
        cached = reusable(self, kind, rows)
        asked.append((rows, cached is not None))
        return cached

    monkeypatch.setattr(_torch._Engine, "reusable", recording)
    X, y = points
    config = PGDConfig(steps=24, batch_size=64, restarts=3, early_exit=False)
    result = PGD(config).run(mlp, X, y, eps=0.5, constraints=BOX, seed=3)
    # the attacked (clean-correct) points make chunks of 64, 64 and 61 rows; a restart
    # attacks the rows still unbroken, and one of as many rows as the last replays its graph
    first_rounds = [hit for rows, hit in asked if rows == 64]
    assert first_rounds == [False, True]
    assert sum(hit for rows, hit in asked if rows != 64) >= 1
    assert result.extra["restarts"] == 3


def _accelerator_pace(monkeypatch: pytest.MonkeyPatch, recapture: bool) -> None:
    """The eager loop looks for broken rows every 8 steps, as on an accelerator (where the
    graph's looks fall), and the replay clock's choice is forced: ``recapture`` or never."""
    from bastion.attacks.evasion import _graphs, _torch

    monkeypatch.setattr(_torch, "_check_every", lambda device: _graphs.DRAIN_EVERY)
    monkeypatch.setattr(_graphs.ReplayClock, "worth_recapturing", lambda *a: recapture)


@pytest.fixture
def stand_in_graphs(monkeypatch: pytest.MonkeyPatch) -> list[_EagerGraph]:
    """Every capture of the graph path succeeds, with :class:`_EagerGraph` as the graph."""
    import contextlib

    from bastion.attacks.evasion import _graphs

    graphs: list[_EagerGraph] = []

    def capture(step: Any, device: Any) -> _EagerGraph:
        graphs.append(_EagerGraph(step))
        return graphs[-1]

    monkeypatch.setattr(_graphs, "available", lambda device: True)
    monkeypatch.setattr(_graphs, "side_stream", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(_graphs, "capture_step", capture)
    monkeypatch.setattr(_graphs, "drain", lambda device: None)
    return graphs


@pytest.mark.parametrize(
    ("recapture", "eps", "budget"),
    [
        (False, 1.5, None),
        (True, 1.5, None),
        (False, 1.5, Budget(max_queries_per_sample=15)),
        (False, 16.0, None),  # every point breaks early: the loop ends with the last one
    ],
)
@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_graph_with_early_exit_keeps_broken_rows_in_place(
    attack: str,
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    stand_in_graphs: list[_EagerGraph],
    recapture: bool,
    eps: float,
    budget: Budget | None,
) -> None:
    """With early exit, the graph path keeps broken rows in its batch (PGD's stopped, APGD's
    moving on, its first adversarial kept) and looks for them at each wait for the device;
    they leave under a new capture only when the clock says a smaller batch pays (here
    forced either way) or when every row broke. Against the eager loop looking as often
    (every 8 steps): the same points found, the same first adversarial iterates, every
    query counted (a row kept in the batch takes its forwards, so none has fewer queries than
    in the eager loop, and none more than the whole loop's)."""
    from bastion.attacks.evasion import _graphs

    _accelerator_pace(monkeypatch, recapture)
    X, y = points
    results = []
    for graphed in (True, False):
        with C.rows_seen(mlp.module) as seen:
            result = C.white_box(attack, 40, cuda_graphs=graphed).run(
                mlp, X, y, eps=eps, constraints=BOX, seed=3, budget=budget
            )
        assert seen[0] == result.queries.sum()
        results.append(result)
    graph_run, eager = results
    replays = sum(g.replays for g in stand_in_graphs)
    assert graph_run.extra["cuda_graph"] is True
    assert eager.extra["cuda_graph"] is False
    assert replays > 0
    attacked = graph_run.clean_correct
    more = graph_run.queries[attacked] >= eager.queries[attacked]
    equal = graph_run.queries[attacked] == eager.queries[attacked]
    if recapture:
        # broken rows leave at the same looks as in the eager loop
        assert equal.mean() >= 0.95
        # a new, smaller batch at each look that found broken rows (while steps remain)
        assert len(stand_in_graphs) >= 2
        assert stand_in_graphs[1].bound != stand_in_graphs[0].bound
    elif budget is None:
        assert len(stand_in_graphs) == 1
    if eps > 2:
        # every point broke within the first look: no replay after it
        assert graph_run.success[graph_run.clean_correct].all()
        assert replays == _graphs.DRAIN_EVERY - 1 - _graphs.WARMUP_STEPS
    both = graph_run.success & eager.success
    assert both.sum() >= eager.success.sum() - 2
    assert both.sum() >= graph_run.success.sum() - 2
    # a smaller batch may change a matmul's last bit, hence a later sign: allow a few
    same = np.all(graph_run.x_adv[both] == eager.x_adv[both], axis=1)
    assert same.mean() >= 0.95
    assert more.mean() >= 0.95
    loop = graph_run.extra["loop_forward_passes"]
    assert graph_run.queries.max() <= loop + 2  # + the clean prediction and the verification
    if budget is not None:
        assert graph_run.queries.max() <= budget.max_queries_per_sample
    assert graph_run.success.sum() > 50
    C.check_result(graph_run, mlp, X, BOX)


@pytest.mark.parametrize(("norm", "eps"), [("inf", 1.5), ("2", 6.0)])
@pytest.mark.parametrize("recapture", [False, True])
def test_bf16_graph_with_early_exit_confirms_at_the_looks(
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    stand_in_graphs: list[_EagerGraph],
    recapture: bool,
    norm: str,
    eps: float,
) -> None:
    """bf16 PGD with early exit replays a graph too (it ran eagerly, 2-5x slower than with
    early exit off on an H200). Rows its bf16 verdicts stop are confirmed in full precision at
    the looks; a refuted row takes the step its verdict withheld, as in the eager loop.
    Without that, the next replay's verdict at the same iterate stopped it again (L-inf, on
    400 of these points: 197 found instead of 218, with 276 confirmations instead of 238),
    and a row refuted at the look after the last replay went to the verification unmoved
    (L2, 40 steps: 12 fewer found over six seeds). Against the eager loop: the same points
    found, no more confirmations, every query counted."""
    _accelerator_pace(monkeypatch, recapture)
    X, y = points
    runs = []
    for graphed in (True, False):
        with C.rows_seen(mlp.module) as seen:
            result = PGD(PGDConfig(steps=40, precision="bf16", cuda_graphs=graphed)).run(
                mlp, X, y, eps=eps, norm=norm, constraints=BOX, seed=3
            )
        assert seen[0] == result.queries.sum()
        C.check_result(result, mlp, X, BOX)
        runs.append(result)
    graph_run, eager = runs
    assert graph_run.extra["cuda_graph"] is True
    assert sum(g.replays for g in stand_in_graphs) > 0
    assert eager.extra["confirmation_queries"] > eager.success.sum()  # some were refuted
    np.testing.assert_array_equal(graph_run.success, eager.success)
    assert graph_run.extra["confirmation_queries"] == eager.extra["confirmation_queries"]


def test_bf16_under_a_per_point_cap_stays_eager(
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    stand_in_graphs: list[_EagerGraph],
) -> None:
    """From a review: in a graph's batch, a bf16 row confirmed at a look stayed and took
    forwards past ``max_queries_per_sample`` (21 of 20), and a refuted row's count stopped
    the whole batch (83 points found instead of 88). Under a per-point cap bf16 with early
    exit runs the eager loop, which drops only the capped row."""
    _accelerator_pace(monkeypatch, recapture=False)
    X, y = points
    budget = Budget(max_queries_per_sample=20)
    runs = [
        PGD(PGDConfig(steps=40, precision="bf16", cuda_graphs=graphed)).run(
            mlp, X, y, eps=1.5, constraints=BOX, seed=3, budget=budget
        )
        for graphed in (True, False)
    ]
    assert not stand_in_graphs
    assert runs[0].queries.max() <= 20
    np.testing.assert_array_equal(runs[0].x_adv, runs[1].x_adv)
    np.testing.assert_array_equal(runs[0].queries, runs[1].queries)


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_no_recapture_without_room_for_a_graph(
    attack: str,
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    stand_in_graphs: list[_EagerGraph],
) -> None:
    """From a review: once broken rows left at a look, a new capture was tried whatever the
    steps left (only the clock's estimate guarded it): a look at step 23 of 24 captured at
    the end, and the warm-up ran past the schedule. Forced recaptures, over restarts and
    chunks: every capture has room for its replays, and the queries are the eager loop's."""

    _accelerator_pace(monkeypatch, recapture=True)
    X, y = points
    runs = []
    for graphed in (True, False):
        with C.rows_seen(mlp.module) as seen:
            runs.append(
                C.white_box(attack, 24, restarts=2, batch_size=128, cuda_graphs=graphed).run(
                    mlp, X, y, eps=1.0, constraints=BOX, seed=3
                )
            )
        assert seen[0] == runs[-1].queries.sum()
    graph_run, eager = runs
    assert len(stand_in_graphs) >= 2
    assert all(g.replays > 0 for g in stand_in_graphs)  # none captured at the very end
    assert graph_run.extra["loop_forward_passes"] == eager.extra["loop_forward_passes"]
    assert (graph_run.queries == eager.queries).mean() >= 0.95


def test_pgd_graph_with_early_exit_under_a_total_budget_stays_eager(
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    stand_in_graphs: list[_EagerGraph],
) -> None:
    """Broken rows kept in a graph's batch would spend a total query budget that the rows
    still moving could use (59 successes instead of 69 on this MLP): under one, early exit
    compacts the batch every look, eagerly, as without graphs."""
    X, y = points
    budget = Budget(max_queries=2 * N_POINTS + 13 * (N_POINTS - 10))
    runs = [
        PGD(PGDConfig(steps=40, cuda_graphs=graphed)).run(
            mlp, X, y, eps=1.5, constraints=BOX, seed=3, budget=budget
        )
        for graphed in (True, False)
    ]
    assert not stand_in_graphs
    assert runs[0].extra["cuda_graph"] is False
    np.testing.assert_array_equal(runs[0].x_adv, runs[1].x_adv)
    np.testing.assert_array_equal(runs[0].queries, runs[1].queries)
    assert runs[0].stopped == "query budget"


def test_replay_clock_recaptures_only_when_the_smaller_batch_pays() -> None:
    """The choice between keeping broken rows in a graph's batch and a new capture: the
    replays saved over the steps left must outweigh the capture; with one batch size timed
    the cost is taken as proportional to the rows, with two, the slope between them."""
    from bastion.attacks.evasion import _graphs

    clock = _graphs.ReplayClock()
    assert not clock.worth_recapturing(4096, 1024, 100)  # nothing timed yet
    clock.capture_s = 0.010
    assert not clock.worth_recapturing(4096, 1024, 100)  # no replay timed at 4,096 rows
    clock.replay_s[4096] = 0.0004
    # 30 steps x 0.3 ms saved (3/4 of the rows) = 9 ms < 10 ms; 40 steps: 12 ms
    assert not clock.worth_recapturing(4096, 1024, 30)
    assert clock.worth_recapturing(4096, 1024, 40)
    # too few steps left for a graph at all
    assert not clock.worth_recapturing(4096, 1, _graphs.WARMUP_STEPS + _graphs.MIN_STEPS)
    # a launch-bound step: 1,024 rows cost nearly what 4,096 did
    clock.replay_s[1024] = 0.00038
    assert clock.saving(4096, 1024) == pytest.approx(0.00002)
    assert not clock.worth_recapturing(4096, 1024, 400)
    assert not clock.worth_recapturing(1024, 256, 400)  # 1,024 rows timed: slope from both
    assert clock.worth_recapturing(4096, 1024, 600)
    # three sizes: the slope toward the nearest smaller one
    clock.replay_s[2048] = 0.00039
    assert clock.saving(4096, 1024) == pytest.approx(0.00001 / 2048 * 3072)


def test_early_exit_saves_forward_passes_and_finds_the_same_points(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    on = PGD(PGDConfig(steps=30)).run(mlp, X, y, eps=2.0, constraints=BOX)
    off = PGD(PGDConfig(steps=30, early_exit=False)).run(mlp, X, y, eps=2.0, constraints=BOX)
    assert on.extra["loop_forward_passes"] < 0.6 * off.extra["loop_forward_passes"]
    assert on.queries.sum() < off.queries.sum()
    # the same trajectories: a point breaks at the same step either way
    assert abs(int(on.success.sum()) - int(off.success.sum())) <= 2


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_early_exit_checked_every_few_steps_finds_the_same_points(
    attack: str,
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The accelerator path (broken points leave every 8 steps, recorded in between)."""
    from bastion.attacks.evasion import _torch

    X, y = points
    cls = ATTACKS.get(attack)
    options = {"pgd": {"steps": 30}, "apgd": {"n_iter": 30}}[attack]
    off = cls(cls.Config(early_exit=False, **options)).run(mlp, X, y, eps=1.5, constraints=BOX)  # type: ignore[call-arg]
    monkeypatch.setattr(_torch, "_check_every", lambda device: 4)
    lazy = cls(cls.Config(**options)).run(mlp, X, y, eps=1.5, constraints=BOX)  # type: ignore[call-arg]
    assert lazy.extra["loop_forward_passes"] < off.extra["loop_forward_passes"]
    assert abs(int(lazy.success.sum()) - int(off.success.sum())) <= 2
    assert lazy.success.sum() > 50
    C.check_result(lazy, mlp, X, BOX)


def test_pgd_returns_the_first_adversarial_iterate_on_every_path(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PGD row that breaks stops moving until it is recorded: with early exit off, on, or
    checked every few steps (the accelerator path), the same seed yields the same
    adversarial examples, not only the same number of them."""
    from bastion.attacks.evasion import _torch

    X, y = points
    config = {"steps": 30}
    off = PGD(PGDConfig(early_exit=False, **config)).run(mlp, X, y, eps=1.5, constraints=BOX)
    on = PGD(PGDConfig(**config)).run(mlp, X, y, eps=1.5, constraints=BOX)
    monkeypatch.setattr(_torch, "_check_every", lambda device: 4)
    lazy = PGD(PGDConfig(**config)).run(mlp, X, y, eps=1.5, constraints=BOX)
    assert off.success.sum() > 50
    for other in (on, lazy):
        both = off.success & other.success
        assert both.sum() >= off.success.sum() - 2
        # a smaller batch may change a matmul's last bit, hence a later sign: allow a few
        same = np.all(off.x_adv[both] == other.x_adv[both], axis=1)
        assert same.mean() >= 0.95


def test_queries_count_every_forward_pass(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    with C.rows_seen(mlp.module) as seen:
        result = PGD(PGDConfig(steps=10, early_exit=False)).run(mlp, X, y, eps=1.0, constraints=BOX)
    attacked = result.clean_correct
    # clean prediction + 10 gradient steps + the verification, which also judges the last
    # iterate of the points no step broke (one prediction per attacked point)
    expected = np.where(attacked, 12, 1)
    np.testing.assert_array_equal(result.queries, expected)
    assert seen[0] == result.queries.sum()


def test_deterministic_under_a_seed(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    attack = PGD(PGDConfig(steps=5))
    a = attack.run(mlp, X, y, eps=1.5, constraints=BOX, seed=7)
    b = attack.run(mlp, X, y, eps=1.5, constraints=BOX, seed=7)
    c = attack.run(mlp, X, y, eps=1.5, constraints=BOX, seed=8)
    np.testing.assert_array_equal(a.x_adv, b.x_adv)
    np.testing.assert_array_equal(a.queries, b.queries)
    assert not np.array_equal(a.x_adv, c.x_adv)


def test_time_budget_stops_cleanly(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    result = APGD().run(mlp, X, y, eps=2.0, constraints=BOX, budget=Budget(max_seconds=1e-9))
    assert result.stopped == "time budget"
    assert not result.success.any()
    assert len(result.x_adv) == len(X)
    np.testing.assert_array_equal(result.x_adv, X)


def test_query_budgets_are_never_exceeded(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    limit = 5 * len(X)
    result = PGD(PGDConfig(steps=40, early_exit=False)).run(
        mlp, X, y, eps=2.0, constraints=BOX, budget=Budget(max_queries=limit)
    )
    assert result.stopped == "query budget"
    assert result.queries.sum() <= limit
    assert result.success.any()
    C.check_result(result, mlp, X, BOX)
    capped = APGD().run(
        mlp, X, y, eps=1.0, constraints=BOX, budget=Budget(max_queries_per_sample=10)
    )
    assert capped.queries.max() <= 10
    assert capped.stopped == "query budget"
    with pytest.raises(ConfigError, match="max_queries"):
        PGD().run(mlp, X, y, eps=1.0, budget=Budget(max_queries=len(X)))


@pytest.mark.parametrize("early_exit", [True, False])
def test_a_cut_short_attack_still_verifies_its_last_iterates(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], early_exit: bool
) -> None:
    """When the budget cuts PGD short, the rows still moving have taken a step nobody looked
    at: their iterates go to the verification, whose queries are reserved anyway (before,
    they were dropped: 88 successes instead of 97 on the digits MLP under a cap of 12)."""
    X, y = points
    cap = 12
    result = PGD(PGDConfig(steps=40, early_exit=early_exit)).run(
        mlp, X, y, eps=1.0, constraints=BOX, budget=Budget(max_queries_per_sample=cap), seed=0
    )
    assert result.stopped == "query budget"
    unbroken = result.clean_correct & ~result.success
    assert unbroken.any()
    # clean prediction, every loop forward the cap allowed, and the verification
    assert (result.queries[unbroken] == cap).all()
    assert result.queries.max() <= cap
    C.check_result(result, mlp, X, BOX)


@pytest.fixture(scope="module")
def integer_pixels(digits: Any) -> FeatureConstraints:
    """Digits pixels as INTEGER columns 0..16, eps in std units (rounding can undo a step)."""
    names = [f"p{i}" for i in range(64)]
    schema = FeatureSchema(
        {name: ColumnSpec(name, ColumnKind.INTEGER, min=0, max=16) for name in names}
    )
    return FeatureConstraints.from_schema(
        schema, names, pd.DataFrame(digits.X_train, columns=names)
    )


@pytest.fixture(scope="module")
def square_on_integer_pixels(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], integer_pixels: FeatureConstraints
) -> float:
    """The black-box reference: Square's robust accuracy under the same constraints."""
    X, y = points
    square = ATTACKS.get("square")
    result = square(square.Config()).run(mlp, X, y, eps=0.3, constraints=integer_pixels)  # type: ignore[attr-defined]
    robust = result.metrics()["robust_accuracy"]
    assert robust is not None
    return float(robust)


@pytest.mark.parametrize("path", ["early-exit", "no-early-exit", "checked-every-4"])
def test_rounded_candidates_are_confirmed_before_a_point_leaves(
    path: str,
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    integer_pixels: FeatureConstraints,
    square_on_integer_pixels: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: a point whose first continuous success was undone by integer rounding
    used to count as robust (robust accuracy 1.00 with integers, 0.46 without)."""
    from bastion.attacks.evasion import _torch

    X, y = points
    cons = integer_pixels
    if path == "checked-every-4":
        monkeypatch.setattr(_torch, "_check_every", lambda device: 4)
    options = {"early_exit": False} if path == "no-early-exit" else {}
    with C.rows_seen(mlp.module) as seen:
        result = PGD(PGDConfig(steps=20, **options)).run(mlp, X, y, eps=0.3, constraints=cons)  # type: ignore[arg-type]
    assert seen[0] == result.queries.sum()
    robust = result.metrics()["robust_accuracy"]
    assert robust is not None
    assert square_on_integer_pixels < 0.9
    assert robust <= square_on_integer_pixels + 0.1
    assert result.extra["rejected_after_projection"] <= 2
    assert result.extra["confirmation_queries"] > 0
    C.check_result(result, mlp, X, cons)
    adv = result.x_adv[result.success]
    np.testing.assert_array_equal(adv, np.rint(adv))
    # the rounding-free path confirms nothing (and pays nothing for it)
    plain = dataclasses.replace(cons, integer=np.zeros(64, dtype=bool))
    cont = PGD(PGDConfig(steps=20)).run(mlp, X, y, eps=0.3, constraints=plain)
    assert cont.extra["confirmation_queries"] == 0


def test_confirmations_respect_the_per_point_budget(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], integer_pixels: FeatureConstraints
) -> None:
    X, y = points
    for attack in (PGD(PGDConfig(steps=20)), APGD(APGDConfig(n_iter=20))):
        result = attack.run(
            mlp, X, y, eps=0.3, constraints=integer_pixels, budget=Budget(max_queries_per_sample=8)
        )
        assert result.queries.max() <= 8
        assert result.stopped == "query budget"
        assert result.success.any()
        C.check_result(result, mlp, X, integer_pixels)
    limit = 4 * len(X)
    total = PGD(PGDConfig(steps=20)).run(
        mlp, X, y, eps=0.3, constraints=integer_pixels, budget=Budget(max_queries=limit)
    )
    assert total.queries.sum() <= limit
    C.check_result(total, mlp, X, integer_pixels)


def test_interrupt_returns_a_partial_result(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.attacks.evasion import _torch

    X, y = points
    calls = {"n": 0}
    real = _torch._Net.forward

    def interrupting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_torch._Net, "forward", interrupting)
    result = PGD(PGDConfig(steps=40)).run(mlp, X, y, eps=2.0, constraints=BOX)
    assert result.stopped == "interrupted"
    assert result.success.any()
    C.check_result(result, mlp, X, BOX)


@pytest.mark.parametrize("rounded", [False, True], ids=["on the device", "rounded on the host"])
def test_ctrl_c_in_the_verification_returns_an_unverified_partial_result(
    rounded: bool,
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    integer_pixels: FeatureConstraints,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing verified, nothing a success: the loop's candidates are reported unverified
    and the run says it was interrupted (the Ctrl-C escaped the attack, and with it every
    earlier stage of ``auto``)."""
    from bastion.attacks import budget as budget_module
    from bastion.attacks.evasion import _torch

    X, y = points
    cons = integer_pixels if rounded else BOX
    # rounding confirms candidates as they appear (predict_rows, on the host), box
    # constraints are verified on the device (predict_tensors)
    where = "predict_rows" if rounded else "predict_tensors"
    real = getattr(_torch._Net, where)
    calls = {"n": 0, "at": 0}

    def interrupting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == calls["at"]:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_torch._Net, where, interrupting)
    attack = PGD(PGDConfig(steps=10))
    attack.run(mlp, X, y, eps=3.0, constraints=cons)
    calls.update(at=calls["n"], n=0)  # the last call of a run is its verification
    before = budget_module.interrupt_count()
    result = attack.run(mlp, X, y, eps=3.0, constraints=cons)
    assert calls["n"] == calls["at"]
    assert result.stopped == "interrupted"
    assert budget_module.interrupt_count() == before + 1
    assert not result.success.any()
    assert result.extra["unverified_candidates"] > 0
    np.testing.assert_array_equal(result.x_adv, X)
    np.testing.assert_array_equal(result.adv_pred, result.clean_pred)
    C.check_result(result, mlp, X, cons)


def test_bf16_mode_is_verified_in_full_precision(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    fp32 = PGD(PGDConfig(steps=10)).run(mlp, X, y, eps=2.0, constraints=BOX)
    bf16 = PGD(PGDConfig(steps=10, precision="bf16")).run(mlp, X, y, eps=2.0, constraints=BOX)
    assert bf16.extra["precision"] == "bf16"
    C.check_result(bf16, mlp, X, BOX)
    assert abs(int(bf16.success.sum()) - int(fp32.success.sum())) <= 0.05 * len(X)


@pytest.mark.parametrize("early_exit", [True, False])
def test_bf16_verdicts_never_stop_a_point_the_model_still_gets_right(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], early_exit: bool
) -> None:
    """A bf16 forward pass near the boundary can call a point misclassified that the model,
    in its own precision, still gets right. Stopping there lost those points at the final
    verification (bf16 PGD 2 points of robust accuracy weaker than fp32 on the digits MLP):
    with early exit a stopped row is confirmed in full precision first (a counted query),
    without it no row stops on a bf16 verdict."""
    X, y = points
    runs = {}
    for precision in ("fp32", "bf16"):
        config = PGDConfig(steps=20, early_exit=early_exit, precision=precision)  # type: ignore[arg-type]
        runs[precision] = PGD(config).run(mlp, X, y, eps=0.75, constraints=BOX, seed=0)
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert bf16.extra["rejected_after_projection"] == 0
    assert abs(int(bf16.success.sum()) - int(fp32.success.sum())) <= 2
    assert bf16.success.sum() > 20
    if early_exit:
        # one confirmation per point that left, and each counted as a query of its point
        assert bf16.extra["confirmation_queries"] >= bf16.success.sum()
        assert (
            bf16.queries.sum()
            == bf16.extra["loop_forward_passes"]
            + 2 * int(bf16.clean_correct.sum())
            + int((~bf16.clean_correct).sum())
            + bf16.extra["confirmation_queries"]
        )
    C.check_result(bf16, mlp, X, BOX)


def test_bf16_confirmations_respect_the_per_point_budget(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    for cap in (4, 9):
        result = PGD(PGDConfig(steps=20, precision="bf16")).run(
            mlp, X, y, eps=0.75, constraints=BOX, budget=Budget(max_queries_per_sample=cap)
        )
        assert result.queries.max() <= cap
        C.check_result(result, mlp, X, BOX)


@pytest.mark.parametrize(
    ("label", "options", "budget", "check_every"),
    [
        ("early exit off, per-point cap", {"early_exit": False}, {"max_queries_per_sample": 12}, 1),
        ("early exit off, total budget", {"early_exit": False}, {"max_queries": 2000}, 1),
        ("early exit off, restarts", {"early_exit": False, "restarts": 3, "steps": 5}, {}, 1),
        ("early exit, looks every 8, steps not a multiple", {"steps": 10}, {}, 8),
        ("early exit, restarts", {"steps": 10, "restarts": 3}, {}, 1),
    ],
)
def test_bf16_pgd_keeps_fp32_strength_on_every_path(
    mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    label: str,
    options: dict[str, Any],
    budget: dict[str, Any],
    check_every: int,
) -> None:
    """Budgets that cut the loop short, restarts, looks every 8 steps that miss the last
    steps: bf16 verdicts are confirmed wherever a point is recorded, and a loop cut short
    without looks hands its iterates to the verification (a first version recorded nothing
    on a cut, and took unconfirmed verdicts at a restart's end)."""
    from bastion.attacks.evasion import _torch

    monkeypatch.setattr(_torch, "_check_every", lambda device: check_every)
    X, y = points
    runs = {}
    for precision in ("fp32", "bf16"):
        config = PGDConfig(**{"steps": 20, **options, "precision": precision})
        runs[precision] = PGD(config).run(
            mlp, X, y, eps=1.0, constraints=BOX, seed=1, budget=Budget(**budget)
        )
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert bf16.extra["rejected_after_projection"] == 0, label
    assert int(bf16.success.sum()) >= int(fp32.success.sum()) - 2, label
    assert fp32.success.sum() > 20
    if options.get("restarts"):
        # points broken in a restart sit out the next ones (a first version kept every point
        # in every restart without early exit)
        assert bf16.queries.sum() <= 1.05 * fp32.queries.sum(), label
    if budget.get("max_queries_per_sample"):
        assert bf16.queries.max() <= budget["max_queries_per_sample"]
    if budget.get("max_queries"):
        assert bf16.queries.sum() <= budget["max_queries"]
    C.check_result(bf16, mlp, X, BOX)


@pytest.mark.parametrize("attack", ["apgd", "fgsm"])
def test_bf16_confirmations_take_nothing_from_other_attacks(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], attack: str
) -> None:
    """Only PGD confirms bf16 verdicts: APGD and FGSM keep their whole per-point budget in
    bf16 (a first version reserved a query for every attack: APGD broke 2 points instead of
    108 under a cap of 4, FGSM none under a cap of 3)."""
    X, y = points
    cls = ATTACKS.get(attack)
    cap = {"apgd": 4, "fgsm": 3}[attack]
    found = {}
    for precision in ("fp32", "bf16"):
        result = cls(cls.Config(precision=precision)).run(  # type: ignore[call-arg]
            mlp, X, y, eps=1.0, constraints=BOX, budget=Budget(max_queries_per_sample=cap)
        )
        assert result.queries.max() <= cap
        found[precision] = int(result.success.sum())
    assert found["fp32"] > 20
    assert found["bf16"] >= found["fp32"] - 2


def test_model_state_is_restored(mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = points
    mlp.module.train()
    PGD(PGDConfig(steps=2)).run(mlp, X[:20], y[:20], eps=1.0, constraints=BOX)
    assert mlp.module.training
    assert all(p.requires_grad for p in mlp.module.parameters())
    mlp.module.eval()


# -- diagnostics ---------------------------------------------------------------------------
class _Flat(torch.nn.Module):  # type: ignore[misc]
    """Piecewise-constant logits: the input gradient is zero everywhere (gradient masking)."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Any) -> Any:
        return self.net(torch.round(x / 4) * 4)


class _NaNGrad(torch.nn.Module):  # type: ignore[misc]
    """Finite logits whose input gradient is NaN (the slope of sqrt at 0 times 0)."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Any) -> Any:
        return self.net(x) + torch.sqrt(x[:, :1] * 0.0)


def test_zero_and_nan_gradients_are_reported(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    healthy = PGD(PGDConfig(steps=3)).run(mlp, X, y, eps=1.0, constraints=BOX)
    assert healthy.extra["zero_gradient_fraction"] == 0.0
    assert healthy.extra["nan_gradients"] is False
    flat = PGD(PGDConfig(steps=3)).run(
        TorchAdapter(_Flat(mlp.module)), X, y, eps=1.0, constraints=BOX
    )
    assert flat.extra["zero_gradient_fraction"] > 0.9
    nan = PGD(PGDConfig(steps=3)).run(
        TorchAdapter(_NaNGrad(mlp.module)), X, y, eps=1.0, constraints=BOX
    )
    assert nan.extra["nan_gradients"] is True
    assert nan.extra["restarts"] == 1
    assert nan.extra["iterations"] == 3
    C.check_result(nan, TorchAdapter(_NaNGrad(mlp.module)), X, BOX)


def test_white_box_attacks_refuse_a_sklearn_model(points: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = points
    model = SklearnAdapter(LogisticRegression(max_iter=200).fit(X, y))
    for attack in (FGSM(), PGD(), APGD(), AutoAttack()):
        # the refusal names the attacks that would run
        with pytest.raises(CapabilityError, match=r"logits.*'square'.*'hopskipjump'"):
            attack.run(model, X, y, eps=1.0)


def test_bad_threat_models_are_config_errors(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    with pytest.raises(ConfigError, match="eps"):
        PGD().run(mlp, X, y, eps=0.0)
    with pytest.raises(ConfigError, match="eps"):
        PGD().run(mlp, X, y, eps=math.nan)
    with pytest.raises(ConfigError, match="norm"):
        PGD().run(mlp, X, y, eps=1.0, norm="1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="constraints describe 3"):
        PGD().run(mlp, X, y, eps=1.0, constraints=FeatureConstraints.box(3, 0, 1))
    with pytest.raises(ValueError, match="steps"):
        PGDConfig(steps=0)


@pytest.mark.parametrize("attack", [PGD(PGDConfig(steps=5)), AutoAttack()])
def test_constraints_in_another_column_order_are_refused(
    attack: Any, mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    """Constraints pair with columns by position: named ones must name a frame's columns
    in its order (auto turned the frame into an array first, where neither the model's
    order nor the constraints' could be checked)."""
    X, y = points
    names = [f"pixel{i}" for i in range(64)]
    frame = pd.DataFrame(X, columns=names)
    named = dataclasses.replace(BOX, names=tuple(names))
    swapped = dataclasses.replace(BOX, names=(names[1], names[0], *names[2:]))
    with pytest.raises(DataError, match="column 0 is 'pixel0', where the constraints"):
        attack.run(mlp, frame, y, eps=2.0, constraints=swapped)
    attack.run(mlp, frame.iloc[:20], y[:20], eps=2.0, constraints=named)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_are_refused_naming_the_first(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], bad: float
) -> None:
    X, y = points
    X = X.copy()
    X[3, 2] = bad
    with pytest.raises(DataError, match=rf"row 3, value {bad!r}"):
        PGD(PGDConfig(steps=2)).run(mlp, X, y, eps=0.5)


def test_finiteness_test_settles_an_overflowing_sum_exactly() -> None:
    """The fast test sums each row: values whose sum overflows are still finite."""
    from bastion.attacks.evasion._torch import _all_finite

    X = np.zeros((4, 3))
    X[0, :2] = 1e308  # the row's sum overflows
    with np.errstate(over="ignore"):
        assert not np.isfinite(X[0] @ np.ones(3))
    assert _all_finite(X)
    for bad in (math.nan, math.inf, -math.inf):
        X[2, 1] = bad
        assert not _all_finite(X)
    X[2, 1] = 0.0
    X[1, :2] = (math.inf, -math.inf)  # a row whose sum is NaN
    assert not _all_finite(X)
    assert _all_finite(np.zeros((0, 5)))


def test_apgd_checkpoints_and_step_halving_follow_the_paper() -> None:
    """Checkpoints at p0 = 0, p1 = 0.22, p(j+1) = p(j) + max(p(j) - p(j-1) - 0.03, 0.06) of
    the iterations (100: 22, 41, 57, 70, 80, 87, 93, 99). At a checkpoint a point's step
    halves, and it returns to its best point, when at most rho = 0.75 of the steps since the
    last one raised its loss, or when its step was not halved last time and its best loss
    did not improve; a point whose loss kept rising keeps its step."""
    import types

    import torch

    from bastion.attacks.evasion._torch import APGDSchedule, _APGDRows

    sched = APGDSchedule(n_iter=100, loss="ce", restarts=1, rho=0.75, momentum=0.75,
                         initial_step=2.0)  # fmt: skip
    eng = types.SimpleNamespace(eps=1.0)
    n = 3
    z = torch.zeros(n, 2)
    rows = (torch.arange(n), z.clone(), torch.zeros(n, dtype=torch.long), z - 5, z + 5)
    state = _APGDRows(eng, sched, rows, z.clone(), torch.ones(n, 2), torch.zeros(n))  # type: ignore[arg-type]
    checkpoints, steps = [], []
    for it in range(1, sched.n_iter):
        state.z.fill_(float(it))  # each iterate's place: a point sent back reads its best
        # rising every step; flat; rising to 22, then a sawtooth below that best that rises
        # on most steps (more than rho of them: only the stall rule can halve it)
        sawtooth = float(it if it <= 22 else it % 10)
        state.absorb(torch.tensor([float(it), 0.0, sawtooth]), None)
        state.tick()
        if state.counter == 0:
            checkpoints.append(it)
            steps.append(state.step[:, 0].tolist())
    assert checkpoints == [22, 41, 57, 70, 80, 87, 93, 99]
    assert all(row[0] == 2.0 for row in steps)  # rising every step: never halved
    assert [row[1] for row in steps] == [2.0 / 2**j for j in range(1, 9)]  # never rising
    # stalled below its best: halved whenever its step was not halved the time before
    assert [row[2] for row in steps] == [2.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert state.z[1].tolist() == [0.0, 0.0]  # the flat point went back to its best point


# -- the ensemble ---------------------------------------------------------------------------
def test_auto_is_the_per_point_worst_case(
    robust_mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    cfg = AutoConfig(n_iter=20, square=False)
    result = AutoAttack(cfg).run(robust_mlp, X, y, eps=2.0, constraints=BOX)
    ce = APGD(APGDConfig(n_iter=20)).run(robust_mlp, X, y, eps=2.0, constraints=BOX)
    assert result.attack == "auto"
    assert result.extra["attacks"] == ["apgd-ce", "apgd-dlr"]
    assert result.extra["square"] == "disabled"
    # stage 1 is APGD-CE with the same seed: the ensemble can only add successes
    assert (result.success >= ce.success).all()
    stages = result.extra["stages"]
    assert stages[0]["new_successes"] == ce.success.sum()
    assert sum(s["new_successes"] for s in stages) == result.success.sum()
    assert result.queries.sum() == sum(s["queries"] for s in stages)
    C.check_result(result, robust_mlp, X, BOX)


def test_auto_runs_without_square_when_none_is_registered(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = points
    monkeypatch.setattr(auto_module, "_square_class", lambda: None)
    result = AutoAttack(AutoConfig(n_iter=10)).run(mlp, X, y, eps=1.0, constraints=BOX)
    assert result.extra["square"] == "not registered"
    assert result.extra["attacks"] == ["apgd-ce", "apgd-dlr"]
    assert result.extra["device"] == "cpu"  # where its white-box stages ran (ADV001 evidence)


def test_auto_hands_its_white_box_options_to_its_stages(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cuda_graphs=False`` (a module whose forward pass makes choices in Python) was
    dropped: auto's APGD stages ran with graphs on (a review)."""
    X, y = points
    seen: list[tuple[str, bool, bool, int]] = []
    run = APGD.run

    def spy(self: APGD, *args: Any, **kwargs: Any) -> EvasionResult:
        c = self.config
        seen.append((c.loss, c.cuda_graphs, c.early_exit, c.batch_size))
        return run(self, *args, **kwargs)

    monkeypatch.setattr(APGD, "run", spy)
    cfg = AutoConfig(n_iter=5, square=False, cuda_graphs=False, early_exit=False, batch_size=7)
    AutoAttack(cfg).run(mlp, X[:8], y[:8], eps=1.0, constraints=BOX)
    assert seen == [("ce", False, False, 7), ("dlr", False, False, 7)]


class _FakeSquare(EvasionAttack):
    """Stands in for Square: 'breaks' every point it is given by returning a verified
    adversarial point of the true model found by a long PGD, and spends 3 queries each."""

    id = "fake-square"
    title = "fake"

    def run(self, model: Any, X: Any, y: Any, **kwargs: Any) -> EvasionResult:
        self.seen = len(X)
        result = PGD(PGDConfig(steps=100, restarts=3)).run(model, X, y, **kwargs)
        return EvasionResult(
            attack="square",
            x_adv=result.x_adv,
            y_true=result.y_true,
            clean_pred=result.clean_pred,
            adv_pred=result.adv_pred,
            success=result.success,
            perturbation=result.perturbation,
            queries=np.full(len(X), 3),
            eps=result.eps,
            norm=result.norm,
            elapsed_s=0.0,
        )


def test_auto_runs_square_on_the_points_still_standing(
    robust_mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = points
    monkeypatch.setattr(auto_module, "_square_class", lambda: _FakeSquare)
    result = AutoAttack(AutoConfig(n_iter=10)).run(robust_mlp, X, y, eps=2.0, constraints=BOX)
    stages = result.extra["stages"]
    assert result.extra["square"] == "ran"
    assert [s["attack"] for s in stages] == ["apgd-ce", "apgd-dlr", "square"]
    assert stages[2]["points"] == stages[1]["points"] - stages[1]["new_successes"]
    assert stages[2]["queries"] == 3 * stages[2]["points"]
    C.check_result(result, robust_mlp, X, BOX)


def test_auto_interrupted_at_a_later_stage_keeps_the_earlier_stages(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C at APGD-DLR's clean predictions (before it has any result) escaped auto and
    lost APGD-CE's verified points; they now stand, and the run says it was interrupted."""
    from bastion.attacks import budget as budget_module
    from bastion.attacks.evasion import _torch

    X, y = points
    cfg = AutoConfig(n_iter=10, square=False)
    ce = APGD(APGDConfig(n_iter=10)).run(mlp, X, y, eps=1.0, constraints=BOX)
    assert ce.success.any()
    assert not ce.success.all()  # APGD-DLR has points to attack
    real = _torch._Net.predict_rows
    calls = {"n": 0}

    def interrupting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # APGD-CE's clean predictions, then APGD-DLR's
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_torch._Net, "predict_rows", interrupting)
    before = budget_module.interrupt_count()
    result = AutoAttack(cfg).run(mlp, X, y, eps=1.0, constraints=BOX)
    assert calls["n"] == 2
    assert result.stopped == "interrupted"
    assert budget_module.interrupt_count() == before + 1
    assert result.extra["attacks"] == ["apgd-ce"]
    np.testing.assert_array_equal(result.success, ce.success)
    C.check_result(result, mlp, X, BOX)


def test_auto_budget_covers_the_whole_ensemble(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    limit = 4 * len(X)
    result = AutoAttack(AutoConfig(n_iter=50, square=False)).run(
        mlp, X, y, eps=1.0, constraints=BOX, budget=Budget(max_queries=limit)
    )
    assert result.queries.sum() <= limit
    assert result.stopped == "query budget"


@pytest.mark.slow
def test_auto_with_the_registered_square(
    robust_mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    if auto_module._square_class() is None:
        pytest.skip("no attack 'square' registered")
    X, y = points
    result = AutoAttack(AutoConfig(n_iter=20, square_options={"n_queries": 200})).run(
        robust_mlp, X[:60], y[:60], eps=2.0, constraints=BOX
    )
    assert result.extra["square"] == "ran"
    C.check_result(result, robust_mlp, X[:60], BOX)


def test_registry_and_metadata() -> None:
    for attack_id in ("fgsm", "pgd", "apgd", "auto"):
        cls = ATTACKS.get(attack_id)
        assert issubclass(cls, EvasionAttack)
        assert cls.family == "evasion"
        assert {"AML.T0043.000", "AML.T0015", "ML01"} <= set(cls.tags)
    assert attack_base.ATTACKS is ATTACKS
    assert PGDConfig().steps == 40
    assert APGDConfig().n_iter == 100


# -- against the peer --------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_breaks_the_points_the_reference_implementation_breaks(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray], loss: str
) -> None:
    """APGD follows Croce and Hein's reference code, whose port in torchattacks (a test-only
    reference) runs here on the same model, points and seed: the same points break, one by
    one. (The adversarial examples differ: the reference returns each point's last
    misclassified iterate, Bastion its first.) This catches gross departures (a first step of
    eps instead of 2 eps fails it); a small change of the schedule moves only the odd fragile
    point here and may pass. bench_evasion.py compares robust accuracy over 30 seeds."""
    torchattacks = pytest.importorskip("torchattacks")
    X, y = points
    # the reference clamps to [0, 1]: the model sees 16 x its [0, 1] input
    unit = torch.nn.Sequential(M.Affine(0.0, 1 / 16), mlp.module)
    model = TorchAdapter(unit, classes=list(range(10)))
    X_unit, eps = X / 16, 1.5 / 16
    x = torch.as_tensor(X_unit, dtype=torch.float32).reshape(-1, 1, 8, 8)
    for seed in (0, 1):
        ours = APGD(APGDConfig(loss=loss)).run(
            model, X_unit, y, eps=eps, constraints=FeatureConstraints.box(64, 0, 1), seed=seed
        )
        reference = torchattacks.APGD(
            torch.nn.Sequential(torch.nn.Flatten(), unit),
            norm="Linf", eps=eps, steps=100, n_restarts=1, seed=seed, loss=loss,
        )  # fmt: skip
        adv = reference(x, torch.as_tensor(y)).detach().reshape(-1, 64)
        with torch.no_grad():
            broken = unit(adv).argmax(dim=1).numpy() != y
        assert 20 < ours.success.sum() < ours.clean_correct.sum()
        np.testing.assert_array_equal(ours.success, broken & ours.clean_correct)


@pytest.mark.parametrize("attack", ["pgd", "apgd-ce", "apgd-dlr"])
def test_from_arts_own_start_every_point_art_breaks_breaks(
    robust_mlp: TorchAdapter,
    points: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    attack: str,
) -> None:
    """The issue's "robust accuracy <= ART's at equal settings", point by point: ART's PGD and
    AutoPGD run on the same model and points, their random start is recorded, and Bastion's
    attack starts there. Every point ART breaks, Bastion breaks. (From independent starts the
    two differ by the draw's noise alone; bench_evasion.py measures both over 50 seeds.)
    Which points this model gives up depends little on the attack: at eps 3 (about 125 of
    186 break) a 4-step PGD or a 10-iteration APGD-DLR misses some of ART's and fails here,
    while a 10-iteration APGD-CE still passes; at eps 2 nothing weaker fails."""
    pytest.importorskip("art")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from art.attacks.evasion import AutoProjectedGradientDescent, ProjectedGradientDescent
        from art.attacks.evasion import auto_projected_gradient_descent as art_apgd
        from art.attacks.evasion.projected_gradient_descent import (
            projected_gradient_descent_pytorch as art_pgd,
        )
        from art.estimators.classification import PyTorchClassifier

    from bastion.attacks.evasion import _torch

    X, y = points
    # the points the model gets right: ART's PGD draws a start for every point, Bastion's
    # attacks and ART's AutoPGD for these only
    right = robust_mlp.predict(X) == y
    X, y = X[right], y[right]
    eps, steps = 3.0, 40
    classifier = PyTorchClassifier(
        model=robust_mlp.module,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(64,),
        nb_classes=10,
        clip_values=(0.0, 16.0),
    )
    if attack == "pgd":
        peer: Any = ProjectedGradientDescent(
            classifier, norm=np.inf, eps=eps, eps_step=2.5 * eps / steps, max_iter=steps,
            num_random_init=1, batch_size=256, verbose=False,
        )  # fmt: skip
        ours_attack: EvasionAttack = PGD(PGDConfig(steps=steps))
    else:
        loss = attack.split("-")[1]
        peer = AutoProjectedGradientDescent(
            classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=100, nb_random_init=1,
            batch_size=256, loss_type="cross_entropy" if loss == "ce" else
            "difference_logits_ratio", verbose=False,
        )  # fmt: skip
        ours_attack = APGD(APGDConfig(loss=loss))  # type: ignore[arg-type]
    draws: list[np.ndarray] = []
    real_draw = art_apgd.random_sphere

    def recorded(*args: Any, **kwargs: Any) -> np.ndarray:
        out = real_draw(*args, **kwargs)
        draws.append(np.asarray(out, dtype=np.float32).astype(np.float64))
        return out

    monkeypatch.setattr(art_apgd, "random_sphere", recorded)
    monkeypatch.setattr(art_pgd, "random_sphere", recorded)
    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_art = peer.generate(X.astype(np.float32)).astype(np.float64)
    assert np.abs(x_art - X).max() <= eps + 1e-4
    art_broken = robust_mlp.predict(x_art) != y
    (start,) = draws

    def arts_start(
        self: Any, x0: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, corner: bool, **_: Any
    ) -> torch.Tensor:
        return torch.clamp(x0 + torch.as_tensor(start, dtype=x0.dtype), lo, hi)

    monkeypatch.setattr(_torch._Engine, "random_start", arts_start)
    ours = ours_attack.run(robust_mlp, X, y, eps=eps, constraints=BOX)
    assert 20 < art_broken.sum() < len(y) - 20
    missed = np.flatnonzero(art_broken & ~ours.success)
    assert missed.size == 0, f"ART broke points {missed.tolist()}, {ours.attack} did not"


def _ce_factor(logits: Any, y: Any) -> Any:
    """sigmoid(r - z_y) per row (r the log-sum-exp of the other logits): the cross-entropy's
    gradient over the direction the attacks take (:func:`_torch._ce_direction`)."""
    col = y.unsqueeze(1)
    if logits.shape[1] == 1:
        s = logits[:, 0]
        flip = 1.0 - 2.0 * y.to(s.dtype)
        return torch.sigmoid(s * flip).unsqueeze(1)
    others = torch.logsumexp(logits.scatter(1, col, -float("inf")), dim=1, keepdim=True)
    return torch.sigmoid(others - logits.gather(1, col))


def test_pgd_step_gradient_equals_autograd_cross_entropy(mlp: TorchAdapter) -> None:
    """PGD starts backward at the logits with the cross-entropy's direction: autograd's input
    gradient through the summed cross-entropy, up to its positive factor per row."""
    from bastion.attacks.evasion import _torch

    gen = torch.Generator().manual_seed(3)
    z = torch.rand((32, 64), generator=gen)
    y = torch.randint(0, 10, (32,), generator=gen)
    net = _torch._Net(
        mlp.module, (64,), None, None, "ce", bf16=False, channels_last=False, device=z.device
    )
    logits, losses, grad, cls = net.forward(z.clone(), y, need_grad=True, per_point=False)
    assert losses is None
    torch.testing.assert_close(cls, mlp.module(z).argmax(dim=1))
    assert grad is not None
    reference = z.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(mlp.module(reference), y, reduction="sum")
    (expected,) = torch.autograd.grad(loss, reference)
    factor = _ce_factor(mlp.module(z).detach(), y)
    torch.testing.assert_close(grad * factor, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(logits, mlp.module(z))
    assert net.loss_name == "ce"


@pytest.mark.parametrize("loss", ["ce", "dlr", "margin"])
def test_per_point_losses_and_gradients_equal_autograd(mlp: TorchAdapter, loss: str) -> None:
    """APGD's per-point losses and input gradients come from closed-form logit gradients:
    they equal autograd through the loss functions themselves."""
    from bastion.attacks.evasion import _torch

    gen = torch.Generator().manual_seed(5)
    z = torch.rand((48, 64), generator=gen)
    # 10 classes (DLR sorts the logits), 100 (it takes topk) and 2 logits (the margin)
    models = ((mlp.module, 10), (torch.nn.Linear(64, 100), 100), (torch.nn.Linear(64, 2), 2))
    for module, n_classes in models:
        y = torch.randint(0, n_classes, (48,), generator=gen)
        net = _torch._Net(
            module, (64,), None, None, loss, bf16=False, channels_last=False, device=z.device
        )  # type: ignore[arg-type]
        logits, losses, grad, cls = net.forward(z.clone(), y, need_grad=True, per_point=True)
        if cls is not None:  # the class the loss computed on the way equals argmax's
            torch.testing.assert_close(cls, logits.argmax(dim=1))
        assert losses is not None
        assert grad is not None
        name, fn = _torch._loss_function(loss, n_classes)  # type: ignore[arg-type]
        assert net.loss_name == name
        reference = z.clone().requires_grad_(True)
        expected_losses = fn(module(reference), y)
        (expected,) = torch.autograd.grad(expected_losses.sum(), reference)
        # float32 sums in another order: a wrong formula is off by O(1), not 1e-5
        torch.testing.assert_close(losses, expected_losses.detach(), rtol=1e-5, atol=1e-6)
        if name == "ce":  # its direction: the gradient over a positive factor per row
            grad = grad * _ce_factor(module(z).detach(), y)
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)
        # the closed form is the path taken: not a fallback through autograd of the loss
        closed = _torch._loss_and_seed(name, module(z).detach(), y)
        assert closed is not None


def test_cross_entropy_keeps_its_direction_where_autograd_cancels() -> None:
    """Autograd's cross-entropy gradient cancels on a confident model: softmax - one-hot
    loses its -1 at the true class past a margin of 17 in float32 and is 0 past 103;
    a sigmoid's s - 1 is 0 past s = 17; half precision fails sooner. The attacks stalled (a
    digits MLP with its logits x100 read robust accuracy 0.967 under PGD; 0.813 now).
    The direction the attacks take is the gradient over its positive factor per row:
    finite, the same sign pattern, and -1 at the true class, at any margin and precision."""
    from bastion.attacks.evasion import _torch

    s = torch.tensor([[-3.0], [0.5], [4.0], [30.0], [-30.0], [2.0], [120.0]])
    y = torch.tensor([0, 1, 1, 1, 0, 0, 1])
    losses, seed, cls = _torch._ce_direction(s, y, need_loss=True)
    assert losses is not None
    torch.testing.assert_close(losses, _torch._ce(s, y))
    assert seed[:, 0].tolist() == [1.0, -1.0, -1.0, -1.0, 1.0, 1.0, -1.0]
    assert cls.tolist() == [0, 1, 1, 1, 0, 1, 1]
    # a NaN logit leaves its row's direction NaN, as the gradient was (the NaN finding); an
    # infinite one keeps the way back under the overflow
    odd = torch.tensor([[float("nan")], [2.0], [float("inf")], [-float("inf")]])
    _, seed, _ = _torch._ce_direction(odd, torch.tensor([0, 1, 0, 1]), False)
    assert bool(torch.isnan(seed[0, 0]))
    assert seed[1:, 0].tolist() == [-1.0, 1.0, -1.0]

    for margin in (5.0, 20.0, 150.0):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            logits = torch.tensor([[margin, 0.0, -1.0], [0.0, margin, 2.0]], dtype=dtype)
            y3 = torch.tensor([0, 1])
            losses, seed, cls = _torch._ce_direction(logits, y3, need_loss=True)
            assert losses is not None
            assert seed.dtype == dtype
            assert cls.tolist() == [0, 1]
            assert seed[0, 0] == seed[1, 1] == -1  # the true class's term, never lost
            assert (seed[0, 1:] > 0).all()  # the way to each other class
            assert bool(torch.isfinite(losses).all())
            assert bool((losses >= 0).all())
            if margin == 20.0:  # one formula for every loss APGD compares (torch's
                # cross_entropy read 0 here, the direction's loss 2e-9)
                assert bool((_torch._ce(logits, y3) > 0).all())
            if margin == 5.0 and dtype == torch.float32:  # the gradient, where autograd is exact
                ref = logits.clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(_torch._ce(ref, y3).sum(), ref)
                torch.testing.assert_close(seed * _ce_factor(logits, y3), grad)
                torch.testing.assert_close(losses, _torch._ce(logits, y3))


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_predicted_class_from_the_loss_breaks_ties_as_argmax(loss: str) -> None:
    """The loop's "misclassified" test reads the class the loss computed on the way; on tied
    logits it must be argmax's (the first maximal index), as the final verification's."""
    from bastion.attacks.evasion import _torch

    gen = torch.Generator().manual_seed(11)
    logits = torch.randint(0, 3, (200, 10), generator=gen).to(torch.float32)  # many ties
    y = torch.randint(0, 10, (200,), generator=gen)
    closed = _torch._loss_and_seed(loss, logits, y)  # type: ignore[arg-type]
    assert closed is not None
    assert closed[2] is not None
    torch.testing.assert_close(closed[2], logits.argmax(dim=1))


def test_input_gradient_by_the_engine_equals_autograd_grad() -> None:
    """The loop calls autograd's engine directly; it must give ``torch.autograd.grad``'s
    gradient bit for bit, leave no gradient on the input, and refuse an input the output
    does not depend on, as autograd.grad does."""
    from bastion.attacks.evasion import _torch

    assert _torch._RUN_BACKWARD is not None  # the fast path is the one tested here
    torch.manual_seed(3)
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    for p in module.parameters():
        p.requires_grad_(False)
    z = torch.randn(9, 6, requires_grad=True)
    seed = torch.randn(9, 4)
    with torch.enable_grad():
        (expected,) = torch.autograd.grad(module(z), z, grad_outputs=seed)
        got = _torch._input_grad(module(z), z, seed)
        total = module(z).sum()
        (expected_total,) = torch.autograd.grad(total, z, grad_outputs=torch.ones(()))
        got_total = _torch._input_grad(module(z).sum(), z, torch.ones(()))
    assert torch.equal(got, expected)
    assert torch.equal(got_total, expected_total)
    assert z.grad is None
    unused = torch.randn(9, 6, requires_grad=True)
    with torch.enable_grad(), pytest.raises(RuntimeError, match="not have been used"):
        _torch._input_grad(module(z), unused, seed)


def test_the_attack_takes_the_adapters_verdict_on_its_outputs() -> None:
    """A bounded logit the adapter's check accepted (on rows it reaches) is attacked on
    rows that mask it throughout; the attack's own check, on its first batch alone, refused
    it (from a review)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(4, 1)

    class Masked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = linear

        def forward(self, x: Any) -> Any:
            return torch.where(x[:, :1] > 0, 2 * torch.sigmoid(self.linear(x)) - 1, -1.0)

    rows = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    model = TorchAdapter(Masked(), classes=[0, 1])
    model.predict(rows)
    assert model.logits_accepted
    masked = rows[rows[:, 0] <= 0][:8]
    result = PGD(PGDConfig(steps=2)).run(model, masked, model.predict(masked), eps=0.1)
    assert len(result.success) == len(masked)


# torch warns that a reentrant checkpoint under no_grad (the predictions) takes no gradient
@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")
def test_a_reentrant_checkpoint_is_named_with_its_remedy() -> None:
    """torch.utils.checkpoint with use_reentrant=True gives no input gradient: the attack
    and loss_gradient ended in a bare RuntimeError (from a review)."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    class Checkpointed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: Any) -> Any:
            return checkpoint(self.body, x, use_reentrant=True)

    model = TorchAdapter(Checkpointed())
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    y = model.predict(X)
    with pytest.raises(ModelError, match="use_reentrant=False"):
        model.loss_gradient(X, y)
    with pytest.raises(ModelError, match="use_reentrant=False"):
        PGD(PGDConfig(steps=2)).run(model, X, y, eps=0.1)


def test_release_cuda_graph_memory_drops_this_threads_anchors() -> None:
    """The public release lets the shared capture pool's anchors go (this thread's only)."""
    import threading

    from bastion.attacks.evasion import _graphs, release_cuda_graph_memory

    _graphs._local.anchors = {"cuda:0": "anchor"}
    seen: list[object] = []
    other = threading.Thread(target=lambda: seen.append(getattr(_graphs._local, "anchors", None)))
    other.start()
    other.join()
    assert seen == [None]  # another thread has pools of its own
    release_cuda_graph_memory()
    assert _graphs._local.anchors == {}


# -- from a review of the rounding path: fail-opens where breakable points read robust --------
def _mixed_constraints(rounding: bool = True) -> FeatureConstraints:
    """0 continuous, 1 integer, 2 immutable id, 3-5 a one-hot group, 6 continuous in [0, 1]."""
    cons = FeatureConstraints(
        names=tuple(f"f{i}" for i in range(7)),
        lower=np.array([-5, 0, -1e9, 0, 0, 0, 0.0]),
        upper=np.array([5, 10, 1e9, 1, 1, 1, 1.0]),
        bound_source=("declared",) * 7,
        immutable=np.array([0, 0, 1, 0, 0, 0, 0], bool),
        integer=np.array([0, 1, 0, 1, 1, 1, 0], bool),
        one_hot_groups=(np.array([3, 4, 5]),),
        scale=np.array([1.0, 2.0, 1.0, 0.5, 0.5, 0.5, 0.3]),
    )
    if rounding:
        return cons
    return dataclasses.replace(cons, integer=np.zeros(7, bool), one_hot_groups=())


def _mixed_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.zeros((n, 7))
    X[:, 0] = rng.normal(0, 1, n)
    X[:, 1] = rng.integers(0, 11, n)
    X[:, 2] = np.arange(n) * 10.0
    X[np.arange(n), 3 + rng.integers(0, 3, n)] = 1
    X[:, 6] = rng.uniform(0, 1, n)
    return X


def _mixed_model(seed: int) -> TorchAdapter:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        net[0].weight[:, 2] = 0.0  # the id is read by nobody
    return TorchAdapter(net, classes=[0, 1, 2])


def test_fgsm_with_rounding_checks_its_step_within_the_budget_a_box_needs() -> None:
    # a budget that cut the loop before the step was evaluated threw the step away on the
    # rounding path: 0 of 24 breakable points found with 4 queries per point (the box path
    # deferred its last iterate to the verification; the rounding path now does too)
    X, model = _mixed_rows(60, 0), _mixed_model(0)
    y = np.asarray(model.predict(X))
    for budget in (None, Budget(max_queries_per_sample=4), Budget(max_queries=180)):
        box = FGSM().run(model, X, y, eps=2.5, constraints=_mixed_constraints(False), budget=budget)
        rounded = FGSM().run(model, X, y, eps=2.5, constraints=_mixed_constraints(), budget=budget)
        assert box.success.sum() > 15
        assert rounded.success.sum() >= box.success.sum() - 3, budget
        assert rounded.queries.max() <= 3  # clean, gradient, the step's one verification
        assert not _mixed_constraints().violations(rounded.x_adv, X)


@pytest.mark.parametrize("rounding", [False, True])
def test_a_chunk_that_spends_its_points_budgets_stops_no_other_chunk(rounding: bool) -> None:
    # the first chunk's per-point cap set a stop that ended every later chunk's restarts
    # after the first: 23 points read robust with 5 of their 32 queries spent
    X, model = _mixed_rows(100, 5), _mixed_model(2)
    y = np.asarray(model.predict(X))
    cons = _mixed_constraints(rounding)
    runs = [
        PGD(PGDConfig(steps=3, restarts=8, batch_size=size)).run(
            model, X, y, eps=0.6, constraints=cons, budget=Budget(max_queries_per_sample=32)
        )
        for size in (512, 10)
    ]
    np.testing.assert_array_equal(runs[0].success, runs[1].success)
    for run in runs:
        unbroken = run.clean_correct & ~run.success
        assert unbroken.any()
        assert run.queries.max() <= 32
        assert run.queries[unbroken].min() >= 29  # their budget spent, not 5 of 32
        assert run.stopped == "query budget"


def test_without_early_exit_one_points_failed_confirmations_stop_only_that_point() -> None:
    X, model = _mixed_rows(40, 0), _mixed_model(0)
    y = np.asarray(model.predict(X))
    budget = Budget(max_queries_per_sample=9)
    found = {}
    for early in (True, False):
        for size in (512, 7):
            attack = PGD(PGDConfig(steps=5, early_exit=early, batch_size=size))
            result = attack.run(
                model, X, y, eps=2.0, constraints=_mixed_constraints(), budget=budget
            )
            found[early, size] = int(result.success.sum())
            assert result.stopped == "query budget"  # rows left at their cap (it said None)
    assert len(set(found.values())) == 1, found  # was 10 at batch size 512, 15 at 7


def _linear(weights: list[float], bias: float) -> TorchAdapter:
    net = torch.nn.Sequential(torch.nn.Linear(len(weights), 2))
    with torch.no_grad():  # logit 1 - logit 0 = weights . x + bias
        net[0].weight[:] = torch.tensor([[0.0] * len(weights), weights])
        net[0].bias[:] = torch.tensor([0.0, bias])
    return TorchAdapter(net, classes=[0, 1])


@pytest.mark.parametrize(
    ("scale", "norm", "eps", "iterate", "kept"),
    [
        # L2: the radius the revert freed lengthens the continuous move
        ([1.0, 1.0, 1.0], "2", 1.2, [1.0, 1.0, 0.5], 1.2),
        ([0.4, 0.6, 1.0], "inf", 2.0, [1 / 0.4, 1 / 0.6, 0.5], 0.5),
    ],
)
def test_a_category_switch_that_leaves_the_ball_keeps_the_rows_category(
    scale: list[float], norm: str, eps: float, iterate: list[float], kept: float
) -> None:
    # an iterate that raised a member to a tie: the switch wins the tie, but costs more than
    # eps; the candidate was rejected where the row's own category (and the continuous
    # move) lies inside the ball
    from bastion.attacks.evasion._torch import _project

    cons = FeatureConstraints(
        names=("cat_a", "cat_b", "num"), lower=np.array([0.0, 0.0, -10.0]),
        upper=np.array([1.0, 1.0, 10.0]), bound_source=("declared",) * 3,
        immutable=np.zeros(3, bool), integer=np.zeros(3, bool),
        one_hot_groups=(np.array([0, 1]),), scale=np.asarray(scale),
    )  # fmt: skip
    x0 = np.array([[1.0, 0.0, 0.0]])
    x, norms = _project(np.array([iterate]), x0, np.asarray(scale), cons, norm, eps)
    np.testing.assert_allclose(x, [[1.0, 0.0, kept]], atol=1e-6)
    assert norms[0] <= eps


@pytest.mark.parametrize("attack", [FGSM(), PGD(PGDConfig(steps=20)), APGD(APGDConfig(n_iter=20))])
def test_l2_rounding_toward_the_original_spends_the_freed_radius(attack: EvasionAttack) -> None:
    # (0.707, 0.707) with an integer second feature became (0.707, 0), classified right;
    # (1, 0), at the same radius, breaks the point
    cons = FeatureConstraints(
        names=("f0", "k"), lower=np.array([-5.0, -5]), upper=np.array([5.0, 5]),
        bound_source=("declared",) * 2, immutable=np.zeros(2, bool),
        integer=np.array([0, 1], bool), scale=np.ones(2),
    )  # fmt: skip
    model = _linear([-1.0, -1.0], 0.9)
    X, y = np.array([[0.0, 0.0]]), np.array([1])
    result = attack.run(model, X, y, eps=1.0, norm="2", constraints=cons)
    assert result.success[0]
    assert result.perturbation[0] <= 1.0 + 1e-9
    assert not cons.violations(result.x_adv, X)


@pytest.mark.parametrize("rounding", [False, True])
def test_more_restarts_under_a_per_point_cap_find_no_fewer_points(rounding: bool) -> None:
    # from the review of the fix above: restarts after every point had spent its cap ran
    # with no query left, and each one's start replaced the last one's pending step
    X, model = _mixed_rows(100, 5), _mixed_model(2)
    y = np.asarray(model.predict(X))
    cons, budget = _mixed_constraints(rounding), Budget(max_queries_per_sample=8)
    one, three = (
        PGD(PGDConfig(steps=10, restarts=restarts)).run(
            model, X, y, eps=0.6, constraints=cons, budget=budget
        )
        for restarts in (1, 3)
    )
    assert not (one.success & ~three.success).any()
    assert three.extra["restarts"] == 1  # the cap left nothing for a second
    assert three.stopped == "query budget"


@pytest.mark.parametrize("rounding", [False, True])
def test_apgd_cut_by_the_budget_hands_its_moved_iterate_to_the_verification(
    rounding: bool,
) -> None:
    # the step taken before a refused forward was thrown away (PGD deferred it): 50
    # iterations under a cap found fewer points than 2 iterations without one
    X, model = _mixed_rows(60, 0), _mixed_model(0)
    y = np.asarray(model.predict(X))
    cons = _mixed_constraints(rounding)
    cap = 5 if rounding else 4  # the loop's start and one step
    short = APGD(APGDConfig(n_iter=2)).run(model, X, y, eps=2.5, constraints=cons)
    capped = APGD(APGDConfig(n_iter=50)).run(
        model, X, y, eps=2.5, constraints=cons, budget=Budget(max_queries_per_sample=cap)
    )
    assert capped.queries.max() <= cap
    assert capped.stopped == "query budget"
    assert capped.success.sum() >= short.success.sum() > 0


def test_a_switch_leaving_the_l2_ball_is_reverted_then_the_radius_filled() -> None:
    from bastion.attacks.evasion._torch import _project

    cons = FeatureConstraints(
        names=("k", "a", "b", "f"), lower=np.array([-5.0, 0, 0, -5]),
        upper=np.array([5.0, 1, 1, 5]), bound_source=("declared",) * 4,
        immutable=np.zeros(4, bool), integer=np.array([1, 0, 0, 0], bool),
        one_hot_groups=(np.array([1, 2]),), scale=np.ones(4),
    )  # fmt: skip
    x0 = np.array([[0.0, 1, 0, 0]])
    for iterate in ([0.55, 0.5, 0.5, 0.3], [0.3, 0.3, 0.7, 0.4]):
        x, norms = _project(np.array([iterate]), x0, np.ones(4), cons, "2", 1.2)
        np.testing.assert_allclose(x, [[0.0, 1.0, 0.0, 1.2]], atol=1e-6)
        assert norms[0] <= 1.2


def test_apgd_cut_by_ctrl_c_hands_its_iterate_to_the_verification(
    mlp: TorchAdapter, points: tuple[np.ndarray, np.ndarray]
) -> None:
    # as a budget cut does (and PGD's Ctrl-C): the same step cut by Ctrl-C lost every point
    X, y = points

    class Interrupted(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module, at: int) -> None:
            super().__init__()
            self.inner, self.at, self.calls = inner, at, 0

        def forward(self, x: Any) -> Any:
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
            return self.inner(x)

    attacked = int((mlp.predict(X) == y).sum())
    apgd = APGD(APGDConfig(n_iter=20, early_exit=False))
    budget = Budget(max_queries=2 * len(X) + attacked)  # the clean pass and one loop forward
    cut = apgd.run(mlp, X, y, eps=1.5, constraints=BOX, seed=3, budget=budget)
    # the clean pass, the loop's first forward, then Ctrl-C in the second
    module = Interrupted(mlp.module, at=3)
    stopped = apgd.run(TorchAdapter(module, classes=list(range(10))), X, y, eps=1.5,
                       constraints=BOX, seed=3)  # fmt: skip
    assert stopped.stopped == "interrupted"
    assert stopped.success.sum() == cut.success.sum() > 0

"""White-box evasion on a CUDA device: the same contract as on the CPU, the accelerator's own
paths (broken points leave every 8 steps, bf16 / channels-last), and no device-to-host sync
per step.

Marked ``gpu`` (deselected by default; ``pytest -m gpu`` runs them) and skipped where torch
sees no CUDA device. CI has none; ``benchmarks/gpu_evasion.sh`` runs them on a machine that
has one, beside the benchmark.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bastion.attacks.budget import Budget  # noqa: E402
from bastion.attacks.constraints import FeatureConstraints  # noqa: E402
from bastion.attacks.evasion.apgd import APGD  # noqa: E402
from bastion.attacks.evasion.pgd import PGD, PGDConfig  # noqa: E402
from bastion.models.torch import TorchAdapter  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    # torch's own notice on the autograd thread's first cuBLAS call, not Bastion's
    pytest.mark.filterwarnings("ignore:Attempting to run cuBLAS, but there was no current CUDA"),
]


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


@pytest.fixture(scope="module")
def digits() -> Any:
    return M.digits()


@pytest.fixture(scope="module")
def points(digits: Any) -> tuple[np.ndarray, np.ndarray]:
    return digits.X_test[:N_POINTS], digits.y_test[:N_POINTS]


@pytest.fixture(scope="module")
def nets(digits: Any) -> dict[str, Any]:
    """Trained once on the CPU; each test wraps a copy for the device it needs."""
    return {
        "mlp": M.train(M.mlp(64, 10), digits.X_train, digits.y_train),
        "cnn": M.train(M.cnn(), digits.X_train, digits.y_train, input_shape=(1, 8, 8), epochs=15),
    }


def _adapter(nets: dict[str, Any], which: str, device: str) -> TorchAdapter:
    import copy

    shape = (1, 8, 8) if which == "cnn" else None
    return TorchAdapter(copy.deepcopy(nets[which]), device=device, input_shape=shape)


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_results_keep_the_contract_and_the_cpu_strength(
    attack: str, norm: str, nets: dict[str, Any], points: tuple[np.ndarray, np.ndarray]
) -> None:
    """Feasible, inside the ball, unbroken points unchanged, each success the model's own
    verdict; robust accuracy as on the CPU up to the random start (the devices' generators
    differ), within 3 points in 100."""
    X, y = points
    eps = 1.5 if norm == "inf" else 12.0
    robust = {}
    for device in ("cuda", "cpu"):
        model = _adapter(nets, "mlp", device)
        result = C.white_box(attack, 20).run(
            model, X, y, eps=eps, norm=norm, constraints=BOX, seed=0
        )
        C.check_result(result, model, X, BOX)
        assert result.success.sum() > 20
        robust[device] = result.metrics()["robust_accuracy"] or 0.0
    assert abs(robust["cuda"] - robust["cpu"]) <= 0.03


def test_pgd_at_large_eps_breaks_an_undefended_model(
    nets: dict[str, Any], points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    model = _adapter(nets, "cnn", "cuda")
    result = PGD(PGDConfig(steps=20)).run(model, X, y, eps=8.0, constraints=BOX)
    assert (result.metrics()["attack_success_rate"] or 0) > 0.9
    C.check_result(result, model, X, BOX)


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_broken_points_leave_every_few_steps_and_the_same_points_break(
    attack: str, nets: dict[str, Any], points: tuple[np.ndarray, np.ndarray]
) -> None:
    """The eager loop on an accelerator (graphs off): broken points leave every 8 steps."""
    X, y = points
    model = _adapter(nets, "mlp", "cuda")
    off = C.white_box(attack, 30, early_exit=False).run(model, X, y, eps=1.5, constraints=BOX)
    on = C.white_box(attack, 30, cuda_graphs=False).run(model, X, y, eps=1.5, constraints=BOX)
    assert on.extra["loop_forward_passes"] < off.extra["loop_forward_passes"]
    assert abs(int(on.success.sum()) - int(off.success.sum())) <= 2
    assert on.success.sum() > 50
    C.check_result(on, model, X, BOX)


def test_bf16_channels_last_is_verified_in_full_precision(
    nets: dict[str, Any], points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    model = _adapter(nets, "cnn", "cuda")
    fp32 = PGD(PGDConfig(steps=20)).run(model, X, y, eps=2.0, constraints=BOX)
    fast = PGD(PGDConfig(steps=20, precision="bf16", channels_last=True)).run(
        model, X, y, eps=2.0, constraints=BOX
    )
    assert fast.extra["precision"] == "bf16"
    C.check_result(fast, model, X, BOX)
    assert abs(int(fast.success.sum()) - int(fp32.success.sum())) <= 0.05 * len(X)
    # the model is handed back as it came: fp32 weights, default memory format
    conv = next(m for m in model.module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.dtype == torch.float32
    assert conv.weight.is_contiguous()


def test_query_budgets_are_never_exceeded(
    nets: dict[str, Any], points: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = points
    model = _adapter(nets, "mlp", "cuda")
    # room for ~10 loop forwards: step 0, the two warm-up steps, then the budget ends among
    # the graph's replays
    limit = 12 * len(X)
    result = PGD(PGDConfig(steps=40, early_exit=False)).run(
        model, X, y, eps=0.5, constraints=BOX, budget=Budget(max_queries=limit)
    )
    assert result.stopped == "query budget"
    assert result.extra["cuda_graph"] is True
    assert result.queries.sum() <= limit
    C.check_result(result, model, X, BOX)
    capped = APGD().run(
        model, X, y, eps=1.0, constraints=BOX, budget=Budget(max_queries_per_sample=10)
    )
    assert capped.queries.max() <= 10


def _syncs(run: Callable[[], Any]) -> int:
    """Device-to-host synchronisations while ``run`` runs, as torch's sync debug mode counts
    them (one warning each)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_no_device_to_host_sync_per_step(
    attack: str, nets: dict[str, Any], points: tuple[np.ndarray, np.ndarray]
) -> None:
    """Twice the steps may add a few syncs (the early exit looks every 8 steps); one per step
    would add 32."""
    X, y = points
    model = _adapter(nets, "mlp", "cuda")

    def attack_with(steps: int) -> Callable[[], Any]:
        return lambda: C.white_box(attack, steps).run(model, X, y, eps=0.5, constraints=BOX, seed=0)

    attack_with(8)()  # warm-up: the first call's one-off syncs (cuBLAS set-up) stay out
    short, long = _syncs(attack_with(32)), _syncs(attack_with(64))
    assert short > 0  # the counter works: results come back to the host at least once
    assert long - short < 32


@pytest.mark.parametrize(
    ("attack", "which", "norm", "precision"),
    [
        ("pgd", "mlp", "inf", "fp32"),
        ("pgd", "mlp", "2", "fp32"),
        ("pgd", "cnn", "inf", "bf16"),
        ("apgd", "mlp", "inf", "fp32"),
        ("apgd", "mlp", "2", "fp32"),
        ("apgd", "cnn", "inf", "bf16"),
    ],
)
def test_replays_of_a_captured_step_give_the_eager_results(
    attack: str,
    which: str,
    norm: str,
    precision: str,
    nets: dict[str, Any],
    points: tuple[np.ndarray, ...],
) -> None:
    """Early exit off: PGD (APGD) captures one step (iteration) as a CUDA graph and replays
    it; the same points break, with the same adversarial examples and queries, as with every
    step eager."""
    X, y = points
    model = _adapter(nets, which, "cuda")
    eps = 1.5 if norm == "inf" else 12.0
    runs = [
        C.white_box(
            attack,
            30,
            early_exit=False,
            cuda_graphs=graphs,
            precision=precision,
            channels_last=which == "cnn",
        ).run(model, X, y, eps=eps, norm=norm, constraints=BOX, seed=1)
        for graphs in (True, False)
    ]
    graphed, eager = runs
    assert graphed.extra["cuda_graph"] is True
    assert eager.extra["cuda_graph"] is False
    np.testing.assert_array_equal(graphed.success, eager.success)
    np.testing.assert_allclose(graphed.x_adv, eager.x_adv, atol=1e-5)
    np.testing.assert_array_equal(graphed.queries, eager.queries)
    assert graphed.success.sum() > 20
    C.check_result(graphed, model, X, BOX)


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_chunks_of_equal_size_replay_one_kept_graph(
    attack: str, nets: dict[str, Any], points: tuple[np.ndarray, ...]
) -> None:
    """Chunks of 64 rows (and restarts): a graph that stayed valid to its round's end is
    replayed by the next round of as many rows, its values loaded into the graph's tensors;
    the same results as every step eager."""
    X, y = points
    model = _adapter(nets, "mlp", "cuda")
    runs = [
        C.white_box(
            attack, 30, early_exit=False, batch_size=64, restarts=2, cuda_graphs=graphs
        ).run(model, X, y, eps=1.0, constraints=BOX, seed=1)
        for graphs in (True, False)
    ]
    graphed, eager = runs
    assert graphed.extra["cuda_graph"] is True
    np.testing.assert_array_equal(graphed.success, eager.success)
    np.testing.assert_allclose(graphed.x_adv, eager.x_adv, atol=1e-5)
    np.testing.assert_array_equal(graphed.queries, eager.queries)
    assert graphed.success.sum() > 20
    C.check_result(graphed, model, X, BOX)


def test_captures_share_a_pool_that_outlives_their_graphs(
    nets: dict[str, Any], points: tuple[np.ndarray, ...]
) -> None:
    """The graph of a second attack of the same size takes its memory from the pool the
    first capture left cached: no new segment from the driver (each capture used to get a
    pool of its own, and asked for its memory again: 6 segments per attack on an H200).
    After release_cuda_graph_memory, a new pool serves the next capture."""
    from bastion.attacks.evasion import release_cuda_graph_memory

    X, y = points
    model = _adapter(nets, "mlp", "cuda")
    attack = C.white_box("pgd", 30, early_exit=False)
    first = attack.run(model, X, y, eps=1.0, constraints=BOX, seed=1)
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()["segment.all.allocated"]
    again = attack.run(model, X, y, eps=1.0, constraints=BOX, seed=1)
    torch.cuda.synchronize()
    assert again.extra["cuda_graph"] is True
    assert torch.cuda.memory_stats()["segment.all.allocated"] == before
    np.testing.assert_array_equal(again.x_adv, first.x_adv)
    release_cuda_graph_memory()
    fresh = attack.run(model, X, y, eps=1.0, constraints=BOX, seed=1)
    assert fresh.extra["cuda_graph"] is True
    np.testing.assert_array_equal(fresh.x_adv, first.x_adv)


@pytest.mark.parametrize(
    ("which", "recapture", "precision"),
    [
        ("mlp", False, "fp32"),
        ("mlp", True, "fp32"),
        ("cnn", True, "fp32"),
        ("mlp", False, "bf16"),
        ("cnn", True, "bf16"),
    ],
)
def test_pgd_graph_with_early_exit_finds_what_the_eager_loop_finds(
    which: str,
    recapture: bool,
    precision: str,
    nets: dict[str, Any],
    points: tuple[np.ndarray, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Early exit on: broken rows stay in the graph's batch, stopped, and are recorded at
    each wait for the device (in bf16 once the model's own precision confirms them); with
    ``recapture`` they leave under a new, smaller capture at each look (forced here; the
    clock decides otherwise). The same points break as in the eager loop, from the same
    adversarial iterates up to a last bit of a smaller batch."""
    from bastion.attacks.evasion import _graphs

    if recapture:
        monkeypatch.setattr(_graphs.ReplayClock, "worth_recapturing", lambda *a: True)
    X, y = points
    model = _adapter(nets, which, "cuda")
    runs = [
        PGD(PGDConfig(steps=40, cuda_graphs=graphs, precision=precision)).run(
            model, X, y, eps=1.0, constraints=BOX, seed=1
        )
        for graphs in (True, False)
    ]
    graphed, eager = runs
    assert graphed.extra["cuda_graph"] is True
    assert eager.extra["cuda_graph"] is False
    both = graphed.success & eager.success
    assert both.sum() >= max(graphed.success.sum(), eager.success.sum()) - 2
    close = np.all(np.abs(graphed.x_adv[both] - eager.x_adv[both]) <= 1e-5, axis=1)
    assert close.mean() >= 0.95
    attacked = graphed.clean_correct
    # a row kept in the batch takes the batch's forwards: never fewer queries than eagerly
    assert (graphed.queries[attacked] >= eager.queries[attacked]).mean() >= 0.95
    # a refuted bf16 verdict moves on: it is not confirmed again at every look
    confirmations = graphed.extra["confirmation_queries"]
    assert confirmations <= eager.extra["confirmation_queries"] + 2
    assert graphed.success.sum() > 20
    C.check_result(graphed, model, X, BOX)


class _SyncsInForward(torch.nn.Module):
    """A model whose forward pass reads a value back to the host (cannot be captured)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Any) -> Any:
        out = self.inner(x)
        if float(out.detach().abs().max()) > 1e30:  # a host sync on every call
            return out * 0
        return out


def test_a_module_that_cannot_be_captured_runs_eagerly(
    nets: dict[str, Any], points: tuple[np.ndarray, np.ndarray]
) -> None:
    import copy

    X, y = points
    model = TorchAdapter(_SyncsInForward(copy.deepcopy(nets["mlp"])), device="cuda")
    config = {"steps": 20, "early_exit": False}
    tried = PGD(PGDConfig(**config)).run(model, X, y, eps=1.5, constraints=BOX, seed=1)  # type: ignore[arg-type]
    eager = PGD(PGDConfig(**config, cuda_graphs=False)).run(  # type: ignore[arg-type]
        model, X, y, eps=1.5, constraints=BOX, seed=1
    )
    assert tried.extra["cuda_graph"] is False
    np.testing.assert_array_equal(tried.success, eager.success)
    np.testing.assert_array_equal(tried.queries, eager.queries)
    C.check_result(tried, model, X, BOX)
    # the failed capture left the device's random generators in capture mode: every later
    # draw raised "Offset increment outside graph capture encountered unexpectedly"
    torch.manual_seed(0)
    assert torch.rand(4, device="cuda").shape == (4,)


@pytest.mark.parametrize("kind", ["uniform", "normal", "radius"])
def test_each_rows_noise_on_the_device_is_its_row_of_the_whole_blocks_draw(kind: str) -> None:
    """On an accelerator every block is drawn whole (counter-based draws are laid out by the
    tensor's size) and each row takes its row of it, by a slice where a block's rows are
    consecutive and by an index where they are not. A block there holds about a million
    numbers: rows of 1,000 numbers make blocks of 1,048 rows."""
    from bastion.attacks.evasion import _torch

    net = type("Net", (), {"device": torch.device("cuda")})()
    eng = _torch._Engine(net, None, "inf", 0.1, False, seed=11)  # type: ignore[arg-type]
    like = torch.zeros(1, dtype=torch.float32, device="cuda")
    width = 1 if kind == "radius" else 1000
    for restart in (1, 2):
        whole = eng._noise(kind, np.arange(2100), restart, width, like)
        subsets = (np.arange(7), np.array([3, 1047, 1048, 2099]), np.arange(1040, 1060))
        for rows in (*subsets, np.array([1025, 3, 2099, 1])):
            part = eng._noise(kind, rows, restart, width, like)
            torch.testing.assert_close(part, whole[torch.as_tensor(rows)], rtol=0, atol=0)

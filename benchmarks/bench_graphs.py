"""CUDA graphs in Bastion's white-box attacks, switched on and off: what each use saves.

An ablation, not a comparison with a peer: the same attack, model and points, with
``cuda_graphs`` on and off, for the three uses of a graph that no CPU can measure:

- early exit off (one graph per round);
- early exit on (broken rows kept in the graph's batch; they leave under a new capture when
  the attack's own timings say a smaller batch pays);
- several chunks (``--batch-size`` below the number of points): one capture for every chunk
  of equal size.

For PGD and APGD-CE on the digits MLP or CNN (``bench_evasion.make_model``), wall time is
the best of ``--repeat`` runs, with robust accuracy and total queries (kept rows take
forwards, so early exit with a graph may spend more queries than without). Needs a CUDA
device (``--device cpu`` runs no graph: a smoke test of the script).

Usage::

    python benchmarks/bench_graphs.py [--model mlp|cnn] [--points 8192] [--batch-size 512]
        [--steps 40] [--eps 0.125] [--repeat 3] [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.evasion import _graphs
from bastion.attacks.evasion.apgd import APGD, APGDConfig
from bastion.attacks.evasion.pgd import PGD, PGDConfig
from bastion.models.torch import TorchAdapter
from bench_evasion import SHAPES, available_device, make_model, points


def timed(
    attack: Any, model: TorchAdapter, X: Any, y: Any, eps: float, repeat: int
) -> tuple[float, Any]:
    """Best wall time of ``repeat`` seeded runs (the device drained around each), and the
    last run's result."""
    box = FeatureConstraints.box(X.shape[1], 0.0, 1.0)
    drain = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    best, result = float("inf"), None
    for r in range(repeat):
        drain()
        start = time.perf_counter()
        result = attack.run(model, X, y, eps=eps, constraints=box, seed=r)
        drain()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--points", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=40, help="PGD steps (APGD: 100)")
    parser.add_argument("--eps", type=float, default=0.125)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--device", default="cuda", help="cuda; cpu runs no graph (smoke test)")
    args = parser.parse_args(argv)
    device = available_device(args.device)
    if device is None:
        return 2
    net, X_all, y_all = make_model(args.model, device)
    X, y = points(X_all, y_all, args.points)
    model = TorchAdapter(net, device=str(device), input_shape=SHAPES[args.model])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"bench_graphs: {args.model}, {len(X)} points, {where}, "
        f"L-inf eps {args.eps}, {args.precision}, best of {args.repeat}, wall time"
    )
    print(f"{'attack':<56}{'graphs':>7}{'time ms':>9}{'robust':>8}{'queries':>10}  graph ran")
    # (name, attack, early exit, batch size, recapture): recapture None lets the attack's
    # replay clock decide when broken rows leave a graph's batch under a new capture;
    # False never recaptures (they stay until every row broke): what the clock's choices
    # save or cost
    setups = [
        (f"PGD {args.steps}, early exit off, one chunk", "pgd", False, len(X), None),
        (f"PGD {args.steps}, early exit on, one chunk", "pgd", True, len(X), None),
        (f"PGD {args.steps}, early exit on, one chunk, no recapture", "pgd", True, len(X),
         False),
        (f"PGD {args.steps}, early exit off, batch {args.batch_size}", "pgd", False,
         args.batch_size, None),
        (f"PGD {args.steps}, early exit on, batch {args.batch_size}", "pgd", True,
         args.batch_size, None),
        ("APGD-CE 100, early exit off, one chunk", "apgd", False, len(X), None),
        ("APGD-CE 100, early exit on, one chunk", "apgd", True, len(X), None),
        ("APGD-CE 100, early exit on, one chunk, no recapture", "apgd", True, len(X), False),
        (f"APGD-CE 100, early exit on, batch {args.batch_size}", "apgd", True,
         args.batch_size, None),
    ]  # fmt: skip
    clock_choice = _graphs.ReplayClock.worth_recapturing
    for name, kind, early_exit, batch, recapture in setups:
        # with no graph there is nothing to recapture: those rows run with graphs only
        for graphs in (False, True) if recapture is None else (True,):
            options = {
                "early_exit": early_exit,
                "batch_size": batch,
                "cuda_graphs": graphs,
                "precision": args.precision,
            }
            attack = (
                PGD(PGDConfig(steps=args.steps, **options))
                if kind == "pgd"
                else APGD(APGDConfig(**options))
            )
            if recapture is False:
                _graphs.ReplayClock.worth_recapturing = lambda *a, **k: False  # type: ignore[method-assign]
            try:
                seconds, result = timed(attack, model, X, y, args.eps, args.repeat)
            finally:
                _graphs.ReplayClock.worth_recapturing = clock_choice  # type: ignore[method-assign]
            robust = result.metrics()["robust_accuracy"]
            print(
                f"{name:<56}{'on' if graphs else 'off':>7}{seconds * 1e3:>9.1f}"
                f"{robust:>8.3f}{int(result.queries.sum()):>10}  {result.extra['cuda_graph']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

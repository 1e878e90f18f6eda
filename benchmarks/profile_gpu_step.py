"""Where a white-box step's time goes on a CUDA device: kernels launched and GPU busy time per
step, against wall time per step, for the floor (plain forward + input-gradient backward) and
for Bastion's PGD with early exit off, fp32 and bf16.

A step whose wall time is well above its kernels' busy time is bound by launching them (the
host), not by the GPU: fewer, fused kernels help there, faster kernels do not.

Usage (on a machine with CUDA)::

    PYTHONPATH=src python benchmarks/profile_gpu_step.py [--model mlp|cnn] [--points 4096]
        [--steps 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
import bench_evasion as bench
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.evasion.pgd import PGD, PGDConfig
from bastion.models.torch import TorchAdapter


def kernels(prof: Any) -> tuple[int, float]:
    """Kernels run and their summed GPU time (seconds)."""
    n, busy = 0, 0.0
    for e in prof.events():
        if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA:
            n += 1
            time_us = e.device_time if hasattr(e, "device_time") else e.cuda_time
            busy += float(time_us) * 1e-6
    return n, busy


def measure(name: str, fn: Callable[[], Any], steps: int, device: torch.device) -> str:
    fn()  # warm-up
    bench.sync(device)
    t0 = time.perf_counter()
    fn()
    bench.sync(device)
    wall = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        bench.sync(device)
    n, busy = kernels(prof)
    return (
        f"{name:34s} wall {wall / steps * 1e6:8.1f} us/step   kernels {n / steps:6.1f}/step   "
        f"GPU busy {busy / steps * 1e6:8.1f} us/step ({busy / wall:.0%} of wall)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--points", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument(
        "--host",
        action="store_true",
        help="instead: where the host's time goes in whole PGD runs (cProfile, graphs on)",
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    net, X_all, y_all = bench.make_model(args.model, device)
    X, y = bench.points(X_all, y_all, args.points)
    shape = bench.SHAPES[args.model]
    model = TorchAdapter(net, device="cuda", input_shape=shape)
    box = FeatureConstraints.box(X.shape[1], 0.0, 1.0)

    def pgd(precision: str, channels_last: bool = False, graphs: bool = True) -> Callable[[], Any]:
        config = PGDConfig(
            steps=args.steps,
            early_exit=False,
            batch_size=len(X),
            precision=precision,  # type: ignore[arg-type]
            channels_last=channels_last,
            cuda_graphs=graphs,
        )
        return lambda: PGD(config).run(model, X, y, eps=0.125, constraints=box, seed=0)

    if args.host:
        return host_profile(pgd("fp32"))
    print(f"profile_gpu_step: {args.model}, {len(X)} points, {args.steps} steps, "
          f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")  # fmt: skip
    lines = [
        measure("floor (fwd + input-grad bwd)",
                lambda: bench.floor(net, X, y, args.steps, device, shape), args.steps, device),
        measure("bastion PGD fp32, eager steps", pgd("fp32", graphs=False), args.steps, device),
        measure("bastion PGD fp32, cuda graph", pgd("fp32"), args.steps, device),
        measure("bastion PGD bf16, cuda graph", pgd("bf16", args.model == "cnn"),
                args.steps, device),
    ]  # fmt: skip
    print("\n".join(lines))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        pgd("fp32", graphs=False)()
        bench.sync(device)
    try:
        table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=15)
    except Exception:  # older torch names the column after CUDA
        table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15)
    print(table)
    return 0


def host_profile(run: Callable[[], Any]) -> int:
    """cProfile of three whole runs after a warm one: the host's time by function (time
    spent waiting for the GPU shows up in the calls that sync)."""
    import cProfile
    import pstats

    run()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

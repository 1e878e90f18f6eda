"""Where a whole white-box PGD run's time goes on a CUDA device, phase by phase: the upload of
the rows, the clean predictions, the warm-up steps and the capture of the step's graph, the
replays, the verification and the copies back. Each phase is timed on the host clock with a
wait for the device at its start and end (so the phases add up to the run; the waits
themselves make the run a little slower than it is unwatched). With ``--trace-dir``, a torch
profiler trace of one unwatched run is written there too, for a look at the kernels and the
host's calls.

What it answers: how much of the gap between Bastion's PGD and the plain forward +
input-gradient floor (``bench_evasion.py``) the steps cost and how much the fixed work
around them.

Usage (on a machine with CUDA)::

    PYTHONPATH=src python benchmarks/trace_gpu_pgd.py [--model mlp|cnn] [--points 32768]
        [--steps 40] [--precision fp32|bf16] [--trace-dir DIR] [--syncs] [--host-profile N]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_evasion as bench
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.evasion import _graphs
from bastion.attacks.evasion import _torch as white
from bastion.attacks.evasion.pgd import PGD, PGDConfig
from bastion.models.torch import TorchAdapter

DEVICE = torch.device("cuda")  # the device in use (main sets it)


def sync() -> None:
    bench.sync(DEVICE)


# (module, attribute, phase name): functions timed as phases; a phase met inside another is
# part of the outer one (only the outermost call of a nest is timed)
PHASES = (
    (white._Net, "predict_rows", "clean predictions"),
    (white, "_make_chunk", "chunk set-up"),
    (white._Engine, "random_start", "random start"),
    (white._Engine, "capture", "warm-up steps + capture"),
    (white._Engine, "forward", "eager steps"),
    (white._Engine, "settle_round", "end of round"),
    (white, "_verify_on_device", "verification"),
)

CAPTURE = "of which capture_step (record + instantiate)"


class PhaseClock:
    """Wall time per phase, the device drained at each phase's start and end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.depth = 0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.depth:
            yield
            return
        sync()
        self.depth += 1
        t0 = time.perf_counter()
        try:
            yield
        finally:
            sync()
            self.seconds[name] += time.perf_counter() - t0
            self.calls[name] += 1
            self.depth -= 1

    def wrap(self, owner: Any, attr: str, name: str) -> Callable[[], None]:
        original = getattr(owner, attr)
        clock = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            with clock.phase(name):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)
        return lambda: setattr(owner, attr, original)


def best_ms(fn: Callable[[], Any], repeat: int) -> float:
    """Best wall time of ``repeat`` calls of ``fn``, in ms, the device drained around each."""
    best = float("inf")
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def replay_phase(clock: PhaseClock) -> Callable[[], None]:
    """Time graph replays as their own phase (each waited for: a replay is one launch, so the
    wait costs the pipelining of about one launch)."""
    original = torch.cuda.CUDAGraph.replay

    def replay(self: Any) -> None:
        with clock.phase("graph replays"):
            original(self)

    torch.cuda.CUDAGraph.replay = replay  # type: ignore[method-assign]
    return lambda: setattr(torch.cuda.CUDAGraph, "replay", original)


def segments() -> int:
    """Memory segments the caching allocator has asked the driver for (cudaMalloc calls)."""
    if DEVICE.type != "cuda":
        return 0
    return int(torch.cuda.memory_stats(DEVICE).get("segment.all.allocated", 0))


def variants(run: Callable[..., Any]) -> None:
    """The whole run's best time with the step's graph (its capture in the pool the
    process's captures share, and in a pool of its own, as before ``_graphs.SHARE_POOL``;
    after one warm-up step instead of ``_graphs.WARMUP_STEPS``) and without, and the memory
    segments one more run asks the driver for."""
    print("variants (best of 3 after 2 runs; segments = cudaMalloc calls of one more run):")
    shared, warmup = _graphs.SHARE_POOL, _graphs.WARMUP_STEPS
    try:
        for name, graphs, share, steps in (
            ("graph, capture in the shared pool", True, True, warmup),
            ("graph, capture in a pool of its own", True, False, warmup),
            ("graph, one warm-up step", True, True, 1),
            ("no graph (eager steps)", False, shared, warmup),
        ):
            _graphs.SHARE_POOL, _graphs.WARMUP_STEPS = share, steps
            for _ in range(2):
                run(graphs)
            best = best_ms(lambda g=graphs: run(g), 3)
            before = segments()
            result = run(graphs)
            sync()
            print(f"  {name:36s} {best:8.2f} ms  segments {segments() - before}  "
                  f"(graph ran: {result.extra['cuda_graph']})")  # fmt: skip
    finally:
        _graphs.SHARE_POOL, _graphs.WARMUP_STEPS = shared, warmup


def host_profile(run: Callable[..., Any], rows: int) -> None:
    """cProfile of 3 unwatched runs: the host's own work and where it waits for the device
    (a call that syncs holds the wait), by time spent in each function itself."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3):
        run()
    sync()
    profiler.disable()
    print("host profile of 3 runs (cProfile, by time in the function itself):")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(rows)


def round_robin(
    run: Callable[..., Any], others: dict[str, Callable[[], Any]], floor: Callable[[], Any]
) -> None:
    """PGD timed as ``bench_evasion.py`` times it: each repetition after a floor run, with
    other attacks between its repetitions; per run, its time and the memory segments it
    asked the driver for (the benchmark's best PGD times ran well above this script's)."""
    print("round robin (floor, then each attack; per repetition: ms, new segments):")
    times: dict[str, list[str]] = defaultdict(list)
    for _ in range(3):
        for name, fn in {"PGD": run, **others}.items():
            best_ms(floor, 1)
            before = segments()
            ms = best_ms(fn, 1)
            times[name].append(f"{ms:7.2f} ({segments() - before})")
    for name, row in times.items():
        print(f"  {name:24s} " + "  ".join(row))


def sync_points(run: Callable[..., Any]) -> None:
    """Every place in Bastion where one unwatched run waits for the device (torch's sync
    debug mode warns at each op that synchronises), counted by source line."""
    import traceback
    import warnings

    counts: dict[str, int] = defaultdict(int)
    shown = warnings.showwarning

    def note(*_: Any, **__: Any) -> None:
        frames = [f for f in traceback.extract_stack() if "bastion" in f.filename]
        where = frames[-1] if frames else None
        counts[f"{Path(where.filename).name}:{where.lineno} {where.line}" if where else "?"] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note  # type: ignore[assignment]
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
            sync()
        finally:
            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning = shown
    print(f"syncs in one run: {sum(counts.values())}")
    for where, k in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {k:4d}  {where}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--points", type=int, default=32768)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--trace-dir", default=None, help="write a gzipped chrome trace here")
    parser.add_argument("--device", default="cuda", help="cuda; cpu runs a smoke test")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="the attack's precision"
    )
    parser.add_argument(
        "--host-profile", type=int, default=0, help="print cProfile's top N of 3 runs"
    )
    parser.add_argument(
        "--table", type=int, default=0, help="print the profiler's top N calls of one run"
    )
    parser.add_argument(
        "--syncs", action="store_true", help="list where one run waits for the device"
    )
    parser.add_argument(
        "--round-robin",
        action="store_true",
        help="time PGD between other attacks, as the benchmark does",
    )
    args = parser.parse_args(argv)
    found = bench.available_device(args.device)
    if found is None:
        return 2
    global DEVICE
    device = DEVICE = found
    net, X_all, y_all = bench.make_model(args.model, device)
    X, y = bench.points(X_all, y_all, args.points)
    shape = bench.SHAPES[args.model]
    model = TorchAdapter(net, device=str(device), input_shape=shape)
    box = FeatureConstraints.box(X.shape[1], 0.0, 1.0)
    config = PGDConfig(
        steps=args.steps, early_exit=False, batch_size=len(X), precision=args.precision
    )

    def run(graphs: bool = True) -> Any:
        chosen = config if graphs else PGDConfig(**{**config.__dict__, "cuda_graphs": False})
        return PGD(chosen).run(model, X, y, eps=0.125, constraints=box, seed=0)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"trace_gpu_pgd: {args.model}, {len(X)} points, {args.steps} steps, "
          f"{args.precision}, {name}, torch {torch.__version__}")  # fmt: skip
    for _ in range(2):
        run()
    best = best_ms(run, 3)
    floor = best_ms(lambda: bench.floor(net, X, y, args.steps, device, shape), 3)
    print(f"unwatched: PGD {best:.2f} ms, floor {floor:.2f} ms ({best / floor:.2f}x)")

    # the host-device copies and casts the run makes, measured alone
    flat = np.ascontiguousarray(X, dtype=np.float64)
    gpu = torch.as_tensor(flat, device=device)
    cast = lambda: torch.as_tensor(flat.astype(np.float32), device=device)  # noqa: E731
    print(f"  upload float64 rows ({flat.nbytes / 1e6:.1f} MB): "
          f"{best_ms(lambda: torch.as_tensor(flat, device=device), 5):.2f} ms; "
          f"as float32 cast on the host: {best_ms(cast, 5):.2f} ms; "
          f"download float64: {best_ms(lambda: gpu.cpu().numpy(), 5):.2f} ms")  # fmt: skip
    # into memory never touched before (results kept alive, so nothing is reused): torch's
    # own host allocation, and numpy's (which asks the kernel for huge pages)
    kept: list[np.ndarray] = []

    def into_numpy() -> None:
        kept.append(np.empty(flat.shape))
        torch.from_numpy(kept[-1]).copy_(gpu)

    fresh_torch = best_ms(lambda: kept.append(gpu.cpu().numpy()), 5)
    kept.clear()
    fresh_numpy = best_ms(into_numpy, 5)
    kept.clear()
    print(f"  download float64 into fresh memory: torch's {fresh_torch:.2f} ms, "
          f"numpy's {fresh_numpy:.2f} ms")  # fmt: skip

    clock = PhaseClock()
    undo = [clock.wrap(owner, attr, name) for owner, attr, name in PHASES]
    undo.append(replay_phase(clock))
    capture = _graphs.capture_step

    def capture_timed(step: Callable[[], None], dev: torch.device) -> Any:
        sync()
        t0 = time.perf_counter()
        graph = capture(step, dev)
        sync()
        clock.seconds[CAPTURE] += time.perf_counter() - t0
        return graph

    _graphs.capture_step = capture_timed  # type: ignore[assignment]
    try:
        sync()
        t0 = time.perf_counter()
        result = run()
        sync()
        total = time.perf_counter() - t0
    finally:
        _graphs.capture_step = capture  # type: ignore[assignment]
        for fn in undo:
            fn()
    timed_sum = sum(v for k, v in clock.seconds.items() if k != CAPTURE)
    print(f"watched run {total * 1e3:.2f} ms (graph ran: {result.extra['cuda_graph']}):")
    for name in [p[2] for p in PHASES] + ["graph replays"]:
        if name in clock.seconds:
            print(f"  {name:48s} {clock.seconds[name] * 1e3:8.2f} ms  {clock.calls[name]:>4}")
        if name == "warm-up steps + capture" and CAPTURE in clock.seconds:
            print(f"    {CAPTURE:46s} {clock.seconds[CAPTURE] * 1e3:8.2f} ms")
    print(f"  {'rest (copies, host work)':48s} {(total - timed_sum) * 1e3:8.2f} ms")

    variants(run)
    if args.round_robin:
        from bastion.attacks.evasion.apgd import APGD, APGDConfig

        apgd = APGD(APGDConfig(early_exit=False, batch_size=len(X)))
        bf16 = PGD(PGDConfig(**{**config.__dict__, "precision": "bf16"}))
        short = PGD(PGDConfig(**{**config.__dict__, "steps": args.steps // 2}))
        others = {
            "PGD, half the steps": lambda: short.run(model, X, y, eps=0.125, constraints=box),
            "APGD-CE": lambda: apgd.run(model, X, y, eps=0.125, constraints=box),
            "PGD bf16": lambda: bf16.run(model, X, y, eps=0.125, constraints=box),
        }
        round_robin(run, others, lambda: bench.floor(net, X, y, args.steps, device, shape))
    if args.syncs and device.type == "cuda":
        sync_points(run)
    if args.host_profile:
        host_profile(run, args.host_profile)
    if args.trace_dir or args.table:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run()
            sync()
        if args.table:
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.table))
        if not args.trace_dir:
            return 0
        out = Path(args.trace_dir)
        out.mkdir(parents=True, exist_ok=True)
        raw = out / f"trace_{args.model}_{args.points}.json"
        prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as src, gzip.open(str(raw) + ".gz", "wb") as dst:
            dst.write(src.read())
        raw.unlink()
        print(f"  trace: {raw}.gz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

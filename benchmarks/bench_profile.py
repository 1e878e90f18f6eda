"""Profile speed against a plain numpy pass over the same frame.

Times, on ``--rows`` x ``--cols`` standard-normal float64 columns (``--nulls`` share of NaN in
every other column; none by default, the case the goals are set for):

- numpy: per column min, max, mean, std and the null count (``np.nan*`` where there are
  NaNs, the plain reductions elsewhere), the floor any profiler must pay;
- ``Profile.from_frame(full=False)``: count, nulls, infinities, min, max, mean, variance;
- ``Profile.from_frame(full=True)``: everything (sample / quantiles, HyperLogLog, ...);
- ``Profile.from_frame(bins_from=reference)``: the full profile plus decile and fine
  histogram counts, as live monitoring computes it (informational);

and prints each time, its ratio to numpy and the process's peak RSS.

Usage: ``.venv/bin/python benchmarks/bench_profile.py [--rows 10000000] [--cols 20]``
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from bastion.data.profile import Profile


def numpy_pass(frame: pd.DataFrame) -> list[tuple[float, float, float, float, int]]:
    out = []
    for name in frame.columns:
        x = frame[name].to_numpy()
        nulls = int(np.isnan(x).sum())
        if nulls:
            out.append((np.nanmin(x), np.nanmax(x), np.nanmean(x), np.nanstd(x), nulls))
        else:
            out.append((x.min(), x.max(), x.mean(), x.std(), 0))
    return out


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--nulls", type=float, default=0.0, help="NaN share, odd columns")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    columns = {}
    for i in range(args.cols):
        col = rng.standard_normal(args.rows)
        if args.nulls > 0 and i % 2:
            col[rng.random(args.rows) < args.nulls] = np.nan
        columns[f"c{i}"] = col
    frame = pd.DataFrame(columns, copy=False)
    del columns, col
    setup_rss = peak_rss_mib()
    print(
        f"frame: {args.rows:,} rows x {args.cols} float64 columns "
        f"({frame.memory_usage().sum() / 2**20:,.0f} MiB); peak RSS after setup "
        f"{setup_rss:,.0f} MiB; {os.cpu_count()} CPUs"
    )

    ref = Profile.reference(frame.iloc[: min(args.rows, 200_000)])
    base = best_of(lambda: numpy_pass(frame), args.repeat)
    rows = [("numpy min/max/mean/std/nulls", base)]
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("Profile full=False", lambda: Profile.from_frame(frame, full=False), args.repeat),
        ("Profile full=True", lambda: Profile.from_frame(frame), args.repeat),
        ("Profile full=True, workers=1", lambda: Profile.from_frame(frame, workers=1), 1),
        (
            "Profile full + bins_from (histograms)",
            lambda: Profile.from_frame(frame, bins_from=ref),
            1,
        ),
    ]
    for label, fn, repeat in cases:
        rows.append((label, best_of(fn, repeat)))
    for label, seconds in rows:
        print(f"{label:40s} {seconds:8.3f} s   x{seconds / base:5.2f} of numpy")
    print(
        f"peak RSS {peak_rss_mib():,.0f} MiB "
        f"(+{peak_rss_mib() - setup_rss:,.0f} MiB over the frame, numpy's temporaries included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

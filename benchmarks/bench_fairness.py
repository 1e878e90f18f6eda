"""Fairness metrics: Bastion's bincount formulation against Fairlearn's MetricFrame.

Both libraries compute demographic_parity_difference and equalized_odds_difference on the
same rows (binary labels, one sensitive feature with 5 levels) in this process; the script
checks that the values agree (to 1e-12, and says whether they are bit-identical) and prints
the times and speed-ups. Goal: >= 100x.

Usage::

    .venv/bin/python benchmarks/bench_fairness.py [--rows 1000000] [--levels 5]
        [--feature int|str|category|numpy-str] [--repeat 5]

``--feature`` picks how the sensitive feature is held: integer codes (default), a pandas
string column (what a CSV file gives), a pandas categorical, or a numpy fixed-width string
array.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bastion.fairness import metrics as bm

METRICS = ("demographic_parity_difference", "equalized_odds_difference")


def make_data(rows: int, levels: int, feature: str, seed: int = 0) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, levels, rows)
    y_true = (rng.random(rows) < 0.4).astype(np.int64)
    # a model that is right 80% of the time and selects more often in higher groups
    noise = (rng.random(rows) < 0.2 + 0.1 * group / max(levels - 1, 1)).astype(np.int64)
    y_pred = np.where(rng.random(rows) < 0.8, y_true, noise)
    names = np.array([f"level_{i}" for i in range(levels)])
    if feature == "int":
        sensitive: Any = group
    elif feature == "str":  # a pandas string column, as read from a CSV file
        sensitive = pd.Series(names[group], name="level", dtype="str")
    elif feature == "category":
        sensitive = pd.Series(pd.Categorical(names[group]), name="level")
    else:  # numpy fixed-width strings
        sensitive = names[group]
    return y_true, y_pred, sensitive


def best_of(fn: Callable[[], float], repeat: int) -> tuple[float, float]:
    """(fastest wall time in seconds, value) over ``repeat`` calls."""
    times, value = [], float("nan")
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--feature", choices=("int", "str", "category", "numpy-str"), default="int")
    parser.add_argument("--repeat", type=int, default=5, help="bastion runs (fastest is kept)")
    parser.add_argument("--fairlearn-repeat", type=int, default=1)
    args = parser.parse_args()

    import fairlearn
    import fairlearn.metrics as flm

    y_true, y_pred, sensitive = make_data(args.rows, args.levels, args.feature)
    print(
        f"{args.rows:,} rows, {args.levels}-level {args.feature} sensitive feature; "
        f"fairlearn {fairlearn.__version__}"
    )
    print(f"{'metric':32s} {'fairlearn s':>12s} {'bastion ms':>11s} {'speed-up':>9s}  values")
    worst = float("inf")
    for name in METRICS:
        theirs_fn, ours_fn = getattr(flm, name), getattr(bm, name)

        def theirs_call(f: Callable[..., float] = theirs_fn) -> float:
            return float(f(y_true, y_pred, sensitive_features=sensitive))

        def ours_call(f: Callable[..., float] = ours_fn) -> float:
            return f(y_true, y_pred, sensitive_features=sensitive)

        t_theirs, theirs = best_of(theirs_call, args.fairlearn_repeat)
        ours_call()  # warm caches and the allocator
        t_ours, ours = best_of(ours_call, args.repeat)
        if not abs(ours - theirs) <= 1e-12:
            raise SystemExit(f"{name}: values differ: fairlearn {theirs!r}, bastion {ours!r}")
        same = "bit-identical" if ours == theirs else f"|diff| {abs(ours - theirs):.1e}"
        ratio = t_theirs / t_ours
        worst = min(worst, ratio)
        print(
            f"{name:32s} {t_theirs:12.3f} {t_ours * 1e3:11.2f} {ratio:8.0f}x  {ours:.12f} ({same})"
        )
    verdict = "meets" if worst >= 100 else "MISSES"
    print(f"slowest speed-up {worst:.0f}x: {verdict} the >= 100x goal")


if __name__ == "__main__":
    main()

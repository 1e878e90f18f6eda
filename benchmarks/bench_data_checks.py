"""Bastion's data checks against pandera on one wide float table, in one process.

Usage::

    .venv/bin/python benchmarks/bench_data_checks.py [--rows 10_000_000] [--cols 20]

Data: ``rows x cols`` standard-normal float64 columns (about 1.6 GB at the defaults); the
first five columns hold 0.1 % NaN, and column ``c05`` holds 100 values of 50.0, outside the
declared range [-10, 10].

(a) Range and not-null checks, the same on both sides. pandera: a ``DataFrameSchema`` with,
    per column, ``Column(checks=Check.in_range(-10, 10), nullable=False)``, validated with
    ``lazy=True`` (every failing column reported, as bastion does) and ``inplace=True`` (no
    copy). Bastion: ``Profile.from_frame(df, full=False)`` then DQ002 completeness with
    ``mostly=1.0`` (nullable=False) and DQ003 ranges with the same declared bounds and
    ``mostly=1.0``. Both must find the same failing columns and counts. Goal: bastion <= 0.5x
    pandera's time.
(c) The full data suite: every dataset-scope data check on one full profile. Reports how many
    times the profile is built (1), which checks read columns of the frame besides the
    profile and how many, per-check times, and the peak resident memory over the data's size
    (goal <= 1.5x: the data plus at most half its size in working memory).

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

LOWER, UPPER = -10.0, 10.0
N_NAN_COLUMNS = 5
NAN_SHARE = 0.001
BAD_COLUMN = "c05"
N_BAD = 100


def make_frame(rows: int, cols: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # (cols, rows) C-ordered: each column is contiguous, and the frame wraps it without a copy
    data = rng.standard_normal((cols, rows))
    for j in range(min(N_NAN_COLUMNS, cols)):
        data[j, rng.choice(rows, int(rows * NAN_SHARE), replace=False)] = np.nan
    names = [f"c{j:02d}" for j in range(cols)]
    if BAD_COLUMN in names:
        data[names.index(BAD_COLUMN), rng.choice(rows, N_BAD, replace=False)] = 50.0
    return pd.DataFrame(data.T, columns=names, copy=False)


# ------------------------------------------------------------------------------ memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_rss(result: dict[str, int], interval_s: float = 0.002) -> Iterator[None]:
    """Sample the resident set size in a thread; store the baseline and the peak."""
    result["before"] = result["peak"] = rss_bytes()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            result["peak"] = max(result["peak"], rss_bytes())
            stop.wait(interval_s)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        result["peak"] = max(result["peak"], rss_bytes())


# ------------------------------------------------------------------------------ (a)


def run_pandera(df: pd.DataFrame) -> dict[str, Any]:
    import pandera.pandas as pa

    schema = pa.DataFrameSchema(
        {c: pa.Column(checks=pa.Check.in_range(LOWER, UPPER), nullable=False) for c in df.columns}
    )
    t0 = time.perf_counter()
    try:
        schema.validate(df, lazy=True, inplace=True)
        cases = pd.DataFrame(columns=["column", "check"])
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    seconds = time.perf_counter() - t0
    checks = cases["check"].astype(str)
    nulls = cases[checks == "not_nullable"]
    ranges = cases[checks.str.startswith("in_range")]
    return {
        "seconds": seconds,
        "null_columns": sorted(nulls["column"].unique()),
        "range_columns": sorted(ranges["column"].unique()),
        "out_of_range": len(ranges),
    }


def run_bastion_ranges(df: pd.DataFrame) -> dict[str, Any]:
    from bastion.checks import CheckContext
    from bastion.data.checks.completeness import Completeness, CompletenessConfig
    from bastion.data.checks.ranges import RangeCheck, RangesConfig
    from bastion.data.dataset import Dataset
    from bastion.data.profile import Profile
    from bastion.data.schema import ColumnKind, ColumnSpec, FeatureSchema

    schema = FeatureSchema(
        {c: ColumnSpec(c, ColumnKind.NUMERIC, min=LOWER, max=UPPER) for c in df.columns}
    )
    ds = Dataset.from_frame(df, name="bench")
    t0 = time.perf_counter()
    profile = Profile.from_frame(df, full=False)
    t_profile = time.perf_counter() - t0
    ctx = CheckContext(subject="dataset:bench", dataset=ds, profile=profile, schema=schema)
    nulls = Completeness(CompletenessConfig(mostly=1.0)).run(ctx)
    ranges = RangeCheck(RangesConfig(mostly=1.0)).run(ctx)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "profile_seconds": t_profile,
        "null_columns": sorted(nulls.evidence["failing"]),
        "range_columns": sorted(ranges.evidence["failing"]),
        "out_of_range": ranges.metrics["out_of_range_values"],
    }


# ------------------------------------------------------------------------------ (c)


class Reads:
    """Counts profile builds and column reads of the frame by the checks (instrumentation)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.current = "-"
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attr: str, label: str, columns: Callable[..., int]) -> None:
        original = getattr(owner, attr)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.counts[f"{self.current}: {label}"] += columns(*args, **kwargs)
            return original(*args, **kwargs)

        setattr(owner, attr, wrapper)
        self._undo.append(lambda: setattr(owner, attr, original))

    def close(self) -> None:
        for undo in reversed(self._undo):
            undo()


def run_suite(df: pd.DataFrame) -> dict[str, Any]:
    from bastion.checks import CHECKS, CheckContext, Scope
    from bastion.data import profile as profile_module
    from bastion.data import rowhash
    from bastion.data.checks import outliers, ranges
    from bastion.data.dataset import Dataset
    from bastion.data.profile import Profile
    from bastion.data.schema import ColumnKind, ColumnSpec, FeatureSchema

    reads = Reads()
    ncols = df.shape[1]

    def hashed(frames: Any, cols: Any) -> int:
        return len(cols)

    reads.wrap(profile_module.Profile, "from_frame", "profile builds", lambda *a, **k: 1)
    # every row hash (duplicates, conflicting labels, a frame's content hash) goes through
    # rowhash.row_hashes, cached per dataset and column list; the check modules import the
    # value helpers by name, so count those through their references
    reads.wrap(rowhash, "row_hashes", "columns hashed", hashed)
    reads.wrap(ranges, "numeric_values", "columns counted", lambda s: 1)
    reads.wrap(outliers, "numeric_values", "columns counted", lambda s: 1)
    try:
        schema = FeatureSchema(
            {c: ColumnSpec(c, ColumnKind.NUMERIC, min=LOWER, max=UPPER) for c in df.columns}
        )
        ds = Dataset(name="bench", frame=df, schema=schema)
        checks = [cls() for cls in CHECKS if cls.category == "data" and cls.scope is Scope.DATASET]
        timings: dict[str, float] = {}
        statuses: dict[str, str] = {}
        memory: dict[str, int] = {}
        with peak_rss(memory):
            t0 = time.perf_counter()
            reads.current = "runner"
            profile = Profile.from_frame(df, full=True)
            timings["profile"] = time.perf_counter() - t0
            ctx = CheckContext(
                subject="dataset:bench",
                dataset=ds,
                profile=profile,
                reference=ds,
                reference_profile=profile,
                schema=schema,
            )
            for check in checks:
                reads.current = check.id
                t1 = time.perf_counter()
                finding = check.execute(ctx)
                timings[check.id] = time.perf_counter() - t1
                statuses[check.id] = finding.status.value
            total = time.perf_counter() - t0
    finally:
        reads.close()
    return {
        "seconds": total,
        "timings": timings,
        "statuses": statuses,
        "reads": dict(reads.counts),
        "memory": memory,
        "ncols": ncols,
    }


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pandera", action="store_true")
    args = parser.parse_args()

    import pandera

    import bastion.data.checks  # noqa: F401  (register the checks before measuring)

    df = make_frame(args.rows, args.cols, args.seed)
    data_bytes = int(df.memory_usage(index=False, deep=True).sum())
    print(
        f"data: {args.rows:,} rows x {args.cols} float64 columns = {data_bytes / 1e9:.2f} GB; "
        f"pandas {pd.__version__}, pandera {pandera.__version__}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs"
    )

    # (c) first, so that its memory baseline is the data plus imports only
    suite = run_suite(df)
    mem = suite["memory"]
    extra = mem["peak"] - mem["before"]
    print("\n(c) full data suite (dataset-scope checks on one full profile)")
    print(
        f"  total {suite['seconds']:.2f} s; per step: "
        + ", ".join(f"{k} {v:.2f}s" for k, v in suite["timings"].items())
    )
    print("  statuses: " + ", ".join(f"{k} {v}" for k, v in suite["statuses"].items()))
    print(f"  frame reads besides the profile (columns of {suite['ncols']}):")
    for key, count in sorted(suite["reads"].items()):
        print(f"    {key}: {count}")
    column_reads = sum(v for k, v in suite["reads"].items() if "columns" in k)
    print(
        f"  = 1 profile pass + {column_reads / suite['ncols']:.2f} equivalent full passes "
        "in the checks"
    )
    print(
        f"  peak RSS {mem['peak'] / 1e9:.2f} GB (baseline with data {mem['before'] / 1e9:.2f} "
        f"GB): working memory {extra / 1e9:.3f} GB = {extra / data_bytes:.2f}x the data; "
        f"data + working memory = {(data_bytes + extra) / data_bytes:.2f}x the data (goal <= 1.5x)"
    )

    print("\n(a) not-null + in-range on every column")
    ours = run_bastion_ranges(df)
    print(
        f"  bastion  {ours['seconds']:.2f} s (profile full=False {ours['profile_seconds']:.2f} s)"
        f"; null columns {ours['null_columns']}, range columns {ours['range_columns']}, "
        f"out of range {ours['out_of_range']}"
    )
    if args.skip_pandera:
        return
    theirs = run_pandera(df)
    print(
        f"  pandera  {theirs['seconds']:.2f} s; null columns {theirs['null_columns']}, "
        f"range columns {theirs['range_columns']}, out of range {theirs['out_of_range']}"
    )
    same = all(ours[k] == theirs[k] for k in ("null_columns", "range_columns", "out_of_range"))
    print(
        f"  ratio bastion / pandera = {ours['seconds'] / theirs['seconds']:.3f} (goal <= 0.5); "
        f"same findings: {same}"
    )


if __name__ == "__main__":
    main()

"""Label-flip detection: Bastion's confident learning and kNN consistency against cleanlab.

Breast cancer, digits, wine, iris and two synthetic sets where classes overlap
(``make_classification``, 1,000 rows, balanced and 90/10), 10% of the labels flipped at
random (several seeds; ``--rate`` sets the share, 0 measures the flags on clean labels).
Every method sees the same noisy labels; cleanlab and the bare rule get the out-of-sample
probabilities of the same estimator (standardized logistic regression) on the same 5 folds
that Bastion's first round uses. Times include the cross-validation each method needs.

    .venv/bin/python benchmarks/bench_poisoning.py [--rows N] [--seeds K]

Methods:
  bastion-cl        find_label_issues (confident learning, one refit round without the flags)
  bastion-cl-1pass  the same, refits=0 (flags exactly what cleanlab flags)
  bastion-knn       kNN label consistency (k=10, standardized features)
  cleanlab          cleanlab.filter.find_label_issues (prune_by_noise_rate, its default)
  bare-rule         out-of-sample prediction differs from the given label
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_classification,
)

from bastion.attacks.poisoning.detect import (
    default_estimator,
    find_label_issues,
    out_of_sample_proba,
    precision_recall,
)
from bastion.attacks.poisoning.simulate import flip_labels


def _overlapping(minority: float) -> Callable[..., Any]:
    """A synthetic set whose classes overlap (a review saw the uncapped refit lose precision
    there, and flag more of a clean set than cleanlab)."""

    def load(return_X_y: bool = True) -> tuple[np.ndarray, np.ndarray]:
        X, y = make_classification(
            n_samples=1000, n_features=10, n_informative=6,
            weights=[1 - minority, minority], random_state=1, flip_y=0,
        )  # fmt: skip
        return X, y

    return load


DATASETS: dict[str, Callable[..., Any]] = {
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
    # small multi-class sets, where a refit's own noise counts fall (see find_label_issues)
    "wine": load_wine,
    "iris": load_iris,
    "synthetic_50_50": _overlapping(0.5),
    "synthetic_90_10": _overlapping(0.1),
}
METHODS = ("bastion-cl", "bastion-cl-1pass", "bastion-knn", "cleanlab", "bare-rule")


def run_once(
    X: np.ndarray, y: np.ndarray, seed: int, rate: float = 0.1
) -> dict[str, tuple[float, float, float]]:
    """(precision, recall, seconds) per method on one noisy copy of (X, y); with ``rate`` 0,
    (0, share of the rows flagged, seconds) on the clean labels."""
    from cleanlab.filter import find_label_issues as cleanlab_find  # type: ignore[import-untyped]

    if rate > 0:
        y_noisy, flipped = flip_labels(y, rate, rng=seed)
    else:
        y_noisy, flipped = y, None
    out: dict[str, tuple[float, float, float]] = {}

    def record(name: str, flagged: np.ndarray, seconds: float) -> None:
        if flipped is None:
            out[name] = (0.0, len(np.asarray(flagged).reshape(-1)) / len(y), seconds)
            return
        p, r = precision_recall(flagged, flipped)
        out[name] = (p or 0.0, r or 0.0, seconds)

    t0 = time.perf_counter()
    proba = out_of_sample_proba(default_estimator(seed), X, y_noisy, cv=5, seed=seed)
    cv_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    mask = cleanlab_find(y_noisy, proba, n_jobs=1)
    record("cleanlab", np.flatnonzero(mask), cv_s + time.perf_counter() - t0)

    t0 = time.perf_counter()
    bare = np.flatnonzero(proba.argmax(axis=1) != np.searchsorted(np.unique(y_noisy), y_noisy))
    record("bare-rule", bare, cv_s + time.perf_counter() - t0)

    t0 = time.perf_counter()
    issues = find_label_issues(X, y_noisy, seed=seed)
    record("bastion-cl", issues.flagged, time.perf_counter() - t0)

    t0 = time.perf_counter()
    issues = find_label_issues(X, y_noisy, seed=seed, refits=0)
    record("bastion-cl-1pass", issues.flagged, time.perf_counter() - t0)

    t0 = time.perf_counter()
    issues = find_label_issues(X, y_noisy, method="knn", k=10)
    record("bastion-knn", issues.flagged, time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="rows per dataset (default all)")
    parser.add_argument("--seeds", type=int, default=5, help="noisy copies per dataset")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.1,
        help="share of the labels flipped (0: clean labels; the recall column then gives "
        "the share of the rows flagged)",
    )
    args = parser.parse_args()

    print(f"{args.rate:.0%} random label flips, {args.seeds} seeds; mean (min) over seeds\n")
    header = (
        f"{'dataset':<20} {'method':<17} {'precision':>15} {'recall':>15} {'F1':>6} "
        f"{'time s':>7} {'x cleanlab':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, loader in DATASETS.items():
        X, y = loader(return_X_y=True)
        if args.rows is not None and args.rows < len(y):
            keep = np.random.default_rng(0).choice(len(y), args.rows, replace=False)
            X, y = X[keep], y[keep]
        # warm-up: the first fit in a process pays for imports and caches
        out_of_sample_proba(default_estimator(0), X, y, cv=2, seed=0)
        runs = [run_once(X, y, seed, args.rate) for seed in range(args.seeds)]
        base_time = statistics.mean(r["cleanlab"][2] for r in runs)
        for method in METHODS:
            ps = [r[method][0] for r in runs]
            rs = [r[method][1] for r in runs]
            ts = [r[method][2] for r in runs]
            p, rec = statistics.mean(ps), statistics.mean(rs)
            f1 = 2 * p * rec / (p + rec) if p + rec else 0.0
            t = statistics.mean(ts)
            print(
                f"{name + f' ({len(y)})':<20} {method:<17} {p:>8.3f} ({min(ps):.3f}) "
                f"{rec:>8.3f} ({min(rs):.3f}) {f1:>6.3f} {t:>7.2f} {t / base_time:>10.2f}"
            )
        wins = sum(
            r["bastion-cl"][0] >= r["cleanlab"][0] and r["bastion-cl"][1] >= r["cleanlab"][1]
            for r in runs
        )
        print(f"{'':<20} bastion-cl >= cleanlab on both precision and recall: {wins}/{len(runs)}")
        print()


if __name__ == "__main__":
    main()

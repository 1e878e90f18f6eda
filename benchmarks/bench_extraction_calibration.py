"""PRADA calibration at the gateway: benign false flags and attacker detection per feature
transform, on scikit-learn's breast-cancer and digits sets.

Each set is split in halves (``train_test_split(test_size=0.5, random_state=0)``); a
StandardScaler + LogisticRegression pipeline is fitted on the first half, whose profile
(``Profile.from_frame(..., seed=0).summary(5)``, what a release report carries) is the
reference. Transforms compared, each feeding an :class:`ExtractionDetector` at ``delta`` 0.9:

- ``std``: features divided by the reference standard deviation (the gateway's default
  before :class:`ReferenceScores`);
- ``log1p``: ``log1p`` of the features, then divided by the standard deviation of that;
- ``units``: the features as they are (PRADA's pixel units on digits);
- ``reference-scores``: :class:`ReferenceScores` from the profile (the gateway's default).

*Benign*: ``--clients`` clients each send every held-out row once, in their own random order
(seed ``0``), 10 rows a request; the count flagged. *Attacker*: T-RND (Juuti et al. 2019):
10 training rows as seeds, then each round one random-sign step from every row so far,
clipped to the training range; the step is 1.6 units on digits and ``--step`` standard
deviations per feature on breast cancer; ``--runs`` seeds, at most 1,000 queries each; the
count flagged and the queries it took.

Run: ``.venv/bin/python benchmarks/bench_extraction_calibration.py [--clients 50]
[--runs 20] [--step 0.1]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from bastion.data.profile import Profile
from bastion.gateway.guards.extraction import ExtractionDetector, ReferenceScores

Transform = Callable[[np.ndarray], np.ndarray]


def load(name: str) -> tuple[np.ndarray, np.ndarray, Pipeline, ReferenceScores, np.ndarray]:
    X, y = load_digits(return_X_y=True) if name == "digits" else load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.5, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(X_train, y_train)
    names = [f"f{i}" for i in range(X.shape[1])]
    columns = Profile.from_frame(pd.DataFrame(X_train, columns=names), seed=0).summary(5)
    std = np.array([columns["columns"][n]["std"] or 0.0 for n in names])
    return X_train, X_test, model, ReferenceScores(columns["columns"], names), std


def t_rnd(
    seeds: np.ndarray, rng: np.random.Generator, step: np.ndarray | float, lo: np.ndarray,
    hi: np.ndarray,
) -> Iterator[np.ndarray]:  # fmt: skip
    rows = seeds
    for i in range(0, len(rows), 10):
        yield rows[i : i + 10]
    while True:
        new = np.clip(rows + step * rng.choice([-1.0, 1.0], size=rows.shape), lo, hi)
        for i in range(0, len(new), 10):
            yield new[i : i + 10]
        rows = np.vstack([rows, new])


def flagged_at(
    transform: Transform, batches: Iterator[np.ndarray], model: Pipeline, limit: int
) -> int | None:
    """Feed batches to a fresh detector until flagged or ``limit`` rows; the flag's count."""
    detector: ExtractionDetector | None = None
    sent = 0
    for batch in batches:
        if detector is None:
            detector = ExtractionDetector(batch.shape[1], transform=transform)
        status = detector.observe("c", batch, model.predict(batch))
        sent += len(batch)
        if status.flagged:
            return status.flagged_at
        if sent >= limit:
            return None
    return None


def benign(transform: Transform, X_test: np.ndarray, model: Pipeline, clients: int) -> int:
    rng = np.random.default_rng(0)
    flagged = 0
    for _ in range(clients):
        rows = X_test[rng.permutation(len(X_test))]
        batches = (rows[i : i + 10] for i in range(0, len(rows), 10))
        flagged += flagged_at(transform, batches, model, len(rows)) is not None
    return flagged


def attacker(
    transform: Transform, X_train: np.ndarray, model: Pipeline, step: np.ndarray | float, runs: int
) -> list[int | None]:
    out = []
    lo, hi = X_train.min(axis=0), X_train.max(axis=0)
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        seeds = X_train[rng.choice(len(X_train), 10, replace=False)]
        out.append(flagged_at(transform, t_rnd(seeds, rng, step, lo, hi), model, 1000))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--step", type=float, default=0.1)
    args = parser.parse_args()
    print(f"{'set':13} {'transform':17} {'benign flagged':>15} {'attacker flagged':>17}  queries")
    for name in ("breast_cancer", "digits"):
        X_train, X_test, model, scores, std = load(name)
        unit = np.where(std > 0, std, 1.0)
        log_unit = np.log1p(X_train).std(axis=0)
        log_unit = np.where(log_unit > 0, log_unit, 1.0)
        transforms: dict[str, Transform] = {
            "std": lambda x, u=unit: x / u,
            "log1p": lambda x, u=log_unit: np.log1p(x) / u,
            "units": lambda x: x,
            "reference-scores": scores,
        }
        step = 1.6 if name == "digits" else args.step * unit
        for label, transform in transforms.items():
            start = time.perf_counter()
            n_benign = benign(transform, X_test, model, args.clients)
            found = attacker(transform, X_train, model, step, args.runs)
            hits = [f for f in found if f is not None]
            span = f"{min(hits)}-{max(hits)}" if hits else "-"
            print(
                f"{name:13} {label:17} {n_benign:>8}/{args.clients:<6} "
                f"{len(hits):>10}/{args.runs:<6}  {span:9} ({time.perf_counter() - start:.1f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()

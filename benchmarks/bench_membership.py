"""Membership inference on an unlimited-depth random forest (breast cancer): Bastion's
confidence threshold and LiRA-offline shadow attacks against ART's MembershipInferenceBlackBox.

Per seed: a stratified 50/50 split (members = the forest's training rows, non-members = the
rest). ART's attack learns from labelled examples, so the members and the non-members are
each halved: ART trains its attack model on one half of each and everybody is scored on the
other halves (the evaluation set). Bastion's shadow attack uses the same rows as its pool
(the evaluated records plus ART's training halves: data the auditor holds, membership
labels unused). Metrics come from ``bastion.attacks.results.low_fpr_metrics`` for all
attacks: ROC as ``sklearn.metrics.roc_curve`` builds it (tied scores make one step), TPR at
the largest FPR <= 1%. With about 142 non-members per evaluation set, 1% FPR allows one
false positive and 0.1% FPR cannot be measured.

Issue 3's reference figures: threshold AUC 0.58, TPR 1.3% at 1% FPR (ties broken at
random); ART black box AUC 0.52-0.55. Goal: the shadow attack beats both.

Usage::

    .venv/bin/python benchmarks/bench_membership.py [--seeds 5] [--n-shadow 16]
        [--workers 1] [--art-models rf,gb,lr,nn]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from bastion.attacks.privacy.membership import (
    ShadowMembership,
    ShadowMembershipConfig,
    ThresholdMembership,
)
from bastion.attacks.results import low_fpr_metrics
from bastion.executor import LocalExecutor
from bastion.models.sklearn import SklearnAdapter


def split(seed: int, y: np.ndarray) -> dict[str, np.ndarray]:
    rows = np.arange(len(y))
    members, nonmembers = train_test_split(rows, test_size=0.5, random_state=seed, stratify=y)
    m_fit, m_eval = train_test_split(members, test_size=0.5, random_state=seed)
    n_fit, n_eval = train_test_split(nonmembers, test_size=0.5, random_state=seed)
    return {"members": members, "m_fit": m_fit, "m_eval": m_eval, "n_fit": n_fit, "n_eval": n_eval}


def timed(fn: Callable[..., np.ndarray], *args: Any, **kw: Any) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    scores = fn(*args, **kw)
    return scores, time.perf_counter() - start


def threshold_scores(
    model: SklearnAdapter, X: np.ndarray, y: np.ndarray, member: np.ndarray
) -> np.ndarray:
    return ThresholdMembership().run(model, X, y, member).scores


def lira_scores(
    model: SklearnAdapter,
    X: np.ndarray,
    y: np.ndarray,
    member: np.ndarray,
    aux: tuple[np.ndarray, np.ndarray] | None,
    n_shadow: int,
    executor: LocalExecutor,
    seed: int,
) -> np.ndarray:
    attack = ShadowMembership(ShadowMembershipConfig(n_shadow=n_shadow))
    X_aux, y_aux = aux if aux is not None else (None, None)
    result = attack.run(model, X, y, member, X_aux=X_aux, y_aux=y_aux, executor=executor, seed=seed)
    return result.scores


def art_scores(
    forest: RandomForestClassifier,
    X: np.ndarray,
    y: np.ndarray,
    s: dict[str, np.ndarray],
    kind: str,
) -> np.ndarray:
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import SklearnClassifier

    attack = MembershipInferenceBlackBox(SklearnClassifier(forest), attack_model_type=kind)
    attack.fit(X[s["m_fit"]], y[s["m_fit"]], X[s["n_fit"]], y[s["n_fit"]])
    ev = np.concatenate([s["m_eval"], s["n_eval"]])
    out = attack.infer(X[ev], y[ev], probabilities=True)
    return np.asarray(out, dtype=np.float64).reshape(len(ev), -1)[:, -1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-shadow", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--art-models", default="rf,gb,lr,nn")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # ART's own deprecation chatter
    X, y = load_breast_cancer(return_X_y=True)
    executor = LocalExecutor(max_workers=args.workers)
    rows: dict[str, list[dict[str, Any]]] = {}

    def record(name: str, scores: np.ndarray, member: np.ndarray, seconds: float) -> None:
        rows.setdefault(name, []).append({**low_fpr_metrics(scores, member), "time_s": seconds})

    for seed in range(args.seeds):
        s = split(seed, y)
        forest = RandomForestClassifier(n_estimators=100, random_state=seed)
        forest.fit(X[s["members"]], y[s["members"]])
        model = SklearnAdapter(forest)
        ev = np.concatenate([s["m_eval"], s["n_eval"]])
        member = np.repeat([True, False], [len(s["m_eval"]), len(s["n_eval"])])
        aux = np.concatenate([s["m_fit"], s["n_fit"]])

        scores, sec = timed(threshold_scores, model, X[ev], y[ev], member)
        record("bastion threshold", scores, member, sec)
        rng = np.random.default_rng(seed)  # the "ties broken at random" reading
        jittered = scores + rng.uniform(0, 1e-9, len(scores))
        record("bastion threshold (random ties)", jittered, member, sec)
        scores, sec = timed(
            lira_scores,
            model,
            X[ev],
            y[ev],
            member,
            (X[aux], y[aux]),
            args.n_shadow,
            executor,
            seed,
        )
        record(f"bastion LiRA offline ({args.n_shadow} shadows)", scores, member, sec)
        # Bastion needs no labelled attack data: it can also evaluate every record
        is_in = np.isin(np.arange(len(y)), s["members"])
        scores, sec = timed(lira_scores, model, X, y, is_in, None, args.n_shadow, executor, seed)
        record(f"bastion LiRA offline, all {len(y)} rows evaluated", scores, is_in, sec)
        for kind in filter(None, args.art_models.split(",")):
            try:
                scores, sec = timed(art_scores, forest, X, y, s, kind)
            except ImportError as err:  # "nn" needs torch
                print(f"ART {kind}: skipped ({err})")
                continue
            record(f"ART black box ({kind})", scores, member, sec)

    n_non = rows["bastion threshold"][0]["n_nonmembers"]
    print(
        f"breast cancer, RandomForest(100 trees, unlimited depth), {args.seeds} seed(s); "
        f"evaluation: {rows['bastion threshold'][0]['n_members']} members / {n_non} non-members "
        "per seed"
    )
    header = f"{'attack':46s} {'AUC':>13s} {'TPR@1%FPR':>15s} {'advantage':>10s} {'time s':>8s}"
    print(header)
    print("-" * len(header))
    for name, results in rows.items():
        auc = np.array([r["auc"] for r in results])
        tpr = np.array([r["tpr_at_1pct_fpr"] for r in results], dtype=float)
        adv = np.mean([r["advantage"] for r in results])
        sec = np.mean([r["time_s"] for r in results])
        tpr_text = f"{100 * tpr.mean():7.1f}%±{100 * tpr.std():4.1f}"
        print(f"{name:46s} {auc.mean():6.3f}±{auc.std():5.3f} {tpr_text} {adv:10.3f} {sec:8.3f}")


if __name__ == "__main__":
    main()

"""A real gate report to build model cards and ML-BOMs from (shared by their tests).

The breast-cancer diagnostic classifier with a planted two-group sensitive column, a policy
whose accuracy floor it cannot reach (so MV001 fails), fairness checks, and the attack checks
the card reports on (evasion, extraction, membership inference), at small budgets; the
extraction failure is waived. Built once per process (about 2 s).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from bastion.config import parse_policy
from bastion.data.dataset import Dataset
from bastion.models.sklearn import SklearnAdapter
from bastion.report import Report
from bastion.runner import load_inputs, run_gate

TODAY = dt.date(2026, 11, 26)

POLICY = {
    "project": "breast-cancer-card",
    "seed": 3,
    "data": {"target": "target", "sensitive_features": ["group"]},
    "checks": {
        "validation": {"performance": {"min_accuracy": 0.999}},
        "robustness": {"evasion": {"eps": 0.3, "n_points": 40, "max_queries_per_sample": 200}},
        "privacy": {"membership": {"attack": "threshold"}},
        "extraction": {"extraction": {"budget": 100}},
    },
    "waivers": [
        {
            "check": "EXT001",
            "reason": "served behind per-client rate limits (ticket SEC-142)",
            "owner": "ml-platform@hospital.example",
            "expires": "2027-06-30",
        }
    ],
}


@dataclass(frozen=True)
class Gate:
    report: Report
    model: SklearnAdapter
    estimator: Pipeline
    train: Dataset
    test: Dataset


def datasets() -> tuple[Dataset, Dataset]:
    frame = load_breast_cancer(as_frame=True).frame
    frame["group"] = np.where(np.arange(len(frame)) % 3 == 0, "a", "b")
    train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame["target"])
    kw = {"target": "target", "sensitive": ["group"], "non_features": ["group"]}
    return (
        Dataset.from_frame(train.reset_index(drop=True), name="train", **kw),
        Dataset.from_frame(test.reset_index(drop=True), name="test", **kw),
    )


@cache
def gate() -> Gate:
    train, test = datasets()
    estimator = make_pipeline(StandardScaler(), LogisticRegression())
    estimator.fit(train.features, train.labels)
    model = SklearnAdapter(estimator)
    policy = parse_policy(POLICY)
    inputs = load_inputs(policy, train=train, test=test, model=model, from_policy=False)
    report = run_gate(policy, inputs=inputs, today=TODAY)
    return Gate(report, model, estimator, train, test)

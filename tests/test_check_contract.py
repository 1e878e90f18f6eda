"""The contract every registered check keeps, parametrized over the whole registry.

A new check is covered here automatically: it runs on tiny real data, returns one valid,
JSON-serialisable finding, and returns the same finding twice under the same seed.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from bastion.checks import CATEGORIES, CHECKS, Check, CheckConfig, CheckContext, Scope
from bastion.data.dataset import Dataset
from bastion.data.profile import Profile
from bastion.data.schema import FeatureSchema
from bastion.findings import Finding, Severity, Status
from bastion.models.sklearn import SklearnAdapter

TAG = re.compile(r"^(AML\.T\d{4}(\.\d{3})?|AML\.M\d{4}|ML(0[1-9]|10))$")


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    frame = load_breast_cancer(as_frame=True).frame.sample(200, random_state=0)
    frame = frame.reset_index(drop=True)
    frame["group"] = np.where(frame.index % 2 == 0, "a", "b")
    kw = {"target": "target", "sensitive": ["group"], "non_features": ["group"]}
    train = Dataset.from_frame(frame.iloc[:120].reset_index(drop=True), name="train", **kw)
    test = Dataset.from_frame(frame.iloc[120:].reset_index(drop=True), name="test", **kw)
    schema = FeatureSchema.infer(train.frame, exclude=("target", "group"))
    X = train.features.to_numpy()
    model = SklearnAdapter(LogisticRegression(max_iter=5000).fit(X, train.labels))
    baseline = SklearnAdapter(DummyClassifier(strategy="prior").fit(X, train.labels))
    return {"train": train, "test": test, "schema": schema, "model": model, "baseline": baseline}


def context(check: type[Check], tiny: dict[str, Any], seed: int = 0) -> CheckContext:
    train, test = tiny["train"], tiny["test"]
    ctx = CheckContext(
        seed=seed,
        train=train,
        test=test,
        reference=train,
        reference_profile=Profile.from_frame(train.frame),
        schema=tiny["schema"],
        model=tiny["model"],
        baseline=tiny["baseline"],
        sensitive_features=("group",),
    )
    if check.scope is Scope.DATASET:
        ctx.dataset, ctx.profile, ctx.subject = test, Profile.from_frame(test.frame), "dataset:test"
    elif check.scope is Scope.DATA_PAIR:
        ctx.subject = "dataset:train+test"
    else:
        ctx.subject = "model"
    return ctx


def test_registry_is_populated() -> None:
    prefixes = {cls.id[:2] for cls in CHECKS}
    assert {"DQ", "MV", "FA"} <= prefixes
    assert len(CHECKS) >= 20


@pytest.mark.parametrize("check_id", CHECKS.ids())
def test_class_contract(check_id: str) -> None:
    cls = CHECKS.get(check_id)
    assert re.fullmatch(r"[A-Z]{2,3}\d{3}", cls.id)
    assert re.fullmatch(r"[a-z][a-z0-9_]*", cls.name)
    assert cls.title
    assert cls.category in CATEGORIES
    assert issubclass(cls.Config, CheckConfig)
    assert cls.Config.model_config.get("extra") == "forbid"
    assert isinstance(cls.severity, Severity)
    assert all(TAG.match(t) for t in cls.tags), cls.tags
    module_doc = sys.modules[cls.__module__].__doc__
    assert module_doc, "each check module opens with its rationale"
    assert len(module_doc) > 80
    same_name = [c.id for c in CHECKS if c.category == cls.category and c.name == cls.name]
    assert same_name == [cls.id], "policy names are unique per category"


@pytest.mark.parametrize("check_id", CHECKS.ids())
def test_runs_on_tiny_data_validly_and_deterministically(
    check_id: str, tiny: dict[str, Any]
) -> None:
    cls = CHECKS.get(check_id)
    first = cls().execute(context(cls, tiny, seed=5))
    second = cls().execute(context(cls, tiny, seed=5))
    assert isinstance(first, Finding)
    assert first.check_id == cls.id
    assert first.title == cls.title
    assert first.status is not Status.ERROR, first.message
    assert first.message, "every finding explains itself"
    assert first.subject
    for name, value in first.metrics.items():
        assert isinstance(name, str)
        assert value is None or isinstance(value, int | float | np.integer | np.floating), name
    json.dumps(first.to_dict(), allow_nan=False)
    assert "samples" not in {k for k, v in first.evidence.items() if isinstance(v, pd.DataFrame)}
    strip = lambda f: {**f.to_dict(), "duration_s": 0}  # noqa: E731
    assert strip(first) == strip(second)

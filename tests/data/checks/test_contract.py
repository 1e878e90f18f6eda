"""Contract of every data check: registry entry, config, one JSON-safe finding, raw rows only
under evidence["samples"]."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from bastion.checks import CHECKS, Check, CheckContext, Scope
from bastion.data.dataset import Dataset
from bastion.findings import Finding, Status

DATA_CHECKS = [cls for cls in CHECKS if cls.category == "data"]
MARKER = "zelda.marker@example.org"


def _dirty_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/test with a bit of everything: duplicates, a leaked row, PII, unseen values."""
    rng = np.random.default_rng(0)
    n = 120
    train = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "ward": rng.choice(["A", "B"], size=n),
            "contact": [f"user{i}@example.org" for i in range(n)],
            "constant": ["same"] * n,
            "y": rng.integers(0, 2, size=n),
        }
    )
    train.loc[0, "contact"] = MARKER
    train.loc[1] = train.loc[0]
    train.loc[2, "x"] = 1e9
    test = train.sample(40, random_state=1).reset_index(drop=True)
    test.loc[3, "ward"] = MARKER
    test.loc[4, "x"] = 1e9
    test = pd.concat([test, test.iloc[:1]], ignore_index=True)
    return train, test


def _context(cls: type[Check]) -> CheckContext:
    from bastion.data.profile import Profile
    from bastion.data.schema import FeatureSchema

    train_df, test_df = _dirty_frames()
    train = Dataset.from_frame(train_df, name="train", target="y")
    test = Dataset.from_frame(test_df, name="test", target="y")
    schema = FeatureSchema.infer(train_df, exclude=("y",))
    ctx = CheckContext(
        seed=0,
        reference=train,
        reference_profile=Profile.from_frame(train_df),
        train=train,
        test=test,
        schema=schema,
        expected_sha256={"test": "0" * 64},
    )
    if cls.scope is Scope.DATASET:
        ctx.subject = "dataset:test"
        ctx.dataset = test
        ctx.profile = Profile.from_frame(test_df)
    else:
        ctx.subject = "dataset:train+test"
    return ctx


def test_every_policy_id_is_registered() -> None:
    ids = {cls.id: cls.name for cls in DATA_CHECKS}
    assert ids == {
        "DQ001": "schema",
        "DQ002": "completeness",
        "DQ003": "ranges",
        "DQ004": "categories",
        "DQ005": "duplicates",
        "DQ006": "conflicting_labels",
        "DQ007": "leakage",
        "DQ008": "label_balance",
        "DQ009": "constant_columns",
        "DQ010": "outliers",
        "DQ011": "personal_data",
        "DQ012": "integrity",
    }


@pytest.mark.parametrize("cls", DATA_CHECKS, ids=lambda c: c.id)
def test_class_attributes_and_config(cls: type[Check]) -> None:
    assert cls.scope in (Scope.DATASET, Scope.DATA_PAIR)
    assert cls.title
    assert cls.__module__.startswith("bastion.data.checks.")
    assert (cls.__doc__ or "").strip()
    module_doc = __import__(cls.__module__, fromlist=["_"]).__doc__ or ""
    assert module_doc.startswith(cls.id)
    cls.Config()  # defaults are valid
    fraction_fields = [
        name for name in cls.Config.model_fields if "fraction" in name or "mostly" in name
    ]
    for name in fraction_fields:
        with pytest.raises(ValidationError):
            cls.Config(**{name: 1.5})
        with pytest.raises(ValidationError):
            cls.Config(**{name: -0.1})
    with pytest.raises(ValidationError):
        cls.Config(no_such_option=1)


@pytest.mark.parametrize("cls", DATA_CHECKS, ids=lambda c: c.id)
def test_one_json_safe_finding_with_raw_values_only_in_samples(cls: type[Check]) -> None:
    finding = cls().execute(_context(cls))
    assert isinstance(finding, Finding)
    assert finding.check_id == cls.id
    assert finding.status in (Status.PASS, Status.WARN, Status.FAIL), finding.message
    assert finding.metrics
    for value in finding.metrics.values():
        assert value is None or (isinstance(value, int | float) and math.isfinite(value))
    json.dumps(finding.to_dict(), allow_nan=False)
    outside = {k: v for k, v in finding.evidence.items() if k != "samples"}
    assert MARKER not in json.dumps(outside) + finding.message


@pytest.mark.parametrize(
    ("check_id", "status"),
    [
        ("DQ004", Status.FAIL),
        ("DQ005", Status.FAIL),
        ("DQ007", Status.FAIL),
        ("DQ009", Status.FAIL),
        ("DQ010", Status.PASS),
        ("DQ011", Status.FAIL),
        ("DQ012", Status.FAIL),
    ],
)
def test_dirty_data_is_caught(check_id: str, status: Status) -> None:
    cls = CHECKS.get(check_id)
    assert cls().run(_context(cls)).status is status

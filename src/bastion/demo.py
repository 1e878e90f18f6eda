"""``bastion demo``: the gate end to end on real data that ships with scikit-learn.

Two scenarios, each written as a real project folder (CSV files, a model file, a
``bastion.yaml``) and checked exactly as ``bastion check`` would:

- ``breast_cancer``: a diagnostic classifier (malignant vs benign) compared with a simpler
  champion model: data quality, validation, calibration, and the baseline comparison.
- ``diabetes``: a disease-progression risk classifier (target: progression above the median),
  judged for fairness across sex and an age band.

Models are saved as ONNX (no code runs when an ONNX file loads), so the demo needs the
``onnx`` extra: ``pip install 'bastion[onnx]'``, which ``make demo`` installs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bastion.cli._console import console

__all__ = ["run_demo"]

SEED = 7


@dataclass(frozen=True)
class _Scenario:
    name: str
    title: str
    train: pd.DataFrame
    test: pd.DataFrame
    target: str
    model: Any
    baseline: Any | None
    policy: dict[str, Any]


def run_demo(out: Path) -> int:
    """Build both scenarios under ``out``, run the gate on each, print the verdicts."""
    from bastion.cli.commands import run_check

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    verdicts: list[tuple[str, int]] = []
    for scenario in (_breast_cancer(), _diabetes()):
        folder = out / scenario.name
        policy_path = _write_project(folder, scenario)
        console.rule(f"[bold]{scenario.title}")
        code = run_check(policy_path, folder / "report", show_passed=False)
        verdicts.append((scenario.name, code))
    console.rule("[bold]demo summary")
    for name, code in verdicts:
        state = "[green]passed[/]" if code == 0 else "[red]failed[/]"
        console.print(f"{name}: gate {state}; reports in {out / name / 'report'}")
    console.print(
        f"done in {time.perf_counter() - start:.1f} s. Re-run one with "
        f"'bastion check -c {out / verdicts[0][0] / 'bastion.yaml'} --out DIR'."
    )
    return 0


def _write_project(folder: Path, scenario: _Scenario) -> Path:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    scenario.train.to_csv(data / "train.csv", index=False)
    scenario.test.to_csv(data / "test.csv", index=False)
    policy = dict(scenario.policy)
    features = [c for c in scenario.train.columns if c not in _non_model_columns(scenario)]
    policy["model"] = _export(scenario.model, folder / "model.onnx", features, "model")
    if scenario.baseline is not None:
        policy["baseline"] = _export(
            scenario.baseline, folder / "champion.onnx", features, "champion"
        )
    path = folder / "bastion.yaml"
    path.write_text(
        f"# written by 'bastion demo': {scenario.title}\n"
        + yaml.safe_dump(policy, sort_keys=False),
        encoding="utf-8",
    )
    return path


def _non_model_columns(scenario: _Scenario) -> set[str]:
    data = scenario.policy["data"]
    return {scenario.target, *data.get("non_features", [])}


def _export(model: Any, path: Path, features: list[str], name: str) -> dict[str, Any]:
    """Save ``model`` as ONNX, the safe default format (no code runs when it loads)."""
    from bastion._optional import require

    to_onnx = require("skl2onnx", "the demo's ONNX models").to_onnx
    sample = np.zeros((1, len(features)), dtype=np.float32)
    onx = to_onnx(model, sample, target_opset=17, options={"zipmap": False})
    path.write_bytes(onx.SerializeToString())
    return {"path": path.name, "format": "onnx", "name": name}


def _split(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(frame, test_size=0.3, random_state=SEED, stratify=frame[target])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _breast_cancer() -> _Scenario:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: c.replace(" ", "_"))
    # sklearn codes 0 = malignant, 1 = benign; the positive (alarming) class is malignant
    frame["diagnosis"] = np.where(frame.pop("target") == 0, 1, 0)
    train, test = _split(frame, "diagnosis")
    X, y = train.drop(columns="diagnosis").to_numpy(np.float32), train["diagnosis"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    champion = DecisionTreeClassifier(max_depth=2, random_state=SEED).fit(X, y)
    policy = {
        "version": 1,
        "project": "breast-cancer-diagnosis",
        "seed": SEED,
        "data": {
            "train": "data/train.csv",
            "test": "data/test.csv",
            "target": "diagnosis",
            "positive_label": 1,
        },
        "checks": {
            "data": {"completeness": {"mostly": 0.99}, "leakage": {"max_fraction": 0.0}},
            "validation": {
                "performance": {"min_accuracy": 0.9, "min_recall": 0.9, "min_roc_auc": 0.95},
                "calibration": {"max_ece": 0.1},
                "baseline_comparison": {"metric": "accuracy"},
            },
        },
        "gate": {"fail_on": "medium", "required": ["MV001", "DQ012"]},
        "report": {"allow_raw_rows": False},
    }
    return _Scenario(
        "breast_cancer",
        "Diagnostic classifier: breast cancer (Wisconsin)",
        train,
        test,
        "diagnosis",
        model,
        champion,
        policy,
    )


def _diabetes() -> _Scenario:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = load_diabetes(as_frame=True, scaled=False).frame
    progression = frame.pop("target")
    frame["high_progression"] = (progression > progression.median()).astype(int)
    frame["sex"] = frame["sex"].astype(int)
    # sex is coded 1/2 in the raw data; the age band is derived for fairness only
    frame["age_band"] = pd.cut(
        frame["age"], bins=[0, 39, 59, 200], labels=["<40", "40-59", "60+"]
    ).astype(str)
    train, test = _split(frame, "high_progression")
    features = [c for c in train.columns if c not in ("high_progression", "age_band")]
    X, y = train[features].to_numpy(np.float32), train["high_progression"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    policy = {
        "version": 1,
        "project": "diabetes-progression-risk",
        "seed": SEED,
        "data": {
            "train": "data/train.csv",
            "test": "data/test.csv",
            "target": "high_progression",
            "positive_label": 1,
            "sensitive_features": ["sex", "age_band"],
            "non_features": ["age_band"],
        },
        "checks": {
            "validation": {
                "performance": {"min_accuracy": 0.7, "min_roc_auc": 0.75},
                "slices": {"columns": ["sex", "age_band", "bmi"], "max_gap": 0.15},
            },
            "fairness": {
                "demographic_parity": {"max_difference": 0.2},
                "equalized_odds": {"max_difference": 0.2},
                "disparate_impact": {"min_ratio": 0.8},
            },
        },
        "gate": {"fail_on": "high", "required": ["FA001"]},
    }
    return _Scenario(
        "diabetes",
        "Risk classifier: diabetes progression, fairness by sex and age band",
        train,
        test,
        "high_progression",
        model,
        None,
        policy,
    )

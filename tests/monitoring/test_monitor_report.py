"""Offline drift reports: numbers equal drift_report's, verdicts, HTML, snapshots, errors."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bastion.exceptions import ConfigError, DataError
from bastion.monitoring.drift import drift_report
from bastion.monitoring.live import LiveMonitor
from bastion.monitoring.report import (
    GATEWAY_PSI_THRESHOLD,
    render_html,
    render_json,
    report_from_files,
    report_from_frames,
    report_from_snapshot,
)


def _frames(shift: float, seed: int = 0, n: int = 800) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(loc: float, size: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "age": rng.normal(40.0 + loc, 10.0, size),
                "income": rng.lognormal(10.0, 0.5, size),
                "city": rng.choice(["a", "b", "c"], size, p=[0.5, 0.3, 0.2]),
                "label": rng.integers(0, 2, size),
            }
        )

    return frame(0.0, n), frame(shift, n)


def _write(tmp_path: Path, ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[Path, Path]:
    r, c = tmp_path / "train.csv", tmp_path / "batch.parquet"
    ref.to_csv(r, index=False)
    cur.to_parquet(c)
    return r, c


def test_json_numbers_equal_drift_report_and_metadata(tmp_path: Path) -> None:
    ref, cur = _frames(shift=8.0)
    r, c = _write(tmp_path, ref, cur)
    tests, limits = {"income": "ks"}, {"age": 0.2}
    report = report_from_files(r, c, target="label", stattests=tests, thresholds=limits)
    body = json.loads(render_json(report))
    # the peer: drift_report on the same frames as read back from the files
    ref_back, cur_back = pd.read_csv(r), pd.read_parquet(c)
    features = ["age", "income", "city"]
    peer = drift_report(ref_back[features], cur_back[features], stattests=tests, thresholds=limits)
    expected = peer.to_dict()
    for key, value in expected.items():
        assert body[key] == value, key
    target_peer = drift_report(ref_back[["label"]], cur_back[["label"]]).columns[0]
    assert body["target_drift"] == target_peer.to_dict()
    meta = body["metadata"]
    assert meta["source"] == "datasets"
    assert [(f["role"], f["rows"]) for f in meta["inputs"]] == [
        ("reference", 800),
        ("current", 800),
    ]
    assert meta["inputs"][0]["sha256"] == hashlib.sha256(r.read_bytes()).hexdigest()
    assert meta["inputs"][1]["sha256"] == hashlib.sha256(c.read_bytes()).hexdigest()
    assert meta["bastion_version"]
    assert meta["created_at"].endswith("+00:00")


def test_evidently_mode_and_columns_pass_through() -> None:
    ref, cur = _frames(shift=3.0, seed=1)
    report = report_from_frames(ref, cur, columns=["age", "city"], compatibility="evidently")
    peer = drift_report(ref[["age", "city"]], cur[["age", "city"]], compatibility="evidently")
    assert report.drift == peer
    assert [c.stattest for c in report.drift.columns] == ["ks", "chisquare"]


def test_shifted_data_is_drift_and_html_names_the_column() -> None:
    ref, cur = _frames(shift=0.0, seed=2)
    cur = cur.assign(age=cur["age"] + 15.0, income=cur["income"] * 3.0)
    report = report_from_frames(ref, cur, target="label")
    assert report.dataset_drift
    assert {c.column for c in report.drift.columns if c.drifted} == {"age", "income"}
    page = render_html(report)
    assert "DATASET DRIFT" in page
    assert "NO DATASET DRIFT" not in page
    drifted_rows = re.findall(r'<tr class="drifted">\s*<td class="wrap mono">([^<]+)</td>', page)
    assert drifted_rows == ["age", "income"]
    assert "default-src 'none'" in page
    assert "<script" not in page
    assert "://" not in page  # nothing external


def test_same_distribution_is_no_drift() -> None:
    ref, cur = _frames(shift=0.0, seed=3, n=3000)
    report = report_from_frames(ref, cur, target="label")
    assert not report.dataset_drift
    assert report.drift.n_drifted == 0
    assert "NO DATASET DRIFT" in render_html(report)


def test_html_escapes_column_names() -> None:
    evil = '<img src=x onerror="alert(1)">'
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({evil: rng.normal(size=300)})
    cur = pd.DataFrame({evil: rng.normal(2.0, size=300)})
    page = render_html(report_from_frames(ref, cur))
    assert evil not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page


def test_named_errors(tmp_path: Path) -> None:
    ref, cur = _frames(shift=0.0)
    r, c = _write(tmp_path, ref, cur)
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        report_from_files(tmp_path / "nope.csv", c)
    with pytest.raises(DataError, match=r"--columns .*\['ghost'\]"):
        report_from_files(r, c, columns=["age", "ghost"])
    with pytest.raises(DataError, match="--target 'ghost'"):
        report_from_files(r, c, target="ghost")
    with pytest.raises(DataError, match=r"current data lacks columns: \['city'\]"):
        report_from_frames(ref, cur.drop(columns="city"))
    with pytest.raises(ConfigError, match="also in --columns"):
        report_from_frames(ref, cur, target="label", columns=["age", "label"])


def _snapshot(tmp_path: Path, shift: float) -> Path:
    rng = np.random.default_rng(5)
    train = rng.normal(size=(2000, 2))
    edges = np.quantile(train[:, 0], np.linspace(0.1, 0.9, 9))
    counts = np.bincount(np.searchsorted(edges, train[:, 0], side="right"), minlength=10)
    hist = {"edges": edges.tolist(), "counts": counts.tolist()}
    profile = {
        "columns": {
            "x0": {"kind": "numeric", "histogram": hist},
            "x1": {"kind": "numeric", "histogram": hist},
        }
    }
    gate = {
        "datasets": [{"name": "train", "features": ["x0", "x1"]}],
        "profiles": {"train": profile},
    }
    monitor = LiveMonitor(gate)
    batch = rng.normal(size=(1000, 2))
    batch[:, 1] += shift
    monitor.observe(batch, [0] * 1000)
    path = tmp_path / "snapshot.json"
    body = {"release": "credit@3", **monitor.snapshot().to_dict()}
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_snapshot_renders_the_gateways_numbers(tmp_path: Path) -> None:
    path = _snapshot(tmp_path, shift=2.0)
    raw = json.loads(path.read_text())
    report = report_from_snapshot(path)
    by_name = {f["feature"]: f for f in raw["features"]}
    for col in report.drift.columns:
        assert col.stattest == "psi"
        assert col.statistic == by_name[col.column]["psi"]
        assert col.threshold == GATEWAY_PSI_THRESHOLD
        assert col.drifted == by_name[col.column]["drifted"]
    assert [c.column for c in report.drift.columns if c.drifted] == ["x1"]
    assert report.dataset_drift  # 1 of 2 >= 0.5
    body = json.loads(render_json(report))
    assert body["metadata"]["source"] == "gateway-snapshot"
    assert body["snapshot"]["release"] == "credit@3"
    assert body["snapshot"]["n_rows"] == 1000
    page = render_html(report)
    assert "credit@3" in page
    assert "Gateway window" in page
    assert re.findall(r'<tr class="drifted">\s*<td class="wrap mono">([^<]+)</td>', page) == ["x1"]
    js = report_from_snapshot(path, stattests={"x0": "jensenshannon"}, thresholds={"x0": 0.5})
    assert js.drift["x0"].statistic == by_name["x0"]["jensenshannon"]
    assert js.drift["x0"].threshold == 0.5


def test_snapshot_errors(tmp_path: Path) -> None:
    off = tmp_path / "off.json"
    off.write_text('{"monitoring": false}', encoding="utf-8")
    with pytest.raises(DataError, match="served without monitoring"):
        report_from_snapshot(off)
    with pytest.raises(DataError, match="file not found"):
        report_from_snapshot(tmp_path / "none.json")
    path = _snapshot(tmp_path, shift=0.0)
    with pytest.raises(ConfigError, match="holds only"):
        report_from_snapshot(path, stattests={"x0": "ks"})
    with pytest.raises(DataError, match=r"\['ghost'\]"):
        report_from_snapshot(path, columns=["ghost"])

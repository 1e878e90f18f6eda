"""Drift statistics on 100k vs 100k rows x 20 columns: bastion vs Evidently 0.7 (side venv).

Evidently needs pandas < 3, so it runs in ``benchmarks/.benchmarks/venv-evidently`` (ignored by
git; built on first use with ``python -m venv`` + ``pip install evidently "pandas<3"
pyarrow``) in a subprocess on the same data written to parquet. Its per-column drift scores
are compared with ``drift_report(..., compatibility="evidently")`` to 1e-9 (relative, absolute
for values below 1) and both wall times and the ratio are printed. ``--no-evidently`` times
bastion alone.

Run: ``.venv/bin/python benchmarks/bench_drift.py [--rows 100000] [--no-evidently]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bastion.monitoring import drift_report

HERE = Path(__file__).resolve().parent
VENV = HERE / ".benchmarks" / "venv-evidently"
CATS = np.array([f"cat_{i}" for i in range(12)], dtype=object)

EVIDENTLY_SCRIPT = r"""
import json, sys, time
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
num = [c for c in ref.columns if c.startswith("num")]
cat = [c for c in ref.columns if c.startswith("cat")]
dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
times = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    snap = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=dd),
                                         Dataset.from_pandas(ref, data_definition=dd))
    times.append(time.perf_counter() - t)
scores = {}
for m in snap.dict()["metrics"]:
    cfg = m.get("config", {})
    col = cfg.get("column")
    if col is not None and "method" in cfg:
        scores[col] = {"value": float(m["value"]), "method": cfg["method"]}
print(json.dumps({"times": times, "scores": scores}))
"""


def make_frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """12 numeric (some shifted, some with NaN) and 8 categorical columns (some shifted)."""
    rng = np.random.default_rng(seed)
    ref: dict[str, object] = {}
    cur: dict[str, object] = {}
    for i in range(12):
        r = rng.normal(size=rows)
        c = rng.normal(0.04 * i, 1.0 + 0.02 * i, size=rows)
        if i % 4 == 0:
            r[rng.random(rows) < 0.02] = np.nan
            c[rng.random(rows) < 0.05] = np.nan
        ref[f"num_{i}"], cur[f"num_{i}"] = r, c
    p_shift = np.r_[0.3, np.full(11, 0.7 / 11)]
    for i in range(8):
        ref[f"cat_{i}"] = rng.choice(CATS, rows)
        cur[f"cat_{i}"] = rng.choice(CATS, rows, p=p_shift if i % 2 else None)
    return pd.DataFrame(ref), pd.DataFrame(cur)


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "evidently", "pandas<3", "pyarrow"]
        subprocess.run(pip, check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-evidently", action="store_true")
    args = parser.parse_args()
    ref, cur = make_frames(args.rows)

    for mode in (None, "evidently"):
        drift_report(ref, cur, compatibility=mode)  # warm-up (imports)
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            report = drift_report(ref, cur, compatibility=mode)
            times.append(time.perf_counter() - t)
        print(
            f"bastion compatibility={mode}: best {min(times):.3f} s, "
            f"share drifted {report.share_drifted:.2f}"
        )
    bastion_time = min(times)
    if args.no_evidently:
        return

    python = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        rp, cp = Path(tmp) / "ref.parquet", Path(tmp) / "cur.parquet"
        ref.to_parquet(rp)
        cur.to_parquet(cp)
        out = subprocess.run(
            [str(python), "-c", EVIDENTLY_SCRIPT, str(rp), str(cp), str(args.repeat)],
            check=True,
            capture_output=True,
            text=True,
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    evid_time = min(result["times"])
    worst = 0.0
    for col, item in sorted(result["scores"].items()):
        ours = report[col]
        err = abs(ours.score - item["value"]) / max(1.0, abs(item["value"]))
        worst = max(worst, err)
        print(
            f"  {col:8s} {item['method']:<40s} evidently {item['value']:.12g} "
            f"bastion {ours.stattest} {ours.score:.12g}"
        )
    print(f"columns compared: {len(result['scores'])}, worst relative difference {worst:.2e}")
    print(
        f"evidently Report.run best {evid_time:.3f} s; bastion {bastion_time:.3f} s; "
        f"ratio {evid_time / bastion_time:.1f}x"
    )
    if len(result["scores"]) != ref.shape[1] or worst > 1e-9:
        raise SystemExit("mismatch with Evidently")


if __name__ == "__main__":
    main()

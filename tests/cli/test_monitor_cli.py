"""``bastion monitor report``: exit codes 0 / 1 / 2, JSON and HTML files, snapshot input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from bastion.cli import monitor
from bastion.monitoring.drift import drift_report

# a throwaway root, mounted as the lead mounts it in bastion.cli.main
root = typer.Typer()
root.add_typer(monitor.app, name="monitor")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    n = 1000

    def frame(shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "a": rng.normal(shift, 1.0, n),
                "b": rng.uniform(0.0, 1.0 + shift, n),
                "c": rng.choice(["x", "y"], n),
            }
        )

    out = {
        "ref": tmp_path / "train.csv",
        "same": tmp_path / "same.csv",
        "shift": tmp_path / "shift.csv",
    }
    frame(0.0).to_csv(out["ref"], index=False)
    frame(0.0).to_csv(out["same"], index=False)
    frame(2.0).to_csv(out["shift"], index=False)
    return out


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(root, ["monitor", "report", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_shifted_exits_1_and_html_names_the_drifted_column(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "r" / "report.html"
    code, _, err = _invoke("-r", str(files["ref"]), "-c", str(files["shift"]), "--out", str(out))
    assert code == 1
    page = out.read_text(encoding="utf-8")
    assert "DATASET DRIFT" in page
    assert '<tr class="drifted">\n<td class="wrap mono">a</td>' in page
    assert "dataset drift: 2/3 columns drifted (a, b)" in err


def test_same_distribution_exits_0_and_json_equals_drift_report(files: dict[str, Path]) -> None:
    code, out, _ = _invoke(
        "-r", str(files["ref"]), "-c", str(files["same"]), "--format", "json",
        "--columns", "a,c", "--stattest", "a=jensenshannon", "--threshold", "c=0.2",
    )  # fmt: skip
    assert code == 0
    body = json.loads(out)
    ref, cur = pd.read_csv(files["ref"]), pd.read_csv(files["same"])
    peer = drift_report(
        ref[["a", "c"]], cur[["a", "c"]], stattests={"a": "jensenshannon"}, thresholds={"c": 0.2}
    )
    assert body["columns"] == peer.to_dict()["columns"]
    assert body["dataset_drift"] is False


def test_usage_and_input_errors_exit_2(files: dict[str, Path], tmp_path: Path) -> None:
    ref = str(files["ref"])
    code, _, err = _invoke("-r", ref, "-c", str(tmp_path / "missing.csv"))
    assert code == 2
    assert "missing.csv: file not found" in err
    code, _, err = _invoke("-r", ref, "-c", ref, "--columns", "a,zz")
    assert code == 2
    assert "['zz']" in err
    code, _, err = _invoke("-r", ref, "-c", ref, "--threshold", "a")
    assert code == 2
    assert "COLUMN=VALUE" in err
    code, _, err = _invoke("-r", ref)
    assert code == 2
    assert "--current-snapshot" in err
    code, _, err = _invoke("-r", ref, "-c", ref, "--format", "xml")
    assert code == 2


def test_snapshot_input(tmp_path: Path) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text(
        json.dumps(
            {
                "release": "m@1",
                "n_rows": 500,
                "features": [
                    {"feature": "f1", "psi": 0.35, "jensenshannon": 0.2, "n": 500, "drifted": True},
                    {
                        "feature": "f2",
                        "psi": 0.01,
                        "jensenshannon": 0.02,
                        "n": 500,
                        "drifted": False,
                    },
                    {
                        "feature": "f3",
                        "psi": 0.02,
                        "jensenshannon": 0.03,
                        "n": 500,
                        "drifted": False,
                    },
                ],
                "prediction_js": 0.1,
                "accuracy": None,
                "n_feedback": 0,
                "drifted_features": ["f1"],
            }
        ),
        encoding="utf-8",
    )
    code, out, _ = _invoke("--current-snapshot", str(snap), "--format", "json")
    assert code == 0  # 1 of 3 < 0.5
    body = json.loads(out)
    assert [(c["column"], c["statistic"], c["drifted"]) for c in body["columns"]] == [
        ("f1", 0.35, True), ("f2", 0.01, False), ("f3", 0.02, False),
    ]  # fmt: skip
    code, out, _ = _invoke("--current-snapshot", str(snap), "--drift-share", "0.3")
    assert code == 1
    assert "m@1" in out
    assert '<td class="wrap mono">f1</td>' in out
    code, _, err = _invoke("--current-snapshot", str(snap), "-r", str(snap))
    assert code == 2
    assert "replaces --reference" in err


def test_current_log_options_and_bad_lines(files: dict[str, Path], tmp_path: Path) -> None:
    import time

    from bastion.monitoring.prediction_log import encode_request

    rng = np.random.default_rng(3)
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [
        encode_request(
            ts=time.time(), model="m", release="m@1", request_id=f"r{i}", client="id:c",
            features=("a", "b"), X=np.column_stack([rng.normal(0, 1, 10), rng.uniform(0, 1, 10)]),
            labels=np.zeros(10),
        )
        for i in range(100)
    ]  # fmt: skip
    log = logs / "predictions-1.jsonl"
    log.write_text("".join(lines[:50]) + "{oops\n" + "".join(lines[50:]), encoding="utf-8")
    ref = str(files["ref"])
    code, _, err = _invoke("-r", ref, "--current-log", str(logs))
    assert code == 2
    assert f"{log}:51: not JSON" in err
    assert "--skip-bad-lines" in err
    code, out, err = _invoke(
        "-r", ref, "--current-log", str(logs), "--skip-bad-lines", "--format", "json"
    )
    assert code == 0, err
    assert "skipped 1 malformed log line(s)" in err
    report = json.loads(out)
    assert [c["column"] for c in report["columns"]] == ["a", "b"]  # the logged features
    assert report["prediction_log"]["skipped_lines"] == 1
    assert report["prediction_log"]["rows"] == 1000
    for args, message in [
        (["-r", ref, "--model", "m"], "--model need --current-log"),
        (["-r", ref, "-c", ref, "--current-log", str(logs)], "--current-log replaces"),
        (["--current-log", str(logs)], "--current-log needs --reference"),
        (["-r", ref, "--current-log", str(logs), "--since", "soon"], "ISO 8601"),
        (
            [
                "-r",
                ref,
                "--current-log",
                str(logs),
                "--since",
                "2030-01-01",
                "--until",
                "2029-01-01",
            ],
            "is not before --until",
        ),
        (["-r", ref, "--current-log", str(tmp_path / "none")], "file or folder not found"),
    ]:
        code, _, err = _invoke(*args)
        assert code == 2, args
        assert message in err, (args, err)

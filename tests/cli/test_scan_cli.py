"""``bastion scan``: exit codes, JSON and SARIF output, allowlists from flags and the policy."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from bastion.cli.main import run


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "models"
    folder.mkdir()
    good = folder / "good.joblib"
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), good, compress=3)
    evil = folder / "evil.bin"
    evil.write_bytes(pickle.dumps(_Touch(tmp_path / "ran")))
    unknown = tmp_path / "unknown.pkl"
    unknown.write_bytes(b"\x80\x04\x8c\x05mypkg\x8c\x05Thing\x93)R.")
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps(list(range(50)))[:-9])
    return {"folder": folder, "good": good, "evil": evil, "unknown": unknown, "broken": broken}


def test_exit_codes(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["scan", str(files["good"])]) == 0
    assert "SAFE" in capsys.readouterr().out
    assert run(["scan", str(files["folder"])]) == 1  # a folder: recursive
    out = capsys.readouterr().out
    assert "UNSAFE" in out
    assert "evil.bin" in out
    assert "posix.system" in out
    assert run(["scan", str(files["unknown"])]) == 1
    assert run(["scan", str(files["broken"])]) == 2  # only a read error
    assert run(["scan", str(files["broken"]), str(files["evil"])]) == 1
    assert run(["scan", str(files["folder"] / "nope.pkl")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (files["folder"].parent / "ran").exists()


def test_json_output(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["scan", "-f", "json", str(files["folder"])]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "unsafe"
    by_name = {Path(f["path"]).name: f for f in doc["files"]}
    assert set(by_name) == {"good.joblib", "evil.bin"}
    evil = by_name["evil.bin"]
    assert evil["verdict"] == "unsafe"
    assert evil["format"] == "pickle"
    assert evil["sha256"] == hashlib.sha256(files["evil"].read_bytes()).hexdigest()
    finding = evil["findings"][0]
    assert set(finding) >= {"rule", "severity", "message", "location"}
    assert finding["rule"] == "SC002"
    assert finding["severity"] == "critical"
    assert by_name["good.joblib"]["findings"] == []


def test_sarif_output_validates(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "scan.sarif"
    assert run(["scan", "-f", "sarif", "-o", str(out), str(files["folder"])]) == 1
    log = json.loads(out.read_text())
    assert log["version"] == "2.1.0"
    run_ = log["runs"][0]
    rule_ids = [r["id"] for r in run_["tool"]["driver"]["rules"]]
    assert "SC002" in rule_ids
    result = run_["results"][0]
    assert result["level"] == "error"
    assert rule_ids[result["ruleIndex"]] == result["ruleId"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith(
        "evil.bin"
    )
    assert result["message"]["text"].startswith(str(files["evil"]))


def test_allowlist_from_flags_and_policy(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["scan", "--allow", "mypkg.Thing", str(files["unknown"])]) == 0
    policy = tmp_path / "bastion.yaml"
    policy.write_text("version: 1\nscan:\n  allow:\n    - mypkg.Thing\n")
    assert run(["scan", "-c", str(policy), str(files["unknown"])]) == 0
    policy.write_text("version: 1\nscan:\n  allow:\n    - {name: mypkg.Thing, sha256: nothex}\n")
    assert run(["scan", "-c", str(policy), str(files["unknown"])]) == 2
    assert "scan.allow" in capsys.readouterr().err


def test_help_explains_and_start_up_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from bastion.cli.main import run; rc = run(['scan', '--help']); "
        "heavy = [m for m in ('torch', 'sklearn', 'pandas', 'onnxruntime') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "Exit codes" in done.stdout
    assert "HEAVY []" in done.stdout


def test_no_digest_skips_the_hash_but_not_the_verdict(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["scan", "--no-digest", "-f", "json", str(files["evil"])]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["files"][0]["sha256"] == ""
    assert doc["files"][0]["verdict"] == "unsafe"

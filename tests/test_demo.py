"""`bastion demo`, the main job: both scenarios run end to end and write every report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.report import validate_report_dict

pytest.importorskip("skl2onnx")


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    from bastion.cli.main import run

    assert run(["demo", "--out", str(tmp_path)]) == 0
    expected = {"junit.xml", "report.html", "report.json", "report.sarif", "summary.md"}
    reports = {}
    for scenario in ("breast_cancer", "diabetes", "digits"):
        folder = tmp_path / scenario
        assert (folder / "bastion.yaml").exists()
        assert (folder / "data" / "train.csv").exists()
        assert {p.name for p in (folder / "report").iterdir()} == expected
        doc = json.loads((folder / "report" / "report.json").read_text())
        validate_report_dict(doc)
        assert not any(f["status"] == "error" for f in doc["findings"]), doc["verdict"]
        reports[scenario] = doc
    bc = {f["check_id"]: f for f in reports["breast_cancer"]["findings"]}
    assert bc["MV005"]["status"] != "skipped"  # compared with the champion
    assert reports["breast_cancer"]["model"]["format"] == "onnx"
    fairness = {f["check_id"]: f for f in reports["diabetes"]["findings"]}
    groups = {g["group"] for g in fairness["FA001"]["evidence"]["by_group"]}
    assert any("sex" in g and "age_band" in g for g in groups)  # intersectional groups
    # the Attack pillar: every attack check ran, and the extraction failure is waived visibly
    for check_id in ("ADV001", "EXT001", "PRV001", "POI001"):
        assert bc[check_id]["status"] not in ("skipped", "error"), bc[check_id]["message"]
    if bc["EXT001"]["status"] == "fail":
        assert bc["EXT001"]["waiver"]["owner"] == "ml-platform@hospital.example"
    assert fairness["PRV002"]["status"] in ("pass", "fail")
    digits = {f["check_id"]: f for f in reports["digits"]["findings"]}
    adv = digits["ADV001"]
    # a sanity warning (e.g. black-box beating white-box on a point or two) makes it "warn"
    assert adv["status"] in ("pass", "warn", "fail")
    assert reports["digits"]["model"]["format"] == "torch-export"
    assert adv["metrics"]["robust_accuracy"] < adv["metrics"]["clean_accuracy"]
    assert [s["attack"] for s in adv["evidence"]["stages"]][:2] == ["apgd-ce", "apgd-dlr"]
    # the Protect pillar: the breast-cancer model released, signed, registered and verified
    release = tmp_path / "release"
    assert {"model_card.md", "model_card.html", "mlbom.json", "model.sig", "report.json"} <= {
        p.name for p in release.iterdir()
    }
    from bastion.governance.db import dispose, resolve_location
    from bastion.governance.keys import load_trusted_keys
    from bastion.governance.registry import Registry
    from bastion.governance.signing import verify_folder

    home = tmp_path / "registry"
    location = resolve_location(home, f"sqlite:///{home / 'registry.db'}")
    try:
        registry = Registry(location)
        version = registry.get("breast-cancer@1")
        assert version.gate_passed is True
        exported = registry.export(version.ref, tmp_path / "check")
        keys = load_trusted_keys(keyring=tmp_path / "registry" / "keys" / "keyring.json")
        assert verify_folder(exported, keys).ok
    finally:
        dispose(location)
    from bastion.supply import scan_path

    assert scan_path(tmp_path / "downloaded_model.pkl").verdict.value == "unsafe"


def test_the_demo_replaces_its_own_output_and_nothing_else(tmp_path: Path) -> None:
    from bastion.demo import fresh_output
    from bastion.exceptions import ConfigError

    out = tmp_path / "demo"
    fresh_output(out)  # created
    (out / "release").mkdir()
    (out / "release" / "model.sig").write_text("from the last run")
    fresh_output(out)  # an earlier demo's output: replaced
    assert [p.name for p in out.iterdir()] == [".bastion-demo"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier demo's output"):
        fresh_output(mine)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_the_summary_prints_the_output_path_literally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out 'runs[/x]'`` crashed the summary (a Rich closing tag) after the reports were
    written, and the hint "pip install 'bastion[torch]'" lost its "[torch]"."""
    from types import SimpleNamespace

    from bastion import demo
    from bastion.cli import commands

    scenario = SimpleNamespace(name="cancer", title="Breast cancer")
    monkeypatch.setattr(demo, "_breast_cancer", lambda: scenario)
    monkeypatch.setattr(demo, "_diabetes", lambda: SimpleNamespace(name="d", title="D"))
    monkeypatch.setattr(demo, "_digits", lambda: None)  # as without torch
    monkeypatch.setattr(demo, "_write_project", lambda folder, sc: folder / "bastion.yaml")
    monkeypatch.setattr(commands, "run_check", lambda *a, **k: 0)
    monkeypatch.setattr(demo, "_protect", lambda *a, **k: "protect: stubbed")
    out = tmp_path / "runs[/x]"
    assert demo.run_demo(out) == 0
    printed = capsys.readouterr().out
    assert "pip install 'bastion[torch]'" in printed
    assert f"reports in {out / 'cancer' / 'report'}" in printed.replace("\n", "")

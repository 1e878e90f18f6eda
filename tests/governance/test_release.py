"""``bastion release``: scan, gate, card, ML-BOM, signature, registry, lineage, audit — and the
refusals, each saying why."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import yaml

from bastion.cli.main import run
from bastion.governance.audit import AuditLog
from bastion.governance.registry import Registry

pytestmark = pytest.mark.slow  # a gate run on the demo project


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    for var in ("BASTION_DATABASE_URL", "BASTION_TOKEN", "BASTION_KEY_STORE", "BASTION_KEYRING"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BASTION_HOME", str(home))
    monkeypatch.setenv("BASTION_KEY_PASSPHRASE", "correct horse battery staple")
    assert run(["keys", "generate"]) == 0
    return home


def lighten(project: Path) -> Path:
    """The demo policy without its attack checks (the gate stays real, only shorter)."""
    policy_path = project / "bastion.yaml"
    policy = yaml.safe_load(policy_path.read_text())
    for section in ("robustness", "extraction", "poisoning", "privacy"):
        policy.get("checks", {}).pop(section, None)
    policy["waivers"] = [w for w in policy.get("waivers", []) if not w["check"].startswith("EXT")]
    policy_path.write_text(yaml.safe_dump(policy))
    return policy_path


def test_release_end_to_end(
    env: Path, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = lighten(project)
    card = tmp_path / "card.yaml"
    card.write_text("intended_use: triage support for radiologists\nowners: [ml-team]\n")
    out = tmp_path / "rel"
    assert run(["release", "cancer", "-c", str(policy), "-o", str(out), "--card", str(card)]) == 0
    assert "released cancer@1" in capsys.readouterr().out
    folder = out / "release"
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"report.json", "model_card.md", "model_card.html", "mlbom.json", "model.sig"} <= names
    assert any(n.startswith("model/") for n in names)
    assert "triage support for radiologists" in (folder / "model_card.md").read_text()
    bom = json.loads((folder / "mlbom.json").read_text())
    assert bom["specVersion"] == "1.6"
    reg = Registry.open()
    mv = reg.get("cancer@1")
    assert mv.gate_passed is True
    assert mv.bundle_sha256 is not None
    actions = [e.action for e in AuditLog(reg.engine).events()]
    assert "model.register" in actions
    assert "model.release" in actions
    assert run(["registry", "verify", "cancer@1"]) == 0
    assert run(["audit", "verify"]) == 0
    assert run(["lineage", "show", "cancer@1"]) == 0
    tree = capsys.readouterr().out
    assert "train" in tree
    assert "test" in tree


def test_release_refuses_a_failing_gate_and_an_unsafe_model(
    env: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_path = lighten(project)
    policy = yaml.safe_load(policy_path.read_text())
    policy.setdefault("checks", {}).setdefault("validation", {})["performance"] = {
        "min_accuracy": 0.9999
    }
    policy_path.write_text(yaml.safe_dump(policy))
    assert run(["release", "cancer", "-c", str(policy_path)]) == 1
    err = capsys.readouterr().err
    assert "release of cancer refused: the gate failed" in err
    # an unsafe model file: refused at the scan, before the gate runs
    (project / "evil.pkl").write_bytes(pickle.dumps(print))
    policy["model"] = {"path": "evil.pkl"}
    policy_path.write_text(yaml.safe_dump(policy))
    assert run(["release", "cancer", "-c", str(policy_path)]) == 1
    assert "scan of evil.pkl" in capsys.readouterr().err
    reg = Registry.open()
    assert reg.models() == []
    refused = [e for e in AuditLog(reg.engine).events() if e.action == "model.release.refused"]
    assert len(refused) == 2


def test_the_gate_and_the_card_of_a_release_run_under_the_network_rule(
    env: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release loads its inputs itself (before run_gate, which therefore opened no rule
    around the loading): the attacking run's network rule now covers the loading, the gate
    and the model card, and the registry's database is reached outside it."""
    from contextlib import contextmanager

    import bastion.runner
    from bastion.governance import release as release_module

    inside: list[bool] = []
    seen: list[object] = []

    @contextmanager
    def rule(policy: object, categories: object) -> object:
        seen.append(categories)
        inside.append(True)
        try:
            yield
        finally:
            inside.append(False)

    def gate(policy: object) -> object:
        assert inside[-1] is True  # loading happens in here
        raise RuntimeError("stop after the gate's loading")

    monkeypatch.setattr(bastion.runner, "attacking_run_rule", rule)
    monkeypatch.setattr(release_module, "_gate", gate)
    with pytest.raises(RuntimeError, match="stop after"):
        release_module.release(project / "bastion.yaml", "cancer", registry=Registry.open())
    assert seen == [None]  # every enabled check counts: the policy's attacks open the rule
    assert inside == [True, False]

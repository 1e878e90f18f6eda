"""The CycloneDX 1.6 ML-BOM validates against the official schema (and a broken one does not),
carries the report's numbers exactly, hashes the very files it names, and refuses evidence
that does not belong together."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import importlib.util
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from bastion import __version__
from bastion.config import load_policy
from bastion.exceptions import ConfigError
from bastion.governance.mlbom import build_mlbom
from bastion.governance.modelcard import CardFields, ModelCard, build_model_card
from bastion.models.formats import sha256_file, sha256_path
from bastion.runner import load_inputs, run_gate

_spec = importlib.util.spec_from_file_location(
    "_card_gate", Path(__file__).with_name("_card_gate.py")
)
assert _spec is not None
assert _spec.loader is not None
G = sys.modules.get("_card_gate") or importlib.util.module_from_spec(_spec)
if "_card_gate" not in sys.modules:
    sys.modules["_card_gate"] = G
    _spec.loader.exec_module(G)

SERIAL = uuid.UUID("2f1c2a4e-8a59-4c1e-9a51-5d1f3b0e7c11")
WHEN = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
FIELDS = CardFields(
    version="2.0.1",
    intended_use="Second reader for fine-needle aspirates.",
    users=("radiologists",),
    out_of_scope_uses=("population screening",),
    owners=("ml-platform@hospital.example",),
    license="Apache-2.0",
    ethical_considerations=(),
)


def validate(bom: dict[str, Any]) -> Any:
    """None when ``bom`` follows the CycloneDX 1.6 JSON schema, else the first error."""
    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))


@pytest.fixture(scope="module")
def card() -> ModelCard:
    g = G.gate()
    return build_model_card(g.report, g.model, g.test, fields=FIELDS, n_repeats=2, shap=False)


@pytest.fixture(scope="module")
def bom(card: ModelCard, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # the in-memory model has no file; ship a stand-in so the BOM has something to hash
    folder = tmp_path_factory.mktemp("release")
    (folder / "model.bin").write_bytes(b"weights")
    (folder / "MODEL_CARD.md").write_text(card.to_markdown(), encoding="utf-8")
    return build_mlbom(
        G.gate().report,
        [folder / "model.bin"],
        card,
        base_dir=folder,
        references=[("model-card", folder / "MODEL_CARD.md")],
        serial_number=SERIAL,
        timestamp=WHEN,
    )


def _model(bom: dict[str, Any]) -> dict[str, Any]:
    (model,) = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    return model


def test_validates_against_cyclonedx_1_6(bom: dict[str, Any]) -> None:
    assert validate(bom) is None
    assert bom["specVersion"] == "1.6"
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["serialNumber"] == f"urn:uuid:{SERIAL}"
    json.dumps(bom, allow_nan=False)  # strict JSON


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [
        (_set("components/0/modelCard/quantitativeAnalysis/performanceMetrics/0/value", 0.9),
         "is not of type 'string'"),
        (_set("components/0/modelCard/modelParameters/architecture", "x"),
         "Additional properties are not allowed"),
        (_set("components/0/modelCard/modelParameters/approach/type", "deep"),
         "is not one of"),
        (_set("components/0/hashes/0/content", "not-a-digest"), "does not match"),
        (_set("components/0/type", "ml-model"), "is not one of"),
        (_set("serialNumber", "12345"), "does not match"),
        (_set("bomFormat", "SPDX"), "is not one of"),
    ],
)  # fmt: skip
def test_a_broken_bom_fails_validation(
    bom: dict[str, Any], mutate: Callable[[dict[str, Any]], None], complaint: str
) -> None:
    broken = copy.deepcopy(bom)
    mutate(broken)
    error = validate(broken)
    assert error is not None
    assert complaint in str(error)


def test_model_card_carries_the_reports_numbers(bom: dict[str, Any], card: ModelCard) -> None:
    report = G.gate().report
    metrics = _model(bom)["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    index = {(m["slice"].split()[0], m["type"]): m for m in metrics}
    expected = 0
    for f in report.findings:
        if f.check_id[:2] == "DQ" or f.status.value in ("skipped", "error"):
            assert not any(key[0] == f.check_id for key in index), f.check_id
            continue
        for name, value in f.metrics.items():
            if value is None or name.endswith(("_ci_low", "_ci_high")):
                continue
            entry = index[(f.check_id, name)]
            assert entry["value"] == (str(value) if isinstance(value, int) else repr(value))
            assert float(entry["value"]) == value  # exactly the report's number
            assert "on dataset 'test'" in entry["slice"]
            expected += 1
            low, high = f.metrics.get(f"{name}_ci_low"), f.metrics.get(f"{name}_ci_high")
            if low is not None and high is not None:
                assert entry["confidenceInterval"] == {
                    "lowerBound": repr(low),
                    "upperBound": repr(high),
                }
    assert len(metrics) == expected > 40
    fa = index[("FA001", "demographic_parity_difference")]
    assert fa["slice"].endswith("across groups of group")


def test_datasets_are_data_components_with_hashes(bom: dict[str, Any]) -> None:
    report = G.gate().report
    data = {c["bom-ref"]: c for c in bom["components"] if c["type"] == "data"}
    refs = [d["ref"] for d in _model(bom)["modelCard"]["modelParameters"]["datasets"]]
    assert refs == [f"dataset:{d.name}" for d in report.datasets]
    assert set(refs) == set(data)
    for d in report.datasets:
        component = data[f"dataset:{d.name}"]
        assert component["hashes"] == [{"alg": "SHA-256", "content": d.sha256}]
        assert component["data"][0]["type"] == "dataset"
        assert {"name": "bastion:rows", "value": str(d.n_rows)} in component["properties"]
        assert component["data"][0]["sensitiveData"] == [
            "column 'group': sensitive attribute used for fairness checks"
        ]
    # every bom-ref in the document is unique
    seen: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "bom-ref" in node:
                seen.append(node["bom-ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(bom)
    assert len(seen) == len(set(seen)) > 4


def test_considerations(bom: dict[str, Any], card: ModelCard) -> None:
    report = G.gate().report
    considerations = _model(bom)["modelCard"]["considerations"]
    assert considerations["users"] == ["radiologists"]
    assert considerations["useCases"] == ["Second reader for fine-needle aspirates."]
    limitations = considerations["technicalLimitations"]
    assert limitations[:-1] == [lim.text for lim in card.limitations]
    assert limitations[-1] == "Out of scope: population screening"
    assert any(text.startswith("MV001 Model performance failed") for text in limitations)
    assessments = considerations["fairnessAssessments"]
    fairness = [f for f in report.findings if f.check_id.startswith("FA")]
    assert len(assessments) == len(fairness) == 4
    for f, assessment in zip(fairness, assessments, strict=True):
        rows = f.evidence["by_group"]
        if f.check_id == "FA002":  # the larger of the two gaps decides which rate matters
            tpr_gap = f.metrics["true_positive_rate_difference"] or 0.0
            fpr_gap = f.metrics["false_positive_rate_difference"] or 0.0
            rate, worst = ("tpr", min) if tpr_gap >= fpr_gap else ("fpr", max)
        else:
            rate, worst = ("tpr", min) if f.check_id == "FA003" else ("selection_rate", min)
        assert assessment["groupAtRisk"] == worst(rows, key=lambda r: r[rate])["group"]
        assert assessment["harms"].startswith(f"{f.check_id} {f.title}: {f.status.value}")
        assert f.message in assessment["harms"]
        assert "mitigationStrategy" not in assessment  # no fairness waiver in this run


def test_fairness_waiver_becomes_the_mitigation(tmp_path: Path) -> None:
    g = G.gate()
    waiver = next(f.waiver for f in g.report.findings if f.check_id == "EXT001")
    findings = tuple(
        f.with_updates(waiver=waiver) if f.check_id == "FA001" else f for f in g.report.findings
    )
    report = dataclasses.replace(g.report, findings=findings)
    card = build_model_card(report, g.model, g.test, n_repeats=1, shap=False)
    (tmp_path / "m.bin").write_bytes(b"m")
    bom = build_mlbom(report, [tmp_path / "m.bin"], card)
    first = _model(bom)["modelCard"]["considerations"]["fairnessAssessments"][0]
    assert first["mitigationStrategy"].startswith("waived by ml-platform@hospital.example")
    assert validate(bom) is None


def test_metadata(bom: dict[str, Any], card: ModelCard) -> None:
    meta = bom["metadata"]
    assert meta["tools"]["components"] == [
        {"type": "application", "name": "bastion", "version": __version__}
    ]
    assert dt.datetime.fromisoformat(meta["timestamp"]) == WHEN
    props = {p["name"]: p["value"] for p in meta["properties"]}
    assert props["bastion:gate:passed"] == "false"
    assert props["bastion:report:sha256"] == card.provenance.report_sha256
    model = _model(bom)
    assert model["version"] == "2.0.1"
    assert model["licenses"] == [{"expression": "Apache-2.0"}]
    assert {"name": "bastion:owner", "value": "ml-platform@hospital.example"} in model["properties"]
    params = model["modelCard"]["modelParameters"]
    assert params["approach"] == {"type": "supervised"}
    assert params["task"] == "classification"
    assert params["architectureFamily"] == "linear model"
    assert params["modelArchitecture"] == "StandardScaler -> LogisticRegression"


def test_a_named_license_that_is_no_spdx_expression(tmp_path: Path) -> None:
    g = G.gate()
    fields = CardFields(license="Hospital internal use only, see contract 7/2026")
    card = build_model_card(g.report, g.model, g.test, fields=fields, n_repeats=1, shap=False)
    (tmp_path / "m.bin").write_bytes(b"m")
    bom = build_mlbom(g.report, [tmp_path / "m.bin"], card)
    assert _model(bom)["licenses"] == [
        {"license": {"name": "Hospital internal use only, see contract 7/2026"}}
    ]
    assert validate(bom) is None


@pytest.fixture(scope="module")
def onnx_release(
    breast_cancer_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, ModelCard, Path]:
    """A gate run on model files (the demo's ONNX model and CSV files), validation only."""
    policy = load_policy(breast_cancer_project / "bastion.yaml")
    inputs = load_inputs(policy)
    report = run_gate(policy, inputs=inputs, categories=["validation"], today=G.TODAY)
    card = build_model_card(report, inputs.model, inputs.test, n_repeats=1, shap=False)
    return report, card, breast_cancer_project


def test_hashes_are_the_files_hashes(onnx_release: tuple[Any, ModelCard, Path]) -> None:
    report, card, project = onnx_release
    model_file = project / "model.onnx"
    card_file = project.parent / "MODEL_CARD.md"
    card_file.write_text(card.to_markdown(), encoding="utf-8")
    bom = build_mlbom(
        report,
        [model_file],
        card,
        base_dir=project.parent,
        references=[("model-card", card_file), ("evidence", project / "bastion.yaml")],
    )
    assert validate(bom) is None
    model = _model(bom)
    digest = sha256_file(model_file)
    assert digest == report.model["sha256"]
    assert model["hashes"] == [{"alg": "SHA-256", "content": digest}]
    assert model["components"] == [
        {
            "type": "file",
            "bom-ref": f"file:{project.name}/model.onnx",
            "name": f"{project.name}/model.onnx",
            "hashes": [{"alg": "SHA-256", "content": digest}],
        }
    ]
    assert {"name": "bastion:gate_tested_sha256", "value": digest} in model["properties"]
    refs = {r["type"]: r for r in model["externalReferences"]}
    assert refs["model-card"]["url"] == "MODEL_CARD.md"
    assert refs["model-card"]["hashes"][0]["content"] == sha256_file(card_file)
    assert refs["evidence"]["hashes"][0]["content"] == sha256_file(project / "bastion.yaml")
    data = {c["name"]: c for c in bom["components"] if c["type"] == "data"}
    for name in ("train", "test"):
        assert data[name]["hashes"][0]["content"] == sha256_file(project / "data" / f"{name}.csv")


def test_files_that_are_not_the_tested_model_are_refused(
    onnx_release: tuple[Any, ModelCard, Path],
) -> None:
    report, card, project = onnx_release
    with pytest.raises(ConfigError, match="model_files do not hold the model the gate report"):
        build_mlbom(report, [project / "champion.onnx"], card)


def test_a_model_folder_matches_by_its_folder_digest(tmp_path: Path) -> None:
    g = G.gate()
    folder = tmp_path / "model"
    (folder / "weights").mkdir(parents=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "weights" / "w.bin").write_bytes(b"\x00\x01")
    files = [folder / "config.json", folder / "weights" / "w.bin"]
    report = dataclasses.replace(
        g.report, model={**dict(g.report.model or {}), "sha256": sha256_path(folder)}
    )
    card = build_model_card(report, g.model, g.test, n_repeats=1, shap=False)
    bom = build_mlbom(report, files, card, base_dir=tmp_path)
    assert validate(bom) is None
    assert [c["name"] for c in _model(bom)["components"]] == [
        "model/config.json",
        "model/weights/w.bin",
    ]
    with pytest.raises(ConfigError, match="do not hold the model"):
        build_mlbom(report, files[:1], card)  # a file missing: not the tested folder


def test_inconsistent_inputs_are_refused(card: ModelCard, tmp_path: Path) -> None:
    g = G.gate()
    (tmp_path / "m.bin").write_bytes(b"m")
    other = dataclasses.replace(g.report, project="another-project")
    with pytest.raises(ConfigError, match="the model card was built from another report"):
        build_mlbom(other, [tmp_path / "m.bin"], card)
    with pytest.raises(ConfigError, match="model_files is empty"):
        build_mlbom(g.report, [], card)
    with pytest.raises(ConfigError, match="is not a file"):
        build_mlbom(g.report, [tmp_path], card)
    with pytest.raises(ConfigError, match=r"'model-cards' is not a CycloneDX 1\.6 external"):
        build_mlbom(
            g.report, [tmp_path / "m.bin"], card, references=[("model-cards", tmp_path / "m.bin")]
        )

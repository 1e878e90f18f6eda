"""report.json follows the shipped JSON Schema, round-trips and never carries raw rows."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import numpy as np
import pytest

from bastion.exceptions import BastionError
from bastion.findings import Finding, Severity, Status
from bastion.report import DatasetRef, Report, load_report_schema, validate_report_dict
from bastion.reporting import render
from bastion.reporting.json_report import jsonable, render_json

from .conftest import RAW_MARKER, make_report


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render(make_report(**changes), "json"))
    return doc


def test_schema_is_valid_draft_2020_12() -> None:
    schema = load_report_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_document_validates_and_round_trips() -> None:
    doc = _doc()
    validate_report_dict(doc)
    assert doc["schema"] == "bastion.report/v1"
    again = Report.from_dict(doc)
    assert again.to_dict() == doc
    assert again.findings[1].waiver is not None


def test_schema_names_every_field_of_report_and_finding() -> None:
    schema = load_report_schema()
    doc = make_report().to_dict()
    assert set(schema["required"]) == set(doc) == set(schema["properties"])
    finding = schema["$defs"]["finding"]
    assert set(finding["required"]) == set(doc["findings"][0]) == set(finding["properties"])
    assert finding["properties"]["status"] == {"$ref": "#/$defs/status"}
    assert schema["$defs"]["status"]["enum"] == [s.value for s in Status]
    assert schema["$defs"]["severity"]["enum"] == [s.value for s in Severity]


def test_nan_metrics_become_null() -> None:
    doc = _doc()
    mv001 = next(f for f in doc["findings"] if f["check_id"] == "MV001")
    assert mv001["metrics"]["balanced_accuracy"] is None


def test_minimal_report_without_model_validates() -> None:
    report = make_report(findings=(), model=None, datasets=(), profiles={}, waivers=())
    validate_report_dict(json.loads(render(report, "json")))


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.update(schema="bastion.report/v2"), "schema"),
        (lambda d: d.update(unexpected=1), "unexpected"),
        (lambda d: d.pop("verdict"), "verdict"),
        (lambda d: d["findings"][0].update(status="passed"), "status"),
        (lambda d: d["findings"][0].update(severity="urgent"), "severity"),
        (lambda d: d["findings"][0]["metrics"].update(accuracy="high"), "metrics"),
        (lambda d: d["findings"][0].update(extra=True), "extra"),
        (lambda d: d["findings"][0].pop("check_id"), "check_id"),
        (lambda d: d["datasets"][0].update(sha256="not-a-digest"), "sha256"),
        (lambda d: d["verdict"].update(passed="yes"), "passed"),
        (lambda d: d["findings"][0].update(duration_s=-1), "duration_s"),
        (lambda d: d["findings"][0]["evidence"].update(samples=[{"age": 3}]), "samples"),
    ],
)
def test_invalid_documents_fail_validation(mutate: Any, where: str) -> None:
    doc = copy.deepcopy(_doc())
    validate_report_dict(doc)  # the unmodified document is valid
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        validate_report_dict(doc)


def test_samples_allowed_only_when_policy_allows() -> None:
    allowed = _doc(raw_rows_allowed=True)
    fa001 = next(f for f in allowed["findings"] if f["check_id"] == "FA001")
    assert fa001["evidence"]["samples"] == [{"age": 41, "sex": "F", "patient": RAW_MARKER}]
    validate_report_dict(allowed)

    redacted = _doc()
    fa001 = next(f for f in redacted["findings"] if f["check_id"] == "FA001")
    assert "samples" not in fa001["evidence"]
    assert fa001["evidence"]["by_group"]  # aggregates stay


def test_numpy_values_are_converted() -> None:
    finding = Finding(
        "MV009",
        "Numpy evidence",
        Status.PASS,
        Severity.LOW,
        metrics={"auc": np.float32(0.75), "n": np.int64(3)},  # type: ignore[dict-item]
        evidence={"matrix": np.array([[1, 2], [3, 4]]), "nan": np.float64("nan"), "t": (1, 2)},
    )
    doc = json.loads(render(make_report(findings=(finding,)), "json"))
    f = doc["findings"][0]
    assert f["metrics"] == {"auc": 0.75, "n": 3}
    assert f["evidence"] == {"matrix": [[1, 2], [3, 4]], "nan": None, "t": [1, 2]}


def test_unserialisable_evidence_names_its_place() -> None:
    finding = Finding("MV009", "Bad", Status.PASS, Severity.LOW, evidence={"obj": object()})
    with pytest.raises(BastionError, match=r"\['obj'\].*object"):
        render_json(make_report(findings=(finding,)))


def test_schema_violation_is_a_bastion_error() -> None:
    report = make_report(datasets=(DatasetRef("train", None, "abc", 1, 1),))
    with pytest.raises(BastionError, match=r"bastion\.report/v1 at datasets/0/sha256"):
        render_json(report)


def test_jsonable_handles_sets_enums_and_inf() -> None:
    assert jsonable({"s": {3, 1}, "e": Status.FAIL, "inf": float("inf")}) == {
        "s": [1, 3],
        "e": "fail",
        "inf": None,
    }


def test_long_schema_errors_name_the_rule_not_the_value() -> None:
    report = make_report(model={"name": "m", "format": "onnx", "sha256": "z" * 500})
    with pytest.raises(
        BastionError, match=r"model/sha256: fails the '(oneOf|pattern)' rule"
    ) as info:
        render_json(report)
    assert "z" * 50 not in str(info.value)

"""CycloneDX 1.6 ML-BOM of a release: the model, its files, its datasets and its model card.

The bill of materials is built as plain JSON data (no runtime dependency on a CycloneDX
library) following the CycloneDX 1.6 JSON schema; the tests validate every document with
cyclonedx-python-lib's ``JsonStrictValidator(SchemaVersion.V1_6)``. Layout:

- ``metadata``: ``timestamp``, ``tools.components`` (bastion and its version) and properties
  naming the project, the gate verdict and the sha256 of ``report.json``;
- one component of type ``machine-learning-model`` (``bom-ref`` ``model``): name, version,
  the SHA-256 of every model file (``hashes``, and one nested ``file`` component per file so
  that each digest is tied to its file name), licenses, external references (the model card,
  the report ...) and its ``modelCard``:

  - ``modelParameters``: ``approach.type`` ``supervised``, ``task``, ``architectureFamily``,
    ``modelArchitecture``, ``datasets`` as ``{"ref": ...}`` to the ``data`` components,
    ``inputs`` / ``outputs`` formats;
  - ``quantitativeAnalysis.performanceMetrics``: every metric of every model check that ran
    (validation, fairness, robustness, privacy, extraction, poisoning), ``type`` the metric
    name, ``value`` the exact number as text (``repr``), ``slice`` the check and the
    evaluation dataset, ``confidenceInterval`` where the check reported one;
  - ``considerations``: ``users``, ``useCases`` (the intended use), ``technicalLimitations``
    (the card's limitations, derived and stated, plus out-of-scope uses),
    ``ethicalConsiderations`` and ``fairnessAssessments`` (one per fairness check that ran:
    the group with the worst rate, the measured gap as harms, a waiver as mitigation);

- one component of type ``data`` per dataset (``bom-ref`` ``dataset:<name>``) with its
  SHA-256 (of the file, or of the rows for an in-memory frame), rows and columns.

The builder refuses inconsistent evidence: a card made from another report, or model files
none of which has the sha256 the gate report recorded for the model it tested.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bastion.exceptions import ConfigError
from bastion.governance.modelcard import CheckResult, ModelCard, report_sha256
from bastion.models.formats import sha256_file
from bastion.report import DatasetRef, Report

__all__ = ["BOM_SCHEMA_URL", "REFERENCE_TYPES", "SPEC_VERSION", "build_mlbom"]

SPEC_VERSION = "1.6"
BOM_SCHEMA_URL = "http://cyclonedx.org/schema/bom-1.6.schema.json"

REFERENCE_TYPES: frozenset[str] = frozenset(
    {
        "vcs", "issue-tracker", "website", "advisories", "bom", "mailing-list", "social",
        "chat", "documentation", "support", "source-distribution", "distribution",
        "distribution-intake", "license", "build-meta", "build-system", "release-notes",
        "security-contact", "model-card", "log", "configuration", "evidence", "formulation",
        "attestation", "threat-model", "adversary-model", "risk-assessment",
        "vulnerability-assertion", "exploitability-statement", "pentest-report",
        "static-analysis-report", "dynamic-analysis-report", "runtime-analysis-report",
        "component-analysis-report", "maturity-report", "certification-report",
        "codified-infrastructure", "quality-metrics", "poam", "electronic-signature",
        "digital-signature", "rfc-9116", "other",
    }
)  # fmt: skip
"""``externalReferences[].type`` values of CycloneDX 1.6."""

_MODEL_REF = "model"
_MODEL_AREAS = ("validation", "fairness", "robustness", "privacy", "extraction", "poisoning")
# an SPDX license expression: ids joined by AND / OR / WITH, optional parentheses
_SPDX_EXPRESSION = re.compile(
    r"^\(?[A-Za-z0-9.+\-]+\)?(\s+(AND|OR|WITH)\s+\(?[A-Za-z0-9.+\-]+\)?)*$"
)
# per fairness check: (per-group rate that defines the worst group, worst is the minimum)
_GROUP_RATE: dict[str, tuple[str, bool]] = {
    "FA001": ("selection_rate", True),
    "FA003": ("tpr", True),
    "FA004": ("selection_rate", True),
}


def build_mlbom(
    report: Report,
    model_files: Sequence[str | os.PathLike[str]],
    card: ModelCard,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    references: Sequence[tuple[str, str | os.PathLike[str]]] = (),
    serial_number: uuid.UUID | None = None,
    timestamp: dt.datetime | None = None,
) -> dict[str, Any]:
    """The CycloneDX 1.6 ML-BOM (JSON data) of one release.

    Parameters
    ----------
    report:
        The release's gate report.
    model_files:
        The model's files as shipped in the release (each hashed with SHA-256). When the
        report recorded a model sha256, one of them must have it.
    card:
        The release's model card, built from ``report`` (:func:`build_model_card`).
    base_dir:
        Folder the file names in the BOM are relative to (the release folder); default:
        file names only.
    references:
        ``(type, path)`` pairs of release files to list as the model's external references,
        e.g. ``("model-card", "release/MODEL_CARD.md")``, ``("evidence",
        "release/report.json")``; ``type`` is a CycloneDX 1.6 reference type
        (:data:`REFERENCE_TYPES`). Each gets its SHA-256.
    serial_number, timestamp:
        Default a random UUID and now (UTC); pass both for a reproducible document.

    Returns
    -------
    dict
        The BOM; ``json.dumps`` it to write ``bom.cdx.json``.

    Raises
    ------
    ConfigError
        No model file, a path that is not a file, a reference type CycloneDX does not
        define, a card built from another report, or model files that do not hold the model
        the gate tested.

    Example::

        bom = build_mlbom(report, ["release/model.onnx"], card, base_dir="release")
        Path("release/bom.cdx.json").write_text(json.dumps(bom, indent=2))
    """
    if not model_files:
        raise ConfigError("model_files is empty; pass the model file(s) of the release")
    if card.provenance.report_sha256 != report_sha256(report):
        raise ConfigError(
            f"the model card was built from another report (report sha256 "
            f"{card.provenance.report_sha256}, this report {report_sha256(report)}); build "
            "the card and the ML-BOM from the same gate report"
        )
    base = Path(base_dir) if base_dir is not None else None
    files = [
        (_name(Path(p), base), sha256_file(_regular_file(Path(p), "model_files")))
        for p in model_files
    ]
    recorded = (report.model or {}).get("sha256")
    if recorded and not _holds_model(recorded, model_files, files):
        listed = ", ".join(f"{n} ({d[:12]}…)" for n, d in files)
        raise ConfigError(
            f"model_files do not hold the model the gate report tested (sha256 {recorded}, "
            f"of a file or of a model folder); files: {listed}. Release the model the gate "
            "tested"
        )
    refs = []
    for kind, path in references:
        if kind not in REFERENCE_TYPES:
            raise ConfigError(
                f"reference type {kind!r} is not a CycloneDX 1.6 external reference type; "
                f"use e.g. model-card, evidence, attestation or other"
            )
        p = _regular_file(Path(path), "references")
        refs.append(
            {
                "type": kind,
                "url": quote(_name(p, base), safe="/._-~"),
                "hashes": [_hash(sha256_file(p))],
            }
        )
    return {
        "$schema": BOM_SCHEMA_URL,
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": (serial_number or uuid.uuid4()).urn,
        "version": 1,
        "metadata": _metadata(report, card, timestamp),
        "components": [
            _model_component(card, files, refs),
            *(_data_component(d, card.evaluation_dataset) for d in card.datasets),
        ],
    }


# -- parts ------------------------------------------------------------------------------------


def _holds_model(
    recorded: str, paths: Sequence[str | os.PathLike[str]], files: list[tuple[str, str]]
) -> bool:
    """Whether the files are the model the report recorded: one file with its sha256, or
    exactly the files of a model folder, whose digest (as ``sha256_path`` computes it) is
    recomputed from their paths relative to each folder above them."""
    digests = [digest for _, digest in files]
    if recorded in digests:
        return True
    resolved = [Path(p).resolve() for p in paths]
    root = Path(os.path.commonpath([p.parent for p in resolved]))
    for folder in (root, *root.parents):
        lines = sorted(
            f"{p.relative_to(folder).as_posix()}\0{d}\n"
            for p, d in zip(resolved, digests, strict=True)
        )
        if hashlib.sha256("".join(lines).encode("utf-8")).hexdigest() == recorded:
            return True
    return False


def _regular_file(path: Path, where: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{where}: {str(path)!r} is not a file")
    return path


def _name(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def _hash(digest: str) -> dict[str, str]:
    return {"alg": "SHA-256", "content": digest}


def _prop(name: str, value: Any) -> dict[str, str]:
    return {"name": f"bastion:{name}", "value": str(value)}


def _metadata(report: Report, card: ModelCard, timestamp: dt.datetime | None) -> dict[str, Any]:
    from bastion import __version__

    when = (timestamp or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    return {
        "timestamp": when,
        "tools": {
            "components": [{"type": "application", "name": "bastion", "version": __version__}]
        },
        "properties": [
            _prop("project", report.project),
            _prop("gate:passed", "true" if report.verdict.passed else "false"),
            _prop("gate:fail_on", report.verdict.fail_on.value),
            _prop("report:sha256", card.provenance.report_sha256),
            _prop("report:created_at", report.created_at),
        ],
    }


def _licenses(text: str | None) -> list[dict[str, Any]]:
    if not text:
        return []
    if _SPDX_EXPRESSION.match(text.strip()):
        return [{"expression": text.strip()}]
    return [{"license": {"name": text}}]


def _model_component(
    card: ModelCard, files: list[tuple[str, str]], refs: list[dict[str, Any]]
) -> dict[str, Any]:
    m = card.model
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": _MODEL_REF,
        "name": m.name,
    }
    if m.version:
        component["version"] = m.version
    component["description"] = (
        f"{m.task} model of project {card.project}, gate "
        f"{'passed' if card.verdict.passed else 'failed'}"
    )
    component["hashes"] = [_hash(d) for _, d in files]
    licenses = _licenses(m.license)
    if licenses:
        component["licenses"] = licenses
    if refs:
        component["externalReferences"] = refs
    component["properties"] = [
        _prop("format", m.format),
        # the digest the gate report recorded: of the model file, or of the model folder
        *([_prop("gate_tested_sha256", m.sha256)] if m.sha256 else []),
        *(_prop("owner", o) for o in m.owners),
        _prop("trusted_override", "true" if m.trusted_override else "false"),
    ]
    component["components"] = [
        {"type": "file", "bom-ref": f"file:{name}", "name": name, "hashes": [_hash(digest)]}
        for name, digest in files
    ]
    component["modelCard"] = _model_card(card)
    return component


def _model_card(card: ModelCard) -> dict[str, Any]:
    m = card.model
    params: dict[str, Any] = {"approach": {"type": "supervised"}, "task": m.task}
    if m.architecture_family:
        params["architectureFamily"] = m.architecture_family
    if m.model_architecture:
        params["modelArchitecture"] = m.model_architecture
    if card.datasets:
        params["datasets"] = [{"ref": _dataset_ref(d.name)} for d in card.datasets]
    if m.input_format:
        params["inputs"] = [{"format": m.input_format}]
    if m.output_format:
        params["outputs"] = [{"format": m.output_format}]
    out: dict[str, Any] = {"bom-ref": "model-card", "modelParameters": params}
    metrics = _performance_metrics(card)
    if metrics:
        out["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    considerations = _considerations(card)
    if considerations:
        out["considerations"] = considerations
    return out


def _number_text(value: float | int) -> str:
    # repr round-trips: the BOM carries the report's number exactly
    return str(value) if isinstance(value, int) else repr(float(value))


def _performance_metrics(card: ModelCard) -> list[dict[str, Any]]:
    where = f" on dataset {card.evaluation_dataset!r}" if card.evaluation_dataset else ""
    out = []
    for check in card.checks:
        if check.area not in _MODEL_AREAS or check.status in ("skipped", "error"):
            continue
        slice_ = f"{check.check_id} {check.title}{where}"
        features = check.evidence.get("sensitive_features")
        if isinstance(features, list) and features:
            slice_ += f", across groups of {', '.join(map(str, features))}"
        for row in check.metric_rows():
            if row.value is None or isinstance(row.value, bool):
                continue
            metric: dict[str, Any] = {
                "type": row.name,
                "value": _number_text(row.value),
                "slice": slice_,
            }
            if row.ci_low is not None and row.ci_high is not None:
                metric["confidenceInterval"] = {
                    "lowerBound": _number_text(row.ci_low),
                    "upperBound": _number_text(row.ci_high),
                }
            out.append(metric)
    return out


def _considerations(card: ModelCard) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if card.users:
        out["users"] = list(card.users)
    if card.intended_use.strip():
        out["useCases"] = [" ".join(card.intended_use.split())]
    limitations = [lim.text for lim in card.limitations]
    limitations += [f"Out of scope: {use}" for use in card.out_of_scope_uses]
    if limitations:
        out["technicalLimitations"] = limitations
    if card.ethical_considerations:
        out["ethicalConsiderations"] = [
            {
                "name": e.name,
                **({"mitigationStrategy": e.mitigation_strategy} if e.mitigation_strategy else {}),
            }
            for e in card.ethical_considerations
        ]
    fairness = [
        _fairness_assessment(c)
        for c in card.checks
        if c.area == "fairness" and c.status in ("pass", "warn", "fail")
    ]
    if fairness:
        out["fairnessAssessments"] = fairness
    return out


def _fairness_assessment(check: CheckResult) -> dict[str, str]:
    status = f"{check.status} ({check.severity})" if check.status != "pass" else "pass"
    out: dict[str, str] = {}
    worst = _worst_group(check)
    if worst is not None:
        group, rate, value, best_group, best = worst
        out["groupAtRisk"] = group
        harms = (
            f"{check.check_id} {check.title}: {status}. Worst-off group {group} has "
            f"{rate} {value:.4g} against {best:.4g} for {best_group}. {check.message}"
        )
    else:
        harms = f"{check.check_id} {check.title}: {status}. {check.message}"
    out["harms"] = harms
    if check.waiver:
        out["mitigationStrategy"] = check.waiver
    return out


def _worst_group(check: CheckResult) -> tuple[str, str, float, str, float] | None:
    """(worst group, rate name, its rate, best group, best rate) from the per-group table."""
    rows = check.evidence.get("by_group")
    if not isinstance(rows, list):
        return None
    rate, lowest = _GROUP_RATE.get(check.check_id, ("", True))
    if check.check_id == "FA002":  # equalized odds: whichever gap is larger decides
        metrics = dict(check.metrics)
        tpr_gap = metrics.get("true_positive_rate_difference") or 0.0
        fpr_gap = metrics.get("false_positive_rate_difference") or 0.0
        rate, lowest = ("tpr", True) if tpr_gap >= fpr_gap else ("fpr", False)
    if not rate:
        return None
    small = _small_groups(check.evidence.get("small_groups"))
    values = [
        (str(r["group"]), float(r[rate]))
        for r in rows
        if isinstance(r, Mapping)
        and "group" in r
        and isinstance(r.get(rate), int | float)
        and str(r["group"]) not in small
    ]
    if len(values) < 2:
        return None
    values.sort(key=lambda gv: gv[1], reverse=not lowest)
    (worst, worst_value), (best, best_value) = values[0], values[-1]
    name = {"selection_rate": "selection rate", "tpr": "true positive rate"}.get(
        rate, "false positive rate"
    )
    return worst, name, worst_value, best, best_value


def _small_groups(value: Any) -> set[str]:
    """Groups too small to judge, in either shape a check may list them."""
    if not isinstance(value, list):
        return set()
    return {str(v.get("group")) if isinstance(v, Mapping) else str(v) for v in value}


def _dataset_ref(name: str) -> str:
    return f"dataset:{name}"


def _data_component(d: DatasetRef, evaluation: str | None) -> dict[str, Any]:
    role = "evaluation (test) data" if d.name == evaluation else "data the gate read"
    source = "file bytes" if d.path else "rows (in-memory frame)"
    data: dict[str, Any] = {
        "type": "dataset",
        "name": d.name,
        "description": f"{role}: {d.n_rows} rows, {d.n_columns} columns"
        + (f", target {d.target!r}" if d.target else ""),
    }
    if d.sensitive:
        data["sensitiveData"] = [
            f"column {c!r}: sensitive attribute used for fairness checks" for c in d.sensitive
        ]
    properties = [
        _prop("rows", d.n_rows),
        _prop("columns", d.n_columns),
        _prop("sha256_of", source),
    ]
    if d.path:
        properties.append(_prop("path", d.path))
    return {
        "type": "data",
        "bom-ref": _dataset_ref(d.name),
        "name": d.name,
        "hashes": [_hash(d.sha256)],
        "properties": properties,
        "data": [data],
    }

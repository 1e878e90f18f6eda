"""Model cards: what a release's model is for, how it was evaluated, and where it falls short.

A card is built from the gate :class:`~bastion.report.Report` of the release (every number in
it comes from the report's findings, unchanged) plus what only people know (intended use,
owners, license ...: :class:`CardFields`), and an explanation computed on the test set
(:mod:`bastion.governance.explanation`). Sections, after Mitchell et al., "Model Cards for
Model Reporting" (FAT* 2019):

1. model details: name, version, format, architecture, task, owners, license, sha256;
2. intended use: the owners' text, intended users, out-of-scope uses;
3. data: every dataset the gate read, with rows, columns and content sha256;
4. metrics: the gate verdict, then per area (validation, fairness, robustness, privacy,
   extraction, poisoning) every metric the checks measured, confidence intervals folded in,
   and the status of every data-quality check;
5. explanation: permutation importance on the test set; a SHAP summary when ``shap`` is
   installed, otherwise a sentence saying it was not computed and why;
6. limitations: derived, so that a card cannot look cleaner than its evidence: every failing,
   erroring or warning check, every skipped check, every area the gate did not assess at all,
   and a trust-override load, followed by the owners' own limitations and ethical
   considerations;
7. provenance: the sha256 of ``report.json`` (the bytes :func:`report_sha256` hashes are the
   bytes :func:`~bastion.reporting.writers.write_reports` writes), the model's sha256, seed,
   versions and environment.

Rendering lives in :mod:`bastion.governance.modelcard_render`: numbers are shown with 4
significant digits in Markdown and HTML, while :meth:`ModelCard.to_dict` keeps full
precision; every text that comes from users or data (owners' fields, messages, column and
group names) is escaped, so that no field can inject markup, links or images.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bastion.exceptions import ConfigError, DataError, MissingExtraError
from bastion.findings import Finding, Severity, Status, json_number
from bastion.governance.explanation import (
    PermutationImportance,
    ShapSummary,
    compute_permutation_importance,
    compute_shap_summary,
)
from bastion.report import DatasetRef, Report
from bastion.verdict import Verdict

if TYPE_CHECKING:
    from bastion.data.dataset import Dataset
    from bastion.models.base import ModelAdapter

__all__ = [
    "AREAS",
    "CARD_SCHEMA_ID",
    "CardFields",
    "CheckResult",
    "EthicalConsideration",
    "Explanation",
    "Limitation",
    "ModelCard",
    "ModelDetails",
    "Provenance",
    "area_of",
    "build_model_card",
    "report_sha256",
]

CARD_SCHEMA_ID = "bastion.modelcard/v1"

AREAS: dict[str, str] = {
    "validation": "Validation",
    "fairness": "Fairness",
    "robustness": "Robustness",
    "privacy": "Privacy",
    "extraction": "Extraction",
    "poisoning": "Poisoning",
    "other": "Other checks",
    "data": "Data quality",
}
"""Areas of the metrics section, in display order, with their titles."""

# check-id prefix -> area; ids outside these land in "other" (no registry import needed)
_PREFIX_AREA = {
    "MV": "validation",
    "FA": "fairness",
    "ADV": "robustness",
    "PRV": "privacy",
    "EXT": "extraction",
    "POI": "poisoning",
    "DQ": "data",
    "DD": "data",
}
# areas whose absence from the report is itself a limitation of what the card can claim
_ASSESSED_AREAS = ("validation", "fairness", "robustness", "privacy", "extraction", "poisoning")
_AREA_WHAT = {
    "validation": "predictive performance (MV checks)",
    "fairness": "fairness across groups (FA checks)",
    "robustness": "robustness to adversarial inputs (ADV001, enable checks.robustness)",
    "privacy": "privacy leakage (PRV checks, enable checks.privacy)",
    "extraction": "resistance to model extraction (EXT001, enable checks.extraction)",
    "poisoning": "training-data poisoning (POI checks, enable checks.poisoning)",
}
_STATUS_ORDER = {"error": 0, "fail": 1, "warn": 2, "skipped": 3, "pass": 4}
_CARD_FIELDS = (
    "version",
    "intended_use",
    "users",
    "out_of_scope_uses",
    "owners",
    "license",
    "limitations",
    "ethical_considerations",
    "task",
    "architecture_family",
    "model_architecture",
)


# -- user-provided fields -----------------------------------------------------------------------


@dataclass(frozen=True)
class EthicalConsideration:
    """A risk the owners name, and how they mitigate it (CycloneDX ``risk``)."""

    name: str
    mitigation_strategy: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "mitigation_strategy": self.mitigation_strategy}


@dataclass(frozen=True)
class CardFields:
    """What only the model's owners know; everything is optional.

    ``task``, ``architecture_family`` and ``model_architecture`` override what the card
    derives from the model (a scikit-learn estimator's class and module).
    """

    version: str | None = None
    intended_use: str = ""
    users: tuple[str, ...] = ()
    out_of_scope_uses: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    license: str | None = None
    limitations: tuple[str, ...] = ()
    ethical_considerations: tuple[EthicalConsideration, ...] = ()
    task: str | None = None
    architecture_family: str | None = None
    model_architecture: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "card") -> CardFields:
        """Fields from a mapping (a ``card:`` section of YAML, a JSON object).

        Lists may also be given as a single string; an ethical consideration is a string
        (its name) or a mapping with ``name`` and optional ``mitigation_strategy``.

        Raises
        ------
        ConfigError
            An unknown key, or a value of the wrong type; the message names the key.

        Example::

            CardFields.from_mapping({"intended_use": "triage support", "owners": ["ml-team"]})
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping; received {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - set(_CARD_FIELDS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(_CARD_FIELDS)}"
            )

        def text(key: str) -> str | None:
            return _opt_text(data.get(key), f"{where}.{key}")

        def texts(key: str) -> tuple[str, ...]:
            return _text_list(data.get(key), f"{where}.{key}")

        return cls(
            version=text("version"),
            intended_use=text("intended_use") or "",
            users=texts("users"),
            out_of_scope_uses=texts("out_of_scope_uses"),
            owners=texts("owners"),
            license=text("license"),
            limitations=texts("limitations"),
            ethical_considerations=_ethics(data.get("ethical_considerations"), where),
            task=text("task"),
            architecture_family=text("architecture_family"),
            model_architecture=text("model_architecture"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "intended_use": self.intended_use,
            "users": list(self.users),
            "out_of_scope_uses": list(self.out_of_scope_uses),
            "owners": list(self.owners),
            "license": self.license,
            "limitations": list(self.limitations),
            "ethical_considerations": [e.to_dict() for e in self.ethical_considerations],
            "task": self.task,
            "architecture_family": self.architecture_family,
            "model_architecture": self.model_architecture,
        }


def _opt_text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{where} must be a string; received {type(value).__name__}")
    return str(value)


def _text_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a string or a list of strings; received {value!r}")
    return tuple(value)


def _ethics(value: Any, where: str) -> tuple[EthicalConsideration, ...]:
    items = [value] if isinstance(value, str | Mapping) else value
    if items is None:
        return ()
    if not isinstance(items, Sequence):
        raise ConfigError(f"{where}.ethical_considerations must be a list; received {value!r}")
    out = []
    for i, item in enumerate(items):
        place = f"{where}.ethical_considerations[{i}]"
        if isinstance(item, str):
            out.append(EthicalConsideration(item))
        elif isinstance(item, Mapping) and set(item) <= {"name", "mitigation_strategy"}:
            name = _opt_text(item.get("name"), f"{place}.name")
            if not name:
                raise ConfigError(f"{place} needs a name")
            mitigation = _opt_text(item.get("mitigation_strategy"), f"{place}.mitigation_strategy")
            out.append(EthicalConsideration(name, mitigation or ""))
        else:
            raise ConfigError(
                f"{place} must be a string or a mapping with name and mitigation_strategy; "
                f"received {item!r}"
            )
    return tuple(out)


# -- card content -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelDetails:
    """What the model is: identity, architecture, interface, ownership."""

    name: str
    format: str
    version: str | None = None
    path: str | None = None
    sha256: str | None = None
    task: str = "classification"
    architecture_family: str | None = None
    model_architecture: str | None = None
    classes: tuple[str, ...] = ()
    input_format: str | None = None
    output_format: str | None = None
    owners: tuple[str, ...] = ()
    license: str | None = None
    trusted_override: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "version": self.version,
            "path": self.path,
            "sha256": self.sha256,
            "task": self.task,
            "architecture_family": self.architecture_family,
            "model_architecture": self.model_architecture,
            "classes": list(self.classes),
            "input_format": self.input_format,
            "output_format": self.output_format,
            "owners": list(self.owners),
            "license": self.license,
            "trusted_override": self.trusted_override,
        }


@dataclass(frozen=True)
class MetricRow:
    """One measured number, with its confidence interval when the check reported one."""

    name: str
    value: float | int | None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class CheckResult:
    """One finding of the gate as the card shows it (numbers unchanged)."""

    area: str
    check_id: str
    title: str
    subject: str
    status: str
    severity: str
    message: str
    metrics: tuple[tuple[str, float | int | None], ...] = ()
    threshold: tuple[tuple[str, float | int | str | None], ...] = ()
    waiver: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_finding(cls, f: Finding) -> CheckResult:
        from bastion.reporting.writers import waiver_text

        return cls(
            area=area_of(f.check_id),
            check_id=f.check_id,
            title=f.title,
            subject=f.subject,
            status=f.status.value,
            severity=f.severity.value,
            message=f.message,
            metrics=tuple(f.metrics.items()),
            threshold=tuple(f.threshold.items()),
            waiver=waiver_text(f),
            evidence=f.evidence,
        )

    def metric_rows(self) -> list[MetricRow]:
        """Metrics with ``<name>_ci_low`` / ``<name>_ci_high`` folded into their metric."""
        values = dict(self.metrics)
        folded = {
            f"{name}{suffix}"
            for name in values
            for suffix in ("_ci_low", "_ci_high")
            if f"{name}{suffix}" in values
        }
        rows = []
        for name, value in self.metrics:
            if name in folded:
                continue
            low, high = values.get(f"{name}_ci_low"), values.get(f"{name}_ci_high")
            rows.append(
                MetricRow(
                    name,
                    value,
                    None if low is None else float(low),
                    None if high is None else float(high),
                )
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "check_id": self.check_id,
            "title": self.title,
            "subject": self.subject,
            "status": self.status,
            "severity": self.severity,
            "message": self.message,
            "metrics": {k: json_number(v) for k, v in self.metrics},
            "threshold": {
                k: v if isinstance(v, str) else json_number(v) for k, v in self.threshold
            },
            "waiver": self.waiver or None,
        }


@dataclass(frozen=True)
class Limitation:
    """A limitation the card lists: derived from a finding or the report, or the owners'.

    ``source`` is ``finding`` (a failing, erroring, warning or skipped check), ``coverage``
    (an area the gate did not assess), ``load`` (a trust override) or ``owner``.
    """

    source: str
    text: str
    check_id: str | None = None
    subject: str | None = None
    status: str | None = None
    severity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "text": self.text,
            "check_id": self.check_id,
            "subject": self.subject,
            "status": self.status,
            "severity": self.severity,
        }


@dataclass(frozen=True)
class Explanation:
    """Permutation importance and SHAP summary; a note says why either is missing."""

    permutation: PermutationImportance | None
    permutation_note: str
    shap: ShapSummary | None
    shap_note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "permutation_importance": self.permutation.to_dict() if self.permutation else None,
            "permutation_note": self.permutation_note,
            "shap": self.shap.to_dict() if self.shap else None,
            "shap_note": self.shap_note,
        }


@dataclass(frozen=True)
class Provenance:
    """Where the card's evidence comes from."""

    report_sha256: str
    model_sha256: str | None
    report_created_at: str
    report_bastion_version: str
    generated_at: str
    bastion_version: str
    seed: int
    policy_path: str | None = None
    environment: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_sha256": self.report_sha256,
            "model_sha256": self.model_sha256,
            "report_created_at": self.report_created_at,
            "report_bastion_version": self.report_bastion_version,
            "generated_at": self.generated_at,
            "bastion_version": self.bastion_version,
            "seed": self.seed,
            "policy_path": self.policy_path,
            "environment": dict(self.environment),
        }


@dataclass(frozen=True)
class ModelCard:
    """A model card for one release, built by :func:`build_model_card`.

    Example::

        card = build_model_card(report, adapter, test, fields=CardFields(intended_use="..."))
        Path("MODEL_CARD.md").write_text(card.to_markdown(), encoding="utf-8")
        Path("model_card.html").write_text(card.to_html(), encoding="utf-8")
    """

    project: str
    model: ModelDetails
    intended_use: str
    users: tuple[str, ...]
    out_of_scope_uses: tuple[str, ...]
    ethical_considerations: tuple[EthicalConsideration, ...]
    datasets: tuple[DatasetRef, ...]
    evaluation_dataset: str | None
    verdict: Verdict
    checks: tuple[CheckResult, ...]
    explanation: Explanation
    limitations: tuple[Limitation, ...]
    provenance: Provenance

    def checks_in(self, area: str) -> list[CheckResult]:
        return [c for c in self.checks if c.area == area]

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON data (schema id ``bastion.modelcard/v1``), full precision."""
        return {
            "schema": CARD_SCHEMA_ID,
            "project": self.project,
            "model": self.model.to_dict(),
            "intended_use": self.intended_use,
            "users": list(self.users),
            "out_of_scope_uses": list(self.out_of_scope_uses),
            "ethical_considerations": [e.to_dict() for e in self.ethical_considerations],
            "datasets": [d.to_dict() for d in self.datasets],
            "evaluation_dataset": self.evaluation_dataset,
            "verdict": self.verdict.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "explanation": self.explanation.to_dict(),
            "limitations": [lim.to_dict() for lim in self.limitations],
            "provenance": self.provenance.to_dict(),
        }

    def to_markdown(self) -> str:
        """The card as GitHub-flavoured Markdown (``MODEL_CARD.md``)."""
        from bastion.governance.modelcard_render import render_markdown

        return render_markdown(self)

    def to_html(self) -> str:
        """The card as one self-contained HTML page (inline CSS, no script, strict CSP)."""
        from bastion.governance.modelcard_render import render_html

        return render_html(self)


# -- building -----------------------------------------------------------------------------------


def area_of(check_id: str) -> str:
    """The card area of a check id: ``validation``, ``fairness``, ... or ``other``."""
    return _PREFIX_AREA.get(check_id.rstrip("0123456789").upper(), "other")


def report_sha256(report: Report) -> str:
    """SHA-256 of ``report.json`` as :func:`~bastion.reporting.writers.write_reports` writes it.

    Example::

        write_reports(report, "release", formats=["json"])
        assert sha256_file("release/report.json") == report_sha256(report)
    """
    from bastion.reporting.json_report import render_json

    return hashlib.sha256(render_json(report).encode("utf-8")).hexdigest()


def build_model_card(
    report: Report,
    model: ModelAdapter,
    test_dataset: Dataset | None = None,
    *,
    fields: CardFields | Mapping[str, Any] | None = None,
    n_repeats: int = 5,
    seed: int | None = None,
    scoring: str = "accuracy",
    shap: bool = True,
    generated_at: dt.datetime | None = None,
) -> ModelCard:
    """Build the model card of a release from its gate report.

    Parameters
    ----------
    report:
        The gate report of the release (:func:`bastion.runner.run_gate`).
    model:
        The adapter of the model the gate tested; its sha256, when known, must match the
        report's.
    test_dataset:
        The evaluation data for the explanation; must be a dataset the report lists (same
        name and sha256). Without it (or without its target) the explanation is left out
        and the card says why.
    fields:
        The owners' fields (:class:`CardFields` or a mapping for
        :meth:`CardFields.from_mapping`).
    n_repeats, seed, scoring:
        Permutation importance settings; ``seed`` defaults to the report's seed.
    shap:
        Try a SHAP summary (only when the ``shap`` package is installed).
    generated_at:
        When the card was made (default now, UTC); pass one for reproducible cards.

    Returns
    -------
    ModelCard

    Raises
    ------
    ConfigError
        The report has no model, the model's sha256 differs from the report's, or a field
        is malformed.
    DataError
        ``test_dataset`` is not a dataset of the report (name or sha256 differ).
    ModelError
        The model fails while computing the explanation.

    Example::

        card = build_model_card(report, adapter, test, fields={"intended_use": "triage"})
    """
    if fields is None:
        fields = CardFields()
    elif not isinstance(fields, CardFields):
        fields = CardFields.from_mapping(fields)
    if report.model is None:
        raise ConfigError(
            "the report has no model; a model card describes the model the gate tested"
        )
    recorded = report.model.get("sha256")
    if recorded and model.info.sha256 and recorded != model.info.sha256:
        raise ConfigError(
            f"model {model.info.name!r} has sha256 {model.info.sha256} but the gate report "
            f"tested {recorded}; build the card from the report of this model"
        )
    if test_dataset is not None:
        _check_dataset(report, test_dataset)
    seed = report.seed if seed is None else seed
    checks = tuple(
        CheckResult.from_finding(f)
        for f in sorted(report.findings, key=lambda f: _area_rank(f.check_id))
    )
    return ModelCard(
        project=report.project,
        model=_details(report, model, test_dataset, fields),
        intended_use=fields.intended_use,
        users=fields.users,
        out_of_scope_uses=fields.out_of_scope_uses,
        ethical_considerations=fields.ethical_considerations,
        datasets=report.datasets,
        evaluation_dataset=test_dataset.name if test_dataset is not None else None,
        verdict=report.verdict,
        checks=checks,
        explanation=_explain(model, test_dataset, n_repeats, seed, scoring, shap),
        limitations=_limitations(report, fields),
        provenance=Provenance(
            report_sha256=report_sha256(report),
            model_sha256=recorded or model.info.sha256,
            report_created_at=report.created_at,
            report_bastion_version=report.bastion_version,
            generated_at=(generated_at or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
            bastion_version=_version(),
            seed=seed,
            policy_path=report.policy_path,
            environment=report.environment,
        ),
    )


def _area_rank(check_id: str) -> int:
    return list(AREAS).index(area_of(check_id))


def _check_dataset(report: Report, ds: Dataset) -> None:
    names = [d.name for d in report.datasets]
    ref = next((d for d in report.datasets if d.name == ds.name), None)
    if ref is None:
        raise DataError(
            f"test_dataset {ds.name!r} is not a dataset of the gate report (it lists "
            f"{', '.join(map(repr, names)) or 'none'}); explain the data the gate evaluated"
        )
    if ref.sha256 != ds.content_hash:
        raise DataError(
            f"test_dataset {ds.name!r} has sha256 {ds.content_hash} but the gate report "
            f"recorded {ref.sha256}; explain the data the gate evaluated"
        )


_SKLEARN_FAMILY = {
    "sklearn.linear_model": "linear model",
    "sklearn.svm": "support vector machine",
    "sklearn.tree": "decision tree",
    "sklearn.ensemble": "ensemble",
    "sklearn.neighbors": "nearest neighbours",
    "sklearn.naive_bayes": "naive Bayes",
    "sklearn.neural_network": "neural network",
    "sklearn.discriminant_analysis": "discriminant analysis",
    "sklearn.gaussian_process": "Gaussian process",
    "sklearn.dummy": "constant baseline",
}


def _architecture(model: ModelAdapter) -> tuple[str | None, str | None]:
    """(family, architecture) derived from the adapter, where it can tell."""
    estimator = getattr(model, "estimator", None)
    if estimator is not None:
        steps = getattr(estimator, "steps", None)
        final = steps[-1][1] if isinstance(steps, list) and steps else estimator
        module = type(final).__module__
        family = next((v for k, v in _SKLEARN_FAMILY.items() if module.startswith(k)), None)
        names = [type(s[1]).__name__ for s in steps] if steps else [type(final).__name__]
        arch = " -> ".join(names) if len(names) > 1 else names[0]
        return family, arch
    if model.info.format in ("torch", "torch-export", "safetensors"):
        return "neural network", None
    return None, None


def _details(
    report: Report, model: ModelAdapter, ds: Dataset | None, fields: CardFields
) -> ModelDetails:
    from bastion.models.base import Capability

    info = report.model or {}
    family, arch = _architecture(model)
    classes = tuple(str(c) for c in model.classes_) if model.classes_ is not None else ()
    input_format = None
    if ds is not None:
        features = ds.features
        numeric = sum(1 for t in features.dtypes if t.kind in "biuf")
        other = features.shape[1] - numeric
        kinds = ", ".join(
            p
            for p in (f"{numeric} numeric" if numeric else "", f"{other} other" if other else "")
            if p
        )
        input_format = f"table of {features.shape[1]} features ({kinds})"
    output = "class label"
    if classes:
        output += f" (one of {', '.join(classes)})"
    if model.has(Capability.PREDICT_PROBA):
        output += " with class probabilities"
    return ModelDetails(
        name=str(info.get("name") or model.info.name),
        format=str(info.get("format") or model.info.format),
        version=fields.version,
        path=info.get("path"),
        sha256=info.get("sha256") or model.info.sha256,
        task=fields.task or "classification",
        architecture_family=fields.architecture_family or family,
        model_architecture=fields.model_architecture or arch,
        classes=classes,
        input_format=input_format,
        output_format=output,
        owners=fields.owners,
        license=fields.license,
        trusted_override=bool(info.get("trusted_override")),
    )


def _explain(
    model: ModelAdapter,
    ds: Dataset | None,
    n_repeats: int,
    seed: int,
    scoring: str,
    want_shap: bool,
) -> Explanation:
    if ds is None:
        note = "Not computed: no test dataset was given to explain the model on."
        return Explanation(None, note, None, note)
    if ds.target is None:
        note = f"Not computed: dataset {ds.name!r} has no target column."
        return Explanation(None, note, None, "Not computed: no labelled test dataset.")
    permutation = compute_permutation_importance(
        model, ds, n_repeats=n_repeats, seed=seed, scoring=scoring
    )
    shap_summary, shap_note = None, ""
    if not want_shap:
        shap_note = "Not computed: SHAP was turned off for this card."
    else:
        try:
            shap_summary = compute_shap_summary(model, ds, seed=seed)
        except MissingExtraError:
            shap_note = (
                "Not computed: the optional shap package is not installed "
                "(pip install 'bastion[explain]'). Permutation importance above is "
                "model-agnostic and covers the same question globally."
            )
    return Explanation(permutation, "", shap_summary, shap_note)


def _limitations(report: Report, fields: CardFields) -> tuple[Limitation, ...]:
    out: list[Limitation] = []
    problems = sorted(
        (f for f in report.findings if f.status is not Status.PASS),
        key=lambda f: (_STATUS_ORDER[f.status.value], -f.severity.rank, f.check_id, f.subject),
    )
    for f in problems:
        out.append(
            Limitation(
                source="finding",
                text=_limitation_text(f),
                check_id=f.check_id,
                subject=f.subject,
                status=f.status.value,
                severity=f.severity.value,
            )
        )
    present = {area_of(f.check_id) for f in report.findings}
    for area in _ASSESSED_AREAS:
        if area not in present:
            out.append(
                Limitation(
                    source="coverage",
                    text=f"Not assessed: the gate report holds no finding on "
                    f"{_AREA_WHAT[area]}; the card makes no claim about it.",
                )
            )
    if report.model and report.model.get("trusted_override"):
        out.append(
            Limitation(
                source="load",
                text="The model file was deserialized on an explicit trust override instead "
                "of a clean artifact scan; treat its supply chain as unverified.",
                severity=Severity.HIGH.value,
            )
        )
    out.extend(Limitation(source="owner", text=text) for text in fields.limitations)
    return tuple(out)


def _limitation_text(f: Finding) -> str:
    where = f" on {f.subject}" if f.subject else ""
    name = f"{f.check_id} {f.title}"
    if f.status is Status.SKIPPED:
        return f"{name} was not run{where}: {f.message}"
    if f.status is Status.ERROR:
        return f"{name} could not be evaluated{where} (error): {f.message}"
    if f.status is Status.WARN:
        return f"{name} warned{where} ({f.severity.value}): {f.message}"
    from bastion.reporting.writers import waiver_text

    waived = f" [{waiver_text(f)}]" if f.waived else ""
    return f"{name} failed{where} ({f.severity.value}){waived}: {f.message}"


def _version() -> str:
    from bastion import __version__

    return __version__

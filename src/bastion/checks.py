"""The check plugin interface, its registry and the context a check runs in.

A check is one module holding one :class:`Check` subclass decorated with
``@CHECKS.register``. It declares a stable ``id`` (``DQ002``), the policy ``name`` of its
section (``checks.data.completeness``), a pydantic ``Config`` with its thresholds, its
``scope`` (what it needs) and returns one :class:`~bastion.findings.Finding` per run.

Scopes:

- ``dataset``: runs once per dataset (train, test); reads ``ctx.dataset`` and ``ctx.profile``
  and, where it compares, ``ctx.reference`` / ``ctx.reference_profile`` (train).
- ``data_pair``: needs both ``ctx.train`` and ``ctx.test`` (leakage).
- ``model``: needs ``ctx.model`` and ``ctx.test`` with a target; reads ``ctx.predictions()``
  so that every validation and fairness check shares one set of model queries.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from bastion.exceptions import ConfigError
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.registry import Registry

if TYPE_CHECKING:
    from bastion.data.dataset import Dataset
    from bastion.data.profile import Profile
    from bastion.data.schema import FeatureSchema
    from bastion.models.base import ModelAdapter
    from bastion.models.predictions import Predictions

__all__ = [
    "CATEGORIES",
    "CHECKS",
    "Check",
    "CheckConfig",
    "CheckContext",
    "Scope",
    "config_as",
    "refuse_silent_conversions",
]

Category = Literal[
    "data", "validation", "fairness", "robustness", "extraction", "poisoning", "privacy"
]
CATEGORIES: tuple[Category, ...] = (
    "data",
    "validation",
    "fairness",
    "robustness",
    "extraction",
    "poisoning",
    "privacy",
)


class Scope(StrEnum):
    DATASET = "dataset"
    DATA_PAIR = "data_pair"
    MODEL = "model"


class CheckConfig(BaseModel):
    """Options every check accepts in the policy; subclasses add their thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    severity: Severity | None = None  # overrides the check's default severity

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """Refuse ``true`` / ``false`` for a number: YAML reads ``yes`` as true, which
        pydantic takes as 1, and ``max_fidelity: yes`` was a limit of 1.0 that nothing
        fails (a review saw ``min_robust_accuracy: true`` read as 1.0). Refuse text for a
        number too (``max_auc: "0.6"``, also in lists and mappings such as ``eps_curve``),
        and anything but a boolean for a switch (``enabled: "no"`` or ``0`` turned a check
        off): a quoted value is a slip the policy should show, not read."""
        return refuse_silent_conversions(cls, data)


def refuse_silent_conversions(model: type[BaseModel], data: Any, nested: bool = True) -> Any:
    """``data`` for ``model`` as given, or a ValueError naming the first field whose value
    pydantic would convert silently (see :func:`_misread`); ``nested`` False leaves nested
    models to check themselves, each naming its own key path."""
    if isinstance(data, Mapping):
        for name, value in data.items():
            field_info = model.model_fields.get(str(name))
            problem = _misread(value, field_info.annotation, nested) if field_info else None
            if problem is not None:
                raise ValueError(f"{name}: {problem}")
    return data


def _numeric_text(value: Any) -> bool:
    """Text that pydantic would read as a number ("0.5", "1e3"); other text it refuses with
    its own message."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _misread(value: Any, annotation: Any, nested: bool = True) -> str | None:
    """What is wrong with ``value`` for a field typed ``annotation``, where pydantic would
    convert it silently: text for a number (also inside a list or a mapping), or anything
    but a boolean for a boolean. None when nothing is (pydantic judges the rest)."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _misread(value, typing.get_args(annotation)[0], nested)
    if isinstance(value, bool) and _number_not_bool(annotation):
        return (
            f"expected a number, got {str(value).lower()} (YAML reads yes, no, on, off, true "
            "and false as booleans)"
        )
    if annotation is bool:
        if not isinstance(value, bool):
            return f"expected true or false, got {value!r}"
        return None
    if _numeric_text(value) and _number_not_bool(annotation):
        return f"expected a number, got the text {value!r} (write it without quotes)"
    args = typing.get_args(annotation)
    if origin in (tuple, list) and isinstance(value, list | tuple) and args:
        for i, item in enumerate(value):
            problem = _misread(item, args[0], nested)
            if problem is not None:
                return f"[{i}]: {problem}"
    if origin is dict and isinstance(value, Mapping) and len(args) == 2:
        for key, item in value.items():
            problem = _misread(item, args[1], nested)
            if problem is not None:
                return f"{key}: {problem}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        # a nested options model (bootstrap: {confidence: "0.5"}): its own fields, unless
        # it checks them itself (``nested`` False), naming its own key path
        if nested:
            try:
                refuse_silent_conversions(annotation, value)
            except ValueError as err:
                return str(err)
        return None
    if origin in (typing.Union, types.UnionType):
        # an optional field: judge the value against its one non-None type
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and value is not None:
            return _misread(value, inner[0], nested)
    return None


def _number_not_bool(annotation: Any) -> bool:
    """Whether a config field's type takes numbers (int, float) and no boolean: a boolean
    there would be read as 0 or 1."""
    import types
    import typing

    kinds: set[str] = set()

    def walk(tp: Any) -> None:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            walk(typing.get_args(tp)[0])
        elif origin in (typing.Union, types.UnionType):
            for arg in typing.get_args(tp):
                walk(arg)
        elif (
            tp is bool
            or tp is Any
            or (origin is Literal and any(isinstance(a, bool) for a in typing.get_args(tp)))
        ):
            kinds.add("bool")
        elif isinstance(tp, type) and issubclass(tp, int | float):
            kinds.add("number")

    walk(annotation)
    return kinds == {"number"}


C = TypeVar("C", bound=BaseModel)


def config_as(config: BaseModel, cls: type[C]) -> C:
    """``config`` as a plugin's own config class (checks and attacks): an instance of one of
    its base classes (a bare ``CheckConfig``) is upgraded, anything else is an error."""
    if isinstance(config, cls):
        return config
    if issubclass(cls, type(config)):
        return cls.model_validate(config.model_dump(exclude_unset=True))
    raise ConfigError(f"config must be a {cls.__qualname__}; received {type(config).__qualname__}")


@dataclass
class CheckContext:
    """Everything a check may read. Fields a scope does not need stay ``None``."""

    seed: int = 0
    subject: str = ""
    dataset: Dataset | None = None
    profile: Profile | None = None
    reference: Dataset | None = None
    reference_profile: Profile | None = None
    train: Dataset | None = None
    test: Dataset | None = None
    model: ModelAdapter | None = None
    baseline: ModelAdapter | None = None
    schema: FeatureSchema | None = None
    sensitive_features: tuple[str, ...] = ()
    expected_sha256: Mapping[str, str] = field(default_factory=dict)
    positive_label: Any = None
    allow_raw_rows: bool = False
    # objects a check hands to its caller outside the report (an attack's adversarial
    # examples for `bastion attack --save-adv`); shared by every check of a run
    artifacts: dict[str, Any] = field(default_factory=dict, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # the datasets' feature columns in the order the model names its inputs, as the
        # runner puts them: a context built in Python (a file whose columns are in another
        # order) otherwise handed a scikit-learn model scrambled rows, and EXT001 passed a
        # model it should fail (a review). Missing inputs are left to the checks to name.
        if self.model is not None:
            for ds in (self.train, self.test, self.dataset, self.reference):
                if ds is not None:
                    ds.take_model_order(self.model, strict=False)

    def rng(self, check_id: str) -> np.random.Generator:
        """A generator seeded by the run's seed and the check id, so order never matters."""
        salt = int.from_bytes(hashlib.sha256(check_id.encode()).digest()[:4], "little")
        return np.random.default_rng([self.seed, salt])

    def has_predictions(self, which: Literal["model", "baseline"] = "model") -> bool:
        """Whether :meth:`predictions` would answer without querying the model."""
        return f"predictions:{which}" in self._cache

    def predictions(self, which: Literal["model", "baseline"] = "model") -> Predictions:
        """The model's predictions on ``test``, computed once and shared by every check."""
        from bastion.models.predictions import predict_dataset

        key = f"predictions:{which}"
        if key not in self._cache:
            model = self.model if which == "model" else self.baseline
            if model is None or self.test is None:
                raise ValueError(f"no {which} or no test dataset in this context")
            self._cache[key] = predict_dataset(model, self.test, self.positive_label)
        result: Predictions = self._cache[key]
        return result


class Check(ABC):
    """Base class of every check. See the module docstring for the contract."""

    id: ClassVar[str]
    name: ClassVar[str]
    title: ClassVar[str]
    category: ClassVar[Category]
    scope: ClassVar[Scope]
    severity: ClassVar[Severity] = Severity.MEDIUM
    tags: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[frozenset[Capability]] = frozenset()
    needs_target: ClassVar[bool] = False
    needs_sensitive: ClassVar[bool] = False
    # attack checks are expensive: they run when their policy section is present
    enabled_by_default: ClassVar[bool] = True
    # the Config fields that are the gate's limits (the rest tune how the check runs): what
    # `bastion attack --limit NAME=VALUE` may set
    gate_limits: ClassVar[tuple[str, ...]] = ()
    # Config fields naming the user's code ('package.module:function'): imported before the
    # run, so one that does not import is a bad input (exit 2), not an error finding
    user_code: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type[CheckConfig]] = CheckConfig

    def __init__(self, config: CheckConfig | None = None) -> None:
        self.config = config_as(config, self.Config) if config is not None else self.Config()

    @abstractmethod
    def run(self, ctx: CheckContext) -> Finding:
        """Run on ``ctx`` and return one finding; raising becomes an ``error`` finding."""

    # -- helpers for subclasses ---------------------------------------------------------
    @property
    def effective_severity(self) -> Severity:
        return self.config.severity or self.severity

    def finding(
        self,
        ctx: CheckContext,
        status: Status,
        message: str,
        *,
        metrics: Mapping[str, float | int | None] | None = None,
        threshold: Mapping[str, float | int | str | None] | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> Finding:
        return Finding(
            check_id=self.id,
            title=self.title,
            status=status,
            severity=self.effective_severity,
            subject=ctx.subject,
            metrics=dict(metrics or {}),
            threshold=dict(threshold or {}),
            message=message,
            evidence=dict(evidence or {}),
            tags=self.tags,
        )

    def skip(self, ctx: CheckContext, reason: str) -> Finding:
        return self.finding(ctx, Status.SKIPPED, reason)

    def execute(self, ctx: CheckContext) -> Finding:
        """Run, timing it; any exception becomes an ``error`` finding and the run goes on (a
        :class:`ConfigError` one with ``evidence["error"] == "config"``: see
        :attr:`bastion.report.Report.exit_code`)."""
        start = time.perf_counter()
        try:
            result = self.run(ctx)
        except ConfigError as err:
            # a policy value the check can only judge against the data or the model (an
            # attribute that is not a column, a target class the model lacks): a policy
            # error, which the CLI's exit code says (2) as it does for one found on reading
            result = self.finding(
                ctx, Status.ERROR, f"{type(err).__name__}: {err}", evidence={"error": "config"}
            )
        except Exception as err:  # a crashing check is a finding, never a crash of the gate
            result = self.finding(ctx, Status.ERROR, f"{type(err).__name__}: {err}")
        return result.with_updates(duration_s=time.perf_counter() - start)


CHECKS: Registry[Check] = Registry(
    "check",
    modules=(
        "bastion.data.checks",
        "bastion.validation.checks",
        "bastion.fairness.checks",
        "bastion.attacks.checks",
    ),
)

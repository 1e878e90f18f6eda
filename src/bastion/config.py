"""The policy file ``bastion.yaml``: what to check, with which thresholds, and how to judge.

The policy is validated with pydantic in two stages: the fixed sections first, then each entry
of ``checks.<category>.<name>`` against the ``Config`` model of the registered check of that
name. Every error names the file, the key path, what was expected and what was found::

    bastion.yaml: checks.fairness.demographic_parity.max_difference: expected a number
    between 0 and 1, got 'high'

Relative paths in the policy are resolved against the policy file's folder.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from bastion._names import did_you_mean
from bastion.checks import (
    CATEGORIES,
    CHECKS,
    Check,
    CheckConfig,
    refuse_silent_conversions,
)
from bastion.data.schema import ColumnKind, ColumnSpec, FeatureSchema
from bastion.exceptions import ConfigError
from bastion.findings import Severity, Waiver

__all__ = [
    "DataSection",
    "DatasetSpec",
    "GateSection",
    "LogInputsSection",
    "ModelSpec",
    "MonitoringSection",
    "Policy",
    "RemoteSpec",
    "ReportSection",
    "load_policy",
    "parse_policy",
]

ReportFormat = Literal["json", "html", "junit", "sarif", "markdown"]
REPORT_FORMATS: tuple[ReportFormat, ...] = ("json", "html", "junit", "sarif", "markdown")
Fraction = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_silent_conversions(cls, data: Any) -> Any:
        """The check options' rule for the rest of the policy: ``model.trust_pickle: "yes"``
        or ``1`` loaded pickles, and ``report.allow_raw_rows: "on"`` put raw rows in the
        report, where a boolean was meant; a number in quotes was read as a number."""
        # nested sections run this validator themselves (their key path named)
        return refuse_silent_conversions(cls, data, nested=False)


class DatasetSpec(_Strict):
    """One dataset file; ``target`` overrides ``data.target``."""

    path: Path
    target: str | None = None


class ColumnSpecModel(_Strict):
    """A declared column in ``data.schema``."""

    type: ColumnKind
    required: bool = True
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    immutable: bool = False
    one_hot_group: str | None = None

    def to_spec(self, name: str) -> ColumnSpec:
        return ColumnSpec(
            name=name,
            kind=self.type,
            required=self.required,
            nullable=self.nullable,
            min=self.min,
            max=self.max,
            categories=tuple(self.categories) if self.categories is not None else None,
            immutable=self.immutable,
            one_hot_group=self.one_hot_group,
        )


class DataSection(_Strict):
    """Where the data is and what its columns mean."""

    train: DatasetSpec | None = None
    test: DatasetSpec | None = None
    target: str | None = None
    sensitive_features: list[str] = Field(default_factory=list)
    non_features: list[str] = Field(default_factory=list)
    positive_label: str | int | float | bool | None = None
    schema_: dict[str, ColumnSpecModel] = Field(default_factory=dict, alias="schema")
    expected_sha256: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        default_factory=dict
    )

    @field_validator("train", "test", mode="before")
    @classmethod
    def _path_shorthand(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str | Path) else value

    def feature_schema(self) -> FeatureSchema:
        return FeatureSchema(
            columns={name: spec.to_spec(name) for name, spec in self.schema_.items()}
        )


class RemoteSpec(_Strict):
    """An Open Inference Protocol v2 endpoint."""

    url: str
    model_name: str
    version: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    token_env: str | None = None  # name of the environment variable holding a bearer token
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"  # "" sends the bare token (e.g. for an X-API-Key header)
    verify_tls: bool | Path = True
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    backoff_s: Annotated[float, Field(ge=0)] = 0.2
    # HTTP 429 (the endpoint's rate cap): answers waited out per request; the longest wait
    # between two attempts (a longer Retry-After fails the request)
    rate_limit_waits: Annotated[int, Field(ge=0, le=1000)] = 30
    max_retry_after_s: Annotated[float, Field(ge=0)] = 60.0
    # the endpoint's cap where it is known: every request of every check is paced under it
    requests_per_second: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    queries_per_second: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    input_name: str = "input-0"
    datatype: Literal["FP32", "FP64"] | None = None


class ModelSpec(_Strict):
    """A model file (or endpoint) and how to load it."""

    path: Path | None = None
    # the loader's formats (bastion.models.loading.LOADABLE_FORMATS); joblib is pickle
    format: Literal[
        "auto", "onnx", "torch-export", "safetensors", "pickle", "joblib", "torch-pickle"
    ] = "auto"
    name: str | None = None
    trust_pickle: bool = False
    factory: str | None = None
    input_shape: list[int] | None = None
    classes: list[str | int] | None = None
    # an ONNX graph's outputs, where their names and types do not say which is which
    label_output: str | None = None
    proba_output: str | None = None
    remote: RemoteSpec | None = None
    # where a torch model runs: cpu (default: the same figures on every machine), cuda,
    # cuda:N, or auto (CUDA when torch sees a device); checked when the model loads
    device: str = "cpu"


class GateSection(_Strict):
    """How findings become a verdict."""

    fail_on: Severity = Severity.MEDIUM
    required: list[str] = Field(default_factory=list)


class WaiverSpec(_Strict):
    check: str
    reason: Annotated[str, Field(min_length=1)]
    owner: Annotated[str, Field(min_length=1)]
    expires: dt.date
    subject: str | None = None

    def to_waiver(self) -> Waiver:
        return Waiver(self.check, self.reason, self.owner, self.expires, self.subject)


class ReportSection(_Strict):
    formats: list[ReportFormat] = Field(default_factory=lambda: list(REPORT_FORMATS))
    allow_raw_rows: bool = False
    # category values seen fewer times are not named in report profiles (small-cell
    # suppression: a value seen once is a raw row); ignored when raw rows are allowed
    min_category_count: Annotated[int, Field(ge=1)] = 5


_SHA256 = r"^[0-9a-fA-F]{64}$"


class AllowEntry(_Strict):
    """One allowlisted name, pinned to the sha256 of the module file that defines it."""

    name: Annotated[str, Field(min_length=3, pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")]
    sha256: Annotated[str, Field(pattern=_SHA256)]


class ScanSection(_Strict):
    """``scan:``: what model files may import beyond the built-in allowlist."""

    allow: list[Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")] | AllowEntry] = (
        Field(default_factory=list)
    )

    def allowlist(self) -> Any:
        """The :class:`bastion.supply.allowlist.Allowlist` these entries make."""
        from bastion.supply.allowlist import Allowlist

        names: dict[str, str | None] = {}
        for entry in self.allow:
            if isinstance(entry, AllowEntry):
                names[entry.name] = entry.sha256
            else:
                names[entry] = None
        return Allowlist.of(names)


class SigningSection(_Strict):
    """``signing:``: the public keys a release must verify against, pinned here (never read
    from the registry database)."""

    keyring: Path | None = None
    trusted_keys: list[Path] = Field(default_factory=list)


class LogInputsSection(_Strict):
    """``monitoring.log_inputs``: the opt-in prediction log of ``bastion serve``
    (:mod:`bastion.monitoring.prediction_log`)."""

    path: Path
    # the writer's own defaults (a test keeps them equal; importing them here would load
    # bastion.monitoring for every policy read)
    max_file_mb: Annotated[float, Field(gt=0)] = 64.0
    max_files: Annotated[int, Field(ge=1)] = 16


class MonitoringSection(_Strict):
    """``monitoring:``: what ``bastion serve`` keeps of the traffic it watches. Without
    ``log_inputs`` it keeps binned counts only, never raw inputs."""

    log_inputs: LogInputsSection | None = None


class ChecksSection(_Strict):
    data: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    validation: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    fairness: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    robustness: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    extraction: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    poisoning: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    privacy: dict[str, dict[str, Any] | None] = Field(default_factory=dict)


class PolicyModel(_Strict):
    """The static part of ``bastion.yaml``; check sections are validated per check."""

    version: Literal[1] = 1
    project: Annotated[str, Field(min_length=1)] = "bastion"
    seed: int = Field(default=0, ge=0)  # numpy's and torch's generators take no negative seed
    data: DataSection = Field(default_factory=DataSection)
    model: ModelSpec | None = None
    baseline: ModelSpec | None = None
    checks: ChecksSection = Field(default_factory=ChecksSection)
    gate: GateSection = Field(default_factory=GateSection)
    waivers: list[WaiverSpec] = Field(default_factory=list)
    report: ReportSection = Field(default_factory=ReportSection)
    scan: ScanSection = Field(default_factory=ScanSection)
    signing: SigningSection = Field(default_factory=SigningSection)
    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)


class Policy:
    """A validated policy: the static sections plus one ``CheckConfig`` per registered check.

    Build one with :func:`load_policy` (a file) or :func:`parse_policy` (a mapping).
    """

    def __init__(
        self,
        model: PolicyModel,
        check_configs: Mapping[str, CheckConfig],
        path: Path | None = None,
    ) -> None:
        self.spec = model
        self.check_configs = dict(check_configs)
        self.path = path
        self.base_dir = path.parent if path is not None else Path.cwd()

    @property
    def project(self) -> str:
        return self.spec.project

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def waivers(self) -> list[Waiver]:
        return [w.to_waiver() for w in self.spec.waivers]

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    def enabled_checks(self) -> list[Check]:
        """An instance of every check the policy runs: those on by default unless disabled,
        and opt-in ones (attacks) whose section is present and not disabled."""
        out: list[Check] = []
        for cls in CHECKS:
            config = self.check_configs.get(cls.id)
            if config is None and cls.enabled_by_default:
                out.append(cls(cls.Config()))
            elif config is not None and config.enabled:
                out.append(cls(config))
        return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping: YAML lets the last one
    win, and a policy merged by hand lost its first ``evasion:`` section (limit included)
    or kept the weaker of two ``max_auc`` values, without a word. Each mapping is checked as
    written, before merge keys (``<<: *defaults``) flatten it: keys beside a merge override
    the merged ones, as they should."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # SafeLoader flattens every mapping before constructing it, and a merged one when
        # its parent is flattened, so each node is seen here first in its written form
        if id(node) not in self._checked:
            self._checked.add(id(node))
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                try:
                    repeated = key in seen
                except TypeError:
                    continue  # an unhashable key: SafeLoader's own error says so
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key!r} appears twice in one mapping (the second would silently "
                        "replace the first)",
                        key_node.start_mark,
                    )
                seen.add(key)
        super().flatten_mapping(node)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file.

    Raises
    ------
    ConfigError
        The file is missing, is not YAML, or any value is invalid; the message names the file,
        the key path, what was expected and what was found.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: policy file not found (run 'bastion init' to write one)")
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, expected a policy file (bastion.yaml)")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: not UTF-8 text") from err
    except OSError as err:
        raise ConfigError(f"{p}: cannot be read ({err.strerror})") from err
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no objects built
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{p}: {where}invalid YAML ({problem})") from err
    if data is None:
        data = {}
    return parse_policy(data, source=p.name, path=p)


def parse_policy(data: Any, *, source: str = "policy", path: Path | None = None) -> Policy:
    """Validate a policy given as a mapping (for example, parsed YAML)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level, got {data!r}")
    try:
        model = PolicyModel.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, PolicyModel, data)) from None
    configs: dict[str, CheckConfig] = {}
    by_name = {(cls.category, cls.name): cls for cls in CHECKS}
    for category in CATEGORIES:
        section: dict[str, dict[str, Any] | None] = getattr(model.checks, category)
        for name, raw in section.items():
            cls = by_name.get((category, name))
            if cls is None:
                known = sorted(n for c, n in by_name if c == category)
                raise ConfigError(
                    f"{source}: checks.{category}.{name}: unknown check {name!r}; "
                    f"{did_you_mean(name, known)}expected one of: {', '.join(known)}"
                )
            try:
                # `completeness:` with no value means "on, with defaults"
                configs[cls.id] = cls.Config.model_validate(raw if raw is not None else {})
            except ValidationError as err:
                raise ConfigError(
                    format_validation_error(
                        err, source, cls.Config, raw, prefix=f"checks.{category}.{name}"
                    )
                ) from None
            config = configs[cls.id]
            unused = [
                option
                for option in (*cls.gate_limits, *sorted(config.model_fields_set))
                if option not in ("enabled", "severity")
                and option in config.model_fields_set
                and getattr(config, option) is not None
            ]
            if not config.enabled and unused:
                # a limit set beside enabled: false was dropped without a word, and the gate
                # passed a release it was written to stop; any option there is unused
                kind = "a gate limit" if unused[0] in cls.gate_limits else "an option"
                raise ConfigError(
                    f"{source}: checks.{category}.{name}.{unused[0]}: {kind} of a disabled "
                    f"check ({cls.id}, enabled: false) is never used; enable the check or "
                    "remove it"
                )
    known_ids = set(CHECKS.ids())
    for i, check_id in enumerate(model.gate.required):
        if check_id not in known_ids:
            raise ConfigError(
                f"{source}: gate.required[{i}]: unknown check id {check_id!r}; "
                f"{did_you_mean(check_id, known_ids)}expected one of: "
                f"{', '.join(sorted(known_ids))}"
            )
    for i, waiver in enumerate(model.waivers):
        if waiver.check not in known_ids:
            raise ConfigError(
                f"{source}: waivers[{i}].check: unknown check id {waiver.check!r}; "
                f"{did_you_mean(waiver.check, known_ids)}expected one of: "
                f"{', '.join(sorted(known_ids))}"
            )
    return Policy(model, configs, path)


# -- error messages ---------------------------------------------------------------------------


def format_validation_error(
    err: ValidationError,
    source: str,
    model: type[BaseModel],
    data: Any,
    prefix: str = "",
) -> str:
    """One line per problem: ``source: key.path: expected ..., got ...``."""
    lines = []
    for item in err.errors():
        loc = _format_loc(item["loc"], prefix)
        lines.append(f"{source}: {loc}: {_describe_error(item, model)}")
    return "\n".join(lines)


def _format_loc(loc: Sequence[int | str], prefix: str) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe_error(item: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = item["type"]
    got = item.get("input")
    if kind == "extra_forbidden":
        owner = _owner_model(model, item["loc"][:-1])
        # the keys as a policy writes them: a field's alias (``schema`` for ``schema_``)
        fields = owner.model_fields.items() if owner is not None else []
        names = [field.alias or name for name, field in fields]
        if not names:
            return "unknown key"
        # a mistyped key is the usual cause: name the close ones first
        hint = did_you_mean(item["loc"][-1], names)
        return f"unknown key; {hint}expected one of: {', '.join(names)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        # a validator's own message already says what was expected and what came
        return str(item.get("msg", "invalid value")).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        pattern = item.get("ctx", {}).get("pattern", "")
        return f"expected a string matching {pattern}, got {got!r}"
    field = _field_at(model, item["loc"])
    expected = _expected(field) if field is not None else None
    if expected is None:
        expected = str(item.get("msg", "a valid value")).removeprefix("Input should be ")
    return f"expected {expected}, got {got!r}"


def _owner_model(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part)) or _by_alias(current, str(part))
        if field is None:
            return None
        current = _model_in(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _by_alias(model: type[BaseModel], name: str) -> FieldInfo | None:
    return next((f for f in model.model_fields.values() if f.alias == name), None)


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _field_at(model: type[BaseModel], loc: Sequence[int | str]) -> FieldInfo | None:
    parts = [p for p in loc if isinstance(p, str)]
    if not parts:
        return None
    owner = _owner_model(model, loc[:-1]) if len(loc) > 1 else model
    if owner is None:
        return None
    last = str(loc[-1]) if isinstance(loc[-1], str) else None
    if last is None:
        return None
    return owner.model_fields.get(last) or _by_alias(owner, last)


def _expected(field: FieldInfo) -> str | None:
    base = _describe_type(field.annotation)
    if base is None:
        return None
    lo: Any = None
    hi: Any = None
    lo_strict = hi_strict = False
    for meta in [*field.metadata, *_union_metadata(field.annotation)]:
        if isinstance(meta, annotated_types.Ge):
            lo = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            lo, lo_strict = meta.gt, True
        elif isinstance(meta, annotated_types.Le):
            hi = meta.le
        elif isinstance(meta, annotated_types.Lt):
            hi, hi_strict = meta.lt, True
    if lo is not None and hi is not None and not (lo_strict or hi_strict):
        return f"{base} between {lo} and {hi}"
    bounds = []
    if lo is not None:
        bounds.append(f"{'>' if lo_strict else '>='} {lo}")
    if hi is not None:
        bounds.append(f"{'<' if hi_strict else '<='} {hi}")
    return f"{base} {' and '.join(bounds)}" if bounds else base


def _union_metadata(annotation: Any) -> list[Any]:
    """Constraints of an ``Annotated`` member of ``X | None`` (``Fraction | None``: its range),
    which pydantic keeps on the member, not on the field."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return []
    out: list[Any] = []
    for member in typing.get_args(annotation):
        if typing.get_origin(member) is Annotated:
            for extra in typing.get_args(member)[1:]:
                out.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    return out


def _describe_type(annotation: Any) -> str | None:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return _describe_type(args[0])
    if origin in (typing.Union, types.UnionType):
        parts = [_describe_type(a) for a in args if a is not type(None)]
        named = [p for p in parts if p]
        text = " or ".join(named) if named else None
        if text and type(None) in args:
            text += " (or null)"
        return text
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is list:
        inner = _describe_type(args[0]) if args else None
        return f"a list of {inner}" if inner else "a list"
    if origin is dict:
        return "a mapping"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    if annotation is Path:
        return "a file path"
    if annotation is dt.date:
        return "a date (YYYY-MM-DD)"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    return None

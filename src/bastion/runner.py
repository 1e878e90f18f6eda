"""The gate runner: load what the policy names, run the selected checks, judge, report.

Order matters for "fail closed" and "no partial report": everything that can be a bad input
(datasets, sensitive features, the model, its predictions) is loaded and validated before any
check runs, so a bad input raises a named exception and no report is written. A check that
raises during the run becomes an ``error`` finding and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._names import known_names
from bastion.checks import CHECKS, Check, CheckContext, Scope
from bastion.config import DatasetSpec, ModelSpec, Policy
from bastion.data.dataset import Dataset
from bastion.data.schema import FeatureSchema
from bastion.exceptions import ConfigError, DataError
from bastion.findings import Finding, Severity, Status
from bastion.models.base import ModelAdapter
from bastion.report import DatasetRef, Report, waiver_entries
from bastion.reporting.writers import redact
from bastion.verdict import apply_waivers, decide

if TYPE_CHECKING:
    from bastion.data.profile import Profile

__all__ = ["GateInputs", "load_inputs", "run_gate"]

ProgressFactory = Callable[[int], Any]


@dataclass
class GateInputs:
    """Everything a gate run reads, loaded and validated up front."""

    train: Dataset | None = None
    test: Dataset | None = None
    model: ModelAdapter | None = None
    baseline: ModelAdapter | None = None
    schema: FeatureSchema = field(default_factory=FeatureSchema)
    profiles: dict[str, Profile] = field(default_factory=dict)

    @property
    def datasets(self) -> list[Dataset]:
        return [d for d in (self.train, self.test) if d is not None]

    def close(self) -> None:
        """Close the models' connections (a remote endpoint's HTTP client)."""
        for model in (self.model, self.baseline):
            if model is not None:
                model.close()


def load_inputs(
    policy: Policy,
    *,
    model: ModelAdapter | None = None,
    baseline: ModelAdapter | None = None,
    train: Dataset | None = None,
    test: Dataset | None = None,
    from_policy: bool = True,
) -> GateInputs:
    """Load and validate the datasets and models the policy names.

    Objects passed in replace what the policy would load (the library face: a fitted model in
    memory needs no file). With ``from_policy=False`` nothing else is loaded.

    Raises
    ------
    DataError, ModelError, ConfigError
        A dataset or model cannot be loaded, a named column is missing, a sensitive feature
        has a single group, or the model's output is malformed.
    """
    data = policy.spec.data
    if from_policy:
        train = train or _load_dataset(policy, data.train, "train")
        test = test or _load_dataset(policy, data.test, "test")
    reference = train if train is not None else test
    if reference is None:
        raise ConfigError(
            f"{_source(policy)}: data: no dataset given; set data.train and/or data.test"
        )
    declared = data.feature_schema()
    exclude = tuple(c for c in (reference.target, *reference.non_features) if c)
    schema = declared.merged_over(FeatureSchema.infer(reference.frame, exclude=exclude))
    if train is not None and test is not None and train.name == test.name:
        raise DataError(
            f"train and test datasets are both named {train.name!r}; profiles and findings "
            f"are keyed by dataset name, so give them different names"
        )
    sensitive = _sensitive_columns(policy)
    for ds in (train, test):
        if ds is not None:
            ds.schema = schema
            _check_sensitive(ds, sensitive)
    if from_policy:
        model = model or _load_model(policy, policy.spec.model, "model")
        baseline = baseline or _load_model(policy, policy.spec.baseline, "baseline")
    for ds in (train, test):
        if ds is not None and model is not None:
            ds.take_model_order(model)
    datasets = [ds for ds in (train, test) if ds is not None]
    for column in data.non_features:
        if not any(column in ds.frame.columns for ds in datasets):
            raise DataError(
                f"non-feature column {column!r} is in no dataset; "
                f"{known_names(column, datasets[0].frame.columns)}"
            )
    if train is not None and test is not None and model is not None:
        _train_has_the_test_features(train, test, model)
    return GateInputs(train=train, test=test, model=model, baseline=baseline, schema=schema)


def _train_has_the_test_features(train: Dataset, test: Dataset, model: ModelAdapter) -> None:
    """A model that takes its inputs by position (ONNX, torch) gets the training rows with the
    test rows' features: a feature the training file lacks would surface later as NaN in a
    combined table (a "model returned NaN" error, or a skipped attack), far from its cause. A
    model that names its inputs picks them itself, and other differences are DQ001's."""
    from bastion.models.base import input_names

    if input_names(model):
        return
    missing = [c for c in test.feature_names if c not in train.feature_names]
    same = sorted(test.feature_names) == sorted(train.feature_names)
    # a callable gets the frame itself, and may pick its columns by name (a review): only
    # adapters that send bare arrays read by position
    positional = model.info.format != "callable"
    if positional and same and test.feature_names != train.feature_names:
        # the same columns in another order: a positional model would read one file's
        # columns as the other's (a review saw clean accuracy 0.37 instead of 0.91, no
        # warning); which order the model takes, only the user knows
        at = next(
            i
            for i, (a, b) in enumerate(zip(test.feature_names, train.feature_names, strict=True))
            if a != b
        )
        raise DataError(
            f"datasets {train.name!r} and {test.name!r} hold the feature columns in different "
            f"orders (column {at} is {train.feature_names[at]!r} in one, "
            f"{test.feature_names[at]!r} in the other), and model {model.info.name!r} takes "
            "its inputs by position: write both files with the model's column order"
        )
    if missing:
        where = f" ({train.path})" if train.path else ""
        shown = ", ".join(repr(c) for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(
            f"dataset {train.name!r}{where} lacks feature column(s) {shown} of dataset "
            f"{test.name!r}, which model {model.info.name!r} takes by position: give both the "
            "same feature columns (or list the extra ones in data.non_features, --non-feature "
            "on bastion attack)"
        )


def run_gate(
    policy: Policy,
    *,
    inputs: GateInputs | None = None,
    fail_on: Severity | None = None,
    today: dt.date | None = None,
    progress: ProgressFactory | None = None,
    categories: Iterable[str] | None = None,
    artifacts: dict[str, Any] | None = None,
) -> Report:
    """Run every enabled check of ``policy`` and return the judged :class:`Report`.

    Parameters
    ----------
    policy:
        A validated policy (:func:`bastion.config.load_policy`).
    inputs:
        Pre-loaded inputs; loaded from the policy when omitted.
    fail_on:
        Overrides ``gate.fail_on``.
    today:
        The date waivers are judged against (default: today, UTC).
    progress:
        Called with the number of steps; returns an object with ``advance(label)`` and
        ``close()`` (the CLI passes a rich progress bar).
    categories:
        Run only checks of these categories (``data``, ``validation``, ``fairness`` ...).
    artifacts:
        A dict that checks may fill with objects for the caller (not part of the report).

    Example::

        report = run_gate(load_policy("bastion.yaml"))
        sys.exit(report.exit_code)
    """
    started = time.perf_counter()
    if categories is not None:
        categories = tuple(categories)  # read twice: by the loading and by the run
    options = _RunOptions(fail_on, today, progress, categories, artifacts, started)
    if inputs is not None:
        return _run_loaded(policy, inputs, options)
    # a run that attacks loads its inputs inside the network rule, and keeps it to the end:
    # threads the user's code starts while loading stay under it
    with attacking_run_rule(policy, categories):
        loaded = load_inputs(policy)
        try:
            return _run_loaded(policy, loaded, options)
        finally:
            loaded.close()  # what the runner opened, it closes


@dataclass(frozen=True)
class _RunOptions:
    fail_on: Severity | None
    today: dt.date | None
    progress: ProgressFactory | None
    categories: Iterable[str] | None
    artifacts: dict[str, Any] | None
    started: float


def _selected(policy: Policy, categories: Iterable[str] | None) -> list[Check]:
    """The policy's enabled checks, of ``categories`` only when given."""
    checks = policy.enabled_checks()
    if categories is None:
        return checks
    wanted = set(categories)
    return [c for c in checks if c.category in wanted]


def attacking_run_rule(
    policy: Policy, categories: Iterable[str] | None
) -> AbstractContextManager[None]:
    """The network rule for a run that attacks, to open before its inputs load (loading runs
    the user's code: a ``module:factory`` import, a trusted pickle, which must not reach the
    network either; the rule used to begin at the first query) and to keep while they are
    in use; a no-op for a run that does not attack (``categories``: those that will run)."""
    if not any(c.category in _ATTACK_CATEGORIES for c in _selected(policy, categories)):
        return nullcontext()
    from bastion.attacks.network import only_endpoints

    urls = [
        spec.remote.url
        for spec in (policy.spec.model, policy.spec.baseline)
        if spec is not None and spec.remote is not None
    ]
    return only_endpoints(urls)


def _import_user_code(checks: Sequence[Check]) -> None:
    """Import the user's code the checks about to run name (``Check.user_code``): one that
    does not import is a bad input, refused before any check runs."""
    from bastion._user_code import resolve_reference

    for check in checks:
        for option in check.user_code:
            reference = getattr(check.config, option, None)
            if reference is not None:
                where = f"checks.{check.category}.{check.name}.{option}"
                resolve_reference(str(reference), what=where)


def _run_loaded(policy: Policy, inputs: GateInputs, options: _RunOptions) -> Report:
    from bastion.data.profile import Profile

    fail_on, today, progress = options.fail_on, options.today, options.progress
    categories, started = options.categories, options.started
    timings: dict[str, float] = {"load_s": time.perf_counter() - started}

    t0 = time.perf_counter()
    for ds in inputs.datasets:
        if ds.name not in inputs.profiles:
            inputs.profiles[ds.name] = Profile.from_frame(ds.frame, seed=policy.seed)
    timings["profile_s"] = time.perf_counter() - t0

    checks = _selected(policy, categories)
    required = set(policy.spec.gate.required)
    if categories is not None:
        required &= {c.id for c in CHECKS if c.category in set(categories)}

    t0 = time.perf_counter()
    base_ctx = _base_context(policy, inputs)
    if options.artifacts is not None:
        base_ctx.artifacts = options.artifacts
    endpoints = _endpoint_urls(inputs)
    with ExitStack() as guard:
        if any(c.category in _ATTACK_CATEGORIES for c in checks):
            # a run that attacks queries the model, and imports the user's code, inside the
            # controlled environment from the first call on
            from bastion.attacks.network import only_endpoints

            guard.enter_context(only_endpoints(endpoints))
        # Query the models once, up front: a model with NaN or misshapen output is a bad
        # input (exit 2, no report), not a per-check error.
        if base_ctx.model is not None and _has_target(inputs.test):
            base_ctx.predictions("model")
            if base_ctx.baseline is not None:
                base_ctx.predictions("baseline")
        _import_user_code(checks)
    timings["predict_s"] = time.perf_counter() - t0
    plan = list(_plan(checks, inputs, base_ctx))
    t0 = time.perf_counter()
    findings = _execute(plan, endpoints, progress)
    timings["checks_s"] = time.perf_counter() - t0

    allow_raw = policy.spec.report.allow_raw_rows
    day = today or dt.datetime.now(dt.UTC).date()
    waivers = policy.waivers
    findings = apply_waivers(findings, waivers, day)
    verdict = decide(
        findings,
        fail_on=fail_on or policy.spec.gate.fail_on,
        required=required,
    )
    timings["total_s"] = time.perf_counter() - started
    report = Report(
        project=policy.project,
        findings=tuple(findings),
        verdict=verdict,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        bastion_version=_version(),
        seed=policy.seed,
        model=inputs.model.info.to_dict() if inputs.model else None,
        baseline=inputs.baseline.info.to_dict() if inputs.baseline else None,
        datasets=tuple(_dataset_ref(d) for d in inputs.datasets),
        environment=environment(),
        timings={k: round(v, 6) for k, v in timings.items()},
        waivers=tuple(waiver_entries(waivers, findings, day.isoformat())),
        profiles={
            name: p.summary(1 if allow_raw else policy.spec.report.min_category_count)
            for name, p in inputs.profiles.items()
        },
        policy_path=str(policy.path) if policy.path else None,
        raw_rows_allowed=allow_raw,
        feature_schema=_schema_summary(inputs.schema),
    )
    # the same redaction every writer applies, so a library caller never holds raw rows
    return redact(report)


_ATTACK_CATEGORIES = frozenset({"robustness", "extraction", "poisoning", "privacy"})


def _endpoint_urls(inputs: GateInputs) -> list[str]:
    """The remote endpoints under test, the only hosts an attack may reach."""
    urls = []
    for model in (inputs.model, inputs.baseline):
        endpoint = getattr(model, "endpoint", None)
        url = getattr(endpoint, "url", None)
        if isinstance(url, str):
            urls.append(url)
    return urls


def _detail(bar: Any, name: str) -> Callable[[str], None]:
    """A progress callback that prefixes the running check's id to an attack's progress."""

    def show(text: str) -> None:
        bar.detail(f"{name}: {text}")

    return show


def _execute(
    plan: Sequence[tuple[Check, CheckContext, str | None]],
    endpoints: Sequence[str],
    progress: ProgressFactory | None,
) -> list[Finding]:
    """Run the plan in order; attacks run inside the controlled environment."""
    bar = progress(len(plan)) if progress else None
    findings: list[Finding] = []
    interrupted = False
    try:
        for check, ctx, skip_reason in plan:
            if interrupted:
                findings.append(check.skip(ctx, "the run was interrupted (Ctrl-C) before it ran"))
            elif skip_reason is not None:
                findings.append(check.skip(ctx, skip_reason))
            else:
                started = time.perf_counter()
                before = _interrupts()
                try:
                    with ExitStack() as stack:
                        if check.category in _ATTACK_CATEGORIES:
                            _enter_attack_environment(stack, endpoints, bar, check)
                        finding = check.execute(ctx)
                    if _interrupts() > before:
                        # the attack stopped cleanly on Ctrl-C (its partial result is in the
                        # finding): the run stops too, and a partial figure never passes
                        interrupted = True
                        finding = _interrupted(finding)
                    findings.append(finding)
                except KeyboardInterrupt:
                    # a check that cannot stop cleanly on its own: the report still comes,
                    # with this one an error and the rest skipped (the gate does not pass)
                    interrupted = True
                    message = "interrupted (Ctrl-C) before it finished: nothing judged"
                    finding = check.finding(ctx, Status.ERROR, message)
                    findings.append(finding.with_updates(duration_s=time.perf_counter() - started))
            if bar is not None:
                bar.advance(f"{check.id} {check.name} {ctx.subject}".strip())
    finally:
        if bar is not None:
            bar.close()
    return findings


def _interrupts() -> int:
    from bastion.attacks.budget import interrupt_count

    return interrupt_count()


def _interrupted(finding: Finding) -> Finding:
    """An attack's finding after Ctrl-C: a failure stands (what it found is real), anything
    else becomes an error, since its figures cover part of the attack only."""
    note = " Interrupted (Ctrl-C): partial result, not judged as a pass."
    if finding.status is Status.FAIL:
        return finding.with_updates(message=finding.message + note)
    return finding.with_updates(status=Status.ERROR, message=finding.message + note)


def _enter_attack_environment(
    stack: ExitStack, endpoints: Sequence[str], bar: Any, check: Check
) -> None:
    """No host but the endpoint under test, no model request retried past the check's
    time budget; the attack's progress shown on the bar."""
    from bastion.attacks.budget import report_progress, wall_deadline
    from bastion.attacks.network import only_endpoints

    stack.enter_context(only_endpoints(endpoints))
    # the check's wall-time budget bounds a failing endpoint's retries too, also for the
    # check's queries outside its attacks' runs (each run opens its budget's own deadline)
    stack.enter_context(wall_deadline(getattr(check.config, "max_seconds", None)))
    if bar is not None and hasattr(bar, "detail"):
        stack.enter_context(report_progress(_detail(bar, f"{check.id} {check.name}")))


# -- planning ---------------------------------------------------------------------------------


def _plan(
    checks: Sequence[Check], inputs: GateInputs, base: CheckContext
) -> Iterable[tuple[Check, CheckContext, str | None]]:
    """Each (check, context, skip reason or None) the run will go through, in order."""
    for check in checks:
        if check.scope is Scope.DATASET:
            for ds in inputs.datasets:
                ctx = _derive(base, subject=f"dataset:{ds.name}", dataset=ds)
                ctx.profile = inputs.profiles.get(ds.name)
                reason = None
                if check.needs_target and ds.target is None:
                    reason = f"dataset {ds.name!r} has no target column (set data.target)"
                yield check, ctx, reason
        elif check.scope is Scope.DATA_PAIR:
            ctx = _derive(base, subject="dataset:train+test")
            reason = None
            if inputs.train is None or inputs.test is None:
                reason = "needs both data.train and data.test"
            yield check, ctx, reason
        else:
            ctx = _derive(base, subject="model")
            yield check, ctx, _model_skip_reason(check, base)


def _model_skip_reason(check: Check, ctx: CheckContext) -> str | None:
    if ctx.model is None:
        return "no model configured (set model.path)"
    if ctx.test is None:
        return "no test dataset configured (set data.test)"
    if check.needs_target and ctx.test.target is None:
        return "the test dataset has no target column (set data.target)"
    own = getattr(check.config, "sensitive_features", None)  # a check may name its own
    if check.needs_sensitive and not (own or ctx.sensitive_features):
        return "no sensitive features configured (set data.sensitive_features)"
    missing = sorted(c.value for c in check.requires if not ctx.model.has(c))
    if missing:
        return f"model {ctx.model.info.name!r} does not provide {', '.join(missing)}"
    return None


def _base_context(policy: Policy, inputs: GateInputs) -> CheckContext:
    ref = inputs.train if inputs.train is not None else inputs.test
    return CheckContext(
        seed=policy.seed,
        reference=ref,
        reference_profile=inputs.profiles.get(ref.name) if ref is not None else None,
        train=inputs.train,
        test=inputs.test,
        model=inputs.model,
        baseline=inputs.baseline,
        schema=inputs.schema,
        sensitive_features=tuple(policy.spec.data.sensitive_features),
        expected_sha256=dict(policy.spec.data.expected_sha256),
        positive_label=policy.spec.data.positive_label,
        allow_raw_rows=policy.spec.report.allow_raw_rows,
    )


def _derive(base: CheckContext, **changes: Any) -> CheckContext:
    """A per-check context sharing the base's prediction cache (one set of model queries)."""
    ctx = CheckContext(**{**_public_fields(base), **changes})
    ctx._cache = base._cache
    return ctx


def _public_fields(ctx: CheckContext) -> dict[str, Any]:
    return {k: v for k, v in vars(ctx).items() if not k.startswith("_")}


# -- loading ----------------------------------------------------------------------------------


def _source(policy: Policy) -> str:
    return policy.path.name if policy.path else "policy"


def _load_dataset(policy: Policy, spec: DatasetSpec | None, name: str) -> Dataset | None:
    if spec is None:
        return None
    data = policy.spec.data
    return Dataset.from_file(
        policy.resolve(spec.path),
        name=name,
        target=spec.target or data.target,
        sensitive=data.sensitive_features,
        non_features=data.non_features,
    )


def _load_model(policy: Policy, spec: ModelSpec | None, role: str) -> ModelAdapter | None:
    if spec is None:
        return None
    from bastion.models.loading import load_model

    remote = None
    if spec.remote is not None:
        from bastion.models.remote import RemoteEndpoint

        r = spec.remote
        verify = (
            str(policy.resolve(r.verify_tls)) if isinstance(r.verify_tls, Path) else r.verify_tls
        )
        remote = RemoteEndpoint(
            url=r.url,
            model_name=r.model_name,
            version=r.version,
            headers=dict(r.headers),
            auth_token_env=r.token_env,
            auth_header=r.auth_header,
            auth_scheme=r.auth_scheme,
            verify_tls=verify,
            timeout_s=r.timeout_s,
            retries=r.retries,
            backoff_s=r.backoff_s,
            rate_limit_waits=r.rate_limit_waits,
            max_retry_after_s=r.max_retry_after_s,
            requests_per_second=r.requests_per_second,
            queries_per_second=r.queries_per_second,
            input_name=r.input_name,
            datatype=r.datatype,
            classes=spec.classes,
        )
    path = policy.resolve(spec.path) if spec.path is not None else None
    if path is None and remote is None:
        raise ConfigError(f"{_source(policy)}: {role}: set {role}.path or {role}.remote")
    return load_model(
        path,
        format=spec.format if spec.format != "joblib" else "pickle",
        trust_pickle=spec.trust_pickle,
        factory=spec.factory,
        name=spec.name or role,
        remote=remote,
        classes=spec.classes,
        input_shape=tuple(spec.input_shape) if spec.input_shape else None,
        allow=policy.spec.scan.allowlist(),
        device=spec.device,
        label_output=spec.label_output,
        proba_output=spec.proba_output,
    )


def _sensitive_columns(policy: Policy) -> list[str]:
    """``data.sensitive_features`` plus any that an enabled check names for itself."""
    columns = list(policy.spec.data.sensitive_features)
    for check in policy.enabled_checks():
        for col in getattr(check.config, "sensitive_features", None) or ():
            if col not in columns:
                columns.append(col)
    return columns


def _check_sensitive(ds: Dataset, columns: Sequence[str]) -> None:
    """Every sensitive column exists and has at least two groups: a bad input, not a finding."""
    for col in columns:
        if col not in ds.frame.columns:
            raise DataError(
                f"dataset {ds.name!r}: sensitive feature {col!r} not found; "
                f"{known_names(col, ds.frame.columns)}"
            )
        groups = ds.frame[col].nunique(dropna=False)
        if groups < 2:
            raise DataError(
                f"dataset {ds.name!r}: sensitive feature {col!r} has a single group "
                f"({ds.frame[col].iloc[0]!r}); fairness needs at least two groups to compare"
            )


def _has_target(ds: Dataset | None) -> bool:
    return ds is not None and ds.target is not None


# -- report parts -----------------------------------------------------------------------------


def _dataset_ref(ds: Dataset) -> DatasetRef:
    return DatasetRef(
        name=ds.name,
        path=str(ds.path) if ds.path else None,
        sha256=ds.content_hash,
        n_rows=ds.n_rows,
        n_columns=int(ds.frame.shape[1]),
        target=ds.target,
        sensitive=ds.sensitive,
        features=tuple(ds.feature_names),
    )


def _schema_summary(schema: FeatureSchema) -> dict[str, Any] | None:
    """The feature schema as the report (and a release) carries it; None when empty.
    Category lists are left out: category values can be raw data."""
    if not schema.columns:
        return None
    columns = {}
    for name, spec in schema.columns.items():
        entry = spec.to_dict()
        entry.pop("categories", None)
        columns[name] = entry
    declared = sorted(n for n in schema.columns if schema.is_declared(n))
    return {"inferred": schema.inferred, "columns": columns, "declared": declared}


def _version() -> str:
    from bastion import __version__

    return __version__


def environment() -> dict[str, Any]:
    """Interpreter, platform and the versions of the libraries that shape the numbers."""
    packages: dict[str, str] = {}
    for name in ("numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "onnxruntime", "torch"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": packages,
    }

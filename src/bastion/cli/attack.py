"""``bastion attack ...``: run one family of attacks against your own model, outside the gate.

Each command builds a one-section policy (the same checks `bastion check` runs) from its
options, so the JSON output is a ``bastion.report/v1`` document whose findings carry the stable
metric names, and exit codes follow the gate: 0 within the limits, 1 a limit broken, 2 bad
input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.cli._console import ProgressBar, console, err_console, findings_table, verdict_line
from bastion.exceptions import ConfigError

__all__ = ["AttackRequest", "run_attack"]

# command -> the policy sections (category, check name) it runs
SECTIONS: dict[str, list[tuple[str, str]]] = {
    "evasion": [("robustness", "evasion")],
    "extraction": [("extraction", "extraction")],
    "poisoning": [
        ("poisoning", "label_issues"),
        ("poisoning", "simulation"),
        ("poisoning", "backdoor_activations"),
    ],
    "membership": [("privacy", "membership")],
    "inversion": [("privacy", "attribute_inference")],
}
# sections that run when they apply and are skipped, saying why, when they do not: activation
# clustering reads a torch model's layers, so an ONNX or scikit-learn model passes without it
OPTIONAL: frozenset[tuple[str, str]] = frozenset({("poisoning", "backdoor_activations")})


@dataclass
class AttackRequest:
    """What the user asked for on the command line."""

    command: str
    model: Path | None
    data: Path
    target: str
    train: Path | None = None
    remote_url: str | None = None
    remote_model: str | None = None
    remote_rate: float | None = None  # --remote-rate: the endpoint's requests per second
    trust_pickle: bool = False
    factory: str | None = None
    input_shape: list[int] | None = None
    classes: list[str | int] | None = None  # --classes
    device: str = "cpu"
    seed: int = 0
    output_format: str = "text"
    out: Path | None = None
    save_adv: Path | None = None
    sensitive: list[str] = field(default_factory=list)
    non_features: list[str] = field(default_factory=list)
    allow_raw_rows: bool = False  # --show-rows
    # check options, by the policy key they set; None means "the check's default"
    options: dict[str, Any] = field(default_factory=dict)
    # --limit NAME=VALUE, as typed
    limits: list[str] = field(default_factory=list)


def build_policy(request: AttackRequest) -> dict[str, Any]:
    """The policy mapping that runs ``request``'s checks on its files."""
    if request.command not in SECTIONS:
        raise ConfigError(f"unknown attack family {request.command!r}")
    data: dict[str, Any] = {"test": str(request.data), "target": request.target}
    if request.train is not None:
        data["train"] = str(request.train)
    if request.sensitive:
        data["sensitive_features"] = list(request.sensitive)
    if request.non_features:
        data["non_features"] = list(request.non_features)
    model: dict[str, Any] = {"trust_pickle": request.trust_pickle}
    if request.factory:
        model["factory"] = request.factory
    if request.input_shape:
        model["input_shape"] = request.input_shape
    if request.classes:
        model["classes"] = request.classes
    if request.device != "cpu":
        model["device"] = request.device
    if request.remote_url:
        if not request.remote_model:
            raise ConfigError("--remote-url needs --remote-model (the model's name there)")
        model["remote"] = {"url": request.remote_url, "model_name": request.remote_model}
        if request.remote_rate is not None:
            model["remote"]["requests_per_second"] = request.remote_rate
    elif request.model is not None:
        model["path"] = str(request.model)
    else:
        raise ConfigError("give --model PATH or --remote-url URL --remote-model NAME")
    if request.remote_rate is not None and not request.remote_url:
        raise ConfigError("--remote-rate is the cap of a --remote-url endpoint; there is none")
    options = {k: v for k, v in request.options.items() if v is not None}
    checks: dict[str, dict[str, Any]] = {}
    for category, name in SECTIONS[request.command]:
        checks.setdefault(category, {})[name] = dict(options.get(name, {}))
    # keep the run to the attack: every default-on check is switched off
    from bastion.checks import CHECKS

    for cls in CHECKS:
        if cls.enabled_by_default:
            checks.setdefault(cls.category, {})[cls.name] = {"enabled": False}
    limited: set[tuple[str, str]] = set()
    for text in request.limits:
        limited |= _set_limit(checks, request.command, text)
    # the attack the user asked for must run: a skipped one fails, saying why; so must an
    # optional one given a limit (skipped, its limit was dropped without a word: exit 0)
    required = [
        cls.id
        for cls in CHECKS
        if (cls.category, cls.name) in SECTIONS[request.command]
        and ((cls.category, cls.name) not in OPTIONAL or (cls.category, cls.name) in limited)
    ]
    return {
        "project": f"bastion-attack-{request.command}",
        "seed": request.seed,
        "data": data,
        "model": model,
        "checks": checks,
        "gate": {"required": required},
        "report": {"formats": ["json"], "allow_raw_rows": request.allow_raw_rows},
    }


def _set_limit(checks: dict[str, dict[str, Any]], command: str, text: str) -> set[tuple[str, str]]:
    """Set ``--limit NAME=VALUE`` on the command's section(s) whose check has that limit; the
    policy's own validation judges the value (``off`` turns a limit off where it may be).
    Returns the sections given a value (not those turned off)."""
    from bastion.checks import CHECKS

    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    limited = [
        cls for cls in CHECKS if (cls.category, cls.name) in SECTIONS[command] and cls.gate_limits
    ]
    known = [limit for cls in limited for limit in cls.gate_limits]
    if not sep or not name or not value:
        raise ConfigError(f"--limit {text!r}: expected NAME=VALUE, e.g. --limit {known[0]}=0.5")
    owners = [cls for cls in limited if name in cls.gate_limits]
    if not owners:
        raise ConfigError(
            f"--limit {name}: not a limit of bastion attack {command}; its limits: "
            + ", ".join(known)
        )
    parsed = None if value.lower() in ("off", "none") else _number_of(value)
    for cls in owners:
        field = cls.Config.model_fields.get(name)
        if (
            parsed is None
            and field is not None
            and not field.is_required()
            and (field.default is not None and not _may_be_none(field.annotation))
        ):
            # the policy's validation said "got None", naming neither the flag nor the word
            raise ConfigError(
                f"--limit {name}={value}: {name} cannot be turned off (its default is "
                f"{field.default}); give a value"
            )
        checks[cls.category][cls.name][name] = parsed
    return set() if parsed is None else {(cls.category, cls.name) for cls in owners}


def _number_of(text: str) -> int | float | str:
    """A command-line value as the number it spells (the policy refuses numbers given as
    text, a slip in a YAML file); other text as is, for the policy to judge."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


# the command-line flag behind each check option the commands set
_FLAGS = {
    "attack": "--attack",
    "strategy": "--attack",
    "kind": "--attack",
    "eps": "--eps",
    "norm": "--norm",
    "steps": "--steps",
    "max_queries_per_sample": "--budget",
    "budget": "--budget",
    "max_seconds": "--max-seconds",
    "requests_per_second": "--requests-per-second",
    "train_fn": "--train-fn",
    "attribute": "--attribute",
}


def _with_flags(message: str, request: AttackRequest) -> str:
    """The policy's refusal of a value the command line set, naming its flag: the key path
    alone (``checks.robustness.evasion.max_queries_per_sample``) left the user of
    ``--budget -5`` to guess."""
    limits = {text.split("=", 1)[0].strip() for text in request.limits}
    lines = []
    sections = [name for _, name in SECTIONS.get(request.command, ())]
    for line in message.splitlines():
        for name in sections:
            options = request.options.get(name) or {}
            for option in list(options) + sorted(limits):
                if f".{name}.{option}" in line or f".{name}: {option}:" in line:
                    flag = _FLAGS.get(option, "--limit") if option not in limits else "--limit"
                    line += f" (set by {flag})"
                    break
            else:
                continue
            break
        lines.append(line)
    return "\n".join(lines)


def _may_be_none(annotation: Any) -> bool:
    """Whether a config field's type admits None (``float | None``, ``Optional[...]``)."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_may_be_none(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _may_be_none(typing.get_args(annotation)[0])
    return annotation is type(None)


def run_attack(request: AttackRequest) -> int:
    """Run the attack checks for ``request``; print or write the report; return the exit code."""
    from bastion.config import parse_policy
    from bastion.runner import run_gate

    try:
        policy = parse_policy(build_policy(request), source="bastion attack")
    except ConfigError as err:
        raise ConfigError(_with_flags(str(err), request)) from None
    _check_outputs(request)
    artifacts: dict[str, Any] = {}
    report = run_gate(
        policy,
        progress=lambda total: ProgressBar(total, f"bastion attack {request.command}"),
        artifacts=artifacts,
    )
    if request.out is not None:  # --out always gets the JSON report, whatever is printed
        request.out.write_text(report.to_json() + "\n", encoding="utf-8")
    if request.output_format == "json":
        if request.out is None:
            print(report.to_json())
    else:
        target = request.remote_model if request.remote_url else getattr(request.model, "name", "")
        title = f"bastion attack {request.command}: {target} on {request.data.name}"
        console.print(findings_table(report, title=title))
        console.print(verdict_line(report))
        for reason in report.verdict.reasons:
            console.print(f"  - {reason}", markup=False)
    if request.save_adv is not None:
        if artifacts.get("evasion_result") is None:
            # the attack did not run to a result (skipped or an error, in the report): the
            # verdict's exit code stands, the missing file is said on stderr
            err_console.print(
                f"--save-adv {request.save_adv}: nothing written, the attack produced no "
                "adversarial examples (see the report)",
                markup=False,
            )
        else:
            _save_adversarial(artifacts, request.save_adv)
    return report.exit_code


def _check_outputs(request: AttackRequest) -> None:
    """Refuse output paths that cannot be written before the attack runs, not after."""
    if request.save_adv is not None and request.save_adv.suffix.lower() not in (
        ".csv",
        ".npz",
        ".npy",
    ):
        raise ConfigError(
            f"--save-adv {request.save_adv}: write a .csv (features by name, with the source "
            "row and success), a .npz (the array, each input in the model's input shape, with "
            "the same) or a .npy (the array alone); other formats are not supported"
        )
    for flag, path in (("--out", request.out), ("--save-adv", request.save_adv)):
        if path is not None and not path.parent.is_dir():
            raise ConfigError(f"{flag} {path}: the folder {path.parent} does not exist")
        if path is not None and path.is_dir():
            raise ConfigError(f"{flag} {path}: is a folder; name a file")


def _save_adversarial(artifacts: dict[str, Any], path: Path) -> None:
    """Write the evasion attack's adversarial inputs: CSV with the feature names (a flat row
    each), .npz with the array, or .npy (the array alone); in the arrays each input has the
    model's input shape (an image model's ``(1, 8, 8)``; flat rows otherwise). CSV and .npz
    carry each input's row of --data and whether it is adversarial: the attack samples
    ``n_points`` rows and leaves some out, so the array's rows are not the file's."""
    result = artifacts.get("evasion_result")
    if result is None:
        raise ConfigError("--save-adv: this run produced no adversarial examples")
    import numpy as np
    import pandas as pd

    names = artifacts.get("feature_names")
    rows = artifacts.get("rows")
    suffix = path.suffix.lower()
    x_adv = np.asarray(result.x_adv)
    shape = artifacts.get("input_shape")
    if shape is not None and len(shape) >= 2 and int(np.prod(shape)) == x_adv[0].size:
        # the data file's flat rows as the model reads them (the .npz kept them flat)
        x_adv = x_adv.reshape(len(x_adv), *(int(d) for d in shape))
    if suffix == ".npz":
        with path.open("wb") as fh:  # np.savez would add .npz to a name that lacks it
            np.savez(
                fh,
                x_adv=x_adv,
                rows=np.asarray(rows if rows is not None else np.arange(len(result.x_adv))),
                success=result.success,
                feature_names=np.asarray(names if names is not None else [], dtype=str),
            )
    elif suffix == ".npy":
        with path.open("wb") as fh:  # np.save adds .npy to a name that lacks it (or ADV.NPY)
            np.save(fh, x_adv)
        if rows is not None and not np.array_equal(rows, np.arange(len(rows))):
            err_console.print(
                f"note: {path} holds the array alone, and its rows are a sample of --data's "
                "(n_points, rows left out): --save-adv FILE.npz or .csv keeps each row's "
                "position and success",
                markup=False,
            )
    else:
        frame = pd.DataFrame(result.x_adv.reshape(len(result.x_adv), -1), columns=names)
        if rows is not None:  # which row of --data each adversarial input came from
            frame.insert(0, "bastion_row", rows)
        frame["bastion_adversarial_success"] = result.success
        frame.to_csv(path, index=False)
    # on stderr: stdout may be the JSON report, which must stay parseable
    err_console.print(f"wrote {len(result.x_adv)} adversarial inputs to {path}", markup=False)

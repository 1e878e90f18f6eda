"""``bastion release``: scan, gate, card, sign, register, record lineage, audit, in that order.

A release is a folder: the model file(s), the gate report (``report.json`` plus the other
report formats), the model card (Markdown and HTML), the CycloneDX ML-BOM (``mlbom.json``)
and the OpenSSF signature bundle (``model.sig``) over all of them. Each step must succeed for
the next to run, and each refusal says why:

1. the model artifact scans clean (:mod:`bastion.supply`; no override in a release);
2. the gate runs on the policy and its report passes;
3. the model card and the ML-BOM are built from that report;
4. the folder is signed with a key from the key store (held outside the database);
5. the folder is registered as the next version of the model;
6. lineage records the datasets, the gate run, its report and the new version;
7. the audit chain records the release, and a checkpoint signed with the same key seals it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from bastion.exceptions import BastionError, ConfigError

if TYPE_CHECKING:
    from bastion.governance.keys import KeyProtection
    from bastion.governance.registry import ModelVersion, Registry
    from bastion.report import Report

__all__ = ["ReleaseRefusedError", "ReleaseResult", "release"]


class ReleaseRefusedError(BastionError, PermissionError):
    """A release step refused: the scan, the gate or a signature."""


@dataclass(frozen=True)
class ReleaseResult:
    """What a release produced."""

    version: ModelVersion
    folder: Path  # the release folder (removed after registration unless ``out`` was given)
    report: Report
    key_id: str
    audit_seq: int

    def summary(self) -> str:
        return (
            f"released {self.version.ref}: gate passed, signed by key {self.key_id[:16]}, "
            f"{len(self.version.files)} files, manifest {self.version.manifest_sha256[:16]}; "
            f"audit sealed at event {self.audit_seq}"
        )


def release(
    config: str | os.PathLike[str],
    name: str,
    *,
    registry: Registry,
    key: str | None = None,
    out: str | os.PathLike[str] | None = None,
    card_fields: Mapping[str, Any] | None = None,
    key_store: str | os.PathLike[str] | None = None,
    keyring: str | os.PathLike[str] | None = None,
    protection: KeyProtection | None = None,
) -> ReleaseResult:
    """Release the model of policy ``config`` as the next version of ``name``.

    Parameters:
        config: the policy (``bastion.yaml``) whose model and data the gate tests.
        name: the registry's model name.
        registry: the registry, opened as the releasing user.
        key: signing key id (or prefix) in the key store; default: its active key.
        out: where to build the release folder (default: a temporary folder, removed after
            registration).
        card_fields: the model card's owner fields (intended use, limitations, ...).
        key_store, keyring: the key store folder and its keyring file (defaults as for
            ``bastion keys``).
        protection: how the signing key is decrypted (default: from the environment, as
            for ``bastion keys``).

    Raises:
        ReleaseRefusedError: the scan is not clean or the gate did not pass.
        AccessDeniedError: the caller may not release.
        ConfigError: the policy has no local model file, or a key is missing.
    """
    from bastion.config import load_policy
    from bastion.governance.keys import KeyProtection, KeyStore
    from bastion.supply import scan_path

    registry.access.require(registry.identity, "registry.release")
    policy = load_policy(Path(config))
    spec = policy.spec.model
    if spec is None or spec.path is None:
        raise ConfigError(f"{config}: a release needs model.path (a local model file or folder)")
    model_path = policy.resolve(spec.path)
    allow = policy.spec.scan.allowlist()
    # 1. scan: every file of the model, no override
    files = (
        [model_path]
        if model_path.is_file()
        else sorted(p for p in model_path.rglob("*") if p.is_file())
    )
    for file in files:
        scanned = scan_path(file, allow=allow)
        if not scanned.safe:
            first = "; ".join(f"{f.rule} {f.message}" for f in scanned.findings[:3])
            _refuse(registry, name, f"scan of {file.name}: {scanned.verdict.value}: {first}")
    # the key is loaded before the (long) gate, so a missing passphrase fails fast
    signer = KeyStore.at(key_store, keyring).load_signing_key(
        key, protection or KeyProtection.from_env()
    )
    # 2. gate, and 3. the folder (the model card queries the model), under the network rule
    # of a run that attacks, from the model's loading on (it runs the user's code); the
    # registry's database is reached outside it
    from bastion.runner import attacking_run_rule

    work = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="bastion-release-"))
    try:
        with attacking_run_rule(policy, None):
            report, inputs = _gate(policy)
            try:
                if report.verdict.passed:
                    folder = _assemble(work, files, model_path, report, inputs, card_fields)
            finally:
                inputs.close()
        if not report.verdict.passed:
            reasons = "; ".join(report.verdict.reasons[:5]) or "see the report"
            _refuse(registry, name, f"the gate failed: {reasons}")
        # 4. sign the whole folder
        from bastion.governance.signing import sign_folder

        signed = sign_folder(folder, signer)
        # 5. register
        report_dict = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        version = registry.register(name, folder, report=report_dict)
        # 6. lineage
        from bastion.governance.lineage import Lineage

        lineage = Lineage(registry.engine)
        report_sha = version.report_sha256 or ""
        lineage.record_gate_run(report_dict, report_sha, version.ref, by=registry.identity)
        run_id = lineage.start_run(
            "release", version.ref, by=registry.identity, facets={"key_id": signed.key_id}
        )
        lineage.link("report", report_sha, "input_of", "run", run_id, by=registry.identity)
        lineage.link("run", run_id, "produced", "model_version", version.ref, by=registry.identity)
        lineage.finish_run(run_id, "completed", by=registry.identity)
        # 7. audit, sealed by a checkpoint signed outside the database
        registry.audit.append(
            registry.identity.name,
            "model.release",
            f"model:{version.ref}",
            {
                "manifest_sha256": version.manifest_sha256,
                "report_sha256": version.report_sha256,
                "key_id": signed.key_id,
                "policy": str(config),
            },
        )
        seq, _ = registry.audit.checkpoint(signer.sign, signer.key_id)
    finally:
        if out is None:
            shutil.rmtree(work, ignore_errors=True)
    # the folder is gone when it was temporary; its files live on in the registry
    return ReleaseResult(version, folder, report, signer.key_id, seq)


def _refuse(registry: Registry, name: str, why: str) -> NoReturn:
    registry.audit.append(
        registry.identity.name, "model.release.refused", f"model:{name}", {"why": why}
    )
    raise ReleaseRefusedError(f"release of {name} refused: {why}")


def _gate(policy: Any) -> tuple[Report, Any]:
    """The gate's report and its inputs (still open: the model card queries the model)."""
    from bastion.runner import load_inputs, run_gate

    inputs = load_inputs(policy)
    try:
        return run_gate(policy, inputs=inputs), inputs
    except BaseException:
        inputs.close()
        raise


def _assemble(
    work: Path,
    files: list[Path],
    model_path: Path,
    report: Report,
    inputs: Any,
    card_fields: Mapping[str, Any] | None,
) -> Path:
    """The release folder: model files, reports, model card, ML-BOM."""
    from bastion.governance.mlbom import build_mlbom
    from bastion.governance.modelcard import build_model_card
    from bastion.reporting.writers import write_reports

    folder = work / "release"
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"release folder {folder} is not empty")
    model_dir = folder / "model"
    model_dir.mkdir(parents=True)
    base = model_path if model_path.is_dir() else model_path.parent
    copied = []
    for file in files:
        target = model_dir / file.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
        copied.append(target)
    write_reports(report, folder, ["json", "html", "markdown"])
    card = build_model_card(report, inputs.model, inputs.test, fields=card_fields)
    (folder / "model_card.md").write_text(card.to_markdown(), encoding="utf-8")
    (folder / "model_card.html").write_text(card.to_html(), encoding="utf-8")
    references = [("model-card", folder / "model_card.md"), ("evidence", folder / "report.json")]
    bom = build_mlbom(report, copied, card, base_dir=folder, references=references)
    (folder / "mlbom.json").write_text(json.dumps(bom, indent=2) + "\n", encoding="utf-8")
    return folder

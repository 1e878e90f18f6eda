"""POI003 backdoor_activations: backdoored training rows seen in a torch model's activations.

What it detects
    Training rows carrying a backdoor trigger: an attacker stamped a pattern (a few pixels, a
    few feature values) on rows of one class and relabelled them to a target class, and the
    model learned "trigger -> target" as a shortcut. Label checks (POI001) miss this when the
    trigger is learnable: the poisoned rows' labels are consistent with their features.
How
    Activation clustering (Chen et al.): per given label, the inputs of the model's last
    ``nn.Linear`` layer are projected on 10 principal components and split with k-means
    (k = 2, 3); a cluster holding at most ``size_threshold`` of its class, from a split with a
    silhouette of at least ``min_silhouette``, is a candidate. Clean classes with two natural
    modes produce candidates too, so each must pass a presence test before its class is
    judged poisoned (see :mod:`bastion.attacks.poisoning.spectral`). ``both`` (default):
    the cluster's few most distinctive input features, copied onto rows of other classes,
    send them to its label (a shortcut: lift over the rest of the class at least
    ``min_presence``), and a logistic regression fitted without the cluster sends most of
    it away from its label (the paper's exclusionary reclassification). ``transfer`` or
    ``reclassification`` use one test (each alone flags clean models: extreme tabular
    subgroups, natural modes resembling another class); ``none`` keeps the paper's size
    and silhouette rule alone (2-means, 0.35). Needs a torch model whose ``nn.Linear``
    layers run (a ``TorchAdapter`` over a module, e.g. safetensors weights with a factory;
    a ``torch.export`` program does not keep them) trained on ``data.train``; other models
    are skipped, saying why.
Metrics
    ``n_flagged`` (training rows flagged: the poisoned clusters, plus rows of the same class
    that carry the cluster's out-of-range feature values), ``n_rows`` (labelled training
    rows), ``flagged_fraction = n_flagged / n_rows``, ``n_suspect_classes`` (classes judged
    poisoned), ``n_candidate_classes`` (classes whose split passed the size and silhouette
    rule).
Evidence
    ``suspect_classes``; per class (``classes``): ``cluster_share`` and ``silhouette`` of
    the 2-means split, ``spectral_gap`` (top singular value over the second, Tran et al.),
    ``n_candidates``, ``poisoned`` and, for the reported candidate (a poisoned one, else the
    one with the largest lift), ``candidate_share``, ``transfer_lift``, ``transfer_rate``,
    ``transfer_features`` (feature names), ``reclassified_own_share``, ``reclassified_to``
    (the class most of the cluster went to: its source, for poison) and
    ``reclassified_to_share``; ``flagged_by_class``; under ``samples`` (dropped from
    reports unless the policy allows raw rows) the positions of flagged rows in the
    training file (0-based, header excluded).
Gate
    Fails when more than ``max_suspect_classes`` (default 0) classes are judged poisoned; an
    ``error`` when the detector does not finish within ``max_seconds`` (default 600, checked
    between classes).
References
    Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by Activation
    Clustering" (SafeAI 2019); Tran, Li and Madry, "Spectral Signatures in Backdoor Attacks"
    (NeurIPS 2018); Gu et al., "BadNets" (2017); MITRE ATLAS AML.T0020, AML.T0043.004; OWASP
    ML02.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion._deadline import wall_deadline
from bastion.attacks.checks._training import labelled_rows, stopped_by_time
from bastion.checks import CHECKS, Check, CheckConfig, CheckContext, Scope, config_as
from bastion.exceptions import ModelError, TimeBudgetError
from bastion.findings import Finding, Severity, Status
from bastion.models.base import Capability
from bastion.models.predictions import check_labels_match
from bastion.threats import (
    ATLAS_BACKDOOR_TRIGGER,
    ATLAS_POISON_TRAINING_DATA,
    OWASP_DATA_POISONING,
)

__all__ = ["BackdoorActivationsCheck", "BackdoorActivationsConfig"]


class BackdoorActivationsConfig(CheckConfig):
    """Clustering settings, the presence test and the gate limit."""

    layer: str | None = Field(
        default=None, description="submodule whose input is read; default the last nn.Linear"
    )
    n_components: int = Field(default=10, ge=1, le=100)
    size_threshold: float | None = Field(
        default=None, gt=0.0, le=0.5, description="default 0.5; 0.35 with presence none"
    )
    min_silhouette: float = Field(default=0.1, ge=-1.0, le=1.0)
    presence: Literal["both", "transfer", "reclassification", "none"] = "both"
    min_presence: float = Field(default=0.5, gt=0.0, le=1.0)
    max_suspect_classes: int = Field(default=0, ge=0)
    n_samples_reported: int = Field(default=20, ge=0, le=10_000)
    # checked between classes: a detector that stops there is an error
    max_seconds: float | None = Field(default=600.0, gt=0)


@CHECKS.register
class BackdoorActivationsCheck(Check):
    """Fail when a class of the training data holds a cluster that behaves like a backdoor.

    Example::

        check = BackdoorActivationsCheck(BackdoorActivationsConfig(max_suspect_classes=0))
        finding = check.execute(CheckContext(train=train, model=torch_adapter))
    """

    id = "POI003"
    gate_limits = ("max_suspect_classes",)
    name = "backdoor_activations"
    title = "Backdoored training rows (activation clustering)"
    category = "poisoning"
    scope = Scope.MODEL
    severity = Severity.HIGH
    tags = (ATLAS_POISON_TRAINING_DATA, ATLAS_BACKDOOR_TRIGGER, OWASP_DATA_POISONING)
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    enabled_by_default = False
    Config = BackdoorActivationsConfig

    def run(self, ctx: CheckContext) -> Finding:
        from bastion.attacks.poisoning.spectral import (
            activation_clustering,
            penultimate_activations,
            spectral_signatures,
        )

        cfg = config_as(self.config, BackdoorActivationsConfig)
        model, train = ctx.model, ctx.train
        if model is None:
            return self.skip(ctx, "needs a model")
        if getattr(model, "module", None) is None:
            return self.skip(
                ctx,
                "needs a torch model to read its activations (safetensors weights with a "
                f"factory); model {model.info.name!r} is {model.info.format}",
            )
        rows = labelled_rows(train)
        if isinstance(rows, str):
            return self.skip(ctx, rows)
        train, positions, y = rows
        n = len(y)
        X = train.features.iloc[positions]
        # the clock runs from here: reading the activations is part of the detector's time
        with wall_deadline(cfg.max_seconds):
            if cfg.presence in ("transfer", "both"):
                # the transfer test compares the model's answers with these labels: labels it
                # never answers (strings against the output columns 0..k-1) matched nothing,
                # and a backdoored model passed
                check_labels_match(train, model, np.asarray(y), X)
            try:
                acts = penultimate_activations(model, X, layer=cfg.layer)
            except ModelError as err:
                return self.skip(ctx, f"cannot read the model's activations: {err}")
            seed = int(ctx.rng(self.id).integers(2**31 - 1))
            try:
                issues = activation_clustering(
                    model,
                    X,
                    y,
                    n_components=cfg.n_components,
                    size_threshold=cfg.size_threshold,
                    min_silhouette=cfg.min_silhouette,
                    presence=None if cfg.presence == "none" else cfg.presence,
                    min_presence=cfg.min_presence,
                    seed=seed,
                    activations=acts,
                )
                # the evidence's spectral gaps, within the time budget too (from a review:
                # run after it, a full SVD of wide activations took 33 s past a 15 s budget)
                gaps = spectral_signatures(None, None, y, activations=acts).details["classes"]
            except TimeBudgetError as err:
                return stopped_by_time(self, ctx, err, cfg.max_seconds)
        names = list(X.columns.astype(str))
        classes = {
            label: _class_evidence(entry, gaps.get(label, {}), names)
            for label, entry in issues.details["classes"].items()
        }
        suspects = list(issues.details["suspect_classes"])
        candidates = [label for label, entry in classes.items() if entry["n_candidates"]]
        share = issues.n_flagged / n
        metrics: dict[str, float | int | None] = {
            "n_flagged": issues.n_flagged,
            "n_rows": n,
            "flagged_fraction": share,
            "n_suspect_classes": len(suspects),
            "n_candidate_classes": len(candidates),
        }
        evidence: dict[str, Any] = {
            "presence": cfg.presence,
            "suspect_classes": suspects,
            "classes": classes,
            "flagged_by_class": {str(k): v for k, v in issues.counts_by_class(y).items()},
        }
        if issues.n_flagged and cfg.n_samples_reported:
            # row positions are not raw data, but they point at rows: samples only
            top = positions[issues.flagged[: cfg.n_samples_reported]]
            evidence["samples"] = {"row_positions": [int(i) for i in top]}
        message = _summary(cfg.presence, candidates, suspects, classes, issues.n_flagged, n)
        if len(suspects) > cfg.max_suspect_classes:
            status = Status.FAIL
            message += (
                f" Allowed: {cfg.max_suspect_classes}. Review the flagged rows and retrain "
                "without them."
            )
        else:
            status = Status.PASS
        return self.finding(
            ctx,
            status,
            message,
            metrics=metrics,
            threshold={
                "max_suspect_classes": cfg.max_suspect_classes,
                "min_presence": cfg.min_presence if cfg.presence != "none" else None,
            },
            evidence=evidence,
        )


def _class_evidence(entry: dict[str, Any], gap: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """One class's clustering, spectral and presence-test numbers, with feature names."""
    out: dict[str, Any] = {
        "cluster_share": entry["small_cluster_share"],
        "silhouette": entry["silhouette"],
        "spectral_gap": gap.get("spectral_gap"),
        "n_candidates": entry["n_candidates"],
        "poisoned": entry["flagged"],
    }
    if "transfer_lift" in entry:
        out.update(
            candidate_share=entry["candidate_share"],
            transfer_lift=entry["transfer_lift"],
            transfer_rate=entry["transfer_rate"],
            transfer_features=[names[j] for j in entry["transfer_features"]],
            reclassified_own_share=entry["reclassified_own_share"],
            reclassified_to=entry["reclassified_to"],
            reclassified_to_share=entry["reclassified_to_share"],
        )
    return out


def _summary(
    presence: str,
    candidates: list[str],
    suspects: list[Any],
    classes: dict[str, dict[str, Any]],
    n_flagged: int,
    n: int,
) -> str:
    text = (
        f"Activation clustering found small, separate clusters in {len(candidates)} "
        f"class(es) ({', '.join(candidates) or 'none'})"
    )
    if presence == "none":
        text += "; without a presence test each is judged poisoned."
    else:
        text += f"; the presence test ({presence}) judged {len(suspects)} class(es) poisoned"
        details = []
        for label in suspects:
            entry = classes[str(label)]
            own = entry["reclassified_own_share"]
            # each test's figures where it ran: the transfer lift under the reclassification
            # test alone was a figure nothing judged (a review)
            said = []
            if presence in ("transfer", "both"):
                said.append(f"transfer lift {entry['transfer_lift']:.2f}")
            if presence in ("reclassification", "both"):
                said.append(
                    f"{'n/a' if own is None else f'{own:.0%}'} kept its label when "
                    f"reclassified, most went to {entry['reclassified_to']}"
                )
            details.append(f"{label} ({', '.join(said)})")
        text += (": " + "; ".join(details) + ".") if details else "."
    text += f" {n_flagged} of {n} training rows flagged ({n_flagged / n:.2%})."
    return text

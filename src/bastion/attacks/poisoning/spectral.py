"""Backdoored training rows found in a torch model's penultimate-layer activations.

A network trained on backdoored data learns the trigger as a strong feature: inside the
target class, poisoned rows form a separate direction (a cluster) of the representation that
feeds the last linear layer. Two detectors read it (MITRE ATLAS AML.T0020; OWASP ML02):

- **Spectral signatures** (Tran, Li and Madry, NeurIPS 2018): per given label, centre the
  activations, take the top right singular vector ``v`` and score each row by
  ``((r - mean) . v)^2``; the top ``1.5 * rate`` share of each class is flagged, ``rate``
  being the expected share of poison inside a poisoned class (the paper's ``eps``). Clean
  classes lose rows too: the paper removes them and retrains, so precision is not its aim.
  ``details["classes"]`` gives each class's spectral gap ``s1 / s2``, larger where one
  direction dominates. The single direction assumes the poison comes from one source
  class; on small networks the poisoned rows keep much of their source class's features,
  and ``n_directions=None`` (all directions: distance to the class centroid) ranks them
  better (measured on a digits MLP with all-to-one backdoors: within-class ROC-AUC
  0.93-1.0 against 0.43-0.93 for the top direction).
- **Activation clustering** (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks
  by Activation Clustering", SafeAI 2019): per given label, project the activations on their
  first 10 principal components and split them with k-means; a cluster holding at most
  ``size_threshold`` of its class, from a split whose silhouette score is at least
  ``min_silhouette``, is a *candidate*. Clean classes with two natural modes (two ways of
  writing a digit) split the same way, so the paper's rule alone (``presence=None``: 2-means,
  ``size_threshold`` 0.35) over-flags: on a digits MLP with a 3% one-to-one backdoor (1 -> 7)
  it flags 2 to 6 of 10 classes at 12-52% precision, and 1 to 7 classes of a model trained
  on clean digits. A *presence test* decides which candidates are poison:

  - ``reclassification`` (the paper's exclusionary reclassification): a classifier fitted on
    every row except the cluster (a standardized logistic regression on the inputs, or the
    user's ``reclassifier``, e.g. the network's own retraining) classifies the cluster; a
    cluster most of whose rows keep their given label is a legitimate mode. Poisoned rows
    leave their label, but so do natural modes that resemble another class (digits 1 and 9):
    alone it flags 2 to 4 classes of every clean digits model.
  - ``transfer``: a backdoor is a shortcut, a few input features that send any input to the
    target class. The cluster's most distinctive features are copied onto rows of other
    classes; the share the model then sends to the cluster's label, minus the same share for
    the rest of the class, is the *lift* (at least ``min_presence``, 0.5, for poison). A
    natural mode's features do not decide the class on their own; but in low-dimensional
    tabular data an extreme subgroup's features can (breast cancer: 2 of 6 clean models).
  - ``both`` (default): a shortcut *and* rows that leave their label. Measured: on the
    digits MLP above it flags exactly the poisoned class in 8 of 8 seeds (recall 1.0,
    precision 0.66-0.96) and no class in 10 of 10 clean models; a 5% all-to-one backdoor in
    a breast-cancer MLP is found in 6 of 6 seeds (recall 1.0) and no class of 6 clean
    models, nor of clean wine or digits models, is flagged. A trigger that fires only on its
    source class (one-to-one, with values inside the data's range) transfers weakly to the
    other classes taken together, so the lift on each other class alone counts too, past a
    higher bar (0.9: a natural mode often moves most rows of its one look-alike class).
    Measured on POI002's default one-to-one trigger (3%, values at the data's maximum): a
    digits MLP's backdoor (1 -> 7) found in 6 of 6 runs, against 3 of 6 on all classes
    together; a wider MLP's (3 -> 8), tried once the bar was set, in 3 of 4 against 0 of 4;
    no class flagged in those 10 clean models. A weakly learned all-to-one backdoor (15
    epochs) was found in 2 of 6.

  With a presence test each class is split for k = 2 and 3 (``max_clusters``: poison from
  several source classes often hides from a 2-way split) and ``size_threshold`` is 0.5.
  Flagged rows are the poisoned clusters plus rows of the same class that carry the
  cluster's out-of-range feature values (poison the split left elsewhere); those are also
  kept out of the reclassifier's fit, since a handful of them teaches the trigger again.
  Each class's cluster share, silhouette and both tests' results are in ``details``.

The model must be the one trained on the data being inspected. torch is imported lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from bastion._deadline import stop_at_deadline
from bastion._names import known_names
from bastion._optional import require
from bastion.attacks.budget import report_stage
from bastion.attacks.poisoning._common import (
    as_float_matrix,
    check_rate,
    encode_labels,
    finite_rows,
    jsonable,
    label_array,
)
from bastion.attacks.poisoning._training import TrainFn
from bastion.attacks.poisoning.detect import LabelIssues, default_estimator
from bastion.exceptions import ConfigError, DataError, ModelError

__all__ = [
    "PRESENCE_TESTS",
    "Presence",
    "activation_clustering",
    "penultimate_activations",
    "spectral_signatures",
]

Presence = Literal["both", "transfer", "reclassification"]
# a class's share of transferred rows is judged on at least this many of its sampled rows
_MIN_SOURCE_ROWS = 30
# the lift on one source class alone that judges a shortcut (digits MLPs, 6 clean and 6
# one-to-one backdoored: natural modes reached 0.58-0.81 on their look-alike class, the
# backdoors 0.98-1.0 on their source class)
_SOURCE_MIN_LIFT = 0.9
# rows of a class past which a split's silhouette is estimated on a sample of them
_SILHOUETTE_ROWS = 5_000
PRESENCE_TESTS: tuple[str, ...] = ("both", "transfer", "reclassification")


def penultimate_activations(
    model: Any, X: Any, *, layer: str | None = None, batch_size: int = 1024
) -> np.ndarray:
    """The input of the model's last ``nn.Linear`` layer (or of ``layer``), one row per row.

    Parameters:
        model: a :class:`~bastion.models.torch.TorchAdapter` (its ``module``, device and
            input shape are used) or a ``torch.nn.Module``.
        X: rows (array or DataFrame); reshaped to the adapter's ``input_shape``.
        layer: name of the submodule whose input is captured (``dict(module.named_modules())``
            keys); default the last ``nn.Linear`` in registration order.
        batch_size: rows per forward pass.

    Returns:
        Activations, shape (rows, features), float64.

    Raises:
        ModelError: not a torch model, no ``nn.Linear`` layer, an unknown ``layer``, or a
            layer that never runs (``torch.export`` programs).

    Example::

        >>> acts = penultimate_activations(adapter, X_train)  # doctest: +SKIP
    """
    torch = require("torch", "spectral signatures and activation clustering")
    module, device, input_shape = _unwrap(model, torch)
    named = dict(module.named_modules())
    if layer is None:
        linears = [name for name, m in named.items() if isinstance(m, torch.nn.Linear)]
        if not linears and isinstance(module, torch.fx.GraphModule):
            # an exported program keeps its weights in plain modules, not its layers: "no
            # Linear layer, name one" misled, and named none it has (a review)
            raise ModelError(
                "the model is a traced or exported graph (a torch.export .pt2 program keeps "
                "its weights but not its layers): load it as module:factory with safetensors "
                "weights (--factory on the command line, model.factory in a policy) to read "
                "its activations"
            )
        if not linears:
            raise ModelError(
                "the model has no torch.nn.Linear layer; name the layer whose input to read "
                "with layer="
            )
        layer = linears[-1]
    if layer not in named:
        names = [n for n in named if n]
        raise ModelError(
            f"layer {layer!r} is not a submodule of the model; "
            f"{known_names(str(layer), names, noun='submodules')}"
        )
    rows = finite_rows(X, "reading the model's activations")
    if not rows.flags.writeable:
        # a read-only view (pandas copy-on-write): torch shares a CPU array and warns that
        # it cannot honour the flag
        rows = rows.copy()
    captured: list[Any] = []

    def hook(_module: Any, inputs: tuple[Any, ...]) -> None:
        captured.append(inputs[0].detach().reshape(inputs[0].shape[0], -1).float().cpu())

    from bastion.models.torch import eval_mode, module_dtype

    dtype = module_dtype(module)  # a float64 module takes float64 rows, as the adapter sends

    handle = named[layer].register_forward_pre_hook(hook)
    try:
        with eval_mode(module), torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                batch = torch.as_tensor(rows[start : start + batch_size], device=device)
                if dtype is not None:
                    batch = batch.to(dtype)
                if input_shape is not None:
                    batch = batch.reshape((batch.shape[0], *input_shape))
                module(batch)
    finally:
        handle.remove()
    if not captured:
        if len(rows):
            raise ModelError(
                f"layer {layer!r} never ran in the forward pass (a torch.export program keeps "
                "its layers as parameter holders it does not call); load the model as a "
                "module, e.g. safetensors weights with a factory"
            )
        return np.zeros((0, 0))
    return np.asarray(torch.cat(captured).numpy(), dtype=np.float64)


def _top_directions(centred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``max(k, 2)`` largest singular values of ``centred`` (rows, features), largest
    first, and each row's projection on their right singular vectors (rows, k or more; up
    to sign), from the eigenvectors of the smaller of its two Gram matrices: the rows'
    (where the row's projection on v_j is s_j times its entry of u_j) or the features'. A
    full SVD of 3,000 rows of 8,192 activations took 33 s and 1.1 GiB (from a review);
    these need the top few eigenpairs only. A Gram matrix squares the singular values, so a
    second one below about 1e-7 of the first loses its digits: a spectral gap past 1e7 is
    only known to be that large."""
    from scipy.linalg import eigh

    m, d = centred.shape
    size = min(m, d)
    want = min(max(k, 2), size)
    gram = centred @ centred.T if m <= d else centred.T @ centred
    values, vectors = eigh(gram, subset_by_index=[size - want, size - 1])
    values, vectors = values[::-1], vectors[:, ::-1]  # largest first
    singular = np.sqrt(np.clip(values, 0.0, None))
    projections = vectors * singular if m <= d else centred @ vectors
    return singular, projections


def spectral_signatures(
    model: Any,
    X: Any,
    y: Any,
    *,
    rate: float = 0.1,
    layer: str | None = None,
    n_directions: int | None = 1,
    activations: np.ndarray | None = None,
) -> LabelIssues:
    """Flag rows whose activations align with their class's top singular direction.

    Parameters:
        model: the torch model trained on ``X``, ``y`` (ignored when ``activations`` given).
        X, y: training rows and their given labels.
        rate: expected share of poisoned rows in a poisoned class; ``ceil(1.5 * rate *
            rows of the class)`` rows of every class are flagged (the paper's rule).
        layer: see :func:`penultimate_activations`.
        n_directions: top singular directions whose squared projections are summed (1: the
            paper; None: all, the squared distance to the class centroid).
        activations: precomputed activations (rows, features).

    Returns:
        :class:`LabelIssues` with ``method="spectral_signatures"``; scores are the outlier
        scores divided by their class's median (comparable across classes).

    Raises:
        ConfigError: ``rate`` outside (0, 1) or ``n_directions`` below 1.
        DataError: activations and labels disagree in length.

    Example::

        >>> issues = spectral_signatures(adapter, X_train, y_train, rate=0.05)  # doctest: +SKIP
    """
    rate = check_rate(rate)
    if n_directions is not None and n_directions < 1:
        raise ConfigError(f"n_directions must be >= 1 or None; received {n_directions}")
    acts = _activations(model, X, activations, layer)
    classes, labels = encode_labels(y)
    if len(labels) != len(acts):
        raise DataError(f"{len(acts)} activation rows but {len(labels)} labels")
    scores = np.zeros(len(labels))
    flagged: list[np.ndarray] = []
    per_class: dict[str, dict[str, float | int]] = {}
    for c, value in enumerate(classes):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 2:
            continue
        stage = f"spectral signatures: class {c + 1} of {len(classes)}"
        stop_at_deadline(stage)  # no queries: the time budget
        report_stage(stage)
        centred = acts[rows] - acts[rows].mean(axis=0)
        singular, projections = _top_directions(centred, n_directions or 1)
        if n_directions is None:
            raw = (centred**2).sum(axis=1)
        else:
            raw = (projections[:, :n_directions] ** 2).sum(axis=1)
        median = float(np.median(raw))
        scores[rows] = raw / median if median > 0 else raw
        # rounded first: 1.5 * 0.1 * 20 is 3.0000000000000004 in floats, and ceil made it 4
        m = min(len(rows), math.ceil(round(1.5 * rate * len(rows), 9)))
        flagged.append(rows[np.argsort(-raw, kind="stable")[:m]])
        gap = float(singular[0] / singular[1]) if len(singular) > 1 and singular[1] > 0 else 0.0
        per_class[str(jsonable(value))] = {"spectral_gap": gap, "flagged": m}
    chosen = np.concatenate(flagged) if flagged else np.zeros(0, dtype=np.intp)
    order = np.lexsort((chosen, -scores[chosen]))
    return LabelIssues(
        method="spectral_signatures",
        flagged=chosen[order].astype(np.intp),
        scores=scores,
        details={"rate": rate, "n_directions": n_directions, "classes": per_class},
    )


def activation_clustering(
    model: Any,
    X: Any,
    y: Any,
    *,
    layer: str | None = None,
    n_components: int = 10,
    size_threshold: float | None = None,
    min_silhouette: float = 0.1,
    max_clusters: int | None = None,
    presence: Presence | None = "both",
    min_presence: float = 0.5,
    n_transfer_features: int | None = None,
    max_transfer_rows: int = 2000,
    reclassifier: TrainFn | None = None,
    seed: int = 0,
    activations: np.ndarray | None = None,
) -> LabelIssues:
    """Flag the well-separated clusters of a class whose presence test says poison.

    Parameters:
        model: the torch model trained on ``X``, ``y``. It gives the activations (unless
            ``activations`` are given) and, for the presence test, predictions: anything
            with ``predict`` (a :class:`~bastion.models.torch.TorchAdapter`), or a bare
            ``torch.nn.Module`` whose output columns are the labels 0..k-1.
        X, y: training rows and their given labels.
        layer: see :func:`penultimate_activations`.
        n_components: principal components kept before clustering (the paper uses 10).
        size_threshold: largest share of its class a candidate cluster may hold; default
            0.5 with a presence test, which judges each candidate, and the paper's 0.35
            without one (a 5% all-to-one backdoor can make up a third of its target class).
        min_silhouette: smallest silhouette score of a split whose clusters are candidates.
        max_clusters: each class is split by k-means for k = 2 .. ``max_clusters``; default
            3 with a presence test (poison drawn from several source classes often hides
            from a 2-way split), 2 (the paper) without.
        presence: how candidates are judged (see the module docstring): ``both`` (default:
            transfer lift at least ``min_presence`` and most of the cluster reclassified
            away from its label), ``transfer``, ``reclassification``, or ``None`` (every
            candidate is flagged: the paper's size and silhouette rule). The reported
            candidate of each class (a poisoned one, else the one with the largest lift)
            carries both tests' results.
        min_presence: smallest transfer lift that judges a cluster a shortcut.
        n_transfer_features: features copied by the transfer test; default
            ``max(3, ceil(5% of the features))``.
        max_transfer_rows: rows of other classes stamped per transfer (a seeded sample).
        reclassifier: ``train(X, y) -> model with predict`` for the reclassification test
            (e.g. :func:`~bastion.attacks.poisoning._training.resolve_trainer` of the
            model, which retrains the network as the paper does); default a standardized
            logistic regression on ``X``.
        seed: k-means initialisation, the transfer sample and the default reclassifier.
        activations: precomputed activations (rows, features).

    Returns:
        :class:`LabelIssues` with ``method="activation_clustering"``; a row's score is
        ``1 - share of its class in its 2-means cluster`` (small clusters score high).
        Flagged rows are the clusters judged poisoned plus the rows of the same class that
        carry such a cluster's out-of-range feature values (poison that the split left in
        another cluster); rows carrying those values come first. ``details["classes"]``
        gives each class's 2-means cluster share and silhouette, its number of candidates
        and, for the reported candidate, its share and both tests' results;
        ``details["suspect_classes"]`` lists the classes judged poisoned.

    Raises:
        ConfigError: ``size_threshold`` outside (0, 0.5], ``n_components`` < 1,
            ``max_clusters`` < 2, an unknown ``presence``, ``min_presence`` outside (0, 1],
            or a presence test without the model and ``X``.
        DataError: activations, rows and labels disagree in length.

    Example::

        >>> issues = activation_clustering(adapter, X_train, y_train)  # doctest: +SKIP
        >>> issues.details["suspect_classes"]  # doctest: +SKIP
        [7]
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # sklearn dep

    if presence is not None and presence not in PRESENCE_TESTS:
        raise ConfigError(
            f"presence must be one of {', '.join(PRESENCE_TESTS)} or None; received {presence!r}"
        )
    if size_threshold is None:
        size_threshold = 0.35 if presence is None else 0.5
    if max_clusters is None:
        max_clusters = 2 if presence is None else 3
    if not 0 < size_threshold <= 0.5:
        raise ConfigError(f"size_threshold must be in (0, 0.5]; received {size_threshold}")
    if n_components < 1:
        raise ConfigError(f"n_components must be >= 1; received {n_components}")
    if max_clusters < 2:
        raise ConfigError(f"max_clusters must be >= 2; received {max_clusters}")
    if not 0 < min_presence <= 1:
        raise ConfigError(f"min_presence must be in (0, 1]; received {min_presence}")
    if presence is not None and (model is None or X is None):
        raise ConfigError(
            "the presence test needs the model and the training rows X; pass presence=None "
            "to cluster precomputed activations alone"
        )
    acts = _activations(model, X, activations, layer)
    classes, labels = encode_labels(y)
    if len(labels) != len(acts):
        raise DataError(f"{len(acts)} activation rows but {len(labels)} labels")
    tester = None
    if presence is not None:
        tester = _PresenceTests(
            model,
            X,
            label_array(y),
            labels,
            n_features=n_transfer_features,
            max_rows=max_transfer_rows,
            reclassifier=reclassifier,
            seed=seed,
            # the reclassification test alone never reads the model's answers
            reads_answers=presence != "reclassification",
        )
    # many small fits (PCA, k-means, logistic regressions): BLAS and OpenMP threads cost more
    # than they save there (digits, 2 cores: 4.2 s with threads, 0.5 s without)
    with threadpool_limits(limits=1):
        return _cluster_classes(
            acts,
            classes,
            labels,
            tester,
            n_components=n_components,
            size_threshold=size_threshold,
            min_silhouette=min_silhouette,
            max_clusters=max_clusters,
            presence=presence,
            min_presence=min_presence,
            seed=seed,
        )


def _cluster_classes(
    acts: np.ndarray,
    classes: np.ndarray,
    labels: np.ndarray,
    tester: _PresenceTests | None,
    *,
    n_components: int,
    size_threshold: float,
    min_silhouette: float,
    max_clusters: int,
    presence: Presence | None,
    min_presence: float,
    seed: int,
) -> LabelIssues:
    """The body of :func:`activation_clustering`, after validation."""
    from sklearn.decomposition import PCA

    scores = np.zeros(len(labels))
    flagged: list[np.ndarray] = []
    carrying: list[np.ndarray] = []  # flagged rows with the cluster's out-of-range values
    suspects: list[Any] = []
    per_class: dict[str, dict[str, Any]] = {}
    for c, value in enumerate(classes):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 4:
            continue
        stage = f"activation clustering: class {c + 1} of {len(classes)}"
        stop_at_deadline(stage)  # clustering spends no queries: the time budget
        report_stage(stage)
        block = acts[rows]
        if np.allclose(block, block[0]):
            continue  # identical activations: nothing to split
        dims = min(n_components, block.shape[1], len(rows) - 1)
        reduced = PCA(n_components=dims, random_state=seed).fit_transform(block)
        splits = _splits(reduced, max_clusters, seed)
        if not splits:
            continue
        assign, silhouette = splits[0]  # the paper's 2-way split: scores and reported shape
        sizes = np.bincount(assign, minlength=2)
        scores[rows] = 1.0 - sizes[assign] / len(rows)
        candidates = [
            rows[split == j]
            for split, quality in splits
            if quality >= min_silhouette
            for j in range(int(split.max()) + 1)
            if 0 < np.sum(split == j) <= size_threshold * len(rows)
        ]
        entry: dict[str, Any] = {
            "small_cluster_share": float(sizes.min() / len(rows)),
            "silhouette": silhouette,
            "candidate": bool(candidates),
            "n_candidates": len(candidates),
        }
        poisoned: list[np.ndarray] = []
        if tester is None or presence is None:
            poisoned = candidates
        elif candidates:
            judged = tester.judge(c, value, rows, candidates, presence, min_presence)
            hits = [j for j in judged if j.poisoned(presence, min_presence)]
            poisoned = [np.union1d(j.cluster, j.marked) for j in hits]
            carrying.extend(j.marked for j in hits)
            reported = judged[0]
            entry["candidate_share"] = len(reported.cluster) / len(rows)
            entry.update(reported.details)
        entry["flagged"] = bool(poisoned)
        per_class[str(jsonable(value))] = entry
        if poisoned:
            suspects.append(jsonable(value))
            rows_flagged = np.unique(np.concatenate(poisoned))
            flagged.append(rows_flagged)
            scores[rows_flagged] = np.maximum(scores[rows_flagged], scores[rows].max())
    chosen = np.concatenate(flagged) if flagged else np.zeros(0, dtype=np.intp)
    carriers = np.isin(chosen, np.concatenate(carrying)) if carrying else chosen < 0
    order = np.lexsort((chosen, -scores[chosen], ~carriers))
    return LabelIssues(
        method="activation_clustering",
        flagged=chosen[order].astype(np.intp),
        scores=scores,
        details={
            "size_threshold": size_threshold,
            "min_silhouette": min_silhouette,
            "max_clusters": max_clusters,
            "presence": presence,
            "min_presence": min_presence if presence is not None else None,
            "suspect_classes": suspects,
            "classes": per_class,
        },
    )


# -- internals ---------------------------------------------------------------------------------


def _unwrap(model: Any, torch: Any) -> tuple[Any, Any, tuple[int, ...] | None]:
    module = getattr(model, "module", model)
    if not isinstance(module, torch.nn.Module):
        raise ModelError(
            "spectral signatures and activation clustering need a torch model (a TorchAdapter "
            f"or a torch.nn.Module); received {type(model).__name__}"
        )
    device = getattr(model, "device", None)
    if device is None:
        params = list(module.parameters())
        device = params[0].device if params else torch.device("cpu")
    shape = getattr(model, "input_shape", None)
    return module, device, None if shape is None else tuple(int(d) for d in shape)


def _activations(model: Any, X: Any, activations: np.ndarray | None, layer: str | None) -> Any:
    if activations is not None:
        acts = np.asarray(activations, dtype=np.float64)
        if acts.ndim != 2:
            raise DataError(f"activations must be (rows, features); received {acts.shape}")
        where = "the activations given"
    else:
        acts = penultimate_activations(model, X, layer=layer)
        where = f"the model's activations (layer {layer or 'the last Linear'})"
    # finite inputs can still give NaN activations (weights of a diverged training run): an
    # SVD or k-means error from inside numpy or scikit-learn would not say so
    bad = ~np.isfinite(acts).all(axis=1)
    if bad.any():
        raise DataError(
            f"{where} hold NaN or infinite values in {int(bad.sum())} of {len(acts)} rows "
            f"(the first: row {int(np.argmax(bad))}); does the model hold NaN weights?"
        )
    return acts


def _splits(reduced: np.ndarray, max_clusters: int, seed: int) -> list[tuple[np.ndarray, float]]:
    """k-means assignments and silhouettes for k = 2 .. max_clusters (degenerate ones dropped)."""
    from sklearn.cluster import KMeans

    out: list[tuple[np.ndarray, float]] = []
    for k in range(2, max_clusters + 1):
        if k >= len(reduced):
            break
        assign = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(reduced)
        if len(np.unique(assign)) < k:
            if k == 2:
                return []  # identical points: no split at all
            continue
        out.append((assign, _silhouette(reduced, assign, seed)))
    return out


def _silhouette(reduced: np.ndarray, assign: np.ndarray, seed: int) -> float:
    """The split's silhouette score. It costs time in the square of the rows (4.7 s for
    20,000 rows, per class and k): past ``_SILHOUETTE_ROWS`` it is the mean over a seeded
    sample of rows (0.24 s at 20,000 rows, within 0.001 there), to which every row of a
    cluster the sample missed is added (a few rows: a backdoor's cluster can be that small,
    and a sample with one cluster has no silhouette at all)."""
    from sklearn.metrics import silhouette_score

    if len(reduced) > _SILHOUETTE_ROWS:
        rng = np.random.default_rng(seed)
        take = rng.choice(len(reduced), size=_SILHOUETTE_ROWS, replace=False)
        missed = np.setdiff1d(assign, assign[take])
        if missed.size:
            take = np.concatenate([take, np.flatnonzero(np.isin(assign, missed))])
        reduced, assign = reduced[take], assign[take]
    return float(silhouette_score(reduced, assign))


@dataclass(frozen=True)
class _Judged:
    """One candidate cluster and what the presence tests said about it."""

    cluster: np.ndarray
    marked: np.ndarray
    transfer_lift: float
    own_share: float | None  # None: not reclassified (yet)
    details: dict[str, Any]

    def poisoned(self, test: Presence, min_lift: float) -> bool:
        """The verdict of ``test``: ``both`` needs the transfer and the reclassification."""
        shortcut = self.transfer_lift >= min_lift
        # Chen et al.: a cluster most of whose rows keep their given label without it is a
        # legitimate mode of its class
        elsewhere = self.own_share is not None and self.own_share < 0.5
        if test == "transfer":
            return shortcut
        if test == "reclassification":
            return elsewhere
        return shortcut and elsewhere


class _PresenceTests:
    """The transfer and exclusionary-reclassification tests of candidate clusters.

    Transfer: a backdoor is a shortcut, a few input features that make the model answer the
    target class whatever the rest of the input says. The cluster's most distinctive features
    (median distance from the other classes' median, in their standard deviations floored
    at the median standard deviation, so a constant feature does not win by a hair) are set
    to the cluster's median values on a sample of rows of other classes; the share the model
    then sends to the cluster's label, minus the same share for the rest of the class (the
    control: a class's ordinary features move some rows too), is the *lift*. A clean mode (a
    second way of writing a digit) differs from the other classes in features that do not
    decide the class on their own: its lift stays small. The lift on each other class alone
    (30 sampled rows at least) counts where it reaches 0.9: a one-to-one trigger fires on
    its source class only.

    Reclassification (Chen et al.): a classifier fitted on every row except the cluster
    classifies the cluster; poisoned rows go to their true source class. Rows of the same
    class that carry the cluster's out-of-range values (beyond the other classes' 1st-99th
    percentiles on a transferred feature) are left out of that fit as well: a handful of
    poisoned rows that the split put in another cluster is enough to teach the trigger again
    and send the cluster back to its given label.
    """

    def __init__(
        self,
        model: Any,
        X: Any,
        y: np.ndarray,
        labels: np.ndarray,
        *,
        n_features: int | None,
        max_rows: int,
        reclassifier: TrainFn | None,
        seed: int,
        reads_answers: bool = True,
    ) -> None:
        rows = as_float_matrix(X)
        if len(rows) != len(labels):
            raise DataError(f"X has {len(rows)} rows but y has {len(labels)} labels")
        d = rows.shape[1]
        k = max(3, math.ceil(0.05 * d)) if n_features is None else n_features
        if k < 1:
            raise ConfigError(f"n_transfer_features must be >= 1; received {n_features}")
        if max_rows < 1:
            raise ConfigError(f"max_transfer_rows must be >= 1; received {max_rows}")
        self.rows = rows
        self.y = y
        self.labels = labels
        self.k = min(k, d)
        self.max_rows = max_rows
        # rows go back to the model in X's own shape (images stay images)
        self.row_shape = tuple(np.shape(X)[1:]) if np.ndim(X) > 2 else ()
        self.predict = _predictor(model, self.row_shape)
        if reads_answers:
            self._refuse_foreign_labels()
        self.seed = seed
        self.train: TrainFn = (
            reclassifier
            if reclassifier is not None
            else lambda X_fit, y_fit: default_estimator(seed).fit(X_fit, y_fit)
        )

    def _refuse_foreign_labels(self, rows: int = 512) -> None:
        """The test compares the model's predictions with the labels ``y``: where none of
        its answers is a label (labels 10..19 for a model answering 0..9, a bare module's
        columns beside text labels), no stamped row ever reads as the target and every
        class looked clean (from a review: a backdoored digits MLP, labels + 10, flagged
        nothing). Checked on the first ``rows`` rows, one query, sent as the test sends its
        stamped rows (flat float32 rows; images went in X's own shape and dtype, which a
        model of flat rows refused: a review)."""
        first = self.rows[:rows].astype(np.float32)
        answers = pd.unique(pd.Series(np.asarray(self.predict(first)).reshape(-1)))
        labels = pd.unique(pd.Series(self.y))
        if not set(answers.tolist()) & set(labels.tolist()):
            raise DataError(
                f"the presence test compares the model's predictions with y, but none of its "
                f"answers on the first {len(first)} rows ({answers.tolist()[:10]}) is a label "
                f"of y ({labels.tolist()[:10]}): give y as the model names its classes"
            )

    def judge(
        self,
        c: int,
        value: Any,
        rows: np.ndarray,
        candidates: list[np.ndarray],
        presence: Presence,
        min_lift: float,
    ) -> list[_Judged]:
        """Every candidate of class ``c``: poisoned ones first, then by transfer lift.

        The transfer test (two batches of predictions) runs on every candidate; the
        reclassification test (a fit) where it can change the verdict, and on the first
        candidate, the one reported.
        """
        others = np.flatnonzero(self.labels != c)
        reference = self.rows[others]
        spread = reference.std(axis=0)
        positive = spread[spread > 0]
        spread = np.maximum(spread, float(np.median(positive)) if len(positive) else 1.0)
        centre = np.median(reference, axis=0)
        low, high = np.quantile(reference, [0.01, 0.99], axis=0)
        sample = others
        if len(others) > self.max_rows:
            rng = np.random.default_rng([self.seed, c])
            sample = np.sort(rng.choice(others, size=self.max_rows, replace=False))
        base = self.rows[sample]
        groups = self._source_groups(self.labels[sample], self.y[sample])
        judged: list[_Judged] = []
        for cluster in candidates:
            rest = np.setdiff1d(rows, cluster)
            features, values, hits = self._transfer(cluster, centre, spread, base, value)
            control_hits = (
                self._transfer(rest, centre, spread, base, value)[2]
                if len(rest)
                else np.zeros(len(base), dtype=bool)
            )
            lift = float(hits.mean() - control_hits.mean())
            # a trigger learned from one source class may fire on that class only (a
            # one-to-one backdoor): the largest lift on one other class alone counts too,
            # past a higher bar (one of ten classes often resembles the cluster's mode)
            source, source_lift = None, -np.inf
            for label, members in groups:
                gain = float(hits[members].mean() - control_hits[members].mean())
                if gain > source_lift:
                    source, source_lift = label, gain
            marked = self._marked(features, values, low[features], high[features], rows)
            details: dict[str, Any] = {
                "transfer_features": [int(j) for j in features],
                "transfer_rate": float(hits.mean()),
                "transfer_control_rate": float(control_hits.mean()),
                "transfer_lift": lift,
                "source_class": source,
                "source_lift": source_lift if source is not None else None,
                "n_carrying": len(marked),
            }
            judged.append(_Judged(cluster, marked, lift, None, details))
        bar = max(min_lift, _SOURCE_MIN_LIFT)
        for i, one in enumerate(judged):
            if one.transfer_lift < min_lift and (one.details["source_lift"] or -np.inf) >= bar:
                lift = float(one.details["source_lift"])
                details = {**one.details, "transfer_lift": lift, "lift_on": "source_class"}
                one = judged[i] = replace(one, transfer_lift=lift, details=details)
            # a fit per candidate only where it can change the verdict
            if presence == "reclassification" or (
                presence == "both" and one.transfer_lift >= min_lift
            ):
                judged[i] = self._reclassified(one, value)
        judged.sort(key=lambda j: (not j.poisoned(presence, min_lift), -j.transfer_lift))
        if judged[0].own_share is None:
            judged[0] = self._reclassified(judged[0], value)  # reported: both tests
        return judged

    def _transfer(
        self,
        group: np.ndarray,
        centre: np.ndarray,
        spread: np.ndarray,
        base: np.ndarray,
        value: Any,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        median = np.median(self.rows[group], axis=0)
        distinct = np.abs(median - centre) / spread
        features = np.argsort(-distinct, kind="stable")[: self.k]
        stamped = base.copy()
        stamped[:, features] = median[features]
        predicted = np.asarray(self.predict(stamped.astype(np.float32)))
        return features, median[features], np.asarray(predicted == value)

    @staticmethod
    def _source_groups(codes: np.ndarray, labels: np.ndarray) -> list[tuple[Any, np.ndarray]]:
        """The sampled rows of each other class with enough rows to measure a share, by the
        class's label (``codes`` are the encoded labels)."""
        _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        groups = []
        for k in np.flatnonzero(counts >= _MIN_SOURCE_ROWS):
            members = np.flatnonzero(inverse == k)
            groups.append((jsonable(labels[members[0]]), members))
        return groups

    def _marked(
        self,
        features: np.ndarray,
        values: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
        rows: np.ndarray,
    ) -> np.ndarray:
        """Rows of the class that carry every out-of-range value of the cluster."""
        above = values > high
        below = values < low
        if not (above.any() or below.any()):
            return np.zeros(0, dtype=np.intp)
        block = self.rows[np.ix_(rows, features)]
        carries = np.all(np.where(above, block > high, True), axis=1) & np.all(
            np.where(below, block < low, True), axis=1
        )
        return np.asarray(rows[carries], dtype=np.intp)

    def _reclassified(self, judged: _Judged, value: Any) -> _Judged:
        keep = np.ones(len(self.labels), dtype=bool)
        keep[judged.cluster] = False
        keep[judged.marked] = False
        own: float | None = None
        to: Any = None
        to_share: float | None = None
        if len(np.unique(self.labels[keep])) >= 2:
            fitted = self.train(self.rows[keep], self.y[keep])
            predicted = np.asarray(fitted.predict(self.rows[judged.cluster]))
            own = float(np.mean(predicted == value))
            moved = predicted[predicted != value]
            to_share = 0.0
            if len(moved):
                names, counts = np.unique(moved, return_counts=True)
                top = int(np.argmax(counts))
                to, to_share = jsonable(names[top]), float(counts[top] / len(judged.cluster))
        details = {
            **judged.details,
            "reclassified_own_share": own,
            "reclassified_to": to,
            "reclassified_to_share": to_share,
        }
        return replace(judged, own_share=own, details=details)


def _predictor(model: Any, row_shape: tuple[int, ...] = ()) -> Any:
    """``predict`` of the model; a bare torch module is wrapped (labels = output columns),
    taking rows of ``row_shape`` (flat rows of images are reshaped for it)."""
    predict = getattr(model, "predict", None)
    if callable(predict):
        torch_rows = getattr(model, "module", None) is not None
        if len(row_shape) >= 2 and torch_rows and getattr(model, "input_shape", None) is None:
            # a torch adapter without input_shape: its module takes the rows as X holds them
            return lambda rows: predict(np.asarray(rows).reshape(len(rows), *row_shape))
        return predict
    from bastion.models.torch import TorchAdapter, module_device

    # where the module is (a CUDA module must not be moved back to the CPU in place)
    device = module_device(model) or "cpu"
    return TorchAdapter(model, device=device, input_shape=row_shape or None).predict

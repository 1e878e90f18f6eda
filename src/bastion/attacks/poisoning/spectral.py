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
  first 10 principal components and split them with 2-means; the smaller cluster is flagged
  when it holds at most ``size_threshold`` (0.35) of the class and the split's silhouette
  score is at least ``min_silhouette`` (0.1, which drops only the weakest splits). Clean
  classes with two natural modes (two ways of writing a digit) split the same way and get
  flagged too: on the digits MLP of the tests it finds 94% of the poison at 26% precision,
  flagging 4 of 10 classes. Each class's cluster share and silhouette are in ``details``
  for a reviewer to judge.

The model must be the one trained on the data being inspected. torch is imported lazily.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bastion._optional import require
from bastion.attacks.poisoning._common import check_rate, encode_labels, jsonable
from bastion.attacks.poisoning.detect import LabelIssues
from bastion.exceptions import ConfigError, DataError, ModelError

__all__ = ["activation_clustering", "penultimate_activations", "spectral_signatures"]


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
        ModelError: not a torch model, no ``nn.Linear`` layer, or an unknown ``layer``.

    Example::

        >>> acts = penultimate_activations(adapter, X_train)  # doctest: +SKIP
    """
    torch = require("torch", "spectral signatures and activation clustering")
    module, device, input_shape = _unwrap(model, torch)
    named = dict(module.named_modules())
    if layer is None:
        linears = [name for name, m in named.items() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ModelError(
                "the model has no torch.nn.Linear layer; name the layer whose input to read "
                "with layer="
            )
        layer = linears[-1]
    if layer not in named:
        known = ", ".join(n for n in list(named)[:20] if n)
        raise ModelError(f"layer {layer!r} is not a submodule of the model; known: {known}")
    rows = X.to_numpy(dtype=np.float32) if isinstance(X, pd.DataFrame) else np.asarray(X)
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    captured: list[Any] = []

    def hook(_module: Any, inputs: tuple[Any, ...]) -> None:
        captured.append(inputs[0].detach().reshape(inputs[0].shape[0], -1).float().cpu())

    handle = named[layer].register_forward_pre_hook(hook)
    was_training = bool(module.training)
    try:
        module.eval()
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                batch = torch.as_tensor(rows[start : start + batch_size], device=device)
                if input_shape is not None:
                    batch = batch.reshape((batch.shape[0], *input_shape))
                module(batch)
    finally:
        handle.remove()
        module.train(was_training)
    if not captured:
        return np.zeros((0, 0))
    return np.asarray(torch.cat(captured).numpy(), dtype=np.float64)


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
        centred = acts[rows] - acts[rows].mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        if n_directions is None:
            raw = (centred**2).sum(axis=1)
        else:
            raw = ((centred @ vt[:n_directions].T) ** 2).sum(axis=1)
        median = float(np.median(raw))
        scores[rows] = raw / median if median > 0 else raw
        m = min(len(rows), math.ceil(1.5 * rate * len(rows)))
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
    size_threshold: float = 0.35,
    min_silhouette: float = 0.1,
    seed: int = 0,
    activations: np.ndarray | None = None,
) -> LabelIssues:
    """Flag the small, well-separated cluster of each class's activations.

    Parameters:
        model: the torch model trained on ``X``, ``y`` (ignored when ``activations`` given).
        X, y: training rows and their given labels.
        layer: see :func:`penultimate_activations`.
        n_components: principal components kept before clustering (the paper uses 10).
        size_threshold: largest share of its class a flagged cluster may hold.
        min_silhouette: smallest silhouette score of a class split that is flagged.
        seed: k-means initialisation.
        activations: precomputed activations (rows, features).

    Returns:
        :class:`LabelIssues` with ``method="activation_clustering"``; a row's score is
        ``1 - share of its class in its cluster`` (small clusters score high);
        ``details["classes"]`` gives each class's cluster share and silhouette.

    Raises:
        ConfigError: ``size_threshold`` outside (0, 0.5] or ``n_components`` < 1.

    Example::

        >>> issues = activation_clustering(adapter, X_train, y_train)  # doctest: +SKIP
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    if not 0 < size_threshold <= 0.5:
        raise ConfigError(f"size_threshold must be in (0, 0.5]; received {size_threshold}")
    if n_components < 1:
        raise ConfigError(f"n_components must be >= 1; received {n_components}")
    acts = _activations(model, X, activations, layer)
    classes, labels = encode_labels(y)
    if len(labels) != len(acts):
        raise DataError(f"{len(acts)} activation rows but {len(labels)} labels")
    scores = np.zeros(len(labels))
    flagged: list[np.ndarray] = []
    per_class: dict[str, dict[str, float | bool]] = {}
    for c, value in enumerate(classes):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 4:
            continue
        block = acts[rows]
        dims = min(n_components, block.shape[1], len(rows) - 1)
        if np.allclose(block, block[0]):
            continue  # identical activations: nothing to split
        reduced = PCA(n_components=dims, random_state=seed).fit_transform(block)
        assign = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)
        sizes = np.bincount(assign, minlength=2)
        if sizes.min() == 0:
            continue
        small = int(np.argmin(sizes))
        share = float(sizes[small] / len(rows))
        silhouette = float(silhouette_score(reduced, assign))
        scores[rows] = 1.0 - sizes[assign] / len(rows)
        poisoned = share <= size_threshold and silhouette >= min_silhouette
        per_class[str(jsonable(value))] = {
            "small_cluster_share": share,
            "silhouette": silhouette,
            "flagged": poisoned,
        }
        if poisoned:
            flagged.append(rows[assign == small])
    chosen = np.concatenate(flagged) if flagged else np.zeros(0, dtype=np.intp)
    order = np.lexsort((chosen, -scores[chosen]))
    return LabelIssues(
        method="activation_clustering",
        flagged=chosen[order].astype(np.intp),
        scores=scores,
        details={
            "size_threshold": size_threshold,
            "min_silhouette": min_silhouette,
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
        return acts
    return penultimate_activations(model, X, layer=layer)

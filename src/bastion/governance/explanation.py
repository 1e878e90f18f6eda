"""Explanations for a model card: permutation importance, and a SHAP summary where shap exists.

Permutation importance (Breiman 2001; scikit-learn's ``permutation_importance``) measures how
much a score drops when one feature's values are shuffled across the rows of the test set,
which breaks that feature's link with the label while keeping its distribution. It needs
nothing but predictions, so it works for every :class:`~bastion.models.base.ModelAdapter`:
scikit-learn, torch, ONNX, a remote endpoint or a plain callable.

Definitions (scikit-learn's, so that the numbers agree with the peer everyone knows):

- ``baseline_score`` = score(y, model(X)) on the unshuffled test features;
- for feature j and repeat r, ``importance[j, r]`` = baseline_score - score(y, model(X with
  column j permuted)), the permutations drawn exactly as ``permutation_importance(...,
  random_state=seed)`` draws them (one ``RandomState(seed).randint(2**31)`` seed, then for each
  column a fresh ``RandomState`` from it whose in-place shuffles are applied cumulatively);
- ``mean`` and ``std`` (population, ddof 0) are taken over the repeats.

On a scikit-learn model and the same data the values therefore equal scikit-learn's to the last
bit (the tests assert it). The model sees every repeat of one feature in a single call (rows
stacked, up to :data:`MAX_ROWS_PER_CALL`), so a remote model answers ``n_features + 1``
requests rather than ``n_features * n_repeats + 1``; predictions are row-wise, so stacking
changes no number.

SHAP (Lundberg and Lee 2017) is computed only when the optional ``shap`` package is installed
(``pip install 'bastion[explain]'``): the mean absolute SHAP value per feature, from shap's
model-agnostic explainer over the model's probabilities (or labels), with a seeded background
sample. Without shap the card says it was not computed and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bastion.exceptions import ConfigError, DataError
from bastion.models.base import Capability

if TYPE_CHECKING:
    from bastion.data.dataset import Dataset
    from bastion.models.base import ModelAdapter

__all__ = [
    "MAX_ROWS_PER_CALL",
    "SCORINGS",
    "FeatureImportance",
    "PermutationImportance",
    "ShapSummary",
    "compute_permutation_importance",
    "compute_shap_summary",
]

MAX_ROWS_PER_CALL = 100_000
"""Rows sent to the model in one call while permuting; more repeats are split over calls."""

SCORINGS: tuple[str, ...] = ("accuracy", "balanced_accuracy")
"""Scores permutation importance can measure the drop of (label metrics: any adapter has them)."""


@dataclass(frozen=True)
class FeatureImportance:
    """The drop in score when one feature is shuffled: per repeat, mean and std over repeats."""

    feature: str
    mean: float
    std: float
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "mean": self.mean,
            "std": self.std,
            "values": list(self.values),
        }


@dataclass(frozen=True)
class PermutationImportance:
    """Permutation importance of every feature on one dataset, in the dataset's column order."""

    scoring: str
    baseline_score: float
    n_repeats: int
    seed: int
    dataset: str
    n_rows: int
    features: tuple[FeatureImportance, ...]

    def ranked(self) -> list[FeatureImportance]:
        """Features from most to least important (ties keep column order)."""
        return sorted(self.features, key=lambda f: -f.mean)

    @property
    def importances_mean(self) -> np.ndarray:
        return np.array([f.mean for f in self.features])

    @property
    def importances_std(self) -> np.ndarray:
        return np.array([f.std for f in self.features])

    @property
    def importances(self) -> np.ndarray:
        """Shape (n_features, n_repeats), as scikit-learn's ``importances``."""
        return np.array([f.values for f in self.features])

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "permutation_importance",
            "scoring": self.scoring,
            "baseline_score": self.baseline_score,
            "n_repeats": self.n_repeats,
            "seed": self.seed,
            "dataset": self.dataset,
            "n_rows": self.n_rows,
            "features": [f.to_dict() for f in self.features],
        }


@dataclass(frozen=True)
class ShapSummary:
    """Mean absolute SHAP value per feature over a sample of rows (dataset column order)."""

    mean_abs: tuple[tuple[str, float], ...]
    output: str
    n_rows: int
    n_background: int
    shap_version: str

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(self.mean_abs, key=lambda p: -p[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "shap",
            "output": self.output,
            "n_rows": self.n_rows,
            "n_background": self.n_background,
            "shap_version": self.shap_version,
            "mean_abs": [{"feature": f, "value": v} for f, v in self.mean_abs],
        }


# -- permutation importance -------------------------------------------------------------------


def _scorer(scoring: str) -> Callable[[np.ndarray, np.ndarray], float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    scorers: dict[str, Callable[..., Any]] = {
        "accuracy": accuracy_score,
        "balanced_accuracy": balanced_accuracy_score,
    }
    if scoring not in scorers:
        raise ConfigError(f"scoring must be one of {', '.join(SCORINGS)}; received {scoring!r}")
    metric = scorers[scoring]
    return lambda y_true, y_pred: float(metric(y_true, y_pred))


def _orders(n_rows: int, n_repeats: int, seed: int) -> list[np.ndarray]:
    """The row order of a permuted column after each repeat, drawn as scikit-learn draws it.

    scikit-learn shuffles an index array in place each repeat and applies it to the column as
    permuted so far, so repeat r sees ``original[o_r]`` with ``o_r = o_{r-1}[idx_r]``. Every
    column starts from the same seed, so the orders are the same for all columns.
    """
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    rng = np.random.RandomState(column_seed)
    idx = np.arange(n_rows)
    order = np.arange(n_rows)
    out = []
    for _ in range(n_repeats):
        rng.shuffle(idx)
        order = order[idx]
        out.append(order)
    return out


def _predict_stacked(model: ModelAdapter, frames: Sequence[pd.DataFrame]) -> list[np.ndarray]:
    """Predictions for each frame, sending as many frames per call as fit the row budget."""
    out: list[np.ndarray] = []
    n = len(frames[0])
    per_call = max(1, MAX_ROWS_PER_CALL // max(n, 1))
    for start in range(0, len(frames), per_call):
        batch = frames[start : start + per_call]
        pred = model.predict(pd.concat(batch, ignore_index=True) if len(batch) > 1 else batch[0])
        out.extend(pred[i * n : (i + 1) * n] for i in range(len(batch)))
    return out


def compute_permutation_importance(
    model: ModelAdapter,
    dataset: Dataset,
    *,
    n_repeats: int = 5,
    seed: int = 0,
    scoring: str = "accuracy",
) -> PermutationImportance:
    """Permutation importance of each feature of ``dataset`` for ``model``.

    Parameters
    ----------
    model:
        Any adapter; only ``predict`` is used.
    dataset:
        The evaluation data; needs a target column. The model's inputs are
        ``dataset.features`` (target and ``non_features`` excluded), as for every check.
    n_repeats:
        Shuffles per feature (at least 1).
    seed:
        Seed of the permutations; the same seed as scikit-learn's ``random_state`` gives the
        same permutations and so the same numbers.
    scoring:
        ``accuracy`` (scikit-learn's default for classifiers) or ``balanced_accuracy``.

    Returns
    -------
    PermutationImportance
        Baseline score and, per feature, the drop in score for every repeat.

    Raises
    ------
    ConfigError
        ``n_repeats`` is below 1 or ``scoring`` is unknown.
    DataError
        The dataset has no target column or no feature column.
    ModelError
        The model fails or returns malformed predictions.

    Example::

        imp = compute_permutation_importance(SklearnAdapter(clf), test, n_repeats=10, seed=0)
        imp.ranked()[0].feature  # the feature whose shuffling hurts accuracy most
    """
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, int) or n_repeats < 1:
        raise ConfigError(f"n_repeats must be an integer of at least 1; received {n_repeats!r}")
    score = _scorer(scoring)
    if dataset.target is None:
        raise DataError(
            f"dataset {dataset.name!r} has no target column; permutation importance "
            "measures a drop in score and needs labels"
        )
    X = dataset.features.reset_index(drop=True)
    if X.shape[1] == 0:
        raise DataError(f"dataset {dataset.name!r} has no feature column to permute")
    y = dataset.labels
    baseline = score(y, model.predict(X))
    orders = _orders(len(X), n_repeats, seed)
    scores = np.empty((X.shape[1], n_repeats))
    for j, column in enumerate(X.columns):
        values = X[column].to_numpy()
        frames = []
        for order in orders:
            frame = X.copy()
            frame[column] = values[order]
            frames.append(frame)
        for r, pred in enumerate(_predict_stacked(model, frames)):
            scores[j, r] = score(y, pred)
    # same arithmetic as scikit-learn's _create_importances_bunch, for bit-equal results
    importances = baseline - scores
    means, stds = np.mean(importances, axis=1), np.std(importances, axis=1)
    return PermutationImportance(
        scoring=scoring,
        baseline_score=baseline,
        n_repeats=n_repeats,
        seed=seed,
        dataset=dataset.name,
        n_rows=len(X),
        features=tuple(
            FeatureImportance(
                feature=str(column),
                mean=float(means[j]),
                std=float(stds[j]),
                values=tuple(float(v) for v in importances[j]),
            )
            for j, column in enumerate(X.columns)
        ),
    )


# -- SHAP ---------------------------------------------------------------------------------------


def compute_shap_summary(
    model: ModelAdapter,
    dataset: Dataset,
    *,
    seed: int = 0,
    max_rows: int = 100,
    background_rows: int = 50,
) -> ShapSummary:
    """Mean absolute SHAP value per feature, with shap's model-agnostic explainer.

    The explained output is the probability of the last class in ``model.classes_`` for a
    binary model with ``predict_proba``, the mean over classes of the per-class values for a
    multiclass one, and the predicted label (as a number) for a model without probabilities.
    Rows and background are seeded samples of ``dataset.features``.

    Raises
    ------
    MissingExtraError
        shap is not installed (``pip install 'bastion[explain]'``).
    ConfigError
        ``max_rows`` or ``background_rows`` is below 1.

    Example::

        summary = compute_shap_summary(adapter, test, seed=0)
        summary.ranked()[:3]
    """
    import warnings

    from bastion._optional import require

    with warnings.catch_warnings():
        # shap's import warns about its own use of matplotlib and numba: not the user's concern
        warnings.simplefilter("ignore")
        shap = require("shap", "SHAP summaries in model cards")
    for name, value in (("max_rows", max_rows), ("background_rows", background_rows)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1; received {value!r}")
    X = dataset.features.reset_index(drop=True)
    columns = list(X.columns)
    rng = np.random.default_rng(seed)
    background = X.iloc[np.sort(rng.permutation(len(X))[: min(background_rows, len(X))])]
    rows = X.iloc[np.sort(rng.permutation(len(X))[: min(max_rows, len(X))])]
    proba = model.has(Capability.PREDICT_PROBA)

    def f(a: Any) -> np.ndarray:
        frame = a if isinstance(a, pd.DataFrame) else pd.DataFrame(np.asarray(a), columns=columns)
        if proba:
            return model.predict_proba(frame)
        return np.asarray(model.predict(frame), dtype=np.float64)

    masker = shap.maskers.Independent(background, max_samples=len(background))
    explainer = shap.Explainer(f, masker, seed=seed)
    values = np.asarray(explainer(rows, silent=True).values, dtype=np.float64)
    classes = [] if model.classes_ is None else list(model.classes_)
    if values.ndim == 3 and values.shape[2] == 2:
        values, output = values[:, :, 1], f"probability of class {classes[-1] if classes else 1}"
    elif values.ndim == 3:
        values, output = np.abs(values).mean(axis=2), "class probabilities (mean over classes)"
    else:
        output = "predicted label" if not proba else "probability"
    mean_abs = np.abs(values).mean(axis=0)
    return ShapSummary(
        mean_abs=tuple((str(c), float(mean_abs[j])) for j, c in enumerate(columns)),
        output=output,
        n_rows=len(rows),
        n_background=len(background),
        shap_version=str(getattr(shap, "__version__", "unknown")),
    )

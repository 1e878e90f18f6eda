"""Surrogate models an extraction attacker trains on the victim's answers (scikit-learn).

Three families, chosen with ``surrogate=``: ``logistic`` (standardised logistic regression:
the right shape for linear victims), ``gradient_boosting`` (scikit-learn's
``GradientBoostingClassifier``: axis-aligned splits, the right shape for tree ensembles) and
``mlp`` (a standardised perceptron with one hidden layer of 64 units). An attacker who must
pick one while querying (active learning) can do it without the defender's data, by 3-fold
cross-validated agreement on the answers it already holds (:func:`choose_surrogate`, no
extra query). ``auto`` weighs the linear and the tree family only: measured on breast
cancer, the logistic surrogate copied a logistic victim best (fidelity 0.98 at 500 natural
queries against 0.95 for gradient boosting) and gradient boosting copied a
gradient-boosting victim best (0.97-1.0 against 0.94-0.96), while the MLP was never the
best and costs the most to train.

Hard labels train the surrogate directly. Soft labels (the victim's probabilities) train it
on every row once per class, weighted by that class's probability: the weighted
cross-entropy of a probabilistic classifier is then the cross-entropy against the victim's
probabilities, which is what distillation minimises.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bastion.exceptions import ConfigError

__all__ = ["AUTO_CANDIDATES", "SURROGATES", "Surrogate", "SurrogateName", "choose_surrogate"]

SurrogateName = Literal["logistic", "gradient_boosting", "mlp"]
SURROGATES: tuple[SurrogateName, ...] = ("logistic", "gradient_boosting", "mlp")


def _estimator(name: SurrogateName, seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if name == "logistic":
        return LogisticRegression(max_iter=2000)
    if name == "gradient_boosting":
        return GradientBoostingClassifier(random_state=seed)
    if name == "mlp":
        return MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=seed)
    raise ConfigError(f"surrogate must be one of {list(SURROGATES)}; received {name!r}")


@dataclass
class Surrogate:
    """One surrogate: standardisation (logistic, mlp) plus a scikit-learn classifier.

    With a single class among the answers there is nothing to learn: the surrogate predicts
    that class everywhere (and is maximally uncertain nowhere).

    Example::

        s = Surrogate("logistic", seed=0).fit(X_queries, victim_labels)
        s.predict(X_eval)
    """

    name: SurrogateName
    seed: int = 0
    classes_: np.ndarray = field(default_factory=lambda: np.empty(0))
    _model: Any = None
    _mean: np.ndarray | None = None
    _std: np.ndarray | None = None

    def fit(
        self,
        X: np.ndarray,
        labels: np.ndarray,
        proba: np.ndarray | None = None,
        proba_classes: np.ndarray | None = None,
    ) -> Surrogate:
        """Fit on the answers: ``labels`` (hard) or ``proba`` with its ``proba_classes`` (soft).

        Raises
        ------
        ConfigError
            ``proba`` is given without ``proba_classes`` or with a different class count.
        """
        X = np.asarray(X, dtype=np.float64)
        self.classes_ = np.unique(labels)
        self._model = None
        self._mean = self._std = None
        rows, y, weight = X, np.asarray(labels), None
        if proba is not None:
            if proba_classes is None or proba.shape[1] != len(proba_classes):
                raise ConfigError(
                    "soft labels need proba_classes with one entry per probability column; "
                    f"received {None if proba_classes is None else len(proba_classes)} for "
                    f"{proba.shape[1]} columns"
                )
            k = proba.shape[1]
            rows = np.tile(X, (k, 1))
            y = np.repeat(np.asarray(proba_classes), len(X))
            weight = proba.T.reshape(-1)
            keep = weight > 1e-3  # near-zero weights add nothing but rows to fit
            rows, y, weight = rows[keep], y[keep], weight[keep]
        # soft labels can hold two classes where every answer's top class is the same one:
        # the probabilities still point to the boundary, which the surrogate can learn
        if len(np.unique(y)) < 2:
            return self
        if self.name in ("logistic", "mlp"):
            # scaling matters for these two; trees do not care
            self._mean = X.mean(axis=0)
            self._std = np.where(X.std(axis=0) > 1e-12, X.std(axis=0), 1.0)
        Xs = self._scale(rows)
        model = _estimator(self.name, self.seed)
        with warnings.catch_warnings():
            # small query sets often stop the MLP before convergence; that is the attacker's
            # problem, measured by fidelity, not a failure to report
            warnings.simplefilter("ignore")
            model.fit(Xs, y, sample_weight=weight)
        self._model = model
        self.classes_ = np.asarray(model.classes_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The surrogate's labels for ``X``."""
        if self._model is None:
            if not len(self.classes_):
                raise ConfigError("the surrogate is not fitted; call fit first")
            return np.full(len(X), self.classes_[0])
        return np.asarray(self._model.predict(self._scale(np.asarray(X, dtype=np.float64))))

    def uncertainty(self, X: np.ndarray) -> np.ndarray:
        """1 - (top probability - second probability): 1 on the decision boundary, 0 far off."""
        if self._model is None:
            return np.zeros(len(X))
        proba = np.asarray(self._model.predict_proba(self._scale(np.asarray(X, dtype=float))))
        top = np.sort(proba, axis=1)
        margin = top[:, -1] - top[:, -2]
        out: np.ndarray = 1.0 - margin
        return out

    def _scale(self, X: np.ndarray) -> np.ndarray:
        if self._mean is None or self._std is None:
            return X
        out: np.ndarray = (X - self._mean) / self._std
        return out


AUTO_CANDIDATES: tuple[SurrogateName, ...] = ("logistic", "gradient_boosting")


def choose_surrogate(
    X: np.ndarray,
    labels: np.ndarray,
    seed: int,
    proba: np.ndarray | None = None,
    proba_classes: np.ndarray | None = None,
    *,
    candidates: tuple[SurrogateName, ...] = AUTO_CANDIDATES,
    folds: int = 3,
) -> tuple[SurrogateName, dict[str, float]]:
    """The surrogate family with the best cross-validated agreement on the attacker's answers.

    Uses only what the attacker holds (its queries and the victim's answers), so the choice
    does not peek at the defender's evaluation data. Ties go to the simpler family.

    Returns
    -------
    The chosen name and each candidate's mean held-out agreement (NaN when the answers are
    too few or hold one class: the first candidate is returned).

    Raises
    ------
    ConfigError
        ``candidates`` is empty or names an unknown family.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    unknown = [c for c in candidates if c not in SURROGATES]
    if not candidates or unknown:
        raise ConfigError(
            f"auto surrogate candidates must be a non-empty subset of {list(SURROGATES)}; "
            f"received {list(candidates)}"
        )
    scores: dict[str, float] = {}
    counts = np.unique(labels, return_counts=True)[1]
    if len(counts) < 2 or len(labels) < 2 * folds:
        return candidates[0], {name: float("nan") for name in candidates}
    splitter: Any
    if counts.min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(X, labels))
    for name in candidates:
        agree = []
        for train, held in splits:
            sub_proba = None if proba is None else proba[train]
            model = Surrogate(name, seed).fit(X[train], labels[train], sub_proba, proba_classes)
            agree.append(float(np.mean(model.predict(X[held]) == labels[held])))
        scores[name] = float(np.mean(agree))
    best = max(candidates, key=lambda n: (scores[n], -candidates.index(n)))
    return best, scores

"""Adapter for any Python callable: a function, a lambda, a bound method of a foreign model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from bastion.exceptions import ConfigError
from bastion.models.base import ArrayLike, Capability, ModelAdapter, ModelInfo

__all__ = ["CallableAdapter"]

PredictFn = Callable[[ArrayLike], Any]


class CallableAdapter(ModelAdapter):
    """Wrap plain functions as a model.

    Capabilities: ``predict`` and, when ``predict_proba`` is given, ``predict_proba``. With
    only ``predict_proba`` and ``classes``, labels are the classes of the largest probability.

    Parameters:
        predict: function from a batch of rows to one label per row.
        predict_proba: function from a batch of rows to an (rows, classes) array.
        classes: label of each probability column.
        name: the model's name in reports.

    Raises:
        ConfigError: neither function is given, one is not callable, or only
            ``predict_proba`` is given without ``classes``.

    Example::

        >>> model = CallableAdapter(predict=lambda X: (X[:, 0] > 0).astype(int), name="sign")
        >>> model.predict(np.array([[1.0], [-1.0]])).tolist()
        [1, 0]
    """

    def __init__(
        self,
        predict: PredictFn | None = None,
        predict_proba: PredictFn | None = None,
        classes: Iterable[Any] | None = None,
        name: str = "callable",
    ) -> None:
        for label, fn in (("predict", predict), ("predict_proba", predict_proba)):
            if fn is not None and not callable(fn):
                raise ConfigError(f"{label} must be callable; received {type(fn).__name__}")
        if predict is None and predict_proba is None:
            raise ConfigError("CallableAdapter needs predict, predict_proba or both; got neither")
        if predict is None and classes is None:
            raise ConfigError(
                "CallableAdapter with only predict_proba needs classes= to turn probabilities "
                "into labels"
            )
        super().__init__(ModelInfo(name=name, format="callable"), classes=classes)
        self._predict_fn = predict
        self._predict_proba_fn = predict_proba
        caps = {Capability.PREDICT}
        if predict_proba is not None:
            caps.add(Capability.PREDICT_PROBA)
        self.capabilities = frozenset(caps)

    def _predict(self, X: ArrayLike) -> np.ndarray:
        if self._predict_fn is not None:
            return np.asarray(self._predict_fn(X))
        if self._predict_proba_fn is None or self.classes_ is None:  # pragma: no cover
            raise ConfigError("CallableAdapter has no way to predict")  # guarded in __init__
        return self._labels_of(self._predict_proba_fn(X))

    def _predict_proba(self, X: ArrayLike) -> Any:
        if self._predict_proba_fn is None:  # pragma: no cover - capability checked first
            return super()._predict_proba(X)
        # as the function returned it: predict_proba reads it as numbers, or says why not
        return self._predict_proba_fn(X)

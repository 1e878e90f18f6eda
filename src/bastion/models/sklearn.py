"""Adapter for fitted scikit-learn estimators and Pipelines.

Feature names travel with the data: an estimator fitted on a DataFrame gets a DataFrame with
its columns in its order (an ndarray is wrapped, a DataFrame is reordered), and one fitted on
an array gets an array. scikit-learn therefore never warns about feature names, and a column
that is missing is an error naming it rather than a silent misalignment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bastion.exceptions import ModelError
from bastion.models.base import ArrayLike, Capability, ModelAdapter, ModelInfo

__all__ = ["SklearnAdapter", "kept_fitted_part"]


class SklearnAdapter(ModelAdapter):
    """A fitted scikit-learn estimator or Pipeline behind the :class:`ModelAdapter` interface.

    Capabilities: ``predict``, plus ``predict_proba`` when the estimator has it (a Pipeline
    has it when its last step does). ``classes_`` comes from the estimator.

    Parameters:
        estimator: a fitted estimator (anything with ``predict``; scikit-learn's API).
        info: what reports say about the model; defaults to the estimator's class name with
            format ``"sklearn"``.

    Raises:
        ModelError: ``estimator`` has no ``predict`` method or is not fitted.

    Example::

        >>> from sklearn.linear_model import LogisticRegression
        >>> clf = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
        >>> SklearnAdapter(clf).predict(np.array([[0.9]])).tolist()
        [1]
    """

    def __init__(self, estimator: Any, info: ModelInfo | None = None) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise ModelError(
                f"estimator must have a predict method; received {type(estimator).__name__}"
            )
        _check_fitted(estimator)
        if info is None:
            info = ModelInfo(name=type(estimator).__name__, format="sklearn")
        super().__init__(info, classes=getattr(estimator, "classes_", None))
        self.estimator = estimator
        caps = {Capability.PREDICT}
        if callable(getattr(estimator, "predict_proba", None)):
            caps.add(Capability.PREDICT_PROBA)
        self.capabilities = frozenset(caps)
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names_in_: list[str] | None = None if names is None else list(names)
        n_in = getattr(estimator, "n_features_in_", None)
        self.n_features_in_: int | None = None if n_in is None else int(n_in)

    def _predict(self, X: ArrayLike) -> np.ndarray:
        rows = self._prepare(X)
        try:
            return np.asarray(self.estimator.predict(rows))
        except ValueError as err:
            raise self._refused(rows, err) from err

    def _predict_proba(self, X: ArrayLike) -> np.ndarray:
        rows = self._prepare(X)
        try:
            return np.asarray(self.estimator.predict_proba(rows))
        except ValueError as err:
            raise self._refused(rows, err) from err

    def _refused(self, rows: ArrayLike, err: ValueError) -> Exception:
        """The estimator's refusal of its input, with the first infinite value named (its
        own message names neither the column nor the row: "Input X contains infinity");
        other refusals pass as they are."""
        values = rows.to_numpy() if isinstance(rows, pd.DataFrame) else np.asarray(rows)
        if values.dtype.kind not in "fc":
            return err
        where = np.argwhere(np.isinf(values))
        if where.size == 0:
            return err
        row, col = (int(v) for v in where[0])
        names = list(rows.columns) if isinstance(rows, pd.DataFrame) else None
        column = repr(str(names[col])) if names is not None else f"{col}"
        return ModelError(
            f"model {self.info.name!r} refused its input: row {row} of the rows sent holds "
            f"{values[row, col]} in column {column} ({int(np.isinf(values).sum())} infinite "
            f"value(s) in all); {err}"
        )

    def _prepare(self, X: ArrayLike) -> ArrayLike:
        """Give the estimator the container type it was fitted on."""
        names = self.feature_names_in_
        if names is None:
            return X.to_numpy() if isinstance(X, pd.DataFrame) else X
        if isinstance(X, pd.DataFrame):
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise ModelError(
                    f"model {self.info.name!r} needs column(s) {missing[:5]} that the input "
                    f"lacks; it was fitted on {len(names)} columns"
                )
            return X if list(X.columns) == names else X.loc[:, names]
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise ModelError(
                f"model {self.info.name!r} expects {len(names)} features per row; received an "
                f"array of shape {arr.shape}"
            )
        return pd.DataFrame(arr, columns=names)


def _check_fitted(estimator: Any) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError as err:
        raise ModelError(
            f"estimator {type(estimator).__name__} is not fitted; fit it before wrapping it"
        ) from err
    except TypeError:
        # Not a scikit-learn estimator (duck-typed predict): nothing to check.
        pass


def kept_fitted_part(estimator: Any, fresh: Any) -> str | None:
    """A fitted part of ``estimator`` that its clone ``fresh`` shares as it is (``repr`` of
    its parameter name, and its type), if any.

    clone() makes every part anew, but for a part that clones as itself, such as a
    ``FrozenEstimator`` (scikit-learn's way to calibrate a model already trained): a
    "retraining" of the clone carries that fitted model along. A part counts when it is the
    same object in both and fitted by scikit-learn's convention (``__sklearn_is_fitted__``,
    else attributes ending in ``_``); a stateless part such as a ``FunctionTransformer``
    is cloned anew and does not.

    Example::

        >>> from sklearn.base import clone
        >>> kept_fitted_part(calibrated, clone(calibrated))  # doctest: +SKIP
        "'estimator': FrozenEstimator"
    """

    def parts(obj: Any) -> list[tuple[str, Any]]:
        params = getattr(obj, "get_params", None)
        nested = params(deep=True) if callable(params) else {}
        # the outermost first: the part a user wrote (a FrozenEstimator), not what it wraps
        inner = sorted(nested.items(), key=lambda kv: kv[0].count("__"))
        return [("the estimator", obj), *((repr(k), v) for k, v in inner)]

    before = {name: id(part) for name, part in parts(estimator)}
    for name, part in parts(fresh):
        if before.get(name) != id(part) or not hasattr(part, "fit") or isinstance(part, type):
            continue  # made anew, no estimator, or a class (which clones as itself)
        is_fitted = getattr(part, "__sklearn_is_fitted__", None)
        state = getattr(part, "__dict__", {})
        if (
            bool(is_fitted())
            if callable(is_fitted)
            else any(k.endswith("_") and not k.startswith("__") for k in state)
        ):
            return f"{name}: {type(part).__name__}"
    return None
